//! The store's behaviour, run against SQLite and PostgreSQL alike: migrations, pipeline
//! sync, and the task state machine (trigger rules, retries, pools, limits, exactly-once
//! outcomes). Time is a manual clock.

mod support;

use sluice_runtime::rules::RunState;
use sluice_runtime::rules::TiState;
use sluice_runtime::spec::*;
use sluice_runtime::store::{Finish, Outcome, Queued, Store, StoreError, Take, Trail};
use std::sync::LazyLock;
use support::*;

async fn states(store: &Store, run_pk: i64) -> Vec<(String, TiState)> {
    store.task_instances(run_pk).await.expect("tis").into_iter().map(|t| (t.task_id, t.state)).collect()
}

fn state_of(all: &[(String, TiState)], task: &str) -> TiState {
    all.iter().find(|(t, _)| t == task).map(|(_, s)| *s).expect("task exists")
}

/// Claims and finishes one queued task instance with `outcome`; returns what got queued.
async fn run_one(store: &Store, p: &PipelineSpec, q: &Queued, outcome: Outcome) -> Vec<Queued> {
    let claimed = store.claim(q.ti_id, "w1", std::slice::from_ref(p)).await.expect("claim").expect("was queued");
    store.finish(p, claimed.ti_id, claimed.try_number, &outcome, 32).await.expect("finish")
}

async fn task_id(store: &Store, run_pk: i64, q: &Queued) -> String {
    store.task_instances(run_pk).await.expect("tis").into_iter().find(|t| t.id == q.ti_id).expect("ti").task_id
}

static CHAIN: LazyLock<[PipelineSpec; 1]> = LazyLock::new(|| {
    [graphed(pipeline("chain", Schedule::Manual, &const { [task("a", &[]), task("b", &["a"]), task("c", &["b"])] }))]
});

#[tokio::test]
async fn migrations_are_idempotent() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        assert_eq!(store.migrate().await.expect("again"), 0, "a second migrate applies nothing");
        store.check().await.expect("check");
    }
}

#[tokio::test]
async fn sync_adds_versions_and_deactivates() {
    static V1: [PipelineSpec; 2] = [
        pipeline("kept", Schedule::Manual, &[task("a", &[])]),
        pipeline("dropped", Schedule::Manual, &[task("a", &[])]),
    ];
    static V2: [PipelineSpec; 1] =
        [PipelineSpec { version_hash: "v2", ..pipeline("kept", Schedule::Manual, &[task("a", &[])]) }];
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let report = store.sync_pipelines(registry(&V1[..], &[])).await.expect("sync");
        assert_eq!(report.added, ["kept", "dropped"]);
        store.set_paused("kept", true).await.expect("pause");
        let again = store.sync_pipelines(registry(&V1[..], &[])).await.expect("sync");
        assert!(again.added.is_empty() && again.changed.is_empty() && again.deactivated.is_empty());
        let report = store.sync_pipelines(registry(&V2[..], &[])).await.expect("sync");
        assert_eq!(report.changed, ["kept"]);
        assert_eq!(report.deactivated, ["dropped"]);
        let rows = store.pipelines().await.expect("list");
        let kept = rows.iter().find(|r| r.pipeline_id == "kept").expect("kept");
        assert!(kept.is_paused, "a sync keeps the paused flag");
        assert_eq!(kept.version_hash, "v2");
        assert!(!rows.iter().find(|r| r.pipeline_id == "dropped").expect("history kept").is_active);
    }
}

#[tokio::test]
async fn a_chain_runs_in_order_and_passes_outputs() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let p = &CHAIN[0];
        store.sync_pipelines(registry(&CHAIN[..], &[])).await.expect("sync");
        let run = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        assert_eq!(run.state, RunState::Queued);
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        assert_eq!(queued.len(), 1);
        assert_eq!(task_id(&store, run.id, &queued[0]).await, "a");
        let next = run_one(&store, p, &queued[0], Outcome::Success(serde_json::json!({"rows": 3}))).await;
        assert_eq!(task_id(&store, run.id, &next[0]).await, "b", "b is queued in the same transaction");
        let claimed = store.claim(next[0].ti_id, "w1", std::slice::from_ref(p)).await.expect("claim").expect("queued");
        assert_eq!(claimed.outputs.get("a"), Some(&serde_json::json!({"rows": 3})));
        let next = store
            .finish(p, claimed.ti_id, claimed.try_number, &Outcome::Success(serde_json::Value::Null), 32)
            .await
            .expect("finish");
        let done = run_one(&store, p, &next[0], Outcome::Success(serde_json::Value::Null)).await;
        assert!(done.is_empty());
        assert_eq!(store.run(run.id).await.expect("run").state, RunState::Success);
    }
}

