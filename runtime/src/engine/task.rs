//! What a Rust task body sees: its typed context, and the errors it may return.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

pub use crate::connection::Connection;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

/// A running task body: resolves to its outputs as JSON.
pub type TaskFuture<'a> = Pin<Box<dyn Future<Output = Result<serde_json::Value, TaskError>> + Send + 'a>>;

/// Why a task ended without its outputs: a failure (retried as the task's policy says), or
/// a skip the body asked for. The message is shown in the UI and the task log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    pub message: String,
    pub ending: Ending,
}

/// How a task that returns a [`TaskError`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ending {
    /// `failed`, or `up_for_retry` while tries are left.
    #[default]
    Failure,
    /// `skipped` (Airflow's `AirflowSkipException`): not retried, not a failure; the
    /// downstream tasks follow their trigger rules.
    Skip,
    /// A sensor's "not yet": it pokes again after its `poke_interval`.
    NotReady,
}

impl TaskError {
    /// A failure.
    pub fn new(message: impl Into<String>) -> Self {
        TaskError { message: message.into(), ending: Ending::Failure }
    }

    /// The skip outcome: the task ends `skipped`, for the reason given (shown in its log).
    /// `return Err(TaskError::skip("no new games today"))`.
    pub fn skip(reason: impl Into<String>) -> Self {
        TaskError { message: reason.into(), ending: Ending::Skip }
    }

    /// A sensor's "not yet": the task (a `sensor:`) pokes again after its poke interval,
    /// until its timeout. `return Err(TaskError::not_ready("no file yet"))`.
    pub fn not_ready(reason: impl Into<String>) -> Self {
        TaskError { message: reason.into(), ending: Ending::NotReady }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {}

/// Which run and try a task instance belongs to.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub pipeline_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: u32,
    /// RFC 3339.
    pub logical_date: String,
    pub data_interval_start: String,
    pub data_interval_end: String,
    /// `scheduled`, `manual` or `backfill`.
    pub run_type: String,
    /// The run's conf as triggered (`dag_run.conf`); `null` when none was given.
    pub conf: serde_json::Value,
    /// Of the pipeline's latest successful run before this one (RFC 3339), when the task's
    /// templates read them (`prev_data_interval_start_success`, `prev_start_date_success`).
    pub prev_data_interval_start_success: Option<String>,
    pub prev_start_date_success: Option<String>,
}

/// Which output a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// A shell command's standard output.
    Stdout,
    /// A shell command's standard error.
    Stderr,
    /// A message of the task body or the runtime.
    Info,
}

impl LogStream {
    /// `stdout`, `stderr` or `info`: the name the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Info => "info",
        }
    }
}

impl fmt::Display for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a task log, with its secrets already masked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    pub text: String,
}

/// The task log. Each line has the registered secrets replaced by `***` and is cut at
/// [`Logger::MAX_LINE_BYTES`]; the last lines are kept in memory (at most
/// [`Logger::MAX_KEPT_LINES`] and [`Logger::MAX_KEPT_BYTES`]), and a [`Logger::streaming`]
/// logger also sends each line to the worker's log writer as it is written, so the store
/// has it while the task runs.
///
/// The channel to the writer is bounded, so a task that writes faster than the store can
/// take its lines cannot grow the worker's memory:
/// - [`Logger::write_async`] (a shell command's output) waits for room: the command's
///   reader stops reading its pipe, and the command blocks on a full pipe until the store
///   has caught up;
/// - [`Logger::write`] (a Rust body's `log.info(...)`, which is synchronous and must never
///   block a runtime thread) does not wait: when the channel is full the line is kept in
///   memory only, and counted. The count is said in the log (one line, "N lines ... were
///   not kept") as soon as there is room again, or when the log is closed. Only a number
///   grows while the writer is behind, never a queue.
///
/// Clones share one log: the executor hands clones to the readers of a command's output.
#[derive(Clone, Default)]
pub struct Logger {
    state: Arc<Mutex<LogState>>,
}

#[derive(Default)]
struct LogState {
    lines: VecDeque<LogLine>,
    /// The bytes of text in `lines`.
    kept_bytes: usize,
    /// Lines dropped from memory because more than the kept bounds were written.
    dropped: u64,
    /// Longest first, so a secret containing another is masked whole.
    secrets: Vec<String>,
    tx: Option<Sender<LogLine>>,
    /// Lines [`Logger::write`] could not stream since the log last said so.
    behind: u64,
    /// Lines [`Logger::write`] could not stream, in all.
    not_streamed: u64,
}

impl LogState {
    /// Keeps `line` in memory, dropping the oldest past the bounds.
    fn keep(&mut self, line: LogLine) {
        self.kept_bytes += line.text.len();
        self.lines.push_back(line);
        while self.lines.len() > Logger::MAX_KEPT_LINES || self.kept_bytes > Logger::MAX_KEPT_BYTES {
            let Some(old) = self.lines.pop_front() else { break };
            self.kept_bytes -= old.text.len();
            self.dropped += 1;
        }
    }

