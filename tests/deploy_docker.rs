//! `cargo make test-deploy`: `generated/docker-compose.yml` built and run on a real Docker
//! engine, as an operator deploys it. One test, in phases, each on the running deployment:
//! the images are built, every health check goes healthy, the sample pipelines run to
//! success on worker containers when the official Airflow client triggers them through the
//! published port, `--scale worker=3` gives three consuming workers, a busy worker killed
//! with `docker kill` has its task succeed once elsewhere, a stopped one (SIGTERM to PID 1)
//! finishes its task first, restarts of PostgreSQL and PgBouncer do not stop a run, `down`
//! then `up` keeps the history, and `down -v` leaves nothing behind.
//!
//! What the deployment would get from services outside it comes from
//! `tests/deploy/compose.test.yml`: a `backend` container serving this repository's sample
//! league data (the `sports_feed` connection), and the MLflow registry and the alert
//! receiver as folders on the shared volume.
//!
//! Needs a Docker engine and the base images: `scripts/docker-engine.sh` and
//! `scripts/base-images.sh` (run by `cargo make test-deploy`).

use serde_json::Value;
use sluice_testkit::process::free_port;
use sluice_testkit::report;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const HINT: &str = "run `cargo make test-deploy`, which starts the engine (scripts/docker-engine.sh) and makes the \
                    base images (scripts/base-images.sh)";
