//! The REST API at `/api/v1` as Airflow users call it: the official Python client
//! (`apache-airflow-client` 2.10.0, in the venv `scripts/install-test-deps.sh` makes at
//! `target/test-venv`) runs `tests/airflow_client/check.py` against `sluice standalone` and
//! against the distributed deployment (PgBouncer, Redis, scheduler, worker): health, DAGs
//! and their tasks, pause, a triggered run with its task instances and log, DAG details,
//! XCom, a clear (dry run, then real: the cleared task runs again, a second try), state
//! changes (dry run, then marking a task failed with its downstream), the batch lists,
//! clearing the whole run, notes, tries, the event log, the source and compiler warnings,
//! users, roles, config, dagStats, variables, connections and a wrong password. The client
//! checks every answer against its generated models, so a field Airflow never leaves null
//! that Sluice sends as null fails here.
//!
//! A missing venv fails the test with the hint to install it; nothing is skipped.

use sluice_testkit::cluster::{ADMIN_PASSWORD as CLUSTER_ADMIN_PASSWORD, Cluster};
use sluice_testkit::process::Env;
use sluice_testkit::redis::Persistence;
use sluice_testkit::report;
use sluice_testkit::standalone::Standalone;
use std::path::Path;
use std::time::Duration;

const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "client-check-password";
/// Sluice stores no connection password without a Fernet key (Airflow would store it in
/// plaintext), so the server gets one, as a deployment does: 32 bytes, url-safe base64.
const FERNET_KEY: &str = "c2x1aWNlLWFpcmZsb3ctY2xpZW50LWNoZWNrLWtleSE=";
/// The whole check: the script waits up to 60 s for the run; the client sets no timeout of
/// its own, so a request the server never answers would hang it.
const CHECK_LIMIT: Duration = Duration::from_secs(180);

#[test]
fn the_official_airflow_python_client_works_against_standalone() {
    let home = tempfile::Builder::new().prefix("sluice-client-").tempdir().expect("temp SLUICE_HOME");
    let env = [
        ("SLUICE_ADMIN_USERNAME", ADMIN_USER),
        ("SLUICE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("SLUICE_FERNET_KEY", FERNET_KEY),
        ("SLUICE_EXPOSE_CONFIG", "non-sensitive-only"),
    ];
    let sluice = Standalone::launch(Path::new(env!("CARGO_BIN_EXE_sluice")), home.path(), &env)
        .unwrap_or_else(|(status, log)| panic!("sluice standalone exited ({status}) before serving /health:\n{log}"));
    let url = format!("http://127.0.0.1:{}/api/v1", sluice.port);
    run_check(&url, ADMIN_USER, ADMIN_PASSWORD, home.path(), &|| sluice.log_tail());
}

#[test]
fn the_official_airflow_python_client_works_against_the_distributed_deployment() {
    let mut extra = Env::new();
    extra.insert("SLUICE_EXPOSE_CONFIG".into(), "true".into());
    let mut cluster = Cluster::start(Path::new(env!("CARGO_BIN_EXE_sluice")), Persistence::AsGenerated, extra);
    cluster.start_webserver();
    cluster.spawn("scheduler", "scheduler-1");
    cluster.spawn("worker", "worker-1");
    let url = format!("http://127.0.0.1:{}/api/v1", cluster.web_port());
    let home = cluster.home();
    run_check(&url, "admin", CLUSTER_ADMIN_PASSWORD, &home, &|| cluster.logs());
}

/// Runs check.py against `url`, writing its output in `dir`; `logs` says what the server
/// logged, for a failure's message.
fn run_check(url: &str, user: &str, password: &str, dir: &Path, logs: &dyn Fn() -> String) {
    let args = ["--url", url, "--user", user, "--password", password];
    let run = sluice_testkit::venv::run_script("tests/airflow_client/check.py", &args, dir, CHECK_LIMIT);
    for line in run.stdout.lines() {
        report(&format!("airflow client: {line}"));
    }
    assert!(
        run.passed(),
        "check.py {}\nstdout:\n{}\nstderr:\n{}\nserver log (end):\n{}",
        run.status.map_or_else(|| format!("did not finish within {CHECK_LIMIT:?}"), |s| format!("ended with {s}")),
        run.stdout,
        run.stderr,
        logs(),
    );
}
