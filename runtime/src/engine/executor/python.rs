//! Python tasks: the deployment's interpreter (`deployment.python`, or `SLUICE_PYTHON`)
//! runs a small shim this binary carries, which imports the task's module from its file and
//! calls the function with the task's context: its params, run facts, the connections it
//! declares and its direct upstream tasks' outputs, as JSON (a dict, typed for mypy by
//! `generated/python/sluice_context.py`). The process runs in a group of its own, as a
//! shell command does ([`super::process`]), with the same timeout and kill behaviour and
//! the same environment. What the function returns is checked against the outputs
//! `pipelines.yaml` declares before it reaches the store.

use super::ExecEnv;
use super::outputs::{declared, has_type, type_name};
use super::process::run_in_group;
use super::shell::task_env;
use crate::spec::{OutputSpec, PipelineSpec, TaskSpec};
use crate::task::{TaskError, TaskInput};
use serde_json::{Map, Value, json};
use sluice_contract::outputs;
use std::time::Duration;
use tokio::process::Command;

/// The shim the interpreter runs (see the file).
const SHIM: &str = include_str!("python_shim.py");

/// The variable that overrides `deployment.python` (a venv's `bin/python`).
pub const PYTHON_ENV: &str = "SLUICE_PYTHON";

/// A Python task's step, as declared.
pub(super) struct Function<'a> {
    pub module: &'a str,
    pub function: &'a str,
    pub interpreter: &'a str,
    /// The text of `sluice_context.py` the binary was built with.
    pub context_module: &'a str,
}

pub(super) async fn run(
    pipeline: &PipelineSpec,
    task: &TaskSpec,
    step: Function<'_>,
    input: &TaskInput,
    env: &ExecEnv,
    timeout: Option<Duration>,
) -> Result<Value, TaskError> {
    let log = &input.log;
    let scratch = tempfile::Builder::new()
        .prefix("sluice-python-")
        .tempdir()
        .map_err(|e| TaskError::new(format!("cannot make a folder for the Python task: {e}")))?;
    let (context_file, result_file) = (scratch.path().join("context.json"), scratch.path().join("result.json"));
    tokio::fs::write(&context_file, context(input).to_string())
        .await
        .map_err(|e| TaskError::new(format!("cannot write the Python task's context: {e}")))?;
    tokio::fs::write(scratch.path().join("sluice_context.py"), step.context_module)
        .await
        .map_err(|e| TaskError::new(format!("cannot write the `sluice_context` module: {e}")))?;
    let interpreter =
        std::env::var(PYTHON_ENV).ok().filter(|p| !p.is_empty()).unwrap_or_else(|| step.interpreter.into());
    log.info(format!("Running {}:{} with {interpreter}", step.module, step.function));
    let mut command = Command::new(&interpreter);
    command
        .arg("-c")
        .arg(SHIM)
        .arg(step.module)
        .arg(step.function)
        .arg(&context_file)
        .arg(&result_file)
        .env_clear()
        .envs(task_env(pipeline, task, input))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let exited = run_in_group(command, &interpreter, log, timeout, env.kill_grace).await?;
    match exited.code()? {
        0 => {}
        code => {
            return Err(TaskError::new(format!(
                "the Python function `{}` failed (exit status {code}; its traceback is in the log)",
                step.function
            )));
        }
    }
    let text = tokio::fs::read_to_string(&result_file)
        .await
        .map_err(|e| TaskError::new(format!("the Python task left no result: {e}")))?;
    let result: Value = serde_json::from_str(&text)
        .map_err(|e| TaskError::new(format!("the Python task's result is not JSON: {e}")))?;
    let reason = || result.get("reason").and_then(Value::as_str).unwrap_or_default().to_string();
    match result.get("ending").and_then(Value::as_str) {
        Some("skip") => Err(TaskError::skip(reason())),
        Some("not_ready") => Err(TaskError::not_ready(reason())),
        _ => checked(task, result.get("outputs").cloned().unwrap_or_else(|| json!({}))),
    }
}

/// What the function receives.
fn context(input: &TaskInput) -> Value {
    let run = &input.run;
    let connections: Map<String, Value> = input
        .connections
        .iter()
        .map(|(id, c)| {
            let c = json!({
                "conn_id": c.id,
                "conn_type": c.conn_type,
                "host": c.host,
                "port": c.port,
                "login": c.login,
                "password": c.password,
                "schema": c.schema,
                "database": c.database,
                "extra": c.extra,
            });
            (id.clone(), c)
        })
        .collect();
    json!({
        "params": if input.params.is_null() { json!({}) } else { input.params.clone() },
        "run": {
            "pipeline_id": run.pipeline_id,
            "run_id": run.run_id,
            "task_id": run.task_id,
            "try_number": run.try_number,
            "logical_date": run.logical_date,
            "data_interval_start": run.data_interval_start,
            "data_interval_end": run.data_interval_end,
            "run_type": run.run_type,
            "conf": run.conf,
        },
        "connections": connections,
        "upstream": input.upstream_outputs,
    })
}

/// The function's outputs, each declared one present with its declared type and nothing
/// else (a branch task's `branch` besides).
fn checked(task: &TaskSpec, outputs: Value) -> Result<Value, TaskError> {
    let Value::Object(map) = outputs else {
        return Err(TaskError::new("the Python function returned no dict of outputs"));
    };
    let declared: Vec<&OutputSpec> = declared(task).collect();
    for (name, value) in &map {
        if name == outputs::BRANCH && !task.branch.is_empty() {
            continue;
        }
        let Some(spec) = declared.iter().find(|o| o.name == name) else {
            let names: Vec<&str> = declared.iter().map(|o| o.name).collect();
            return Err(TaskError::new(format!(
                "task `{}` returned output `{name}`, which it does not declare (its outputs: {})",
                task.id,
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )));
        };
        if !has_type(spec.ty, value) {
            return Err(TaskError::new(format!(
                "output `{name}` of task `{}` is declared `{}`, but the function returned {value}",
                task.id,
                type_name(spec.ty)
            )));
        }
    }
    if let Some(missing) = declared.iter().find(|o| !map.contains_key(o.name)) {
        return Err(TaskError::new(format!("task `{}` did not return its output `{}`", task.id, missing.name)));
    }
    Ok(Value::Object(map))
}