    /// Sends `line` if the channel has room now: first the count of what could not be sent
    /// before it, so the log says where lines are missing.
    fn send_now(&mut self, line: LogLine) {
        let Some(tx) = &self.tx else { return };
        let sent = match self.behind {
            0 => tx.try_send(line),
            behind => tx.try_send(behind_notice(behind)).and_then(|()| {
                self.behind = 0;
                tx.try_send(line)
            }),
        };
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.behind += 1;
                self.not_streamed += 1;
            }
            Err(TrySendError::Closed(_)) => self.tx = None,
        }
    }

    /// The line saying how many lines could not be streamed, when some could not.
    fn take_behind(&mut self) -> Option<LogLine> {
        let behind = std::mem::take(&mut self.behind);
        (behind > 0).then(|| behind_notice(behind))
    }
}

/// The line that says `count` lines were kept out of the stored log.
fn behind_notice(count: u64) -> LogLine {
    let text = match count {
        1 => "[1 line of the log was not kept: the task wrote it faster than the log could be stored]".to_string(),
        n => format!("[{n} lines of the log were not kept: the task wrote them faster than the log could be stored]"),
    };
    LogLine { stream: LogStream::Info, text }
}

impl fmt::Debug for Logger {
    /// Never prints a line or a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Logger")
            .field("lines", &state.lines.len())
            .field("dropped", &state.dropped)
            .field("secrets", &state.secrets.len())
            .field("streaming", &state.tx.is_some())
            .field("not_streamed", &state.not_streamed)
            .finish()
    }
}

impl Logger {
    /// How many lines a logger keeps in memory; older ones are dropped (a streaming
    /// logger has sent them on already).
    pub const MAX_KEPT_LINES: usize = 10_000;
    /// How many bytes of text a logger keeps in memory, at most.
    pub const MAX_KEPT_BYTES: usize = 1024 * 1024;
    /// Longer lines are cut there, and say so: a body logging a whole file, or a command
    /// printing megabytes without a newline, must not take the worker's memory.
    pub const MAX_LINE_BYTES: usize = 64 * 1024;
    /// Secrets shorter than this are not masked: masking one or two characters would
    /// mangle every line without hiding anything worth hiding.
    pub const MIN_SECRET_LEN: usize = 3;

    /// A logger that also sends every line to `tx` as it is written (see the type's docs
    /// for what happens when `tx`'s channel is full). Lines written after the receiver is
    /// gone, or after [`Logger::close`], are kept in memory only.
    pub fn streaming(tx: Sender<LogLine>) -> Logger {
        let logger = Logger::default();
        logger.state().tx = Some(tx);
        logger
    }

    /// A message of the task body or the runtime.
    pub fn info(&self, line: impl Into<String>) {
        self.write(LogStream::Info, line);
    }

    /// A line a command printed on its standard output.
    pub fn stdout(&self, line: impl Into<String>) {
        self.write(LogStream::Stdout, line);
    }

    /// A line a command printed on its standard error.
    pub fn stderr(&self, line: impl Into<String>) {
        self.write(LogStream::Stderr, line);
    }

    /// Writes one line to `stream`, secrets masked, without waiting: when the stream's
    /// channel is full the line is kept in memory only, and counted.
    pub fn write(&self, stream: LogStream, line: impl Into<String>) {
        let mut state = self.state();
        let line = LogLine { stream, text: cut_long_line(apply_masks(&state.secrets, line.into())) };
        state.keep(line.clone());
        state.send_now(line);
    }

    /// Writes one line to `stream`, secrets masked, waiting until the stream's channel has
    /// room for it: a writer that can wait (a command's output reader) is slowed down to
    /// the pace of the store rather than growing a queue.
    pub async fn write_async(&self, stream: LogStream, line: impl Into<String>) {
        let (line, tx, behind) = {
            let mut state = self.state();
            let line = LogLine { stream, text: cut_long_line(apply_masks(&state.secrets, line.into())) };
            state.keep(line.clone());
            let behind = state.take_behind();
            (line, state.tx.clone(), behind)
        };
        // The lock is released while waiting: other writers and `close` go on meanwhile.
        let Some(tx) = tx else { return };
        if let Some(notice) = behind
            && tx.send(notice).await.is_err()
        {
            return;
        }
        let _ = tx.send(line).await;
    }

