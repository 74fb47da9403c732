//! Parse: YAML text -> a raw tree that mirrors the file, every node with its location.
//!
//! serde-saphyr does the YAML work (panic-free, budgets against hostile input) and hands
//! each node's location through `Spanned`. We deserialize into a generic tree rather than
//! into typed structs because serde stops at the first mismatch, and the compiler must
//! report every error at once: the typed reading happens in `lower`, which collects.

use crate::diag::Diagnostic;
use crate::source::{SourceFile, Span};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// A YAML node with its location.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; duplicate keys are kept so `lower` can report each one.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// How the value reads in a message: "a string", "a list", ...
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses the whole file. A YAML syntax error ends parsing: there is no tree to check after it.
pub fn parse(file: &SourceFile) -> Result<Node, Diagnostic> {
    // The default budget (250k nodes) is sized for small configs; a large deployment's
    // file (1,000 pipelines x 20 tasks is ~400k nodes) must fit. Depth stays capped.
    let budget = serde_saphyr::budget! {
        max_nodes: 20_000_000,
        max_events: 40_000_000,
        max_total_scalar_bytes: 512 * 1024 * 1024,
    };
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        budget: budget,
    };
    match serde_saphyr::from_str_with_options::<Option<Node>>(&file.text, options) {
        Ok(Some(node)) => Ok(node),
        Ok(None) => {
            Err(Diagnostic::error("empty-file", Span { line: 1, col: 1, offset: 0, len: 0 }, "the file is empty")
                .with_hint("start from the example in the README: `deployment:`, `connections:`, `pipelines:` ..."))
        }
        // A tab in the indentation derails the YAML scanner wherever it notices (often the
        // line before, at a value): say what is wrong, where it is.
        Err(error) => Err(tab_indentation(file).unwrap_or_else(|| syntax_error(file, &error))),
    }
}

/// The first line indented with a tab, outside a block scalar (`|`, `>`), where a tab
/// after the block's indentation is text.
fn tab_indentation(file: &SourceFile) -> Option<Diagnostic> {
    // The indentation of the line that opened the block scalar we are in, if any.
    let mut block_parent: Option<usize> = None;
    for (number, line) in file.text.lines().enumerate() {
        let spaces = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[spaces..];
        if let Some(parent) = block_parent {
            if rest.trim().is_empty() || spaces > parent {
                continue;
            }
            block_parent = None;
        }
        if rest.starts_with('\t') {
            let line_number = u32::try_from(number + 1).unwrap_or(u32::MAX);
            let col = u32::try_from(spaces + 1).unwrap_or(u32::MAX);
            let span = Span { line: line_number, col, offset: file.offset_of(line_number, col), len: 1 };
            return Some(
                Diagnostic::error("tab-indentation", span, format!("line {line_number} is indented with a tab"))
                    .with_hint("YAML indents with spaces only: replace the tab with spaces, aligned with the keys of the same mapping"),
            );
        }
        if opens_block_scalar(rest) {
            block_parent = Some(spaces);
        }
    }
    None
}

/// Whether a line ends with a block scalar's indicator (`key: |`, `- >-`, `key: |2 # note`).
fn opens_block_scalar(line: &str) -> bool {
    let code = line.split(" #").next().unwrap_or(line).trim_end();
    let Some(at) = code.rfind(['|', '>']) else { return false };
    let before = &code[..at];
    let indicator = &code[at + 1..];
    let before = before.trim_end();
    (before.is_empty() || before.ends_with(':') || before == "-" || before.ends_with(" -"))
        && indicator.chars().all(|c| c == '-' || c == '+' || c.is_ascii_digit())
}

fn syntax_error(file: &SourceFile, error: &serde_saphyr::Error) -> Diagnostic {
    let span = error.location().map_or(Span { line: 1, col: 1, offset: 0, len: 0 }, |l| {
        let line = u32::try_from(l.line()).unwrap_or(u32::MAX);
        let col = u32::try_from(l.column()).unwrap_or(u32::MAX);
        Span { line, col, offset: file.offset_of(line, col), len: 1 }
    });
    // serde-saphyr's Display renders its own snippet; keep only the first line (the message).
    let text = error.to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // Drop serde-saphyr's own "line L column C: " prefix: the location is printed already.
    let message = match first.split_once(": ") {
        Some((prefix, rest)) if prefix.starts_with("line ") && prefix.contains(" column ") => rest,
        _ => first,
    }
    .to_string();
    Diagnostic::error("yaml-syntax", span, format!("invalid YAML: {message}"))
        .with_hint("check indentation and quoting on this line; strings containing `: ` or `#` need quotes")
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<Value>::deserialize(deserializer)?;
        let location = spanned.referenced;
        let span = location.span();
        Ok(Node {
            value: spanned.value,
            span: Span {
                line: u32::try_from(location.line()).unwrap_or(u32::MAX),
                col: u32::try_from(location.column()).unwrap_or(u32::MAX),
                offset: usize::try_from(span.byte_offset().unwrap_or(0)).unwrap_or(0),
                len: usize::try_from(span.byte_len().unwrap_or(0)).unwrap_or(0),
            },
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}
