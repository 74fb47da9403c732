//! `redis-server` as the tests run it: the compose `redis` service on the generated
//! `redis.conf` ([`Redis`]), or one of the test's own that speaks only TLS ([`TlsRedis`]).

use crate::certs::ServerCert;
use crate::compose::Compose;
use crate::process::{Env, START_LIMIT, Service, TAIL_LINES, free_port, tail, tool, wait_for_port};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const INSTALL_HINT: &str = "install redis-server (Debian: apt-get install redis-server)";

/// Killed on Drop.
#[derive(Debug)]
pub struct TlsRedis {
    pub port: u16,
    child: Child,
    dir: TempDir,
}

impl TlsRedis {
    /// Presenting `cert`; clients need no certificate of their own.
    pub fn start(cert: &ServerCert) -> TlsRedis {
        let dir = tempfile::Builder::new().prefix("sluice-redis-tls-").tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", &cert.cert_file.to_string_lossy()])
            .args(["--tls-key-file", &cert.key_file.to_string_lossy()])
            .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
            .args(["--dir", &dir.path().to_string_lossy(), "--logfile", &log.to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start redis-server: {e}: {INSTALL_HINT}"));
        let mut server = TlsRedis { port, child, dir };
        if let Err(e) = wait_for_port(port, &mut server.child) {
            panic!("redis-server did not listen on {port}: {e}\n{}", tail(&log, 40));
        }
        server
    }

    /// `rediss://localhost:<port>/<db>`.
    pub fn url(&self, db: u32) -> String {
        format!("rediss://localhost:{}/{db}", self.port)
    }

    pub fn log(&self) -> String {
        tail(&self.dir.path().join("redis.log"), 40)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a Redis keeps across a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// As `generated/redis/redis.conf` says: the append-only file (fsync every second).
    AsGenerated,
    /// Nothing on disk (`appendonly no`, `save ""`): a restart starts empty.
    Off,
}

/// The real `redis-server`, started with the compose `redis` service's command (the
/// generated `redis.conf`), with only the port, bind address, data directory, pid file,
/// log file and daemonizing overridden on the command line. Killed on Drop; the data
/// directory lives until then, so a restart finds what the append-only file kept.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    program: PathBuf,
    args: Vec<String>,
    persistence: Persistence,
    process: Option<Service>,
    dir: TempDir,
}

impl Redis {
    /// With the generated persistence (the append-only file).
    pub fn start(compose: &Compose) -> Redis {
        Redis::start_with(compose, Persistence::AsGenerated)
    }

    pub fn start_with(compose: &Compose, persistence: Persistence) -> Redis {
        let spec = compose.service("redis", &Env::new()).unwrap_or_else(|e| panic!("compose: {e}"));
        let command = spec.localize(&spec.command);
        assert!(!command.is_empty(), "the redis service has no command");
        let program = tool(&command[0]);
        let dir = tempfile::Builder::new().prefix("sluice-redis-").tempdir().expect("temp dir");
        let port = free_port();
        let mut args = command[1..].to_vec();
        let data = dir.path().to_string_lossy().into_owned();
        let pidfile = dir.path().join("redis.pid").to_string_lossy().into_owned();
        for (key, value) in [
            ("--port", port.to_string()),
            ("--bind", "127.0.0.1".to_string()),
            ("--dir", data),
            ("--daemonize", "no".to_string()),
            ("--pidfile", pidfile),
            ("--logfile", String::new()),
        ] {
            args.extend([key.to_string(), value]);
        }
        let mut redis = Redis { port, program, args, persistence, process: None, dir };
        redis.spawn();
        redis
    }

    /// `redis://127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, what `redis:6379` becomes.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL: what the last second of writes survives depends on the persistence.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Kills it (if running) and starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.restart_with(self.persistence);
    }

    /// As [`Redis::restart`], switching persistence: `Off` after `AsGenerated` starts empty
    /// (the append-only file is not read), `AsGenerated` loads what the file kept.
    pub fn restart_with(&mut self, persistence: Persistence) {
        self.kill();
        self.persistence = persistence;
        self.spawn();
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Service::pid)
    }

    /// The end of Redis's log, across restarts.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("redis.log"), TAIL_LINES)
    }

    fn spawn(&mut self) {
        let mut args = self.args.clone();
        if self.persistence == Persistence::Off {
            args.extend(["--appendonly", "no", "--save", ""].map(String::from));
        }
        let log = self.dir.path().join("redis.log");
        let mut process = Service::spawn("redis-server", &self.program, &args, &Env::new(), &log);
        process.wait_for_port(self.port, START_LIMIT);
        // Listening is not ready: while it loads the append-only file Redis answers -LOADING.
        let deadline = Instant::now() + START_LIMIT;
        while redis_ping(self.port).as_deref() != Some("+PONG") {
            if Instant::now() > deadline {
                panic!("redis-server does not answer PING after {START_LIMIT:?}:\n{}", process.log_tail(TAIL_LINES));
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(process);
    }
}

/// The first line of Redis's reply to PING.
fn redis_ping(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"PING\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line.trim_end().to_string())
}
