//! Skips and branches, on SQLite and PostgreSQL: a task that asks to be skipped (a Rust
//! body's skip outcome, a shell command's `skip_exit_code`) ends `skipped` without a retry,
//! and a branch task's choice skips the targets it leaves out; downstream tasks follow their
//! trigger rules either way.

mod support;

use sluice_runtime::rules::{RunState, TiState};
use sluice_runtime::spec::*;
use sluice_runtime::store::Store;
use sluice_runtime::worker::Worker;
use sluice_runtime::{Registry, TaskError, TaskFuture, TaskInput};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use support::*;

const fn shell(id: &'static str, command: &'static str, depends_on: &'static [&'static str]) -> TaskSpec {
    TaskSpec { kind: TaskKind::shell(command), ..task(id, depends_on) }
}

const fn rust(id: &'static str, depends_on: &'static [&'static str]) -> TaskSpec {
    TaskSpec { kind: TaskKind::Rust { path: "test" }, ..task(id, depends_on) }
}

const RETRIED: RetryPolicy =
    RetryPolicy { retries: 3, retry_delay_secs: 0, exponential_backoff: false, max_retry_delay_secs: None };

static PIPELINES: LazyLock<Vec<PipelineSpec>> = LazyLock::new(|| {
    vec![
        graphed(pipeline(
            "skips",
            Schedule::Manual,
            &const {
                [
                    TaskSpec { retry: RETRIED, ..shell("exits_99", "echo skipping; exit 99", &[]) },
                    shell("below_skip", "true", &["exits_99"]),
                    TaskSpec { trigger_rule: TriggerRule::AllDone, ..shell("cleanup", "true", &["exits_99"]) },
                    TaskSpec {
                        kind: TaskKind::Shell { command: "exit 42", env: &[], skip_exit_code: Some(42) },
                        ..task("exits_42", &[])
                    },
                    TaskSpec {
                        kind: TaskKind::Shell { command: "exit 99", env: &[], skip_exit_code: None },
                        ..task("no_skip_code", &[])
                    },
                    TaskSpec { retry: RETRIED, ..rust("rust_skips", &[]) },
                ]
            },
        )),
        graphed(pipeline(
            "shell_branch",
            Schedule::Manual,
            &const {
                [
                    TaskSpec { branch: &["left", "right"], ..shell("pick", "echo choosing; echo right", &[]) },
                    shell("left", "true", &["pick"]),
                    shell("right", "true", &["pick"]),
                    shell("after_left", "true", &["left"]),
                    TaskSpec {
                        trigger_rule: TriggerRule::NoneFailedMinOneSuccess,
                        ..shell("join", "true", &["left", "right"])
                    },
                ]
            },
        )),
        graphed(pipeline(
            "two_upstreams",
            Schedule::Manual,
            &const {
                [
                    shell("count", "true", &[]),
                    TaskSpec { branch: &["report", "note"], ..shell("pick", "echo note", &["count"]) },
                    shell("report", "true", &["count", "pick"]),
                    shell("note", "true", &["pick"]),
                ]
            },
        )),
        graphed(pipeline(
            "rust_branch",
            Schedule::Manual,
            &const {
                [
                    TaskSpec { branch: &["left", "right"], ..rust("pick", &[]) },
                    shell("left", "true", &["pick"]),
                    shell("right", "true", &["pick"]),
                ]
            },
        )),
        graphed(pipeline(
            "stray_branch",
            Schedule::Manual,
            &const {
                [
                    TaskSpec { branch: &["left"], retry: RETRIED, ..shell("pick", "echo nowhere", &[]) },
                    shell("left", "true", &["pick"]),
                ]
            },
        )),
    ]
});

/// The Rust bodies of the test pipelines: `rust_skips` asks to be skipped, `rust_branch`'s
/// `pick` chooses `left` and nothing else.
fn dispatch<'a>(pipeline: &str, task: &str, _: &'a TaskInput) -> Option<TaskFuture<'a>> {
    match (pipeline, task) {
        ("skips", "rust_skips") => Some(Box::pin(async { Err(TaskError::skip("nothing new to do")) })),
        ("rust_branch", "pick") => Some(Box::pin(async { Ok(serde_json::json!({ "branch": ["left"] })) })),
        _ => None,
    }
}

fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
        source: "test.yaml",
        deployment: &DEPLOYMENT,
        connections: &[],
        pools: &[],
        datasets: &[],
        pipelines: &PIPELINES[..],
        sources: &[],
        python_context: "",
        dispatch,
    });
    &REGISTRY
}

