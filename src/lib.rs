//! The MLSP pipelines, compiled: the code generated from `pipelines.yaml` and the
//! Rust task bodies it names.

/// Generated from `pipelines.yaml` by `build.rs`: static specs, typed task contexts, and
/// the dispatch that runs each Rust task body.
pub mod pipelines {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unused_imports)]
    include!(concat!(env!("OUT_DIR"), "/pipelines.rs"));
}

pub mod tasks;

pub use pipelines::REGISTRY;
