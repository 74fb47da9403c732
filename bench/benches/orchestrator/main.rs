//! Orchestration benchmarks over the pipelines of `bench/pipelines.yaml`, each in
//! standalone mode and in distributed mode:
//!
//! 1. chain40: 40 sequential no-op tasks, trigger to success (1 worker);
//! 2. fan-out: 1 -> 1,000 -> 1 (2 workers), how cost grows with the width, and the web
//!    UI's page of each width's run (up to 10,000 with `--wide-binary`);
//! 3. transition latency: upstream end -> downstream start over the chain's hand-overs;
//! 4. throughput: tasks/s over 60 s windows of independent tasks (4 workers), with the
//!    store transactions and Redis commands per task;
//! 5. task kinds: 40 shell tasks (`bash -c true`) and 40 SQL tasks (`SELECT 1`; SQLite
//!    standalone, PostgreSQL distributed) in a row, against the no-op chain, bash's own
//!    start and the query's own time;
//! 6. footprint: peak RSS of the scheduler, workers and web server; the scheduler's CPU
//!    time over 60 idle seconds;
//! 7. and 8. `sluice dags list` and `/health` (under wrk) on each deployment's own store;
//! 9. soak: 200 tasks/s for 10 minutes (distributed), memory, Redis streams and database
//!    connections sampled and held to bounds (see `soak.rs`).
//!
//! `cargo bench -p sluice-bench --bench orchestrator [-- --runs N --wide-binary PATH --out FILE]`
//! measures (release build); `cargo test` runs it once at a tiny size as a smoke test, with
//! no assertion on time. `scripts/bench.sh` (`cargo make bench`) puts the tables into
//! BENCHMARKS.md.

mod deployment;
mod report;
mod soak;

use deployment::{Deployment, Mode, cpu_by_part, proc_stat};
use report::{Report, millis, percentile, spread};
use soak::SoakPlan;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Sizes of one pass: the full benchmark, or the smoke test.
#[derive(Debug, Clone)]
struct Plan {
    runs: usize,
    chain: &'static str,
    chain_len: usize,
    fanout: &'static str,
    fanout_width: usize,
    /// Widths for the growth table, in increasing order, all in the bench binary.
    growth: Vec<usize>,
    throughput_window: Duration,
    idle: Duration,
    /// How many times each CLI command runs, and how long wrk loads `/health`.
    cli_runs: usize,
    load: Duration,
    soak: SoakPlan,
}

impl Plan {
    fn full(runs: usize) -> Plan {
        Plan {
            runs,
            chain: "chain40",
            chain_len: 40,
            fanout: "fanout1000",
            fanout_width: 1000,
            growth: vec![10, 100, 1000],
            throughput_window: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            cli_runs: 10,
            load: Duration::from_secs(5),
            soak: SoakPlan {
                rate: 200.0,
                length: Duration::from_secs(600),
                warm_up: Duration::from_secs(60),
                every: Duration::from_secs(10),
            },
        }
    }

    fn smoke() -> Plan {
        Plan {
            runs: 1,
            chain: "chain5",
            chain_len: 5,
            fanout: "fanout10",
            fanout_width: 10,
            growth: vec![10],
            throughput_window: Duration::from_secs(2),
            idle: Duration::from_secs(1),
            cli_runs: 2,
            load: Duration::from_secs(1),
            // CI's soak: the same checks, briefly, at a rate a debug build keeps up with.
            soak: SoakPlan {
                rate: 50.0,
                length: Duration::from_secs(45),
                warm_up: Duration::from_secs(15),
                every: Duration::from_secs(5),
            },
        }
    }
}

