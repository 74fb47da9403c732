//! Settings from the environment, with the defaults of the embedded mode.

use crate::registry::Registry;
use crate::tasklog::LogLimits;
use std::path::PathBuf;
use std::time::Duration;

/// Where the services find the store and what they serve on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SLUICE_DATABASE_URL`; standalone defaults to a SQLite file under `home`.
    pub database_url: Option<String>,
    /// `SLUICE_DATABASE_DIRECT_URL`: the database without PgBouncer, for migrations.
    pub database_direct_url: Option<String>,
    /// `SLUICE_HOME` (default `./sluice-data`): the SQLite file and other local state.
    pub home: PathBuf,
    /// `SLUICE_WEBSERVER_PORT`, else the deployment's `webserver_port`.
    pub port: u16,
    /// `SLUICE_BROKER_URL`: the Redis broker of distributed mode (`redis://redis:6379/1`).
    pub broker_url: Option<String>,
    /// `SLUICE_HEARTBEAT_SECS` (default 5): how often services and running tasks beat.
    pub heartbeat_every: Duration,
    /// `SLUICE_ZOMBIE_THRESHOLD_SECS` (default 60): a running task whose heartbeat is
    /// older is a zombie (its worker died) and fails its try, retried per its retries.
    pub zombie_threshold: Duration,
    /// `SLUICE_QUEUED_TIMEOUT_SECS` (default 120): a task queued longer is dispatched again.
    pub queued_timeout: Duration,
    /// `SLUICE_WORKER_GRACE_SECS` (default 60): on SIGTERM, how long a worker lets running
    /// tasks finish before it hands them back.
    pub worker_grace: Duration,
    /// `SLUICE_TASK_LOG_MAX_LINES` (default 100,000) and `SLUICE_TASK_LOG_MAX_BYTES`
    /// (default 10 MiB): the most of one try's log that is kept, whichever comes first.
    pub task_log: LogLimits,
    /// `SLUICE_RECORD_PATIENCE_SECS` (default 300): how long a worker retries recording an
    /// outcome while the database is away, holding the task's slot; the outcome then waits
    /// in the spool (`home/spool`).
    pub record_patience: Duration,
}

impl Settings {
    pub fn from_env(registry: &Registry) -> Settings {
        Settings::from_lookup(registry, &|name| std::env::var(name).ok())
    }

    /// Settings from `lookup` (the environment, or a test's map); empty values are unset.
    pub fn from_lookup(registry: &Registry, lookup: &dyn Fn(&str) -> Option<String>) -> Settings {
        let var = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let positive = |name: &str| var(name).and_then(|v| v.trim().parse::<u64>().ok()).filter(|n| *n > 0);
        let secs = |name: &str, default: u64| Duration::from_secs(positive(name).unwrap_or(default));
        Settings {
            database_url: var(sluice_contract::settings::DATABASE_URL),
            database_direct_url: var(sluice_contract::settings::DATABASE_DIRECT_URL),
            home: var(sluice_contract::settings::HOME).map_or_else(|| PathBuf::from("sluice-data"), PathBuf::from),
            port: var(sluice_contract::settings::WEBSERVER_PORT)
                .and_then(|p| p.parse().ok())
                .unwrap_or(registry.deployment.webserver_port),
            broker_url: var(sluice_contract::settings::BROKER_URL),
            heartbeat_every: secs("SLUICE_HEARTBEAT_SECS", 5),
            zombie_threshold: secs("SLUICE_ZOMBIE_THRESHOLD_SECS", 60),
            queued_timeout: secs("SLUICE_QUEUED_TIMEOUT_SECS", 120),
            worker_grace: secs(sluice_contract::settings::WORKER_GRACE_SECS, 60),
            task_log: LogLimits {
                max_lines: positive("SLUICE_TASK_LOG_MAX_LINES").unwrap_or(LogLimits::default().max_lines),
                max_bytes: positive("SLUICE_TASK_LOG_MAX_BYTES").unwrap_or(LogLimits::default().max_bytes),
            },
            record_patience: secs("SLUICE_RECORD_PATIENCE_SECS", crate::worker::RECORD_PATIENCE.as_secs()),
        }
    }

    /// The store URL: the configured one, or the standalone SQLite file.
    pub fn store_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.home.join("sluice.sqlite").display()))
    }

    /// Where a worker keeps outcomes the store cannot take yet.
    pub fn spool(&self) -> crate::spool::Spool {
        crate::spool::Spool::in_home(&self.home)
    }

    /// When running and queued tasks are taken for lost.
    pub fn liveness(&self) -> crate::scheduler::Liveness {
        crate::scheduler::Liveness { zombie_threshold: self.zombie_threshold, queued_timeout: self.queued_timeout }
    }

    /// The URL migrations use: direct when configured (PgBouncer cannot hold the
    /// migration lock's session), else the store URL.
    pub fn migration_url(&self) -> String {
        self.database_direct_url.clone().unwrap_or_else(|| self.store_url())
    }
}
