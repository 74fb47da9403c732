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
use crate::store::{Claimed, Finish, Outcome, Queued, Recorded, RunRow, Store, StoreError, Take};
use crate::task::{Logger, RunInfo, TaskInput};
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

/// How long a worker keeps trying to record an outcome while the database is away.
const RECORD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);
/// The most outcomes one transaction records.
const BATCH_AT_MOST: usize = 64;

/// How a try ended, for the caller to decide whether the scheduler must look: a
/// failure may mean a retry to time, and a finish that queued nothing may end a run.
#[derive(Debug, Clone)]
pub struct Finished {
    pub failed: bool,
    /// How many task instances it queued downstream.
    pub queued: usize,
    /// The task this worker claimed in the same transaction, to run next (see
    /// [`Worker::taking_next`]).
    pub next: Option<Claimed>,
}

impl Finished {
    pub fn needs_scheduler(&self) -> bool {
        self.failed || self.queued == 0
    }
}

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
    recorder: Arc<OnceLock<mpsc::UnboundedSender<PendingFinish>>>,
    /// Decrypts secret variables; `None`: the deployment's key variable, read per task.
    crypto: Option<Arc<crate::crypto::Crypto>>,
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
            store,
        }
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
    pub async fn run_task(&self, ti_id: i64) -> Result<Option<Finished>, StoreError> {
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
    pub async fn run_claimed(&self, claimed: &Claimed) -> Result<Finished, StoreError> {
        let pipeline = self.registry.pipeline(&claimed.pipeline_id);
        let task = pipeline.and_then(|p| p.task(&claimed.task_id));
        let (Some(pipeline), Some(task)) = (pipeline, task) else {
            let message = format!(
                "task `{}` of pipeline `{}` is not in this build of the pipelines",
                claimed.task_id, claimed.pipeline_id
            );
            return self.record(None, claimed, Outcome::Failed(message)).await;
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let input = match self.input(pipeline, task, claimed, Logger::streaming(tx)) {
            Ok(input) => input,
            Err(message) => return self.record(Some(pipeline), claimed, Outcome::Failed(message)).await,
        };
        let store = self.store.clone();
        let (ti, try_number) = (claimed.ti_id, claimed.try_number);
        let logs = tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(line) = rx.recv().await {
                batch.push((line.stream.as_str().to_string(), line.text));
                while let Ok(more) = rx.try_recv() {
                    batch.push((more.stream.as_str().to_string(), more.text));
                }
                if let Err(e) = store.append_logs(ti, try_number, &batch).await {
                    tracing::warn!("cannot write the log of task instance {ti}: {e}");
                }
                batch.clear();
            }
        });
        // Variables feed templates; a Rust body has none, and skips the read.
        let variables = if matches!(task.kind, crate::spec::TaskKind::Rust { .. }) {
            Arc::clone(&self.variables)
        } else {
            self.variables_for(&input.log).await
        };
        let env = crate::executor::ExecEnv::new(variables);
        let result = crate::executor::execute(self.registry, pipeline, task, input, &env).await;
        let rendered = env.rendered();
        if !rendered.is_empty()
            && let Err(e) = self.store.record_rendered(claimed.ti_id, claimed.try_number, &rendered).await
        {
            tracing::warn!("task instance {}: rendered templates not recorded: {e}", claimed.ti_id);
        }
        // The input (and its log sender) is dropped by now: the log writer drains and ends.
        let _ = logs.await;
        let outcome = match result {
            Ok(outputs) => Outcome::Success(outputs),
            Err(e) => Outcome::Failed(e.message),
        };
        self.record(Some(pipeline), claimed, outcome).await
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
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.wait() => return,
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
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
    ) -> Result<Finished, StoreError> {
        let failed = matches!(outcome, Outcome::Failed(_));
        if let Outcome::Failed(message) = &outcome {
            self.store.append_logs(claimed.ti_id, claimed.try_number, &[("error".into(), message.clone())]).await?;
        }
        let Some(pipeline) = pipeline else { return Ok(Finished { failed, queued: 0, next: None }) };
        let recorded = self.finish_patiently(pipeline, claimed, outcome).await?;
        let finished = Finished { failed, queued: recorded.run_queued, next: recorded.next };
        if let Some(notifier) = &self.notifier
            && pipeline.task(&claimed.task_id).is_some_and(|t| has_notifications(pipeline, t))
        {
            let notifier = notifier.clone();
            tokio::spawn(async move { notifier.deliver_due().await });
        }
        Ok(finished)
    }

    /// Records an outcome, retrying with backoff while the database is away (the work is
    /// done; losing its outcome would run it again) for up to [`RECORD_PATIENCE`]. After a
    /// failed batch the outcome is recorded on its own, so that one bad outcome cannot
    /// hold back others.
    async fn finish_patiently(
        &self,
        pipeline: &'static PipelineSpec,
        claimed: &Claimed,
        outcome: Outcome,
    ) -> Result<Recorded, StoreError> {
        let started = tokio::time::Instant::now();
        let mut backoff = crate::broker::Backoff::new();
        let mut alone = false;
        loop {
            let (reply, answer) = oneshot::channel();
            let pending = PendingFinish {
                pipeline,
                ti_id: claimed.ti_id,
                try_number: claimed.try_number,
                outcome: outcome.clone(),
                run: claimed.run.clone(),
                alone,
                reply,
            };
            let stopped = || StoreError::Conflict("the worker's outcome recorder stopped".into());
            self.recorder().send(pending).map_err(|_| stopped())?;
            match answer.await.map_err(|_| stopped())? {
                Ok(recorded) => return Ok(recorded),
                Err(e @ (StoreError::Connect { .. } | StoreError::Query { .. }))
                    if started.elapsed() < RECORD_PATIENCE =>
                {
                    tracing::warn!(
                        "task instance {}: cannot record its outcome yet ({e}); retrying in {:?}",
                        claimed.ti_id,
                        backoff.peek()
                    );
                    backoff.wait().await;
                    alone = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The queue of outcomes to record; starts [`record_batches`] on first use. The task
    /// ends when the last clone of this worker is dropped.
    fn recorder(&self) -> &mpsc::UnboundedSender<PendingFinish> {
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
            },
            params,
            connections,
            upstream_outputs: claimed.outputs.clone(),
            log,
        })
    }
}

