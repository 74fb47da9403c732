//! Plan: what changes in production if the current YAML is deployed, compared with the
//! committed `generated/pipelines.lock.json`. Written for a pull request, in words.

use crate::model::{Config, Pipeline, Schedule, Task};
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write;

/// How many fire times to show before and after a schedule change.
const FIRE_TIMES: usize = 3;

#[derive(Debug, Default)]
pub struct Plan {
    /// One line per change, indented under the pipeline it belongs to.
    pub lines: Vec<String>,
    pub counts: Counts,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub pipelines_added: usize,
    pub pipelines_removed: usize,
    pub pipelines_changed: usize,
    pub connections_changed: usize,
    pub settings_changed: usize,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.lines.is_empty()
    }

    pub fn render(&self, source: &str, lock: &str) -> String {
        let mut out = format!("Plan: {source} against {lock}\n\n");
        if !self.has_changes() {
            out.push_str("No changes. The deployed pipelines match the YAML.\n");
            return out;
        }
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        let c = &self.counts;
        let _ = writeln!(
            out,
            "\nPlan: {} pipeline(s) to add, {} to change, {} to remove; {} connection/pool/dataset change(s); {} setting(s) changed.",
            c.pipelines_added, c.pipelines_changed, c.pipelines_removed, c.connections_changed, c.settings_changed
        );
        out
    }
}

/// Compares the locked model with the current one.
pub fn plan(old: &Config, new: &Config) -> Plan {
    let mut plan = Plan::default();
    settings(&mut plan, old, new);
    named(
        &mut plan,
        "connection",
        old.connections.iter().map(|c| (c.id.value.clone(), json(c), format!("({})", c.conn_type.value.name()))),
        new.connections.iter().map(|c| (c.id.value.clone(), json(c), format!("({})", c.conn_type.value.name()))),
    );
    named(
        &mut plan,
        "pool",
        old.pools.iter().map(|p| (p.name.value.clone(), json(p), format!("({} slots)", p.slots.value))),
        new.pools.iter().map(|p| (p.name.value.clone(), json(p), format!("({} slots)", p.slots.value))),
    );
    named(
        &mut plan,
        "dataset",
        old.datasets.iter().map(|d| (d.id.value.clone(), json(d), format!("({})", d.uri.value))),
        new.datasets.iter().map(|d| (d.id.value.clone(), json(d), format!("({})", d.uri.value))),
    );
    for p in &new.pipelines {
        match old.pipelines.iter().find(|o| o.id.value == p.id.value) {
            None => {
                plan.counts.pipelines_added += 1;
                plan.lines.push(format!(
                    "+ pipeline {} ({}, {} task(s){})",
                    p.id.value,
                    crate::schedule::describe(&p.schedule.value),
                    p.tasks.len(),
                    if p.paused_at_creation { ", paused at creation" } else { "" }
                ));
                if let Some(next) = fire_times(p) {
                    plan.lines.push(format!("    first runs: {next}"));
                }
            }
            Some(o) => {
                let before = plan.lines.len();
                plan.lines.push(format!("~ pipeline {}", p.id.value));
                pipeline(&mut plan.lines, o, p);
                if plan.lines.len() == before + 1 {
                    plan.lines.pop();
                } else {
                    plan.counts.pipelines_changed += 1;
                }
            }
        }
    }
    for o in &old.pipelines {
        if !new.pipelines.iter().any(|p| p.id.value == o.id.value) {
            plan.counts.pipelines_removed += 1;
            plan.lines
                .push(format!("- pipeline {} (becomes inactive; its runs and logs stay in the store)", o.id.value));
        }
    }
    plan
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn short(value: &Value) -> String {
    match value {
        Value::Null => "none".into(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// `path: old -> new` for every leaf that differs; lists compare as a whole.
fn diff(prefix: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                diff(&path, a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null), out);
            }
        }
        (a, b) if a != b => out.push(format!("{prefix}: {} -> {}", short(a), short(b))),
        _ => {}
    }
}

fn settings(plan: &mut Plan, old: &Config, new: &Config) {
    let mut lines = Vec::new();
    diff("deployment", &json(&old.deployment), &json(&new.deployment), &mut lines);
    diff("pgbouncer", &json(&old.pgbouncer), &json(&new.pgbouncer), &mut lines);
    diff("redis", &json(&old.redis), &json(&new.redis), &mut lines);
    plan.counts.settings_changed += lines.len();
    plan.lines.extend(lines.into_iter().map(|l| format!("~ {l}")));
}

