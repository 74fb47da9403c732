//! The metadata store through the real PgBouncer in transaction mode, as the production
//! deployment runs it (the version the generated image builds): the generated
//! `pgbouncer.ini`, started by the compose service's entrypoint script, SCRAM logins as the
//! metadata user. The store's statements are named and prepared once per client
//! connection; PgBouncer maps them onto whichever server connection a transaction gets.
//!
//! 64 concurrent clients, each with its own `Store` (its own client connection), interleave
//! look-alike statements (`variable`, `pipeline`, `run`, `run_by_id`, `runs` ...) and check
//! every row they get back, then the final tables are checked through a direct connection.
//! A control shows that the hazard the store's design avoids (an unnamed statement parsed
//! on one server connection and executed on another) is real on this very setup.
//!
//! Run with `-- --nocapture` to see the one-line figures of each test.

use sluice_runtime::Registry;
use sluice_runtime::crypto::Crypto;
use sluice_runtime::rules::{RunState, RunType};
use sluice_runtime::spec::{PipelineSpec, Schedule, TaskKind, TaskSpec};
use sluice_runtime::store::{NewRun, RunRow, Store};
use sluice_testkit::compose::Compose;
use sluice_testkit::database::Database;
use sluice_testkit::pgbouncer::Bouncer;
use sluice_testkit::report;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;
use std::future::Future;
use std::time::{Duration, Instant};

/// As the measured PgBouncer workload: enough clients to exceed `default_pool_size` (25)
/// more than twice, so server connections change hands all the time.
const CLIENTS: usize = 64;
const OPS_PER_CLIENT: usize = 200;
/// One operation slower than this counts as an error (a hang is a failure, not a wait).
const OP_LIMIT: Duration = Duration::from_secs(30);
/// A whole round of every client's operations.
const ROUND_LIMIT: Duration = Duration::from_secs(300);
/// 2024-06-01T00:00:00Z
const T0: i64 = 1_717_200_000_000_000;
const HOUR: i64 = 3_600_000_000;

/// The tests run one at a time: on two cores, a concurrent run would halve both figures,
/// and two bouncers' server pools add up against PostgreSQL's `max_connections`.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_gives_every_client_its_own_rows_through_pgbouncer() {
    let _serial = SERIAL.lock().await;
    let compose = Compose::load();
    let db = Database::fresh("sluice_pgb_store");
    let bouncer = Bouncer::start(&compose, &db);
    let direct = Store::connect(&db.direct_url()).await.expect("connect directly to PostgreSQL");
    direct.migrate().await.expect("migrate (directly, as `init` does)");
    let registry = registry(CLIENTS);
    direct.sync_pipelines(registry).await.expect("sync the test pipelines");
    for i in 0..CLIENTS {
        let (name, role) = user_of(i);
        direct.create_user(&name, "", role, "pgbouncer-user-pw").await.expect("create a user directly");
    }

    // `Store::connect` caps its pool at 10 connections and each client runs one operation
    // at a time, so one store per client: 64 client connections to the bouncer.
    let mut stores = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let store = Store::connect(&bouncer.url()).await;
        stores.push(store.unwrap_or_else(|e| panic!("connect through pgbouncer: {e}\n{}", bouncer.log_tail())));
    }

    let started = Instant::now();
    let deadline = started + ROUND_LIMIT;
    let clients: Vec<_> = stores
        .into_iter()
        .zip(registry.pipelines)
        .enumerate()
        .map(|(i, (store, pipeline))| tokio::spawn(store_client(i, store, pipeline, deadline)))
        .collect();
    let mut tally = Tally::default();
    for client in clients {
        tally.merge(client.await.expect("a client task panicked"));
    }
    let elapsed = started.elapsed();
    report(&format!(
        "pgbouncer store: {CLIENTS} clients, {} ops in {:.1} s ({:.0} ops/s), {} errors, {} wrong rows",
        tally.ops,
        elapsed.as_secs_f64(),
        tally.ops as f64 / elapsed.as_secs_f64(),
        tally.errors,
        tally.wrong
    ));

    // What the clients wrote, read back past the bouncer.
    let crypto = Crypto::plaintext_for_tests();
    let cycles = OPS_PER_CLIENT / OPS_PER_CYCLE;
    for (i, pipeline) in registry.pipelines.iter().enumerate() {
        let value = direct.variable(&variable_key(i), &crypto).await.expect("read a variable directly");
        tally.verify("final variable", value == Some(variable_value(i, cycles - 1)), || {
            format!("client {i}: {value:?}")
        });
        let runs = direct.runs(pipeline.id, 1_000).await.expect("list runs directly");
        let ids: Vec<String> = runs.iter().rev().map(|r| r.run_id.clone()).collect();
        let expected: Vec<String> = (0..cycles).map(|k| run_id(i, k)).collect();
        tally.verify("final runs", ids == expected, || format!("client {i}: {ids:?}"));
    }

    // One round trip per statement: a statement is parsed once per client connection and
    // then only bound and executed (unprepared, every Bind would follow a Parse of its own).
    // Measured: 2,487 Parse for 17,920 Bind, the first use of ~35 statements on 64 clients.
    let stats = bouncer_stats(&bouncer, &db);
    let (parses, binds) = (stats("total_client_parse_count"), stats("total_bind_count"));
    report(&format!("pgbouncer store: {parses} client Parse messages for {binds} Bind messages"));
    assert!(
        binds >= (CLIENTS * OPS_PER_CLIENT) as u64 && parses * 2 < binds,
        "statements are not reused: {parses} Parse for {binds} Bind (the store prepares each once per connection)"
    );

    assert!(
        tally.errors == 0 && tally.wrong == 0 && tally.ops == CLIENTS * OPS_PER_CLIENT,
        "the store through pgbouncer: {} of {} ops, {} errors, {} wrong rows; first ones:\n{}\npgbouncer log:\n{}",
        tally.ops,
        CLIENTS * OPS_PER_CLIENT,
        tally.errors,
        tally.wrong,
        tally.samples.join("\n"),
        bouncer.log_tail()
    );
}

