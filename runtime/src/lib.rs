//! sluice-runtime: what compiled pipelines link against.
//!
//! The build-time compiler (`sluice-codegen`) turns `pipelines.yaml` into Rust that
//! declares a [`Registry`]: static [`spec`] tables for the deployment, connections, pools
//! and pipelines, plus one typed dispatch function that runs Rust task bodies through
//! their [`task::TaskContext`]. This crate knows nothing of YAML; the generated code is
//! the only bridge between the two.

pub mod broker;
pub mod cli;
pub mod clock;
pub mod connection;
pub mod crypto;
pub mod distributed;
pub mod executor;
pub mod io;
pub mod keys;
pub mod notify;
pub mod params;
pub mod registry;
pub mod resolver;
pub mod rules;
pub mod scheduler;
pub mod secrets;
pub mod settings;
pub mod shutdown;
/// The compiled pipelines' static tables (shared with the compiler).
pub use sluice_contract::spec;
pub mod spool;
pub mod standalone;
pub mod store;
pub mod task;
pub mod tasklog;
pub mod template;
pub mod timetable;
pub mod tls;
pub mod web;
pub mod worker;

pub use registry::Registry;
pub use task::{Connection, Logger, RunInfo, TaskContext, TaskError, TaskFuture, TaskInput};

/// Re-exports the generated code needs, so the user's crate does not depend on them.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use serde_json;
}
