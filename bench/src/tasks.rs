//! Task bodies that do nothing, so a benchmark measures the orchestrator alone.

use sluice_runtime::{TaskContext, TaskError};

/// A no-op for any task without outputs: every benchmark pipeline's tasks share it.
pub async fn noop<P, C, U>(_ctx: TaskContext<'_, P, C, U>) -> Result<(), TaskError> {
    Ok(())
}
