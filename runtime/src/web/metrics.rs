//! `/metrics` in Prometheus' text format: runs and task instances by state, queue depth,
//! the queued-to-running delay and task durations over the last hour, and the age of each
//! service's heartbeat.

use super::AppState;
use super::auth::Caller;
use super::problem::Problem;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;

/// The window of the timing metrics.
const WINDOW_MICROS: i64 = 3_600_000_000;

pub async fn metrics(State(state): State<AppState>, _caller: Caller) -> Result<Response, Problem> {
    let now = state.store.now();
    let snap = state.store.metrics(now - WINDOW_MICROS).await?;
    let mut out = String::new();
    family(&mut out, "sluice_dag_runs", "gauge", "DAG runs by state.");
    for (s, n) in &snap.runs {
        let _ = writeln!(out, "sluice_dag_runs{{state=\"{}\"}} {n}", escape(s));
    }
    family(&mut out, "sluice_task_instances", "gauge", "Task instances by state.");
    for (s, n) in &snap.task_instances {
        let _ = writeln!(out, "sluice_task_instances{{state=\"{}\"}} {n}", escape(s));
    }
    family(&mut out, "sluice_queue_depth", "gauge", "Task instances waiting in queued, by queue.");
    for (q, n) in &snap.queued {
        let _ = writeln!(out, "sluice_queue_depth{{queue=\"{}\"}} {n}", escape(q));
    }
    let (count, sum, worst) = snap.scheduling_delay;
    family(
        &mut out,
        "sluice_scheduling_delay_seconds",
        "summary",
        "Queued to running, tries started in the last hour.",
    );
    let _ = writeln!(out, "sluice_scheduling_delay_seconds_count {count}");
    let _ = writeln!(out, "sluice_scheduling_delay_seconds_sum {}", seconds(sum));
    family(
        &mut out,
        "sluice_scheduling_delay_max_seconds",
        "gauge",
        "The longest queued-to-running delay in the last hour.",
    );
    let _ = writeln!(out, "sluice_scheduling_delay_max_seconds {}", seconds(worst));
    family(&mut out, "sluice_task_duration_seconds", "summary", "Durations of tries that ended in the last hour.");
    for (p, n, total) in &snap.durations {
        let p = escape(p);
        let _ = writeln!(out, "sluice_task_duration_seconds_count{{dag_id=\"{p}\"}} {n}");
        let _ = writeln!(out, "sluice_task_duration_seconds_sum{{dag_id=\"{p}\"}} {}", seconds(*total));
    }
    family(&mut out, "sluice_heartbeat_age_seconds", "gauge", "Seconds since each running service's last heartbeat.");
    for (job, host, at) in &snap.heartbeats {
        let _ = writeln!(
            out,
            "sluice_heartbeat_age_seconds{{job_type=\"{}\",hostname=\"{}\"}} {}",
            escape(job),
            escape(host),
            seconds(now - at)
        );
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response())
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn seconds(micros: i64) -> f64 {
    micros as f64 / 1e6
}

/// A label value as Prometheus reads it: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