#[tokio::test]
async fn outcomes_are_recorded_exactly_once() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let p = &CHAIN[0];
        store.sync_pipelines(registry(&CHAIN[..], &[])).await.expect("sync");
        let run = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        let claimed =
            store.claim(queued[0].ti_id, "w1", std::slice::from_ref(p)).await.expect("claim").expect("queued");
        assert!(
            store.claim(queued[0].ti_id, "w2", std::slice::from_ref(p)).await.expect("claim").is_none(),
            "a second claim loses"
        );
        let first = store
            .finish(p, claimed.ti_id, claimed.try_number, &Outcome::Success(serde_json::Value::Null), 32)
            .await
            .expect("finish");
        let second = store
            .finish(p, claimed.ti_id, claimed.try_number, &Outcome::Failed("late".into()), 32)
            .await
            .expect("finish");
        assert_eq!(first.len(), 1);
        assert!(second.is_empty(), "a duplicate report queues nothing");
        assert_eq!(state_of(&states(&store, run.id).await, "a"), TiState::Success, "and changes nothing");
    }
}

#[tokio::test]
async fn retries_wait_with_backoff_then_fail() {
    static P: [PipelineSpec; 1] = [pipeline(
        "retrying",
        Schedule::Manual,
        &[TaskSpec {
            retry: RetryPolicy {
                retries: 2,
                retry_delay_secs: 60,
                exponential_backoff: true,
                max_retry_delay_secs: Some(90),
            },
            ..task("flaky", &[])
        }],
    )];
    for db in &BACKENDS {
        let (store, clock) = store(db).await;
        let p = &P[0];
        store.sync_pipelines(registry(&P[..], &[])).await.expect("sync");
        let run = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        assert!(run_one(&store, p, &queued[0], Outcome::Failed("boom".into())).await.is_empty());
        assert_eq!(state_of(&states(&store, run.id).await, "flaky"), TiState::UpForRetry);
        assert_eq!(store.next_retry_at().await.expect("next"), Some(T0 + 60_000_000), "first retry after retry_delay");
        clock.advance_secs(59);
        assert!(store.advance_pipeline(p, 32).await.expect("advance").is_empty(), "not before the delay");
        clock.advance_secs(1);
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        assert_eq!(queued.len(), 1);
        run_one(&store, p, &queued[0], Outcome::Failed("boom".into())).await;
        // Second retry: 60s doubled is 120s, capped at 90s.
        assert_eq!(store.next_retry_at().await.expect("next"), Some(T0 + 60_000_000 + 90_000_000));
        clock.advance_secs(90);
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        run_one(&store, p, &queued[0], Outcome::Failed("boom".into())).await;
        let tis = store.task_instances(run.id).await.expect("tis");
        assert_eq!(tis[0].state, TiState::Failed);
        assert_eq!(tis[0].try_number, 3);
        assert_eq!(store.run(run.id).await.expect("run").state, RunState::Failed);
    }
}

#[tokio::test]
async fn failures_cascade_and_trigger_rules_decide() {
    static P: LazyLock<[PipelineSpec; 1]> = LazyLock::new(|| {
        [graphed(pipeline(
            "rules",
            Schedule::Manual,
            &const {
                [
                    task("extract", &[]),
                    task("load", &["extract"]),
                    task("report", &["load"]),
                    TaskSpec { trigger_rule: TriggerRule::AllDone, ..task("cleanup", &["load"]) },
                    TaskSpec { trigger_rule: TriggerRule::OneFailed, ..task("alert", &["extract"]) },
                ]
            },
        ))]
    });
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let p = &P[0];
        store.sync_pipelines(registry(&P[..], &[])).await.expect("sync");
        let run = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        let next = run_one(&store, p, &queued[0], Outcome::Failed("bad data".into())).await;
        let all = states(&store, run.id).await;
        assert_eq!(state_of(&all, "load"), TiState::UpstreamFailed);
        assert_eq!(state_of(&all, "report"), TiState::UpstreamFailed, "cascades");
        let mut names = Vec::new();
        for q in &next {
            names.push(task_id(&store, run.id, q).await);
        }
        names.sort();
        assert_eq!(names, ["alert", "cleanup"], "all_done and one_failed still run");
        for q in &next {
            run_one(&store, p, q, Outcome::Success(serde_json::Value::Null)).await;
        }
        assert_eq!(store.run(run.id).await.expect("run").state, RunState::Failed, "a failed leaf fails the run");
    }
}

