//! What a Rust task body sees: its typed context, and the errors it may return.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;

pub use crate::connection::Connection;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// A running task body: resolves to its outputs as JSON.
pub type TaskFuture<'a> = Pin<Box<dyn Future<Output = Result<serde_json::Value, TaskError>> + Send + 'a>>;

/// Why a task failed. The message is shown in the UI and the task log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    pub message: String,
}

impl TaskError {
    pub fn new(message: impl Into<String>) -> Self {
        TaskError { message: message.into() }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {}

/// Which run and try a task instance belongs to.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub pipeline_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: u32,
    /// RFC 3339.
    pub logical_date: String,
    pub data_interval_start: String,
    pub data_interval_end: String,
}

/// The task log. Lines are kept in order; the runtime streams them to the store.
#[derive(Debug, Default)]
pub struct Logger {
    lines: Mutex<Vec<String>>,
}

impl Logger {
    pub fn info(&self, line: impl Into<String>) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line.into());
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// What the runtime hands to the generated dispatch for one task instance: untyped
/// values the dispatch turns into the task's typed [`TaskContext`].
#[derive(Debug, Default)]
pub struct TaskInput {
    pub run: RunInfo,
    /// The run's params (defaults merged with the trigger's conf), as JSON.
    pub params: serde_json::Value,
    /// The connections the task declared, by id.
    pub connections: BTreeMap<String, Connection>,
    /// Outputs of upstream tasks that succeeded, by task id.
    pub upstream_outputs: BTreeMap<String, serde_json::Value>,
    pub log: Logger,
}

impl TaskInput {
    /// The run's params as the pipeline's typed params struct.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, TaskError> {
        let params = match &self.params {
            serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
            other => other.clone(),
        };
        serde_json::from_value(params)
            .map_err(|e| TaskError::new(format!("the run's params do not match their declared types: {e}")))
    }

    /// A connection the task declared.
    pub fn connection(&self, id: &str) -> Result<&Connection, TaskError> {
        self.connections
            .get(id)
            .ok_or_else(|| TaskError::new(format!("connection `{id}` is declared but was not provided to the task")))
    }

    /// The typed outputs of upstream task `task`; an error if it produced none.
    pub fn upstream<O: DeserializeOwned>(&self, task: &str) -> Result<O, TaskError> {
        self.upstream_optional(task)?
            .ok_or_else(|| TaskError::new(format!("upstream task `{task}` has no outputs (did it succeed?)")))
    }

    /// The typed outputs of upstream task `task`, `None` if it did not succeed.
    pub fn upstream_optional<O: DeserializeOwned>(&self, task: &str) -> Result<Option<O>, TaskError> {
        match self.upstream_outputs.get(task) {
            None => Ok(None),
            Some(value) => serde_json::from_value(value.clone()).map(Some).map_err(|e| {
                TaskError::new(format!("outputs of upstream task `{task}` do not match their declared types: {e}"))
            }),
        }
    }
}

/// The context a Rust task body receives. The generated code instantiates it per task:
/// `P` is the pipeline's params struct, `C` exposes only the connections the task
/// declares, `U` the typed outputs of its upstream tasks.
#[derive(Debug)]
pub struct TaskContext<'a, P, C, U> {
    pub run: &'a RunInfo,
    pub params: P,
    pub conn: C,
    pub upstream: U,
    pub log: &'a Logger,
}

/// Serializes a task's typed outputs for the store.
pub fn to_output<O: Serialize>(outputs: &O) -> Result<serde_json::Value, TaskError> {
    serde_json::to_value(outputs).map_err(|e| TaskError::new(format!("outputs could not be serialized: {e}")))
}

/// Outputs of a shell task, as downstream Rust tasks read them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShellOutputs {
    /// The last line the command printed on stdout.
    pub stdout: String,
    pub exit_code: i64,
}

/// Outputs of an http task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HttpOutputs {
    pub status: i64,
    pub body: serde_json::Value,
}

/// Outputs of a sql task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SqlOutputs {
    pub rows_affected: i64,
    pub rows: serde_json::Value,
}
