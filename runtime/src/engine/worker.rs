//! The worker: claims queued task instances, runs them through the executors, streams
//! their logs into the store, and records the outcome — which, in the same transaction,
//! queues whatever became ready downstream. Outcomes that end while another batch is
//! being recorded share the next transaction (see [`record_batches`]).

use crate::clock::to_rfc3339;
use crate::notify::{Notifier, base_url_from_env};
use crate::registry::Registry;
use crate::resolver::Resolver;
use crate::scheduler::Dispatch;
use crate::shutdown::Shutdown;
use crate::spec::{PipelineSpec, TaskKind, TaskSpec};
use crate::spool::{Replayed, Spool, Spooled};
use crate::store::{Claimed, Finish, Outcome, Queued, Recorded, Store, StoreError, Take, Trail};
use crate::task::{Ending, Logger, RunInfo, TaskInput};
use crate::tasklog::LogLimits;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// The in-process queue of standalone mode: task instance ids in dispatch order.
#[derive(Debug, Clone)]
pub struct LocalQueue {
    tx: mpsc::UnboundedSender<i64>,
}

impl LocalQueue {
    pub fn new() -> (LocalQueue, mpsc::UnboundedReceiver<i64>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (LocalQueue { tx }, rx)
    }
}

impl Dispatch for LocalQueue {
    fn dispatch(&self, queued: Vec<Queued>) {
        for q in queued {
            // The receiver lives as long as the worker; after shutdown the store still
            // holds the task as queued, and the next start picks it up.
            let _ = self.tx.send(q.ti_id);
        }
    }
}

/// How long a worker keeps trying to record an outcome while the database is away, by
/// default (`SLUICE_RECORD_PATIENCE_SECS`); after that the outcome waits in the spool.
pub const RECORD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);
/// The most outcomes one transaction records.
const BATCH_AT_MOST: usize = 64;

#[derive(Debug, Clone)]
pub struct Worker {
    registry: &'static Registry,
    store: Store,
    dispatch: Arc<dyn Dispatch>,
    name: String,
    /// Variables for templates (`var.value.X`).
    variables: Arc<BTreeMap<String, String>>,
    /// Where the connections tasks declared come from.
    connections: Resolver,
    /// Sends the notifications a finished try queued, right after it (the scheduler's
    /// pass is the safety net); `None` leaves them to the caller.
    notifier: Option<Notifier>,
    /// The queues from which a finishing task's worker takes the next ready task itself
    /// (empty: all); `None`: everything goes through the dispatch.
    takes_next: Option<Arc<[String]>>,
    /// Where outcomes wait for their batch; the batching task starts on first use.
    recorder: Arc<OnceLock<mpsc::UnboundedSender<Pending>>>,
    /// Decrypts secret variables; `None`: the deployment's key variable, read per task.
    crypto: Option<Arc<crate::crypto::Crypto>>,
    /// The most of a try's log that is stored.
    log_limits: LogLimits,
    /// Where outcomes the store cannot take yet are kept; `None`: only in memory.
    spool: Option<Spool>,
    /// How long an outcome is retried in process before its slot is freed.
    patience: std::time::Duration,
    /// Connections of sql tasks, kept open between tasks.
    sql_connections: crate::executor::SqlConnections,
}

impl Worker {
    pub fn new(
        registry: &'static Registry,
        store: Store,
        dispatch: Arc<dyn Dispatch>,
        name: impl Into<String>,
    ) -> Worker {
        Worker {
            registry,
            dispatch,
            name: name.into(),
            variables: Arc::new(BTreeMap::new()),
            connections: Resolver::from_env(registry),
            notifier: Some(Notifier::new(store.clone(), Resolver::from_env(registry), base_url_from_env(registry))),
            takes_next: None,
            recorder: Arc::new(OnceLock::new()),
            crypto: None,
            log_limits: LogLimits::default(),
            spool: None,
            patience: RECORD_PATIENCE,
            sql_connections: crate::executor::SqlConnections::default(),
            store,
        }
    }

    /// Keeps at most `limits` of each try's log (the settings' `task_log`); the default is
    /// [`LogLimits::default`].
    pub fn with_log_limits(mut self, limits: LogLimits) -> Worker {
        self.log_limits = limits;
        self
    }

