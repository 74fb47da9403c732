//! Shell tasks: `bash -c <rendered command>` in a process group of its own (see
//! [`super::process`]): on timeout every process the command started (`sleep 1000 &`, a
//! pipeline, a `bash -c` inside) is terminated with it, and so is what it leaves running
//! after it exits. (A process that calls `setsid` leaves the group, as it would leave
//! Airflow's.) Declared outputs come back as `name=value` lines in `$SLUICE_OUTPUTS`.
//!
//! The command starts from an empty environment: `PATH`, `HOME`, `LANG` and `TZ`, the run's
//! facts (`AIRFLOW_CTX_*` and `SLUICE_*` names), the declared connections as
//! `AIRFLOW_CONN_<ID>` URIs and the task's own `env:`. Nothing else of the worker's
//! environment reaches it: not the Fernet key, the session key, the admin password nor the
//! metadata database's URL.

use super::process::run_in_group;
use super::{ExecEnv, render};
use crate::spec::{OutputSpec, PipelineSpec, TaskSpec};
use crate::task::{TaskError, TaskInput};
use crate::template::{Language, TemplateContext};
use sluice_contract::outputs;
use std::time::Duration;
use tokio::process::Command;

/// The variable naming the file a shell task writes its declared outputs to.
const SLUICE_OUTPUTS: &str = "SLUICE_OUTPUTS";

/// A shell task's step, as declared.
pub(super) struct Script<'a> {
    pub command: &'a str,
    pub env: &'a [(&'a str, &'a str)],
    pub skip_exit_code: Option<i32>,
    /// A sensor's exit code for "not yet".
    pub not_ready_exit_code: Option<i32>,
}

pub(super) async fn run(
    pipeline: &PipelineSpec,
    task: &TaskSpec,
    script: Script<'_>,
    input: &TaskInput,
    env: &ExecEnv,
    timeout: Option<Duration>,
) -> Result<serde_json::Value, TaskError> {
    let ctx = TemplateContext::from_input(input, env.variables.clone());
    let command = render(env, input, "the shell command", script.command, &ctx, Some(Language::Shell))?;
    let mut vars = task_env(pipeline, task, input);
    for (name, value) in script.env {
        vars.push((name.to_string(), render(env, input, &format!("`env` {name}"), value, &ctx, None)?));
    }
    // Declared outputs come back as `name=value` lines in a file of the try's own.
    let declared: Vec<&OutputSpec> = super::outputs::declared(task).collect();
    let outputs_file = if declared.is_empty() {
        None
    } else {
        let file = tempfile::Builder::new()
            .prefix("sluice-outputs-")
            .tempfile()
            .map_err(|e| TaskError::new(format!("cannot make the file for the task's outputs: {e}")))?;
        vars.push((SLUICE_OUTPUTS.to_string(), file.path().display().to_string()));
        Some(file)
    };
    let log = &input.log;
    log.info(format!("Running command: {command}"));

    let mut bash = Command::new("bash");
    bash.arg("-c").arg(&command).env_clear().envs(vars);
    let exited = run_in_group(bash, "bash", log, timeout, env.kill_grace).await?;
    let last_line = exited.last_line.clone();

    match exited.code()? {
        0 => {
            let mut outputs = serde_json::Map::new();
            outputs.insert(outputs::SHELL_STDOUT.into(), last_line.unwrap_or_default().into());
            outputs.insert(outputs::SHELL_EXIT_CODE.into(), 0.into());
            if let Some(file) = &outputs_file {
                let text = tokio::fs::read_to_string(file.path()).await.map_err(|e| {
                    TaskError::new(format!("cannot read the task's outputs from `$SLUICE_OUTPUTS`: {e}"))
                })?;
                outputs.extend(super::outputs::from_lines(task.id, &declared, &text)?);
            }
            Ok(serde_json::Value::Object(outputs))
        }
        code if Some(code) == script.not_ready_exit_code => {
            Err(TaskError::not_ready(format!("the command exited with status {code}: not yet")))
        }
        code if Some(code) == script.skip_exit_code => {
            Err(TaskError::skip(format!("the command exited with status {code}, its `skip_exit_code`: skipped")))
        }
        code => Err(TaskError::new(format!("the command exited with status {code} (its output is in the log)"))),
    }
}

/// Variables of the worker's own environment a command gets, each with the value it gets
/// when the worker has none.
const INHERITED: &[(&str, &str)] = &[
    ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    ("HOME", "/"),
    ("LANG", "C.UTF-8"),
    ("TZ", "UTC"),
];

/// The whole environment of a command: see the module's documentation.
pub(super) fn task_env(pipeline: &PipelineSpec, task: &TaskSpec, input: &TaskInput) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = INHERITED
        .iter()
        .map(|(name, default)| (name.to_string(), std::env::var(name).unwrap_or_else(|_| default.to_string())))
        .collect();
    vars.extend(run_facts(pipeline, task, input));
    vars
}

/// The task's identity (Sluice's and Airflow's names) and its connections as
/// `AIRFLOW_CONN_<ID>` URIs.
fn run_facts(pipeline: &PipelineSpec, task: &TaskSpec, input: &TaskInput) -> Vec<(String, String)> {
    let run = &input.run;
    let logical_date = crate::template::isoformat_utc(&run.logical_date).unwrap_or_else(|| run.logical_date.clone());
    let try_number = run.try_number.to_string();
    let mut vars: Vec<(String, String)> = [
        ("SLUICE_PIPELINE_ID", run.pipeline_id.as_str()),
        ("SLUICE_RUN_ID", &run.run_id),
        ("SLUICE_TASK_ID", &run.task_id),
        ("SLUICE_TRY_NUMBER", &try_number),
        ("SLUICE_LOGICAL_DATE", &logical_date),
        ("AIRFLOW_CTX_DAG_ID", &run.pipeline_id),
        ("AIRFLOW_CTX_TASK_ID", &run.task_id),
        ("AIRFLOW_CTX_RUN_ID", &run.run_id),
        // Airflow's own name for the run id, and Airflow 2's for the logical date.
        ("AIRFLOW_CTX_DAG_RUN_ID", &run.run_id),
        ("AIRFLOW_CTX_LOGICAL_DATE", &logical_date),
        ("AIRFLOW_CTX_EXECUTION_DATE", &logical_date),
        ("AIRFLOW_CTX_TRY_NUMBER", &try_number),
        ("AIRFLOW_CTX_DAG_OWNER", pipeline.owner),
        ("AIRFLOW_CTX_DAG_EMAIL", &task.email.join(",")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for conn in input.connections.values() {
        vars.push((conn.env_var_name(), conn.uri()));
    }
    vars
}
