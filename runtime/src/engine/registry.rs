//! The compiled set of pipelines a `sluice` binary carries.

use crate::spec::{ConnectionSpec, DatasetSpec, DeploymentSpec, PipelineSource, PipelineSpec, PoolSpec};
use crate::task::{TaskFuture, TaskInput};

/// Runs the Rust task `task` of pipeline `pipeline`; `None` when no such Rust task exists.
pub type RustDispatch = for<'a> fn(pipeline: &str, task: &str, input: &'a TaskInput) -> Option<TaskFuture<'a>>;

/// Everything the generated code hands to the runtime.
#[derive(Debug)]
pub struct Registry {
    /// The YAML file the registry was compiled from, for messages.
    pub source: &'static str,
    pub deployment: &'static DeploymentSpec,
    pub connections: &'static [ConnectionSpec],
    pub pools: &'static [PoolSpec],
    /// The datasets tasks produce and pipelines are scheduled on.
    pub datasets: &'static [DatasetSpec],
    pub pipelines: &'static [PipelineSpec],
    /// Where each pipeline was written, with the compiler's warnings about it.
    pub sources: &'static [PipelineSource],
    /// `sluice_context.py` (`generated/python/`), which Python tasks import; empty without
    /// Python tasks.
    pub python_context: &'static str,
    pub dispatch: RustDispatch,
}

impl Registry {
    pub fn pipeline(&self, id: &str) -> Option<&'static PipelineSpec> {
        self.pipelines.iter().find(|p| p.id == id)
    }

    /// The pipelines scheduled on dataset `id`.
    pub fn consumers_of(&self, id: &str) -> impl Iterator<Item = &'static PipelineSpec> + use<'_> {
        let pipelines: &'static [PipelineSpec] = self.pipelines;
        let id = id.to_string();
        pipelines
            .iter()
            .filter(move |p| matches!(p.schedule, crate::spec::Schedule::Datasets(ids) if ids.contains(&id.as_str())))
    }

    /// Where pipeline `id` was written.
    pub fn source(&self, id: &str) -> Option<&'static PipelineSource> {
        self.sources.iter().find(|s| s.pipeline == id)
    }

    /// Whether any task declares an `sla` (else the scheduler never looks for misses).
    pub fn has_slas(&self) -> bool {
        self.pipelines.iter().flat_map(|p| p.tasks).any(|t| t.sla_secs.is_some())
    }

    /// Whether any pipeline or task notifies anyone.
    pub fn has_notifications(&self) -> bool {
        self.pipelines.iter().any(|p| {
            !p.on_failure.is_empty()
                || !p.on_success.is_empty()
                || p.tasks
                    .iter()
                    .any(|t| !(t.on_failure.is_empty() && t.on_retry.is_empty() && t.on_success.is_empty()))
        })
    }

    /// Runs a Rust task body with its typed context built from `input`.
    pub fn run_rust<'a>(&self, pipeline: &str, task: &str, input: &'a TaskInput) -> Option<TaskFuture<'a>> {
        (self.dispatch)(pipeline, task, input)
    }
}
