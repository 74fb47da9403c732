//! Executors: run one task instance — a Rust body, a shell command, an HTTP request or a
//! SQL statement — and turn whatever happens into outputs or one [`TaskError`].
//!
//! [`execute`] is the only entry point. It enforces the task's `execution_timeout` for every
//! kind, masks the secrets of the task's connections in its log and its error, and closes the
//! log's stream when it returns, so the worker's log writer ends even if something the task
//! started is still winding down.
//!
//! What each kind does, and its outputs:
//!
//! | kind | runs | outputs |
//! |---|---|---|
//! | rust | the generated dispatch, on a blocking-pool thread of its own (blocking is harmless; a panic is a failure) | the body's |
//! | shell | `bash -c <command>` in its own process group, output streamed to the log | `stdout` (last non-empty line), `exit_code` |
//! | http | one request to the step's connection (plain http only) | `status`, `body` (JSON if it parses) |
//! | sql | the statement on a connection kept open between tasks (postgres or sqlite) | `rows_affected`, `rows` (at most 100) |

mod branch;
pub(crate) mod http;
pub(crate) mod outputs;
mod process;
mod python;
mod rust;
mod sensor;
mod shell;
pub(crate) mod sql;

pub(crate) use sensor::timed_out as sensor_timed_out;
pub use sql::SqlConnections;

use crate::registry::Registry;
use crate::spec::{PipelineSpec, SensorMode, TaskKind, TaskSpec};
use crate::task::{Ending, TaskError, TaskInput};
use crate::template::{self, Language, TemplateContext};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What the executors need besides the task instance itself.
#[derive(Clone)]
pub struct ExecEnv {
    /// Airflow Variables, for `var.value.X` and `var.json.X` in templates. Values of
    /// variables whose names look secret (`password`, `token`, `api_key`, ...) are masked in
    /// the task log, as Airflow's secrets masker does.
    pub variables: Arc<BTreeMap<String, String>>,
    /// How long a timed-out shell command's process group has between SIGTERM and SIGKILL;
    /// also how long processes a finished command left behind get.
    pub kill_grace: Duration,
    /// The templates this try rendered, by what they are (`the shell command`), secrets
    /// masked: shown on the task instance's page as Airflow's "Rendered Template".
    pub rendered: Arc<std::sync::Mutex<BTreeMap<String, String>>>,
    /// The worker's open connections for sql tasks, shared by all its tasks.
    pub sql_connections: sql::SqlConnections,
}

impl ExecEnv {
    /// The default [`ExecEnv::kill_grace`].
    pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

    /// An environment with these variables and the default kill grace.
    pub fn new(variables: Arc<BTreeMap<String, String>>) -> ExecEnv {
        ExecEnv {
            variables,
            kill_grace: Self::DEFAULT_KILL_GRACE,
            rendered: Arc::default(),
            sql_connections: sql::SqlConnections::default(),
        }
    }
}

impl fmt::Debug for ExecEnv {
    /// Variable names only: their values can be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecEnv")
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .field("kill_grace", &self.kill_grace)
            .finish()
    }
}

impl Default for ExecEnv {
    fn default() -> ExecEnv {
        ExecEnv::new(Arc::default())
    }
}

/// Runs task `task` of `pipeline` once, with `input` (run info, params, the connections the
/// task declared plus its step's connection, upstream outputs, the log).
///
/// Returns the task's outputs as JSON, or why it failed: one sentence, with the secrets of
/// its connections masked. The task's `execution_timeout_secs` bounds the whole run
/// ("timed out after Ns"); a shell command's whole process group is then terminated. A
/// panic in a Rust body is a failure carrying the panic message, never a crashed worker.
///
/// `input.log` is closed when this returns (see [`crate::task::Logger::close`]); clone it
/// first to read the lines afterwards.
pub async fn execute(
    registry: &'static Registry,
    pipeline: &'static PipelineSpec,
    task: &'static TaskSpec,
    input: TaskInput,
    env: &ExecEnv,
) -> Result<serde_json::Value, TaskError> {
    let log = input.log.clone();
    register_secrets(&input, env);
    let step = Step { registry, pipeline, task, env };
    let result = match &task.sensor {
        Some(sensor) if sensor.mode == SensorMode::Poke => sensor::poke(&step, sensor, input).await,
        _ => step.run(input).await,
    };
    let result = match result {
        Ok(outputs) if !task.branch.is_empty() => branch::choice(task, outputs),
        Err(e) if e.ending == Ending::NotReady && task.sensor.is_none() => Err(TaskError::new(format!(
            "task `{}` said \"not yet\" ({}), which only a task with `sensor:` may say",
            task.id, e.message
        ))),
        other => other,
    };
    log.close();
    result.map_err(|e| TaskError { message: log.redact(&e.message), ..e })
}

