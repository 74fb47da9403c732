//! `sluice-bench`: the `sluice` command line over the benchmark and fault-test pipelines.

/// Generated from `bench/pipelines.yaml` by `build.rs`.
mod pipelines {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unused_imports, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/pipelines.rs"));
}

mod tasks;

fn main() -> std::process::ExitCode {
    sluice_runtime::cli::main(&pipelines::REGISTRY)
}
