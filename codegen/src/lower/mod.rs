//! Lower: the raw YAML tree -> the typed model. Every key is read with its type, every
//! default applied, and every structural mistake (unknown key, wrong type, missing id)
//! recorded; lowering goes on after a mistake so one run reports them all.

use crate::diag::{Diagnostic, Diagnostics, suggestion, with_article};
use crate::model::*;
use crate::parse::{Node, Value};
use crate::source::Span;
use sluice_contract::env::{env_ref, is_env_name};
use sluice_contract::ident::is_identifier;
use sluice_contract::secrets::is_secret_key;
use std::collections::BTreeMap;

mod connections;
mod deployment;
mod flow;
mod pipelines;
mod services;
mod tasks;

pub use pipelines::*;
pub use services::*;
pub use tasks::*;

pub const TOP_KEYS: &[&str] = &["deployment", "connections", "pools", "pgbouncer", "redis", "datasets", "pipelines"];

/// Lowers the whole file. Returns a model even when errors were found, with the broken
/// parts left out or defaulted, so validation can still report what else is wrong.
pub fn lower(root: &Node, diags: &mut Diagnostics) -> Config {
    let mut l = Lowerer { diags };
    l.config(root)
}

struct Lowerer<'d> {
    diags: &'d mut Diagnostics,
}

/// The recognised entries of one YAML mapping.
struct Fields<'n> {
    span: Span,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, _, v)| *v)
    }

    /// The value of `key` unless it is absent or written as `null`/`~`.
    fn value(&self, key: &str) -> Option<&'n Node> {
        self.get(key).filter(|n| n.value != Value::Null)
    }

    fn key_span(&self, key: &str) -> Span {
        self.entries.iter().find(|(k, _, _)| *k == key).map_or(self.span, |(_, k, _)| k.span)
    }
}

