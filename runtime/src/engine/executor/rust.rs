//! Rust tasks: the generated dispatch runs the user's async fn with its typed context.
//!
//! Each body runs on a thread of its own from tokio's blocking pool, where it is driven with
//! [`Handle::block_on`]. A body may block — fit a model on the CPU, call `std::fs`, sleep
//! with `std::thread::sleep` — and only its own thread waits: the runtime's worker threads,
//! which carry heartbeats, log writing, outcome recording and every other task, stay free.
//! On the runtime's own threads (tokio's `spawn`), two blocking bodies on a two-core
//! machine stop the whole worker, heartbeats included, until the scheduler takes its tasks
//! for zombies. The async I/O inside a body (`sluice_runtime::io`, `tokio::fs`, sqlx,
//! reqwest) keeps working: `Handle::block_on` uses the runtime's I/O and timer drivers.
//! A thread per running body costs little here: bodies are bounded by the worker's slots,
//! and the pool keeps threads for reuse.

use super::timed_out;
use crate::registry::Registry;
use crate::spec::{PipelineSpec, TaskSpec};
use crate::task::{TaskError, TaskInput};
use std::any::Any;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Runs the body on a blocking-pool thread, which owns `input`: a panic there unwinds that
/// thread's work only, and comes back here as a failure carrying the panic message.
///
/// When the timeout passes, or this future is dropped (the worker stops the task), the
/// body's future is dropped at its next `.await`, as an aborted tokio task would be. A body
/// blocked in synchronous code cannot be interrupted (no thread can): the try fails on
/// time all the same and its slot is free, while the body keeps its pool thread until the
/// blocking call returns, and is then dropped without running further.
pub(super) async fn run(
    registry: &'static Registry,
    pipeline: &'static PipelineSpec,
    task: &'static TaskSpec,
    input: TaskInput,
    timeout: Option<Duration>,
) -> Result<serde_json::Value, TaskError> {
    let (pipeline_id, task_id) = (pipeline.id, task.id);
    // Dropped with this future (timed out, finished or cancelled): the body stops.
    let (_cancel, cancelled) = oneshot::channel::<()>();
    let handle = Handle::current();
    let body = tokio::task::spawn_blocking(move || {
        let body = registry.run_rust(pipeline_id, task_id, &input)?;
        handle.block_on(async move {
            // Cancellation first: once stopped, the body is not polled again.
            tokio::select! {
                biased;
                _ = cancelled => Some(Err(Cancelled)),
                result = body => Some(Ok(result)),
            }
        })
    });
    let joined = match timeout {
        None => body.await,
        Some(limit) => match tokio::time::timeout(limit, body).await {
            Ok(joined) => joined,
            Err(_) => return Err(timed_out(limit, "; the task body was cancelled")),
        },
    };
    match joined {
        Ok(Some(Ok(result))) => result,
        Ok(Some(Err(Cancelled))) => Err(TaskError::new("the task body was cancelled before it finished")),
        Ok(None) => Err(TaskError::new(format!(
            "this binary has no body for Rust task `{task_id}` of pipeline `{pipeline_id}`: rebuild it from the current pipelines file"
        ))),
        Err(e) if e.is_panic() => {
            Err(TaskError::new(format!("the task body panicked: {}", panic_message(e.into_panic()))))
        }
        Err(_) => Err(TaskError::new("the task body was cancelled before it finished")),
    }
}

/// The body was stopped before it finished.
struct Cancelled;

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}
