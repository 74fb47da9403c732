//! A `redis-server` of the test's own that speaks only TLS (`tls-port`, no plain port).

use crate::certs::ServerCert;
use crate::process::{free_port, wait_for_port};
use std::process::{Child, Command, Stdio};
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
            panic!("redis-server did not listen on {port}: {e}\n{}", crate::process::tail(&log, 40));
        }
        server
    }

    /// `rediss://localhost:<port>/<db>`.
    pub fn url(&self, db: u32) -> String {
        format!("rediss://localhost:{}/{db}", self.port)
    }

    pub fn log(&self) -> String {
        crate::process::tail(&self.dir.path().join("redis.log"), 40)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
