//! A deployment under measurement: `sluice standalone` (SQLite, one process), or the
//! distributed services of `generated/docker-compose.yml` run as local processes on
//! PostgreSQL through the generated PgBouncer config and Redis. Runs are triggered with the
//! CLI, as a user triggers them; their timings are read from the metadata database.

use sluice_testkit::cluster::Cluster;
use sluice_testkit::process::{Env, tool};
use sluice_testkit::redis::Persistence;
use sluice_testkit::standalone::Standalone;
use sqlx::Row;
use sqlx::any::{AnyPoolOptions, AnyRow};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Distributed,
}

#[derive(Debug)]
enum Services {
    Standalone(Standalone),
    Distributed(Box<Cluster>),
}

/// A run as the store recorded it; times in microseconds since the epoch.
#[derive(Debug, Clone)]
pub struct RunTimes {
    pub state: String,
    pub created: i64,
    pub end: Option<i64>,
}

impl RunTimes {
    /// Trigger committed -> success committed.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(u64::try_from(self.end.unwrap_or(self.created) - self.created).unwrap_or(0))
    }
}

/// One task instance's last try, microseconds since the epoch.
#[derive(Debug, Clone)]
pub struct TaskTimes {
    /// Claimed by a worker.
    pub start: i64,
    /// Its end recorded.
    pub end: i64,
}

#[derive(Debug)]
pub struct Deployment {
    pub mode: Mode,
    binary: PathBuf,
    services: Services,
    workers: usize,
    runtime: tokio::runtime::Runtime,
    pool: sqlx::AnyPool,
    /// Statements this harness ran on the database, to take out of its transaction count.
    pub queries: Cell<i64>,
}

