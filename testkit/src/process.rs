//! Small helpers for the servers the tests start.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// A port nothing listens on now (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The last `lines` lines of a file (which may not exist yet).
pub fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` and panics with its output when it fails.
pub fn run_checked(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until something accepts connections on 127.0.0.1:`port`, or `child` exits.
pub fn wait_for_port(port: u16, child: &mut std::process::Child) -> Result<(), String> {
    // Bounded: a server that neither listens nor exits within this is broken.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited ({status})"));
        }
        if std::time::Instant::now() > deadline {
            return Err("nothing listened within 60 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
