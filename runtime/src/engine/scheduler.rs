//! The scheduler: creates runs when their schedule is due, starts queued runs within
//! `max_active_runs`, and queues ready tasks. It is woken by events (a trigger, an
//! unpause) and by the timer of the next due schedule or retry; the periodic sweep is a
//! safety net only, so an idle scheduler does no work. It also judges SLA deadlines as
//! they pass and sends the notifications that are due.

use crate::clock::{Micros, to_rfc3339};
use crate::notify::{Notifier, base_url_from_env};
use crate::registry::Registry;
use crate::resolver::Resolver;
use crate::rules::RunType;
use crate::shutdown::Shutdown;
use crate::spec::PipelineSpec;
use crate::store::{NewRun, Outcome, Queued, RunRow, Store, StoreError};
use crate::timetable::Timetable;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Where queued task instances go: an in-process queue in standalone, Redis in
/// distributed mode.
pub trait Dispatch: Send + Sync + std::fmt::Debug {
    fn dispatch(&self, queued: Vec<Queued>);
}

/// How long the scheduler sleeps at most between passes when nothing is due.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// How often a live scheduler records its heartbeat (what `/health` reports).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// A scheduler whose last heartbeat is older than this is reported unhealthy.
pub const HEARTBEAT_TIMEOUT_SECS: i64 = 30;

#[derive(Debug, Clone)]
pub struct Scheduler {
    registry: &'static Registry,
    store: Store,
    dispatch: Arc<dyn Dispatch>,
    wake: Arc<Notify>,
    notifier: Notifier,
    liveness: Liveness,
    /// When a pass or heartbeat last failed to reach the database ([`NEVER`] if not yet).
    last_store_failure: Arc<AtomicI64>,
}

const NEVER: Micros = Micros::MIN;

/// When running and queued task instances are taken for lost.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    /// A running task whose heartbeat is older is a zombie.
    pub zombie_threshold: Duration,
    /// A task queued longer is dispatched again.
    pub queued_timeout: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness { zombie_threshold: Duration::from_secs(60), queued_timeout: Duration::from_secs(120) }
    }
}

impl Scheduler {
    pub fn new(registry: &'static Registry, store: Store, dispatch: Arc<dyn Dispatch>) -> Scheduler {
        let notifier = Notifier::new(store.clone(), Resolver::from_env(registry), base_url_from_env(registry));
        Scheduler {
            registry,
            store,
            dispatch,
            wake: Arc::new(Notify::new()),
            notifier,
            liveness: Liveness::default(),
            last_store_failure: Arc::new(AtomicI64::new(NEVER)),
        }
    }

    pub fn with_liveness(mut self, liveness: Liveness) -> Scheduler {
        self.liveness = liveness;
        self
    }

    /// Sends notifications through `notifier` instead of the one made from the environment.
    pub fn with_notifier(mut self, notifier: Notifier) -> Scheduler {
        self.notifier = notifier;
        self
    }

