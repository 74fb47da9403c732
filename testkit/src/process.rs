//! Processes the tests start, and small helpers for the servers among them.

use rustix::process::Signal;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Environment variables by name.
pub type Env = BTreeMap<String, String>;

/// What a test prints when a tool it needs is missing (it fails; nothing is skipped).
pub const INSTALL_HINT: &str = "run scripts/install-test-deps.sh";
/// How long a server may take to listen before the test fails.
pub const START_LIMIT: Duration = Duration::from_secs(20);
/// Lines of a log quoted in a panic message.
pub const TAIL_LINES: usize = 40;

/// How often a wait polls: short against the servers' start-up times, long enough not to
/// compete with them for the CPU.
const POLL: Duration = Duration::from_millis(50);

/// A port nothing listens on now (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A tool by name, found on PATH or in the sbin directories (pgbouncer is in /usr/sbin);
/// panics with the install hint when there is none.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found: {INSTALL_HINT}"))
}

/// PATH for a process a test starts: the test's own, then the sbin directories.
pub fn path_var() -> String {
    format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", std::env::var("PATH").unwrap_or_default())
}

/// The last `lines` lines of a file (which may not exist yet).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = read_file(path);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A file's text; empty when it does not exist (yet).
pub fn read_file(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// `path` opened for appending (created when missing): where a child's output goes.
pub fn output_file(path: &Path) -> File {
    OpenOptions::new().create(true).append(true).open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Runs `cmd` and panics with its output when it fails.
pub fn run_checked(cmd: &mut Command) {
    run_stdout(cmd);
}

/// Runs `cmd` to success; its stdout. Panics with its output when it fails.
pub fn run_stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
        thread::sleep(POLL);
    }
}

/// Waits until something accepts connections on 127.0.0.1:`port`, or `child` exits.
pub fn wait_for_port(port: u16, child: &mut Child) -> Result<(), String> {
    // Bounded: a server that neither listens nor exits within this is broken.
    let limit = Duration::from_secs(60);
    let deadline = Instant::now() + limit;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited ({status})"));
        }
        if Instant::now() > deadline {
            return Err(format!("nothing listened within {limit:?}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A process the test started, in its own process group, its stdout and stderr appended to
/// a log file. Killed (with its whole group) on Drop.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
    group_killed: bool,
}

impl Service {
    /// Starts `program args` with exactly `env` plus `PATH` (nothing else of the test's
    /// environment leaks in, as in a container).
    pub fn spawn(name: &str, program: impl AsRef<OsStr>, args: &[impl AsRef<OsStr>], env: &Env, log: &Path) -> Service {
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args).env_clear().env("PATH", path_var()).envs(env);
        Service::start(name, &mut cmd, log)
    }

    /// Starts `cmd` as it is set up (its environment included), with stdin closed and its
    /// output appended to `log`.
    pub fn start(name: &str, cmd: &mut Command, log: &Path) -> Service {
        let file = output_file(log);
        let stderr = file.try_clone().expect("clone the log file handle");
        cmd.stdin(Stdio::null()).stdout(file).stderr(stderr).process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Service { name: name.to_string(), child, log: log.to_path_buf(), exited: None, group_killed: false }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Its exit status, if it has exited.
    pub fn status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap_or_else(|e| panic!("wait for {}: {e}", self.name));
        }
        self.exited
    }

    /// Waits up to `limit` for it to exit by itself.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.status() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL to its whole process group (the process and whatever it started, as a
    /// container's processes die with it), then reaps it. Idempotent.
    pub fn kill(&mut self) {
        if !self.group_killed {
            // The group id cannot be given to another process while any member lives, and
            // pids are not reused within moments, so this cannot hit an unrelated process.
            kill_group(self.pid());
            self.group_killed = true;
        }
        if self.status().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// SIGTERM to the process only (as `docker stop` signals a container's main process),
    /// then SIGKILL to the group: at once when the process exits within `grace` (what it
    /// left behind dies with the container), after `grace` otherwise. Returns how it
    /// ended: `None` when it had to be killed.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.status().is_none()
            && let Some(pid) = pid(self.pid())
        {
            let _ = rustix::process::kill_process(pid, Signal::TERM);
        }
        let status = self.wait(grace);
        self.kill();
        status
    }

    /// Waits until something accepts connections on `127.0.0.1:port`; panics with the log
    /// tail if the process exits first or `limit` passes.
    pub fn wait_for_port(&mut self, port: u16, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.status() {
                panic!("{} exited ({status}) before listening on {port}:\n{}", self.name, self.log_tail(TAIL_LINES));
            }
            if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!("{} does not listen on {port} after {limit:?}:\n{}", self.name, self.log_tail(TAIL_LINES));
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL to the process group `group` (a [`Service`] or other child started as the leader
/// of a group of its own); an ended group is no error.
pub fn kill_group(group: u32) {
    if let Some(group) = pid(group) {
        let _ = rustix::process::kill_process_group(group, Signal::KILL);
    }
}

fn pid(id: u32) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(i32::try_from(id).ok()?)
}