/// How long any one run may take before the benchmark gives up.
const RUN_LIMIT: Duration = Duration::from_secs(600);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let full = args.iter().any(|a| a == "--bench");
    let runs = option("--runs").and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut plan = if full { Plan::full(runs) } else { Plan::smoke() };
    // `--soak-secs N`: a shorter (or longer) soak at the same rate.
    if let Some(secs) = option("--soak-secs").and_then(|s| s.parse().ok()) {
        plan.soak.length = Duration::from_secs(secs);
    }
    let default_out = if full { "bench/orchestrator.md" } else { "tmp/orchestrator-smoke.md" };
    let out = option("--out").map_or_else(|| target_dir().join(default_out), PathBuf::from);
    let wide = option("--wide-binary").map(PathBuf::from);
    let binary = Path::new(env!("CARGO_BIN_EXE_sluice-bench"));
    // `--only chain,kinds,fanout,throughput,cli,soak` and `--modes standalone,distributed`
    // narrow a pass.
    let only = option("--only").unwrap_or_else(|| "chain,kinds,fanout,throughput,cli,soak".into());
    let modes: Vec<Mode> = option("--modes")
        .unwrap_or_else(|| "standalone,distributed".into())
        .split(',')
        .map(|m| if m == "standalone" { Mode::Standalone } else { Mode::Distributed })
        .collect();

    if args.iter().any(|a| a == "--peer") {
        let out = option("--out").map_or_else(|| target_dir().join("bench/peer-sluice.json"), PathBuf::from);
        peer(binary, if full { runs } else { 1 }, &out);
        return;
    }
    let mut report = Report::new(plan.runs);
    for &mode in &modes {
        if only.contains("chain") {
            chain(binary, mode, &plan, &mut report);
        }
        if only.contains("kinds") {
            kinds(binary, mode, &plan, &mut report);
        }
        if only.contains("fanout") {
            fanout(binary, mode, &plan, &mut report);
        }
        if only.contains("throughput") {
            throughput_and_footprint(binary, mode, &plan, &mut report);
        }
        if only.contains("cli") {
            operator(binary, mode, &plan, &mut report);
        }
        if only.contains("soak") {
            soak::soak(binary, mode, &plan.soak, parallelism(), &mut report, &out);
        }
    }
    if let Some(wide) = wide {
        for &mode in &modes {
            growth(&wide, mode, &[10_000], &mut report);
        }
    }
    report.write(&out);
    println!("{}", report.markdown());
    println!("written to {}", out.display());
}

/// `executor.parallelism` of `bench/pipelines.yaml`.
fn parallelism() -> i64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    doc["deployment"]["executor"]["parallelism"].as_i64().expect("executor.parallelism in bench/pipelines.yaml")
}

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// 1 and 3: the chain, one worker; every hand-over's latency.
fn chain(binary: &Path, mode: Mode, plan: &Plan, report: &mut Report) {
    let deployment = Deployment::start(mode, binary, 1);
    deployment.run_once(plan.chain, RUN_LIMIT); // warm-up, not counted
    let (mut totals, mut gaps) = (Vec::new(), Vec::new());
    // Distributed: what each task cost the store and the broker (PgBouncer's and Redis's
    // own counters, before and after each run).
    let (mut xacts, mut statements, mut db_ms, mut redis) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.runs {
        let before = (deployment.bouncer_totals(), deployment.redis_commands());
        let (run_id, run) = deployment.run_once(plan.chain, RUN_LIMIT);
        if let ((Some(b0), Some(r0)), (Some(b1), Some(r1))) =
            (before, (deployment.bouncer_totals(), deployment.redis_commands()))
        {
            let n = plan.chain_len as f64;
            let delta = |key: &str| (b1.get(key).copied().unwrap_or(0) - b0.get(key).copied().unwrap_or(0)) as f64;
            xacts.push(delta("total_xact_count") / n);
            statements.push(delta("total_query_count") / n);
            db_ms.push(delta("total_query_time") / 1000.0 / n);
            redis.push((r1.values().sum::<i64>() - r0.values().sum::<i64>()) as f64 / n);
        }
        let tasks = deployment.tasks(plan.chain, &run_id);
        assert_eq!(tasks.len(), plan.chain_len, "{} has {} tasks", plan.chain, plan.chain_len);
        // A worker claims the next task in the transaction that records the end of the one
        // before, so a hand-over is measured end to end: upstream end recorded -> the
        // downstream no-op run and its own end recorded.
        assert!(tasks.windows(2).all(|w| w[1].start >= w[0].end), "a chain task started before its upstream ended");
        gaps.extend(tasks.windows(2).map(|w| millis(w[1].end - w[0].end)));
        totals.push(run.duration().as_secs_f64() * 1000.0);
    }
    let name = format!("1. {}: {} sequential no-op tasks, 1 worker", plan.chain, plan.chain_len);
    report.add(&name, "trigger -> success (ms)", "<= 400 distributed", mode, spread(&totals));
    let per_task: Vec<f64> = totals.iter().map(|t| t / plan.chain_len as f64).collect();
    report.add(&name, "per task (ms)", "", mode, spread(&per_task));
    if !db_ms.is_empty() {
        report.add(&name, "per task: store transactions (services, PgBouncer's count)", "", mode, spread(&xacts));
        report.add(&name, "per task: store statements", "", mode, spread(&statements));
        report.add(&name, "per task: time in the database, statements (ms)", "", mode, spread(&db_ms));
        report.add(&name, "per task: Redis commands", "", mode, spread(&redis));
    }
    let name = format!(
        "3. transition latency: upstream end recorded -> downstream (a no-op) run and its end recorded, {} hand-overs",
        gaps.len()
    );
    report.add(&name, "p50 (ms)", "<= 5", mode, format!("{:.2}", percentile(&gaps, 50.0)));
    report.add(&name, "p99 (ms)", "<= 20", mode, format!("{:.2}", percentile(&gaps, 99.0)));
    report.add(&name, "max (ms)", "", mode, format!("{:.2}", percentile(&gaps, 100.0)));
}

