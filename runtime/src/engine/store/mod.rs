//! The metadata store: one API over PostgreSQL (production, also through PgBouncer in
//! transaction mode) and SQLite (the embedded default, or in memory for `dags test`).
//!
//! Every statement is prepared once per connection and kept (sqlx's statement cache), so
//! it costs one round trip from then on (an unprepared one costs two: Parse/Describe, then
//! Bind/Execute). Through PgBouncer this needs 1.21 or later with
//! `max_prepared_statements` set, as the generated `pgbouncer.ini` has it: PgBouncer then
//! prepares a client's named statements on whichever server connection a transaction
//! gets. An older PgBouncer in transaction mode would hand one client's statement names to
//! another's server connection. Times are microseconds since the epoch; JSON is text.

mod alerts;
mod audit;
mod connections;
mod datasets;
mod liveness;
mod metrics;
mod pipelines;
mod runs;
mod sql;
mod users;
mod variables;

pub use alerts::{Event, MAX_ATTEMPTS, NotificationRow, SlaMissRow};
pub use audit::{Actor, AuditFilter, AuditOrder, AuditRow, Change, Surface};
pub use connections::{ConnectionImport, ConnectionInfo, ConnectionSource, ConnectionSyncReport, RotationReport};
pub use datasets::{DatasetEvent, DatasetEventFilter, DatasetRow, QueuedDatasetEvent};
pub use liveness::Zombie;
pub use metrics::Snapshot;
pub use pipelines::{PipelineRow, PoolUsage, SyncReport};
pub use runs::{
    CLEAN_BATCH, Claimed, Finish, LogAppend, LogFrom, LogRow, NewRun, Outcome, Queued, Recorded, RecordedBatch,
    RunFilter, RunRow, Take, TiFilter, TiRow, Trail,
};
pub use sql::Dialect;
pub(crate) use sql::{Doing, Tx, get, opt, q};
pub use users::{
    Account, AdminSetup, MIN_PASSWORD_CHARS, NewUser, ROLES, UserRow, check_new_password, generate_password,
    hash_password, verify_password,
};
pub use variables::{OnExisting, Variable, VariableImport, VariableInfo, is_secret_variable};

