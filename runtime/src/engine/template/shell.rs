//! Quoting values into a `bash -c` command: a lexer that follows the command's quoting as
//! bash reads it, far enough to know, at each value, whether it lands in a bare word, in
//! `'...'`, `"..."` or `$'...'`, or somewhere no quoting is sound.

use super::quoting::{Interpolated, Lexer, Piece, assemble};

/// Where the lexer is.
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    /// Bare words: the command itself, or the inside of `$( ... )` (with its open parens).
    Bare { parens: u32 },
    /// `'...'`
    Single,
    /// `"..."`
    Double,
    /// `$'...'`
    AnsiC,
    /// `` `...` ``: bash re-reads its text, so nothing inside can be quoted for sure.
    Backtick,
    /// `${...}`: the word after an operator (`${x:-word}`) has quoting rules of its own.
    Brace { depth: u32 },
    /// `$(( ... ))` or `(( ... ))`: bash evaluates the text, array subscripts included.
    Arithmetic { parens: u32 },
    /// `[[ ... ]]`: `-eq` and friends evaluate their operands arithmetically.
    Test,
    /// `# ...` up to the end of the line.
    Comment,
    /// The body of a here-document, up to its delimiter line.
    HereDoc { delimiter: String, strip_tabs: bool },
}

pub(super) fn quote(pieces: &[Piece<'_>]) -> Result<String, String> {
    let mut lexer =
        ShellLexer { stack: vec![Frame::Bare { parens: 0 }], pending_heredocs: Vec::new(), line: String::new() };
    assemble(pieces, &mut lexer)
}

struct ShellLexer {
    stack: Vec<Frame>,
    /// Here-documents opened on the current line: (delimiter, strip tabs).
    pending_heredocs: Vec<(String, bool)>,
    /// The current line so far (for here-document delimiters and the last character).
    line: String,
}

impl Lexer for ShellLexer {
    fn read(&mut self, text: &str) {
        self.read_text(text);
    }

    fn quote(&self, value: &Interpolated) -> Result<String, String> {
        self.quote_value(value)
    }

    /// A value ends a word as a quoted string would; it changes no frame.
    fn after_value(&mut self) {
        self.line.push('x');
    }
}

impl ShellLexer {
    fn top(&self) -> &Frame {
        self.stack.last().unwrap_or(&Frame::Bare { parens: 0 })
    }

    fn top_mut(&mut self) -> &mut Frame {
        if self.stack.is_empty() {
            self.stack.push(Frame::Bare { parens: 0 });
        }
        let last = self.stack.len() - 1;
        &mut self.stack[last]
    }

    fn pop(&mut self) {
        if self.stack.len() > 1 {
            self.stack.pop();
        }
    }

    /// The last character written before the value on this line, if any.
    fn last_char(&self) -> Option<char> {
        self.line.chars().last()
    }

    /// Whether the text so far ends in a backslash that escapes what comes next.
    fn escape_pending(&self) -> bool {
        let backslashes = self.line.chars().rev().take_while(|&c| c == '\\').count();
        backslashes % 2 == 1 && !matches!(self.top(), Frame::Single | Frame::Comment | Frame::HereDoc { .. })
    }

    fn quote_value(&self, value: &Interpolated) -> Result<String, String> {
        let text = value.text();
        if self.escape_pending() {
            return Err("it follows a backslash, which would escape its quoting; remove the backslash".into());
        }
        let after_dollar = self.last_char() == Some('$');
        match self.top() {
            Frame::Bare { .. } | Frame::Test if after_dollar => {
                Err("it follows a `$`, which would make it part of an expansion; put a space between them".into())
            }
            Frame::Bare { .. } => Ok(single_quoted(&text)),
            Frame::Test => {
                if text.contains(['[', '$', '`']) {
                    Err("inside `[[ ]]`, where `-eq` and friends would evaluate `[`, `$` or `` ` `` in it; \
                         compare with `[ ]` or pass it through `env:`"
                        .into())
                } else {
                    Ok(single_quoted(&text))
                }
            }
            Frame::Single => Ok(text.replace('\'', r"'\''")),
            Frame::Double if after_dollar => {
                Err("it follows a `$`, which would make it part of an expansion; put a space between them".into())
            }
            Frame::Double => Ok(double_quoted_body(&text)),
            Frame::AnsiC => Ok(text.replace('\\', r"\\").replace('\'', r"\'")),
            Frame::Arithmetic { .. } => match value {
                Interpolated::Integer(n) => Ok(format!("({n})")),
                _ if is_integer(&text) => Ok(format!("({})", text.trim())),
                _ => Err("inside arithmetic, where only an integer is safe; this one is not".into()),
            },
            Frame::Comment if text.contains(['\n', '\r']) => {
                Err("inside a `#` comment, and its line break would end the comment".into())
            }
            Frame::Comment => Ok(text),
            Frame::Backtick => Err("inside backticks, where bash re-reads it; use `$( ... )` instead".into()),
            Frame::Brace { .. } => {
                Err("inside `${...}`; set a variable with `env:` and expand that, or move the value outside".into())
            }
            Frame::HereDoc { .. } => {
                Err("inside a here-document, where it cannot be quoted; pass it through `env:` or `printf '%s'`".into())
            }
        }
    }

    fn read_text(&mut self, text: &str) {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            let consumed = self.step(c, next, chars.get(i + 2).copied(), &chars[i..]);
            for &ch in &chars[i..i + consumed] {
                self.line.push(ch);
                if ch == '\n' {
                    self.end_line();
                }
            }
            i += consumed;
        }
    }

    /// Called after a newline has been read.
    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let content = line.trim_end_matches('\n');
        if let Frame::HereDoc { delimiter, strip_tabs } = self.top() {
            let candidate = if *strip_tabs { content.trim_start_matches('\t') } else { content };
            if candidate == delimiter {
                self.pop();
            }
            return;
        }
        if matches!(self.top(), Frame::Comment) {
            self.pop();
        }
        if matches!(self.top(), Frame::Bare { .. }) {
            // Here-documents start after the line that opened them, in order.
            for (delimiter, strip_tabs) in std::mem::take(&mut self.pending_heredocs).into_iter().rev() {
                self.stack.push(Frame::HereDoc { delimiter, strip_tabs });
            }
        }
    }

    /// Reads one token starting at `c`; returns how many characters it took.
    fn step(&mut self, c: char, next: Option<char>, third: Option<char>, rest: &[char]) -> usize {
        match self.top().clone() {
            Frame::Single => {
                if c == '\'' {
                    self.pop();
                }
                1
            }
            Frame::AnsiC => match c {
                '\\' => 2.min(rest.len()),
                '\'' => {
                    self.pop();
                    1
                }
                _ => 1,
            },
            Frame::Comment | Frame::HereDoc { .. } => 1,
            Frame::Double => match (c, next) {
                ('\\', _) => 2.min(rest.len()),
                ('"', _) => {
                    self.pop();
                    1
                }
                _ => self.expansion(c, next, third).unwrap_or(1),
            },
            Frame::Backtick => match c {
                '\\' => 2.min(rest.len()),
                '`' => {
                    self.pop();
                    1
                }
                _ => 1,
            },
            Frame::Brace { depth } => match c {
                '\\' => 2.min(rest.len()),
                '{' => {
                    *self.top_mut() = Frame::Brace { depth: depth + 1 };
                    1
                }
                '}' if depth == 0 => {
                    self.pop();
                    1
                }
                '}' => {
                    *self.top_mut() = Frame::Brace { depth: depth - 1 };
                    1
                }
                _ => self.quotes_and_expansions(c, next, third).unwrap_or(1),
            },
            Frame::Arithmetic { parens } => match (c, next) {
                (')', Some(')')) if parens == 0 => {
                    self.pop();
                    2
                }
                ('(', _) => {
                    *self.top_mut() = Frame::Arithmetic { parens: parens + 1 };
                    1
                }
                (')', _) => {
                    *self.top_mut() = Frame::Arithmetic { parens: parens.saturating_sub(1) };
                    1
                }
                _ => self.quotes_and_expansions(c, next, third).unwrap_or(1),
            },
            Frame::Test => match (c, next) {
                (']', Some(']')) => {
                    self.pop();
                    2
                }
                _ => self.quotes_and_expansions(c, next, third).unwrap_or(1),
            },
            Frame::Bare { parens } => self.bare(c, next, third, rest, parens),
        }
    }

    fn bare(&mut self, c: char, next: Option<char>, third: Option<char>, rest: &[char], parens: u32) -> usize {
        if let Some(n) = self.quotes_and_expansions(c, next, third) {
            return n;
        }
        let at_word_start = self.last_char().is_none_or(|p| p.is_whitespace() || ";&|()<>".contains(p));
        match (c, next) {
            ('#', _) if at_word_start => {
                self.stack.push(Frame::Comment);
                1
            }
            ('(', Some('(')) => {
                self.stack.push(Frame::Arithmetic { parens: 0 });
                2
            }
            ('[', Some('[')) if at_word_start => {
                self.stack.push(Frame::Test);
                2
            }
            ('(', _) => {
                *self.top_mut() = Frame::Bare { parens: parens + 1 };
                1
            }
            (')', _) if parens == 0 && self.stack.len() > 1 => {
                self.pop();
                1
            }
            (')', _) => {
                *self.top_mut() = Frame::Bare { parens: parens.saturating_sub(1) };
                1
            }
            ('<', Some('<')) if third == Some('<') => 3,
            ('<', Some('<')) => self.heredoc(rest),
            _ => 1,
        }
    }

    /// Quotes, escapes and `$` expansions, which every unquoted frame shares.
    fn quotes_and_expansions(&mut self, c: char, next: Option<char>, third: Option<char>) -> Option<usize> {
        match c {
            '\\' => Some(if next.is_some() { 2 } else { 1 }),
            '\'' => {
                self.stack.push(Frame::Single);
                Some(1)
            }
            '"' => {
                self.stack.push(Frame::Double);
                Some(1)
            }
            '$' if next == Some('\'') => {
                self.stack.push(Frame::AnsiC);
                Some(2)
            }
            _ => self.expansion(c, next, third),
        }
    }

    /// `$(`, `$((`, `${` and backticks, which double quotes share with bare words.
    fn expansion(&mut self, c: char, next: Option<char>, third: Option<char>) -> Option<usize> {
        match (c, next, third) {
            ('$', Some('('), Some('(')) => {
                self.stack.push(Frame::Arithmetic { parens: 0 });
                Some(3)
            }
            ('$', Some('('), _) => {
                self.stack.push(Frame::Bare { parens: 0 });
                Some(2)
            }
            ('$', Some('{'), _) => {
                self.stack.push(Frame::Brace { depth: 0 });
                Some(2)
            }
            ('`', _, _) => {
                self.stack.push(Frame::Backtick);
                Some(1)
            }
            _ => None,
        }
    }

    /// `<<DELIM`, `<<-DELIM`, `<<'DELIM'`, `<< "DELIM"`: remembers the delimiter; the body
    /// starts on the next line.
    fn heredoc(&mut self, rest: &[char]) -> usize {
        let mut i = 2;
        let strip_tabs = rest.get(i) == Some(&'-');
        if strip_tabs {
            i += 1;
        }
        while rest.get(i).is_some_and(|c| *c == ' ' || *c == '\t') {
            i += 1;
        }
        let mut delimiter = String::new();
        while let Some(&c) = rest.get(i) {
            if c.is_whitespace() || ";&|()<>".contains(c) {
                break;
            }
            if c != '\'' && c != '"' && c != '\\' {
                delimiter.push(c);
            }
            i += 1;
        }
        if !delimiter.is_empty() {
            self.pending_heredocs.push((delimiter, strip_tabs));
        }
        i
    }
}

