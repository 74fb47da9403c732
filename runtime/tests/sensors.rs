//! Sensors, on SQLite and PostgreSQL: a "not yet" in `reschedule` mode ends the try as
//! `up_for_reschedule`, holding no worker or pool slot, and the scheduler's timer queues the
//! next poke; past the sensor's timeout it fails, or skips with `soft_fail`. In `poke` mode the
//! try keeps its slot and pokes again itself. Time is the store's manual clock; the commands
//! run for real.

mod support;

use sluice_runtime::rules::{RunState, TiState};
use sluice_runtime::scheduler::Scheduler;
use sluice_runtime::spec::*;
use sluice_runtime::store::{Queued, Store};
use sluice_runtime::worker::Worker;
use sluice_runtime::{Registry, TaskError, TaskFuture, TaskInput};
use std::sync::{Arc, LazyLock};
use support::*;

const fn sensor(mode: SensorMode, timeout_secs: u64, soft_fail: bool) -> Option<SensorSpec> {
    Some(SensorSpec { poke_interval_secs: 30, timeout_secs, mode, soft_fail, not_ready_exit_code: 100 })
}

/// Not ready at the first poke (which leaves the file `name` under the run's `dir` param),
/// ready at the next.
const SECOND_POKE_READY: &str =
    "test -e {{ params.dir }}/{{ task_id }} || { touch {{ params.dir }}/{{ task_id }}; exit 100; }";

const fn shell(id: &'static str, command: &'static str) -> TaskSpec {
    TaskSpec { kind: TaskKind::shell(command), pool: "gate", ..task(id, &[]) }
}

static DIR_PARAM: [ParamSpec; 1] =
    [ParamSpec { name: "dir", ty: ValueType::String, default_json: None, description: "" }];

static GATE: [PoolSpec; 1] = [PoolSpec { name: "gate", slots: 3, description: "" }];

static PIPELINES: LazyLock<Vec<PipelineSpec>> = LazyLock::new(|| {
    let with_params = |p: PipelineSpec| PipelineSpec { params: &DIR_PARAM, ..p };
    vec![
        with_params(graphed(pipeline(
            "gate",
            Schedule::Manual,
            &const {
                [
                    TaskSpec {
                        sensor: sensor(SensorMode::Reschedule, 3600, false),
                        priority_weight: 10,
                        retry: RetryPolicy {
                            retries: 0,
                            retry_delay_secs: 0,
                            exponential_backoff: false,
                            max_retry_delay_secs: None,
                        },
                        ..shell("wait_for_file", SECOND_POKE_READY)
                    },
                    shell("a", "true"),
                    shell("b", "true"),
                    shell("c", "true"),
                    TaskSpec { depends_on: &["wait_for_file"], ..shell("after", "true") },
                ]
            },
        ))),
        with_params(graphed(pipeline(
            "timeouts",
            Schedule::Manual,
            &const {
                [
                    TaskSpec { sensor: sensor(SensorMode::Reschedule, 60, false), ..shell("hard", "exit 100") },
                    TaskSpec { sensor: sensor(SensorMode::Reschedule, 60, true), ..shell("soft", "exit 100") },
                    TaskSpec { depends_on: &["soft"], ..shell("below_soft", "true") },
                    TaskSpec {
                        sensor: sensor(SensorMode::Reschedule, 3600, false),
                        kind: TaskKind::Rust { path: "test" },
                        ..task("rust_sensor", &[])
                    },
                ]
            },
        ))),
        with_params(graphed(pipeline(
            "poking",
            Schedule::Manual,
            &const {
                [
                    TaskSpec {
                        sensor: Some(SensorSpec {
                            poke_interval_secs: 1,
                            timeout_secs: 60,
                            mode: SensorMode::Poke,
                            soft_fail: false,
                            not_ready_exit_code: 100,
                        }),
                        ..shell("poker", SECOND_POKE_READY)
                    },
                    TaskSpec {
                        sensor: Some(SensorSpec {
                            poke_interval_secs: 1,
                            timeout_secs: 1,
                            mode: SensorMode::Poke,
                            soft_fail: true,
                            not_ready_exit_code: 100,
                        }),
                        ..shell("never", "exit 100")
                    },
                ]
            },
        ))),
    ]
});

