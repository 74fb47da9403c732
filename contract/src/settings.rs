//! The environment variables the runtime reads its deployment settings from, which the
//! compiler writes into the deploy files (compose, Kubernetes, `.env.example`).

/// `standalone` (default) or `distributed`.
pub const MODE: &str = "SLUICE_MODE";
/// The folder of local state: SQLite, keys, the spool, files tasks hand each other.
pub const HOME: &str = "SLUICE_HOME";
/// The metadata database (through PgBouncer in a deployment).
pub const DATABASE_URL: &str = "SLUICE_DATABASE_URL";
/// The metadata database directly, for what transaction pooling breaks (migrations).
pub const DATABASE_DIRECT_URL: &str = "SLUICE_DATABASE_DIRECT_URL";
/// The Redis database of the task broker.
pub const BROKER_URL: &str = "SLUICE_BROKER_URL";
/// The Redis database of the web server's rate limits.
pub const RATE_LIMIT_URL: &str = "SLUICE_RATE_LIMIT_URL";
/// The port the web server listens on.
pub const WEBSERVER_PORT: &str = "SLUICE_WEBSERVER_PORT";
/// How long a stopping worker lets running tasks finish.
pub const WORKER_GRACE_SECS: &str = "SLUICE_WORKER_GRACE_SECS";
/// `SLUICE_CONN_<ID>` overrides connection `<id>` (as Airflow's `AIRFLOW_CONN_<ID>`).
pub const CONN_PREFIX: &str = "SLUICE_CONN_";
