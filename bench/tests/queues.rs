//! Task queues in distributed mode: a worker takes tasks of the queues it listens on and
//! no others (`sluice worker --queues a,b`), as Celery workers of the Airflow deployment.

use sluice_testkit::cluster::Cluster;
use sluice_testkit::process::Env;
use sluice_testkit::redis::Persistence;
use sluice_testkit::report;
use std::path::Path;
use std::time::Duration;

fn worker(queues: &str) -> Vec<String> {
    ["worker", "--queues", queues, "--concurrency", "4"].map(String::from).to_vec()
}

#[test]
fn workers_take_only_the_queues_they_listen_on() {
    let mut cluster =
        Cluster::start(Path::new(env!("CARGO_BIN_EXE_sluice-bench")), Persistence::AsGenerated, Env::new());
    cluster.spawn("scheduler", "scheduler-1");
    cluster.spawn_with("worker", "worker-default", &worker("default"));
    // `chain5` runs on `default`; `minutely`'s task is routed to `ml`.
    let chain = cluster.trigger("chain5", "{}");
    assert_eq!(cluster.wait_for_run("chain5", &chain, Duration::from_secs(30)), "success", "{}", cluster.logs());
    let ml_run = cluster.trigger("minutely", "{}");
    std::thread::sleep(Duration::from_secs(2));
    let waiting = cluster.task_states("minutely", &ml_run);
    assert_eq!(waiting, [("tick".to_string(), "queued".to_string(), 0)], "no `ml` worker yet");
    cluster.spawn_with("worker", "worker-ml", &worker("ml"));
    assert_eq!(cluster.wait_for_run("minutely", &ml_run, Duration::from_secs(30)), "success", "{}", cluster.logs());
    let by = |dag: &str| {
        cluster.sql(&format!(
            "SELECT DISTINCT t.worker FROM task_tries t JOIN task_instances ti ON ti.id = t.ti_id \
             WHERE ti.pipeline_id = '{dag}'"
        ))
    };
    let (default_workers, ml_workers) = (by("chain5"), by("minutely"));
    let took = cluster.sql("SELECT (end_date - start_date) / 1000 FROM runs WHERE pipeline_id = 'chain5'");
    report(&format!(
        "queues: chain5 ran on {} (5 tasks in {} ms from start to end), minutely's ml task on {}",
        default_workers.trim(),
        took.trim(),
        ml_workers.trim()
    ));
    assert!(default_workers.lines().all(|w| w.starts_with("worker-default-")), "{default_workers}");
    assert!(ml_workers.lines().all(|w| w.starts_with("worker-ml-")), "{ml_workers}");
}