/// The Rust sensor of `timeouts`: not ready until its second try.
fn dispatch<'a>(pipeline: &str, task: &str, input: &'a TaskInput) -> Option<TaskFuture<'a>> {
    match (pipeline, task) {
        ("timeouts", "rust_sensor") => Some(Box::pin(async move {
            if input.run.try_number < 2 {
                Err(TaskError::not_ready("no data yet"))
            } else {
                Ok(serde_json::Value::Null)
            }
        })),
        _ => None,
    }
}

fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
        source: "test.yaml",
        deployment: &DEPLOYMENT,
        connections: &[],
        pools: &GATE,
        datasets: &[],
        pipelines: &PIPELINES[..],
        sources: &[],
        python_context: "",
        dispatch,
    });
    &REGISTRY
}

struct Bench {
    store: Store,
    clock: Arc<sluice_runtime::clock::ManualClock>,
    collect: Arc<Collect>,
    scheduler: Scheduler,
    worker: Worker,
    run_pk: i64,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start(db: &Db, pipeline: &str) -> Bench {
        let (store, clock) = store(db).await;
        store.sync_pipelines(registry()).await.expect("sync");
        let p = registry().pipeline(pipeline).expect("pipeline");
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = serde_json::json!({ "dir": dir.path().display().to_string() });
        let run = sluice_runtime::scheduler::trigger(&store, p, conf, None).await.expect("trigger");
        let collect = Arc::new(Collect::default());
        let scheduler = Scheduler::new(registry(), store.clone(), collect.clone());
        let worker = Worker::new(registry(), store.clone(), collect.clone(), "w1").without_notifier();
        Bench { store, clock, collect, scheduler, worker, run_pk: run.id, _dir: dir }
    }

    async fn state(&self, task: &str) -> (TiState, i64) {
        let tis = self.store.task_instances(self.run_pk).await.expect("task instances");
        let ti = tis.iter().find(|t| t.task_id == task).unwrap_or_else(|| panic!("no task instance {task}"));
        (ti.state, ti.try_number)
    }

    async fn ti_id(&self, task: &str) -> i64 {
        let tis = self.store.task_instances(self.run_pk).await.expect("task instances");
        tis.iter().find(|t| t.task_id == task).map(|t| t.id).expect("task instance")
    }

    /// Runs everything queued (and what that queues) until nothing is queued.
    async fn drain(&self) {
        loop {
            let queued = self.collect.take();
            if queued.is_empty() {
                return;
            }
            for q in queued {
                self.worker.run_task(q.ti_id).await.expect("run task");
            }
        }
    }

    async fn run_state(&self) -> RunState {
        self.store.run(self.run_pk).await.expect("run").state
    }
}