    /// Keeps outcomes the store cannot take at once in `spool` (synced to disk before the
    /// worker moves on), replays them at every heartbeat, and lets [`Worker::replay_spool`]
    /// replay them at start.
    pub fn with_spool(mut self, spool: Spool) -> Worker {
        self.spool = Some(spool);
        self
    }

    /// How long an outcome is retried in process while the database is away (default
    /// [`RECORD_PATIENCE`]); its slot is then freed and the spool keeps it.
    pub fn with_record_patience(mut self, patience: std::time::Duration) -> Worker {
        self.patience = patience;
        self
    }

    /// Decrypts secret variables with `crypto` (standalone's keys, which may come from
    /// `SLUICE_HOME`) instead of the deployment's key variable.
    pub fn with_crypto(mut self, crypto: Arc<crate::crypto::Crypto>) -> Worker {
        self.crypto = Some(crypto);
        self
    }

    /// When a finish makes a task on one of `queues` ready (all queues when empty), this
    /// worker claims it in the same transaction and runs it next in the slot it holds: a
    /// chain's hand-over costs one transaction and no trip through the broker.
    pub fn taking_next(mut self, queues: &[String]) -> Worker {
        self.takes_next = Some(queues.into());
        self
    }

    /// Where connections come from; [`Worker::new`] reads it from the environment.
    pub fn with_connections(mut self, connections: Resolver) -> Worker {
        self.notifier = self.notifier.map(|n| n.with_connections(connections.clone()));
        self.connections = connections;
        self
    }

    /// Leaves notifications queued in the store for the caller to send (`dags test`
    /// sends them before it exits).
    pub fn without_notifier(mut self) -> Worker {
        self.notifier = None;
        self
    }

