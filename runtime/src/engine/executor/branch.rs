//! A branch task's choice: which of its `branch:` targets run. A Rust body returns it as its
//! `branch` output (the generated enum, so only targets compile); a shell command names the
//! targets on its last line of output. A name outside the list fails the task.

use crate::spec::{TaskKind, TaskSpec};
use crate::task::TaskError;
use sluice_contract::outputs;

/// The outputs with the choice checked and, for a shell task, added under `branch`.
pub(super) fn choice(task: &TaskSpec, mut outputs: serde_json::Value) -> Result<serde_json::Value, TaskError> {
    let chosen: Vec<String> = match &task.kind {
        TaskKind::Shell { .. } => {
            let line = outputs.get(outputs::SHELL_STDOUT).and_then(|v| v.as_str()).unwrap_or_default();
            let names = names_on(line);
            if names.is_empty() {
                return Err(TaskError::new(format!(
                    "branch task `{}` printed no choice: its last line of output must name the tasks to run, of {}",
                    task.id,
                    listed(task.branch)
                )));
            }
            names
        }
        _ => match outputs.get(outputs::BRANCH) {
            Some(serde_json::Value::Array(items)) => {
                items.iter().map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string())).collect()
            }
            _ => {
                return Err(TaskError::new(format!(
                    "branch task `{}` returned no `branch` output naming the tasks to run",
                    task.id
                )));
            }
        },
    };
    if let Some(stranger) = chosen.iter().find(|c| !task.branch.contains(&c.as_str())) {
        return Err(TaskError::new(format!(
            "branch task `{}` chose `{stranger}`, which is not one of its branch targets ({})",
            task.id,
            listed(task.branch)
        )));
    }
    if let serde_json::Value::Object(map) = &mut outputs {
        map.insert(outputs::BRANCH.to_string(), serde_json::json!(chosen));
    }
    Ok(outputs)
}

/// The task ids a line names: separated by commas or white space.
fn names_on(line: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in line.split(|c: char| c == ',' || c.is_whitespace()).filter(|n| !n.is_empty()) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

fn listed(targets: &[&str]) -> String {
    targets.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_tasks_by_comma_or_space_once_each() {
        assert_eq!(names_on("report, archive  report"), ["report", "archive"]);
        assert_eq!(names_on("   "), Vec::<String>::new());
    }
}