/// Tasks per chain of benchmark 5 (the no-op chain is `chain40` in every plan, so the
/// three chains match), and how many times bash's start and the query are timed on
/// their own.
const KIND_CHAIN: usize = 40;
const NOOP_CHAIN: &str = "chain40";
const ALONE_TIMES: usize = 40;

/// 5: what a shell task and an SQL task cost beyond a no-op task, beyond bash's own start
/// and beyond the query itself: chains of 40 of each, one worker.
fn kinds(binary: &Path, mode: Mode, plan: &Plan, report: &mut Report) {
    let deployment = Deployment::start(mode, binary, 1);
    let sql_chain = match mode {
        Mode::Standalone => "sqlite40",
        Mode::Distributed => "pgsql40",
    };
    let per_task = |dag: &str| -> Vec<f64> {
        deployment.run_once(dag, RUN_LIMIT); // warm-up, not counted
        (0..plan.runs)
            .map(|_| {
                let (run_id, run) = deployment.run_once(dag, RUN_LIMIT);
                let tasks = deployment.tasks(dag, &run_id);
                assert_eq!(tasks.len(), KIND_CHAIN, "{dag} has {KIND_CHAIN} tasks");
                run.duration().as_secs_f64() * 1000.0 / KIND_CHAIN as f64
            })
            .collect()
    };
    let noop = per_task(NOOP_CHAIN);
    let shell = per_task("shell40");
    let sql = per_task(sql_chain);
    let bash_alone: Vec<f64> = (0..ALONE_TIMES)
        .map(|_| {
            let started = Instant::now();
            let status = std::process::Command::new("bash").args(["-c", "true"]).status().expect("run bash");
            assert!(status.success());
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let query_alone = deployment.statement_ms("SELECT 1", ALONE_TIMES);
    let median = |values: &[f64]| percentile(values, 50.0);
    let beyond =
        |values: &[f64], alone: f64| -> Vec<f64> { values.iter().map(|v| v - median(&noop) - alone).collect() };
    let name = format!(
        "5. task kinds: chains of {KIND_CHAIN} tasks, 1 worker, SQL on SQLite standalone and on PostgreSQL \
         distributed; per task (ms)"
    );
    report.add(&name, "no-op Rust task", "", mode, spread(&noop));
    report.add(&name, "shell task (`bash -c true`)", "", mode, spread(&shell));
    report.add(&name, "`bash -c true` alone (median)", "", mode, format!("{:.2}", median(&bash_alone)));
    report.add(
        &name,
        "shell: beyond a no-op task and bash's own start",
        "<= 2 distributed, <= 1 standalone",
        mode,
        spread(&beyond(&shell, median(&bash_alone))),
    );
    report.add(&name, "SQL task (`SELECT 1`)", "", mode, spread(&sql));
    report.add(
        &name,
        "`SELECT 1` alone on an open connection (median)",
        "",
        mode,
        format!("{:.2}", median(&query_alone)),
    );
    report.add(
        &name,
        "SQL: beyond a no-op task and the query",
        "<= 3 PostgreSQL, <= 2 SQLite",
        mode,
        spread(&beyond(&sql, median(&query_alone))),
    );
}

/// 2: the fan-out with two workers, then how cost grows with the width.
fn fanout(binary: &Path, mode: Mode, plan: &Plan, report: &mut Report) {
    let deployment = Deployment::start(mode, binary, 2);
    deployment.run_once("chain5", RUN_LIMIT); // warm-up, not counted
    let mut totals = Vec::new();
    for _ in 0..plan.runs {
        let (_, run) = deployment.run_once(plan.fanout, RUN_LIMIT);
        totals.push(run.duration().as_secs_f64());
    }
    let name = format!("2. fan-out: 1 -> {} parallel no-op tasks -> 1, 2 workers", plan.fanout_width);
    report.add(&name, "trigger -> success (s)", "<= 3", mode, spread(&totals));
    let per_task: Vec<f64> = totals.iter().map(|t| t * 1000.0 / (plan.fanout_width + 2) as f64).collect();
    report.add(&name, "per task (ms)", "", mode, spread(&per_task));
    drop(deployment);
    growth(binary, mode, &plan.growth, report);
}

/// One run per width, each on a fresh deployment with 2 workers: time and peak memory per
/// task as the width grows.
fn growth(binary: &Path, mode: Mode, widths: &[usize], report: &mut Report) {
    let name = "2b. fan-out growth: one run per width, fresh deployment, 2 workers";
    for &width in widths {
        let deployment = Deployment::start(mode, binary, 2);
        let base: Vec<(String, f64)> =
            deployment.processes().iter().map(|(n, pid)| (n.clone(), proc_stat(*pid).peak_mib)).collect();
        let (_, run) = deployment.run_once(&format!("fanout{width}"), RUN_LIMIT);
        let secs = run.duration().as_secs_f64();
        let tasks = (width + 2) as f64;
        let peak = |role: &str| -> f64 {
            deployment
                .processes()
                .iter()
                .filter(|(n, _)| n.starts_with(role))
                .map(|(_, pid)| proc_stat(*pid).peak_mib)
                .fold(0.0, f64::max)
        };
        let idle = |role: &str| -> f64 {
            base.iter().filter(|(n, _)| n.starts_with(role)).map(|(_, m)| *m).fold(0.0, f64::max)
        };
        let role = if mode == Mode::Standalone { "standalone" } else { "scheduler" };
        let text = format!(
            "{secs:.2} s, {:.2} ms/task; peak RSS {role} {:.1} MiB ({:+.1} KiB/task), worker {:.1} MiB",
            secs * 1000.0 / tasks,
            peak(role),
            (peak(role) - idle(role)) * 1024.0 / tasks,
            peak("worker"),
        );
        report.add(name, &format!("width {width}"), "", mode, text);
        pipeline_page(&deployment, width, report);
    }
}

/// How many times the pipeline page is fetched per width.
const PAGE_FETCHES: usize = 10;

/// 2c. The web UI's page of the fan-out just run (grid, graph and durations of a run of
/// `width + 2` tasks), fetched by a signed-in admin, as the page's own refresh fetches it
/// while a run is active.
fn pipeline_page(deployment: &Deployment, width: usize, report: &mut Report) {
    let name = format!("2c. pipeline page after the fan-out's run: GET by a signed-in admin, {PAGE_FETCHES} fetches");
    let (ms, html) = deployment.page_ms(&format!("/dags/fanout{width}"), PAGE_FETCHES);
    // A page that lost tasks would be quick for the wrong reason.
    let nodes = html.matches(r#"<g class="node""#).count();
    assert_eq!(nodes, width + 2, "the graph draws every task of fanout{width}");
    let goal = if width == 10_000 { "< 200" } else { "" };
    report.add(&name, &format!("width {width} (ms)"), goal, deployment.mode, spread(&ms));
}

/// 4 and 6: sustained throughput with four workers, then the footprint of the same
/// deployment once idle.
fn throughput_and_footprint(binary: &Path, mode: Mode, plan: &Plan, report: &mut Report) {
    let mut deployment = Deployment::start(mode, binary, 4);
    let dag = "wide100";
    let keep_active = 6;
    let warm_up = Duration::from_secs(if plan.runs > 1 { 3 } else { 1 });
    let started = Instant::now();
    let mut windows = Vec::new();
    let mut window_start: Option<Window> = None;
    // CPU ms per task by part of the deployment, summed over the windows, and the tasks.
    let (mut cpu_ms, mut counted) = (BTreeMap::<String, f64>::new(), 0i64);
    while windows.len() < plan.runs {
        if deployment.active_runs(dag) < keep_active {
            deployment.trigger(dag);
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        if started.elapsed() < warm_up {
            continue;
        }
        let redis_total = || deployment.redis_commands().map(|c| c.values().sum::<i64>());
        let start_window =
            || (Instant::now(), now_micros(), deployment.transactions(), redis_total(), cpu_by_part(&deployment));
        match &window_start {
            None => window_start = Some(start_window()),
            Some((at, from, xacts, redis, cpu)) if at.elapsed() >= plan.throughput_window => {
                let (from, xacts, redis) = (*from, *xacts, *redis);
                let to = now_micros();
                let tasks = deployment.succeeded_between(from, to);
                assert!(tasks > 0, "no task finished in a throughput window:\n{}", deployment.logs());
                for (part, secs) in cpu_by_part(&deployment) {
                    *cpu_ms.entry(part.clone()).or_insert(0.0) +=
                        (secs - cpu.get(&part).copied().unwrap_or(0.0)) * 1000.0;
                }
                counted += tasks;
                let per = |before: Option<i64>, after: Option<i64>| {
                    before.zip(after).map(|(b, a)| (a - b) as f64 / tasks as f64)
                };
                windows.push((
                    tasks as f64 * 1e6 / (to - from) as f64,
                    per(xacts, deployment.transactions()),
                    per(redis, redis_total()),
                ));
                window_start = Some(start_window());
            }
            Some(_) => {}
        }
    }
    let name =
        format!("4. throughput: independent no-op tasks, {} s windows, 4 workers", plan.throughput_window.as_secs());
    let rates: Vec<f64> = windows.iter().map(|w| w.0).collect();
    report.add(&name, "tasks/s", ">= 500", mode, spread(&rates));
    let xacts: Vec<f64> = windows.iter().filter_map(|w| w.1).collect();
    let redis: Vec<f64> = windows.iter().filter_map(|w| w.2).collect();
    if !xacts.is_empty() {
        report.add(&name, "store transactions per task", "<= 3", mode, spread(&xacts));
        report.add(&name, "Redis commands per task", "<= 3", mode, spread(&redis));
    }
    if counted > 0 {
        // Where a task's time goes when every core is busy: CPU per task by process.
        let per_task: Vec<String> =
            cpu_ms.iter().map(|(part, ms)| format!("{part} {:.2}", ms / counted as f64)).collect();
        let total: f64 = cpu_ms.values().sum::<f64>() / counted as f64;
        report.add(
            &name,
            "CPU per task (ms), by process",
            "",
            mode,
            format!("{}; total {total:.2}", per_task.join(", ")),
        );
    }
    let limit = Instant::now() + RUN_LIMIT;
    while deployment.active_runs(dag) > 0 {
        assert!(Instant::now() < limit, "the throughput runs did not drain:\n{}", deployment.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    footprint(&mut deployment, plan, report);
}

/// A throughput window's start: when, the store's clock (µs), the store's transactions and
/// Redis's commands so far, and each part's CPU seconds so far.
type Window = (Instant, i64, Option<i64>, Option<i64>, BTreeMap<String, f64>);

/// 6: peak RSS after the load, a fresh worker that stays idle, and CPU over idle time.
fn footprint(deployment: &mut Deployment, plan: &Plan, report: &mut Report) {
    let mode = deployment.mode;
    let name =
        format!("6. footprint: peak RSS after the benchmarks above; CPU over {} idle seconds", plan.idle.as_secs());
    // Idle means nothing is due: the one scheduled pipeline (`minutely`) would run in
    // the window.
    deployment.cli(&["dags", "pause", "minutely"]);
    let idle_worker = deployment.spawn_worker("idle-worker");
    let main = if mode == Mode::Standalone { "standalone" } else { "scheduler" };
    let main_pid = deployment.pid_of(main).expect("the scheduling process");
    std::thread::sleep(Duration::from_secs(2)); // let the idle worker settle
    let before = proc_stat(main_pid).cpu_secs;
    std::thread::sleep(plan.idle);
    let cpu = proc_stat(main_pid).cpu_secs - before;
    report.add(&name, &format!("{main}: peak RSS (MiB)"), "< 64", mode, format!("{:.1}", proc_stat(main_pid).peak_mib));
    report.add(
        &name,
        &format!("{main}: CPU while idle (s)"),
        "~ 0",
        mode,
        format!("{cpu:.2} ({:.2}% of a core)", cpu * 100.0 / plan.idle.as_secs_f64()),
    );
    if let Some(pid) = idle_worker {
        report.add(&name, "idle worker: peak RSS (MiB)", "< 32", mode, format!("{:.1}", proc_stat(pid).peak_mib));
        let busy: Vec<f64> = deployment
            .processes()
            .iter()
            .filter(|(n, _)| n.starts_with("worker-"))
            .map(|(_, pid)| proc_stat(*pid).peak_mib)
            .collect();
        report.add(&name, "busy workers: peak RSS (MiB)", "", mode, spread(&busy));
    }
    if let Some(pid) = deployment.pid_of("webserver") {
        report.add(&name, "webserver: peak RSS (MiB)", "", mode, format!("{:.1}", proc_stat(pid).peak_mib));
    }
}

/// 7 and 8 against the deployment's own store: `sluice dags list` as an operator runs it
/// beside the services (distributed: through PgBouncer), and `/health` under wrk from a
/// second process (skipped when wrk is not installed).
fn operator(binary: &Path, mode: Mode, plan: &Plan, report: &mut Report) {
    let name = "7-8. CLI and `/health` on the deployment's store";
    let deployment = Deployment::start(mode, binary, 1);
    let list: Vec<f64> = (0..plan.cli_runs)
        .map(|_| {
            let started = Instant::now();
            let out = deployment.cli(&["dags", "list"]);
            assert!(out.contains("chain40"), "dags list lists the pipelines: {out}");
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    report.add(name, "`sluice dags list` (ms)", "< 50", mode, spread(&list));
    let url = format!("http://127.0.0.1:{}/health", deployment.web_port());
    let seconds = format!("{}s", plan.load.as_secs().max(1));
    let wrk = std::process::Command::new("wrk").args(["-t2", "-c64", "-d", &seconds, &url]).output();
    let rate = match wrk {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:").map(|r| r.trim().to_string()))
            .unwrap_or_else(|| "-".into()),
        Ok(_) => "- (wrk failed)".into(),
        Err(_) => "- (wrk not installed)".into(),
    };
    report.add(name, "`/health` (requests/s, wrk: 2 threads, 64 connections)", ">= 5,000", mode, rate);
}

/// The shapes of the Airflow peer harness (`../shared/bench-peer-airflow`), each run
/// `runs` times in both modes (2 workers), and the CLI's cold starts; seconds, as JSON for
/// `scripts/bench-peer.sh`.
fn peer(binary: &Path, runs: usize, out: &Path) {
    let shapes = [("sports_data_scraper", "scraper_shape"), ("chain40", "chain40"), ("fanout100", "fanout100")];
    let mut figures = serde_json::Map::new();
    for mode in [Mode::Standalone, Mode::Distributed] {
        let deployment = Deployment::start(mode, binary, 2);
        deployment.run_once("scraper_shape", RUN_LIMIT); // warm-up, not counted
        let mut by_shape = serde_json::Map::new();
        for (shape, dag) in shapes {
            let secs: Vec<f64> =
                (0..runs).map(|_| deployment.run_once(dag, RUN_LIMIT).1.duration().as_secs_f64()).collect();
            println!("{mode:?} {shape}: {secs:?} s");
            by_shape.insert(shape.into(), secs.into());
        }
        let main = if mode == Mode::Standalone { "standalone" } else { "scheduler" };
        let pid = deployment.pid_of(main).expect("the scheduling process");
        by_shape.insert("scheduler_peak_rss_mib".into(), proc_stat(pid).peak_mib.into());
        figures.insert(format!("{mode:?}").to_lowercase(), by_shape.into());
    }
    let home = tempfile::tempdir().expect("temp SLUICE_HOME");
    let cli = |args: &[&str]| {
        let started = Instant::now();
        let status = std::process::Command::new(binary)
            .args(args)
            .env("SLUICE_HOME", home.path())
            .env_remove("SLUICE_DATABASE_URL")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run the CLI");
        assert!(status.success(), "sluice {args:?} failed");
        started.elapsed().as_secs_f64()
    };
    cli(&["init"]);
    let mut commands = serde_json::Map::new();
    for (name, args) in [("dags list", &["dags", "list"][..]), ("dags test chain40", &["dags", "test", "chain40"][..])]
    {
        let secs: Vec<f64> = (0..runs.max(3)).map(|_| cli(args)).collect();
        println!("cli {name}: {secs:?} s");
        commands.insert(name.into(), secs.into());
    }
    figures.insert("cli".into(), commands.into());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).expect("output directory");
    }
    std::fs::write(out, serde_json::Value::Object(figures).to_string()).expect("write the peer figures");
    println!("written to {}", out.display());
}