/// PgBouncer's `SHOW STATS` for the test database, through its admin console (the metadata
/// user is an admin user in the generated config): a column by name.
fn bouncer_stats(bouncer: &Bouncer, db: &Database) -> impl Fn(&str) -> u64 {
    let out = std::process::Command::new(sluice_testkit::process::tool("psql"))
        .arg(format!("host=127.0.0.1 port={} user={} dbname=pgbouncer connect_timeout=10", bouncer.port(), db.user()))
        .args(["-X", "-A", "-F", "\t", "-c", "SHOW STATS"])
        .env("PGPASSWORD", db.password())
        .output()
        .expect("run psql");
    assert!(out.status.success(), "SHOW STATS: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap_or_default().split('\t').map(str::to_string).collect();
    let row: Vec<String> = lines
        .find(|l| l.split('\t').next() == Some(db.name()))
        .unwrap_or_else(|| panic!("no SHOW STATS row for {}:\n{text}", db.name()))
        .split('\t')
        .map(str::to_string)
        .collect();
    move |column| {
        let i = header.iter().position(|h| h == column).unwrap_or_else(|| panic!("no {column} in SHOW STATS"));
        row[i].parse().unwrap_or_else(|e| panic!("{column} = {}: {e}", row[i]))
    }
}

/// The same concurrency and the same bouncer setup, with the store's safeguard removed:
/// unprepared sqlx statements (`persistent(false)`) sent on a plain pool, outside explicit
/// transactions. sqlx sends Parse/Describe/Sync, then Bind/Execute/Sync, and the bouncer
/// may hand the client another server connection between the two: the Bind then runs
/// whatever unnamed statement another client parsed there. Up to three rounds; a round
/// without a single error or wrong row is reported, and does not fail the test (the hazard
/// is timing-dependent).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_unprepared_statements_outside_transactions_go_wrong_through_pgbouncer() {
    let _serial = SERIAL.lock().await;
    let compose = Compose::load();
    let db = Database::fresh("sluice_pgb_control");
    let bouncer = Bouncer::start(&compose, &db);
    let direct = Store::connect(&db.direct_url()).await.expect("connect directly to PostgreSQL");
    direct.migrate().await.expect("migrate");
    let crypto = Crypto::plaintext_for_tests();
    for i in 0..CLIENTS {
        direct.set_variable(&variable_key(i), "initial", false, None, &crypto).await.expect("seed a variable");
    }

    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(u32::try_from(CLIENTS).expect("few clients"))
        .test_before_acquire(false)
        .connect(&bouncer.url())
        .await
        .unwrap_or_else(|e| panic!("connect through pgbouncer: {e}\n{}", bouncer.log_tail()));

    let mut total = Tally::default();
    for round in 1..=3 {
        let started = Instant::now();
        let deadline = started + ROUND_LIMIT;
        let clients: Vec<_> =
            (0..CLIENTS).map(|i| tokio::spawn(raw_client(i, round, pool.clone(), deadline))).collect();
        let mut tally = Tally::default();
        for client in clients {
            tally.merge(client.await.expect("a client task panicked"));
        }
        let elapsed = started.elapsed();
        report(&format!(
            "pgbouncer control (persistent(false), no transaction), round {round}: {CLIENTS} clients, {} ops in \
             {:.1} s ({:.0} ops/s), {} errors, {} wrong rows",
            tally.ops,
            elapsed.as_secs_f64(),
            tally.ops as f64 / elapsed.as_secs_f64(),
            tally.errors,
            tally.wrong
        ));
        total.merge(tally);
        if total.errors + total.wrong > 0 {
            break;
        }
    }
    if total.errors + total.wrong == 0 {
        report(&format!(
            "pgbouncer control: the hazard did NOT show in {} ops on this machine; the store test above proves \
             less than it could",
            total.ops
        ));
    } else {
        report(&format!("pgbouncer control: the hazard is real here; first ones:\n{}", total.samples.join("\n")));
    }
}

