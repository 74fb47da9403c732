//! The soak (benchmark 9): independent no-op tasks at a steady rate for a long while (distributed mode),
//! sampling what could grow without bound: the resident memory of every service, the
//! Redis streams, and the connections to PostgreSQL and PgBouncer. It fails when any of
//! them passes its bound:
//!
//! - each process's RSS at the end <= its RSS after the warm-up + 10 MiB;
//! - every Redis queue stream <= 2 x `parallelism` entries (an entry is deleted when its
//!   task's outcome is recorded, and at most `parallelism` tasks are queued or running);
//! - PostgreSQL's client connections to the database <= PgBouncer's `default_pool_size` +
//!   `reserve_pool_size`, + 1 for this harness's own;
//! - PgBouncer's clients <= 10 (each process's pool) x the processes using it; its server
//!   connections <= `default_pool_size` + `reserve_pool_size`;
//! - and the rate is sustained: tasks succeeded over the soak >= 90% of the target.

use crate::deployment::{Deployment, Mode, rss_mib};
use crate::report::Report;
use sluice_testkit::cluster::Cluster;
use sluice_testkit::process::tool;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct SoakPlan {
    /// Target tasks per second.
    pub rate: f64,
    /// The whole soak, warm-up included.
    pub length: Duration,
    /// The first samples, not held to the memory bound (pools fill, caches warm).
    pub warm_up: Duration,
    /// Time between samples.
    pub every: Duration,
}

/// Headroom for a process's RSS between the end of the warm-up and the end.
const RSS_SLACK_MIB: f64 = 10.0;
/// Tasks per run of the pipeline the soak triggers.
const DAG: &str = "wide100";
const TASKS_PER_RUN: f64 = 100.0;
const WORKERS: usize = 4;

/// One look at the deployment.
#[derive(Debug, Clone, Default)]
struct Sample {
    at: Duration,
    rss: BTreeMap<String, f64>,
    /// Entries in each queue's stream.
    streams: BTreeMap<String, i64>,
    /// PostgreSQL's client backends on the metadata database.
    postgres: i64,
    /// PgBouncer's pool for the database: clients, server connections.
    bouncer_clients: i64,
    bouncer_servers: i64,
}

pub fn soak(binary: &Path, mode: Mode, plan: &SoakPlan, parallelism: i64, report: &mut Report, out: &Path) {
    if mode == Mode::Standalone {
        return; // what it watches (Redis, PgBouncer, separate processes) is distributed mode's
    }
    let deployment = Deployment::start(mode, binary, WORKERS);
    let cluster = deployment.cluster().expect("distributed");
    let pool = |key: &str| cluster.bouncer.setting(key).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let servers_bound = pool("default_pool_size") + pool("reserve_pool_size");
    assert!(servers_bound > 0, "PgBouncer's pool sizes");
    let processes = deployment.processes().into_iter().filter(|(n, _)| n != "init").count() as i64;
    let clients_bound = 10 * processes;
    let stream_bound = 2 * parallelism;

    let interval = Duration::from_secs_f64(TASKS_PER_RUN / plan.rate);
    let started = Instant::now();
    let from = crate::now_micros();
    let mut triggered = 0u32;
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = started;
    while started.elapsed() < plan.length {
        let due = started + interval * triggered;
        let now = Instant::now();
        if now >= due {
            deployment.trigger(DAG);
            triggered += 1;
        } else if now >= next_sample {
            samples.push(sample(&deployment, cluster, started.elapsed()));
            next_sample += plan.every;
        } else {
            std::thread::sleep(due.min(next_sample) - now);
        }
    }
    let to = crate::now_micros();
    samples.push(sample(&deployment, cluster, started.elapsed()));
    let tasks = deployment.succeeded_between(from, to);
    let achieved = tasks as f64 * 1e6 / (to - from) as f64;
    write_samples(&samples, &out.with_file_name("soak-samples.csv"));

    let name = format!(
        "9. soak: {:.0} tasks/s of independent no-op tasks for {} s ({} s warm-up), {WORKERS} workers, sampled every {} s",
        plan.rate,
        plan.length.as_secs(),
        plan.warm_up.as_secs(),
        plan.every.as_secs()
    );
    let mut failures = Vec::new();
    report.add(&name, "tasks/s achieved", &format!(">= {:.0}", plan.rate * 0.9), mode, format!("{achieved:.0}"));
    if achieved < plan.rate * 0.9 {
        failures.push(format!("{achieved:.0} tasks/s, below 90% of {:.0}", plan.rate));
    }
    let warm = samples.iter().find(|s| s.at >= plan.warm_up).cloned().unwrap_or_default();
    let last = samples.last().cloned().unwrap_or_default();
    for (process, end) in &last.rss {
        let base = warm.rss.get(process).copied().unwrap_or(0.0);
        let peak = samples.iter().filter_map(|s| s.rss.get(process)).fold(0.0, |a: f64, b| a.max(*b));
        report.add(
            &name,
            &format!("{process}: RSS after warm-up -> end (max) MiB"),
            "end <= warm-up + 10",
            mode,
            format!("{base:.1} -> {end:.1} ({peak:.1})"),
        );
        if *end > base + RSS_SLACK_MIB {
            failures.push(format!("{process}: RSS {base:.1} -> {end:.1} MiB"));
        }
    }
    let max = |f: &dyn Fn(&Sample) -> i64| samples.iter().map(f).max().unwrap_or(0);
    let streams = max(&|s: &Sample| s.streams.values().copied().max().unwrap_or(0));
    let checks = [
        ("Redis queue stream length, max (entries)", streams, stream_bound),
        ("PostgreSQL client connections, max", max(&|s: &Sample| s.postgres), servers_bound + 1),
        ("PgBouncer clients, max", max(&|s: &Sample| s.bouncer_clients), clients_bound),
        ("PgBouncer server connections, max", max(&|s: &Sample| s.bouncer_servers), servers_bound),
    ];
    for (measure, value, bound) in checks {
        report.add(&name, measure, &format!("<= {bound}"), mode, value.to_string());
        if value > bound {
            failures.push(format!("{measure}: {value} > {bound}"));
        }
    }
    let failed_runs = deployment.failed_runs(DAG);
    if failed_runs > 0 {
        failures.push(format!("{failed_runs} failed runs"));
    }
    assert!(failures.is_empty(), "soak bounds exceeded: {failures:?}\n{}", deployment.logs());
}

