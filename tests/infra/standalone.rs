//! `sluice standalone` as a process, for tests that drive it from outside (the official
//! Airflow client, a browser).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long standalone may take to answer `/health`.
const START_LIMIT: Duration = Duration::from_secs(30);
const TAIL_LINES: usize = 40;

/// `sluice standalone` on a free port with its own SLUICE_HOME (SQLite inside), an admin
/// whose password the test knows, a Fernet key, and no external database or broker. Killed, with the
/// task processes it started, on Drop.
#[derive(Debug)]
pub struct Standalone {
    child: Child,
    pub port: u16,
    log: PathBuf,
    // Dropped after `child` is killed (fields drop after `Drop::drop`).
    pub home: TempDir,
}

impl Standalone {
    /// `binary standalone` with admin `admin_user` / `admin_password` and Fernet key `fernet_key`.
    pub fn start(binary: &Path, admin_user: &str, admin_password: &str, fernet_key: &str) -> Standalone {
        let home = tempfile::Builder::new().prefix("sluice-standalone-").tempdir().expect("temp SLUICE_HOME");
        let port = super::free_port();
        let log = home.path().join("standalone.log");
        let mut command = Command::new(binary);
        command
            .arg("standalone")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("SLUICE_HOME", home.path())
            .env("SLUICE_WEBSERVER_PORT", port.to_string())
            .env("SLUICE_ADMIN_USERNAME", admin_user)
            .env("SLUICE_ADMIN_PASSWORD", admin_password)
            .env("SLUICE_FERNET_KEY", fernet_key)
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

    /// The `sluice standalone` process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
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
pub fn run_within(command: &mut Command, limit: Duration) -> Option<ExitStatus> {
    let mut child = command.spawn().unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
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
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

pub fn create(path: &Path) -> File {
    File::options().create(true).append(true).open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// A file's text; empty when it does not exist (yet).
pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}