// ---------------------------------------------------------------------------------------
// The store client
// ---------------------------------------------------------------------------------------

const OPS_PER_CYCLE: usize = 10;

/// One client: per cycle, a write and seven reads, each checked against what this client
/// alone wrote. Look-alikes: `variable` and `pipeline` (one text parameter each),
/// `run_by_id`, `run` and `runs` (the same columns of `runs`), `task_instances`.
async fn store_client(i: usize, store: Store, pipeline: &'static PipelineSpec, deadline: Instant) -> Tally {
    let crypto = Crypto::plaintext_for_tests();
    let key = variable_key(i);
    let mut t = Tally::default();
    let mut created: Vec<RunRow> = Vec::new();
    let (user, role) = user_of(i);
    let mut stamp = None;
    for k in 0..OPS_PER_CLIENT / OPS_PER_CYCLE {
        if Instant::now() > deadline {
            t.sample(format!("client {i}: round deadline passed at cycle {k}"));
            break;
        }
        let value = variable_value(i, k);
        // A sign-out, then the read every request of a session makes: this client's row.
        t.run("end_sessions", store.end_sessions(&user), |()| Ok(())).await;
        let account = t
            .run("account", store.account(&user), |got| match got {
                Some(a) if a.role == role && Some(a.session_stamp) != stamp => Ok(()),
                other => Err(format!("{user}: {other:?} after the stamp {stamp:?}")),
            })
            .await;
        stamp = account.flatten().map(|a| a.session_stamp).or(stamp);
        t.run("set_variable", store.set_variable(&key, &value, false, None, &crypto), |()| Ok(())).await;
        t.run("variable", store.variable(&key, &crypto), |got| same(got, &Some(value.clone()))).await;

        let new = NewRun {
            run_id: run_id(i, k),
            run_type: RunType::Manual,
            logical_date: logical_date(k),
            data_interval_start: logical_date(k),
            data_interval_end: logical_date(k),
            conf: serde_json::json!({ "client": i, "cycle": k }),
        };
        let run = t
            .run("create_run", store.create_run(pipeline, &new), |run| {
                let ok = run.pipeline_id == pipeline.id
                    && run.run_id == new.run_id
                    && run.logical_date == new.logical_date
                    && serde_json::from_str::<serde_json::Value>(&run.conf).ok().as_ref() == Some(&new.conf)
                    && run.state == RunState::Queued;
                if ok { Ok(()) } else { Err(format!("created {new:?}, got {run:?}")) }
            })
            .await;
        let Some(run) = run else { continue };
        created.push(run.clone());

        t.run("run_by_id", store.run_by_id(pipeline.id, &run.run_id), |got| same(got, &run)).await;
        t.run("run", store.run(run.id), |got| same(got, &run)).await;
        let newest: Vec<RunRow> = created.iter().rev().take(3).cloned().collect();
        t.run("runs", store.runs(pipeline.id, 3), |got| same(got, &newest)).await;
        t.run("task_instances", store.task_instances(run.id), |tis| {
            let got: Vec<(i64, &str)> = tis.iter().map(|ti| (ti.run_pk, ti.task_id.as_str())).collect();
            let expected: Vec<(i64, &str)> = pipeline.tasks.iter().map(|task| (run.id, task.id)).collect();
            same(&got, &expected)
        })
        .await;
        t.run("pipeline", store.pipeline(pipeline.id), |row| {
            same(&(row.pipeline_id.as_str(), row.version_hash.as_str()), &(pipeline.id, pipeline.version_hash))
        })
        .await;
    }
    t
}

