//! Quoting values into an SQL statement: a lexer that follows the statement's strings,
//! quoted identifiers and comments, so that each value becomes one literal (or one part of
//! a literal or identifier) by the server's own quoting rules.
//!
//! PostgreSQL's rules assume `standard_conforming_strings = on`, its default since 9.1: in
//! `'...'` a backslash is an ordinary character, and only `E'...'` reads escapes.

use super::quoting::{Interpolated, Lexer, Piece, assemble};

#[derive(Debug, Clone, PartialEq)]
enum State {
    Normal,
    /// `'...'`; `escapes` for PostgreSQL's `E'...'`.
    Str {
        escapes: bool,
    },
    /// `"..."`
    Ident,
    /// SQLite's `` `...` ``
    Backtick,
    /// SQLite's `[...]`
    Bracket,
    /// `-- ...` to the end of the line.
    LineComment,
    /// `/* ... */`, nested in PostgreSQL.
    BlockComment {
        depth: u32,
    },
    /// PostgreSQL's `$tag$ ... $tag$`.
    Dollar(String),
}

pub(super) fn quote(pieces: &[Piece<'_>], postgres: bool) -> Result<String, String> {
    assemble(pieces, &mut SqlLexer { state: State::Normal, postgres, before: String::new() })
}

struct SqlLexer {
    state: State,
    postgres: bool,
    /// What has been read so far (only its end matters).
    before: String,
}

impl Lexer for SqlLexer {
    fn read(&mut self, text: &str) {
        self.read_text(text);
    }

    fn quote(&self, value: &Interpolated) -> Result<String, String> {
        self.quote_value(value)
    }

    fn after_value(&mut self) {
        self.before.push(' ');
    }
}

impl SqlLexer {
    fn quote_value(&self, value: &Interpolated) -> Result<String, String> {
        let text = value.text();
        let backslash_pending = self.before.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1;
        match &self.state {
            State::Normal => {
                let glued = self.before.chars().last().is_some_and(|c| c.is_alphanumeric() || "_$&".contains(c));
                match value {
                    Interpolated::Integer(n) if *n < 0 => Ok(format!("({n})")),
                    Interpolated::Integer(n) => Ok(n.to_string()),
                    Interpolated::Float(f) if !f.is_finite() => Err("it is not a finite number".into()),
                    Interpolated::Float(f) if *f < 0.0 => Ok(format!("({})", value.text())),
                    Interpolated::Float(_) => Ok(value.text()),
                    Interpolated::Bool(b) => Ok(if *b { "TRUE" } else { "FALSE" }.to_string()),
                    Interpolated::Null => Ok("NULL".to_string()),
                    Interpolated::Text(_) if glued => {
                        Err("it is glued to the word before it, which could make it an escape string (`E'...'`); \
                         put a space or an operator before it"
                            .into())
                    }
                    Interpolated::Text(t) => Ok(format!("'{}'", t.replace('\'', "''"))),
                }
            }
            State::Str { escapes: true } if backslash_pending => {
                Err("it follows a backslash inside `E'...'`, which would escape its quoting".into())
            }
            State::Str { escapes: true } => Ok(text.replace('\\', r"\\").replace('\'', "''")),
            State::Str { escapes: false } => Ok(text.replace('\'', "''")),
            State::Ident => Ok(text.replace('"', "\"\"")),
            State::Backtick => Ok(text.replace('`', "``")),
            State::Bracket if text.contains(']') => Err("inside `[...]`, which cannot hold a `]`".into()),
            State::Bracket => Ok(text),
            State::LineComment if text.contains(['\n', '\r']) => {
                Err("inside a `--` comment, and its line break would end the comment".into())
            }
            State::LineComment => Ok(text),
            State::BlockComment { .. } if text.contains("*/") || text.contains("/*") => {
                Err("inside a `/* */` comment, and it contains `*/` or `/*`".into())
            }
            State::BlockComment { .. } => Ok(text),
            State::Dollar(_) if text.contains('$') => {
                Err("inside a dollar-quoted body, and it contains a `$`; write it in `'...'` instead".into())
            }
            State::Dollar(_) => Ok(text),
        }
    }

    fn read_text(&mut self, text: &str) {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let n = self.step(&chars[i..]).max(1);
            self.before.extend(&chars[i..(i + n).min(chars.len())]);
            i += n;
        }
        // Only the tail is ever looked at.
        if self.before.len() > 256 {
            let cut = self.before.char_indices().rev().nth(64).map_or(0, |(at, _)| at);
            self.before.drain(..cut);
        }
    }

    fn step(&mut self, rest: &[char]) -> usize {
        let c = rest[0];
        let next = rest.get(1).copied();
        match self.state.clone() {
            State::Normal => self.normal(c, next, rest),
            State::Str { escapes } => match (c, next) {
                ('\\', Some(_)) if escapes => 2,
                ('\'', Some('\'')) => 2,
                ('\'', _) => {
                    self.state = State::Normal;
                    1
                }
                _ => 1,
            },
            State::Ident => self.closing(c, next, '"'),
            State::Backtick => self.closing(c, next, '`'),
            State::Bracket => {
                if c == ']' {
                    self.state = State::Normal;
                }
                1
            }
            State::LineComment => {
                if c == '\n' {
                    self.state = State::Normal;
                }
                1
            }
            State::BlockComment { depth } => match (c, next) {
                ('*', Some('/')) if depth == 0 => {
                    self.state = State::Normal;
                    2
                }
                ('*', Some('/')) => {
                    self.state = State::BlockComment { depth: depth - 1 };
                    2
                }
                ('/', Some('*')) if self.postgres => {
                    self.state = State::BlockComment { depth: depth + 1 };
                    2
                }
                _ => 1,
            },
            State::Dollar(tag) => {
                let closing: Vec<char> = format!("${tag}$").chars().collect();
                if rest.starts_with(&closing) {
                    self.state = State::Normal;
                    closing.len()
                } else {
                    1
                }
            }
        }
    }

    /// `"..."` and `` `...` ``: a doubled quote stays inside.
    fn closing(&mut self, c: char, next: Option<char>, quote: char) -> usize {
        match (c, next) {
            (a, Some(b)) if a == quote && b == quote => 2,
            (a, _) if a == quote => {
                self.state = State::Normal;
                1
            }
            _ => 1,
        }
    }

    fn normal(&mut self, c: char, next: Option<char>, rest: &[char]) -> usize {
        let prev = self.before.chars().last();
        let prev_is_word = prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '$');
        match (c, next) {
            ('\'', _) => {
                let escape_prefix = matches!(prev, Some('E' | 'e')) && {
                    let before_prefix = self.before.chars().rev().nth(1);
                    !before_prefix.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '$')
                };
                self.state = State::Str { escapes: self.postgres && escape_prefix };
                1
            }
            ('"', _) => {
                self.state = State::Ident;
                1
            }
            ('`', _) if !self.postgres => {
                self.state = State::Backtick;
                1
            }
            ('[', _) if !self.postgres => {
                self.state = State::Bracket;
                1
            }
            ('-', Some('-')) => {
                self.state = State::LineComment;
                2
            }
            ('/', Some('*')) => {
                self.state = State::BlockComment { depth: 0 };
                2
            }
            ('$', _) if self.postgres && !prev_is_word => match dollar_tag(rest) {
                Some(tag) => {
                    let len = tag.chars().count() + 2;
                    self.state = State::Dollar(tag);
                    len
                }
                None => 1,
            },
            _ => 1,
        }
    }
}

