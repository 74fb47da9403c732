//! Identifiers of pipelines, tasks and outputs: they become Rust module and field names.

/// Lowercase snake case, starting with a letter.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::is_identifier;

    #[test]
    fn identifiers_are_lowercase_snake_case() {
        assert!(is_identifier("train_nba2"));
        assert!(!is_identifier("Train"));
        assert!(!is_identifier("2nd"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier(""));
    }
}
