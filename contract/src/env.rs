//! References to environment variables: a secret is written `${NAME}` in `pipelines.yaml`
//! and read from the environment at run time.

/// A variable name as the compiler accepts it: capitals, digits and `_`, not starting with
/// a digit.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `${NAME}` -> `NAME`; anything else (a literal, a lowercase name) -> `None`.
pub fn env_ref(text: &str) -> Option<&str> {
    text.strip_prefix("${").and_then(|t| t.strip_suffix('}')).filter(|name| is_env_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_variable() {
        assert_eq!(env_ref("${DB_PASSWORD}"), Some("DB_PASSWORD"));
        assert_eq!(env_ref("${_X1}"), Some("_X1"));
        assert_eq!(env_ref("hunter2"), None);
        assert_eq!(env_ref("${lower}"), None);
        assert_eq!(env_ref("${1ST}"), None);
        assert_eq!(env_ref("${}"), None);
        assert_eq!(env_ref("${A}B"), None);
    }
}
