//! The web UI as a person uses it, in a real browser: `tests/browser/ui.mjs` drives Debian's
//! Chromium with the npm package playwright-core against `sluice standalone`. It logs in (a
//! wrong password first), unpauses and triggers `example_dag` from the pipelines list, waits
//! for the run to succeed, checks the pipeline page's grid and graph, reads a task's log, then
//! repairs a failed run (a variable makes a task fail; the operator reads its log, removes the
//! cause, clears the task with its downstream after its preview, and the run succeeds), checks
//! that nothing broke the Content-Security-Policy and logs out with the nav's button (a POST).
//! Screenshots of each page go to `target/tmp/screenshots` (and `failure.png` when a step
//! fails).
//!
//! Chromium (`/usr/bin/chromium`) and playwright-core (in `target/browser-test`) come from
//! `scripts/install-test-deps.sh`; Node.js 20 is expected on the machine. A missing one fails
//! the test with the hint to install it; nothing is skipped.

use sluice_testkit::process::{output_file, read_file, run_within};
use sluice_testkit::report;
use sluice_testkit::standalone::Standalone;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "browser-check-password";
/// A Fernet key, as a deployment has one: 32 bytes, url-safe base64.
const FERNET_KEY: &str = "c2x1aWNlLWJyb3dzZXItdWktY2hlY2sta2V5LTMyYiE=";
/// Debian's package puts it here; ui.mjs is told this path, it downloads no browser.
const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL_HINT: &str = "run scripts/install-test-deps.sh";
/// The whole browser session: the script waits up to 60 s for the run and up to 15 s for
/// each element, so this only ends a hung browser.
const CHECK_LIMIT: Duration = Duration::from_secs(180);

#[test]
fn the_web_ui_works_in_a_real_browser() {
    let node = node();
    assert!(Path::new(CHROMIUM).is_file(), "no Chromium at {CHROMIUM}: {INSTALL_HINT}");
    let modules = playwright_modules();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/ui.mjs");
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    // A failure.png from an earlier run must not be taken for this run's.
    let _ = fs::remove_dir_all(&screenshots);
    fs::create_dir_all(&screenshots).unwrap_or_else(|e| panic!("create {}: {e}", screenshots.display()));

    let sluice = Standalone::start(Path::new(env!("CARGO_BIN_EXE_sluice")), ADMIN_USER, ADMIN_PASSWORD, FERNET_KEY);
    let url = format!("http://127.0.0.1:{}", sluice.port);
    let out_path = sluice.home().join("ui.out");
    let err_path = sluice.home().join("ui.err");
    let mut ui = Command::new(&node);
    ui.arg(&script)
        .args(["--url", &url, "--user", ADMIN_USER, "--password", ADMIN_PASSWORD, "--chromium", CHROMIUM])
        .arg("--screenshots")
        .arg(&screenshots)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // ui.mjs resolves playwright-core through NODE_PATH (its createRequire honours it).
        .env("NODE_PATH", &modules)
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null())
        .stdout(output_file(&out_path))
        .stderr(output_file(&err_path));
    let status = run_within(&mut ui, CHECK_LIMIT);

    let stdout = read_file(&out_path);
    for line in stdout.lines() {
        report(&format!("browser: {line}"));
    }
    report(&format!("browser: screenshots in {}", screenshots.display()));
    assert!(
        status.is_some_and(|s| s.success()),
        "ui.mjs {}\nstdout:\n{stdout}\nstderr:\n{}\nscreenshots: {}\nsluice standalone log (end):\n{}",
        status.map_or_else(|| format!("did not finish within {CHECK_LIMIT:?}"), |s| format!("ended with {s}")),
        read_file(&err_path),
        screenshots.display(),
        sluice.log_tail(),
    );
    assert!(stdout.lines().any(|l| l == "ok   all checks passed"), "{stdout}");
}

/// `node` from PATH.
fn node() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`node` (Node.js 20) not found on PATH; it runs tests/browser/ui.mjs"))
}

/// The `node_modules` holding playwright-core: under the target directory cargo builds into
/// (which honours `CARGO_TARGET_DIR` and `build.target-dir`), else under `CARGO_TARGET_DIR` or
/// `<workspace>/target` as the install script chose them.
fn playwright_modules() -> PathBuf {
    let built_into = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().map(Path::to_path_buf);
    let from_env = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
    let default = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let mut candidates: Vec<PathBuf> = Vec::new();
    for modules in [built_into, from_env, default].into_iter().flatten().map(|t| t.join("browser-test/node_modules")) {
        if !candidates.contains(&modules) {
            candidates.push(modules);
        }
    }
    candidates
        .iter()
        .find(|m| m.join("playwright-core/package.json").is_file())
        .cloned()
        .unwrap_or_else(|| panic!("no playwright-core in {candidates:?}: {INSTALL_HINT}"))
}
