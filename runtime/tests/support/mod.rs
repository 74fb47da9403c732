//! Test support: hand-written specs (what generated code would declare) and stores on
//! both backends — SQLite in memory, and a fresh PostgreSQL database per test.

#![allow(dead_code)]

pub mod servers;

use sluice_runtime::Registry;
use sluice_runtime::clock::ManualClock;
use sluice_runtime::spec::*;
use sluice_runtime::store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A dispatch that keeps what it is handed, for the test to run.
#[derive(Debug, Default)]
pub struct Collect(pub std::sync::Mutex<Vec<sluice_runtime::store::Queued>>);

impl sluice_runtime::scheduler::Dispatch for Collect {
    fn dispatch(&self, queued: Vec<sluice_runtime::store::Queued>) {
        self.0.lock().expect("lock").extend(queued);
    }
}

impl Collect {
    /// What was handed over since the last call.
    pub fn take(&self) -> Vec<sluice_runtime::store::Queued> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }

    /// The task instance ids handed over, without taking them.
    pub fn ids(&self) -> Vec<i64> {
        self.0.lock().expect("lock").iter().map(|q| q.ti_id).collect()
    }
}

pub const fn task(id: &'static str, depends_on: &'static [&'static str]) -> TaskSpec {
    // The graph facts of a task with nothing above or below it; a pipeline whose tasks
    // depend on each other goes through [`graphed`].
    TaskSpec { depends_on, ..TaskSpec::new(id, TaskKind::shell("true")) }
}

pub const fn pipeline(id: &'static str, schedule: Schedule, tasks: &'static [TaskSpec]) -> PipelineSpec {
    PipelineSpec {
        id,
        description: "",
        owner: "test",
        tags: &[],
        schedule,
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
        tasks,
        topo_order: in_order(tasks.len()),
        version_hash: "v1",
    }
}

/// `0, 1, ..., n - 1`: the topological order of `n` tasks that do not depend on each other
/// (up to 64 of them, else empty: more go through [`graphed`]).
pub const fn in_order(n: usize) -> &'static [u32] {
    match IN_ORDER.split_at_checked(n) {
        Some((order, _)) => order,
        None => &[],
    }
}

const IN_ORDER: &[u32] = &{
    let mut order = [0u32; 64];
    let mut i = 0;
    while i < order.len() {
        order[i] = i as u32;
        i += 1;
    }
    order
};

/// `p` with the graph facts of its `depends_on` and weights, derived as the compiler
/// derives them (the specs written here give dependencies only). The runtime refuses a
/// pipeline whose facts do not fit, so one left out shows at its first sync.
pub fn graphed(p: PipelineSpec) -> PipelineSpec {
    let index = |id: &str| p.tasks.iter().position(|t| t.id == id).map(|i| i as u32);
    let upstream: Vec<Vec<u32>> =
        p.tasks.iter().map(|t| t.depends_on.iter().filter_map(|d| index(d)).collect()).collect();
    let weights: Vec<i64> = p.tasks.iter().map(|t| i64::from(t.priority_weight)).collect();
    let facts = sluice_contract::graph::facts(&upstream, &weights).expect("a pipeline without cycles");
    let tasks: Vec<TaskSpec> = p
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| TaskSpec {
            upstream: Vec::leak(upstream[i].clone()),
            downstream: Vec::leak(facts.downstream[i].clone()),
            depth: facts.depth[i],
            effective_priority_weight: facts.effective_weight[i],
            ..t.clone()
        })
        .collect();
    PipelineSpec { tasks: Vec::leak(tasks), topo_order: Vec::leak(facts.topo_order), ..p }
}

