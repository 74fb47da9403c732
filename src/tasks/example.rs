//! `example_dag`: checks that the installation runs Rust tasks.

use crate::pipelines::example_dag::print_hello::{Context, Outputs};
use sluice_runtime::TaskError;

pub async fn print_hello(ctx: Context<'_>) -> Result<Outputs, TaskError> {
    let message = format!("{} (run {})", ctx.params.greeting, ctx.run.run_id);
    ctx.log.info(&message);
    Ok(Outputs { message })
}
