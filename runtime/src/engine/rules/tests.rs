use super::*;
use crate::spec::{Schedule, TaskKind, TriggerRule};
use TiState::{Failed as F, None as N, Scheduled as Sc, Skipped as K, Success as S, UpForRetry as R};

pub(crate) const fn task(id: &'static str, depends_on: &'static [&'static str], trigger_rule: TriggerRule) -> TaskSpec {
    TaskSpec {
        depends_on,
        trigger_rule,
        retry: RetryPolicy { retries: 0, retry_delay_secs: 0, exponential_backoff: false, max_retry_delay_secs: None },
        ..TaskSpec::new(id, TaskKind::Rust { path: "crate::tasks::noop" })
    }
}

pub(crate) const fn pipeline(tasks: &'static [TaskSpec]) -> PipelineSpec {
    PipelineSpec {
        id: "p",
        description: "",
        owner: "",
        tags: &[],
        schedule: Schedule::Manual,
        schedule_text: "",
        timezone: "UTC",
        start_date: None,
        end_date: None,
        catchup: false,
        max_active_runs: 1,
        max_active_tasks: 16,
        paused_at_creation: false,
        params: &[],
        on_failure: &[],
        on_success: &[],
        email: &[],
        tasks,
        topo_order: &[],
        version_hash: "",
    }
}

/// `p` with the graph facts the compiler would emit for it.
pub(crate) fn graphed(p: &PipelineSpec) -> PipelineSpec {
    let index = |id: &str| p.tasks.iter().position(|t| t.id == id).and_then(|i| u32::try_from(i).ok());
    let upstream: Vec<Vec<u32>> =
        p.tasks.iter().map(|t| t.depends_on.iter().filter_map(|d| index(d)).collect()).collect();
    let weights: Vec<i64> = p.tasks.iter().map(|t| i64::from(t.priority_weight)).collect();
    let facts = sluice_contract::graph::facts(&upstream, &weights).expect("acyclic");
    let tasks: Vec<TaskSpec> = p
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| TaskSpec {
            upstream: Vec::leak(upstream[i].clone()),
            downstream: Vec::leak(facts.downstream[i].clone()),
            depth: facts.depth[i],
            effective_priority_weight: facts.effective_weight[i],
            ..t.clone()
        })
        .collect();
    PipelineSpec { topo_order: Vec::leak(facts.topo_order), ..pipeline(Vec::leak(tasks)) }
}

/// extract -> transform -> load, and `cleanup` after load whatever happened. `cleanup` is
/// listed first: the cascade must reach it all the same.
static ETL: std::sync::LazyLock<PipelineSpec> = std::sync::LazyLock::new(|| graphed(&ETL_TASKS));
static ETL_TASKS: PipelineSpec = pipeline(&[
    task("cleanup", &["load"], TriggerRule::AllDone),
    task("extract", &[], TriggerRule::AllSuccess),
    task("transform", &["extract"], TriggerRule::AllSuccess),
    task("load", &["transform"], TriggerRule::AllSuccess),
]);

fn states(pairs: &[(&'static str, TiState)]) -> HashMap<&'static str, TiState> {
    pairs.iter().copied().collect()
}

#[test]
fn a_failure_cascades_as_upstream_failed_and_all_done_still_runs() {
    let s = settle(&ETL, &states(&[("extract", F), ("transform", N), ("load", N), ("cleanup", N)]), |_| false);
    assert_eq!(s.ended, vec![("transform", TiState::UpstreamFailed), ("load", TiState::UpstreamFailed)]);
    assert_eq!(s.ready, vec!["cleanup"]);
    assert_eq!(s.run_end, None, "cleanup has yet to run");
}

#[test]
fn a_run_ends_once_every_task_is_done_and_a_leaf_decides_how() {
    let done = settle(&ETL, &states(&[("extract", S), ("transform", S), ("load", S), ("cleanup", F)]), |_| false);
    assert_eq!(done.run_end, Some(RunState::Failed));
    let cleaned = settle(&ETL, &states(&[("extract", F), ("transform", F), ("load", F), ("cleanup", S)]), |_| false);
    assert_eq!(cleaned.run_end, Some(RunState::Success), "only leaves decide: cleanup succeeded");
}

#[test]
fn success_makes_the_next_task_ready_and_nothing_ends() {
    let s = settle(&ETL, &states(&[("extract", S), ("transform", Sc), ("load", N), ("cleanup", N)]), |_| false);
    assert_eq!(s, Settlement { ended: vec![], ready: vec!["transform"], run_end: None });
}

#[test]
fn a_retry_is_ready_only_when_due_and_a_skip_cascades() {
    let waiting = states(&[("extract", R), ("transform", N), ("load", N), ("cleanup", N)]);
    assert!(settle(&ETL, &waiting, |_| false).ready.is_empty());
    assert_eq!(settle(&ETL, &waiting, |id| id == "extract").ready, vec!["extract"]);
    let skipped = settle(&ETL, &states(&[("extract", K), ("transform", N), ("load", N), ("cleanup", N)]), |_| false);
    assert_eq!(skipped.ended, vec![("transform", K), ("load", K)]);
    assert_eq!(skipped.ready, vec!["cleanup"]);
}

#[test]
fn a_task_missing_from_the_run_counts_as_removed() {
    // `transform` has no task instance in this run (it was added after the run was
    // created): a removed upstream is ignored, so `load` waits on nothing and runs.
    let s = settle(&ETL, &states(&[("extract", S), ("load", N), ("cleanup", N)]), |_| false);
    assert_eq!(s.ready, vec!["load"]);
}

#[test]
fn retries_follow_the_policy() {
    let policy =
        RetryPolicy { retries: 3, retry_delay_secs: 10, exponential_backoff: true, max_retry_delay_secs: Some(25) };
    assert_eq!(policy.max_tries(), 4);
    assert_eq!(after_failure(&policy, 1, 4, 0), AfterFailure::Retry { at: 10_000_000 });
    assert_eq!(after_failure(&policy, 2, 4, 0), AfterFailure::Retry { at: 20_000_000 });
    assert_eq!(after_failure(&policy, 3, 4, 0), AfterFailure::Retry { at: 25_000_000 }, "capped");
    assert_eq!(after_failure(&policy, 4, 4, 0), AfterFailure::Fail);
    let flat = RetryPolicy { exponential_backoff: false, max_retry_delay_secs: None, ..policy };
    assert_eq!(flat.delay_secs(4), 10);
}

#[test]
fn run_states_and_types_round_trip_as_text() {
    for s in RunState::ALL {
        assert_eq!(RunState::parse(s.as_str()), Some(s));
    }
    for t in RunType::ALL {
        assert_eq!(RunType::parse(t.as_str()), Some(t));
    }
    assert_eq!(serde_json::to_value(RunState::Success).ok(), Some(serde_json::json!("success")));
}