#[tokio::test]
async fn pools_limit_and_priority_orders() {
    static POOLS: [PoolSpec; 1] = [PoolSpec { name: "one", slots: 1, description: "" }];
    static P: LazyLock<[PipelineSpec; 1]> = LazyLock::new(|| {
        [graphed(pipeline(
            "pooled",
            Schedule::Manual,
            &const {
                [
                    TaskSpec { pool: "one", priority_weight: 1, ..task("low", &[]) },
                    TaskSpec { pool: "one", priority_weight: 10, ..task("high", &[]) },
                    task("free", &[]),
                ]
            },
        ))]
    });
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let p = &P[0];
        store.sync_pipelines(registry(&P[..], &POOLS)).await.expect("sync");
        let run = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        let mut names = Vec::new();
        for q in &queued {
            names.push(task_id(&store, run.id, q).await);
        }
        assert_eq!(names, ["high", "free"], "one slot: the higher priority takes it");
        let high = queued.iter().find(|q| q.priority_weight == 10).expect("high");
        let next = run_one(&store, p, high, Outcome::Success(serde_json::Value::Null)).await;
        assert_eq!(task_id(&store, run.id, &next[0]).await, "low", "the freed slot goes to the waiting task");
    }
}

#[tokio::test]
async fn the_compiled_effective_weight_puts_a_task_with_much_below_it_first() {
    // `fan` weighs 1 but has three tasks below it (4 in all); `heavy` weighs 3 alone.
    static POOLS: [PoolSpec; 1] = [PoolSpec { name: "one", slots: 1, description: "" }];
    static P: LazyLock<[PipelineSpec; 1]> = LazyLock::new(|| {
        [graphed(pipeline(
            "weighted",
            Schedule::Manual,
            &const {
                [
                    TaskSpec { pool: "one", priority_weight: 3, ..task("heavy", &[]) },
                    TaskSpec { pool: "one", ..task("fan", &[]) },
                    task("x", &["fan"]),
                    task("y", &["fan"]),
                    task("z", &["x", "y"]),
                ]
            },
        ))]
    });
    let weights: Vec<(&str, i64)> = P[0].tasks.iter().map(|t| (t.id, t.effective_priority_weight)).collect();
    assert_eq!(weights, [("heavy", 3), ("fan", 4), ("x", 2), ("y", 2), ("z", 1)], "z counts once under fan");
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let p = &P[0];
        store.sync_pipelines(registry(&P[..], &POOLS)).await.expect("sync");
        let run = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        assert_eq!(queued.len(), 1, "one slot");
        assert_eq!((task_id(&store, run.id, &queued[0]).await.as_str(), queued[0].priority_weight), ("fan", 4));
    }
}

#[tokio::test]
async fn sync_refuses_graph_facts_that_do_not_fit_the_dependencies() {
    // Written by hand without `graphed`: `b` depends on `a`, but no fact says so.
    static P: [PipelineSpec; 1] = [pipeline("unfit", Schedule::Manual, &[task("a", &[]), task("b", &["a"])])];
    let (store, _) = store(&Db::Sqlite).await;
    let error = store.sync_pipelines(registry(&P, &[])).await.expect_err("refused").to_string();
    assert!(error.contains("pipeline `unfit`") && error.contains("task `b`"), "{error}");
    let fitted: &'static [PipelineSpec] = Vec::leak(vec![graphed(pipeline("unfit", Schedule::Manual, P[0].tasks))]);
    store.sync_pipelines(registry(fitted, &[])).await.expect("the same pipeline with its facts");
}

#[tokio::test]
async fn max_active_runs_and_tasks_hold_work_back() {
    static P: [PipelineSpec; 1] = [PipelineSpec {
        max_active_runs: 1,
        max_active_tasks: 2,
        ..pipeline("limited", Schedule::Manual, &[task("a", &[]), task("b", &[]), task("c", &[])])
    }];
    for db in &BACKENDS {
        let (store, clock) = store(db).await;
        let p = &P[0];
        store.sync_pipelines(registry(&P[..], &[])).await.expect("sync");
        let first = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        clock.advance_secs(1);
        let second = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        assert_eq!(queued.len(), 2, "max_active_tasks");
        assert_eq!(store.run(first.id).await.expect("run").state, RunState::Running);
        assert_eq!(store.run(second.id).await.expect("run").state, RunState::Queued, "max_active_runs");
        assert!(store.advance_pipeline(p, 32).await.expect("advance").is_empty());
        let more = run_one(&store, p, &queued[0], Outcome::Success(serde_json::Value::Null)).await;
        assert_eq!(more.len(), 1, "a freed task slot is used at once");
        let _ = store.advance_pipeline(p, 1).await.expect("advance");
        assert_eq!(
            store.advance_pipeline(p, 2).await.expect("advance").len(),
            0,
            "parallelism counts every active task"
        );
    }
}