pub static DEPLOYMENT: DeploymentSpec = DeploymentSpec {
    project: "test",
    webserver_port: 8080,
    parallelism: 32,
    worker_concurrency: 4,
    worker_replicas: 1,
    queues: &["default"],
    paused_at_creation: false,
    load_examples: false,
    admin_username_env: "SLUICE_ADMIN_USERNAME",
    admin_password_env: "SLUICE_ADMIN_PASSWORD",
    admin_email_env: "SLUICE_ADMIN_EMAIL",
    fernet_key_env: "SLUICE_FERNET_KEY",
    secret_key_env: "SLUICE_SECRET_KEY",
    broker_db: 1,
    rate_limit_db: 2,
    python: "python3",
};

pub fn no_dispatch<'a>(_: &str, _: &str, _: &'a sluice_runtime::TaskInput) -> Option<sluice_runtime::TaskFuture<'a>> {
    None
}

pub fn registry(pipelines: &'static [PipelineSpec], pools: &'static [PoolSpec]) -> &'static Registry {
    Box::leak(Box::new(Registry {
        source: "test.yaml",
        deployment: &DEPLOYMENT,
        connections: &[],
        pools,
        datasets: &[],
        pipelines,
        sources: &[],
        python_context: "",
        dispatch: no_dispatch,
    }))
}

/// 2024-06-01T00:00:00Z
pub const T0: i64 = 1_717_200_000_000_000;

static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// Which backends the behavioural suite runs on.
#[derive(Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Db; 2] = [Db::Sqlite, Db::Postgres];

/// The `postgres` database of the tests' PostgreSQL (the machine's on 127.0.0.1:5432, or a
/// private one: [`sluice_testkit::postgres::address`]).
pub fn postgres_admin() -> String {
    sluice_testkit::postgres::url("postgres")
}

/// A migrated, empty store on `db`, with a manual clock at `T0`.
pub async fn store(db: &Db) -> (Store, Arc<ManualClock>) {
    let clock = ManualClock::at(T0);
    let store = match db {
        Db::Sqlite => Store::in_memory().await.expect("sqlite store"),
        Db::Postgres => {
            let name = format!("sluice_test_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst));
            let admin =
                Store::connect(&postgres_admin()).await.expect("the tests' PostgreSQL (trust auth for postgres)");
            admin.execute_admin(&format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop db");
            admin.execute_admin(&format!("CREATE DATABASE {name}")).await.expect("create db");
            let store = Store::connect(&sluice_testkit::postgres::url(&name)).await.expect("connect");
            store.migrate().await.expect("migrate");
            store
        }
    };
    (store.with_clock(clock.clone()), clock)
}

/// A registry declaring `connections` (what `pipelines.yaml` would), with no pipelines.
pub fn registry_with_connections(connections: &'static [ConnectionSpec]) -> &'static Registry {
    Box::leak(Box::new(Registry {
        source: "test.yaml",
        deployment: &DEPLOYMENT,
        connections,
        pools: &[],
        datasets: &[],
        pipelines: &[],
        sources: &[],
        python_context: "",
        dispatch: no_dispatch,
    }))
}

/// A migrated, empty store on `db` and its URL, so a test can read the raw tables through
/// a second, independent connection: a SQLite file in a temporary folder (kept while the
/// returned guard lives), or a fresh PostgreSQL database.
pub async fn store_with_url(db: &Db) -> (Store, String, Option<tempfile::TempDir>) {
    match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("store.sqlite").display());
            let store = Store::connect(&url).await.expect("sqlite store");
            store.migrate().await.expect("migrate");
            (store.with_clock(ManualClock::at(T0)), url, Some(dir))
        }
        Db::Postgres => {
            let name = format!("sluice_test_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst));
            let admin =
                Store::connect(&postgres_admin()).await.expect("the tests' PostgreSQL (trust auth for postgres)");
            admin.execute_admin(&format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop db");
            admin.execute_admin(&format!("CREATE DATABASE {name}")).await.expect("create db");
            let url = sluice_testkit::postgres::url(&name);
            let store = Store::connect(&url).await.expect("connect");
            store.migrate().await.expect("migrate");
            (store.with_clock(ManualClock::at(T0)), url, None)
        }
    }
}
