//! A whole distributed deployment on one machine: PostgreSQL (a fresh database), the
//! real PgBouncer and Redis started from `generated/`, and the sluice services of
//! `generated/docker-compose.yml` (`init`, `webserver`, `scheduler`, `worker`) run as
//! local processes with their compose environment, host names mapped to loopback.

use crate::compose::Compose;
use crate::database::{Database, psql_at};
use crate::pgbouncer::Bouncer;
use crate::process::{Env, Service, TAIL_LINES, free_port, path_var, run_stdout};
use crate::redis::{Persistence, Redis};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The password of the cluster's admin (user `admin`).
pub const ADMIN_PASSWORD: &str = "cluster-admin-password";

/// The running deployment. Every process is killed on Drop.
#[derive(Debug)]
pub struct Cluster {
    binary: PathBuf,
    compose: Compose,
    vars: Env,
    extra: Env,
    /// Started last so they are dropped first, before the databases they use.
    pub services: Vec<Service>,
    pub bouncer: Bouncer,
    pub redis: Redis,
    pub db: Database,
    web_port: u16,
    dir: TempDir,
}

/// How long `init` may take.
const INIT_LIMIT: Duration = Duration::from_secs(60);

impl Cluster {
    /// Starts PostgreSQL's database, PgBouncer and Redis (`persistence`), runs `init` to
    /// completion with `binary`; `extra` is added to every sluice service's environment
    /// (what an operator would add to the compose file: connection overrides, tuning).
    pub fn start(binary: &Path, persistence: Persistence, extra: Env) -> Cluster {
        Cluster::start_on(Database::server(), binary, persistence, extra)
    }

