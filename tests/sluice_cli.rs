//! The `sluice` binary as a user runs it: each test gets its own SLUICE_HOME (the
//! standalone SQLite file lives there), so nothing leaks between tests.

use sluice_testkit::process::free_port;
use sluice_testkit::standalone::http_get;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sluice(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_HOME", home)
        .env_remove("SLUICE_DATABASE_URL")
        .env_remove("SLUICE_DATABASE_DIRECT_URL")
        .output()
        .expect("sluice runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A failure: exit code 1 and one sentence on stderr, no backtrace.
fn fails(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: ") && stderr.lines().count() == 1, "one sentence: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn dags_list_as_table_and_json() {
    let home = tempfile::tempdir().expect("home");
    let table = ok(&sluice(home.path(), &["dags", "list"]));
    assert!(table.lines().next().is_some_and(|h| h.starts_with("dag_id")), "{table}");
    assert!(table.contains("sports_data_scraper | 0 6 * * *"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&sluice(home.path(), &["dags", "list", "-o", "json"]))).expect("json");
    let ids: Vec<&str> = json.as_array().expect("list").iter().filter_map(|d| d["dag_id"].as_str()).collect();
    assert_eq!(ids, ["example_dag", "games_report", "ml_model_training", "sports_data_scraper"]);
    assert!(json.as_array().expect("list").iter().all(|d| d["is_paused"] == true), "paused at creation");
}

#[test]
fn dags_test_runs_a_pipeline_in_process() {
    let home = tempfile::tempdir().expect("home");
    let out = ok(&sluice(home.path(), &["dags", "test", "example_dag", "2024-01-01"]));
    assert!(out.contains("[print_hello] Hello from Sluice (run manual__2024-01-01T00:00:00"), "{out}");
    assert!(out.contains("[print_date] Hello from Sluice on 2024-01-01"), "templated with ds: {out}");
    assert!(out.contains("[print_date] success (try 1)"), "{out}");
    assert!(out.trim_end().ends_with(": success"), "{out}");
    assert!(!home.path().join("sluice.sqlite").exists(), "no database unless one is configured");
}

#[test]
fn tasks_test_runs_one_task_and_rejects_unknown_ones() {
    let home = tempfile::tempdir().expect("home");
    let out = ok(&sluice(home.path(), &["tasks", "test", "example_dag", "print_date", "2024-03-05"]));
    assert!(out.contains("on 2024-03-05"), "{out}");
    let err = fails(&sluice(home.path(), &["tasks", "test", "example_dag", "nope"]));
    assert!(err.contains("has no task `nope`") && err.contains("print_hello"), "{err}");
    let err = fails(&sluice(home.path(), &["dags", "test", "no_such_dag"]));
    assert!(err.contains("no pipeline `no_such_dag`"), "{err}");
}

#[test]
fn trigger_checks_conf_and_records_a_run() {
    let home = tempfile::tempdir().expect("home");
    let err = fails(&sluice(home.path(), &["dags", "trigger", "example_dag", "--conf", r#"{"greeting": 5}"#]));
    assert!(err.contains("param `greeting` of pipeline `example_dag` must be of type string"), "{err}");
    let err = fails(&sluice(home.path(), &["dags", "trigger", "example_dag", "--conf", "{not json"]));
    assert!(err.contains("--conf is not JSON"), "{err}");
    ok(&sluice(
        home.path(),
        &["dags", "trigger", "example_dag", "--conf", r#"{"greeting": "hi"}"#, "-e", "2024-02-01"],
    ));
    let runs: serde_json::Value =
        serde_json::from_str(&ok(&sluice(home.path(), &["dags", "list-runs", "example_dag", "-o", "json"])))
            .expect("json");
    assert_eq!(runs[0]["run_id"], "manual__2024-02-01T00:00:00+00:00");
    assert_eq!(runs[0]["state"], "queued");
    let state = ok(&sluice(home.path(), &["dags", "state", "example_dag", "2024-02-01"]));
    assert_eq!(state.trim(), "queued");
    let err = fails(&sluice(home.path(), &["dags", "trigger", "example_dag", "-e", "2024-02-01"]));
    assert!(err.contains("already has run"), "{err}");
}

#[test]
fn db_migrate_is_idempotent_and_pause_toggles() {
    let home = tempfile::tempdir().expect("home");
    let first = ok(&sluice(home.path(), &["db", "migrate"]));
    assert!(first.trim().ends_with("migration(s) applied") && !first.starts_with('0'), "{first}");
    assert_eq!(ok(&sluice(home.path(), &["db", "migrate"])).trim(), "0 migration(s) applied");
    ok(&sluice(home.path(), &["db", "check"]));
    ok(&sluice(home.path(), &["dags", "unpause", "example_dag"]));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&sluice(home.path(), &["dags", "list", "-o", "json"]))).expect("json");
    assert_eq!(json[0]["is_paused"], false);
    fails(&sluice(home.path(), &["dags", "pause", "nope"]));
}

#[test]
fn next_execution_follows_the_schedule() {
    let home = tempfile::tempdir().expect("home");
    let out = ok(&sluice(home.path(), &["dags", "next-execution", "sports_data_scraper", "-n", "2"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l.ends_with("T06:00:00+00:00")), "{out}");
    assert_eq!(ok(&sluice(home.path(), &["dags", "next-execution", "example_dag"])).trim(), "None");
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().expect("home");
    let out = sluice(home.path(), &["nope"]);
    assert_eq!(out.status.code(), Some(2));
    let help = ok(&sluice(home.path(), &["dags", "--help"]));
    assert!(help.contains("trigger") && help.contains("next-execution"), "{help}");
}

#[test]
fn standalone_serves_health_and_runs_a_triggered_pipeline() {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("standalone")
        .env("SLUICE_HOME", home.path())
        .env("SLUICE_WEBSERVER_PORT", port.to_string())
        .env_remove("SLUICE_DATABASE_URL")
        .env_remove("SLUICE_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("standalone starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        if let Some(body) = http_get(port, "/health").filter(|b| b.starts_with("HTTP/1.1 200")) {
            break body;
        }
        assert!(Instant::now() < deadline, "no /health within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(health.contains(r#""metadatabase":{"status":"healthy"}"#), "{health}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let scheduler_healthy = |response: &str| {
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        json["scheduler"]["status"] == "healthy" && json["scheduler"]["latest_scheduler_heartbeat"].is_string()
    };
    while !http_get(port, "/health").is_some_and(|b| scheduler_healthy(&b)) {
        assert!(Instant::now() < deadline, "the scheduler reports no heartbeat: {:?}", http_get(port, "/health"));
        std::thread::sleep(Duration::from_millis(100));
    }

    // A trigger from another process: the run waits while the pipeline is paused.
    ok(&sluice(home.path(), &["dags", "trigger", "example_dag", "-e", "2024-01-02"]));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(ok(&sluice(home.path(), &["dags", "state", "example_dag", "2024-01-02"])).trim(), "queued");
    ok(&sluice(home.path(), &["dags", "unpause", "example_dag"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = ok(&sluice(home.path(), &["dags", "state", "example_dag", "2024-01-02"]));
        if state.trim() == "success" {
            break;
        }
        assert!(state.trim() != "failed", "the run failed");
        assert!(Instant::now() < deadline, "the run did not finish in 20 s (state {state})");
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGTERM: a clean stop.
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    let status = child.wait().expect("standalone exits");
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().expect("stdout"), &mut stdout).expect("read stdout");
    assert!(status.success(), "exit status {status}; stdout:\n{stdout}");
    assert!(
        stdout.contains("admin user `admin` created with password "),
        "a generated password is shown once: {stdout}"
    );
}

/// A tiny HTTP server answering `200` with a created model version (MLflow's
/// `model-versions/create` answer) to everything, standing in for MLflow and the backend
/// API; returns its base URL.
fn http_ok_server() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            let body = r#"{"model_version": {"version": "1"}}"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// `sluice` with the http connections pointed at a local server through Airflow-style
/// `AIRFLOW_CONN_<ID>` variables.
fn sluice_with_services(home: &Path, base: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_HOME", home)
        .env_remove("SLUICE_DATABASE_URL")
        .env("AIRFLOW_CONN_MLFLOW_TRACKING", base)
        .env("AIRFLOW_CONN_BACKEND_API", base)
        .env("MLSP_DB_PASSWORD", "not-used-by-the-sample-bodies-yet")
        .output()
        .expect("sluice runs")
}

#[test]
fn backfill_runs_each_interval_and_tasks_can_be_cleared_and_marked() {
    let home = tempfile::tempdir().expect("home");
    let base = http_ok_server();
    // ml_model_training is weekly on Sunday 02:00 UTC: two Sundays in this range.
    let args = ["dags", "backfill", "ml_model_training", "-s", "2024-01-06", "-e", "2024-01-15"];
    let stdout = ok(&sluice_with_services(home.path(), &base, &args));
    assert!(stdout.contains("run backfill__2024-01-07T02:00:00+00:00: success"), "{stdout}");
    assert!(stdout.contains("run backfill__2024-01-14T02:00:00+00:00: success"), "{stdout}");
    assert!(stdout.contains("[register_mlflow] success (try 1)"), "{stdout}");
    let runs: serde_json::Value =
        serde_json::from_str(&ok(&sluice(home.path(), &["dags", "list-runs", "ml_model_training", "-o", "json"])))
            .expect("json");
    assert_eq!(runs.as_array().map(Vec::len), Some(2));
    assert_eq!(runs[0]["run_type"], "backfill");

    let run = "backfill__2024-01-07T02:00:00+00:00";
    assert_eq!(ok(&sluice(home.path(), &["tasks", "state", "ml_model_training", "evaluate", run])).trim(), "success");
    let cleared =
        ok(&sluice(home.path(), &["tasks", "clear", "ml_model_training", "evaluate", "--run", run, "--downstream"]));
    assert!(cleared.contains("evaluate, register_mlflow, deploy"), "{cleared}");
    assert_eq!(ok(&sluice(home.path(), &["tasks", "state", "ml_model_training", "evaluate", run])).trim(), "none");
    ok(&sluice(home.path(), &["tasks", "mark", "ml_model_training", "evaluate", "--run", run, "--state", "success"]));
    assert_eq!(ok(&sluice(home.path(), &["tasks", "state", "ml_model_training", "evaluate", run])).trim(), "success");
    let err = fails(&sluice(
        home.path(),
        &["tasks", "mark", "ml_model_training", "evaluate", "--run", run, "--state", "green"],
    ));
    assert!(err.contains("use success or failed"), "{err}");
    let err = fails(&sluice(home.path(), &["dags", "backfill", "example_dag", "-s", "2024-01-01", "-e", "2024-01-02"]));
    assert!(err.contains("no schedule"), "{err}");
}

#[test]
fn db_clean_deletes_old_finished_runs() {
    let home = tempfile::tempdir().expect("home");
    let base = http_ok_server();
    ok(&sluice_with_services(
        home.path(),
        &base,
        &["dags", "backfill", "ml_model_training", "-s", "2024-01-06", "-e", "2024-01-08"],
    ));
    let dry = ok(&sluice(home.path(), &["db", "clean", "--clean-before-timestamp", "2024-02-01", "--dry-run"]));
    assert!(dry.contains("1 run(s) would be deleted"), "{dry}");
    let done = ok(&sluice(home.path(), &["db", "clean", "--clean-before-timestamp", "2024-02-01"]));
    assert!(done.contains("1 run(s) deleted"), "{done}");
    let runs = ok(&sluice(home.path(), &["dags", "list-runs", "ml_model_training", "-o", "json"]));
    assert_eq!(runs.trim(), "[]");
    fails(&sluice(home.path(), &["db", "clean", "--clean-before-timestamp", "last week"]));
}
