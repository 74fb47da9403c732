//! Rust tasks: the generated dispatch runs the user's async fn with its typed context.

use super::timed_out;
use crate::registry::Registry;
use crate::spec::{PipelineSpec, TaskSpec};
use crate::task::{TaskError, TaskInput};
use std::any::Any;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Runs the body in its own tokio task, which owns `input`: a panic there unwinds that task
/// only, and comes back here as a failure carrying the panic message.
pub(super) async fn run(
    registry: &'static Registry,
    pipeline: &'static PipelineSpec,
    task: &'static TaskSpec,
    input: TaskInput,
    timeout: Option<Duration>,
) -> Result<serde_json::Value, TaskError> {
    let (pipeline_id, task_id) = (pipeline.id, task.id);
    let body = AbortOnDrop(tokio::spawn(async move {
        match registry.run_rust(pipeline_id, task_id, &input) {
            Some(body) => Some(body.await),
            None => None,
        }
    }));
    let joined = match timeout {
        None => body.join().await,
        Some(limit) => match tokio::time::timeout(limit, body.join()).await {
            Ok(joined) => joined,
            // Dropping the handle aborts the body at its next `.await`; a body that never
            // awaits keeps its thread until it returns (tokio cannot preempt it).
            Err(_) => return Err(timed_out(limit, "; the task body was cancelled")),
        },
    };
    match joined {
        Ok(Some(result)) => result,
        Ok(None) => Err(TaskError::new(format!(
            "this binary has no body for Rust task `{task_id}` of pipeline `{pipeline_id}`: rebuild it from the current pipelines file"
        ))),
        Err(e) if e.is_panic() => {
            Err(TaskError::new(format!("the task body panicked: {}", panic_message(e.into_panic()))))
        }
        Err(_) => Err(TaskError::new("the task body was cancelled before it finished")),
    }
}

/// Aborts the body when the executor is dropped (timed out, or the worker cancelled it).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}