/// The tag of `$tag$` at the start of `rest` (`""` for `$$`); `None` for `$1` and the like.
fn dollar_tag(rest: &[char]) -> Option<String> {
    let mut tag = String::new();
    for (i, &c) in rest.iter().enumerate().skip(1) {
        if c == '$' {
            return Some(tag);
        }
        let ok = if i == 1 { c.is_alphabetic() || c == '_' } else { c.is_alphanumeric() || c == '_' };
        if !ok {
            return None;
        }
        tag.push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Piece<'static> {
        Piece::Value(Interpolated::Text(s.to_string()))
    }

    #[test]
    fn bare_values_are_literals_of_their_kind() {
        let pieces = [
            Piece::Literal("SELECT "),
            text("it's"),
            Piece::Literal(", "),
            Piece::Value(Interpolated::Integer(-5)),
            Piece::Literal(", "),
            Piece::Value(Interpolated::Bool(true)),
            Piece::Literal(", "),
            Piece::Value(Interpolated::Null),
        ];
        assert_eq!(quote(&pieces, true).expect("ok"), "SELECT 'it''s', (-5), TRUE, NULL");
    }

    #[test]
    fn inside_a_string_quotes_are_doubled() {
        let pieces = [Piece::Literal("INSERT INTO t VALUES ('"), text("'); DROP TABLE t; --"), Piece::Literal("')")];
        assert_eq!(quote(&pieces, true).expect("ok"), "INSERT INTO t VALUES ('''); DROP TABLE t; --')");
    }

    #[test]
    fn escape_strings_double_backslashes_too() {
        let pieces = [Piece::Literal("SELECT E'"), text("\\'; DROP TABLE t; --"), Piece::Literal("'")];
        assert_eq!(quote(&pieces, true).expect("ok"), r"SELECT E'\\''; DROP TABLE t; --'");
        // SQLite has no escape strings: `E'` is a word and a plain string.
        assert_eq!(quote(&pieces, false).expect("ok"), r"SELECT E'\''; DROP TABLE t; --'");
    }

    #[test]
    fn identifiers_double_their_quote() {
        let pieces = [Piece::Literal("SELECT * FROM \""), text("a\"b"), Piece::Literal("\"")];
        assert_eq!(quote(&pieces, true).expect("ok"), "SELECT * FROM \"a\"\"b\"");
    }

    #[test]
    fn strings_after_comments_and_dollar_quotes_are_found() {
        let pieces = [Piece::Literal("-- it's\nSELECT $$ it's $$, '"), text("'"), Piece::Literal("'")];
        assert_eq!(quote(&pieces, true).expect("ok"), "-- it's\nSELECT $$ it's $$, ''''");
    }

    #[test]
    fn unsound_places_are_refused() {
        for (before, postgres) in [
            ("SELECT E", true),
            ("SELECT 1 -- ", true),
            ("SELECT $$", true),
            ("SELECT /* ", true),
            ("SELECT E'\\", true),
            ("SELECT [", false),
        ] {
            let err = quote(&[Piece::Literal(before), text("x\n*/$]'")], postgres).expect_err(before);
            assert!(err.starts_with("the 1st value"), "{err}");
        }
    }
}
