//! Validate: checks over the whole model that need more than one key at a time —
//! references, graphs, schedules, templates, feasibility. Every finding is collected.

use crate::diag::{Diagnostic, Diagnostics, suggestion};
use crate::model::*;
use crate::source::{SourceFile, Span};
use sluice_contract::ident::is_identifier;
use sluice_contract::outputs;
use sluice_contract::template::{DAG_RUN_ATTRIBUTES, MACROS, TEMPLATE_VARIABLES};
use std::collections::{BTreeSet, HashMap};

mod connections;
mod datasets;
mod deployment;
mod flow;
mod pipelines;
mod tasks;
mod templates;

/// Above this many runs, a `catchup: true` pipeline's first start gets a warning.
pub const CATCHUP_WARN_RUNS: usize = 100;
/// Rough client connections one Sluice process opens to PgBouncer (its pool size).
const CLIENTS_PER_PROCESS: u32 = 10;

pub fn validate(config: &Config, file: &SourceFile, diags: &mut Diagnostics) {
    let mut v = Validator { config, file, diags, has_cycle: false };
    v.ids();
    v.connections();
    v.pools_and_queues();
    v.datasets();
    for pipeline in &config.pipelines {
        v.pipeline(pipeline);
    }
    v.deployment();
}

struct Validator<'a> {
    config: &'a Config,
    file: &'a SourceFile,
    diags: &'a mut Diagnostics,
    has_cycle: bool,
}

impl Validator<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Ids become Rust names in the generated code: check them once, everywhere.
    fn identifier(&mut self, id: &Sp<String>, what: &str) {
        if !is_identifier(&id.value) {
            let fixed: String = id
                .value
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
                .collect();
            self.push(
                Diagnostic::error("invalid-id", id.span, format!("{what} id `{}` is not a valid id", id.value))
                    .with_hint(format!(
                        "ids are lowercase letters, digits and `_`, starting with a letter, e.g. `{fixed}`"
                    )),
            );
        } else if syn::parse_str::<syn::Ident>(&id.value).is_err() {
            self.push(
                Diagnostic::error(
                    "invalid-id",
                    id.span,
                    format!("{what} id `{}` is a reserved word in Rust", id.value),
                )
                .with_hint(format!("rename it, e.g. `{}_task`", id.value)),
            );
        }
    }

    fn duplicates<'s>(&mut self, ids: impl IntoIterator<Item = &'s Sp<String>>, what: &str, scope: &str) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for id in ids {
            if let Some(first) = seen.get(id.value.as_str()) {
                let line = first.line;
                self.push(
                    Diagnostic::error("duplicate-id", id.span, format!("duplicate {what} id `{}`{scope}", id.value))
                        .with_hint(format!("the first `{}` is on line {line}; ids must be unique", id.value)),
                );
            } else {
                seen.insert(&id.value, id.span);
            }
        }
    }

    fn ids(&mut self) {
        let config = self.config;
        self.duplicates(config.pipelines.iter().map(|p| &p.id), "pipeline", "");
        self.duplicates(config.connections.iter().map(|c| &c.id), "connection", "");
        self.duplicates(config.pools.iter().map(|p| &p.name), "pool", "");
        self.duplicates(config.deployment.executor.queues.iter(), "queue", "");
        for p in &config.pipelines {
            self.identifier(&p.id, "pipeline");
            let scope = format!(" in pipeline `{}`", p.id.value);
            self.duplicates(p.tasks.iter().map(|t| &t.id), "task", &scope);
            self.duplicates(p.params.iter().map(|p| &p.name), "param", &scope);
            for param in &p.params {
                self.identifier(&param.name, "param");
            }
            for t in &p.tasks {
                self.identifier(&t.id, "task");
                self.duplicates(t.outputs.iter().map(|o| &o.name), "output", &format!(" in task `{}`", t.id.value));
                for o in &t.outputs {
                    self.identifier(&o.name, "output");
                }
            }
        }
        for c in &config.connections {
            self.identifier(&c.id, "connection");
        }
    }
}