/// Each client's user and role: a web server reads one such row per request.
fn user_of(client: usize) -> (String, &'static str) {
    (format!("user_{client}"), sluice_runtime::store::ROLES[client % sluice_runtime::store::ROLES.len()])
}

fn variable_key(client: usize) -> String {
    format!("pgb_var_{client:02}")
}

fn variable_value(client: usize, cycle: usize) -> String {
    format!("client {client} value {cycle}")
}

fn run_id(client: usize, cycle: usize) -> String {
    format!("manual__c{client:02}_k{cycle:03}")
}

fn logical_date(cycle: usize) -> i64 {
    T0 + i64::try_from(cycle).expect("few cycles") * HOUR
}

fn same<T: PartialEq + std::fmt::Debug>(got: &T, expected: &T) -> Result<(), String> {
    if got == expected { Ok(()) } else { Err(format!("expected {expected:?}, got {got:?}")) }
}

// ---------------------------------------------------------------------------------------
// The control client
// ---------------------------------------------------------------------------------------

const UPSERT: &str = "INSERT INTO variables (key, val, updated_at) VALUES ($1, $2, $3) \
                      ON CONFLICT (key) DO UPDATE SET val = excluded.val, updated_at = excluded.updated_at";
const OWN: &str = "SELECT key, val FROM variables WHERE key = $1";
const NEXT: &str = "SELECT key, val FROM variables WHERE key > $1 ORDER BY key LIMIT 1";
const PREVIOUS: &str = "SELECT key, val FROM variables WHERE key < $1 ORDER BY key DESC LIMIT 1";

/// The store's variable statements, sent as sqlx sends them without the store's explicit
/// transaction. `OWN`, `NEXT` and `PREVIOUS` take the same parameter and return the same
/// columns, so one executed in place of another returns a plausible, wrong row.
async fn raw_client(i: usize, round: usize, pool: sqlx::AnyPool, deadline: Instant) -> Tally {
    let key = variable_key(i);
    let neighbour = |j: Option<usize>| j.filter(|j| *j < CLIENTS).map(variable_key);
    let (next, previous) = (neighbour(Some(i + 1)), neighbour(i.checked_sub(1)));
    let mut t = Tally::default();
    // What the client's own key holds: the last value it wrote without an error.
    let mut value = None;
    for k in 0..OPS_PER_CLIENT / 4 {
        if Instant::now() > deadline {
            t.sample(format!("client {i}: round deadline passed at cycle {k}"));
            break;
        }
        let attempt = format!("round {round} {}", variable_value(i, k));
        let upsert =
            sqlx::query(UPSERT).persistent(false).bind(&key).bind(&attempt).bind(logical_date(k)).execute(&pool);
        if t.run("upsert", upsert, |done| same(&done.rows_affected(), &1)).await.is_some() {
            value = Some(attempt);
        }
        for (what, sql, expected_key) in
            [("own", OWN, Some(&key)), ("next", NEXT, next.as_ref()), ("previous", PREVIOUS, previous.as_ref())]
        {
            let select = async {
                let row = sqlx::query(sql).persistent(false).bind(&key).fetch_optional(&pool).await?;
                row.map(|r| Ok::<_, sqlx::Error>((r.try_get::<String, _>("key")?, r.try_get::<String, _>("val")?)))
                    .transpose()
            };
            t.run(what, select, |got| match (got, expected_key) {
                (Some((got_key, got_val)), Some(expected)) if got_key == expected => {
                    // Only the client's own value is known: its neighbours keep writing.
                    match &value {
                        Some(value) if what == "own" => same(got_val, value),
                        _ => Ok(()),
                    }
                }
                (None, None) => Ok(()),
                _ => Err(format!("for key {key} expected key {expected_key:?}, got {got:?}")),
            })
            .await;
        }
    }
    t
}

