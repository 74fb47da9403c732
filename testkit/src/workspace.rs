//! Where the workspace and its build output are, so tests of any member crate (and the
//! benches) find `generated/`, `pipelines.yaml` and the test tools at the same places.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The workspace root: `SLUICE_WORKSPACE` when set (test binaries run away from their
/// checkout), else the nearest directory above this crate whose `Cargo.toml` declares
/// `[workspace]`.
pub fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Some(dir) = std::env::var_os("SLUICE_WORKSPACE") {
            return PathBuf::from(dir);
        }
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .find(|d| std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]")))
            .map(Path::to_path_buf)
            .unwrap_or_else(|| {
                panic!("no workspace Cargo.toml above {}; set SLUICE_WORKSPACE", env!("CARGO_MANIFEST_DIR"))
            })
    })
}

/// `generated/` of the workspace: the deploy files the tests run.
pub fn generated() -> PathBuf {
    root().join("generated")
}

/// Where cargo builds and `scripts/install-test-deps.sh` installs the test tools:
/// `CARGO_TARGET_DIR` when set, else `<workspace>/target` (the script's rule, so both agree).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Prints a test's measured result and appends it to `<target>/tmp/test-results.txt`, which
/// CI prints after the tests (cargo hides a passing test's output).
pub fn report(line: &str) {
    println!("{line}");
    let dir = target_dir().join("tmp");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(dir.join("test-results.txt")) {
        let _ = writeln!(file, "{line}");
    }
}