#[tokio::test]
async fn a_run_held_by_max_active_runs_starts_as_the_previous_one_ends() {
    static P: [PipelineSpec; 1] =
        [PipelineSpec { max_active_runs: 1, ..pipeline("one_at_a_time", Schedule::Manual, &[task("only", &[])]) }];
    for db in &BACKENDS {
        let (store, clock) = store(db).await;
        let p = &P[0];
        store.sync_pipelines(registry(&P, &[])).await.expect("sync");
        let first = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        clock.advance_secs(1);
        let second = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        assert_eq!(store.run(second.id).await.expect("run").state, RunState::Queued, "max_active_runs");
        // The first run's last task ends: in that same transaction the second run starts
        // and its first task is queued, with no scheduler pass in between.
        let next = run_one(&store, p, &queued[0], Outcome::Success(serde_json::Value::Null)).await;
        assert_eq!(store.run(first.id).await.expect("run").state, RunState::Success);
        assert_eq!(store.run(second.id).await.expect("run").state, RunState::Running);
        assert_eq!(next.len(), 1, "the second run's task is queued by the finish itself");
        assert_eq!(task_id(&store, second.id, &next[0]).await, "only");
    }
}

#[tokio::test]
async fn a_duplicate_logical_date_is_refused() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let p = &CHAIN[0];
        store.sync_pipelines(registry(&CHAIN[..], &[])).await.expect("sync");
        sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), Some(T0)).await.expect("first");
        let err =
            sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), Some(T0)).await.expect_err("dup");
        assert!(err.to_string().contains("already has run"), "{err}");
    }
}

#[tokio::test]
async fn trigger_conf_is_checked_against_param_types() {
    static P: [PipelineSpec; 1] = [PipelineSpec {
        params: &[
            ParamSpec { name: "limit", ty: ValueType::Int, default_json: Some("10"), description: "" },
            ParamSpec { name: "league", ty: ValueType::String, default_json: None, description: "" },
        ],
        ..pipeline("typed", Schedule::Manual, &[task("a", &[])])
    }];
    for db in &BACKENDS {
        let (store, clock) = store(db).await;
        let p = &P[0];
        store.sync_pipelines(registry(&P[..], &[])).await.expect("sync");
        let err =
            sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({"limit": "ten", "league": "nfl"}), None)
                .await
                .expect_err("wrong type");
        assert_eq!(err.to_string(), "param `limit` of pipeline `typed` must be of type int, got `\"ten\"`");
        let err =
            sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect_err("missing");
        assert!(err.to_string().contains("`league`"), "{err}");
        clock.advance_secs(1);
        sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({"league": "nba"}), None).await.expect("valid");
    }
}

#[tokio::test]
async fn clearing_reruns_a_task_and_its_downstream() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let p = &CHAIN[0];
        store.sync_pipelines(registry(&CHAIN[..], &[])).await.expect("sync");
        let run = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let mut queued = store.advance_pipeline(p, 32).await.expect("advance");
        while let Some(q) = queued.pop() {
            queued.extend(run_one(&store, p, &q, Outcome::Success(serde_json::Value::Null)).await);
        }
        assert_eq!(store.run(run.id).await.expect("run").state, RunState::Success);
        let cleared = store.clear_task(p, run.id, "b", true).await.expect("clear");
        assert_eq!(cleared, ["b", "c"]);
        let all = states(&store, run.id).await;
        assert_eq!(
            (state_of(&all, "a"), state_of(&all, "b"), state_of(&all, "c")),
            (TiState::Success, TiState::None, TiState::None)
        );
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        assert_eq!(task_id(&store, run.id, &queued[0]).await, "b", "the cleared task runs again");
        let claimed = store.claim(queued[0].ti_id, "w", std::slice::from_ref(p)).await.expect("claim").expect("queued");
        assert_eq!(claimed.try_number, 2, "tries so far are kept");
    }
}

#[tokio::test]
async fn marking_success_lets_the_run_continue() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let p = &CHAIN[0];
        store.sync_pipelines(registry(&CHAIN[..], &[])).await.expect("sync");
        let run = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        run_one(&store, p, &queued[0], Outcome::Failed("boom".into())).await;
        assert_eq!(store.run(run.id).await.expect("run").state, RunState::Failed);
        let next = store.mark_task(p, run.id, "a", TiState::Success, 32).await.expect("mark");
        assert_eq!(task_id(&store, run.id, &next[0]).await, "b", "b runs after a is marked success");
        assert_eq!(store.run(run.id).await.expect("run").state, RunState::Running);
        let err = store.mark_task(p, run.id, "b", TiState::Success, 32).await.expect_err("b is queued");
        assert!(err.to_string().contains("queued or running"), "{err}");
    }
}

