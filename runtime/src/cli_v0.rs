//! The `sluice` command line. This first cut lists what was compiled in; the services
//! (`init`, `scheduler`, `worker`, `webserver`) arrive with the runtime.

use crate::registry::Registry;
use crate::spec::{Schedule, TaskKind};
use std::process::ExitCode;

const USAGE: &str = "usage: sluice <command>

commands:
  dags list             list the compiled pipelines
  tasks list <dag_id>   list a pipeline's tasks in dependency order
  version               print the version
";

/// Runs the command line over the compiled `registry`; returns the process exit code.
pub fn main(registry: &Registry) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["dags", "list"] => {
            print!("{}", dags_table(registry));
            ExitCode::SUCCESS
        }
        ["tasks", "list", dag_id] => match tasks_table(registry, dag_id) {
            Some(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("error: no pipeline `{dag_id}` in {}; `sluice dags list` shows them", registry.source);
                ExitCode::FAILURE
            }
        },
        ["version"] | ["--version"] => {
            println!("sluice {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["help"] | ["--help"] | ["-h"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("error: unknown command `{}`\n\n{USAGE}", args.join(" "));
            ExitCode::from(2)
        }
    }
}

/// The pipelines as a table: id, schedule, owner, paused at creation, tasks.
pub fn dags_table(registry: &Registry) -> String {
    let rows: Vec<Vec<String>> = registry
        .pipelines
        .iter()
        .map(|p| {
            let schedule = match p.schedule {
                Schedule::Manual => "None".to_string(),
                _ => p.schedule_text.to_string(),
            };
            vec![p.id.into(), schedule, p.owner.into(), p.paused_at_creation.to_string(), p.tasks.len().to_string()]
        })
        .collect();
    table(&["dag_id", "schedule", "owner", "paused_at_creation", "tasks"], &rows)
}

/// A pipeline's tasks: id, kind, upstream.
pub fn tasks_table(registry: &Registry, dag_id: &str) -> Option<String> {
    let pipeline = registry.pipeline(dag_id)?;
    let rows: Vec<Vec<String>> = pipeline
        .tasks
        .iter()
        .map(|t| {
            let kind = match t.kind {
                TaskKind::Rust { .. } => "rust",
                TaskKind::Shell { .. } => "shell",
                TaskKind::Http { .. } => "http",
                TaskKind::Sql { .. } => "sql",
            };
            vec![t.id.into(), kind.into(), t.depends_on.join(", ")]
        })
        .collect();
    Some(table(&["task_id", "kind", "depends_on"], &rows))
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join(" | ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    out += &(widths.iter().map(|w| "=".repeat(*w)).collect::<Vec<_>>().join("=|=") + "\n");
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}