/// An outcome waiting to be recorded with others.
#[derive(Debug)]
struct PendingFinish {
    pipeline: &'static PipelineSpec,
    ti_id: i64,
    try_number: i64,
    outcome: Outcome,
    run: RunRow,
    /// Recorded in a transaction of its own (after its batch failed).
    alone: bool,
    reply: oneshot::Sender<Result<Recorded, StoreError>>,
}

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
async fn record_batches(batches: Batches, mut pending: mpsc::UnboundedReceiver<PendingFinish>) {
    while let Some(first) = pending.recv().await {
        let mut waiting = vec![first];
        while waiting.len() < BATCH_AT_MOST
            && let Ok(more) = pending.try_recv()
        {
            waiting.push(more);
        }
        let (alone, together): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|p| p.alone);
        for one in alone {
            batches.record(vec![one]).await;
        }
        if !together.is_empty() {
            batches.record(together).await;
        }
    }
}

impl Batches {
    async fn record(&self, batch: Vec<PendingFinish>) {
        let finishes: Vec<Finish> = batch
            .iter()
            .map(|p| Finish {
                pipeline: p.pipeline,
                ti_id: p.ti_id,
                try_number: p.try_number,
                outcome: &p.outcome,
                run: Some(&p.run),
            })
            .collect();
        let take =
            self.takes_next.as_deref().map(|queues| Take { worker: &self.worker, queues, pipelines: self.pipelines });
        match self.store.finish_many(&finishes, self.parallelism, take).await {
            Ok(recorded) => {
                fail::fail_point!("worker.after_finish_commit", |_| std::process::abort());
                self.dispatch.dispatch(recorded.queued);
                for (pending, each) in batch.into_iter().zip(recorded.each) {
                    // The caller is gone (its task was abandoned): what it claimed to run
                    // next goes back to the queue.
                    if let Err(Ok(Recorded { next: Some(next), .. })) = pending.reply.send(Ok(each)) {
                        match self.store.hand_back(next.ti_id, next.try_number).await {
                            Ok(queued) => self.dispatch.dispatch(queued.into_iter().collect()),
                            Err(e) => tracing::warn!("task instance {}: cannot hand it back: {e}", next.ti_id),
                        }
                    }
                }
            }
            Err(e) => {
                for pending in batch {
                    let _ = pending.reply.send(Err(e.for_each_caller()));
                }
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
