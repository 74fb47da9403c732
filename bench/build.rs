//! Compiles bench/pipelines.yaml into `$OUT_DIR/pipelines.rs`, as a user's build does.
fn main() {
    sluice_codegen::build::compile_pipelines("pipelines.yaml");
}