#[tokio::test]
async fn cleaning_deletes_only_old_finished_runs() {
    for db in &BACKENDS {
        let (store, clock) = store(db).await;
        let p = &CHAIN[0];
        store.sync_pipelines(registry(&CHAIN[..], &[])).await.expect("sync");
        let old = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), Some(T0 - 86_400_000_000))
            .await
            .expect("old");
        let mut queued = store.advance_pipeline(p, 32).await.expect("advance");
        while let Some(q) = queued.pop() {
            let claimed = store.claim(q.ti_id, "w", std::slice::from_ref(p)).await.expect("claim").expect("queued");
            store
                .append_logs(claimed.ti_id, claimed.try_number, &[("info".into(), "hello".into())])
                .await
                .expect("log");
            queued.extend(
                store
                    .finish(p, claimed.ti_id, claimed.try_number, &Outcome::Success(serde_json::json!(1)), 32)
                    .await
                    .expect("finish"),
            );
        }
        clock.advance_secs(1);
        let recent = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("recent");
        assert_eq!(store.clean_before(T0, true, &mut |_, _| {}).await.expect("dry run"), 1);
        assert_eq!(store.runs("chain", 10).await.expect("runs").len(), 2, "a dry run deletes nothing");
        assert_eq!(store.clean_before(T0, false, &mut |_, _| {}).await.expect("clean"), 1);
        let left: Vec<i64> = store.runs("chain", 10).await.expect("runs").iter().map(|r| r.id).collect();
        assert_eq!(left, [recent.id]);
        assert!(store.run(old.id).await.is_err());
    }
}

#[tokio::test]
async fn a_new_version_removes_and_adds_tasks_in_active_runs() {
    static V1: LazyLock<[PipelineSpec; 1]> = LazyLock::new(|| {
        [graphed(pipeline("evolving", Schedule::Manual, &const { [task("a", &[]), task("old", &["a"])] }))]
    });
    static V2: LazyLock<[PipelineSpec; 1]> = LazyLock::new(|| {
        [graphed(PipelineSpec {
            version_hash: "v2",
            ..pipeline("evolving", Schedule::Manual, &const { [task("a", &[]), task("new", &["a"])] })
        })]
    });
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        store.sync_pipelines(registry(&V1[..], &[])).await.expect("sync v1");
        let run =
            sluice_runtime::scheduler::trigger(&store, &V1[0], serde_json::json!({}), None).await.expect("trigger");
        store.sync_pipelines(registry(&V2[..], &[])).await.expect("sync v2");
        let all = states(&store, run.id).await;
        assert_eq!(state_of(&all, "old"), TiState::Removed);
        assert_eq!(state_of(&all, "new"), TiState::None);
        let queued = store.advance_pipeline(&V2[0], 32).await.expect("advance");
        let next = run_one(&store, &V2[0], &queued[0], Outcome::Success(serde_json::Value::Null)).await;
        assert_eq!(task_id(&store, run.id, &next[0]).await, "new");
        run_one(&store, &V2[0], &next[0], Outcome::Success(serde_json::Value::Null)).await;
        assert_eq!(store.run(run.id).await.expect("run").state, RunState::Success, "removed tasks do not hold the run");
    }
}

#[tokio::test]
async fn a_renamed_task_keeps_its_history_in_past_and_active_runs() {
    static V1: LazyLock<[PipelineSpec; 1]> = LazyLock::new(|| {
        [graphed(pipeline("renaming", Schedule::Manual, &const { [task("extract", &[]), task("load", &["extract"])] }))]
    });
    static V2: LazyLock<[PipelineSpec; 1]> = LazyLock::new(|| {
        [graphed(PipelineSpec {
            version_hash: "v2",
            ..pipeline(
                "renaming",
                Schedule::Manual,
                &const { [TaskSpec { renamed_from: &["extract"], ..task("fetch", &[]) }, task("load", &["fetch"])] },
            )
        })]
    });
    for db in &BACKENDS {
        let (store, clock) = store(db).await;
        store.sync_pipelines(registry(&V1[..], &[])).await.expect("sync v1");
        let p = &V1[0];
        // A finished run, and an active one whose `extract` succeeded and whose `load` waits.
        let past = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        let next = run_one(&store, p, &queued[0], Outcome::Success(serde_json::json!({"rows": 3}))).await;
        run_one(&store, p, &next[0], Outcome::Success(serde_json::Value::Null)).await;
        clock.advance_secs(1);
        let active = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        let extract_ti = queued[0].ti_id;
        let waiting = run_one(&store, p, &queued[0], Outcome::Success(serde_json::json!({"rows": 5}))).await;
        assert_eq!(waiting.len(), 1, "load is queued");

        store.sync_pipelines(registry(&V2[..], &[])).await.expect("sync v2");
        for run in [past.id, active.id] {
            let all = states(&store, run).await;
            assert!(!all.iter().any(|(t, _)| t == "extract"), "{db:?}: no instance keeps the former id: {all:?}");
            assert_eq!(state_of(&all, "fetch"), TiState::Success, "{db:?}: its history moved to the new id");
        }
        let tis = store.task_instances(active.id).await.expect("tis");
        let fetch = tis.iter().find(|t| t.task_id == "fetch").expect("fetch");
        assert_eq!((fetch.id, fetch.try_number), (extract_ti, 1), "{db:?}: the same instance, with its try");
        assert_eq!(store.tries(fetch).await.expect("tries").len(), 1, "{db:?}");
        // The active run goes on from where it was: `fetch` does not run again.
        let done = run_one(&store, &V2[0], &waiting[0], Outcome::Success(serde_json::Value::Null)).await;
        assert!(done.is_empty(), "{db:?}: nothing runs again: {done:?}");
        assert_eq!(store.run(active.id).await.expect("run").state, RunState::Success, "{db:?}");
    }
}

