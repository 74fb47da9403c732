//! Shell tasks: `bash -c <rendered command>` in a process group of its own.
//!
//! The group is what gets signalled, never only the bash process: on timeout SIGTERM goes
//! to every process the command started (`sleep 1000 &`, a pipeline, a `bash -c` inside),
//! then SIGKILL to what is left after the grace period. Processes the command leaves running
//! after it exits are terminated the same way, so a task never outlives its task instance.
//! (A process that calls `setsid` leaves the group, as it would leave Airflow's.)
//!
//! The command starts from an empty environment: `PATH`, `HOME`, `LANG` and `TZ`, the run's
//! facts (`AIRFLOW_CTX_*` and `SLUICE_*` names), the declared connections as
//! `AIRFLOW_CONN_<ID>` URIs and the task's own `env:`. Nothing else of the worker's
//! environment reaches it: not the Fernet key, the session key, the admin password nor the
//! metadata database's URL.

use super::{ExecEnv, render, timed_out};
use crate::spec::{OutputSpec, PipelineSpec, TaskSpec};
use crate::task::{LogStream, Logger, TaskError, TaskInput};
use crate::template::{Language, TemplateContext};
use rustix::process::{Pid, Signal};
use sluice_contract::outputs;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The variable naming the file a shell task writes its declared outputs to.
const SLUICE_OUTPUTS: &str = "SLUICE_OUTPUTS";

/// Lines longer than this are cut (a command printing megabytes without a newline must
/// not take the worker's memory): the log's own bound.
const MAX_LINE_BYTES: usize = Logger::MAX_LINE_BYTES;
/// How often a terminating group is checked for survivors.
const POLL: Duration = Duration::from_millis(50);
/// How long the output readers get to finish once the command's group is gone. Only a
/// process that left the group (`setsid`) and kept the pipe open makes them wait this long.
const READER_GRACE: Duration = Duration::from_secs(2);

/// A shell task's step, as declared.
pub(super) struct Script<'a> {
    pub command: &'a str,
    pub env: &'a [(&'a str, &'a str)],
    pub skip_exit_code: Option<i32>,
    /// A sensor's exit code for "not yet".
    pub not_ready_exit_code: Option<i32>,
}

pub(super) async fn run(
    pipeline: &PipelineSpec,
    task: &TaskSpec,
    script: Script<'_>,
    input: &TaskInput,
    env: &ExecEnv,
    timeout: Option<Duration>,
) -> Result<serde_json::Value, TaskError> {
    let ctx = TemplateContext::from_input(input, env.variables.clone());
    let command = render(env, input, "the shell command", script.command, &ctx, Some(Language::Shell))?;
    let mut vars = task_env(pipeline, task, input);
    for (name, value) in script.env {
        vars.push((name.to_string(), render(env, input, &format!("`env` {name}"), value, &ctx, None)?));
    }
    // Declared outputs come back as `name=value` lines in a file of the try's own.
    let declared: Vec<&OutputSpec> = super::outputs::declared(task.outputs).collect();
    let outputs_file = if declared.is_empty() {
        None
    } else {
        let file = tempfile::Builder::new()
            .prefix("sluice-outputs-")
            .tempfile()
            .map_err(|e| TaskError::new(format!("cannot make the file for the task's outputs: {e}")))?;
        vars.push((SLUICE_OUTPUTS.to_string(), file.path().display().to_string()));
        Some(file)
    };
    let log = &input.log;
    log.info(format!("Running command: {command}"));

    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&command)
        .env_clear()
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| TaskError::new(format!("cannot start `bash`: {e}")))?;
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
        terminate_group(&mut child, pgid, env.kill_grace, log).await;
        group.pgid = None;
        join_reader(stdout, log).await;
        join_reader(stderr, log).await;
        return Err(timed_out(limit, "; the command's process group was terminated"));
    };
    let status = status.map_err(|e| TaskError::new(format!("cannot wait for the command: {e}")))?;

    if group_alive(pgid).await {
        log.info("The command exited but left processes running in its process group: terminating them");
        terminate_group(&mut child, pgid, env.kill_grace, log).await;
    }
    group.pgid = None;
    let last_line = join_reader(stdout, log).await;
    join_reader(stderr, log).await;

    match status.code() {
        Some(0) => {
            let mut outputs = serde_json::Map::new();
            outputs.insert(outputs::SHELL_STDOUT.into(), last_line.unwrap_or_default().into());
            outputs.insert(outputs::SHELL_EXIT_CODE.into(), 0.into());
            if let Some(file) = &outputs_file {
                let text = tokio::fs::read_to_string(file.path()).await.map_err(|e| {
                    TaskError::new(format!("cannot read the task's outputs from `$SLUICE_OUTPUTS`: {e}"))
                })?;
                outputs.extend(super::outputs::from_lines(task.id, &declared, &text)?);
            }
            Ok(serde_json::Value::Object(outputs))
        }
        Some(code) if Some(code) == script.not_ready_exit_code => {
            Err(TaskError::not_ready(format!("the command exited with status {code}: not yet")))
        }
        Some(code) if Some(code) == script.skip_exit_code => {
            Err(TaskError::skip(format!("the command exited with status {code}, its `skip_exit_code`: skipped")))
        }
        Some(code) => Err(TaskError::new(format!("the command exited with status {code} (its output is in the log)"))),
        None => Err(TaskError::new(signal_failure(status))),
    }
}