/// Triggers `pipeline` and runs whatever it queues until nothing is left: its tasks' states
/// by id, and how the run ended.
async fn run_to_end(store: &Store, pipeline: &str) -> (BTreeMap<String, (TiState, i64)>, RunState) {
    let p = registry().pipeline(pipeline).expect("test pipeline");
    store.sync_pipelines(registry()).await.expect("sync");
    let run = sluice_runtime::scheduler::trigger(store, p, serde_json::json!({}), None).await.expect("trigger");
    let collect = Arc::new(Collect::default());
    let worker = Worker::new(registry(), store.clone(), collect.clone(), "w1").without_notifier();
    let mut queued = store.advance_pipeline(p, 32).await.expect("advance");
    while let Some(next) = queued.pop() {
        worker.run_task(next.ti_id).await.expect("run task");
        queued.extend(collect.0.lock().expect("lock").drain(..));
        if queued.is_empty() {
            // Retries and anything else the scheduler's pass decides.
            queued = store.advance_pipeline(p, 32).await.expect("advance");
        }
    }
    let states = store
        .task_instances(run.id)
        .await
        .expect("task instances")
        .into_iter()
        .map(|t| (t.task_id, (t.state, t.try_number)))
        .collect();
    (states, store.run(run.id).await.expect("run").state)
}

fn state(states: &BTreeMap<String, (TiState, i64)>, task: &str) -> TiState {
    states.get(task).map(|s| s.0).unwrap_or_else(|| panic!("no task instance `{task}`: {states:?}"))
}

#[tokio::test]
async fn a_skip_ends_the_task_skipped_without_a_retry_and_downstream_follows_its_rule() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let (states, run) = run_to_end(&store, "skips").await;
        assert_eq!(states["exits_99"], (TiState::Skipped, 1), "{db:?}: exit 99 skips, and is not retried");
        assert_eq!(state(&states, "below_skip"), TiState::Skipped, "{db:?}: all_success below a skip skips");
        assert_eq!(state(&states, "cleanup"), TiState::Success, "{db:?}: all_done runs after a skip");
        assert_eq!(state(&states, "exits_42"), TiState::Skipped, "{db:?}: its own skip_exit_code");
        assert_eq!(state(&states, "no_skip_code"), TiState::Failed, "{db:?}: without a skip code, 99 fails");
        assert_eq!(states["rust_skips"], (TiState::Skipped, 1), "{db:?}: the Rust skip outcome");
        assert_eq!(run, RunState::Failed, "{db:?}: `no_skip_code` failed; skips are not failures");
        let p = registry().pipeline("skips").expect("pipeline");
        let runs = store.runs(p.id, 10).await.expect("runs");
        let tis = store.task_instances(runs[0].id).await.expect("tis");
        let rust_skip = tis.iter().find(|t| t.task_id == "rust_skips").expect("rust_skips");
        assert_eq!(rust_skip.error, None, "{db:?}: a skip is not an error");
        let log = store.logs(rust_skip.id, 1).await.expect("log");
        assert!(log.iter().any(|l| l.contains("Skipped: nothing new to do")), "{db:?}: the reason is logged: {log:?}");
    }
}

#[tokio::test]
async fn a_shell_branch_skips_the_targets_its_last_line_leaves_out() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let (states, run) = run_to_end(&store, "shell_branch").await;
        assert_eq!(state(&states, "pick"), TiState::Success, "{db:?}");
        assert_eq!(state(&states, "right"), TiState::Success, "{db:?}: the chosen target runs");
        assert_eq!(state(&states, "left"), TiState::Skipped, "{db:?}: the other is skipped");
        assert_eq!(state(&states, "after_left"), TiState::Skipped, "{db:?}: the skip cascades");
        assert_eq!(state(&states, "join"), TiState::Success, "{db:?}: none_failed_min_one_success joins");
        assert_eq!(run, RunState::Success, "{db:?}");
    }
}

#[tokio::test]
async fn a_task_whose_upstreams_depend_on_each_other_waits_for_both() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let (states, run) = run_to_end(&store, "two_upstreams").await;
        assert_eq!(state(&states, "report"), TiState::Skipped, "{db:?}");
        assert_eq!(state(&states, "note"), TiState::Success, "{db:?}");
        assert_eq!(run, RunState::Success, "{db:?}");
    }
}

#[tokio::test]
async fn a_rust_branch_runs_only_its_choice() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let (states, run) = run_to_end(&store, "rust_branch").await;
        assert_eq!(state(&states, "left"), TiState::Success, "{db:?}");
        assert_eq!(state(&states, "right"), TiState::Skipped, "{db:?}");
        assert_eq!(run, RunState::Success, "{db:?}");
    }
}

#[tokio::test]
async fn a_branch_naming_a_task_outside_its_list_fails() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let (states, run) = run_to_end(&store, "stray_branch").await;
        assert_eq!(states["pick"].0, TiState::Failed, "{db:?}");
        assert_eq!(state(&states, "left"), TiState::UpstreamFailed, "{db:?}");
        assert_eq!(run, RunState::Failed, "{db:?}");
        let p = registry().pipeline("stray_branch").expect("pipeline");
        let runs = store.runs(p.id, 10).await.expect("runs");
        let tis = store.task_instances(runs[0].id).await.expect("tis");
        let error = tis.iter().find(|t| t.task_id == "pick").and_then(|t| t.error.clone()).unwrap_or_default();
        assert!(error.contains("chose `nowhere`, which is not one of its branch targets (`left`)"), "{db:?}: {error}");
    }
}
