//! The typed task contexts, proven through rustc: a scratch crate compiles
//! `tests/compile_fail/pipelines.yaml` with the real build script, and its task bodies
//! (`tests/compile_fail/tasks.rs`) each break the declared contract once. Every line
//! marked `// ERROR: <text>` must be the location of a rustc error containing `<text>`,
//! and there must be no other error: the one correct body compiles.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Expected {
    line: usize,
    text: String,
}

fn expected_errors(tasks: &str) -> Vec<Expected> {
    tasks
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            line.split_once("// ERROR: ").map(|(_, text)| Expected { line: i + 1, text: text.trim().to_string() })
        })
        .collect()
}

/// Lays out a user crate that depends on this workspace's runtime and codegen.
fn scratch_crate(root: &Path, dir: &Path) {
    let src = dir.join("src");
    fs::create_dir_all(&src).expect("create scratch crate");
    let manifest = format!(
        r#"[package]
name = "compile-fail-pipelines"
version = "0.0.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
sluice-runtime = {{ path = "{runtime}" }}

[build-dependencies]
sluice-codegen = {{ path = "{codegen}" }}

# As the workspace builds it (see vendor/README.md): never downloaded, so never in the
# registry cache an offline build reads.
[patch.crates-io]
sqlx-core = {{ path = "{sqlx_core}" }}
"#,
        runtime = root.join("runtime").display(),
        codegen = root.join("codegen").display(),
        sqlx_core = root.join("vendor/sqlx-core").display(),
    );
    fs::write(dir.join("Cargo.toml"), manifest).expect("manifest");
    // The workspace lock keeps the scratch build on the same, already downloaded versions.
    fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).expect("lock");
    fs::write(dir.join("build.rs"), "fn main() { sluice_codegen::build::compile_pipelines(\"pipelines.yaml\"); }\n")
        .expect("build.rs");
    fs::copy(root.join("tests/compile_fail/pipelines.yaml"), dir.join("pipelines.yaml")).expect("yaml");
    fs::copy(root.join("tests/compile_fail/tasks.rs"), src.join("tasks.rs")).expect("tasks");
    fs::write(
        src.join("main.rs"),
        "mod pipelines {\n    #![allow(dead_code)]\n    include!(concat!(env!(\"OUT_DIR\"), \"/pipelines.rs\"));\n}\nmod tasks;\n\nfn main() {\n    let _ = &pipelines::REGISTRY;\n}\n",
    )
    .expect("main.rs");
}

#[test]
fn task_bodies_that_break_the_yaml_contract_do_not_compile() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/compile-fail/crate");
    scratch_crate(&root, &dir);
    let output = Command::new(env!("CARGO"))
        // Offline: the workspace build already downloaded every crate at the locked
        // versions; the copied lock is only trimmed to the scratch crate's dependencies.
        .args(["build", "--quiet", "--color", "never", "--offline"])
        .env("CARGO_TARGET_DIR", root.join("target/compile-fail/target"))
        .current_dir(&dir)
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the broken task bodies compiled:\n{stderr}");

    // rustc's human output: one block per diagnostic, each starting at column 0.
    let blocks: Vec<String> = stderr.split("\n\n").map(str::to_string).filter(|b| b.starts_with("error")).collect();
    let errors: Vec<&String> = blocks.iter().filter(|b| !b.starts_with("error: could not compile")).collect();
    let tasks = fs::read_to_string(root.join("tests/compile_fail/tasks.rs")).expect("tasks.rs");
    let expected = expected_errors(&tasks);
    assert!(expected.len() >= 8, "markers went missing");
    for e in &expected {
        let at = format!("src/tasks.rs:{}:", e.line);
        assert!(
            errors.iter().any(|b| b.contains(&at) && b.contains(&e.text)),
            "expected an error containing `{}` at {at}; rustc said:\n{stderr}",
            e.text
        );
    }
    let missing_fn = errors.iter().any(|b| b.contains("no_such_function") && b.contains("cannot find function"));
    assert!(missing_fn, "a YAML path to a missing function must fail the build:\n{stderr}");
    assert_eq!(
        errors.len(),
        expected.len() + 1,
        "rustc reported errors nobody expected (the correct body must compile):\n{stderr}"
    );
}
