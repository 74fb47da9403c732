//! The code build.rs generated from pipelines.yaml, exercised through the registry the
//! runtime receives: static specs match the YAML, and the typed dispatch runs task
//! bodies with their typed contexts.

use sluice::REGISTRY;
use sluice_runtime::spec::{Schedule, TaskKind, TriggerRule};
use sluice_runtime::{Connection, TaskInput};
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Runs a future that never waits on I/O (our task bodies here) to completion.
fn run_now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[test]
fn registry_carries_the_mlsp_pipelines() {
    let ids: Vec<&str> = REGISTRY.pipelines.iter().map(|p| p.id).collect();
    assert_eq!(ids, ["example_dag", "games_report", "ml_model_training", "sports_data_scraper"]);

    let example = REGISTRY.pipeline("example_dag").expect("example_dag");
    assert_eq!(example.schedule, Schedule::Manual);
    assert!(example.paused_at_creation);
    assert!(matches!(example.task("print_date").map(|t| &t.kind), Some(TaskKind::Shell { .. })));

    let scraper = REGISTRY.pipeline("sports_data_scraper").expect("scraper");
    assert_eq!(scraper.schedule, Schedule::Cron("0 6 * * *"));
    assert_eq!(scraper.timezone, "UTC");
    let validate = scraper.task("validate").expect("validate");
    assert_eq!(validate.depends_on, ["scrape_nfl", "scrape_nba", "scrape_mlb"]);
    assert_eq!(validate.trigger_rule, TriggerRule::AllSuccess);
    assert_eq!(validate.retry.retries, 2, "default_args apply");
    assert_eq!(validate.retry.max_retry_delay_secs, Some(1800));
    assert_eq!(scraper.task("scrape_nfl").map(|t| t.pool), Some("scrapers"));

    let training = REGISTRY.pipeline("ml_model_training").expect("training");
    assert_eq!(training.schedule, Schedule::Cron("0 2 * * 0"));
    let order: Vec<&str> = training.tasks.iter().map(|t| t.id).collect();
    assert_eq!(order, ["prepare_data", "train_nfl", "train_nba", "train_mlb", "evaluate", "register_mlflow", "deploy"]);
    assert_eq!(training.task("train_nba").map(|t| t.queue), Some("ml"));

    let ids: Vec<&str> = REGISTRY.connections.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [
            "alerts_webhook",
            "backend_api",
            "mlflow_tracking",
            "postgres_mlflow",
            "postgres_mlsp",
            "redis_default",
            "sports_feed"
        ]
    );
    let load = REGISTRY.pipeline("sports_data_scraper").and_then(|p| p.task("load")).expect("load");
    assert_eq!((load.sla_secs, load.on_failure), (Some(7200), &["alerts_webhook"][..]), "alerts from default_args");
    assert_eq!(training.on_success, ["alerts_webhook"]);
    let mlsp = REGISTRY.connections.iter().find(|c| c.id == "postgres_mlsp").expect("postgres_mlsp");
    assert_eq!(mlsp.standalone_uri, Some("sqlite://mlsp.sqlite"));
    assert_eq!(REGISTRY.deployment.project, "mlsp");
    assert_eq!(REGISTRY.deployment.broker_db, 1);
    assert_eq!(REGISTRY.deployment.rate_limit_db, 2);

    // `games_report` runs on the `games` dataset that the scraper's `load` produces, branches,
    // and writes its report in Python (the context module travels with the binary).
    let report = REGISTRY.pipeline("games_report").expect("games_report");
    assert_eq!(report.schedule, Schedule::Datasets(&["games"]));
    assert_eq!(load.produces, ["games"]);
    assert_eq!(REGISTRY.datasets.iter().map(|d| d.id).collect::<Vec<_>>(), ["games"]);
    let enough = report.task("enough_games").expect("enough_games");
    assert_eq!(enough.branch, ["write_report", "not_enough_games"]);
    let write = report.task("write_report").expect("write_report");
    assert!(
        matches!(write.kind, TaskKind::Python { module: "tasks/games_report.py", function: "write_report" }),
        "{:?}",
        write.kind
    );
    assert!(REGISTRY.python_context.contains("class GamesReportWriteReportContext(TypedDict):"));
    assert_eq!(REGISTRY.deployment.python, "python3");
}

