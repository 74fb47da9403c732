//! Diagnostics: what is wrong, where, and how to fix it.

use crate::source::{SourceFile, Span};
use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor::Buffer};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding of the compiler, located in the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable, greppable name of the check (`unknown-key`, `cycle`, ...).
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Error, code, message: message.into(), span, hint: None }
    }

    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, code, message: message.into(), span, hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Every diagnostic of one compilation, in source order.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorted by position so output reads top-down like the file; stable for equal positions.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| (d.span.line, d.span.col));
        self.items
    }
}

/// Renders diagnostics the way rustc does: header, `file:line:col`, the source line, a caret
/// under the problem and the hint. `color` adds ANSI colors for terminals.
pub fn render_human(file: &SourceFile, diagnostics: &[Diagnostic], color: bool) -> String {
    let files = SimpleFile::new(file.name.as_str(), file.text.as_str());
    let config = term::Config::default();
    let mut buffer = if color { Buffer::ansi() } else { Buffer::no_color() };
    for d in diagnostics {
        let start = d.span.offset.min(file.text.len());
        let end = (start + d.span.len.max(1)).min(file.text.len()).max(start);
        let report = match d.severity {
            Severity::Error => Report::error(),
            Severity::Warning => Report::warning(),
        };
        let mut report =
            report.with_code(d.code).with_message(&d.message).with_labels(vec![Label::primary((), start..end)]);
        if let Some(hint) = &d.hint {
            report = report.with_notes(vec![format!("help: {hint}")]);
        }
        // Writing into an in-memory buffer cannot fail unless the span is outside the file,
        // which the clamping above rules out; fall back to a plain line just in case.
        if term::emit_to_write_style(&mut buffer, &config, &files, &report).is_err() {
            let line = format!("{}: {}:{}:{}: {}\n", d.code, file.name, d.span.line, d.span.col, d.message);
            let _ = std::io::Write::write_all(&mut buffer, line.as_bytes());
        }
    }
    String::from_utf8_lossy(buffer.as_slice()).into_owned()
}

/// A summary line like cargo's: `error: 3 errors, 1 warning in pipelines.yaml`.
pub fn summary(file: &SourceFile, diagnostics: &[Diagnostic]) -> Option<String> {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    if diagnostics.is_empty() {
        return None;
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    Some(format!(
        "{}: {}, {} in {}",
        if errors > 0 { "error" } else { "warning" },
        plural(errors, "error"),
        plural(warnings, "warning"),
        file.name
    ))
}

/// One JSON object per diagnostic, with `file`, `line`, `column`, for CI annotations.
pub fn render_json(file: &SourceFile, diagnostics: &[Diagnostic]) -> String {
    #[derive(Serialize)]
    struct Json<'a> {
        file: &'a str,
        line: u32,
        column: u32,
        severity: Severity,
        code: &'a str,
        message: &'a str,
        hint: Option<&'a str>,
        source_line: &'a str,
    }
    let items: Vec<Json<'_>> = diagnostics
        .iter()
        .map(|d| Json {
            file: &file.name,
            line: d.span.line,
            column: d.span.col,
            severity: d.severity,
            code: d.code,
            message: &d.message,
            hint: d.hint.as_deref(),
            source_line: file.line_text(d.span.line),
        })
        .collect();
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into())
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates.into_iter().map(|c| (edit_distance(word, c), c)).filter(|(d, _)| *d <= limit).min().map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Appends ` (did you mean `x`?)`-style hints in one place so wording stays uniform.
pub fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    did_you_mean(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// `an http`, `a sql`: a word with its article, as a message reads it.
pub fn with_article(word: &str) -> String {
    let article = if word.starts_with(['a', 'e', 'i', 'o', 'u', 'h']) { "an" } else { "a" };
    format!("{article} {word}")
}
