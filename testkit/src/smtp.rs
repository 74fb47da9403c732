//! A real SMTP server (aiosmtpd, from the test venv) on 127.0.0.1, secured with STARTTLS
//! or with implicit TLS (SMTPS), delivering what it accepts into a maildir.

use crate::certs::ServerCert;
use crate::process::{free_port, wait_for_port};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use tempfile::TempDir;

/// How the server secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain at first; `STARTTLS` is required before a message is accepted.
    StartTls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

/// Killed on Drop.
#[derive(Debug)]
pub struct SmtpServer {
    pub port: u16,
    child: Child,
    dir: TempDir,
}

impl SmtpServer {
    pub fn start(tls: SmtpTls, cert: &ServerCert) -> SmtpServer {
        let python = crate::venv::python();
        let dir = tempfile::Builder::new().prefix("sluice-smtp-").tempdir().expect("temp dir");
        let port = free_port();
        let (cert_flag, key_flag) = match tls {
            SmtpTls::StartTls => ("--tlscert", "--tlskey"),
            SmtpTls::Implicit => ("--smtpscert", "--smtpskey"),
        };
        let log = std::fs::File::create(dir.path().join("smtp.log")).expect("log file");
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .args([cert_flag, &cert.cert_file.to_string_lossy()])
            .args([key_flag, &cert.key_file.to_string_lossy()])
            .arg(dir.path().join("maildir"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {} -m aiosmtpd: {e}", python.display()));
        let mut server = SmtpServer { port, child, dir };
        if let Err(e) = wait_for_port(port, &mut server.child) {
            panic!("aiosmtpd did not listen on {port}: {e}\n{}", server.log());
        }
        server
    }

    /// The messages delivered so far, each as its raw text.
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("maildir").join("new");
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&new).map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect()).unwrap_or_default();
        files.sort();
        files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect()
    }

    pub fn log(&self) -> String {
        crate::process::tail(&self.dir.path().join("smtp.log"), 40)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