fn named(
    plan: &mut Plan,
    what: &str,
    old: impl Iterator<Item = (String, Value, String)>,
    new: impl Iterator<Item = (String, Value, String)>,
) {
    let old: Vec<_> = old.collect();
    let new: Vec<_> = new.collect();
    for (id, value, summary) in &new {
        match old.iter().find(|(o, _, _)| o == id) {
            None => {
                plan.counts.connections_changed += 1;
                plan.lines.push(format!("+ {what} {id} {summary}"));
            }
            Some((_, before, _)) if before != value => {
                plan.counts.connections_changed += 1;
                let mut lines = Vec::new();
                diff("", before, value, &mut lines);
                plan.lines.push(format!("~ {what} {id}: {}", lines.join("; ")));
            }
            Some(_) => {}
        }
    }
    for (id, _, summary) in &old {
        if !new.iter().any(|(n, _, _)| n == id) {
            plan.counts.connections_changed += 1;
            plan.lines.push(format!("- {what} {id} {summary}"));
        }
    }
}

fn pipeline(lines: &mut Vec<String>, old: &Pipeline, new: &Pipeline) {
    if old.schedule.value != new.schedule.value || old.timezone.value != new.timezone.value {
        lines.push(format!(
            "    ~ schedule: {} ({}) -> {} ({})",
            old.schedule.value, old.timezone.value, new.schedule.value, new.timezone.value
        ));
        lines.push(format!("        next runs before: {}", fire_times(old).unwrap_or_else(|| "none scheduled".into())));
        lines.push(format!("        next runs after:  {}", fire_times(new).unwrap_or_else(|| "none scheduled".into())));
    }
    let strip = |p: &Pipeline| {
        let mut v = json(p);
        if let Value::Object(map) = &mut v {
            for key in ["tasks", "schedule", "timezone", "id"] {
                map.remove(key);
            }
        }
        v
    };
    let mut changes = Vec::new();
    diff("", &strip(old), &strip(new), &mut changes);
    lines.extend(changes.into_iter().map(|c| format!("    ~ {c}")));
    tasks(lines, old, new);
}

fn tasks(lines: &mut Vec<String>, old: &Pipeline, new: &Pipeline) {
    let strip = |t: &Task| {
        let mut v = json(t);
        if let Value::Object(map) = &mut v {
            map.remove("id");
            map.remove("renamed_from");
        }
        v
    };
    let mut matched_old: BTreeSet<&str> = BTreeSet::new();
    for t in &new.tasks {
        let same = old.task(&t.id.value);
        let renamed = same
            .is_none()
            .then(|| t.renamed_from.iter().find_map(|r| old.task(&r.value).filter(|_| new.task(&r.value).is_none())));
        let (before, label) = match (same, renamed.flatten()) {
            (Some(o), _) => (o, format!("task {}", t.id.value)),
            (None, Some(o)) => (o, format!("task {} renamed from {} (history kept)", t.id.value, o.id.value)),
            (None, None) => {
                lines.push(format!("    + task {} ({})", t.id.value, t.kind.name()));
                continue;
            }
        };
        matched_old.insert(&before.id.value);
        let mut changes = Vec::new();
        diff("", &strip(before), &strip(t), &mut changes);
        if before.id.value != t.id.value || !changes.is_empty() {
            let detail = if changes.is_empty() { String::new() } else { format!(": {}", changes.join("; ")) };
            lines.push(format!("    ~ {label}{detail}"));
        }
    }
    for o in &old.tasks {
        if !matched_old.contains(o.id.value.as_str()) {
            lines.push(format!(
                "    - task {} (its history stays; add `renamed_from: [{}]` to a task to keep it under a new id)",
                o.id.value, o.id.value
            ));
        }
    }
}

/// The next fire times from now, in the pipeline's timezone.
fn fire_times(p: &Pipeline) -> Option<String> {
    let Schedule::Cron(_) = p.schedule.value else { return None };
    let cron = crate::schedule::parse(&p.schedule.value).ok()?;
    let tz: chrono_tz::Tz = p.timezone.value.parse().ok()?;
    let now = Utc::now().with_timezone(&tz);
    let times = crate::schedule::next_fire_times(&cron, &now, FIRE_TIMES);
    Some(times.iter().map(|t| t.format("%Y-%m-%d %H:%M %Z").to_string()).collect::<Vec<_>>().join(", "))
}