/// Variables of the worker's own environment a command gets, each with the value it gets
/// when the worker has none.
const INHERITED: &[(&str, &str)] = &[
    ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    ("HOME", "/"),
    ("LANG", "C.UTF-8"),
    ("TZ", "UTC"),
];

/// The whole environment of a command: see the module's documentation.
fn task_env(pipeline: &PipelineSpec, task: &TaskSpec, input: &TaskInput) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = INHERITED
        .iter()
        .map(|(name, default)| (name.to_string(), std::env::var(name).unwrap_or_else(|_| default.to_string())))
        .collect();
    vars.extend(run_facts(pipeline, task, input));
    vars
}

/// The task's identity (Sluice's and Airflow's names) and its connections as
/// `AIRFLOW_CONN_<ID>` URIs.
fn run_facts(pipeline: &PipelineSpec, task: &TaskSpec, input: &TaskInput) -> Vec<(String, String)> {
    let run = &input.run;
    let logical_date = crate::template::isoformat_utc(&run.logical_date).unwrap_or_else(|| run.logical_date.clone());
    let try_number = run.try_number.to_string();
    let mut vars: Vec<(String, String)> = [
        ("SLUICE_PIPELINE_ID", run.pipeline_id.as_str()),
        ("SLUICE_RUN_ID", &run.run_id),
        ("SLUICE_TASK_ID", &run.task_id),
        ("SLUICE_TRY_NUMBER", &try_number),
        ("SLUICE_LOGICAL_DATE", &logical_date),
        ("AIRFLOW_CTX_DAG_ID", &run.pipeline_id),
        ("AIRFLOW_CTX_TASK_ID", &run.task_id),
        ("AIRFLOW_CTX_RUN_ID", &run.run_id),
        // Airflow's own name for the run id, and Airflow 2's for the logical date.
        ("AIRFLOW_CTX_DAG_RUN_ID", &run.run_id),
        ("AIRFLOW_CTX_LOGICAL_DATE", &logical_date),
        ("AIRFLOW_CTX_EXECUTION_DATE", &logical_date),
        ("AIRFLOW_CTX_TRY_NUMBER", &try_number),
        ("AIRFLOW_CTX_DAG_OWNER", pipeline.owner),
        ("AIRFLOW_CTX_DAG_EMAIL", &task.email.join(",")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for conn in input.connections.values() {
        vars.push((conn.env_var_name(), conn.uri()));
    }
    vars
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
