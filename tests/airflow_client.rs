//! The REST API at `/api/v1` as Airflow users call it: the official Python client
//! (`apache-airflow-client` 2.10.0, in the venv `scripts/install-test-deps.sh` makes at
//! `target/test-venv`) runs `tests/airflow_client/check.py` against `sluice standalone`:
//! health, DAGs and their tasks, pause, a triggered run with its task instances and log,
//! DAG details, XCom, a clear (dry run, then real: the cleared task runs again, a second
//! try), a dry-run state change, dagStats, variables, connections and a wrong password. The client checks every answer against its generated
//! models, so a field Airflow never leaves null that Sluice sends as null fails here.
//!
//! A missing venv fails the test with the hint to install it; nothing is skipped.

use sluice_testkit::process::{output_file, read_file, run_within};
use sluice_testkit::report;
use sluice_testkit::standalone::Standalone;
use std::path::Path;
use std::process::{Command, Stdio};
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
    let python = sluice_testkit::venv::python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/airflow_client/check.py");
    let sluice = Standalone::start(Path::new(env!("CARGO_BIN_EXE_sluice")), ADMIN_USER, ADMIN_PASSWORD, FERNET_KEY);
    let url = format!("http://127.0.0.1:{}/api/v1", sluice.port);

    let out_path = sluice.home().join("check.out");
    let err_path = sluice.home().join("check.err");
    let mut check = Command::new(&python);
    check
        .arg(&script)
        .args(["--url", &url, "--user", ADMIN_USER, "--password", ADMIN_PASSWORD])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .stdin(Stdio::null())
        .stdout(output_file(&out_path))
        .stderr(output_file(&err_path));
    let status = run_within(&mut check, CHECK_LIMIT);

    let stdout = read_file(&out_path);
    for line in stdout.lines() {
        report(&format!("airflow client: {line}"));
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "check.py {}\nstdout:\n{stdout}\nstderr:\n{}\nsluice standalone log (end):\n{}",
        status.map_or_else(|| format!("did not finish within {CHECK_LIMIT:?}"), |s| format!("ended with {s}")),
        read_file(&err_path),
        sluice.log_tail(),
    );
    assert!(stdout.lines().any(|l| l == "ok   all checks passed"), "{stdout}");
}