// ---------------------------------------------------------------------------------------
// Counting
// ---------------------------------------------------------------------------------------

/// Operations, errors and wrong rows, with the first few of each kept for the message.
#[derive(Debug, Default)]
struct Tally {
    ops: usize,
    errors: usize,
    wrong: usize,
    samples: Vec<String>,
}

impl Tally {
    /// Runs one operation within [`OP_LIMIT`] and checks its result: `Some` when it
    /// succeeded (right or wrong), `None` on an error or timeout.
    async fn run<T, E: std::fmt::Display>(
        &mut self,
        what: &str,
        op: impl Future<Output = Result<T, E>>,
        check: impl FnOnce(&T) -> Result<(), String>,
    ) -> Option<T> {
        self.ops += 1;
        match tokio::time::timeout(OP_LIMIT, op).await {
            Err(_) => {
                self.errors += 1;
                self.sample(format!("{what}: no answer within {OP_LIMIT:?}"));
                None
            }
            Ok(Err(e)) => {
                self.errors += 1;
                self.sample(format!("{what}: error: {e}"));
                None
            }
            Ok(Ok(value)) => {
                if let Err(wrong) = check(&value) {
                    self.wrong += 1;
                    self.sample(format!("{what}: WRONG ROW: {wrong}"));
                }
                Some(value)
            }
        }
    }

    /// A check outside the operations (the final state).
    fn verify(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
        if !ok {
            self.wrong += 1;
            self.sample(format!("{what}: WRONG: {}", detail()));
        }
    }

    fn sample(&mut self, line: String) {
        if self.samples.len() < 12 {
            self.samples.push(line);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ops += other.ops;
        self.errors += other.errors;
        self.wrong += other.wrong;
        for line in other.samples {
            self.sample(line);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Specs
// ---------------------------------------------------------------------------------------

/// `extract` -> `load`, with the graph facts the compiler emits for them.
static TASKS: [TaskSpec; 2] = [
    TaskSpec { downstream: &[1], effective_priority_weight: 2, ..task("extract", &[]) },
    TaskSpec { upstream: &[0], depth: 1, ..task("load", &["extract"]) },
];

/// `n` manual pipelines of two tasks, one per client, so each client's `runs` are its own.
fn registry(n: usize) -> &'static Registry {
    let pipelines: Vec<PipelineSpec> = (0..n)
        .map(|i| PipelineSpec {
            id: Box::leak(format!("pgb_pipeline_{i:02}").into_boxed_str()),
            description: "",
            owner: "test",
            tags: &[],
            schedule: Schedule::Manual,
            schedule_text: "",
            timezone: "UTC",
            start_date: Some("2024-01-01T00:00:00"),
            end_date: None,
            catchup: false,
            max_active_runs: 16,
            max_active_tasks: 16,
            paused_at_creation: false,
            params: &[],
            on_failure: &[],
            on_success: &[],
            email: &[],
            tasks: &TASKS,
            topo_order: &[0, 1],
            version_hash: "v1",
        })
        .collect();
    Box::leak(Box::new(Registry {
        source: "tests/pgbouncer_store.rs",
        deployment: sluice::REGISTRY.deployment,
        connections: &[],
        pools: &[],
        datasets: &[],
        pipelines: Box::leak(pipelines.into_boxed_slice()),
        sources: &[],
        python_context: "",
        dispatch: sluice::REGISTRY.dispatch,
    }))
}

const fn task(id: &'static str, depends_on: &'static [&'static str]) -> TaskSpec {
    TaskSpec { depends_on, ..TaskSpec::new(id, TaskKind::shell("true")) }
}