use crate::clock::{Clock, Micros, SystemClock};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, SqlSafeStr};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A store failure, with what was being done.
#[derive(Debug)]
pub enum StoreError {
    /// The database could not be reached or refused the connection.
    Connect {
        url: String,
        source: sqlx::Error,
    },
    /// A statement failed.
    Query {
        doing: &'static str,
        source: sqlx::Error,
    },
    Migrate(sqlx::migrate::MigrateError),
    /// Something named does not exist.
    NotFound(String),
    /// The request conflicts with the current state (a duplicate run, a paused pipeline...).
    Conflict(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Connect { url, source } => {
                write!(f, "cannot connect to the metadata database at {url}: {}", first_line(source))
            }
            StoreError::Query { doing, source } => {
                write!(f, "metadata database error while {doing}: {}", first_line(source))
            }
            StoreError::Migrate(e) => write!(f, "database migration failed: {e}"),
            StoreError::NotFound(what) => write!(f, "{what} not found"),
            StoreError::Conflict(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// The same failure, for each of several callers whose work shared the transaction
    /// that failed (the database error itself cannot be copied; its message is kept).
    /// Connection and statement failures stay retryable.
    pub fn for_each_caller(&self) -> StoreError {
        match self {
            StoreError::Connect { .. } | StoreError::Query { .. } => {
                StoreError::Query { doing: "recording a task outcome", source: sqlx::Error::Protocol(self.to_string()) }
            }
            other => StoreError::Conflict(other.to_string()),
        }
    }
}

fn first_line(e: &sqlx::Error) -> String {
    describe_sqlx_error(e)
}

/// A database error as one line for people: PostgreSQL's message with its SQLSTATE code,
/// detail and hint. sqlx's own text ends in ` at line N`, which is a line of the server's C
/// source, not of anything the user wrote.
pub fn describe_sqlx_error(e: &sqlx::Error) -> String {
    if let Some(pg) = e.as_database_error().and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()) {
        let mut text = format!("{} (SQLSTATE {})", pg.message(), pg.code());
        if let Some(detail) = pg.detail() {
            text.push_str("; ");
            text.push_str(detail);
        }
        if let Some(hint) = pg.hint() {
            text.push_str("; hint: ");
            text.push_str(hint);
        }
        return text;
    }
    e.to_string().lines().next().unwrap_or_default().to_string()
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Statements each PostgreSQL connection keeps prepared: more than the store has, so none
/// is evicted (an eviction costs a round trip of its own).
const STATEMENT_CACHE_CAPACITY: usize = 500;

/// The metadata store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Dialect,
    clock: Arc<dyn Clock>,
    /// The person whose changes this store records in the audit log (see `audit`).
    actor: Option<Arc<Actor>>,
}

const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "metadata", include_str!("../../../../migrations/postgres/0001_metadata.sql")),
    (2, "alerts", include_str!("../../../../migrations/postgres/0002_alerts.sql")),
    (3, "rendered", include_str!("../../../../migrations/postgres/0003_rendered.sql")),
    (4, "scheduled", include_str!("../../../../migrations/postgres/0004_scheduled.sql")),
    (5, "session_stamp", include_str!("../../../../migrations/postgres/0005_session_stamp.sql")),
    (6, "task_log_usage", include_str!("../../../../migrations/postgres/0006_task_log_usage.sql")),
    (7, "notes", include_str!("../../../../migrations/postgres/0007_notes.sql")),
    (8, "audit_log", include_str!("../../../../migrations/postgres/0008_audit_log.sql")),
    (9, "authoring", include_str!("../../../../migrations/postgres/0009_authoring.sql")),
];
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "metadata", include_str!("../../../../migrations/sqlite/0001_metadata.sql")),
    (2, "alerts", include_str!("../../../../migrations/sqlite/0002_alerts.sql")),
    (3, "rendered", include_str!("../../../../migrations/sqlite/0003_rendered.sql")),
    (4, "scheduled", include_str!("../../../../migrations/sqlite/0004_scheduled.sql")),
    (5, "session_stamp", include_str!("../../../../migrations/sqlite/0005_session_stamp.sql")),
    (6, "task_log_usage", include_str!("../../../../migrations/sqlite/0006_task_log_usage.sql")),
    (7, "notes", include_str!("../../../../migrations/sqlite/0007_notes.sql")),
    (8, "audit_log", include_str!("../../../../migrations/sqlite/0008_audit_log.sql")),
    (9, "authoring", include_str!("../../../../migrations/sqlite/0009_authoring.sql")),
];

const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
];

impl Store {
    /// Connects to `postgres://...` or `sqlite://path` (created when missing).
    pub async fn connect(url: &str) -> Result<Store> {
        Store::open(url, false).await
    }

    /// A PostgreSQL store that connects on first use, for a service that must answer
    /// (`/health`: unhealthy) while the database is still away; SQLite opens at once.
    pub async fn connect_lazy(url: &str) -> Result<Store> {
        Store::open(url, true).await
    }