/// A pipeline `wide`: `start`, then `width` parallel tasks, then `end` joining them all;
/// at most 16 tasks at once.
fn wide(width: usize) -> &'static [PipelineSpec] {
    let ids: &'static [&'static str] = Vec::leak((0..width).map(|i| &*String::leak(format!("p{i:03}"))).collect());
    let mut tasks = vec![task("start", &[])];
    tasks.extend(ids.iter().map(|id| task(id, &["start"])));
    tasks.push(task("end", ids));
    let spec = graphed(PipelineSpec { max_active_tasks: 16, ..pipeline("wide", Schedule::Manual, Vec::leak(tasks)) });
    Vec::leak(vec![spec])
}

#[tokio::test]
async fn a_wide_run_waits_for_room_and_its_join_runs_after_the_last_upstream() {
    // More upstreams than a finish reads row by row: the join's states are counted.
    let width = 300;
    let pipelines = wide(width);
    let p = &pipelines[0];
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        store.sync_pipelines(registry(pipelines, &[])).await.expect("sync");
        let run = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let start = store.advance_pipeline(p, 32).await.expect("advance");
        let mut queued = run_one(&store, p, &start[0], Outcome::Success(serde_json::Value::Null)).await;
        assert_eq!(queued.len(), 16, "max_active_tasks bounds the fan-out");
        let all = states(&store, run.id).await;
        let waiting = all.iter().filter(|(_, s)| *s == TiState::Scheduled).count();
        assert_eq!(waiting, width - 16, "the rest wait for room as `scheduled`");
        let mut finished = 0;
        while let Some(q) = queued.pop() {
            let task = task_id(&store, run.id, &q).await;
            if task == "end" {
                assert_eq!(finished, width, "the join is queued only after every upstream ended");
            } else {
                finished += 1;
            }
            queued.extend(run_one(&store, p, &q, Outcome::Success(serde_json::Value::Null)).await);
            assert!(queued.len() <= 16, "never more than max_active_tasks at once");
        }
        assert_eq!(state_of(&states(&store, run.id).await, "end"), TiState::Success);
        assert_eq!(store.run(run.id).await.expect("run").state, RunState::Success);

        // One upstream fails: the join is upstream_failed at once, and the run fails when
        // the rest have ended.
        let run =
            sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), Some(T0 + 1)).await.expect("trigger");
        let start = store.advance_pipeline(p, 32).await.expect("advance");
        let mut queued = run_one(&store, p, &start[0], Outcome::Success(serde_json::Value::Null)).await;
        let first = queued.pop().expect("a task");
        queued.extend(run_one(&store, p, &first, Outcome::Failed("boom".into())).await);
        assert_eq!(state_of(&states(&store, run.id).await, "end"), TiState::UpstreamFailed);
        while let Some(q) = queued.pop() {
            queued.extend(run_one(&store, p, &q, Outcome::Success(serde_json::Value::Null)).await);
        }
        let all = states(&store, run.id).await;
        assert_eq!(all.iter().filter(|(_, s)| *s == TiState::Success).count(), width, "start and the other upstreams");
        assert_eq!(store.run(run.id).await.expect("run").state, RunState::Failed);
    }
}

#[tokio::test]
async fn a_finishing_worker_takes_the_next_task_of_its_queues_in_the_same_transaction() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let p = &CHAIN[0];
        store.sync_pipelines(registry(&CHAIN[..], &[])).await.expect("sync");
        let run = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        let a = store.claim(queued[0].ti_id, "w1", &CHAIN[..]).await.expect("claim").expect("queued");
        let elsewhere = ["ml".to_string()];
        let take = Take { worker: "w1", queues: &elsewhere, pipelines: &CHAIN[..] };
        let success = Outcome::Success(serde_json::json!({"rows": 1}));
        let finish = Finish {
            pipeline: p,
            ti_id: a.ti_id,
            try_number: a.try_number,
            outcome: success.clone(),
            run: None,
            trail: Trail::default(),
        };
        let done = store.finish_many(&[finish], 32, Some(take)).await.expect("finish");
        assert!(done.each[0].next.is_none(), "b is on the default queue, which this worker does not read");
        let left = done.queued;
        assert_eq!(left.len(), 1, "b is left to the broker");

        let b = store.claim(left[0].ti_id, "w1", &CHAIN[..]).await.expect("claim").expect("queued");
        let take = Take { worker: "w1", queues: &[], pipelines: &CHAIN[..] };
        let finish = Finish {
            pipeline: p,
            ti_id: b.ti_id,
            try_number: b.try_number,
            outcome: success.clone(),
            run: None,
            trail: Trail::default(),
        };
        let mut done = store.finish_many(&[finish], 32, Some(take)).await.expect("finish");
        assert!(done.queued.is_empty(), "nothing left to dispatch");
        let c = done.each[0].next.take().expect("c claimed with b's finish");
        assert_eq!((c.task_id.as_str(), c.try_number), ("c", 1));
        assert_eq!(c.outputs.get("b"), Some(&serde_json::json!({"rows": 1})), "with its upstream's outputs");
        let tis = store.task_instances(run.id).await.expect("tis");
        let c_row = tis.iter().find(|t| t.task_id == "c").expect("c");
        assert_eq!((c_row.state, c_row.worker.as_deref()), (TiState::Running, Some("w1")));
        store.finish(p, c.ti_id, c.try_number, &success, 32).await.expect("finish");
        assert_eq!(store.run(run.id).await.expect("run").state, RunState::Success);
    }
}