#[test]
fn dispatch_runs_a_rust_task_with_typed_params() {
    let input = TaskInput {
        params: serde_json::json!({"greeting": "Hi", "pause_secs": 0}),
        run: sluice_runtime::RunInfo { run_id: "manual__1".into(), ..Default::default() },
        ..Default::default()
    };
    let future = REGISTRY.run_rust("example_dag", "print_hello", &input).expect("a rust task");
    let outputs = run_now(future).expect("print_hello succeeds");
    assert_eq!(outputs, serde_json::json!({"message": "Hi (run manual__1)"}));
    assert_eq!(input.log.lines(), ["Hi (run manual__1)"]);
}

#[test]
fn dispatch_reads_typed_upstream_outputs() {
    let mut input = TaskInput { params: serde_json::json!({"min_accuracy": 0.5}), ..Default::default() };
    for (task, accuracy) in [("train_nfl", 0.55), ("train_nba", 0.7), ("train_mlb", 0.6)] {
        input
            .upstream_outputs
            .insert(task.into(), serde_json::json!({"model_uri": format!("runs:/{task}"), "accuracy": accuracy}));
    }
    let outputs = run_now(REGISTRY.run_rust("ml_model_training", "evaluate", &input).expect("rust task"))
        .expect("evaluate succeeds");
    assert_eq!(outputs, serde_json::json!({"best_model": "runs:/train_nba", "accuracy": 0.7, "passed": true}));

    // A league below `min_accuracy` fails the run.
    input.upstream_outputs.insert("train_nfl".into(), serde_json::json!({"model_uri": "runs:/nfl", "accuracy": 0.4}));
    let error = run_now(REGISTRY.run_rust("ml_model_training", "evaluate", &input).expect("rust task"))
        .expect_err("below the threshold");
    assert!(error.message.contains("accuracy below min_accuracy 0.5: nfl (0.400)"), "{error}");

    // An upstream output of the wrong type is a task failure with a message, not a panic.
    input.upstream_outputs.insert("train_nba".into(), serde_json::json!({"model_uri": 7, "accuracy": 0.1}));
    let error = run_now(REGISTRY.run_rust("ml_model_training", "evaluate", &input).expect("rust task"))
        .expect_err("mistyped upstream output");
    assert!(error.message.contains("outputs of upstream task `train_nba` do not match"), "{error}");
}

#[test]
fn dispatch_provides_only_declared_connections() {
    let mut input = TaskInput::default();
    let error = run_now(REGISTRY.run_rust("sports_data_scraper", "scrape_nfl", &input).expect("rust task"))
        .expect_err("connection missing");
    assert!(error.message.contains("connection `sports_feed`"), "{error}");

    // Declared, it is the one the body reads from (the sample feed's success is in
    // tests/sample_pipelines.rs, which gives the run its own SLUICE_HOME).
    input.connections.insert(
        "sports_feed".into(),
        Connection { id: "sports_feed".into(), conn_type: "redis".into(), ..Default::default() },
    );
    let error = run_now(REGISTRY.run_rust("sports_data_scraper", "scrape_nfl", &input).expect("rust task"))
        .expect_err("not a data source");
    assert!(error.message.contains("reading data needs a file or http connection"), "{error}");
}

#[test]
fn dispatch_knows_only_rust_tasks() {
    let input = TaskInput::default();
    assert!(REGISTRY.run_rust("example_dag", "print_date", &input).is_none(), "a shell task");
    assert!(REGISTRY.run_rust("example_dag", "nope", &input).is_none());
    assert!(REGISTRY.run_rust("nope", "print_hello", &input).is_none());
    // Every Rust task of every pipeline is found (the table's order is the search's).
    for pipeline in REGISTRY.pipelines {
        for task in pipeline.tasks.iter().filter(|t| matches!(t.kind, TaskKind::Rust { .. })) {
            assert!(REGISTRY.run_rust(pipeline.id, task.id, &input).is_some(), "{}.{}", pipeline.id, task.id);
        }
    }
}
