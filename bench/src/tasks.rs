//! Task bodies that do nothing, so a benchmark measures the orchestrator alone.

use sluice_runtime::TaskError;

/// One no-op body per task of a chain (each task has its own typed context).
macro_rules! noops {
    ($pipeline:ident: $($task:ident),+ $(,)?) => {
        pub mod $pipeline {
            $(
                pub async fn $task(
                    _ctx: crate::pipelines::$pipeline::$task::Context<'_>,
                ) -> Result<crate::pipelines::$pipeline::$task::Outputs, super::TaskError> {
                    Ok(())
                }
            )+
        }
    };
}

noops!(chain5: t01, t02, t03, t04, t05);
