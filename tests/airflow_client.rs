//! The REST API at `/api/v1` as Airflow users call it: the official Python client
//! (`apache-airflow-client` 2.10.0, in the venv `scripts/install-test-deps.sh` makes at
//! `target/test-venv`) runs `tests/airflow_client/check.py` against `sluice standalone`:
//! health, DAGs, pause, a triggered run with its task instances and log, variables,
//! connections and a wrong password. The client checks every answer against its generated
//! models, so a field Airflow never leaves null that Sluice sends as null fails here.
//!
//! A missing venv fails the test with the hint to install it; nothing is skipped.

mod infra;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "client-check-password";
/// Sluice stores no connection password without a Fernet key (Airflow would store it in
/// plaintext), so the server gets one, as a deployment does: 32 bytes, url-safe base64.
const FERNET_KEY: &str = "c2x1aWNlLWFpcmZsb3ctY2xpZW50LWNoZWNrLWtleSE=";
const INSTALL_HINT: &str = "run scripts/install-test-deps.sh";
/// How long `sluice standalone` may take to answer `/health`.
const START_LIMIT: Duration = Duration::from_secs(30);
/// The whole check: the script waits up to 60 s for the run; the client sets no timeout of
/// its own, so a request the server never answers would hang it.
const CHECK_LIMIT: Duration = Duration::from_secs(180);
/// Lines of the server's log quoted in a failure.
const TAIL_LINES: usize = 40;

#[test]
fn the_official_airflow_python_client_works_against_standalone() {
    let python = venv_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/airflow_client/check.py");
    let sluice = Standalone::start();
    let url = format!("http://127.0.0.1:{}/api/v1", sluice.port);

    let out_path = sluice.home.path().join("check.out");
    let err_path = sluice.home.path().join("check.err");
    let mut check = Command::new(&python);
    check
        .arg(&script)
        .args(["--url", &url, "--user", ADMIN_USER, "--password", ADMIN_PASSWORD])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .stdin(Stdio::null())
        .stdout(create(&out_path))
        .stderr(create(&err_path));
    let status = run_within(&mut check, CHECK_LIMIT);

    let stdout = read(&out_path);
    for line in stdout.lines() {
        infra::report(&format!("airflow client: {line}"));
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "check.py {}\nstdout:\n{stdout}\nstderr:\n{}\nsluice standalone log (end):\n{}",
        status.map_or_else(|| format!("did not finish within {CHECK_LIMIT:?}"), |s| format!("ended with {s}")),
        read(&err_path),
        sluice.log_tail(),
    );
    assert!(stdout.lines().any(|l| l == "ok   all checks passed"), "{stdout}");
}

/// The venv's Python: under the target directory cargo builds into (which honours
/// `CARGO_TARGET_DIR` and `build.target-dir`), else under `CARGO_TARGET_DIR` or
/// `<workspace>/target` as the install script chose them.
fn venv_python() -> PathBuf {
    let built_into = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().map(Path::to_path_buf);
    let from_env = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
    let default = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let mut candidates: Vec<PathBuf> = Vec::new();
    for python in [built_into, from_env, default].into_iter().flatten().map(|t| t.join("test-venv/bin/python")) {
        if !candidates.contains(&python) {
            candidates.push(python);
        }
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| panic!("no Python venv with apache-airflow-client at {candidates:?}: {INSTALL_HINT}"))
}

/// `sluice standalone` on a free port with its own SLUICE_HOME (SQLite inside), an admin
/// whose password the test knows, a Fernet key, and no external database or broker. Killed, with the
/// task processes it started, on Drop.
struct Standalone {
    child: Child,
    port: u16,
    log: PathBuf,
    // Dropped after `child` is killed (fields drop after `Drop::drop`).
    home: TempDir,
}

impl Standalone {
    fn start() -> Standalone {
        let home = tempfile::Builder::new().prefix("sluice-client-").tempdir().expect("temp SLUICE_HOME");
        let port = infra::free_port();
        let log = home.path().join("standalone.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .arg("standalone")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("SLUICE_HOME", home.path())
            .env("SLUICE_WEBSERVER_PORT", port.to_string())
            .env("SLUICE_ADMIN_USERNAME", ADMIN_USER)
            .env("SLUICE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("SLUICE_FERNET_KEY", FERNET_KEY)
            .env_remove("AIRFLOW__CORE__FERNET_KEY")
            .env_remove("SLUICE_DATABASE_URL")
            .env_remove("SLUICE_DATABASE_DIRECT_URL")
            .env_remove("SLUICE_BROKER_URL")
            .env_remove("SLUICE_RATE_LIMIT_URL")
            .stdin(Stdio::null())
            .stdout(create(&log))
            .stderr(create(&log))
            // Its own process group, so Drop also ends the shell tasks it started.
            .process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let mut standalone = Standalone { child, port, log, home };
        standalone.wait_until_healthy();
        standalone
    }

    fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + START_LIMIT;
        while !http_get(self.port, "/health").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sluice standalone exited ({status}) before serving /health:\n{}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "no /health within {START_LIMIT:?}:\n{}", self.log_tail());
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let text = read(&self.log);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        // The group id is the child's pid and cannot be reused while any member lives.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-s", "KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to its end, or kills it after `limit` and returns None.
fn run_within(command: &mut Command, limit: Duration) -> Option<ExitStatus> {
    let mut child = command.spawn().unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for check.py") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The raw response to `GET path`, or None when nothing answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

fn create(path: &Path) -> File {
    File::options().create(true).append(true).open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// A file's text; empty when it does not exist (yet).
fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}