impl Deployment {
    /// Starts `binary` in `mode`; distributed: a scheduler, the web server and `workers`
    /// worker processes.
    pub fn start(mode: Mode, binary: &Path, workers: usize) -> Deployment {
        sqlx::any::install_default_drivers();
        let (services, url) = match mode {
            Mode::Standalone => {
                let fernet = cli_output(Command::new(binary).args(["fernet", "generate"]));
                let standalone = Standalone::start(binary, "admin", STANDALONE_ADMIN_PASSWORD, fernet.trim());
                let url = format!("sqlite://{}?mode=ro", standalone.home().join("sluice.sqlite").display());
                (Services::Standalone(standalone), url)
            }
            Mode::Distributed => {
                // Benchmark 5's PostgreSQL SQL tasks go to the local server.
                let env = Env::from([("SLUICE_CONN_BENCH_PG".to_string(), sluice_testkit::postgres::url("postgres"))]);
                let mut cluster = Cluster::start(binary, Persistence::AsGenerated, env);
                cluster.spawn("scheduler", "scheduler");
                cluster.start_webserver();
                let url = cluster.db.direct_url();
                (Services::Distributed(Box::new(cluster)), url)
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let pool = runtime
            .block_on(AnyPoolOptions::new().max_connections(1).connect(&url))
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        let mut deployment = Deployment {
            mode,
            binary: binary.to_path_buf(),
            services,
            workers: 0,
            runtime,
            pool,
            queries: Cell::new(0),
        };
        deployment.add_workers(workers);
        deployment
    }

    /// The distributed services (`None` in standalone).
    pub fn cluster(&self) -> Option<&Cluster> {
        match &self.services {
            Services::Distributed(cluster) => Some(cluster),
            Services::Standalone(_) => None,
        }
    }

    /// Starts `n` more worker processes (distributed; standalone runs its tasks itself).
    pub fn add_workers(&mut self, n: usize) {
        if let Services::Distributed(cluster) = &mut self.services {
            for _ in 0..n {
                self.workers += 1;
                cluster.spawn("worker", &format!("worker-{}", self.workers));
            }
        }
    }

    /// Starts one worker named `name` and returns its pid.
    pub fn spawn_worker(&mut self, name: &str) -> Option<u32> {
        match &mut self.services {
            Services::Distributed(cluster) => Some(cluster.spawn("worker", name).pid()),
            Services::Standalone(_) => None,
        }
    }

    /// The port of the web server (standalone's own, or the `webserver` service's).
    pub fn web_port(&self) -> u16 {
        match &self.services {
            Services::Distributed(cluster) => cluster.web_port(),
            Services::Standalone(standalone) => standalone.port,
        }
    }

    /// The admin's user name and password, as the deployment was started with them.
    fn admin(&self) -> (&'static str, &'static str) {
        match &self.services {
            Services::Standalone(_) => ("admin", STANDALONE_ADMIN_PASSWORD),
            Services::Distributed(_) => ("admin", sluice_testkit::cluster::ADMIN_PASSWORD),
        }
    }

    /// Signs in as the admin through the login form, then fetches the web UI's page `path`
    /// `times` times: each fetch's wall time in ms (request sent -> whole page read, on
    /// loopback) and the last page's HTML.
    pub fn page_ms(&self, path: &str, times: usize) -> (Vec<f64>, String) {
        let (user, password) = self.admin();
        let base = format!("http://127.0.0.1:{}", self.web_port());
        let client = sluice_runtime::tls::http_client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        self.runtime.block_on(async {
            let form = client.get(format!("{base}/login")).send().await.expect("the login page");
            let cookie = first_cookie(&form);
            let html = form.text().await.expect("the login page's HTML");
            let token = html.split(r#"name="csrf" value=""#).nth(1).and_then(|s| s.split('"').next());
            let token = token.expect("a CSRF token on the login page");
            let signed = client
                .post(format!("{base}/login"))
                .header("cookie", cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("csrf={token}&username={user}&password={password}"))
                .send()
                .await
                .expect("signing in");
            assert_eq!(signed.status(), reqwest::StatusCode::SEE_OTHER, "the admin signs in");
            let session = first_cookie(&signed);
            let mut ms = Vec::new();
            let mut last = String::new();
            for _ in 0..times {
                let started = Instant::now();
                let page = client.get(format!("{base}{path}")).header("cookie", &session).send().await;
                let page = page.unwrap_or_else(|e| panic!("GET {path}: {e}"));
                assert_eq!(page.status(), reqwest::StatusCode::OK, "GET {path}");
                last = page.text().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
                ms.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            (ms, last)
        })
    }

    /// `sluice <args>` as an operator runs it beside the deployment; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        match &self.services {
            Services::Distributed(cluster) => cluster.cli(args),
            Services::Standalone(standalone) => cli_output(
                Command::new(&self.binary)
                    .args(args)
                    .env("SLUICE_HOME", standalone.home())
                    .env_remove("SLUICE_DATABASE_URL")
                    .env_remove("SLUICE_BROKER_URL"),
            ),
        }
    }

    /// Triggers a manual run of `dag`; its run id.
    pub fn trigger(&self, dag: &str) -> String {
        let out = self.cli(&["-o", "json", "dags", "trigger", dag]);
        let runs: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("trigger output {out}: {e}"));
        runs[0]["run_id"].as_str().unwrap_or_else(|| panic!("no run_id in {out}")).to_string()
    }

    fn rows(&self, sql: &str) -> Vec<AnyRow> {
        self.queries.set(self.queries.get() + 1);
        self.runtime
            .block_on(sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(&self.pool))
            .unwrap_or_else(|e| panic!("`{sql}`: {e}"))
    }

    /// How long `sql` takes on the harness's own open connection to the store, `times`
    /// times, in ms.
    pub fn statement_ms(&self, sql: &str, times: usize) -> Vec<f64> {
        (0..times)
            .map(|_| {
                let started = std::time::Instant::now();
                self.rows(sql);
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect()
    }

    fn number(&self, sql: &str) -> i64 {
        self.rows(sql).first().and_then(|r| r.try_get::<i64, _>(0).ok()).unwrap_or(0)
    }

    pub fn run(&self, dag: &str, run_id: &str) -> Option<RunTimes> {
        let rows = self.rows(&format!(
            "SELECT state, created_at, end_date FROM runs WHERE pipeline_id = '{dag}' AND run_id = '{run_id}'"
        ));
        rows.first().map(|r| RunTimes {
            state: r.try_get(0).unwrap_or_default(),
            created: r.try_get(1).unwrap_or_default(),
            end: r.try_get(2).ok(),
        })
    }

    /// Polls every 2 ms until the run ends; panics with the services' logs unless it
    /// succeeds within `limit`.
    pub fn wait(&self, dag: &str, run_id: &str, limit: Duration) -> RunTimes {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(run) = self.run(dag, run_id) {
                match run.state.as_str() {
                    "success" => return run,
                    "failed" => panic!("{dag} {run_id} failed:\n{}", self.logs()),
                    _ => {}
                }
            }
            assert!(Instant::now() < deadline, "{dag} {run_id} did not end within {limit:?}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Triggers `dag` and waits for its success.
    pub fn run_once(&self, dag: &str, limit: Duration) -> (String, RunTimes) {
        let run_id = self.trigger(dag);
        let run = self.wait(dag, &run_id, limit);
        (run_id, run)
    }

    /// Every task instance of the run, ordered by start.
    pub fn tasks(&self, dag: &str, run_id: &str) -> Vec<TaskTimes> {
        let rows = self.rows(&format!(
            "SELECT ti.start_date, ti.end_date FROM task_instances ti JOIN runs r ON r.id = ti.run_pk \
             WHERE r.pipeline_id = '{dag}' AND r.run_id = '{run_id}' ORDER BY ti.start_date"
        ));
        rows.iter()
            .map(|r| TaskTimes { start: r.try_get(0).unwrap_or_default(), end: r.try_get(1).unwrap_or_default() })
            .collect()
    }

    pub fn active_runs(&self, dag: &str) -> i64 {
        self.number(&format!(
            "SELECT COUNT(*) FROM runs WHERE pipeline_id = '{dag}' AND state IN ('queued', 'running')"
        ))
    }

    pub fn failed_runs(&self, dag: &str) -> i64 {
        self.number(&format!("SELECT COUNT(*) FROM runs WHERE pipeline_id = '{dag}' AND state = 'failed'"))
    }

    /// Successful tries that ended in [from, to), microseconds since the epoch.
    pub fn succeeded_between(&self, from: i64, to: i64) -> i64 {
        self.number(&format!(
            "SELECT COUNT(*) FROM task_tries WHERE state = 'success' AND end_date >= {from} AND end_date < {to}"
        ))
    }

    /// Transactions committed or rolled back in the metadata database so far (PostgreSQL),
    /// with this harness's own statements taken out.
    pub fn transactions(&self) -> Option<i64> {
        match self.mode {
            Mode::Standalone => None,
            Mode::Distributed => {
                let all = self.number(
                    "SELECT (xact_commit + xact_rollback)::BIGINT FROM pg_stat_database WHERE datname = current_database()",
                );
                Some(all - self.queries.get())
            }
        }
    }

    /// Redis commands served so far, by command (distributed), from `INFO commandstats`,
    /// without the `INFO` calls that read them.
    pub fn redis_commands(&self) -> Option<BTreeMap<String, i64>> {
        let Services::Distributed(cluster) = &self.services else { return None };
        let out = cli_output(Command::new(tool("redis-cli")).args([
            "-p",
            &cluster.redis.port().to_string(),
            "INFO",
            "commandstats",
        ]));
        let mut calls = BTreeMap::new();
        for line in out.lines() {
            let Some((name, stats)) = line.trim().strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
                continue;
            };
            let count = stats.split(',').find_map(|kv| kv.strip_prefix("calls=")).and_then(|n| n.parse().ok());
            if name != "info" {
                calls.insert(name.to_string(), count.unwrap_or(0));
            }
        }
        Some(calls)
    }

    /// PgBouncer's `SHOW STATS` totals for the metadata database (distributed): the
    /// services' transactions, statements and the time their statements spent in the
    /// database (`total_query_time`, µs). The harness reads the database directly, so none
    /// of its own statements count.
    pub fn bouncer_totals(&self) -> Option<BTreeMap<String, i64>> {
        let Services::Distributed(cluster) = &self.services else { return None };
        let out = Command::new(tool("psql"))
            .arg(format!(
                "host=127.0.0.1 port={} user={} dbname=pgbouncer connect_timeout=10",
                cluster.bouncer.port(),
                cluster.db.user()
            ))
            .args(["-X", "-A", "-F", "\t", "-c", "SHOW STATS"])
            .env("PGPASSWORD", cluster.db.password())
            .output()
            .expect("run psql");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
        let row: Vec<&str> = lines
            .find(|l| l.split('\t').next() == Some(cluster.db.name()))
            .unwrap_or_else(|| panic!("no SHOW STATS row for {}:\n{text}", cluster.db.name()))
            .split('\t')
            .collect();
        Some(header.iter().zip(row).filter_map(|(h, v)| Some((h.to_string(), v.parse().ok()?))).collect())
    }

    /// The deployment's processes: (name, pid).
    pub fn processes(&self) -> Vec<(String, u32)> {
        match &self.services {
            Services::Standalone(standalone) => vec![("standalone".to_string(), standalone.pid())],
            Services::Distributed(cluster) => cluster
                .services
                .iter()
                .map(|s| {
                    let name = s.log_path().file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    (name, s.pid())
                })
                .collect(),
        }
    }

    pub fn pid_of(&self, name: &str) -> Option<u32> {
        self.processes().into_iter().find(|(n, _)| n == name).map(|(_, pid)| pid)
    }

    pub fn logs(&self) -> String {
        match &self.services {
            Services::Standalone(standalone) => standalone.log_tail(),
            Services::Distributed(cluster) => cluster.logs(),
        }
    }
}

const STANDALONE_ADMIN_PASSWORD: &str = "bench-password";

/// The `name=value` of a response's first Set-Cookie.
fn first_cookie(response: &reqwest::Response) -> String {
    let set = response.headers().get("set-cookie").and_then(|c| c.to_str().ok()).expect("a Set-Cookie");
    set.split(';').next().unwrap_or_default().to_string()
}

fn cli_output(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A process's resident set now (VmRSS), MiB; 0 when it is gone.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// What `/proc` says of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStat {
    /// Peak resident set (VmHWM), MiB.
    pub peak_mib: f64,
    /// User + system CPU time so far, seconds.
    pub cpu_secs: f64,
}

/// CPU seconds used so far by each part of the deployment: its own processes by name,
/// and in distributed mode PgBouncer, Redis and every PostgreSQL process of the machine
/// (the benchmark's database server serves nothing else while it runs).
pub fn cpu_by_part(deployment: &Deployment) -> BTreeMap<String, f64> {
    let mut parts = BTreeMap::new();
    for (name, pid) in deployment.processes() {
        let part = if name.starts_with("worker") { "workers".to_string() } else { name };
        *parts.entry(part).or_insert(0.0) += proc_stat(pid).cpu_secs;
    }
    if let Some(cluster) = deployment.cluster() {
        parts.insert("PgBouncer".into(), cluster.bouncer.pid().map_or(0.0, |pid| proc_stat(pid).cpu_secs));
        parts.insert("Redis".into(), cluster.redis.pid().map_or(0.0, |pid| proc_stat(pid).cpu_secs));
        let postgres: f64 = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
            .map(|pid| proc_stat(pid).cpu_secs)
            .sum();
        parts.insert("PostgreSQL".into(), postgres);
    }
    parts
}

pub fn proc_stat(pid: u32) -> ProcStat {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 14th and
    // 15th of the whole line, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum();
    ProcStat { peak_mib: peak_kib / 1024.0, cpu_secs: ticks / 100.0 }
}