    /// Takes task instances from `queue` and runs up to `concurrency` at once, until
    /// `shutdown` is notified; running tasks are finished before it returns.
    pub async fn run(self, mut queue: mpsc::UnboundedReceiver<i64>, concurrency: usize, shutdown: Shutdown) {
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        loop {
            let ti_id = tokio::select! {
                next = queue.recv() => match next { Some(id) => id, None => break },
                () = shutdown.wait() => break,
            };
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let worker = self.clone();
            tokio::spawn(async move {
                if let Err(e) = worker.run_task(ti_id).await {
                    tracing::warn!("task instance {ti_id}: {e}");
                }
                drop(permit);
            });
        }
        // Wait for running tasks: every permit back means nothing runs.
        let _ = slots.acquire_many(u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX)).await;
    }

    /// Claims, runs and records one task instance; `None` when another worker claimed
    /// it first or it is no longer queued (not an error).
    /// With [`Worker::taking_next`], what it claimed while finishing runs next, here.
    pub async fn run_task(&self, ti_id: i64) -> Result<Option<Recorded>, StoreError> {
        let Some(mut claimed) = self.claim(ti_id).await? else { return Ok(None) };
        loop {
            let mut finished = self.run_claimed(&claimed).await?;
            match finished.next.take() {
                Some(next) => claimed = next,
                None => return Ok(Some(finished)),
            }
        }
    }

    /// Claims a queued task instance for this worker (its next try starts).
    pub async fn claim(&self, ti_id: i64) -> Result<Option<Claimed>, StoreError> {
        self.store.claim(ti_id, &self.name, self.registry.pipelines).await
    }

    /// Claims several queued task instances in one transaction; returns those claimed.
    pub async fn claim_many(&self, ti_ids: &[i64]) -> Result<Vec<Claimed>, StoreError> {
        self.store.claim_many(ti_ids, &self.name, self.registry.pipelines).await
    }

    /// Runs a claimed try and records its outcome. Dropping the future stops the work
    /// (a shell task's whole process group is killed); the try is then still `running`
    /// in the store, for [`Store::hand_back`] or the zombie sweep.
    pub async fn run_claimed(&self, claimed: &Claimed) -> Result<Recorded, StoreError> {
        let pipeline = self.registry.pipeline(&claimed.pipeline_id);
        let task = pipeline.and_then(|p| p.task(&claimed.task_id));
        let (Some(pipeline), Some(task)) = (pipeline, task) else {
            let message = format!(
                "task `{}` of pipeline `{}` is not in this build of the pipelines",
                claimed.task_id, claimed.pipeline_id
            );
            return self.record(None, claimed, Outcome::Failed(message)).await;
        };
        let (tx, rx) = mpsc::channel(LOG_CHANNEL_LINES);
        let mut input = match self.input(pipeline, task, claimed, Logger::streaming(tx)) {
            Ok(input) => input,
            Err(message) => return self.record(Some(pipeline), claimed, Outcome::Failed(message)).await,
        };
        let templates = task.kind.templates();
        if PREVIOUS_SUCCESS.iter().any(|name| crate::template::reads(&templates, name)) {
            let previous = self.store.previous_success(pipeline.id, claimed.run.logical_date).await?;
            input.run.prev_data_interval_start_success = previous.as_ref().map(|r| to_rfc3339(r.data_interval_start));
            input.run.prev_start_date_success = previous.and_then(|r| r.start_date).map(to_rfc3339);
        }
        let logs = tokio::spawn(write_log(self.store.clone(), claimed.ti_id, claimed.try_number, rx, self.log_limits));
        // Variables feed templates: a task whose templates never read `var` skips the read
        // (and the decryption of every stored variable).
        let variables = if crate::template::reads(&templates, "var") {
            self.variables_for(&input.log).await
        } else {
            Arc::clone(&self.variables)
        };
        let env = crate::executor::ExecEnv {
            sql_connections: self.sql_connections.clone(),
            ..crate::executor::ExecEnv::new(variables)
        };
        let result = crate::executor::execute(self.registry, pipeline, task, input, &env).await;
        let rendered = env.rendered();
        let rendered = (!rendered.is_empty()).then(|| serde_json::to_string(&rendered).unwrap_or_default());
        // The input (and its log sender) is dropped by now: the log writer drains and ends,
        // handing back what it did not write yet.
        let log = logs.await.unwrap_or_default();
        let outcome = match result {
            Ok(outputs) => Outcome::Success(outputs),
            Err(e) if e.ending == Ending::Skip => Outcome::Skipped(e.message),
            Err(e) if e.ending == Ending::NotReady => Outcome::NotReady(e.message),
            Err(e) => Outcome::Failed(e.message),
        };
        let trail = Trail { rendered, log, log_limits: self.log_limits };
        self.record_try(Some(pipeline), claimed, outcome, trail).await
    }

    /// Records, until `shutdown`, that this worker lives and runs its running tasks;
    /// the scheduler takes a running task whose heartbeat stops for a zombie.
    pub async fn heartbeat(self, every: std::time::Duration, shutdown: Shutdown) {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let mut job = None;
        loop {
            match self.store.heartbeat(job, "worker", &host).await {
                Ok(id) => job = Some(id),
                Err(e) => tracing::warn!("worker heartbeat failed: {e}"),
            }
            if let Err(e) = self.store.beat_running_tasks(&self.name).await {
                tracing::warn!("task heartbeats failed: {e}");
            }
            // Outcomes whose retry window passed are recorded as soon as the store is back,
            // not only at the next start: their tries would otherwise stay `running`, kept
            // alive by the heartbeat above.
            self.replay_spool().await;
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.wait() => return,
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records the outcomes waiting in the spool (see [`crate::spool::replay`]), except those
    /// this process is still retrying itself.
    pub async fn replay_spool(&self) -> Replayed {
        match &self.spool {
            Some(spool) => crate::spool::replay(spool, &self.store, self.registry, &*self.dispatch).await,
            None => Replayed::default(),
        }
    }

    /// [`Worker::replay_spool`] at start, before any claim: retried with backoff while the
    /// store fails, for the record patience at most or until `shutdown`.
    pub async fn replay_spool_first(&self, shutdown: &Shutdown) -> Replayed {
        let started = tokio::time::Instant::now();
        let mut backoff = crate::broker::Backoff::new();
        let mut total = Replayed::default();
        loop {
            let pass = self.replay_spool().await;
            total.recorded += pass.recorded;
            total.superseded += pass.superseded;
            total.stuck = pass.stuck;
            total.kept = pass.kept;
            if pass.kept == 0 || started.elapsed() >= self.patience {
                return total;
            }
            tokio::select! {
                () = backoff.wait() => {}
                () = shutdown.wait() => return total,
            }
        }
    }

    /// Whether the spool holds this try's outcome: then the try has ended, and must not be
    /// handed back to run again.
    pub async fn spooled(&self, ti_id: i64, try_number: i64) -> bool {
        match &self.spool {
            Some(spool) => spool.holds(ti_id, try_number).await,
            None => false,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The variables templates see (`var.value.X`): the fixed ones given to the worker,
    /// then those in the store; values of secret variables are masked in the task log.
    async fn variables_for(&self, log: &Logger) -> Arc<BTreeMap<String, String>> {
        let mut all = (*self.variables).clone();
        let from_env = || crate::crypto::Crypto::from_env(self.registry.deployment.fernet_key_env).map(Arc::new);
        let stored = match self.crypto.clone().map_or_else(from_env, Ok) {
            Ok(crypto) => self.store.variables(&crypto).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(vars) => {
                for v in vars {
                    if v.secret {
                        log.mask(&v.value);
                    }
                    all.insert(v.key, v.value);
                }
            }
            Err(e) => tracing::warn!("variables are not available to templates: {e}"),
        }
        Arc::new(all)
    }

    async fn record(
        &self,
        pipeline: Option<&'static PipelineSpec>,
        claimed: &Claimed,
        outcome: Outcome,
    ) -> Result<Recorded, StoreError> {
        self.record_try(pipeline, claimed, outcome, Trail::default()).await
    }

    /// Records an outcome and, with it, what else its try left (`trail`).
    async fn record_try(
        &self,
        pipeline: Option<&'static PipelineSpec>,
        claimed: &Claimed,
        outcome: Outcome,
        mut trail: Trail,
    ) -> Result<Recorded, StoreError> {
        let failed = matches!(outcome, Outcome::Failed(_));
        // A failure's error line (a skip's reason) comes last in its log, after the lines
        // still waiting.
        if !matches!(outcome, Outcome::Success(_)) && !trail.log.is_empty() {
            let lines = std::mem::take(&mut trail.log);
            if let Err(e) =
                self.store.append_task_log(claimed.ti_id, claimed.try_number, &lines, trail.log_limits).await
            {
                tracing::warn!("cannot write the log of task instance {}: {e}", claimed.ti_id);
            }
        }
        // The error line is best effort: the outcome (which carries the same message) is
        // recorded whatever happens to the log. A skip says why in the same place.
        let last_line = match &outcome {
            Outcome::Failed(message) => Some(("error".to_string(), message.clone())),
            Outcome::Skipped(reason) => Some(("info".to_string(), format!("Skipped: {reason}"))),
            Outcome::NotReady(reason) => Some(("info".to_string(), format!("Not yet: {reason}"))),
            Outcome::Success(_) => None,
        };
        if let Some((stream, message)) = last_line
            && let Err(e) =
                self.store.append_logs(claimed.ti_id, claimed.try_number, &[(stream, message.clone())]).await
        {
            tracing::warn!(
                "task instance {} try {}: its error line was not written to the task log ({e}): {message}",
                claimed.ti_id,
                claimed.try_number
            );
        }
        let Some(pipeline) = pipeline else { return Ok(Recorded { failed, ..Recorded::default() }) };
        let mut finished = self.finish_patiently(pipeline, claimed, outcome, trail).await?;
        // A late report records nothing, but its caller still learns how its try ended.
        finished.failed = failed;
        if let Some(notifier) = &self.notifier
            && pipeline.task(&claimed.task_id).is_some_and(|t| has_notifications(pipeline, t))
        {
            let notifier = notifier.clone();
            tokio::spawn(async move { notifier.deliver_due().await });
        }
        Ok(finished)
    }

    /// Records an outcome, retrying with backoff while the database is away (the work is
    /// done; losing its outcome would run it again) for the worker's record patience. After
    /// a failed batch the outcome is recorded on its own, so that one bad outcome cannot hold
    /// back others.
    ///
    /// From the first failure on, the outcome is also in the spool (on disk, synced): a
    /// worker that stops, crashes or runs out of patience leaves it there, and it is replayed
    /// at the next heartbeat or start. Recorded here, its entry is removed.
    async fn finish_patiently(
        &self,
        pipeline: &'static PipelineSpec,
        claimed: &Claimed,
        outcome: Outcome,
        mut trail: Trail,
    ) -> Result<Recorded, StoreError> {
        let started = tokio::time::Instant::now();
        let mut backoff = crate::broker::Backoff::new();
        // Set once the spool holds the outcome; the guard keeps replay passes off it while
        // this loop retries.
        let mut spooled = None;
        loop {
            let e = match self.finish_once(pipeline, claimed, &outcome, trail.clone()).await {
                Ok(recorded) => {
                    if spooled.is_some()
                        && let Some(spool) = &self.spool
                        && let Err(e) = spool.forget(claimed.ti_id, claimed.try_number).await
                    {
                        tracing::error!("task instance {}: recorded, but its spool entry stays: {e}", claimed.ti_id);
                    }
                    return Ok(recorded);
                }
                Err(e) => e,
            };
            // The log never holds back its outcome: after a failure its lines are written on
            // their own (best effort), and the outcome is tried again at once without them.
            if !trail.log.is_empty() {
                let lines = std::mem::take(&mut trail.log);
                if let Err(e) =
                    self.store.append_task_log(claimed.ti_id, claimed.try_number, &lines, trail.log_limits).await
                {
                    tracing::warn!("cannot write the log of task instance {}: {e}", claimed.ti_id);
                }
                continue;
            }
            if spooled.is_none()
                && let Some(spool) = &self.spool
            {
                spooled = self.spool_outcome(spool, pipeline, claimed, &outcome, &e).await;
            }
            if !crate::spool::is_transient(&e) || started.elapsed() >= self.patience {
                return Err(match &spooled {
                    Some((path, _)) => StoreError::Conflict(format!(
                        "{e}; the outcome waits in {} and is recorded once the database takes it",
                        path.display()
                    )),
                    None => e,
                });
            }
            tracing::warn!(
                "task instance {}: cannot record its outcome yet ({e}); retrying in {:?}",
                claimed.ti_id,
                backoff.peek()
            );
            backoff.wait().await;
        }
    }

    /// One attempt at recording an outcome, through the batching recorder.
    async fn finish_once(
        &self,
        pipeline: &'static PipelineSpec,
        claimed: &Claimed,
        outcome: &Outcome,
        trail: Trail,
    ) -> Result<Recorded, StoreError> {
        let (reply, answer) = oneshot::channel();
        let finish = Finish {
            pipeline,
            ti_id: claimed.ti_id,
            try_number: claimed.try_number,
            outcome: outcome.clone(),
            run: Some(claimed.run.clone()),
            trail,
        };
        let stopped = || StoreError::Conflict("the worker's outcome recorder stopped".into());
        self.recorder().send((finish, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Writes an outcome the store refused (`why`) to the spool; `None` when even that
    /// fails (said in the process log: the outcome then lives only in this process).
    async fn spool_outcome(
        &self,
        spool: &Spool,
        pipeline: &PipelineSpec,
        claimed: &Claimed,
        outcome: &Outcome,
        why: &StoreError,
    ) -> Option<(std::path::PathBuf, crate::spool::Recording)> {
        let recording = spool.recording(claimed.ti_id, claimed.try_number);
        let entry = Spooled {
            pipeline_id: pipeline.id.to_string(),
            task_id: claimed.task_id.clone(),
            ti_id: claimed.ti_id,
            try_number: claimed.try_number,
            worker: self.name.clone(),
            outcome: outcome.clone(),
        };
        match spool.keep(&entry).await {
            Ok(path) => {
                tracing::warn!(
                    "task instance {} try {}: outcome not recorded ({why}); kept in {}",
                    claimed.ti_id,
                    claimed.try_number,
                    path.display()
                );
                Some((path, recording))
            }
            Err(e) => {
                tracing::error!(
                    "task instance {} try {}: outcome not recorded ({why}) and not spooled to {}: {e}; it is kept in \
                     memory only while this worker retries",
                    claimed.ti_id,
                    claimed.try_number,
                    spool.dir().display()
                );
                None
            }
        }
    }

    /// The queue of outcomes to record; starts [`record_batches`] on first use. The task
    /// ends when the last clone of this worker is dropped.
    fn recorder(&self) -> &mpsc::UnboundedSender<Pending> {
        self.recorder.get_or_init(|| {
            let (sender, pending) = mpsc::unbounded_channel();
            let batches = Batches {
                store: self.store.clone(),
                dispatch: Arc::clone(&self.dispatch),
                parallelism: self.registry.deployment.parallelism,
                pipelines: self.registry.pipelines,
                worker: self.name.clone(),
                takes_next: self.takes_next.clone(),
            };
            tokio::spawn(record_batches(batches, pending));
            sender
        })
    }

    /// The untyped input of a task instance: run info, params, the connections it
    /// declared (and the one its step uses), upstream outputs.
    fn input(
        &self,
        pipeline: &PipelineSpec,
        task: &TaskSpec,
        claimed: &Claimed,
        log: Logger,
    ) -> Result<TaskInput, String> {
        let conf: serde_json::Value = serde_json::from_str(&claimed.run.conf).unwrap_or(serde_json::Value::Null);
        let params = crate::params::resolve(pipeline, &conf)?;
        let conf = if conf.is_object() { conf } else { serde_json::json!({}) };
        let mut ids: Vec<&str> = task.connections.to_vec();
        match &task.kind {
            TaskKind::Http { conn, .. } | TaskKind::Sql { conn, .. } => ids.push(conn),
            _ => {}
        }
        let mut connections = BTreeMap::new();
        for id in ids {
            let conn = self.connections.resolve(id)?;
            if let Some(password) = &conn.password {
                log.mask(password);
            }
            connections.insert(id.to_string(), conn);
        }
        let run = &claimed.run;
        Ok(TaskInput {
            run: RunInfo {
                pipeline_id: claimed.pipeline_id.clone(),
                run_id: run.run_id.clone(),
                task_id: claimed.task_id.clone(),
                try_number: u32::try_from(claimed.try_number).unwrap_or(u32::MAX),
                logical_date: to_rfc3339(run.logical_date),
                data_interval_start: to_rfc3339(run.data_interval_start),
                data_interval_end: to_rfc3339(run.data_interval_end),
                run_type: run.run_type.as_str().to_string(),
                conf,
                prev_data_interval_start_success: None,
                prev_start_date_success: None,
            },
            params,
            connections,
            upstream_outputs: claimed.outputs.clone(),
            log,
        })
    }
}

/// The template variables that need the pipeline's previous successful run, read from the
/// store only for a task whose templates use one.
const PREVIOUS_SUCCESS: [&str; 2] = ["prev_data_interval_start_success", "prev_start_date_success"];

/// How many lines may wait between a task's log and its writer. A full channel slows a
/// command's output reader down (see [`Logger`]); with lines cut at
/// [`Logger::MAX_LINE_BYTES`], at most 16 MiB wait per running task, and far less for
/// ordinary lines.
pub const LOG_CHANNEL_LINES: usize = 256;
/// The most lines one log transaction writes: the writer takes what waits in the channel
/// (refilled while it writes) up to this.
const LOG_BATCH_AT_MOST: usize = 4 * LOG_CHANNEL_LINES;

/// How long a log line may wait for others before the writer stores it: a try that ends
/// sooner hands its lines to its outcome's transaction instead, so a short task's log costs
/// no transaction of its own. Live logs are this much behind at most.
const LOG_LINGER: std::time::Duration = std::time::Duration::from_millis(200);

/// The log writer of one try: stores the lines its log sends, in batches (what came within
/// [`LOG_LINGER`] of the oldest waiting line, up to [`LOG_BATCH_AT_MOST`]), within `limits`.
/// Returns the lines still waiting when the log closes, for the outcome to write. Once the
/// store says the log is cut, the rest is only counted, without a round trip, so the
/// command runs on at full speed and the count is written into the cut line when the log
/// closes.
async fn write_log(
    store: Store,
    ti: i64,
    try_number: i64,
    mut rx: mpsc::Receiver<crate::task::LogLine>,
    limits: LogLimits,
) -> Vec<(String, String)> {
    let mut batch = Vec::new();
    let mut due: Option<tokio::time::Instant> = None;
    let mut cut = false;
    let mut not_sent: u64 = 0;
    loop {
        // `None`: the oldest waiting line has waited long enough.
        let received = match due {
            None => Some(rx.recv().await),
            Some(at) => tokio::time::timeout_at(at, rx.recv()).await.ok(),
        };
        match received {
            None => {}
            Some(None) => break,
            Some(Some(_)) if cut => {
                not_sent += 1;
                continue;
            }
            Some(Some(line)) => {
                batch.push((line.stream.as_str().to_string(), line.text));
                due.get_or_insert_with(|| tokio::time::Instant::now() + LOG_LINGER);
                if batch.len() < LOG_BATCH_AT_MOST {
                    continue;
                }
            }
        }
        due = None;
        match store.append_task_log(ti, try_number, &batch, limits).await {
            Ok(appended) => cut = appended.cut,
            Err(e) => tracing::warn!("cannot write the log of task instance {ti}: {e}"),
        }
        batch.clear();
    }
    if cut && let Err(e) = store.end_task_log(ti, try_number, not_sent, limits).await {
        tracing::warn!("cannot end the log of task instance {ti}: {e}");
    }
    batch
}

/// An outcome waiting to be recorded with others, and where its caller waits for the result.
type Pending = (Finish<'static>, oneshot::Sender<Result<Recorded, StoreError>>);

/// What [`record_batches`] needs of its worker.
struct Batches {
    store: Store,
    dispatch: Arc<dyn Dispatch>,
    parallelism: u32,
    pipelines: &'static [PipelineSpec],
    worker: String,
    takes_next: Option<Arc<[String]>>,
}

/// Records outcomes as they come, one transaction for all that are waiting: while one
/// batch holds its pipeline's lock, the outcomes that end meanwhile gather for the next.
/// An idle worker records each outcome at once; a busy one pays one transaction (and one
/// turn on the lock) per batch rather than per task.
async fn record_batches(batches: Batches, mut pending: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = pending.recv().await {
        let mut waiting = vec![first];
        while waiting.len() < BATCH_AT_MOST
            && let Ok(more) = pending.try_recv()
        {
            waiting.push(more);
        }
        batches.record(waiting).await;
    }
}

impl Batches {
    /// Records a batch in one transaction. When that fails, each outcome is tried again in
    /// a transaction of its own, so that one bad outcome cannot hold back the others.
    async fn record(&self, batch: Vec<Pending>) {
        let (finishes, replies): (Vec<Finish>, Vec<_>) = batch.into_iter().unzip();
        let take =
            self.takes_next.as_deref().map(|queues| Take { worker: &self.worker, queues, pipelines: self.pipelines });
        match self.store.finish_many(&finishes, self.parallelism, take).await {
            Ok(recorded) => {
                crate::failpoint!("worker.after_finish_commit");
                self.dispatch.dispatch(recorded.queued);
                for (reply, each) in replies.into_iter().zip(recorded.each) {
                    self.reply(reply, Ok(each)).await;
                }
            }
            Err(e) if finishes.len() == 1 => {
                for reply in replies {
                    self.reply(reply, Err(e.for_each_caller())).await;
                }
            }
            Err(_) => {
                for (finish, reply) in finishes.into_iter().zip(replies) {
                    let alone = self.store.finish_many(std::slice::from_ref(&finish), self.parallelism, take).await;
                    let each = match alone {
                        Ok(mut recorded) => {
                            self.dispatch.dispatch(std::mem::take(&mut recorded.queued));
                            Ok(recorded.each.pop().unwrap_or_default())
                        }
                        Err(e) => Err(e),
                    };
                    self.reply(reply, each).await;
                }
            }
        }
    }

    /// Answers a caller. One that is gone (its task was abandoned) hands back what was
    /// claimed for it to run next.
    async fn reply(&self, reply: oneshot::Sender<Result<Recorded, StoreError>>, each: Result<Recorded, StoreError>) {
        if let Err(Ok(Recorded { next: Some(next), .. })) = reply.send(each) {
            match self.store.hand_back(next.ti_id, next.try_number).await {
                Ok(queued) => self.dispatch.dispatch(queued.into_iter().collect()),
                Err(e) => tracing::warn!("task instance {}: cannot hand it back: {e}", next.ti_id),
            }
        }
    }
}

/// Whether finishing `task` may have queued a notification (its own, or its run's).
fn has_notifications(pipeline: &PipelineSpec, task: &TaskSpec) -> bool {
    [task.on_failure, task.on_retry, task.on_success, pipeline.on_failure, pipeline.on_success]
        .iter()
        .any(|targets| !targets.is_empty())
}
