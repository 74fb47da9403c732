//! The sample pipelines doing their real work, as a user runs them: standalone (no
//! external service; the feed is the repository's `data/sample/games`, the database a
//! SQLite file under SLUICE_HOME), with a corrupted feed, with a demanding
//! `min_accuracy`, and with a real PostgreSQL where one is running.

use std::path::Path;
use std::process::{Command, Output};

/// `sluice` run from the repository root (where `data/sample` is), standalone, with its
/// own SLUICE_HOME and the extra environment `env`.
fn sluice(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SLUICE_HOME", home)
        .env_remove("SLUICE_DATABASE_URL")
        .env_remove("SLUICE_DATABASE_DIRECT_URL");
    for (name, _) in std::env::vars() {
        if name.starts_with("SLUICE_CONN_") || name.starts_with("AIRFLOW_CONN_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied()).output().expect("sluice runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}\n{}", out.status, text(out));
    text(out)
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failed run:\n{}", text(out));
    text(out)
}

/// Rows of a query on a SQLite file (the sqlite3 shell is not everywhere), through the
/// runtime's own helper.
fn sqlite_rows(file: &Path, sql: &str) -> Vec<serde_json::Value> {
    let conn = sluice_runtime::Connection {
        id: "check".into(),
        conn_type: "sqlite".into(),
        database: Some(file.display().to_string()),
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a tokio runtime");
    runtime.block_on(sluice_runtime::io::sql_query_json(&conn, sql)).expect("query")
}

#[test]
fn example_dag_succeeds_standalone() {
    let home = tempfile::tempdir().expect("home");
    let out = ok(&sluice(home.path(), &[], &["dags", "test", "example_dag", "2024-01-01"]));
    assert!(out.contains("run manual__2024-01-01T00:00:00+00:00: success"), "{out}");
}

#[test]
fn scraper_loads_the_sample_feed_into_sqlite() {
    let home = tempfile::tempdir().expect("home");
    let out = ok(&sluice(home.path(), &[], &["dags", "test", "sports_data_scraper", "2024-06-01"]));
    assert!(out.contains("[validate] nfl: 269 valid, 3 rejected"), "{out}");
    assert!(out.contains("[load] upserted 983 games"), "{out}");
    assert!(out.contains("run manual__2024-06-01T00:00:00+00:00: success"), "{out}");
    let db = home.path().join("mlsp.sqlite");
    let counts = sqlite_rows(&db, "SELECT league, count(*) AS n FROM games GROUP BY league ORDER BY league");
    assert_eq!(
        counts,
        [
            serde_json::json!({"league": "mlb", "n": 357}),
            serde_json::json!({"league": "nba", "n": 357}),
            serde_json::json!({"league": "nfl", "n": 269}),
        ]
    );
    // A second run upserts: the same games, no duplicates.
    ok(&sluice(home.path(), &[], &["dags", "test", "sports_data_scraper", "2024-06-02"]));
    assert_eq!(sqlite_rows(&db, "SELECT count(*) AS n FROM games"), [serde_json::json!({"n": 983})]);
}

#[test]
fn a_corrupted_feed_fails_validate_and_loads_nothing() {
    let home = tempfile::tempdir().expect("home");
    let feed = tempfile::tempdir().expect("feed");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/games");
    for league in ["nfl", "nba", "mlb"] {
        let text = std::fs::read_to_string(sample.join(format!("{league}.csv"))).expect("sample");
        // Every tenth game loses its away team: 10% bad rows, over the 5% limit.
        let broken: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                if i > 0 && i % 10 == 0 {
                    let mut cells: Vec<&str> = line.split(',').collect();
                    cells[3] = "";
                    cells.join(",")
                } else {
                    line.to_string()
                }
            })
            .collect();
        std::fs::write(feed.path().join(format!("{league}.csv")), broken.join("\n")).expect("write");
    }
    let uri = format!("file://{}", feed.path().display());
    let out = failed(&sluice(
        home.path(),
        &[("SLUICE_CONN_SPORTS_FEED", &uri)],
        &["dags", "test", "sports_data_scraper", "2024-06-01"],
    ));
    assert!(out.contains("rows are bad"), "{out}");
    assert!(out.contains("the limit is 5%"), "{out}");
    assert!(!out.contains("[load] upserted"), "{out}");
    // `on_failure: [alerts_webhook]` of the scraper, written to a file in standalone.
    let alerts = notifications(home.path());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["event"], "failure");
    assert_eq!((alerts[0]["task"].as_str(), alerts[0]["try"].as_i64()), (Some("validate"), Some(3)));
    assert!(alerts[0]["error"].as_str().is_some_and(|e| e.contains("rows are bad")), "{alerts:?}");
    assert!(out.contains("notifications: 1 of 1 sent"), "{out}");
}

