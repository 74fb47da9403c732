//! Task bodies that do nothing, so a benchmark measures the orchestrator alone, and the
//! misbehaving bodies of the fault tests.

use sluice_runtime::{TaskContext, TaskError};
use std::time::Duration;

/// A no-op for any task without outputs: every benchmark pipeline's tasks share it.
pub async fn noop<P, C, U>(_ctx: TaskContext<'_, P, C, U>) -> Result<(), TaskError> {
    Ok(())
}

/// Blocks its thread for `seconds` without awaiting, as CPU-bound fitting or `std::fs`
/// would: it must hold up neither heartbeats nor the other tasks of its worker.
pub async fn block_thread<C, U>(
    ctx: TaskContext<'_, crate::pipelines::blocking::Params, C, U>,
) -> Result<(), TaskError> {
    std::thread::sleep(Duration::from_secs_f64(ctx.params.seconds));
    Ok(())
}

/// Awaits a tenth of `seconds`: it ends well before the blocking bodies beside it, unless
/// they stall its worker.
pub async fn await_briefly<C, U>(
    ctx: TaskContext<'_, crate::pipelines::blocking::Params, C, U>,
) -> Result<(), TaskError> {
    tokio::time::sleep(Duration::from_secs_f64(ctx.params.seconds / 10.0)).await;
    Ok(())
}