#[tokio::test]
async fn outcomes_recorded_together_decide_each_run_once() {
    let pipelines = wide(6);
    let p = &pipelines[0];
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        store.sync_pipelines(registry(pipelines, &[])).await.expect("sync");
        let mut runs = Vec::new();
        let mut middles = Vec::new();
        for at in [1, 2] {
            let run = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), Some(T0 + at))
                .await
                .expect("trigger");
            runs.push(run.id);
        }
        for start in store.advance_pipeline(p, 32).await.expect("advance") {
            middles.extend(run_one(&store, p, &start, Outcome::Success(serde_json::json!({"n": 1}))).await);
        }
        assert_eq!(middles.len(), 12, "both runs fan out to six");
        let ids: Vec<i64> = middles.iter().map(|q| q.ti_id).collect();
        let claimed = store.claim_many(&ids, "w1", pipelines).await.expect("claim");
        assert_eq!(claimed.len(), 12, "one transaction claims them all");
        assert!(claimed.iter().all(|c| c.outputs.get("start") == Some(&serde_json::json!({"n": 1}))));
        assert!(store.claim_many(&ids, "w2", pipelines).await.expect("claim").is_empty(), "claimed once");
        let rendered = std::collections::BTreeMap::from([("cmd".to_string(), "true".to_string())]);
        let rendered_json = serde_json::to_string(&rendered).expect("json");

        // One middle task fails for good; a stale report of another try changes nothing.
        let success = Outcome::Success(serde_json::Value::Null);
        let failure = Outcome::Failed("boom".into());
        let mut finishes: Vec<Finish> = claimed
            .iter()
            .enumerate()
            .map(|(i, c)| Finish {
                pipeline: p,
                ti_id: c.ti_id,
                try_number: c.try_number,
                outcome: if i == 0 { failure.clone() } else { success.clone() },
                run: Some(c.run.clone()),
                trail: Trail {
                    rendered: Some(rendered_json.clone()),
                    log: vec![("stdout".into(), format!("last line of {}", c.ti_id))],
                    ..Trail::default()
                },
            })
            .collect();
        finishes.push(Finish {
            pipeline: p,
            ti_id: claimed[1].ti_id,
            try_number: 7,
            outcome: failure.clone(),
            run: None,
            trail: Trail { rendered: Some(r#"{"cmd":"stale"}"#.into()), ..Trail::default() },
        });
        let take = Take { worker: "w1", queues: &[], pipelines };
        let mut done = store.finish_many(&finishes, 32, Some(take)).await.expect("finish");
        assert_eq!(done.each.len(), 13);
        assert!(done.each[0].failed && !done.each[1].failed);
        assert!(done.each[12].next.is_none() && done.each[12].run_queued == 0, "the stale report did nothing");
        for c in &claimed {
            let kept = store.rendered(c.ti_id, c.try_number).await.expect("read");
            assert_eq!(kept, rendered, "each try's templates are kept with its end, the stale report's are not");
            let log = store.logs(c.ti_id, c.try_number).await.expect("log");
            assert!(log.iter().any(|l| l.contains(&format!("last line of {}", c.ti_id))), "{log:?}");
        }
        let failed_run = claimed[0].run_pk;
        let other_run = runs.iter().copied().find(|r| *r != failed_run).expect("two runs");
        assert_eq!(state_of(&states(&store, failed_run).await, "end"), TiState::UpstreamFailed);
        assert_eq!(store.run(failed_run).await.expect("run").state, RunState::Failed);
        let end = done.each.iter_mut().find_map(|r| r.next.take()).expect("the other run's join, taken");
        assert_eq!((end.task_id.as_str(), end.run_pk), ("end", other_run));
        assert!(done.each.iter().all(|r| r.next.is_none()), "taken once");
        assert!(done.queued.is_empty());
        let tis = store.task_instances(other_run).await.expect("tis");
        assert!(tis.iter().filter(|t| t.task_id != "end").all(|t| t.state == TiState::Success));
        store.finish(p, end.ti_id, end.try_number, &success, 32).await.expect("finish");
        assert_eq!(store.run(other_run).await.expect("run").state, RunState::Success);
        let ended_tries = store.metrics(0).await.expect("metrics").durations;
        assert_eq!(ended_tries, [("wide".to_string(), 2 + 12 + 1, 0)], "every try that ran has ended, once");
    }
}

