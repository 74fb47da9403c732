//! `sluice standalone` as a process, for tests that drive it from outside (the official
//! Airflow client, a browser).

use crate::process::{TAIL_LINES, free_port, kill_group, output_file, tail};
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

/// `sluice standalone` on a free port with its own SLUICE_HOME (SQLite inside), an admin
/// whose password the test knows, a Fernet key, and no external database or broker. Killed, with the
/// task processes it started, on Drop.
#[derive(Debug)]
pub struct Standalone {
    child: Child,
    pub port: u16,
    log: PathBuf,
    home: PathBuf,
    // Dropped after `child` is killed (fields drop after `Drop::drop`); `None` when the
    // test owns the home (to start standalone there again).
    _owned_home: Option<TempDir>,
}

/// Every variable of the test's environment that would change what standalone does.
const CLEARED: [&str; 9] = [
    "AIRFLOW__CORE__FERNET_KEY",
    "SLUICE_FERNET_KEY",
    "SLUICE_SECRET_KEY",
    "SLUICE_ADMIN_USERNAME",
    "SLUICE_ADMIN_PASSWORD",
    "SLUICE_DATABASE_URL",
    "SLUICE_DATABASE_DIRECT_URL",
    "SLUICE_BROKER_URL",
    "SLUICE_RATE_LIMIT_URL",
];

impl Standalone {
    /// `binary standalone` with admin `admin_user` / `admin_password` and Fernet key `fernet_key`.
    pub fn start(binary: &Path, admin_user: &str, admin_password: &str, fernet_key: &str) -> Standalone {
        let home = tempfile::Builder::new().prefix("sluice-standalone-").tempdir().expect("temp SLUICE_HOME");
        let env = [
            ("SLUICE_ADMIN_USERNAME", admin_user),
            ("SLUICE_ADMIN_PASSWORD", admin_password),
            ("SLUICE_FERNET_KEY", fernet_key),
        ];
        let mut standalone = Standalone::launch(binary, home.path(), &env).unwrap_or_else(|(status, log)| {
            panic!("sluice standalone exited ({status}) before serving /health:\n{log}")
        });
        standalone._owned_home = Some(home);
        standalone
    }

    /// `binary standalone` in `home` (which the caller keeps, to start it there again) with
    /// exactly `env` of the variables that change what it does (see `CLEARED`); its exit
    /// status and log when it exits before it serves `/health`.
    pub fn launch(binary: &Path, home: &Path, env: &[(&str, &str)]) -> Result<Standalone, (ExitStatus, String)> {
        let port = free_port();
        let log = home.join("standalone.log");
        let mut command = Command::new(binary);
        command
            .arg("standalone")
            // Where `pipelines.yaml`'s `./` paths (the sample data) are.
            .current_dir(crate::workspace::root())
            .env("SLUICE_HOME", home)
            .env("SLUICE_WEBSERVER_PORT", port.to_string());
        for var in CLEARED {
            command.env_remove(var);
        }
        command
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(output_file(&log))
            .stderr(output_file(&log))
            // Its own process group, so Drop also ends the shell tasks it started.
            .process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let mut standalone = Standalone { child, port, log, home: home.to_path_buf(), _owned_home: None };
        standalone.wait_until_healthy()?;
        Ok(standalone)
    }

    /// Its SLUICE_HOME.
    pub fn home(&self) -> &Path {
        &self.home
    }

    fn wait_until_healthy(&mut self) -> Result<(), (ExitStatus, String)> {
        let deadline = Instant::now() + START_LIMIT;
        while !http_get(self.port, "/health").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err((status, self.log_tail()));
            }
            assert!(Instant::now() < deadline, "no /health within {START_LIMIT:?}:\n{}", self.log_tail());
            thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The `sluice standalone` process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, TAIL_LINES)
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        // The group id is the child's pid and cannot be reused while any member lives.
        kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
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