    async fn open(url: &str, lazy: bool) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            return Err(StoreError::Conflict(format!(
                "unsupported database URL `{}`: use postgres://... or sqlite://path",
                redact(url)
            )));
        };
        let options = match backend {
            // SQLite has one writer: one connection serializes transactions in-process
            // instead of failing them with SQLITE_BUSY.
            // Settings are per connection: every connection the pool opens gets them.
            Dialect::Sqlite => AnyPoolOptions::new().max_connections(1).after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in SQLITE_PRAGMAS {
                        sqlx::Executor::execute(&mut *conn, *pragma).await?;
                    }
                    Ok(())
                })
            }),
            Dialect::Postgres => AnyPoolOptions::new().max_connections(10).test_before_acquire(false),
        };
        let url_with_options = match backend {
            Dialect::Sqlite if !url.contains('?') && !url.contains(":memory:") => format!("{url}?mode=rwc"),
            Dialect::Postgres if !url.contains("statement-cache-capacity") => {
                let joiner = if url.contains('?') { '&' } else { '?' };
                format!("{url}{joiner}statement-cache-capacity={STATEMENT_CACHE_CAPACITY}")
            }
            _ => url.to_string(),
        };
        let pool = if lazy && backend == Dialect::Postgres {
            options.connect_lazy(&url_with_options)
        } else {
            options.connect(&url_with_options).await
        }
        .map_err(|source| StoreError::Connect { url: redact(url), source })?;
        Ok(Store { pool, backend, clock: Arc::new(SystemClock), actor: None })
    }

    /// An empty store in memory: `dags test` and tests.
    pub async fn in_memory() -> Result<Store> {
        let store = Store::connect("sqlite::memory:").await?;
        store.migrate().await?;
        Ok(store)
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Store {
        self.clock = clock;
        self
    }

    pub fn backend(&self) -> Dialect {
        self.backend
    }

    pub fn now(&self) -> Micros {
        self.clock.now()
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Applies pending migrations; forward-only and idempotent. Returns how many ran.
    pub async fn migrate(&self) -> Result<usize> {
        let list = match self.backend {
            Dialect::Postgres => POSTGRES_MIGRATIONS,
            Dialect::Sqlite => SQLITE_MIGRATIONS,
        };
        let migrations: Vec<Migration> = list
            .iter()
            .map(|(version, name, sql)| {
                // sqlx's convention: a migration that manages its own transaction says so first.
                let no_tx = sql.starts_with("-- no-transaction");
                Migration::new(*version, Cow::Borrowed(*name), MigrationType::Simple, sql.into_sql_str(), no_tx)
            })
            .collect();
        let migrator = Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT };
        let before = self.applied_migrations().await;
        migrator.run(&self.pool).await.map_err(StoreError::Migrate)?;
        let after = self.applied_migrations().await;
        Ok(after.saturating_sub(before))
    }

    async fn applied_migrations(&self) -> usize {
        let row: std::result::Result<(i64,), _> =
            sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations").persistent(false).fetch_one(&self.pool).await;
        row.map_or(0, |(n,)| usize::try_from(n).unwrap_or(0))
    }

    /// A round trip to the database, for health checks.
    pub async fn check(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        q("SELECT 1").execute(&mut *tx).await.doing("checking the connection")?;
        tx.commit().await.doing("checking the connection")
    }

    /// Runs one administrative statement outside a transaction (`CREATE DATABASE`,
    /// `VACUUM`): only for trusted, fixed SQL.
    pub async fn execute_admin(&self, sql: &str) -> Result<()> {
        q(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await
            .doing("running an administrative statement")?;
        Ok(())
    }

    /// SQLite's `data_version`: it changes when another process commits to the file,
    /// which is how standalone notices a `sluice dags trigger` from a second terminal
    /// without polling any table. `None` on PostgreSQL.
    pub async fn external_change_marker(&self) -> Result<Option<i64>> {
        if self.backend != Dialect::Sqlite {
            return Ok(None);
        }
        let row = q("PRAGMA data_version").fetch_one(&self.pool).await.doing("reading the data version")?;
        Ok(Some(get::<i64>(&row, "data_version")?))
    }

    /// A transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`): a
    /// deferred one that reads and then writes fails with "database is locked" when
    /// another process (the CLI beside `sluice standalone`) wrote in between, where an
    /// immediate one waits for the busy timeout.
    pub(crate) async fn begin(&self) -> Result<Tx> {
        match self.backend {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
        .doing("starting a transaction")
    }

    /// A transaction that runs alone among those begun with the same `what` (PostgreSQL:
    /// a transaction-scoped advisory lock, which PgBouncer's transaction mode keeps
    /// correct; SQLite: every writer is alone). For work several processes may start at
    /// once, such as two `sluice init`s syncing the same pipelines.
    pub(crate) async fn begin_exclusive(&self, what: &str) -> Result<Tx> {
        let mut tx = self.begin().await?;
        if self.backend == Dialect::Postgres {
            q("SELECT pg_advisory_xact_lock(hashtext($1)) IS NULL AS locked")
                .bind(format!("sluice:{what}"))
                .fetch_one(&mut *tx)
                .await
                .doing("waiting for a concurrent sync")?;
        }
        Ok(tx)
    }

    /// `FOR UPDATE` where the backend has row locks (SQLite serializes writers instead).
    pub(crate) fn for_update(&self) -> &'static str {
        match self.backend {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }
}

/// A database URL with its password hidden.
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match base[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &base[..scheme + 3], &base[at..]),
            None => base.to_string(),
        },
        _ => base.to_string(),
    };
    if let Some(query) = query {
        // libpq and sqlx also take the password as a parameter: `?password=...`.
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_string(),
            })
            .collect();
        out = format!("{out}?{}", params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=disable&password=pw"),
            "postgres://u@h/db?sslmode=disable&password=***"
        );
    }
}
