//! Fault tests of the distributed deployment: real processes (the services of
//! `generated/docker-compose.yml` run locally, see `sluice_testkit::cluster`) are killed or cut while
//! pipelines run, and each test states its pass criterion and prints what it measured.
//! Liveness is tightened (heartbeat 1 s, zombie after 4 s, re-dispatch after 8 s) so the
//! tests take seconds, not minutes.

use sluice_testkit::cluster::Cluster;
use sluice_testkit::postgres::PrivatePostgres;
use sluice_testkit::process::Env;
use sluice_testkit::redis::Persistence;
use sluice_testkit::report;
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ZOMBIE_SECS: u64 = 4;
const QUEUED_SECS: u64 = 8;

fn tuned() -> Env {
    Env::from([
        ("SLUICE_HEARTBEAT_SECS".into(), "1".into()),
        ("SLUICE_ZOMBIE_THRESHOLD_SECS".into(), ZOMBIE_SECS.to_string()),
        ("SLUICE_QUEUED_TIMEOUT_SECS".into(), QUEUED_SECS.to_string()),
        ("SLUICE_WORKER_GRACE_SECS".into(), "2".into()),
    ])
}

/// One deployment at a time: the timing criteria hold on 2 cores only without a second
/// cluster competing.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The body of `GET path` on the web server.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the web server");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    text
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-bench"))
}

/// Each task instance of the run ended in success exactly once: its final state is
/// success and exactly one of its tries succeeded. Returns (task instances, tries).
fn assert_success_exactly_once(cluster: &Cluster, dag: &str, run: &str) -> (usize, usize) {
    let rows = cluster.sql(&format!(
        "SELECT ti.task_id, ti.state, \
           (SELECT COUNT(*) FROM task_tries t WHERE t.ti_id = ti.id AND t.state = 'success'), \
           (SELECT COUNT(*) FROM task_tries t WHERE t.ti_id = ti.id) \
         FROM task_instances ti JOIN runs r ON r.id = ti.run_pk \
         WHERE r.pipeline_id = '{dag}' AND r.run_id = '{run}' ORDER BY ti.task_id"
    ));
    let (mut tis, mut tries) = (0, 0);
    for line in rows.lines().filter(|l| !l.is_empty()) {
        let cells: Vec<&str> = line.split('|').collect();
        assert_eq!((cells[1], cells[2]), ("success", "1"), "{dag}.{}: state and successful tries\n{rows}", cells[0]);
        tis += 1;
        tries += cells[3].parse::<usize>().unwrap_or(0);
    }
    assert!(tis > 0, "{dag} {run} has task instances");
    (tis, tries)
}

fn wait_success(cluster: &Cluster, dag: &str, run: &str, limit: Duration) {
    let state = cluster.wait_for_run(dag, run, limit);
    assert_eq!(state, "success", "{dag} {run}: {:?}\n{}", cluster.task_states(dag, run), cluster.logs());
}

/// The processes (`HOSTNAME`s) of workers with tasks running, busiest first. A worker's
/// name is `<HOSTNAME>-<pid>`.
fn busy_workers(cluster: &Cluster) -> Vec<(String, i64)> {
    let rows = cluster.sql(
        "SELECT worker, COUNT(*) FROM task_instances WHERE state = 'running' AND worker IS NOT NULL \
         GROUP BY worker ORDER BY 2 DESC",
    );
    rows.lines()
        .filter_map(|l| {
            let (worker, n) = l.split_once('|')?;
            let host = worker.rsplit_once('-').map_or(worker, |(h, _)| h);
            Some((host.to_string(), n.parse().ok()?))
        })
        .collect()
}