    /// As [`Cluster::start`], with the metadata database on the PostgreSQL server at
    /// `server` (a [`crate::postgres::PrivatePostgres`] a test may crash).
    pub fn start_on(server: &str, binary: &Path, persistence: Persistence, extra: Env) -> Cluster {
        let compose = Compose::load();
        let db = Database::fresh_on(server, "cluster");
        let bouncer = Bouncer::start(&compose, &db);
        let redis = Redis::start_with(&compose, persistence);
        let dir = tempfile::Builder::new().prefix("sluice-cluster-").tempdir().expect("temp dir");
        let fernet = run_stdout(Command::new(binary).args(["fernet", "generate"]).env_clear());
        let vars = Env::from([
            ("POSTGRES_PASSWORD".into(), db.password().to_string()),
            ("SLUICE_FERNET_KEY".into(), fernet.trim().to_string()),
            ("SLUICE_SECRET_KEY".into(), "cluster-test-secret-key".into()),
            ("SLUICE_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
            ("BACKEND_API_TOKEN".into(), "cluster-backend-token".into()),
            ("MLFLOW_DB_PASSWORD".into(), "cluster-mlflow-password".into()),
            ("MLSP_DB_PASSWORD".into(), "cluster-mlsp-password".into()),
        ]);
        let mut cluster = Cluster {
            binary: binary.to_path_buf(),
            compose,
            vars,
            extra,
            services: Vec::new(),
            bouncer,
            redis,
            db,
            web_port: free_port(),
            dir,
        };
        let init = cluster.spawn("init", "init");
        match init.wait(INIT_LIMIT) {
            Some(status) if status.success() => {}
            other => panic!("init ended {other:?}:\n{}", init.log_tail(TAIL_LINES)),
        }
        cluster
    }

    /// Adds `key=value` to the environment of sluice services started from now on.
    pub fn add_env(&mut self, key: &str, value: &str) {
        self.extra.insert(key.to_string(), value.to_string());
    }

    /// Takes `key` out of the environment of sluice services started from now on.
    pub fn remove_env(&mut self, key: &str) {
        self.extra.remove(key);
    }

    /// `SLUICE_HOME` of every service: the compose's shared `sluice-data` volume.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The environment of compose service `service` as a process here gets it.
    pub fn env(&self, service: &str) -> Env {
        let mut spec = self.compose.service(service, &self.vars).unwrap_or_else(|e| panic!("compose: {e}"));
        let db = self.db.name();
        let replaced = spec.rewrite_addresses(&[
            ("postgres:5432/airflow", &format!("{}/{db}", self.db.address())),
            ("pgbouncer:6432/airflow", &format!("{}/{db}", self.bouncer.address())),
            ("redis:6379", &self.redis.address()),
        ]);
        assert!(replaced >= 3, "service `{service}`: the compose addresses changed ({replaced} rewritten)");
        let mut env = spec.environment;
        let home = env.get("SLUICE_HOME").cloned().expect("SLUICE_HOME in the compose environment");
        assert_eq!(spec.mounts.len(), 0, "only named volumes expected");
        assert_eq!(home, "/data", "the shared volume's mount point");
        env.insert("SLUICE_HOME".into(), self.home().display().to_string());
        env.insert("SLUICE_WEBSERVER_PORT".into(), self.web_port.to_string());
        env.insert("SLUICE_LOG".into(), "info".into());
        env.extend(self.extra.clone());
        env
    }

    /// Starts compose service `service` (its command) as process `name`; returns it.
    pub fn spawn(&mut self, service: &str, name: &str) -> &mut Service {
        let spec = self.compose.service(service, &self.vars).unwrap_or_else(|e| panic!("compose: {e}"));
        assert!(!spec.command.is_empty(), "service `{service}` has no command");
        self.spawn_with(service, name, &spec.command)
    }

    /// Starts compose service `service`'s environment with another command (`worker
    /// --queues ml`), as `docker compose run` would.
    pub fn spawn_with(&mut self, service: &str, name: &str, command: &[String]) -> &mut Service {
        let mut env = self.env(service);
        env.insert("HOSTNAME".into(), name.into());
        let log = self.dir.path().join(format!("{name}.log"));
        std::fs::create_dir_all(self.home()).expect("home");
        self.services.push(Service::spawn(name, &self.binary, command, &env, &log));
        self.services.last_mut().expect("just pushed")
    }

    /// The process named `name` (the last started of that name).
    pub fn service(&mut self, name: &str) -> &mut Service {
        let found = self.services.iter().rposition(|s| s.log_path().ends_with(format!("{name}.log")));
        let index = found.unwrap_or_else(|| panic!("no service `{name}`"));
        &mut self.services[index]
    }

    /// Starts the web server and waits for it to listen.
    pub fn start_webserver(&mut self) {
        let port = self.web_port;
        self.spawn("webserver", "webserver").wait_for_port(port, Duration::from_secs(30));
    }

    pub fn web_port(&self) -> u16 {
        self.web_port
    }

    /// Runs the CLI as `docker compose exec webserver sluice <args>` would; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        run_stdout(
            Command::new(&self.binary).args(args).env_clear().envs(self.env("webserver")).env("PATH", path_var()),
        )
    }

    /// The CLI's whole output, for commands expected to fail.
    pub fn cli_output(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .args(args)
            .env_clear()
            .envs(self.env("webserver"))
            .env("PATH", path_var())
            .output()
            .expect("run the CLI")
    }

    /// Triggers `dag` (unpausing it) with `conf`; returns the run id.
    pub fn trigger(&self, dag: &str, conf: &str) -> String {
        self.cli(&["dags", "unpause", dag]);
        let out = self.cli(&["-o", "json", "dags", "trigger", dag, "--conf", conf]);
        let runs: Json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("trigger output {out}: {e}"));
        runs[0]["run_id"].as_str().expect("run_id").to_string()
    }

    /// Waits up to `limit` for run `run_id` of `dag` to finish; returns its state (or
    /// the last state seen).
    pub fn wait_for_run(&self, dag: &str, run_id: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.cli(&["dags", "state", dag, run_id]).trim().to_string();
            if state == "success" || state == "failed" || Instant::now() > deadline {
                return state;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every task instance of a run: `(task_id, state, try_number)`.
    pub fn task_states(&self, dag: &str, run_id: &str) -> Vec<(String, String, i64)> {
        let rows = self.sql(&format!(
            "SELECT ti.task_id, ti.state, ti.try_number FROM task_instances ti JOIN runs r ON r.id = ti.run_pk \
             WHERE r.pipeline_id = '{dag}' AND r.run_id = '{run_id}' ORDER BY ti.task_id"
        ));
        rows.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let cells: Vec<&str> = l.split('|').collect();
                (cells[0].to_string(), cells[1].to_string(), cells[2].parse().unwrap_or(-1))
            })
            .collect()
    }

    /// One query on the metadata database, straight to PostgreSQL; rows as `a|b` lines.
    pub fn sql(&self, sql: &str) -> String {
        psql_at(&self.db.address(), self.db.name(), sql).unwrap_or_else(|e| panic!("`{sql}`: {e}"))
    }

    /// The logs of every process, for a failing test's message.
    pub fn logs(&self) -> String {
        self.services
            .iter()
            .map(|s| format!("--- {}\n{}", s.log_path().display(), s.log_tail(30)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