const PROJECT: &str = "mlsp";
const ADMIN_PASSWORD: &str = "deploy-test-admin";
/// Bounds on waiting for the deployment: far above what each takes, so a stuck deployment
/// fails instead of hanging.
const HEALTHY_LIMIT: Duration = Duration::from_secs(300);
const RUN_LIMIT_SECS: u64 = 300;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docker_bin() -> PathBuf {
    std::env::var_os("SLUICE_DOCKER").map_or_else(|| PathBuf::from("/usr/bin/docker"), PathBuf::from)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The deployment under test: the generated compose file plus the test's stand-ins.
struct Deployment {
    compose: PathBuf,
    env_file: PathBuf,
    _scratch: tempfile::TempDir,
    port: u16,
}

impl Deployment {
    fn new() -> Deployment {
        let scratch = tempfile::tempdir().expect("scratch");
        let port = free_port();
        let env_file = scratch.path().join(".env");
        std::fs::write(&env_file, env_file_text(port)).expect("write .env");
        Deployment { compose: sluice_testkit::venv::compose_binary().to_path_buf(), env_file, _scratch: scratch, port }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose);
        cmd.current_dir(root())
            .args(["-p", PROJECT, "-f", "generated/docker-compose.yml", "-f", "tests/deploy/compose.test.yml"])
            .arg("--env-file")
            .arg(&self.env_file)
            .args(args)
            .env("DOCKER_BUILDKIT", "1");
        cmd
    }

    /// Runs `docker compose <args>`; panics with its output when it fails.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap_or_else(|e| panic!("docker compose {args:?}: {e}; {HINT}"));
        assert!(out.status.success(), "docker compose {args:?} failed:\n{}", text(&out));
        text(&out)
    }

    /// Container ids of `service`, running or not.
    fn containers(&self, service: &str) -> Vec<String> {
        self.run(&["ps", "-a", "-q", service]).lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
    }

    fn api(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1", self.port)
    }

    /// One statement on the metadata database, as `mlsp_user` inside the postgres container.
    fn sql(&self, statement: &str) -> String {
        let out = docker(&["exec", "mlsp-postgres", "psql", "-U", "mlsp_user", "-d", "airflow", "-tAc", statement]);
        assert!(out.status.success(), "`{statement}`: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The worker running `print_date` of `run_id`, empty while it does not run.
    fn running_print_date(&self, run_id: &str) -> String {
        self.sql(&format!(
            "SELECT ti.worker FROM task_instances ti JOIN runs r ON r.id = ti.run_pk \
             WHERE r.run_id = '{run_id}' AND ti.task_id = 'print_date' AND ti.state = 'running'"
        ))
    }

    /// Triggers `runs` (`dag_id` or `dag_id=<conf>`) with the official client and, unless
    /// `wait` is false, waits for them; the JSON lines it printed.
    fn trigger(&self, runs: &[&str], wait: bool) -> Vec<Value> {
        let script = root().join("tests/deploy/run_pipelines.py");
        let limit = RUN_LIMIT_SECS.to_string();
        let mut cmd = Command::new(sluice_testkit::venv::python());
        cmd.arg(script).args(["--url", &self.api(), "--user", "admin", "--password", ADMIN_PASSWORD]);
        cmd.args(["--timeout", &limit]);
        if !wait {
            cmd.arg("--no-wait");
        }
        let out = cmd.args(runs).output().expect("run the client script");
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert!(out.status.success(), "{runs:?}: {lines:?}\n{}\n{}", text(&out), self.logs());
        lines
    }

    /// Waits until every task instance of `run_id` has ended and the run succeeded.
    fn wait_success(&self, dag: &str, run_id: &str) {
        let deadline = Instant::now() + Duration::from_secs(RUN_LIMIT_SECS);
        loop {
            let state =
                self.sql(&format!("SELECT state FROM runs WHERE pipeline_id = '{dag}' AND run_id = '{run_id}'"));
            if state == "success" {
                return;
            }
            assert!(state != "failed" && Instant::now() < deadline, "{dag} {run_id}: {state}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn logs(&self) -> String {
        let out = self.command(&["logs", "--no-color", "--tail", "40"]).output().expect("logs");
        text(&out)
    }

    /// Waits until every container of the project with a health check is healthy and init
    /// exited 0.
    fn wait_healthy(&self) {
        let deadline = Instant::now() + HEALTHY_LIMIT;
        loop {
            let states = self.health();
            let pending: Vec<_> = states.iter().filter(|(_, s)| s.as_str() != "healthy").collect();
            if pending.is_empty() && !states.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "not healthy after {HEALTHY_LIMIT:?}: {pending:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Health of each running container (name -> status; `exited 0` for init).
    fn health(&self) -> BTreeMap<String, String> {
        let ids = self.run(&["ps", "-a", "-q"]);
        let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
        let mut args = vec![
            "inspect",
            "--format",
            "{{.Name}} {{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
        ];
        args.extend(ids);
        let out = docker(&args);
        let mut states = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [name, status, code, health] = f[..] else { continue };
            let state = match (status, health) {
                ("exited", _) if code == "0" && name.contains("init") => "healthy".to_string(),
                ("running", "none") => "healthy".to_string(),
                ("running", health) => health.to_string(),
                (status, _) => format!("{status} (exit {code})"),
            };
            states.insert(name.trim_start_matches('/').to_string(), state);
        }
        states
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new(docker_bin()).args(args).output().unwrap_or_else(|e| panic!("docker {args:?}: {e}; {HINT}"))
}

/// `.env` as an operator writes it from `generated/.env.example`: every required value
/// filled in, the host port free.
fn env_file_text(port: u16) -> String {
    let example = std::fs::read_to_string(root().join("generated/.env.example")).expect("generated/.env.example");
    let password = "deploy-test-db-password";
    let values = BTreeMap::from([
        ("SLUICE_WEBSERVER_PORT", port.to_string()),
        ("SLUICE_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
        ("SLUICE_FERNET_KEY", "ZGVwbG95LXRlc3QtZmVybmV0LWtleS0zMi1ieXRlcyE=".to_string()),
        ("SLUICE_SECRET_KEY", "deploy-test-secret-key-0123456789abcdef".to_string()),
        ("POSTGRES_PASSWORD", password.to_string()),
        ("MLSP_DB_PASSWORD", password.to_string()),
        ("MLFLOW_DB_PASSWORD", password.to_string()),
        ("BACKEND_API_TOKEN", "deploy-test-token".to_string()),
    ]);
    let mut out = String::new();
    for line in example.lines() {
        let key = line.split('=').next().unwrap_or_default();
        match values.get(key) {
            Some(value) if !line.starts_with('#') => out.push_str(&format!("{key}={value}\n")),
            _ => {
                assert!(line.starts_with('#') || !line.ends_with('='), "the test gives no value for {line}");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[test]
fn the_generated_containers_build_run_scale_and_recover() {
    let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(info.status.success(), "no Docker engine answers: {}; {HINT}", text(&info));
    for image in ["postgres:15", "redis:7", "debian:bookworm-slim", "rust:1.95-bookworm"] {
        assert!(docker(&["image", "inspect", image]).status.success(), "no image {image}: {HINT}");
    }
    let d = Deployment::new();
    d.run(&["down", "-v", "--remove-orphans"]);

    // Build (the cached build when an earlier run left its layers) and start.
    let built = Instant::now();
    d.run(&["build"]);
    report(&format!("docker compose build: {:?}", built.elapsed()));
    d.run(&["up", "-d"]);
    d.wait_healthy();
    report(&format!("every health check healthy: {:?}", d.health()));

    // The sample pipelines, triggered by the official client through the published port.
    let runs = d.trigger(&["example_dag", "sports_data_scraper"], true);
    let training = d.trigger(&["ml_model_training"], true);
    let ended: Vec<&Value> = runs.iter().chain(&training).filter(|l| l.get("state").is_some()).collect();
    assert_eq!(ended.len(), 3, "{runs:?} {training:?}");
    let workers = d.containers("worker");
    let ran_on = d.sql("SELECT DISTINCT split_part(worker, '-', 1) FROM task_instances WHERE state = 'success'");
    for host in ran_on.lines() {
        assert!(workers.iter().any(|w| w.starts_with(host)), "task ran on {host}, not a worker container {workers:?}");
    }

    // Three consuming workers.
    d.run(&["up", "-d", "--scale", "worker=3", "--no-recreate"]);
    d.wait_healthy();
    assert_eq!(d.containers("worker").len(), 3);
    let deadline = Instant::now() + HEALTHY_LIMIT;
    loop {
        let live = d.sql(
            "SELECT count(DISTINCT hostname) FROM jobs WHERE job_type = 'worker' AND state = 'running' \
             AND heartbeat_at > (extract(epoch from now()) * 1000000)::bigint - 30000000",
        );
        if live == "3" {
            break;
        }
        assert!(Instant::now() < deadline, "3 heartbeating workers, not {live}\n{}", d.logs());
        std::thread::sleep(Duration::from_secs(1));
    }

    // A busy worker killed: its task succeeds once, elsewhere.
    let started = d.trigger(&[r#"example_dag={"pause_secs": 20}"#], false);
    let run_id = started[0]["run_id"].as_str().expect("run id").to_string();
    let busy = loop {
        let worker = d.running_print_date(&run_id);
        if !worker.is_empty() {
            break worker;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let host = busy.split('-').next().expect("hostname");
    let victim = d.containers("worker").into_iter().find(|w| w.starts_with(host)).expect("the busy worker's container");
    assert!(docker(&["kill", &victim]).status.success());
    d.wait_success("example_dag", &run_id);
    let tries = d.sql(&format!(
        "SELECT count(*) FILTER (WHERE tt.state = 'success'), max(tt.try_number) FROM task_tries tt \
         JOIN task_instances ti ON ti.id = tt.ti_id JOIN runs r ON r.id = ti.run_pk \
         WHERE r.run_id = '{run_id}' AND ti.task_id = 'print_date'"
    ));
    report(&format!("docker kill of the worker running print_date: successes|tries = {tries}"));
    assert!(tries.starts_with("1|"), "one success: {tries}");

    // SIGTERM reaches the worker (PID 1 of its container): `stop` lets the running task
    // finish within the grace period, on its first try.
    let started = d.trigger(&[r#"example_dag={"pause_secs": 10}"#], false);
    let run_id = started[0]["run_id"].as_str().expect("run id").to_string();
    while d.running_print_date(&run_id).is_empty() {
        std::thread::sleep(Duration::from_millis(200));
    }
    d.run(&["stop", "worker"]);
    let after_stop = d.sql(&format!(
        "SELECT ti.state, ti.try_number FROM task_instances ti JOIN runs r ON r.id = ti.run_pk \
         WHERE r.run_id = '{run_id}' AND ti.task_id = 'print_date'"
    ));
    assert_eq!(after_stop, "success|1", "the stopping worker finished its task first\n{}", d.logs());
    d.run(&["up", "-d", "--scale", "worker=3", "--no-recreate"]);
    d.wait_healthy();
    d.wait_success("example_dag", &run_id);

    // PostgreSQL and PgBouncer restarted during a run: it completes.
    let started = d.trigger(&[r#"example_dag={"pause_secs": 5}"#], false);
    let run_id = started[0]["run_id"].as_str().expect("run id").to_string();
    d.run(&["restart", "postgres"]);
    d.run(&["restart", "pgbouncer"]);
    d.wait_success("example_dag", &run_id);

    // History survives down + up.
    let before = d.sql("SELECT count(*) FROM runs");
    d.run(&["down"]);
    d.run(&["up", "-d"]);
    d.wait_healthy();
    assert_eq!(d.sql("SELECT count(*) FROM runs"), before, "runs kept across down + up");

    // down -v leaves nothing.
    d.run(&["down", "-v", "--remove-orphans"]);
    let left = docker(&["ps", "-a", "-q", "--filter", &format!("label=com.docker.compose.project={PROJECT}")]);
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "containers left: {}", text(&left));
    let volumes = docker(&["volume", "ls", "-q", "--filter", &format!("label=com.docker.compose.project={PROJECT}")]);
    assert!(String::from_utf8_lossy(&volumes.stdout).trim().is_empty(), "volumes left: {}", text(&volumes));
}
