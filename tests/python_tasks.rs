//! Python tasks are checked against their declared contract before deploy: `mypy --strict`
//! over the task modules and `generated/python/sluice_context.py` passes for the sample, and
//! fails for a function that returns an output of the wrong type or under a wrong name.
//! (At run time the same mistakes fail the task: `runtime/tests/executors.rs`.)

use sluice_testkit::venv;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// mypy --strict over `module` with the generated contexts; its exit status and output.
fn mypy(module: &Path) -> (bool, String) {
    let context = root().join("generated/python/sluice_context.py");
    let cache = tempfile::tempdir().expect("cache dir");
    let out = Command::new(venv::script("mypy"))
        .arg("--strict")
        .arg("--cache-dir")
        .arg(cache.path())
        .arg(&context)
        .arg(module)
        .env("MYPYPATH", root().join("generated/python"))
        .output()
        .expect("mypy runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The sample's report task with `from` replaced by `to`, in a folder of its own.
fn mutated(from: &str, to: &str) -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(root().join("tasks/games_report.py")).expect("the sample's Python task");
    assert!(text.contains(from), "the sample no longer has `{from}`");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("games_report.py");
    std::fs::write(&path, text.replace(from, to)).expect("write");
    (dir, path)
}

#[test]
fn the_sample_python_task_passes_mypy_strict() {
    let (ok, output) = mypy(&root().join("tasks/games_report.py"));
    assert!(ok, "mypy --strict fails on the sample:\n{output}");
}

#[test]
fn check_python_runs_mypy_over_the_modules_the_lock_file_names() {
    let out = Command::new("bash").arg(root().join("scripts/check-python.sh")).output().expect("script runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("no issues found in 2 source files"), "{text}");
}

#[test]
fn a_wrong_output_type_or_name_fails_mypy() {
    let (_dir, wrong_type) =
        mutated(r#""leagues": len(counted["leagues"])"#, r#""leagues": str(len(counted["leagues"]))"#);
    let (ok, output) = mypy(&wrong_type);
    assert!(!ok, "a str where an int is declared passes mypy:\n{output}");
    assert!(output.contains("leagues") && output.contains("\"str\""), "{output}");

    let (_dir, wrong_name) = mutated(r#"return {"path": str(path),"#, r#"return {"file": str(path),"#);
    let (ok, output) = mypy(&wrong_name);
    assert!(!ok, "an undeclared output name passes mypy:\n{output}");
    assert!(output.contains("\"file\""), "{output}");

    let (_dir, wrong_param) = mutated(r#"ctx["params"]["report_dir"]"#, r#"ctx["params"]["report_folder"]"#);
    let (ok, output) = mypy(&wrong_param);
    assert!(!ok, "an undeclared param passes mypy:\n{output}");
    assert!(output.contains("report_folder"), "{output}");
}