fn sample(deployment: &Deployment, cluster: &Cluster, at: Duration) -> Sample {
    let mut rss: BTreeMap<String, f64> = deployment
        .processes()
        .into_iter()
        .filter(|(n, _)| n != "init")
        .map(|(name, pid)| (name, rss_mib(pid)))
        .collect();
    rss.extend(cluster.redis.pid().map(|pid| ("redis-server".to_string(), rss_mib(pid))));
    rss.extend(cluster.bouncer.pid().map(|pid| ("pgbouncer".to_string(), rss_mib(pid))));
    let mut streams = BTreeMap::new();
    let keys = redis(cluster, &["--scan", "--pattern", "sluice:*:queue:*"]);
    for key in keys.lines().filter(|k| !k.is_empty()) {
        streams.insert(key.to_string(), redis(cluster, &["XLEN", key]).trim().parse().unwrap_or(0));
    }
    let postgres = cluster
        .sql(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        .trim()
        .parse()
        .unwrap_or(0);
    let (bouncer_clients, bouncer_servers) = bouncer_pool(cluster);
    Sample { at, rss, streams, postgres, bouncer_clients, bouncer_servers }
}

/// `redis-cli` on the broker's database (the number at the end of `SLUICE_BROKER_URL`).
fn redis(cluster: &Cluster, args: &[&str]) -> String {
    let url = cluster.env("worker").get("SLUICE_BROKER_URL").cloned().expect("SLUICE_BROKER_URL of the workers");
    let db = url.rsplit_once('/').and_then(|(_, db)| db.parse::<u32>().ok()).unwrap_or(0);
    let out = Command::new(tool("redis-cli"))
        .args(["-p", &cluster.redis.port().to_string(), "-n", &db.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `SHOW POOLS` on PgBouncer's admin console, for the metadata database: (clients,
/// server connections).
fn bouncer_pool(cluster: &Cluster) -> (i64, i64) {
    let out = Command::new(tool("psql"))
        .arg(format!(
            "host=127.0.0.1 port={} user={} dbname=pgbouncer connect_timeout=10",
            cluster.bouncer.port(),
            cluster.db.user()
        ))
        .args(["-X", "-A", "-c", "SHOW POOLS"])
        .env("PGPASSWORD", cluster.db.password())
        .output()
        .expect("run psql");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('|').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    for line in lines {
        let cells: Vec<&str> = line.split('|').collect();
        if column("database").and_then(|i| cells.get(i)) != Some(&cluster.db.name()) {
            continue;
        }
        let sum = |names: &[&str]| -> i64 {
            names.iter().filter_map(|n| column(n).and_then(|i| cells.get(i))?.parse::<i64>().ok()).sum()
        };
        return (sum(&["cl_active", "cl_waiting"]), sum(&["sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"]));
    }
    panic!("no pool for {} in SHOW POOLS:\n{text}{}", cluster.db.name(), String::from_utf8_lossy(&out.stderr));
}

fn write_samples(samples: &[Sample], path: &Path) {
    let mut text = String::from("seconds,process_or_measure,value\n");
    for s in samples {
        let at = s.at.as_secs_f64();
        for (name, mib) in &s.rss {
            let _ = writeln!(text, "{at:.1},rss_mib:{name},{mib:.1}");
        }
        for (name, len) in &s.streams {
            let _ = writeln!(text, "{at:.1},xlen:{name},{len}");
        }
        let _ = writeln!(text, "{at:.1},postgres_clients,{}", s.postgres);
        let _ = writeln!(text, "{at:.1},bouncer_clients,{}", s.bouncer_clients);
        let _ = writeln!(text, "{at:.1},bouncer_servers,{}", s.bouncer_servers);
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