    /// Registers a secret: from now on it reads `***` in every line (and in
    /// [`Logger::redact`]). Each line of a multi-line secret is registered on its own;
    /// empty and very short ones ([`Logger::MIN_SECRET_LEN`]) are ignored.
    pub fn mask(&self, secret: impl AsRef<str>) {
        let mut state = self.state();
        for part in secret.as_ref().lines().map(str::trim_end) {
            if part.chars().count() >= Self::MIN_SECRET_LEN && !state.secrets.iter().any(|s| s == part) {
                state.secrets.push(part.to_string());
            }
        }
        state.secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// `text` with the registered secrets masked: for messages that leave the task by
    /// another way than the log (its error, for one).
    pub fn redact(&self, text: &str) -> String {
        apply_masks(&self.state().secrets, text.to_string())
    }

    /// Stops streaming: the sender is dropped, so the receiver ends once it has read what
    /// was sent. Later lines are kept in memory only. The executor closes the log when a
    /// task ends, so nothing the task left running can hold the worker's log writer open.
    ///
    /// A count of lines that could not be streamed is sent last; when the channel is full
    /// even then, a task of its own waits for room (the receiver ends after reading it).
    pub fn close(&self) {
        let mut state = self.state();
        let Some(tx) = state.tx.take() else { return };
        let Some(notice) = state.take_behind() else { return };
        if let Err(TrySendError::Full(notice)) = tx.try_send(notice)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = tx.send(notice).await;
            });
        }
    }

    /// The texts of the lines kept in memory, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.state().lines.iter().map(|l| l.text.clone()).collect()
    }

    /// The lines kept in memory, with their streams, oldest first.
    pub fn entries(&self) -> Vec<LogLine> {
        self.state().lines.iter().cloned().collect()
    }

    /// How many lines were dropped from memory (the oldest, past the kept bounds).
    pub fn dropped(&self) -> u64 {
        self.state().dropped
    }

    /// How many lines [`Logger::write`] could not stream because the channel was full.
    pub fn not_streamed(&self) -> u64 {
        self.state().not_streamed
    }

    fn state(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding the lock cannot leave the state half-written (every
        // update is a push or a pop), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `text` cut at [`Logger::MAX_LINE_BYTES`] (at a character boundary), saying so.
pub(crate) fn cut_long_line(mut text: String) -> String {
    if text.len() <= Logger::MAX_LINE_BYTES {
        return text;
    }
    let mut at = Logger::MAX_LINE_BYTES;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.truncate(at);
    text.push_str(&format!(" [line cut at {} bytes]", Logger::MAX_LINE_BYTES));
    text
}

/// `text` with the task's own secrets and every secret the process knows masked.
fn apply_masks(secrets: &[String], text: String) -> String {
    let mut text = crate::secrets::redact(&text);
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// What the runtime hands to the generated dispatch for one task instance: untyped
/// values the dispatch turns into the task's typed [`TaskContext`].
#[derive(Debug, Default, Clone)]
pub struct TaskInput {
    pub run: RunInfo,
    /// The run's params (defaults merged with the trigger's conf), as JSON.
    pub params: serde_json::Value,
    /// The connections the task declared, by id.
    pub connections: BTreeMap<String, Connection>,
    /// Outputs of upstream tasks that succeeded, by task id.
    pub upstream_outputs: BTreeMap<String, serde_json::Value>,
    pub log: Logger,
}

impl TaskInput {
    /// The run's params as the pipeline's typed params struct.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, TaskError> {
        let params = match &self.params {
            serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
            other => other.clone(),
        };
        serde_json::from_value(params)
            .map_err(|e| TaskError::new(format!("the run's params do not match their declared types: {e}")))
    }

    /// A connection the task declared.
    pub fn connection(&self, id: &str) -> Result<&Connection, TaskError> {
        self.connections
            .get(id)
            .ok_or_else(|| TaskError::new(format!("connection `{id}` is declared but was not provided to the task")))
    }

    /// The typed outputs of upstream task `task`; an error if it produced none.
    pub fn upstream<O: DeserializeOwned>(&self, task: &str) -> Result<O, TaskError> {
        self.upstream_optional(task)?
            .ok_or_else(|| TaskError::new(format!("upstream task `{task}` has no outputs (did it succeed?)")))
    }

    /// The typed outputs of upstream task `task`, `None` if it did not succeed.
    pub fn upstream_optional<O: DeserializeOwned>(&self, task: &str) -> Result<Option<O>, TaskError> {
        match self.upstream_outputs.get(task) {
            None => Ok(None),
            Some(value) => serde_json::from_value(value.clone()).map(Some).map_err(|e| {
                TaskError::new(format!("outputs of upstream task `{task}` do not match their declared types: {e}"))
            }),
        }
    }
}

/// The context a Rust task body receives. The generated code instantiates it per task:
/// `P` is the pipeline's params struct, `C` exposes only the connections the task
/// declares, `U` the typed outputs of its upstream tasks.
#[derive(Debug)]
pub struct TaskContext<'a, P, C, U> {
    pub run: &'a RunInfo,
    pub params: P,
    pub conn: C,
    pub upstream: U,
    pub log: &'a Logger,
}

/// Serializes a task's typed outputs for the store.
pub fn to_output<O: Serialize>(outputs: &O) -> Result<serde_json::Value, TaskError> {
    serde_json::to_value(outputs).map_err(|e| TaskError::new(format!("outputs could not be serialized: {e}")))
}

/// Outputs of a shell task, as downstream Rust tasks read them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShellOutputs {
    /// The last line the command printed on stdout.
    pub stdout: String,
    pub exit_code: i64,
}

/// Outputs of an http task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HttpOutputs {
    pub status: i64,
    pub body: serde_json::Value,
}

/// Outputs of a sql task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SqlOutputs {
    pub rows_affected: i64,
    pub rows: serde_json::Value,
}