#[tokio::test]
async fn runs_and_task_instances_are_searched_by_filter_on_both_backends() {
    use sluice_runtime::store::{RunFilter, TiFilter};
    for db in &BACKENDS {
        let (store, clock) = store(db).await;
        let p = &CHAIN[0];
        store.sync_pipelines(registry(&CHAIN[..], &[])).await.expect("sync");
        let first = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        clock.advance_secs(60);
        let second = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        let queued = store.advance_pipeline(p, 32).await.expect("advance");
        run_one(&store, p, &queued[0], Outcome::Success(serde_json::Value::Null)).await;
        let all = RunFilter::default();
        let (runs, total) = store.search_runs(&all, 10, 0).await.expect("search");
        assert_eq!((total, runs.iter().map(|r| r.id).collect::<Vec<_>>()), (2, vec![second.id, first.id]), "{db:?}");
        let later = RunFilter { logical_date: (Some(second.logical_date), None), ..RunFilter::default() };
        assert_eq!(store.search_runs(&later, 10, 0).await.expect("search").1, 1, "{db:?}");
        let states = RunFilter { states: Some(vec!["nope".into()]), ..RunFilter::default() };
        assert_eq!(store.search_runs(&states, 10, 0).await.expect("search").1, 0, "{db:?}");
        let (page, total) = store.search_runs(&all, 1, 1).await.expect("search");
        assert_eq!((total, page.len(), page[0].id), (2, 1, first.id), "{db:?}");
        // Task instances: three per run; one of them has succeeded.
        let (found, total) = store.search_task_instances(&TiFilter::default(), 100, 0).await.expect("search");
        assert_eq!((total, found.len()), (6, 6), "{db:?}");
        let done = TiFilter { states: Some(vec!["success".into()]), ..TiFilter::default() };
        let (found, total) = store.search_task_instances(&done, 100, 0).await.expect("search");
        assert_eq!(total, 1, "{db:?}");
        assert_eq!(found[0].1.task_id, "a", "{db:?}");
        let of_first = TiFilter {
            runs: RunFilter { run_ids: Some(vec![first.run_id.clone()]), ..RunFilter::default() },
            task_ids: Some(vec!["b".into(), "c".into()]),
            ..TiFilter::default()
        };
        let (found, total) = store.search_task_instances(&of_first, 100, 0).await.expect("search");
        let ids: Vec<(i64, &str)> = found.iter().map(|(run, ti)| (run.id, ti.task_id.as_str())).collect();
        assert_eq!((total, ids), (2, vec![(first.id, "b"), (first.id, "c")]), "{db:?}");
    }
}

#[tokio::test]
async fn the_history_of_a_pipeline_no_longer_compiled_in_can_be_deleted() {
    static V1: [PipelineSpec; 2] = [
        pipeline("kept", Schedule::Manual, &[task("a", &[])]),
        pipeline("dropped", Schedule::Manual, &[task("a", &[])]),
    ];
    static V2: [PipelineSpec; 1] = [pipeline("kept", Schedule::Manual, &[task("a", &[])])];
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        store.sync_pipelines(registry(&V1[..], &[])).await.expect("sync");
        let run =
            sluice_runtime::scheduler::trigger(&store, &V1[1], serde_json::json!({}), None).await.expect("trigger");
        store.advance_pipeline(&V1[1], 32).await.expect("advance");
        assert!(
            matches!(store.delete_pipeline("dropped").await, Err(StoreError::Conflict(_))),
            "{db:?}: compiled in, so it stays"
        );
        store.sync_pipelines(registry(&V2[..], &[])).await.expect("sync");
        store.delete_pipeline("dropped").await.expect("delete");
        assert!(matches!(store.pipeline("dropped").await, Err(StoreError::NotFound(_))), "{db:?}");
        assert!(matches!(store.run(run.id).await, Err(StoreError::NotFound(_))), "{db:?}: its runs are gone");
        assert!(store.task_instances(run.id).await.expect("list").is_empty(), "{db:?}");
        assert!(matches!(store.delete_pipeline("dropped").await, Err(StoreError::NotFound(_))), "{db:?}");
        store.pipeline("kept").await.expect("the other pipeline stays");
    }
}
