//! A child process in a process group of its own, its output streamed to the task log: how
//! shell and Python tasks run. The group is what gets signalled, never only the leader: on
//! timeout SIGTERM goes to every process the command started, then SIGKILL to what is left
//! after the grace period; processes left running after the leader exits are terminated
//! the same way, so a task never outlives its task instance.

use super::timed_out;
use crate::task::{LogStream, Logger, TaskError};
use rustix::process::{Pid, Signal};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Lines longer than this are cut (a command printing megabytes without a newline must
/// not take the worker's memory): the log's own bound.
const MAX_LINE_BYTES: usize = Logger::MAX_LINE_BYTES;
/// How often a terminating group is checked for survivors.
const POLL: Duration = Duration::from_millis(50);
/// How long the output readers get to finish once the command's group is gone. Only a
/// process that left the group (`setsid`) and kept the pipe open makes them wait this long.
const READER_GRACE: Duration = Duration::from_secs(2);

/// How a process ended: its status and the last line it printed on stdout that is not blank.
pub(super) struct Exited {
    pub status: ExitStatus,
    pub last_line: Option<String>,
}

impl Exited {
    /// The exit code, or why there is none (a signal), as a failure.
    pub fn code(&self) -> Result<i32, TaskError> {
        self.status.code().ok_or_else(|| TaskError::new(signal_failure(self.status)))
    }
}

/// Runs `command` (`program` names it in messages) in a process group of its own, its
/// stdout and stderr streamed to `log`, within `timeout`; `kill_grace` is how long the
/// group has between SIGTERM and SIGKILL.
pub(super) async fn run_in_group(
    mut command: Command,
    program: &str,
    log: &Logger,
    timeout: Option<Duration>,
    kill_grace: Duration,
) -> Result<Exited, TaskError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| TaskError::new(format!("cannot start `{program}`: {e}")))?;
    // The group's id is the leader's pid; it is known until the leader is reaped.
    let pgid = child.id().and_then(|id| i32::try_from(id).ok()).unwrap_or(0);
    let mut group = GroupGuard { pgid: (pgid > 0).then_some(pgid) };

    let stdout = child.stdout.take().map(|out| tokio::spawn(read_lines(out, log.clone(), LogStream::Stdout)));
    let stderr = child.stderr.take().map(|err| tokio::spawn(read_lines(err, log.clone(), LogStream::Stderr)));

    let waited = match timeout {
        None => Some(child.wait().await),
        Some(limit) => tokio::time::timeout(limit, child.wait()).await.ok(),
    };
    let Some(status) = waited else {
        let limit = timeout.unwrap_or_default();
        log.info(format!("Timed out after {}s: terminating the command's process group", limit.as_secs()));
        terminate_group(&mut child, pgid, kill_grace, log).await;
        group.pgid = None;
        join_reader(stdout, log).await;
        join_reader(stderr, log).await;
        return Err(timed_out(limit, "; the command's process group was terminated"));
    };
    let status = status.map_err(|e| TaskError::new(format!("cannot wait for the command: {e}")))?;

    if group_alive(pgid).await {
        log.info("The command exited but left processes running in its process group: terminating them");
        terminate_group(&mut child, pgid, kill_grace, log).await;
    }
    group.pgid = None;
    let last_line = join_reader(stdout, log).await;
    join_reader(stderr, log).await;
    Ok(Exited { status, last_line })
}

/// Streams one output of the command into the log, line by line; returns the last line
/// that is not blank.
///
/// Each line waits for room in the log's channel before the next is read
/// ([`Logger::write_async`]): while the store is behind, the pipe fills and the command
/// blocks on its writes, so a command printing faster than the store can write is slowed
/// down instead of growing the worker's memory.
async fn read_lines<R: AsyncRead + Unpin>(reader: R, log: Logger, stream: LogStream) -> Option<String> {
    let mut reader = BufReader::new(reader);
    let mut line: Vec<u8> = Vec::new();
    let mut last = None;
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(e) => {
                log.info(format!("Reading the command's {stream} failed: {e}"));
                break;
            }
        };
        let at_end = buf.is_empty();
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        // One byte past the limit is kept, so the log sees the line is too long and cuts
        // it, saying so; the rest of the line is read and thrown away.
        let room = (MAX_LINE_BYTES + 1).saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = newline.map_or(buf.len(), |at| at + 1);
        reader.consume(used);
        if newline.is_some() || (at_end && !line.is_empty()) {
            let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
            line.clear();
            if !text.trim().is_empty() {
                last = Some(text.clone());
            }
            log.write_async(stream, text).await;
        }
        if at_end {
            break;
        }
    }
    // What the log keeps of a long line (cut), as downstream tasks read it.
    last.map(|text| if text.len() > MAX_LINE_BYTES { crate::task::cut_long_line(text) } else { text })
}