    /// Wakes the scheduler for an immediate pass (after a trigger, unpause, clear...).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// One pass: due scheduled runs are created (and those of pipelines whose datasets were
    /// all updated), active pipelines advanced, passed SLA
    /// deadlines judged. Returns when the next pass is due on its own (the earliest next
    /// schedule, retry, SLA deadline or notification retry).
    pub async fn tick(&self) -> Result<Option<Micros>, StoreError> {
        let now = self.store.now();
        let mut next: Option<Micros> = self.store.next_retry_at().await?;
        let rows = self.store.pipelines().await?;
        for p in self.registry.pipelines {
            let Some(row) = rows.iter().find(|r| r.pipeline_id == p.id) else { continue };
            if row.is_paused || !row.is_active {
                continue;
            }
            if matches!(p.schedule, crate::spec::Schedule::Datasets(_)) {
                self.store.trigger_on_datasets(p).await?;
                continue;
            }
            let Ok(timetable) = Timetable::for_pipeline(p) else { continue };
            if timetable.is_scheduled() {
                let mut last = self.store.last_scheduled(p.id).await?;
                while let Some(interval) = timetable.next_due(last, now) {
                    let run = NewRun {
                        run_id: format!("scheduled__{}", to_rfc3339(interval.start)),
                        run_type: RunType::Scheduled,
                        logical_date: interval.start,
                        data_interval_start: interval.start,
                        data_interval_end: interval.end,
                        conf: serde_json::Value::Object(Default::default()),
                    };
                    match self.store.create_run(p, &run).await {
                        Ok(_) | Err(StoreError::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                    last = Some(interval.start);
                }
                let wake_at = timetable.next_wakeup(last, now);
                self.store.set_next_run_at(p.id, wake_at).await?;
                next = earliest(next, wake_at);
            }
        }
        for p in self.pipelines_with_active_runs().await? {
            // Runs of a paused pipeline wait, as in Airflow, until it is unpaused.
            if rows.iter().any(|r| r.pipeline_id == p.id && r.is_paused) {
                continue;
            }
            let queued = self.store.advance_pipeline(p, self.registry.deployment.parallelism).await?;
            crate::failpoint!("scheduler.after_queued");
            self.dispatch.dispatch(queued);
        }
        if self.registry.has_slas() {
            for miss in self.store.record_sla_misses(self.registry).await? {
                tracing::warn!(
                    "SLA missed: task {} of run {} of {} (deadline {})",
                    miss.task_id,
                    miss.run_id,
                    miss.pipeline_id,
                    to_rfc3339(miss.deadline)
                );
            }
            next = earliest(next, self.store.next_sla_deadline().await?);
        }
        if self.registry.has_notifications() {
            next = earliest(next, self.store.next_notification_at().await?);
        }
        self.reap(now).await?;
        Ok(next)
    }

    /// Fails the tries of zombies (retried per their retries) and dispatches again what
    /// waits in `queued` too long. [`Scheduler::run`] passes at least every half
    /// threshold, so either is found within one and a half thresholds.
    async fn reap(&self, now: Micros) -> Result<(), StoreError> {
        let zombie_after = micros(self.liveness.zombie_threshold);
        let queued_after = micros(self.liveness.queued_timeout);
        let last_failure = Some(self.last_store_failure.load(Ordering::Relaxed)).filter(|&at| at != NEVER);
        let zombies = if may_judge_zombies(now, last_failure, zombie_after) {
            self.store.zombies(now - zombie_after).await?
        } else {
            Vec::new()
        };
        for z in zombies {
            let Some(pipeline) = self.registry.pipeline(&z.pipeline_id) else { continue };
            let message = format!(
                "zombie: worker `{}` stopped heartbeating {} s ago while running this try",
                z.worker,
                (now - z.heartbeat_at) / 1_000_000
            );
            tracing::warn!("task {} of {}: {message}", z.task_id, z.pipeline_id);
            // Best effort: the zombie's failure is recorded whatever happens to its log.
            if let Err(e) = self.store.append_logs(z.ti_id, z.try_number, &[("error".into(), message.clone())]).await {
                tracing::warn!("task instance {}: its zombie line was not written to the task log: {e}", z.ti_id);
            }
            let queued = self
                .store
                .finish(
                    pipeline,
                    z.ti_id,
                    z.try_number,
                    &Outcome::Failed(message),
                    self.registry.deployment.parallelism,
                )
                .await?;
            self.dispatch.dispatch(queued);
        }
        let stuck = self.store.requeue_stuck(now - queued_after).await?;
        if !stuck.is_empty() {
            tracing::warn!(
                "{} task(s) stuck in queued longer than {:?} dispatched again: {:?}",
                stuck.len(),
                self.liveness.queued_timeout,
                stuck.iter().map(|q| q.ti_id).collect::<Vec<_>>()
            );
            self.dispatch.dispatch(stuck);
        }
        Ok(())
    }

    fn note_store_failure(&self) {
        self.last_store_failure.store(self.store.now(), Ordering::Relaxed);
    }

    async fn pipelines_with_active_runs(&self) -> Result<Vec<&'static PipelineSpec>, StoreError> {
        let mut ids: Vec<String> = self.store.active_runs().await?.into_iter().map(|r| r.pipeline_id).collect();
        ids.dedup();
        Ok(ids.iter().filter_map(|id| self.registry.pipeline(id)).collect())
    }

    /// Runs passes until `shutdown` is notified.
    pub async fn run(self, shutdown: Shutdown) {
        let mut job = None;
        let mut last_beat = None::<tokio::time::Instant>;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let mut sending: Option<tokio::task::JoinHandle<usize>> = None;
        loop {
            if last_beat.is_none_or(|at| at.elapsed() >= HEARTBEAT_INTERVAL) {
                match self.store.heartbeat(job, "scheduler", &host).await {
                    Ok(id) => job = Some(id),
                    Err(e) => {
                        tracing::warn!("scheduler heartbeat failed: {e}");
                        self.note_store_failure();
                    }
                }
                last_beat = Some(tokio::time::Instant::now());
            }
            let next = match self.tick().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!("scheduler pass failed: {e}");
                    self.note_store_failure();
                    Some(self.store.now() + 1_000_000)
                }
            };
            // Sends run beside scheduling (a slow receiver must not hold it up), one batch
            // at a time.
            if self.registry.has_notifications() && sending.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
                let notifier = self.notifier.clone();
                sending = Some(tokio::spawn(async move { notifier.deliver_due().await }));
            }
            let now = self.store.now();
            let sleep = next
                .map(|at| Duration::from_micros(u64::try_from((at - now).max(0)).unwrap_or(0)))
                .unwrap_or(SWEEP_INTERVAL)
                .min(SWEEP_INTERVAL)
                .min(self.liveness.zombie_threshold / 2)
                .min(self.liveness.queued_timeout / 2)
                .min(HEARTBEAT_INTERVAL);
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake.notified() => {}
                () = shutdown.wait() => return,
            }
        }
    }
}

