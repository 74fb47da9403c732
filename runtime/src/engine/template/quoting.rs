//! Values that cannot change what a command or a statement is.
//!
//! A shell command or SQL statement is rendered in two passes. The first renders the
//! template as usual, except that each `{{ value }}` is written as a *mark*: the value's
//! kind and bytes (hex) between two private-use characters, which no template may contain.
//! The second pass reads the result as the shell or SQL lexer would, and replaces each mark
//! by the value quoted for the place it stands in:
//!
//! | language | where | written as |
//! |---|---|---|
//! | shell | a bare word | `'it'\''s'` (one word, nothing expanded) |
//! | shell | inside `'...'` | `it'\''s` (closes, escapes, reopens) |
//! | shell | inside `"..."` | `\$HOME \"x\"` (`\`, `"`, `$`, `` ` `` escaped) |
//! | shell | inside `$'...'` | `\\` and `\'` |
//! | SQL | bare | `'text'` with `''`, numbers as numbers (negative ones in parentheses), `TRUE`, `NULL` |
//! | SQL | inside `'...'` | `''` (and `\\` in PostgreSQL's `E'...'`) |
//! | SQL | inside `"..."` | `""` |
//!
//! Places where no quoting is sound are refused with a sentence that says what to write
//! instead: backticks, here-documents, `${...}`, arithmetic with a value that is not an
//! integer, a value right after a backslash, PostgreSQL dollar-quoted bodies with a `$` in
//! the value, a line comment with a newline in the value.
//!
//! Why quote rather than pass values as environment variables: the command stays
//! readable in the log and on the task's "Rendered Template" (what ran is what is shown),
//! templates written for Airflow keep working unchanged when their values are already in
//! quotes (`echo '{{ params.greeting }}'`), and SQL has no environment: there, quoting by
//! the server's own literal rules is what keeps a statement unprepared and PgBouncer-safe.

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment};
use std::sync::OnceLock;

/// What a template renders into: the language its values are quoted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// A `bash -c` command.
    Shell,
    /// A PostgreSQL statement (standard-conforming strings, `E'...'`, `$tag$...$tag$`).
    Postgres,
    /// A SQLite statement (`` `name` `` and `[name]` identifiers too).
    Sqlite,
}

/// Starts a mark; no template may contain it.
pub const MARK_START: char = '\u{E000}';
/// Ends a mark.
pub const MARK_END: char = '\u{E001}';

/// The environment of the first pass: values become marks, `| safe` values stay as written.
pub(super) fn marking_environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = super::base_environment();
        env.set_auto_escape_callback(|_| AutoEscape::Custom("sluice-mark".into()));
        env.set_formatter(|out, _state, value| {
            if value.is_safe() {
                out.write_str(value.as_str().unwrap_or_default())?;
            } else {
                out.write_str(&mark(value))?;
            }
            Ok(())
        });
        env
    })
}

/// A value as it was interpolated: its kind decides how SQL writes it bare.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Interpolated {
    Text(String),
    Integer(i128),
    Float(f64),
    Bool(bool),
    Null,
}

impl Interpolated {
    /// The value's text, as a plain template would have written it.
    pub(super) fn text(&self) -> String {
        match self {
            Interpolated::Text(text) => text.clone(),
            Interpolated::Integer(n) => n.to_string(),
            Interpolated::Float(f) => Value::from(*f).to_string(),
            Interpolated::Bool(b) => if *b { "true" } else { "false" }.to_string(),
            Interpolated::Null => "none".to_string(),
        }
    }
}

/// One piece of the first pass's output.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece<'a> {
    /// Text the template's author wrote (or a `| safe` value).
    Literal(&'a str),
    /// A value, to be quoted.
    Value(Interpolated),
}

fn mark(value: &Value) -> String {
    let (kind, text) = match value.kind() {
        ValueKind::Number if value.is_integer() => ('i', value.to_string()),
        ValueKind::Number => ('f', value.to_string()),
        ValueKind::Bool => ('b', value.is_true().to_string()),
        ValueKind::None => ('n', String::new()),
        ValueKind::Undefined => ('s', String::new()),
        _ => ('s', value.as_str().map_or_else(|| value.to_string(), str::to_string)),
    };
    let mut out = String::with_capacity(text.len() * 2 + 3);
    out.push(MARK_START);
    out.push(kind);
    for byte in text.bytes() {
        out.push_str(&format!("{byte:02x}"));
    }
    out.push(MARK_END);
    out
}

