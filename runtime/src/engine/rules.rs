//! The engine's decisions, as pure functions: what a run's waiting tasks become
//! ([`settle`]), how a finished run ended ([`run_end`]), what a failed try leads to
//! ([`after_failure`]). The store loads states, calls these, and writes back what they
//! say; every path that advances a run (the scheduler's pass, a task's finish) decides
//! through them. Task states and trigger rules themselves are shared with the compiler.

pub use sluice_contract::rules::{Decision, TiState, decide};

use crate::clock::Micros;
use crate::spec::{PipelineSpec, RetryPolicy, SensorSpec, TaskSpec};
use std::collections::HashMap;
use std::fmt;

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Created; the scheduler starts it when `max_active_runs` allows.
    Queued,
    Running,
    Success,
    Failed,
}

impl RunState {
    pub const ALL: [RunState; 4] = [RunState::Queued, RunState::Running, RunState::Success, RunState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Queued or running: the scheduler still looks after it.
    pub fn is_active(self) -> bool {
        matches!(self, RunState::Queued | RunState::Running)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run exists, as Airflow's `run_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunType {
    /// Created by the timetable.
    Scheduled,
    /// Triggered by a user (UI, API, CLI).
    Manual,
    /// Created by `dags backfill`.
    Backfill,
    /// Created when the datasets the pipeline is scheduled on were updated.
    DatasetTriggered,
}

impl RunType {
    pub const ALL: [RunType; 4] = [RunType::Scheduled, RunType::Manual, RunType::Backfill, RunType::DatasetTriggered];

    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Scheduled => "scheduled",
            RunType::Manual => "manual",
            RunType::Backfill => "backfill",
            RunType::DatasetTriggered => "dataset_triggered",
        }
    }

    pub fn parse(text: &str) -> Option<RunType> {
        RunType::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for RunType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one waiting task (`none` or `scheduled`) does next, given its upstreams' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Its rule is met: queue it when there is room.
    Ready,
    /// Not decided yet: an upstream it needs is unfinished.
    Wait,
    /// It ends without running: `skipped` or `upstream_failed`.
    End(TiState),
}

/// The trigger rule's decision for a waiting task, as the step the store takes.
pub fn step(task: &TaskSpec, upstream: &[TiState]) -> Step {
    match decide(task.trigger_rule, upstream) {
        Decision::Run => Step::Ready,
        Decision::Wait => Step::Wait,
        Decision::Skip => Step::End(TiState::Skipped),
        Decision::UpstreamFailed => Step::End(TiState::UpstreamFailed),
    }
}

/// What settling a run decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settlement<'p> {
    /// Waiting tasks that end without running, in the order the cascade reached them.
    pub ended: Vec<(&'p str, TiState)>,
    /// Tasks that may run now: waiting ones whose rule is met, and retries that are due.
    pub ready: Vec<&'p str>,
    /// How the run ended, once every task is done.
    pub run_end: Option<RunState>,
}

/// Settles a whole run: decides every waiting task from its upstreams' states, letting
/// skips and upstream failures cascade downstream, and says how the run ended when
/// nothing is left. `states` holds each task instance's state (a task without one is
/// `removed`); `retry_due` says whether an `up_for_retry` task's delay has passed.
pub fn settle<'p>(
    pipeline: &'p PipelineSpec,
    states: &HashMap<&str, TiState>,
    retry_due: impl Fn(&str) -> bool,
) -> Settlement<'p> {
    let mut now: HashMap<&str, TiState> = states.clone();
    let state_of = |now: &HashMap<&str, TiState>, id: &str| now.get(id).copied().unwrap_or(TiState::Removed);
    let mut settlement = Settlement::default();
    // In the compiled topological order every upstream is settled before the tasks below
    // it are decided, so one pass lets skips and upstream failures cascade all the way.
    for task in pipeline.topo_order.iter().filter_map(|&i| pipeline.tasks.get(i as usize)) {
        let state = state_of(&now, task.id);
        if matches!(state, TiState::UpForRetry | TiState::UpForReschedule) && retry_due(task.id) {
            settlement.ready.push(task.id);
            continue;
        }
        if !matches!(state, TiState::None | TiState::Scheduled) {
            continue;
        }
        let upstream: Vec<TiState> = task.depends_on.iter().map(|u| state_of(&now, u)).collect();
        match step(task, &upstream) {
            Step::Ready => settlement.ready.push(task.id),
            Step::Wait => {}
            Step::End(end) => {
                now.insert(task.id, end);
                settlement.ended.push((task.id, end));
            }
        }
    }
    if settlement.ready.is_empty() && pipeline.tasks.iter().all(|t| state_of(&now, t.id).is_done()) {
        settlement.run_end = Some(run_end(pipeline, |id| state_of(&now, id)));
    }
    settlement
}

/// How a run whose tasks are all done ended: failed when a leaf task (one nothing
/// depends on) failed or could not run because an upstream failed, else success.
pub fn run_end(pipeline: &PipelineSpec, state_of: impl Fn(&str) -> TiState) -> RunState {
    let failed = leaves(pipeline).any(|leaf| matches!(state_of(leaf), TiState::Failed | TiState::UpstreamFailed));
    if failed { RunState::Failed } else { RunState::Success }
}

/// The tasks nothing depends on.
pub fn leaves(pipeline: &PipelineSpec) -> impl Iterator<Item = &str> {
    pipeline.tasks.iter().filter(|t| t.downstream.is_empty()).map(|t| t.id)
}

/// What a failed try leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// `up_for_retry` until `at`.
    Retry { at: Micros },
    /// `failed` for good.
    Fail,
}

/// What a sensor's "not yet" in `reschedule` mode leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterNotReady {
    /// `up_for_reschedule` until `at`; the wait began at `since`.
    Reschedule { at: Micros, since: Micros },
    /// Past the sensor's timeout: `failed`, or `skipped` with `soft_fail`.
    TimedOut,
}

/// Pokes again after the poke interval while the wait that began at `since` (the first poke
/// of the current wait) is within the sensor's timeout.
pub fn after_not_ready(sensor: &SensorSpec, since: Micros, now: Micros) -> AfterNotReady {
    let micros = |secs: u64| i64::try_from(secs).unwrap_or(i64::MAX / 2_000_000).saturating_mul(1_000_000);
    if now.saturating_sub(since) >= micros(sensor.timeout_secs) {
        return AfterNotReady::TimedOut;
    }
    AfterNotReady::Reschedule { at: now.saturating_add(micros(sensor.poke_interval_secs.max(1))), since }
}

/// Retry while tries are left (`max_tries` as recorded on the task instance: a clear adds
/// the task's retries to it), after the policy's delay.
pub fn after_failure(policy: &RetryPolicy, try_number: i64, max_tries: i64, now: Micros) -> AfterFailure {
    if try_number >= max_tries {
        return AfterFailure::Fail;
    }
    let delay = i64::try_from(policy.delay_secs(try_number + 1)).unwrap_or(i64::MAX / 2_000_000);
    AfterFailure::Retry { at: now.saturating_add(delay.saturating_mul(1_000_000)) }
}

#[cfg(test)]
pub(crate) mod tests;
