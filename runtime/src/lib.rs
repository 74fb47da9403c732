//! sluice-runtime: what compiled pipelines link against.
//!
//! The build-time compiler (`sluice-codegen`) turns `pipelines.yaml` into Rust that
//! declares a [`Registry`]: static [`spec`] tables for the deployment, connections, pools
//! and pipelines, plus one typed dispatch function that runs Rust task bodies through
//! their [`task::TaskContext`]. This crate knows nothing of YAML; the generated code is
//! the only bridge between the two.
//!
//! Two layers, one folder each: [`engine`] (the store, the rules, scheduler, worker,
//! broker and executors) and its surfaces, [`cli`] and [`web`]. [`standalone`] and
//! [`distributed`] assemble them into processes. The engine's modules are also reachable
//! at the crate root (`sluice_runtime::store`), the paths generated code and tests use.

/// A failpoint of the fault tests: with the `failpoints` feature, aborts the process when
/// `FAILPOINTS` names it (`name=return`); in every other build, nothing at all.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |_| std::process::abort());
    };
}
pub(crate) use failpoint;

pub mod engine;

pub mod cli;
pub mod distributed;
pub mod standalone;
pub mod web;

pub use engine::{
    broker, clock, connection, crypto, effective, executor, io, keys, notify, params, registry, repair, resolver,
    rules, scheduler, secrets, settings, shutdown, spec, spool, store, task, tasklog, template, timetable, tls, worker,
};
pub use registry::Registry;
pub use task::{Connection, Logger, RunInfo, TaskContext, TaskError, TaskFuture, TaskInput};

/// Re-exports the generated code needs, so the user's crate does not depend on them.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use serde_json;
}