fn unmark(kind: char, hex: &str) -> Option<Interpolated> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    Some(match kind {
        'i' => text.parse().map_or(Interpolated::Text(text), Interpolated::Integer),
        'f' => text.parse().map_or(Interpolated::Text(text), Interpolated::Float),
        'b' => Interpolated::Bool(text == "true"),
        'n' => Interpolated::Null,
        _ => Interpolated::Text(text),
    })
}

/// Splits the first pass's output into literal text and values.
pub(super) fn pieces(marked: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = marked;
    while let Some(start) = rest.find(MARK_START) {
        if start > 0 {
            out.push(Piece::Literal(&rest[..start]));
        }
        let after = &rest[start + MARK_START.len_utf8()..];
        let end = after.find(MARK_END).ok_or("a value's mark is not closed")?;
        let mut body = after[..end].chars();
        let kind = body.next().ok_or("a value's mark is empty")?;
        out.push(Piece::Value(unmark(kind, body.as_str()).ok_or("a value's mark is damaged")?));
        rest = &after[end + MARK_END.len_utf8()..];
    }
    if !rest.is_empty() {
        out.push(Piece::Literal(rest));
    }
    Ok(out)
}

/// The second pass: every mark of `marked` replaced by its value, quoted for `language`.
pub fn quote(marked: &str, language: Language) -> Result<String, String> {
    let pieces = pieces(marked)?;
    if pieces.iter().any(|p| matches!(p, Piece::Value(Interpolated::Text(t)) if t.contains('\0'))) {
        return Err("a value contains a NUL byte, which no command or statement can carry".to_string());
    }
    match language {
        Language::Shell => super::shell::quote(&pieces),
        Language::Postgres | Language::Sqlite => super::sql::quote(&pieces, language == Language::Postgres),
    }
}

/// A reader of one language: follows the literal text, and quotes a value for where the
/// text so far left it.
pub(super) trait Lexer {
    /// Reads literal text the template's author wrote.
    fn read(&mut self, text: &str);
    /// `value` quoted for the current place, or why no quoting is sound there.
    fn quote(&self, value: &Interpolated) -> Result<String, String>;
    /// A quoted value was written: it ends a word as a quoted string would.
    fn after_value(&mut self);
}

/// Reads `pieces` with `lexer`, writing each literal as it is and each value quoted.
pub(super) fn assemble(pieces: &[Piece<'_>], lexer: &mut dyn Lexer) -> Result<String, String> {
    let mut out = String::new();
    let mut values = 0;
    for piece in pieces {
        match piece {
            Piece::Literal(text) => {
                lexer.read(text);
                out.push_str(text);
            }
            Piece::Value(value) => {
                values += 1;
                let quoted = lexer.quote(value).map_err(|why| format!("the {} value ({why})", ordinal(values)))?;
                lexer.after_value();
                out.push_str(&quoted);
            }
        }
    }
    Ok(out)
}

/// The position of the `n`th value (1-based), for error messages.
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_every_kind() {
        for (value, expected) in [
            (Value::from("it's $(x)\n"), Interpolated::Text("it's $(x)\n".into())),
            (Value::from(-42), Interpolated::Integer(-42)),
            (Value::from(1.5), Interpolated::Float(1.5)),
            (Value::from(true), Interpolated::Bool(true)),
            (Value::from(()), Interpolated::Null),
            (Value::from("é\u{E001}"), Interpolated::Text("é\u{E001}".into())),
        ] {
            let marked = format!("a{}b", mark(&value));
            assert_eq!(
                pieces(&marked).expect("pieces"),
                vec![Piece::Literal("a"), Piece::Value(expected), Piece::Literal("b")]
            );
        }
    }

    #[test]
    fn a_damaged_mark_is_an_error_not_text() {
        assert!(pieces("a\u{E000}szz\u{E001}").is_err());
        assert!(pieces("a\u{E000}s41").is_err());
    }
}
