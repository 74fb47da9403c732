//! Python: `python/sluice_context.py`, the typed context of every Python task, so that
//! `mypy --strict` checks a task's function against what `pipelines.yaml` declares before
//! deploy: the params and connections it reads, the outputs of its upstream tasks, and the
//! names and types of the outputs it returns (a branch's choice among its targets too).

use super::GeneratedFile;
use super::rust::variant as camel;
use crate::model::*;
use std::fmt::Write as _;

/// The module, when any pipeline has a Python task.
pub fn render(config: &Config, source: &str) -> Option<GeneratedFile> {
    let with_python: Vec<&Pipeline> = config.pipelines.iter().filter(|p| p.tasks.iter().any(is_python)).collect();
    if with_python.is_empty() {
        return None;
    }
    let mut out = super::header("#", source);
    out.push_str(PRELUDE);
    for p in with_python {
        pipeline(&mut out, p);
    }
    Some(GeneratedFile { path: "python/sluice_context.py".into(), contents: out })
}

fn is_python(t: &Task) -> bool {
    matches!(t.kind, TaskKind::Python { .. })
}

const PRELUDE: &str = r#""""Typed contexts of the Python tasks in pipelines.yaml.

A task function takes its context and returns its outputs:

    from sluice_context import GamesReportWriteReportContext, GamesReportWriteReportOutputs

    def write_report(ctx: GamesReportWriteReportContext) -> GamesReportWriteReportOutputs:
        ...

`mypy --strict` over the task modules and this file checks every name and type.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class SkipTask(Exception):
    """Raise to end the task `skipped`; the message says why."""


class NotReady(Exception):
    """Raise in a sensor: its condition does not hold yet, it pokes again later."""


class Run(TypedDict):
    pipeline_id: str
    run_id: str
    task_id: str
    try_number: int
    logical_date: str
    data_interval_start: str
    data_interval_end: str
    run_type: str
    conf: dict[str, Any]


class Connection(TypedDict):
    conn_id: str
    conn_type: str
    host: str | None
    port: int | None
    login: str | None
    password: str | None
    schema: str | None
    database: str | None
    extra: dict[str, Any]
"#;

fn python_type(ty: &ValueType) -> String {
    match ty {
        ValueType::String => "str".into(),
        ValueType::Int => "int".into(),
        ValueType::Float => "float".into(),
        ValueType::Bool => "bool".into(),
        ValueType::Json => "Any".into(),
        ValueType::List(inner) => format!("list[{}]", python_type(inner)),
    }
}

/// One `TypedDict` class; `fields` of `(name, type)`; a class without fields says `pass`.
fn class(out: &mut String, name: &str, fields: &[(String, String)], total: bool) {
    let total = if total { "" } else { ", total=False" };
    let _ = writeln!(out, "\n\nclass {name}(TypedDict{total}):");
    if fields.is_empty() {
        out.push_str("    pass\n");
    }
    for (field, ty) in fields {
        let _ = writeln!(out, "    {field}: {ty}");
    }
}

/// Every output a task hands downstream, with its Python type.
fn outputs_of(t: &Task) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> =
        implicit_outputs(&t.kind).into_iter().map(|(n, ty)| (n.to_string(), python_type(&ty))).collect();
    fields.extend(t.outputs.iter().map(|o| (o.name.value.clone(), python_type(&o.ty.value))));
    if !t.branch.is_empty() {
        let targets: Vec<String> = t.branch.iter().map(|b| format!("{:?}", b.value)).collect();
        fields.push(("branch".into(), format!("list[Literal[{}]]", targets.join(", "))));
    }
    fields
}

fn pipeline(out: &mut String, p: &Pipeline) {
    let prefix = camel(&p.id.value);
    let _ = write!(out, "\n\n# Pipeline `{}`", p.id.value);
    let params: Vec<(String, String)> =
        p.params.iter().map(|q| (q.name.value.clone(), python_type(&q.ty.value))).collect();
    class(out, &format!("{prefix}Params"), &params, true);
    // The outputs of every task a Python task reads, and of the Python tasks themselves.
    let mut described: Vec<&str> = Vec::new();
    for t in p.tasks.iter().filter(|t| is_python(t)) {
        let upstream = t.depends_on.iter().filter_map(|d| p.task(&d.value));
        for u in upstream.chain(std::iter::once(t)) {
            if !described.contains(&u.id.value.as_str()) {
                described.push(&u.id.value);
                class(out, &format!("{prefix}{}Outputs", camel(&u.id.value)), &outputs_of(u), true);
            }
        }
    }
    for t in p.tasks.iter().filter(|t| is_python(t)) {
        let name = format!("{prefix}{}", camel(&t.id.value));
        let connections: Vec<(String, String)> =
            t.connections.iter().map(|c| (c.value.clone(), "Connection".to_string())).collect();
        class(out, &format!("{name}Connections"), &connections, true);
        let upstream: Vec<(String, String)> =
            t.depends_on.iter().map(|d| (d.value.clone(), format!("{prefix}{}Outputs", camel(&d.value)))).collect();
        // Outputs of an upstream that did not succeed are absent when the rule runs the task anyway.
        let total = t.trigger_rule.value.needs_all_upstream_success();
        class(out, &format!("{name}Upstream"), &upstream, total);
        let context = [
            ("params".to_string(), format!("{prefix}Params")),
            ("run".to_string(), "Run".to_string()),
            ("connections".to_string(), format!("{name}Connections")),
            ("upstream".to_string(), format!("{name}Upstream")),
        ];
        class(out, &format!("{name}Context"), &context, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_camel_case_of_pipeline_and_task() {
        assert_eq!(camel("games_report"), "GamesReport");
        assert_eq!(python_type(&ValueType::List(Box::new(ValueType::Int))), "list[int]");
    }
}
