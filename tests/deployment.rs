//! The generated deployment, proven without a Docker engine: every service of
//! `generated/docker-compose.yml` runs as a local process with that service's command
//! and environment (host names mapped to loopback), against a real PostgreSQL, the real
//! PgBouncer on the generated `pgbouncer.ini` and a real `redis-server` on the generated
//! `redis.conf`; two schedulers and three workers. The three sample pipelines and
//! `example_dag` are triggered through the CLI and must all succeed.
//!
//! What the compose deployment would get from outside services is given the way an
//! operator gives it, as connection variables: the league feed is this repository's
//! sample data served over HTTP, the MLSP database a fresh PostgreSQL database, the
//! MLflow registry and the alert receiver folders on the shared volume.

use sluice_testkit::cluster::Cluster;
use sluice_testkit::compose::Compose;
use sluice_testkit::database::{Database, psql_at, psql_on};
use sluice_testkit::pgbouncer::Bouncer;
use sluice_testkit::process::{Env, Service, free_port};
use sluice_testkit::redis::Persistence;
use sluice_testkit::report;
use std::path::Path;
use std::time::{Duration, Instant};

/// The sample feed (`<league>.csv`) over HTTP, as the backend would serve it.
fn serve_sample_feed(log: &Path) -> (Service, u16) {
    let games = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/games");
    let port = free_port();
    let args = [
        "-m".to_string(),
        "http.server".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--directory".into(),
        games.display().to_string(),
    ];
    let mut server = Service::spawn("feed", "python3", &args, &Env::new(), log);
    server.wait_for_port(port, Duration::from_secs(20));
    (server, port)
}

#[test]
fn the_generated_deployment_runs_every_sample_pipeline() {
    let started = Instant::now();
    let scratch = tempfile::tempdir().expect("scratch");
    let (_feed, feed_port) = serve_sample_feed(&scratch.path().join("feed.log"));
    let mlsp = Database::fresh("mlsp");
    let mut extra = Env::new();
    extra.insert("SLUICE_CONN_SPORTS_FEED".into(), format!("http://127.0.0.1:{feed_port}"));
    extra.insert("SLUICE_CONN_POSTGRES_MLSP".into(), mlsp.direct_url());
    let mut cluster = Cluster::start(Path::new(env!("CARGO_BIN_EXE_sluice")), Persistence::AsGenerated, extra);
    let home = cluster.home();
    cluster.add_env("SLUICE_CONN_MLFLOW_TRACKING", &format!("file://{}", home.join("mlflow").display()));
    cluster.add_env("SLUICE_CONN_ALERTS_WEBHOOK", &format!("file://{}", home.join("alerts").display()));
    cluster.start_webserver();
    for name in ["scheduler-1", "scheduler-2"] {
        cluster.spawn("scheduler", name);
    }
    for name in ["worker-1", "worker-2", "worker-3"] {
        cluster.spawn("worker", name);
    }

    let mut runs = Vec::new();
    for dag in ["example_dag", "sports_data_scraper"] {
        runs.push((dag, cluster.trigger(dag, "{}")));
    }
    for (dag, run) in &runs {
        let state = cluster.wait_for_run(dag, run, Duration::from_secs(120));
        assert_eq!(state, "success", "{dag} {run}: {:?}\n{}", cluster.task_states(dag, run), cluster.logs());
    }
    // Training reads the games the scraper loaded into the MLSP database.
    let run = cluster.trigger("ml_model_training", "{}");
    let state = cluster.wait_for_run("ml_model_training", &run, Duration::from_secs(180));
    assert_eq!(state, "success", "{:?}\n{}", cluster.task_states("ml_model_training", &run), cluster.logs());
    runs.push(("ml_model_training", run));

    // Every task ran exactly once.
    for (dag, run) in &runs {
        let tasks = cluster.task_states(dag, run);
        assert!(!tasks.is_empty(), "{dag} {run} has task instances");
        for (task, state, tries) in tasks {
            assert_eq!((state.as_str(), tries), ("success", 1), "{dag}.{task}");
        }
    }
    let workers = cluster.sql("SELECT COUNT(DISTINCT worker) FROM task_tries").trim().to_string();
    let games = psql_on(mlsp.name(), "SELECT COUNT(*) FROM games");
    report(&format!(
        "deployment: example_dag + 3 sample pipelines succeeded; {workers} worker(s) took tasks; {} games loaded; {:?}",
        games.trim(),
        started.elapsed()
    ));
    assert!(games.trim().parse::<i64>().is_ok_and(|n| n > 0), "games loaded into the MLSP database: {games}");
    assert!(home.join("mlflow/registered-models").is_dir(), "the model was registered on the shared volume");
    let health = http_get(cluster.web_port(), "/health");
    assert!(health.contains(r#""metadatabase":{"status":"healthy"}"#), "{health}");
    assert!(health.contains(r#""scheduler":{"latest_scheduler_heartbeat":"#), "{health}");
    assert!(health.ends_with(r#""status":"healthy"}}"#), "the scheduler is healthy: {health}");

    // `docker compose down`: SIGTERM to every service, each exits cleanly on its own.
    for service in &mut cluster.services {
        if service.status().is_some() {
            continue;
        }
        let status = service.terminate(Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} after SIGTERM: {status:?}\n{}",
            service.log_path().display(),
            service.log_tail(20)
        );
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    text
}

/// `sluice init` is the compose's one-shot service; a restart policy, a second `up` or an
/// operator may run it again, or twice at once: each run must succeed and leave one
/// schema, one admin and each pipeline once.
#[test]
fn init_is_safe_to_run_twice_and_concurrently() {
    let compose = Compose::load();
    let db = Database::fresh("init");
    let bouncer = Bouncer::start(&compose, &db);
    let logs = tempfile::tempdir().expect("logs");
    let fernet = std::process::Command::new(env!("CARGO_BIN_EXE_sluice")).args(["fernet", "generate"]).output();
    let fernet = String::from_utf8_lossy(&fernet.expect("fernet generate").stdout).trim().to_string();
    let env = Env::from([
        ("SLUICE_DATABASE_URL".into(), bouncer.url()),
        ("SLUICE_DATABASE_DIRECT_URL".into(), db.direct_url()),
        ("SLUICE_FERNET_KEY".into(), fernet),
        ("SLUICE_ADMIN_PASSWORD".into(), "init-test-password".into()),
        ("SLUICE_HOME".into(), logs.path().display().to_string()),
    ]);
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let spawn = |name: &str| Service::spawn(name, sluice, &["init"], &env, &logs.path().join(format!("{name}.log")));
    let mut together: Vec<Service> = (1..=3).map(|n| spawn(&format!("init-{n}"))).collect();
    for init in &mut together {
        let status = init.wait(Duration::from_secs(60));
        assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", init.log_tail(20));
    }
    let mut again = spawn("init-again");
    let status = again.wait(Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", again.log_tail(20));
    let count = |sql: &str| psql_at(&db.address(), db.name(), sql).expect("query").trim().to_string();
    let files = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres"))
        .expect("migrations")
        .count();
    assert_eq!(count("SELECT COUNT(*) FROM _sqlx_migrations"), files.to_string(), "every migration applied once");
    assert_eq!(count("SELECT COUNT(*) FROM users WHERE role = 'Admin'"), "1");
    assert_eq!(count("SELECT COUNT(*) FROM pipelines"), "4");
    assert_eq!(count("SELECT COUNT(DISTINCT conn_id) FROM connections"), count("SELECT COUNT(*) FROM connections"));
    report("init: 3 at once and a 4th after all succeeded; 1 schema, 1 admin, 4 pipelines");
}
