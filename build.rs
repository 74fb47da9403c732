//! Compiles pipelines.yaml into `$OUT_DIR/pipelines.rs` (included by `src/lib.rs`).
//! Mistakes in the YAML fail the build here, each with file:line:col and a hint.
fn main() {
    sluice_codegen::build::compile_pipelines("pipelines.yaml");
}