/// One task instance's step: what runs, once per try (a poking sensor runs it again).
pub(crate) struct Step<'a> {
    registry: &'static Registry,
    pipeline: &'static PipelineSpec,
    task: &'static TaskSpec,
    env: &'a ExecEnv,
}

impl Step<'_> {
    /// Runs the task's kind once, within its `execution_timeout`.
    async fn run(&self, input: TaskInput) -> Result<serde_json::Value, TaskError> {
        let (task, env) = (self.task, self.env);
        let timeout = task.execution_timeout_secs.map(Duration::from_secs);
        let sensor = task.sensor.as_ref();
        match &task.kind {
            TaskKind::Rust { .. } => rust::run(self.registry, self.pipeline, task, input, timeout).await,
            TaskKind::Shell { command, env: vars, skip_exit_code } => {
                let not_ready_exit_code = sensor.map(|s| s.not_ready_exit_code);
                let script = shell::Script { command, env: vars, skip_exit_code: *skip_exit_code, not_ready_exit_code };
                shell::run(self.pipeline, task, script, &input, env, timeout).await
            }
            TaskKind::Http { conn, method, endpoint, body, headers, expect_status, skip_status } => {
                let request = http::Request {
                    conn,
                    method,
                    endpoint,
                    body: *body,
                    headers,
                    expect_status,
                    skip_status,
                    sensor: sensor.is_some(),
                };
                within(timeout, http::run(request, &input, env)).await
            }
            TaskKind::Sql { conn, statement } => {
                within(timeout, sql::run(conn, statement, &input, env, sensor.is_some())).await
            }
            TaskKind::Python { module, function } => {
                let step = python::Function {
                    module,
                    function,
                    interpreter: self.registry.deployment.python,
                    context_module: self.registry.python_context,
                };
                python::run(self.pipeline, task, step, &input, env, timeout).await
            }
        }
    }
}

/// Runs `work`, failing with "timed out after Ns" when `timeout` passes first (the future
/// is dropped, which closes its connections).
async fn within<F>(timeout: Option<Duration>, work: F) -> Result<serde_json::Value, TaskError>
where
    F: Future<Output = Result<serde_json::Value, TaskError>>,
{
    match timeout {
        None => work.await,
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| Err(timed_out(limit, ""))),
    }
}

fn timed_out(limit: Duration, detail: &str) -> TaskError {
    TaskError::new(format!("timed out after {}s{detail}", limit.as_secs()))
}

/// Renders a template of the task (`what` names it in the error) and keeps it, secrets
/// masked, in `env.rendered`. With a `language`, values are quoted so they cannot change
/// the command or statement ([`template::render_quoted`]); without, written as they are.
fn render(
    env: &ExecEnv,
    input: &TaskInput,
    what: &str,
    text: &str,
    ctx: &TemplateContext,
    language: Option<Language>,
) -> Result<String, TaskError> {
    let rendered = match language {
        Some(language) => template::render_quoted(text, ctx, language),
        None => template::render(text, ctx),
    }
    .map_err(|e| TaskError::new(format!("cannot render {what}: {}", e.message)))?;
    if let Ok(mut kept) = env.rendered.lock() {
        kept.insert(what.to_string(), input.log.redact(&rendered));
    }
    Ok(rendered)
}

impl ExecEnv {
    /// What this try rendered so far.
    pub fn rendered(&self) -> BTreeMap<String, String> {
        self.rendered.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Masks, in the log and the error, the passwords of the task's connections (as written
/// and as they appear percent-encoded in `AIRFLOW_CONN_*` URIs), their secret-looking
/// extra values, and secret-looking variables.
fn register_secrets(input: &TaskInput, env: &ExecEnv) {
    let log = &input.log;
    for conn in input.connections.values() {
        if let Some(password) = &conn.password {
            // The process's own log masks it too (an error of a connection may quote it).
            crate::secrets::register(password);
            log.mask(password);
            log.mask(crate::connection::uri::encode(password, b""));
        }
        mask_secret_values(log, &serde_json::Value::Object(conn.extra.clone()), false);
    }
    for (name, value) in env.variables.iter() {
        if crate::connection::is_secret_key(name) {
            log.mask(value);
        }
    }
}

/// Masks every string under a secret-looking key, at any depth.
fn mask_secret_values(log: &crate::task::Logger, value: &serde_json::Value, secret: bool) {
    match value {
        serde_json::Value::String(text) if secret => log.mask(text),
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                mask_secret_values(log, value, secret || crate::connection::is_secret_key(key));
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| mask_secret_values(log, v, secret)),
        _ => {}
    }
}