#[test]
fn kill_9_workers_mid_task_repeatedly() {
    let _serial = serial();
    let mut cluster = Cluster::start(binary(), Persistence::AsGenerated, tuned());
    cluster.spawn("scheduler", "scheduler-1");
    for n in 1..=3 {
        cluster.spawn("worker", &format!("worker-{n}"));
    }
    let run = cluster.trigger("sleepers", r#"{"seconds": 3}"#);
    let (mut killed, mut killed_tasks) = (0, 0);
    let mut last_kill = Instant::now();
    let mut replacements = 3;
    // Three times: wait for a live worker to be busy (its tasks, or the retries of a
    // killed one's), let it get into them, kill it, start a replacement.
    for _ in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let victim = loop {
            // The busiest worker still alive (a dead one's tasks look running until reaped).
            let alive = busy_workers(&cluster).into_iter().find(|(host, _)| cluster.service(host).status().is_none());
            if alive.is_some() || Instant::now() > deadline {
                break alive;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let Some((host, _)) = victim else { break };
        std::thread::sleep(Duration::from_millis(700));
        let tasks = busy_workers(&cluster).into_iter().find(|(h, _)| *h == host).map_or(0, |(_, n)| n);
        cluster.service(&host).kill();
        killed += 1;
        killed_tasks += tasks;
        last_kill = Instant::now();
        replacements += 1;
        cluster.spawn("worker", &format!("worker-{replacements}"));
    }
    wait_success(&cluster, "sleepers", &run, Duration::from_secs(90));
    let recovered_in = last_kill.elapsed();
    let (tis, tries) = assert_success_exactly_once(&cluster, "sleepers", &run);
    let zombies = cluster.sql("SELECT COUNT(*) FROM task_tries WHERE error LIKE 'zombie:%'");
    report(&format!(
        "kill -9 workers: {killed} killed while running {killed_tasks} task(s); {tis} tasks each succeeded exactly \
         once over {tries} tries ({} zombie tries); run done {recovered_in:?} after the last kill",
        zombies.trim()
    ));
    assert!(killed >= 2, "the test killed busy workers");
    // Each kill left its running tries behind, taken for zombies (how many exactly depends
    // on tasks starting or ending around the kill).
    let zombies: usize = zombies.trim().parse().unwrap_or(0);
    assert!(zombies >= killed, "{zombies} zombie tries for {killed} kills");
    // Criterion: no task waits longer than the zombie threshold, the retry delay, a
    // sweep and two task lengths after the last kill.
    let bound = Duration::from_secs(ZOMBIE_SECS + ZOMBIE_SECS / 2 + 1 + 2 * 3 + 5);
    assert!(recovered_in < bound, "recovered in {recovered_in:?}, bound {bound:?}");
}

#[test]
fn kill_9_one_of_two_schedulers_mid_run() {
    let _serial = serial();
    let mut cluster = Cluster::start(binary(), Persistence::AsGenerated, tuned());
    cluster.spawn("scheduler", "scheduler-1");
    cluster.spawn("scheduler", "scheduler-2");
    cluster.spawn("worker", "worker-1");
    cluster.spawn("worker", "worker-2");
    let runs: Vec<String> = (0..3).map(|_| cluster.trigger("slow_chain", r#"{"seconds": 0.3}"#)).collect();
    std::thread::sleep(Duration::from_millis(800));
    cluster.service("scheduler-1").kill();
    // A run that needs a scheduler after the kill: it is triggered now.
    let late = cluster.trigger("chain5", "{}");
    for run in &runs {
        wait_success(&cluster, "slow_chain", run, Duration::from_secs(60));
    }
    wait_success(&cluster, "chain5", &late, Duration::from_secs(30));
    let mut tries = 0;
    for run in &runs {
        let (tis, n) = assert_success_exactly_once(&cluster, "slow_chain", run);
        // Criterion: no task instance was dispatched twice while its first dispatch was
        // alive: one try each.
        assert_eq!(n, tis, "one try per task instance in {run}");
        tries += n;
    }
    let duplicates = cluster
        .sql("SELECT COUNT(*) FROM (SELECT pipeline_id, logical_date FROM runs GROUP BY 1, 2 HAVING COUNT(*) > 1) d");
    let minutely = cluster.sql("SELECT COUNT(*) FROM runs WHERE pipeline_id = 'minutely'");
    report(&format!(
        "kill -9 one of two schedulers: {} runs succeeded, {tries} tries for as many task instances, \
         {} duplicate runs, {} scheduled `minutely` run(s)",
        runs.len() + 1,
        duplicates.trim(),
        minutely.trim()
    ));
    assert_eq!(duplicates.trim(), "0", "no run created twice");
    // Both schedulers raced to create the latest interval's run of `minutely`: one exists
    // per interval.
    let intervals = cluster.sql("SELECT COUNT(DISTINCT logical_date) FROM runs WHERE pipeline_id = 'minutely'");
    assert!(minutely.trim().parse::<i64>().unwrap_or(0) >= 1, "the schedulers created `minutely` runs");
    assert_eq!(minutely.trim(), intervals.trim(), "one `minutely` run per interval");
}

fn redis_restart(persistence: Persistence) {
    let mut cluster = Cluster::start(binary(), persistence, tuned());
    cluster.spawn("scheduler", "scheduler-1");
    // One worker (16 slots) and 36 + 6 tasks: a backlog waits in the streams.
    cluster.spawn("worker", "worker-1");
    let chain = cluster.trigger("slow_chain", r#"{"seconds": 0.5}"#);
    let fans: Vec<String> = (0..3).map(|_| cluster.trigger("sleepers", r#"{"seconds": 1.5}"#)).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let backlog = loop {
        let queued: i64 =
            cluster.sql("SELECT COUNT(*) FROM task_instances WHERE state = 'queued'").trim().parse().unwrap_or(0);
        let running: i64 =
            cluster.sql("SELECT COUNT(*) FROM task_instances WHERE state = 'running'").trim().parse().unwrap_or(0);
        if (queued > 0 && running > 0) || Instant::now() > deadline {
            break queued;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(backlog > 0, "tasks waited in the broker when it restarted\n{}", cluster.logs());
    let restarted = Instant::now();
    cluster.redis.restart();
    let mut tasks = 0;
    wait_success(&cluster, "slow_chain", &chain, Duration::from_secs(90));
    tasks += assert_success_exactly_once(&cluster, "slow_chain", &chain).0;
    for fan in &fans {
        wait_success(&cluster, "sleepers", fan, Duration::from_secs(90));
        tasks += assert_success_exactly_once(&cluster, "sleepers", fan).0;
    }
    report(&format!(
        "Redis restart ({persistence:?}): {backlog} task(s) were queued in it at the restart; {tasks} tasks \
         succeeded exactly once, all done {:?} after it",
        restarted.elapsed()
    ));
}

#[test]
fn redis_restart_with_its_append_only_file_loses_nothing() {
    let _serial = serial();
    redis_restart(Persistence::AsGenerated);
}

#[test]
fn redis_restart_without_persistence_is_made_good_by_the_scheduler() {
    let _serial = serial();
    redis_restart(Persistence::Off);
}

#[test]
fn pgbouncer_then_postgres_restart_mid_run() {
    let _serial = serial();
    let postgres = PrivatePostgres::start();
    let mut cluster = Cluster::start_on(&postgres.address(), binary(), Persistence::AsGenerated, tuned());
    cluster.start_webserver();
    cluster.spawn("scheduler", "scheduler-1");
    cluster.spawn("worker", "worker-1");
    cluster.spawn("worker", "worker-2");
    let first = cluster.trigger("slow_chain", r#"{"seconds": 0.5}"#);
    std::thread::sleep(Duration::from_millis(800));
    cluster.bouncer.restart();
    std::thread::sleep(Duration::from_millis(1500));
    let second = cluster.trigger("slow_chain", r#"{"seconds": 0.5}"#);
    std::thread::sleep(Duration::from_millis(500));
    postgres.crash();
    // Meanwhile: /health says so instead of failing, and a worker started now waits for
    // the database instead of exiting (no crash loop).
    let health_down = http_get(cluster.web_port(), "/health");
    cluster.spawn("worker", "worker-late");
    std::thread::sleep(Duration::from_secs(2));
    assert!(cluster.service("worker-late").status().is_none(), "a worker waits for the database\n{}", cluster.logs());
    postgres.start_again();
    let back = Instant::now();
    for run in [&first, &second] {
        wait_success(&cluster, "slow_chain", run, Duration::from_secs(90));
        assert_success_exactly_once(&cluster, "slow_chain", run);
    }
    let alive: Vec<String> = cluster
        .services
        .iter_mut()
        .filter(|s| !s.log_path().ends_with("init.log"))
        .map(|s| {
            let state = if s.status().is_none() { "running" } else { "EXITED" };
            format!("{}: {state}", s.log_path().display())
        })
        .collect();
    let health_up = http_get(cluster.web_port(), "/health");
    assert!(health_down.contains(r#""metadatabase":{"status":"unhealthy"}"#), "{health_down}");
    assert!(health_up.contains(r#""metadatabase":{"status":"healthy"}"#), "{health_up}");
    report(&format!(
        "PgBouncer then PostgreSQL restarted mid-run: both runs succeeded exactly once, {:?} after PostgreSQL was \
         back; services: {alive:?}",
        back.elapsed()
    ));
    assert!(alive.iter().all(|s| s.ends_with("running")), "no service needed a manual restart: {alive:?}");
}

#[test]
fn sigterm_a_worker_mid_task_hands_its_work_back() {
    let _serial = serial();
    let mut cluster = Cluster::start(binary(), Persistence::AsGenerated, tuned());
    cluster.spawn("scheduler", "scheduler-1");
    cluster.spawn("worker", "worker-1");
    let run = cluster.trigger("sleepers", r#"{"seconds": 6}"#);
    let deadline = Instant::now() + Duration::from_secs(20);
    while busy_workers(&cluster).is_empty() {
        assert!(Instant::now() < deadline, "tasks started\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let stopping = Instant::now();
    let status = cluster.service("worker-1").terminate(Duration::from_secs(10));
    let stopped_in = stopping.elapsed();
    assert!(status.is_some_and(|s| s.success()), "the worker exits cleanly: {status:?}\n{}", cluster.logs());
    let running = cluster.sql("SELECT COUNT(*) FROM task_instances WHERE state = 'running'");
    assert_eq!(running.trim(), "0", "no task left running after the worker stopped");
    let handed_back = cluster.sql("SELECT COUNT(*) FROM task_logs WHERE line LIKE 'handed back unfinished%'");
    cluster.spawn("worker", "worker-2");
    wait_success(&cluster, "sleepers", &run, Duration::from_secs(60));
    let (tis, _) = assert_success_exactly_once(&cluster, "sleepers", &run);
    let first_try =
        cluster.sql("SELECT COUNT(*) FROM task_instances WHERE pipeline_id = 'sleepers' AND try_number = 1");
    report(&format!(
        "SIGTERM a worker mid-task: it stopped in {stopped_in:?} (grace 2 s), {} task(s) handed back, \
         none left running; {tis} tasks then succeeded exactly once, {} on their first counted try",
        handed_back.trim(),
        first_try.trim()
    ));
    assert!(handed_back.trim().parse::<i64>().unwrap_or(0) >= 1, "running tasks were handed back");
    assert_eq!(first_try.trim(), tis.to_string(), "a handed-back try does not count");
}

#[test]
fn rust_bodies_that_block_their_thread_starve_neither_heartbeats_nor_other_tasks() {
    let _serial = serial();
    let mut cluster = Cluster::start(binary(), Persistence::AsGenerated, tuned());
    cluster.spawn("scheduler", "scheduler-1");
    cluster.spawn("worker", "worker-1");
    // Three bodies block for 10 s (more of them than the worker has runtime threads on 2
    // cores; the zombie threshold is 4 s), beside one that awaits for 1 s.
    let run = cluster.trigger("blocking", r#"{"seconds": 10.0}"#);
    wait_success(&cluster, "blocking", &run, Duration::from_secs(90));
    let (tis, tries) = assert_success_exactly_once(&cluster, "blocking", &run);
    let zombies = cluster.sql("SELECT COUNT(*) FROM task_tries WHERE error LIKE 'zombie:%'");
    // The awaiting body ended while every blocking one still ran: by the store's own
    // timestamps, before the first of them ended.
    let order = cluster.sql(&format!(
        "SELECT (SELECT ti.end_date FROM task_instances ti WHERE ti.run_pk = r.id AND ti.task_id = 'quick') < \
           (SELECT MIN(ti.end_date) FROM task_instances ti WHERE ti.run_pk = r.id AND ti.task_id LIKE 'hog%') \
         FROM runs r WHERE r.pipeline_id = 'blocking' AND r.run_id = '{run}'"
    ));
    let timings = cluster.sql(&format!(
        "SELECT ti.task_id, t.try_number, t.start_date - r.start_date, t.end_date - r.start_date, t.worker \
         FROM task_tries t JOIN task_instances ti ON ti.id = t.ti_id JOIN runs r ON r.id = ti.run_pk \
         WHERE r.pipeline_id = 'blocking' AND r.run_id = '{run}' ORDER BY ti.task_id"
    ));
    report(&format!(
        "blocking Rust bodies: {tis} tasks succeeded in {tries} tries, {} zombie tries; the awaiting task ended \
         first: {}",
        zombies.trim(),
        order.trim()
    ));
    assert_eq!(zombies.trim(), "0", "no blocking body was taken for a zombie\n{}", cluster.logs());
    assert_eq!(tries, tis, "one try each");
    assert_eq!(
        order.trim(),
        "t",
        "the awaiting task ran while the blocking ones blocked\n{timings}\n{}",
        cluster.logs()
    );
}

/// A number the query returns.
fn count(cluster: &Cluster, sql: &str) -> i64 {
    let out = cluster.sql(sql);
    out.trim().parse().unwrap_or_else(|_| panic!("`{sql}` returned {out:?}"))
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Pauses the one scheduled pipeline (`minutely`), so that the only work is the test's.
fn quiet(cluster: &Cluster) {
    cluster.cli(&["dags", "pause", "minutely"]);
}

/// The failpoint (`FAILPOINTS=<point>=return`) a service of `role` is started with, and
/// the process started to replace it. A failpoint's `return` aborts the process where it
/// stands: no destructor runs, no buffer is flushed, open transactions are cut, as with a
/// SIGKILL; the test knows it died there by its SIGABRT.
fn spawn_failing(cluster: &mut Cluster, role: &str, name: &str, point: &str) {
    cluster.add_env("FAILPOINTS", &format!("{point}=return"));
    cluster.spawn(role, name);
    cluster.remove_env("FAILPOINTS");
}

/// Waits for `name` to die at its failpoint; panics unless it aborted (SIGABRT) in time.
fn wait_abort(cluster: &mut Cluster, name: &str, point: &str) {
    let status = cluster.service(name).wait(Duration::from_secs(60));
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(6),
        "{name} dies at failpoint {point} (SIGABRT): {status:?}\n{}",
        cluster.logs()
    );
}

/// Polls the run's task instances until the run ends (or `limit`), and returns how long
/// the longest stayed `queued` in one stretch: from the `queued_at` first seen (a
/// re-dispatch moves it, not the stretch) to the first poll that finds it gone on.
fn longest_queued(cluster: &Cluster, dag: &str, run: &str, limit: Duration) -> Duration {
    let deadline = Instant::now() + limit;
    let mut since: HashMap<i64, i64> = HashMap::new();
    let mut longest = 0;
    loop {
        let rows = cluster.sql(&format!(
            "SELECT ti.id, ti.queued_at FROM task_instances ti JOIN runs r ON r.id = ti.run_pk \
             WHERE r.pipeline_id = '{dag}' AND r.run_id = '{run}' AND ti.state = 'queued'"
        ));
        let now = now_micros();
        let queued: HashMap<i64, i64> = rows
            .lines()
            .filter_map(|l| {
                let (id, at) = l.split_once('|')?;
                Some((id.parse().ok()?, at.parse().ok()?))
            })
            .collect();
        since.retain(|id, at| {
            longest = longest.max(now - *at);
            queued.contains_key(id)
        });
        for (id, at) in queued {
            let at = *since.entry(id).or_insert(at);
            longest = longest.max(now - at);
        }
        let state = cluster.cli(&["dags", "state", dag, run]).trim().to_string();
        if state == "success" || state == "failed" || Instant::now() > deadline {
            return Duration::from_micros(u64::try_from(longest).unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn postgres_down_30s_with_64_tasks_in_flight() {
    let _serial = serial();
    let postgres = PrivatePostgres::start();
    let mut cluster = Cluster::start_on(&postgres.address(), binary(), Persistence::AsGenerated, tuned());
    quiet(&cluster);
    cluster.spawn("scheduler", "scheduler-1");
    // 4 workers x 16 slots: every task of the run at once.
    for n in 1..=4 {
        cluster.spawn("worker", &format!("worker-{n}"));
    }
    let run = cluster.trigger("inflight64", r#"{"seconds": 20}"#);
    let running = "SELECT COUNT(*) FROM task_instances WHERE pipeline_id = 'inflight64' AND state = 'running'";
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&cluster, running) < 64 {
        assert!(Instant::now() < deadline, "64 tasks running at once\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The outage: every task ends while the database is away, its outcome held by its worker.
    let outage = Duration::from_secs(30);
    postgres.crash();
    std::thread::sleep(outage);
    postgres.start_again();
    let back = Instant::now();
    wait_success(&cluster, "inflight64", &run, Duration::from_secs(240));
    let recovered_in = back.elapsed();
    // Criterion: none lost (all 64 succeeded), none succeeded twice.
    let (tis, tries) = assert_success_exactly_once(&cluster, "inflight64", &run);
    let zombies = count(&cluster, "SELECT COUNT(*) FROM task_tries WHERE error LIKE 'zombie:%'");
    report(&format!(
        "PostgreSQL down {outage:?} with 64 tasks in flight: {tis} tasks each succeeded exactly once over {tries} \
         tries ({zombies} zombie tries); the run succeeded {recovered_in:?} after PostgreSQL was back"
    ));
    assert_eq!(tis, 64, "every task instance of the run");
    // Heartbeats that aged while the database was away prove no worker dead: no task was
    // reaped, so none ran its side effect twice.
    assert_eq!((zombies, tries), (0, 64), "no zombie tries after the outage, one try per task");
}

#[test]
fn worker_killed_between_side_effect_and_commit_runs_the_task_again() {
    let _serial = serial();
    let mut cluster = Cluster::start(binary(), Persistence::AsGenerated, tuned());
    quiet(&cluster);
    cluster.spawn("scheduler", "scheduler-1");
    let point = "store.finish.before_commit";
    spawn_failing(&mut cluster, "worker", "worker-1", point);
    let file = cluster.home().join("side-effect.log");
    let conf = serde_json::json!({ "file": file.display().to_string() }).to_string();
    let run = cluster.trigger("side_effect", &conf);
    wait_abort(&mut cluster, "worker-1", point);
    let lines = || std::fs::read_to_string(&file).map_or(0, |t| t.lines().count());
    // The shell task appended its line, and its success was not committed.
    let ran_before = lines();
    let successes_before = count(&cluster, "SELECT COUNT(*) FROM task_tries WHERE state = 'success'");
    let died = Instant::now();
    cluster.spawn("worker", "worker-2");
    wait_success(&cluster, "side_effect", &run, Duration::from_secs(60));
    let (tis, tries) = assert_success_exactly_once(&cluster, "side_effect", &run);
    let zombies = count(&cluster, "SELECT COUNT(*) FROM task_tries WHERE error LIKE 'zombie:%'");
    report(&format!(
        "worker killed at {point}: the side effect had happened {ran_before} time(s), {successes_before} success \
         recorded; after recovery ({:?}) {tis} task succeeded exactly once over {tries} tries ({zombies} zombie \
         try), its side effect happened {} times",
        died.elapsed(),
        lines()
    ));
    assert_eq!((ran_before, successes_before), (1, 0), "killed after the side effect, before the commit");
    // Criterion: at-least-once execution (it ran again, on a second try), exactly-once success.
    assert_eq!(tries, 2, "a second try");
    assert_eq!(lines(), 2, "the side effect of both tries");
}

/// Where a scheduler queues a run's first task: the decision's transaction (before its
/// commit), the committed decision (before it is handed to the publisher), the publisher
/// (before and after its `XADD` to the queue's stream). There is nothing to commit or
/// acknowledge after the `XADD`.
const SCHEDULER_POINTS: [&str; 4] =
    ["store.advance.before_commit", "scheduler.after_queued", "dispatch.before_publish", "dispatch.after_publish"];

/// Where a worker records a finish and queues what it made ready: the finish's
/// transaction (before its commit), the committed finish (before the queued tasks go to
/// the publisher), the publisher (before and after its `XADD`), and the acknowledgement of
/// the finished task's stream entry.
const WORKER_POINTS: [&str; 5] = [
    "store.finish.before_commit",
    "worker.after_finish_commit",
    "dispatch.before_publish",
    "dispatch.after_publish",
    "worker.before_ack",
];

/// Kills the first process of `role` at `point` while it queues tasks of an `enqueue`
/// run, starts another, and checks the run: it succeeds, each task once, and no task
/// stays queued past the re-dispatch bound. Returns the report's line.
fn killed_while_enqueueing(role: &str, point: &str) -> String {
    let mut cluster = Cluster::start(binary(), Persistence::AsGenerated, tuned());
    quiet(&cluster);
    let other = if role == "scheduler" { "worker" } else { "scheduler" };
    cluster.spawn(other, &format!("{other}-1"));
    spawn_failing(&mut cluster, role, &format!("{role}-1"), point);
    let run = cluster.trigger("enqueue", "{}");
    wait_abort(&mut cluster, &format!("{role}-1"), point);
    let left = cluster
        .sql("SELECT state || ' ' || COUNT(*) FROM task_instances WHERE pipeline_id = 'enqueue' GROUP BY state")
        .lines()
        .collect::<Vec<_>>()
        .join(", ");
    cluster.spawn(role, &format!("{role}-2"));
    let longest = longest_queued(&cluster, "enqueue", &run, Duration::from_secs(90));
    wait_success(&cluster, "enqueue", &run, Duration::from_secs(5));
    let (tis, tries) = assert_success_exactly_once(&cluster, "enqueue", &run);
    // Criterion: a task queued in the store but lost on its way to Redis is dispatched
    // again within the queued timeout and a scheduler pass (every half timeout), with room
    // for the claim and this test's polling.
    let bound = Duration::from_secs(QUEUED_SECS + QUEUED_SECS / 2 + 3);
    assert!(longest <= bound, "{role} killed at {point}: a task stayed queued {longest:?}, bound {bound:?}");
    format!(
        "{role} killed at {point} (left: {left}): {tis} tasks succeeded exactly once over {tries} tries; longest \
         stretch in queued {longest:.1?} (bound {bound:?})"
    )
}

#[test]
fn scheduler_killed_at_each_step_of_enqueueing() {
    let _serial = serial();
    for point in SCHEDULER_POINTS {
        report(&killed_while_enqueueing("scheduler", point));
    }
}

#[test]
fn worker_killed_at_each_step_of_enqueueing_downstream() {
    let _serial = serial();
    for point in WORKER_POINTS {
        report(&killed_while_enqueueing("worker", point));
    }
}
