//! schemathesis over every operation of Airflow 2.10's own OpenAPI document, against
//! `sluice standalone`: `tests/schemathesis/check.py` runs it (phases examples, coverage and
//! fuzzing; checks not_a_server_error, response_schema_conformance and
//! status_code_conformance) and fails on any failure but those where Airflow 2.10 answers
//! the same way, which it lists. schemathesis is in the test venv
//! (`scripts/install-test-deps.sh`); a missing venv fails with the hint to install it.

use sluice_testkit::report;
use sluice_testkit::standalone::Standalone;
use std::path::Path;
use std::time::Duration;

const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "schema-check-password";
const FERNET_KEY: &str = "c2x1aWNlLWFpcmZsb3ctY2xpZW50LWNoZWNrLWtleSE=";
/// The whole run: about two minutes on a loaded 2-core machine.
const CHECK_LIMIT: Duration = Duration::from_secs(1200);

#[test]
fn schemathesis_finds_nothing_airflow_would_not_answer_the_same_way() {
    let home = tempfile::Builder::new().prefix("sluice-schemathesis-").tempdir().expect("temp SLUICE_HOME");
    // Every operation is served: the configuration and connection tests are switched on,
    // and the rate limits raised above what thousands of generated requests (many with a
    // wrong password, on purpose) would hit.
    let env = [
        ("SLUICE_ADMIN_USERNAME", ADMIN_USER),
        ("SLUICE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("SLUICE_FERNET_KEY", FERNET_KEY),
        ("SLUICE_EXPOSE_CONFIG", "true"),
        ("SLUICE_TEST_CONNECTION", "Enabled"),
        ("SLUICE_API_RATE_LIMIT", "100000000"),
        ("SLUICE_LOGIN_FAILURE_LIMIT", "100000000"),
    ];
    let sluice = Standalone::launch(Path::new(env!("CARGO_BIN_EXE_sluice")), home.path(), &env)
        .unwrap_or_else(|(status, log)| panic!("sluice standalone exited ({status}) before serving /health:\n{log}"));
    let url = format!("http://127.0.0.1:{}/api/v1", sluice.port);

    let report_dir = home.path().display().to_string();
    let args = ["--url", &url, "--user", ADMIN_USER, "--password", ADMIN_PASSWORD, "--report-dir", &report_dir];
    let run = sluice_testkit::venv::run_script("tests/schemathesis/check.py", &args, home.path(), CHECK_LIMIT);
    for line in run.stdout.lines().filter(|l| l.starts_with("ok") || l.starts_with("same as Airflow")) {
        report(&format!("schemathesis: {line}"));
    }
    assert!(
        run.passed(),
        "check.py {}\nstdout:\n{}\nstderr:\n{}\nsluice standalone log (end):\n{}",
        run.status.map_or_else(|| format!("did not finish within {CHECK_LIMIT:?}"), |s| format!("ended with {s}")),
        run.stdout,
        run.stderr,
        sluice.log_tail(),
    );
    assert!(!sluice.log_tail().contains("panicked"), "{}", sluice.log_tail());
}