/// Waits for an output reader to reach the end of its pipe.
async fn join_reader(reader: Option<JoinHandle<Option<String>>>, log: &Logger) -> Option<String> {
    let mut reader = reader?;
    match tokio::time::timeout(READER_GRACE, &mut reader).await {
        Ok(joined) => joined.ok().flatten(),
        Err(_) => {
            reader.abort();
            log.info("Stopped reading the command's output: a process outside its process group still holds it open");
            None
        }
    }
}

/// SIGTERM to the group; SIGKILL to whatever is left of it after `grace`. Reaps the leader.
async fn terminate_group(child: &mut Child, pgid: i32, grace: Duration, log: &Logger) {
    signal_group(pgid, Some(Signal::TERM));
    let deadline = Instant::now() + grace;
    loop {
        // Reap the leader once it exits: a zombie still counts as a member of the group.
        let _ = child.try_wait();
        if !group_alive(pgid).await {
            break;
        }
        if Instant::now() >= deadline {
            log.info(format!("Processes survived SIGTERM for {}s: sending SIGKILL", grace.as_secs_f32()));
            signal_group(pgid, Some(Signal::KILL));
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = child.wait().await;
}

/// Whether any process of the group is still running. Zombies do not count: a killed
/// grandchild stays one until its new parent (PID 1, or a subreaper) reaps it, which is
/// out of our hands. Linux's /proc tells them apart; elsewhere `kill -0` counts them too.
/// The group must have been reaped of its leader (`child.wait`) for `false` to be possible.
async fn group_alive(pgid: i32) -> bool {
    // `kill -0` first: a group with no process left at all (the usual end of a command)
    // needs no scan of /proc.
    if pgid <= 0 || !signal_group(pgid, None) {
        return false;
    }
    match tokio::task::spawn_blocking(move || running_members(pgid)).await {
        Ok(Some(count)) => count > 0,
        _ => signal_group(pgid, None),
    }
}

/// How many processes of group `pgid` are running, from /proc; `None` without /proc.
fn running_members(pgid: i32) -> Option<usize> {
    let pgid = pgid.to_string();
    let mut count = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // `pid (comm) state ppid pgrp ...`; comm may contain spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((_, fields)) = stat.rsplit_once(')') else { continue };
        let mut fields = fields.split_whitespace();
        let (state, pgrp) = (fields.next(), fields.nth(1));
        if pgrp == Some(pgid.as_str()) && state != Some("Z") && state != Some("X") {
            count += 1;
        }
    }
    Some(count)
}

/// Sends `signal` to every process of group `pgid` (`None`: checks that one exists); true
/// when at least one process of the group got it.
fn signal_group(pgid: i32, signal: Option<Signal>) -> bool {
    let Some(group) = Pid::from_raw(pgid).filter(|_| pgid > 0) else { return false };
    match signal {
        Some(signal) => rustix::process::kill_process_group(group, signal).is_ok(),
        None => rustix::process::test_kill_process_group(group).is_ok(),
    }
}

/// Kills the whole group if the executor is dropped while the command runs (the worker
/// cancelled the task): `kill_on_drop` alone would only reach bash itself.
struct GroupGuard {
    pgid: Option<i32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            signal_group(pgid, Some(Signal::KILL));
        }
    }
}

fn signal_failure(status: ExitStatus) -> String {
    match status.signal() {
        Some(signal) => format!("the command was killed by signal {signal} ({})", signal_name(signal)),
        None => format!("the command ended without an exit status ({status})"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => "see `kill -l`",
    }
}
