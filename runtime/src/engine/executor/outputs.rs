//! Declared outputs a task hands over as text or JSON (a shell command's `$SLUICE_OUTPUTS`
//! file): checked against the types `pipelines.yaml` declares before they reach the store, so
//! a downstream task never reads a value of the wrong type. A mismatch fails the task,
//! naming the output.

pub(crate) use crate::params::{has_type, type_name};
use crate::spec::{OutputSpec, TaskKind, TaskSpec, ValueType};
use crate::task::TaskError;
use serde_json::{Map, Value};
use sluice_contract::outputs;

/// The outputs a task declares itself (those under `outputs:`), without the ones its kind
/// always has and a branch's choice.
pub(super) fn declared(task: &TaskSpec) -> impl Iterator<Item = &'static OutputSpec> + use<'_> {
    let implicit: &[(&str, ValueType)] = match task.kind {
        TaskKind::Shell { .. } => &outputs::SHELL,
        TaskKind::Http { .. } => &outputs::HTTP,
        TaskKind::Sql { .. } => &outputs::SQL,
        TaskKind::Rust { .. } | TaskKind::Python { .. } => &[],
    };
    let branch = !task.branch.is_empty();
    task.outputs.iter().filter(move |o| {
        let is_choice = branch && o.name == outputs::BRANCH;
        let is_implicit = implicit.iter().any(|(name, _)| *name == o.name);
        !(is_choice || is_implicit)
    })
}

/// `name=value` lines (blank lines and `#` comments ignored; a later line for the same
/// name wins), each value read as its declared type. Every declared output must be there,
/// and nothing else.
pub(super) fn from_lines(task: &str, declared: &[&OutputSpec], text: &str) -> Result<Map<String, Value>, TaskError> {
    let mut found = Map::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(TaskError::new(format!(
                "line {} of `$SLUICE_OUTPUTS` is not `name=value`: `{}`",
                number + 1,
                cut(line)
            )));
        };
        let name = name.trim();
        let Some(spec) = declared.iter().find(|o| o.name == name) else {
            let names: Vec<&str> = declared.iter().map(|o| o.name).collect();
            return Err(TaskError::new(format!(
                "task `{task}` wrote output `{name}`, which it does not declare (its outputs: {})",
                names.join(", ")
            )));
        };
        let typed = typed(&spec.ty, value).ok_or_else(|| mismatch(task, spec, value))?;
        found.insert(name.to_string(), typed);
    }
    if let Some(missing) = declared.iter().find(|o| !found.contains_key(o.name)) {
        return Err(TaskError::new(format!(
            "task `{task}` did not write its output `{}` (a `{}=<{}>` line in `$SLUICE_OUTPUTS`)",
            missing.name,
            missing.name,
            type_name(missing.ty)
        )));
    }
    Ok(found)
}

/// `text` read as a value of `ty`: strings as written, the others as JSON (`true`, `3`,
/// `[1, 2]`).
fn typed(ty: &ValueType, text: &str) -> Option<Value> {
    if *ty == ValueType::String {
        return Some(Value::String(text.to_string()));
    }
    let value: Value = serde_json::from_str(text.trim()).ok()?;
    has_type(*ty, &value).then_some(value)
}

fn mismatch(task: &str, spec: &OutputSpec, value: &str) -> TaskError {
    TaskError::new(format!(
        "output `{}` of task `{task}` is declared `{}`, but the task wrote `{}`",
        spec.name,
        type_name(spec.ty),
        cut(value)
    ))
}

/// A value as a message quotes it: at most 80 characters.
fn cut(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static DECLARED: [OutputSpec; 3] = [
        OutputSpec { name: "rows", ty: ValueType::Int },
        OutputSpec { name: "path", ty: ValueType::String },
        OutputSpec { name: "leagues", ty: ValueType::List(&ValueType::String) },
    ];

    fn read(text: &str) -> Result<Value, String> {
        let declared: Vec<&OutputSpec> = DECLARED.iter().collect();
        from_lines("load", &declared, text).map(Value::Object).map_err(|e| e.message)
    }

    #[test]
    fn lines_are_read_as_their_declared_types() {
        let text = "# written by load.sh\nrows=42\npath=/data/a b=c.csv\n\nleagues=[\"nfl\", \"nba\"]\n";
        assert_eq!(
            read(text),
            Ok(serde_json::json!({"rows": 42, "path": "/data/a b=c.csv", "leagues": ["nfl", "nba"]}))
        );
    }

    #[test]
    fn a_mismatch_a_stranger_or_a_missing_output_fails_naming_it() {
        let wrong = read("rows=many\npath=x\nleagues=[]").expect_err("fails");
        assert_eq!(wrong, "output `rows` of task `load` is declared `int`, but the task wrote `many`");
        let stranger = read("rows=1\npath=x\nleagues=[]\ncount=2").expect_err("fails");
        assert!(stranger.contains("wrote output `count`, which it does not declare"), "{stranger}");
        let missing = read("rows=1\npath=x").expect_err("fails");
        assert!(missing.contains("did not write its output `leagues`"), "{missing}");
        let list = read("rows=1\npath=x\nleagues=[1]").expect_err("fails");
        assert!(list.contains("declared `list<string>`"), "{list}");
    }
}