impl Lowerer<'_> {
    fn error(&mut self, code: &'static str, span: Span, message: String, hint: Option<String>) {
        let mut d = Diagnostic::error(code, span, message);
        d.hint = hint;
        self.diags.push(d);
    }

    fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        self.error("wrong-type", node.span, format!("{what} must be {expected}, found {}", node.value.kind()), None);
    }

    /// Checks that `node` is a mapping with only `allowed` keys, each once.
    fn fields<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let entries = self.fields_any(node, what)?;
        let mut fields = Fields { span: node.span, entries: Vec::new() };
        for (name, key, value) in entries {
            if allowed.contains(&name) {
                fields.entries.push((name, key, value));
            } else {
                let hint = suggestion(name, allowed.iter().copied())
                    .unwrap_or_else(|| format!("known keys: {}", allowed.join(", ")));
                self.error("unknown-key", key.span, format!("unknown key `{name}` in {what}"), Some(hint));
            }
        }
        Some(fields)
    }

    fn missing(&mut self, fields: &Fields<'_>, key: &str, what: &str, hint: &str) {
        self.error("missing-key", fields.span, format!("{what} has no `{key}`"), Some(hint.into()));
    }

    /// A string that must be there; its absence is reported with `hint`.
    fn required(&mut self, fields: &Fields<'_>, key: &str, what: &str, hint: &str) -> Option<Sp<String>> {
        let value = self.opt_string(fields, key, what);
        if value.is_none() && fields.value(key).is_none() {
            self.missing(fields, key, what, hint);
        }
        value
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Sp<String>> {
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            _ => {
                self.wrong_type(node, what, "a string");
                return None;
            }
        };
        Some(Sp::new(text, node.span))
    }

    fn opt_string(&mut self, fields: &Fields<'_>, key: &str, what: &str) -> Option<Sp<String>> {
        let node = fields.value(key)?;
        self.string(node, &format!("`{key}` of {what}"))
    }

    fn string_or(&mut self, fields: &Fields<'_>, key: &str, what: &str, default: &str) -> Sp<String> {
        self.opt_string(fields, key, what).unwrap_or_else(|| Sp::new(default.to_string(), fields.key_span(key)))
    }

    fn integer<T: TryFrom<i64>>(&mut self, node: &Node, what: &str, min: i64, max: i64) -> Option<Sp<T>> {
        let Value::Int(i) = node.value else {
            self.wrong_type(node, what, &format!("an integer from {min} to {max}"));
            return None;
        };
        if i < min || i > max {
            self.error("out-of-range", node.span, format!("{what} must be from {min} to {max}, found {i}"), None);
            return None;
        }
        T::try_from(i).ok().map(|v| Sp::new(v, node.span))
    }

    fn int_or<T: TryFrom<i64> + Default>(
        &mut self,
        fields: &Fields<'_>,
        key: &str,
        what: &str,
        (min, max): (i64, i64),
        default: T,
    ) -> Sp<T> {
        let span = fields.key_span(key);
        fields
            .value(key)
            .and_then(|n| self.integer(n, &format!("`{key}` of {what}"), min, max))
            .unwrap_or(Sp::new(default, span))
    }

    fn bool_or(&mut self, fields: &Fields<'_>, key: &str, what: &str, default: bool) -> Sp<bool> {
        match fields.value(key) {
            Some(node) => match node.value {
                Value::Bool(b) => Sp::new(b, node.span),
                _ => {
                    self.wrong_type(node, &format!("`{key}` of {what}"), "`true` or `false`");
                    Sp::new(default, node.span)
                }
            },
            None => Sp::new(default, fields.key_span(key)),
        }
    }

    /// A list of strings; a single string is read as a list of one.
    fn string_list(&mut self, fields: &Fields<'_>, key: &str, what: &str) -> Vec<Sp<String>> {
        let Some(node) = fields.value(key) else { return Vec::new() };
        let what = format!("`{key}` of {what}");
        match &node.value {
            Value::Seq(items) => items.iter().filter_map(|i| self.string(i, &format!("an entry of {what}"))).collect(),
            Value::Str(_) => self.string(node, &what).into_iter().collect(),
            _ => {
                self.wrong_type(node, &what, "a list of strings");
                Vec::new()
            }
        }
    }

    /// `90` (seconds), `30s`, `5m`, `2h`, `1d`, or combinations like `1h30m`.
    fn duration(&mut self, node: &Node, what: &str) -> Option<u64> {
        match &node.value {
            Value::Int(i) if *i >= 0 => u64::try_from(*i).ok(),
            Value::Str(s) => match parse_duration(s) {
                Some(secs) => Some(secs),
                None => {
                    self.error(
                        "invalid-duration",
                        node.span,
                        format!("{what} is not a duration: `{s}`"),
                        Some("write seconds as a number, or a duration like `30s`, `5m`, `2h`, `1d`, `1h30m`".into()),
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(node, what, "a duration like `5m`");
                None
            }
        }
    }

    fn env_name(&mut self, fields: &Fields<'_>, key: &str, what: &str, default: &str) -> Sp<String> {
        let name = self.string_or(fields, key, what, default);
        if !is_env_name(&name.value) {
            self.error(
                "invalid-env-name",
                name.span,
                format!("`{key}` of {what} must name an environment variable, found `{}`", name.value),
                Some("use capitals, digits and `_`, e.g. `SLUICE_ADMIN_PASSWORD`".into()),
            );
        }
        name
    }

    /// A secret: must be `${ENV_VAR}`; a literal value is an error and is never kept.
    fn secret(&mut self, node: &Node, what: &str, suggested_env: &str) -> Option<Sp<EnvRef>> {
        let text = self.string(node, what)?;
        match env_ref(&text.value) {
            Some(env) => Some(Sp::new(EnvRef { env: env.to_string() }, text.span)),
            None => {
                self.error(
                    "literal-secret",
                    text.span,
                    format!("{what} is a literal secret; secrets must come from the environment"),
                    Some(format!(
                        "write `${{{suggested_env}}}` and set {suggested_env} in the environment (see generated/.env.example)"
                    )),
                );
                None
            }
        }
    }

    fn config(&mut self, root: &Node) -> Config {
        let top =
            self.fields(root, "the top level", TOP_KEYS).unwrap_or(Fields { span: root.span, entries: Vec::new() });
        let deployment = self.deployment(top.value("deployment"));
        let connections = self.list(top.value("connections"), "`connections`", |l, n, i| l.connection(n, i));
        let pools = self.list(top.value("pools"), "`pools`", |l, n, _| l.pool(n));
        let pgbouncer = self.pgbouncer(top.value("pgbouncer"));
        let redis = self.redis(top.value("redis"));
        if top.get("pipelines").is_none() {
            self.missing(&top, "pipelines", "the file", "add `pipelines:` with at least one pipeline");
        }
        let paused = deployment.executor.paused_at_creation;
        let datasets = self.list(top.value("datasets"), "`datasets`", |l, n, i| l.dataset(n, i));
        let pipelines = self.list(top.value("pipelines"), "`pipelines`", |l, n, _| l.pipeline(n, paused));
        Config { deployment, connections, pools, pgbouncer, redis, datasets, pipelines }
    }

    fn list<T>(
        &mut self,
        node: Option<&Node>,
        what: &str,
        mut item: impl FnMut(&mut Self, &Node, usize) -> Option<T>,
    ) -> Vec<T> {
        let Some(node) = node else { return Vec::new() };
        let Value::Seq(items) = &node.value else {
            self.wrong_type(node, what, "a list (entries start with `- `)");
            return Vec::new();
        };
        items.iter().enumerate().filter_map(|(i, n)| item(self, n, i)).collect()
    }

    fn sub_fields<'n>(&mut self, node: Option<&'n Node>, what: &str, keys: &[&str], at: Span) -> Fields<'n> {
        node.and_then(|n| self.fields(n, what, keys)).unwrap_or(Fields { span: at, entries: Vec::new() })
    }
}

/// The string under `key` of a mapping node, read before the mapping is checked so
/// messages about it can already name it.
fn peek_id(node: &Node, key: &str) -> Option<String> {
    let Value::Map(entries) = &node.value else { return None };
    entries.iter().find_map(|(k, v)| match (&k.value, &v.value) {
        (Value::Str(k), Value::Str(v)) if k == key => Some(v.clone()),
        _ => None,
    })
}

fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(secs);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
        any = true;
    }
    (any && number.is_empty()).then_some(total)
}

fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match &k.value {
                        Value::Str(s) => s.clone(),
                        other => to_json(&Node { value: other.clone(), span: k.span }).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("2d"), Some(172_800));
        assert_eq!(parse_duration("5 minutes"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5m3"), None);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512mb"), Some(512 * 1024 * 1024));
        assert_eq!(parse_memory("2GB"), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_memory("lots"), None);
    }
}