#[tokio::test]
async fn a_rescheduled_sensor_holds_no_slot_while_three_others_run() {
    for db in &BACKENDS {
        let bench = Bench::start(db, "gate").await;
        bench.scheduler.tick().await.expect("tick");
        let first = bench.collect.take();
        assert_eq!(first.len(), 3, "{db:?}: the pool has three slots: {first:?}");
        let sensor = bench.ti_id("wait_for_file").await;
        assert!(first.iter().any(|q| q.ti_id == sensor), "{db:?}: the sensor goes first (highest priority)");
        // The first poke: not yet. The try ends and hands its slot to the task that waited.
        bench.worker.run_task(sensor).await.expect("poke");
        assert_eq!(bench.state("wait_for_file").await, (TiState::UpForReschedule, 1), "{db:?}");
        let others: Vec<Queued> = first.into_iter().filter(|q| q.ti_id != sensor).chain(bench.collect.take()).collect();
        assert_eq!(others.len(), 3, "{db:?}: a, b and c are all queued while the sensor waits: {others:?}");
        // All three hold their slots at once: the pool is full, and the sensor is not in it.
        let claimed =
            bench.worker.claim_many(&others.iter().map(|q| q.ti_id).collect::<Vec<_>>()).await.expect("claim");
        assert_eq!(claimed.len(), 3, "{db:?}");
        for task in ["a", "b", "c"] {
            assert_eq!(bench.state(task).await.0, TiState::Running, "{db:?}: {task}");
        }
        assert_eq!(bench.state("wait_for_file").await.0, TiState::UpForReschedule, "{db:?}");
        for claimed in &claimed {
            bench.worker.run_claimed(claimed).await.expect("run");
        }
        // Not due yet: the next poke waits for its interval on the scheduler's timer.
        bench.scheduler.tick().await.expect("tick");
        assert!(bench.collect.take().is_empty(), "{db:?}: the poke is not due before its interval");
        bench.clock.advance_secs(30);
        bench.scheduler.tick().await.expect("tick");
        bench.drain().await;
        assert_eq!(bench.state("wait_for_file").await, (TiState::Success, 2), "{db:?}: the second poke holds");
        assert_eq!(bench.state("after").await.0, TiState::Success, "{db:?}");
        assert_eq!(bench.run_state().await, RunState::Success, "{db:?}");
        let tis = bench.store.task_instances(bench.run_pk).await.expect("tis");
        let row = tis.iter().find(|t| t.id == sensor).expect("sensor row");
        let tries = bench.store.tries(row).await.expect("tries");
        let states: Vec<&str> = tries.iter().map(|t| t.state.as_str()).collect();
        assert_eq!(states, ["up_for_reschedule", "success"], "{db:?}: each poke is a try of its own");
    }
}

#[tokio::test]
async fn past_its_timeout_a_sensor_fails_or_with_soft_fail_skips() {
    for db in &BACKENDS {
        let bench = Bench::start(db, "timeouts").await;
        bench.scheduler.tick().await.expect("tick");
        bench.drain().await;
        for task in ["hard", "soft", "rust_sensor"] {
            assert_eq!(bench.state(task).await, (TiState::UpForReschedule, 1), "{db:?}: {task}");
        }
        bench.clock.advance_secs(30);
        bench.scheduler.tick().await.expect("tick");
        bench.drain().await;
        assert_eq!(bench.state("rust_sensor").await, (TiState::Success, 2), "{db:?}: the Rust sensor's second poke");
        assert_eq!(bench.state("hard").await, (TiState::UpForReschedule, 2), "{db:?}: 30s of 60");
        bench.clock.advance_secs(30);
        bench.scheduler.tick().await.expect("tick");
        bench.drain().await;
        let hard = bench.store.task_instances(bench.run_pk).await.expect("tis");
        let hard = hard.iter().find(|t| t.task_id == "hard").expect("hard");
        assert_eq!((hard.state, hard.try_number), (TiState::Failed, 3), "{db:?}");
        let error = hard.error.clone().unwrap_or_default();
        assert!(error.starts_with("the sensor timed out after 60s"), "{db:?}: {error}");
        assert_eq!(bench.state("soft").await.0, TiState::Skipped, "{db:?}: soft_fail skips");
        assert_eq!(bench.state("below_soft").await.0, TiState::Skipped, "{db:?}");
        assert_eq!(bench.run_state().await, RunState::Failed, "{db:?}: `hard` failed");
    }
}

#[tokio::test]
async fn a_poking_sensor_keeps_its_try_and_pokes_until_ready_or_timed_out() {
    for db in &BACKENDS {
        let bench = Bench::start(db, "poking").await;
        bench.scheduler.tick().await.expect("tick");
        bench.drain().await;
        assert_eq!(bench.state("poker").await, (TiState::Success, 1), "{db:?}: two pokes, one try");
        let log = bench.store.logs(bench.ti_id("poker").await, 1).await.expect("log");
        assert!(
            log.iter().any(|l| l.contains("Poke 1: the command exited with status 100: not yet")),
            "{db:?}: {log:?}"
        );
        assert_eq!(bench.state("never").await, (TiState::Skipped, 1), "{db:?}: soft_fail after its timeout");
        assert_eq!(bench.run_state().await, RunState::Success, "{db:?}");
    }
}