/// Whether stale heartbeats prove dead workers now. While the database is away, workers'
/// heartbeats stop reaching it as the scheduler's passes do, so a heartbeat that aged
/// during an outage says nothing about its worker: zombies are judged only once the
/// scheduler has reached the database without a failure for a whole threshold, which
/// gives every live worker that long to beat again.
pub fn may_judge_zombies(now: Micros, last_store_failure: Option<Micros>, zombie_threshold: Micros) -> bool {
    last_store_failure.is_none_or(|at| now.saturating_sub(at) >= zombie_threshold)
}

fn micros(d: Duration) -> Micros {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2)
}

fn earliest(a: Option<Micros>, b: Option<Micros>) -> Option<Micros> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Creates a manual run, like `airflow dags trigger`: the conf is checked against the
/// declared params; the logical date defaults to now.
pub async fn trigger(
    store: &Store,
    pipeline: &PipelineSpec,
    conf: serde_json::Value,
    logical_date: Option<Micros>,
) -> Result<RunRow, TriggerError> {
    trigger_as(store, pipeline, conf, logical_date, None).await
}

/// [`trigger`] with the run id given (the REST API's `dag_run_id`); by default
/// `manual__<logical date>`.
pub async fn trigger_as(
    store: &Store,
    pipeline: &PipelineSpec,
    conf: serde_json::Value,
    logical_date: Option<Micros>,
    run_id: Option<String>,
) -> Result<RunRow, TriggerError> {
    crate::params::resolve(pipeline, &conf).map_err(TriggerError::Params)?;
    if let Some(id) = &run_id {
        check_run_id(id).map_err(TriggerError::Params)?;
    }
    let at = logical_date.unwrap_or_else(|| store.now());
    let interval = Timetable::for_pipeline(pipeline)
        .map(|t| t.manual_interval(at))
        .map_err(|e| TriggerError::Params(e.to_string()))?;
    let run = NewRun {
        run_id: run_id.unwrap_or_else(|| format!("manual__{}", to_rfc3339_micros(at))),
        run_type: RunType::Manual,
        logical_date: at,
        data_interval_start: interval.start.min(at),
        data_interval_end: interval.end.max(interval.start.min(at)),
        conf,
    };
    store.create_run(pipeline, &run).await.map_err(TriggerError::Store)
}

/// The longest run id a person may give (Airflow's `run_id` column holds 250).
pub const MAX_RUN_ID_LEN: usize = 250;

/// A run id given by a person (API, UI, CLI) matches Airflow's default
/// `allowed_run_id_pattern`, `^[A-Za-z0-9_.~:+-]+$`: it lands in paths, logs and the
/// `run_id` template variable, so it carries no quote, space, slash or control character.
pub fn check_run_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_RUN_ID_LEN {
        return Err(format!("`dag_run_id` must have 1 to {MAX_RUN_ID_LEN} characters"));
    }
    match id.chars().find(|c| !(c.is_ascii_alphanumeric() || "_.~:+-".contains(*c))) {
        Some(bad) => Err(format!(
            "`dag_run_id` may hold only letters, digits and `_.~:+-` (Airflow's allowed pattern), not {bad:?}"
        )),
        None => Ok(()),
    }
}

fn to_rfc3339_micros(micros: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false))
        .unwrap_or_default()
}

#[derive(Debug)]
pub enum TriggerError {
    Params(String),
    Store(StoreError),
}

impl std::fmt::Display for TriggerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TriggerError::Params(m) => f.write_str(m),
            TriggerError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TriggerError {}

#[cfg(test)]
mod tests {
    use super::may_judge_zombies;

    const THRESHOLD: i64 = 4_000_000;

    #[test]
    fn zombies_are_judged_when_the_database_never_failed() {
        assert!(may_judge_zombies(1_000_000_000, None, THRESHOLD));
    }

    #[test]
    fn zombies_wait_one_threshold_after_the_database_came_back() {
        let failed = 1_000_000_000;
        assert!(!may_judge_zombies(failed + 1, Some(failed), THRESHOLD));
        assert!(!may_judge_zombies(failed + THRESHOLD - 1, Some(failed), THRESHOLD));
        assert!(may_judge_zombies(failed + THRESHOLD, Some(failed), THRESHOLD));
    }

    #[test]
    fn a_failure_far_in_the_past_does_not_hold_judgement() {
        assert!(may_judge_zombies(i64::MAX, Some(i64::MIN), THRESHOLD));
    }
}
