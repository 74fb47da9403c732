//! The deployable `sluice` binary: the compiled pipelines handed to the runtime.
fn main() -> std::process::ExitCode {
    sluice_runtime::cli::main(&sluice::REGISTRY)
}