/// One word, nothing expanded: `'...'`, with each `'` written `'\''`.
fn single_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The inside of `"..."`: the four characters bash still interprets there, escaped.
fn double_quoted_body(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn is_integer(text: &str) -> bool {
    let digits = text.trim().strip_prefix('-').unwrap_or(text.trim());
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Piece<'static> {
        Piece::Value(Interpolated::Text(s.to_string()))
    }

    fn render(parts: &[Piece<'_>]) -> Result<String, String> {
        quote(parts)
    }

    #[test]
    fn bare_words_are_single_quoted() {
        let out = render(&[Piece::Literal("echo "), text("a'b; rm -rf /")]).expect("quoted");
        assert_eq!(out, r"echo 'a'\''b; rm -rf /'");
    }

    #[test]
    fn inside_single_quotes_the_quote_is_closed_and_reopened() {
        let out = render(&[Piece::Literal("echo '"), text("x'; touch /tmp/p; echo '"), Piece::Literal(" on'")])
            .expect("quoted");
        assert_eq!(out, r"echo 'x'\''; touch /tmp/p; echo '\'' on'");
    }

    #[test]
    fn inside_double_quotes_expansions_are_escaped() {
        let out = render(&[Piece::Literal("echo \""), text("$(id) `id` \\ \""), Piece::Literal("\"")]).expect("ok");
        assert_eq!(out, r#"echo "\$(id) \`id\` \\ \"""#);
    }

    #[test]
    fn command_substitution_is_a_bare_context_again() {
        let out = render(&[Piece::Literal("echo \"$(printf %s "), text("a b"), Piece::Literal(")\"")]).expect("ok");
        assert_eq!(out, "echo \"$(printf %s 'a b')\"");
    }

    #[test]
    fn after_a_closed_substitution_the_double_quotes_continue() {
        let out = render(&[Piece::Literal("echo \"$(date) "), text("$x"), Piece::Literal("\"")]).expect("ok");
        assert_eq!(out, "echo \"$(date) \\$x\"");
    }

    #[test]
    fn unsound_places_are_refused() {
        for (before, why) in [
            ("echo `echo ", "backticks"),
            ("echo ${X:-", "${...}"),
            ("echo $((1 + ", "arithmetic"),
            ("cat <<EOF\n", "here-document"),
            ("echo \\", "backslash"),
            ("echo $", "follows a `$`"),
            ("[[ 1 -eq ", "[[ ]]"),
        ] {
            let err = render(&[Piece::Literal(before), text("a[$(id)]")]).expect_err(before);
            assert!(err.contains(why), "{before}: {err}");
        }
    }

    #[test]
    fn integers_pass_into_arithmetic() {
        let out =
            render(&[Piece::Literal("echo $(("), Piece::Value(Interpolated::Integer(-3)), Piece::Literal("+1))")])
                .expect("ok");
        assert_eq!(out, "echo $(((-3)+1))");
    }

    #[test]
    fn a_here_document_ends_at_its_delimiter() {
        let out = render(&[Piece::Literal("cat <<'EOF'\nbody $x\nEOF\necho "), text("v")]).expect("ok");
        assert!(out.ends_with("echo 'v'"), "{out}");
    }

    #[test]
    fn comments_end_at_the_line() {
        let out = render(&[Piece::Literal("true # note\necho "), text("v w")]).expect("ok");
        assert!(out.ends_with("echo 'v w'"), "{out}");
        let err = render(&[Piece::Literal("true # "), text("a\nid")]).expect_err("newline in a comment");
        assert!(err.contains("comment"), "{err}");
    }

    #[test]
    fn a_quote_inside_double_quotes_is_literal() {
        let out = render(&[Piece::Literal("echo \"it's "), text("x'y"), Piece::Literal("\"")]).expect("ok");
        assert_eq!(out, "echo \"it's x'y\"");
    }

    #[test]
    fn ansi_c_quotes_escape_backslash_and_quote() {
        let out = render(&[Piece::Literal("echo $'"), text("a\\'b"), Piece::Literal("'")]).expect("ok");
        assert_eq!(out, r"echo $'a\\\'b'");
    }
}
