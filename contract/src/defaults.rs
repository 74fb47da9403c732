//! Defaults both sides apply: the compiler fills them into the tables, the runtime falls
//! back on them (the pool every task lands in unless it names one exists even when the
//! YAML never declares it). Airflow's values, so ported pipelines behave the same.

/// The pool of a task that names none.
pub const POOL: &str = "default_pool";
/// `default_pool`'s slots when the YAML does not declare it (Airflow's `default_pool_task_slot_count`).
pub const POOL_SLOTS: u32 = 128;
/// The queue of a task that names none.
pub const QUEUE: &str = "default";
/// Seconds between tries when `retry_delay` is not set (Airflow: 5 minutes).
pub const RETRY_DELAY_SECS: u64 = 300;

/// The exit code of a shell task that ends it skipped, unless `skip_exit_code` says
/// otherwise (Airflow's BashOperator `skip_on_exit_code`).
pub const SKIP_EXIT_CODE: i32 = 99;

/// A sensor's seconds between pokes (Airflow's `poke_interval`).
pub const POKE_INTERVAL_SECS: u64 = 60;
/// A sensor's seconds before it gives up (Airflow's `timeout`: 7 days).
pub const SENSOR_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
/// The exit code of a shell sensor that says "not yet".
pub const NOT_READY_EXIT_CODE: i32 = 100;