/// The alerts a standalone run wrote (the `standalone:` of `alerts_webhook`).
fn notifications(home: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(home.join("alerts/notifications.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect()
}

#[test]
fn training_runs_alone_and_registers_and_deploys_locally() {
    let home = tempfile::tempdir().expect("home");
    let out = ok(&sluice(home.path(), &[], &["dags", "test", "ml_model_training", "2024-06-02"]));
    assert!(out.contains("is empty: loading it from `sports_feed`"), "{out}");
    assert!(out.contains("[register_mlflow] registered mlsp-"), "{out}");
    assert!(out.contains("run manual__2024-06-02T00:00:00+00:00: success"), "{out}");
    let registry = home.path().join("mlflow/registered-models");
    let names: Vec<String> = std::fs::read_dir(&registry)
        .expect("a local registry")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let name = names[0].trim_end_matches(".json");
    let version: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(registry.join(name).join("versions/1.json")).expect("version 1"))
            .expect("json");
    assert_eq!(version["name"], name);
    assert!(version["source"].as_str().is_some_and(|s| Path::new(s).exists()), "{version}");
    let deployed = sqlite_rows(&home.path().join("mlsp.sqlite"), "SELECT model_name, version FROM deployed_models");
    assert_eq!(deployed, [serde_json::json!({"model_name": name, "version": "1"})]);
    let alerts = notifications(home.path());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!((alerts[0]["event"].as_str(), alerts[0]["task"].as_str()), (Some("success"), None), "the run's end");
}

#[test]
fn evaluate_fails_below_min_accuracy() {
    let home = tempfile::tempdir().expect("home");
    let out = failed(&sluice(
        home.path(),
        &[],
        &["dags", "test", "ml_model_training", "2024-06-02", "--conf", r#"{"min_accuracy": 0.95}"#],
    ));
    assert!(out.contains("accuracy below min_accuracy 0.95"), "{out}");
    assert!(!out.contains("[register_mlflow] registered"), "{out}");
    let alerts = notifications(home.path());
    assert_eq!((alerts[0]["event"].as_str(), alerts[0]["state"].as_str()), (Some("failure"), Some("failed")));
}

/// With `SLUICE_CONN_POSTGRES_MLSP` pointing at a real PostgreSQL (the tests' own), `load`
/// writes there; each run uses its own database.
#[test]
fn load_writes_to_postgres_when_configured() {
    let port = sluice_testkit::postgres::port().to_string();
    let psql = |db: &str, sql: &str| {
        Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", db, "-tAc", sql])
            .env("PGCONNECT_TIMEOUT", "3")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let db = format!("sluice_sample_{}", std::process::id());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db}")).expect("drop");
    psql("postgres", &format!("CREATE DATABASE {db}")).expect("create");
    let home = tempfile::tempdir().expect("home");
    let uri = sluice_testkit::postgres::url(&db);
    let out = sluice(home.path(), &[("SLUICE_CONN_POSTGRES_MLSP", &uri)], &["dags", "test", "sports_data_scraper"]);
    let counted = psql(&db, "SELECT count(*) FROM games");
    let trained = sluice(
        home.path(),
        &[("SLUICE_CONN_POSTGRES_MLSP", &uri)],
        &["dags", "test", "ml_model_training", "2024-06-02"],
    );
    let deployed = psql(&db, "SELECT count(*) FROM deployed_models");
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
    ok(&out);
    assert_eq!(counted.as_deref(), Some("983"));
    ok(&trained);
    assert_eq!(deployed.as_deref(), Some("1"));
    assert!(!home.path().join("mlsp.sqlite").exists(), "nothing went to the standalone SQLite file");
}

/// The league feed over HTTPS, from a server whose certificate a test CA signed: the
/// scraper trusts it through `SSL_CERT_FILE` (which replaces the system's store, as for
/// OpenSSL), and without it refuses the connection, naming the URL and the reason.
#[test]
fn the_feed_over_https_is_trusted_through_ssl_cert_file_and_refused_without() {
    let ca = sluice_testkit::certs::TestCa::new("Sluice test CA");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let games = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/games");
    let server = runtime.block_on(sluice_testkit::https::HttpsServer::serving(&ca.server_cert("feed"), &games));
    let feed = format!("https://localhost:{}", server.port);
    let ca_file = ca.ca_file().display().to_string();

    let home = tempfile::tempdir().expect("home");
    let trusted = [("SLUICE_CONN_SPORTS_FEED", feed.as_str()), ("SSL_CERT_FILE", ca_file.as_str())];
    let out = ok(&sluice(home.path(), &trusted, &["dags", "test", "sports_data_scraper", "2024-06-01"]));
    assert!(out.contains(": success"), "{out}");
    let mut seen = server.seen();
    seen.sort();
    assert_eq!(seen, ["GET /mlb.csv", "GET /nba.csv", "GET /nfl.csv"]);

    let home = tempfile::tempdir().expect("home");
    let refused =
        failed(&sluice(home.path(), &[("SLUICE_CONN_SPORTS_FEED", &feed)], &["dags", "test", "sports_data_scraper"]));
    assert!(refused.contains(&format!("{feed}/nfl.csv")), "names the URL: {refused}");
    assert!(refused.contains("UnknownIssuer"), "says why: {refused}");
    assert_eq!(server.seen().len(), 3, "nothing crossed the refused connections");
}

/// `games_report` after the scrape loaded the sample feed: enough new games, so the branch
/// takes `write_report`, whose Python function writes the Markdown report; with an empty
/// `games` table the branch takes `not_enough_games` and no report is written.
#[test]
fn games_report_writes_its_report_only_with_enough_new_games() {
    let home = tempfile::tempdir().expect("home");
    let reports = home.path().join("reports");
    let conf = serde_json::json!({ "report_dir": reports.display().to_string() }).to_string();
    let run = |date: &str| sluice(home.path(), &[], &["dags", "test", "games_report", date, "--conf", &conf]);

    let out = ok(&run("2024-06-01"));
    assert!(out.contains("[enough_games] not_enough_games"), "{out}");
    assert!(out.contains("[not_enough_games] fewer than 10 new games"), "{out}");
    assert!(!out.contains("[write_report] Running"), "the branch not taken does not run: {out}");
    assert!(!reports.exists(), "no report without games");

    ok(&sluice(home.path(), &[], &["dags", "test", "sports_data_scraper", "2024-06-01"]));
    let out = ok(&run("2024-06-02"));
    assert!(out.contains("[count_new_games] nfl: 28 games from 2024-11-05 to 2024-11-11"), "{out}");
    assert!(out.contains("[enough_games] write_report"), "{out}");
    assert!(out.contains("run manual__2024-06-02T00:00:00+00:00: success"), "{out}");
    let report = std::fs::read_to_string(reports.join("games_report_2024-06-02.md")).expect("the report");
    assert!(report.starts_with("# Games report, 2024-06-02\n"), "{report}");
    assert!(report.contains("84 new games in 3 leagues"), "{report}");
    assert!(report.contains("| nfl | 28 | 2024-11-05 | 2024-11-11 | 43.2 | 54% |"), "{report}");
}
