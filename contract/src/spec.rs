//! Static specs: the compiled `pipelines.yaml`, as `static` tables in the generated code.
//! The compiler writes them (as Rust source) and the runtime reads them, so both use these
//! types.

/// Deployment settings the services read at start.
#[derive(Debug)]
pub struct DeploymentSpec {
    pub project: &'static str,
    pub webserver_port: u16,
    pub parallelism: u32,
    pub worker_concurrency: u32,
    pub worker_replicas: u32,
    pub queues: &'static [&'static str],
    pub paused_at_creation: bool,
    pub load_examples: bool,
    pub admin_username_env: &'static str,
    pub admin_password_env: &'static str,
    pub admin_email_env: &'static str,
    pub fernet_key_env: &'static str,
    pub secret_key_env: &'static str,
    pub broker_db: u8,
    pub rate_limit_db: u8,
    /// The interpreter Python tasks run with (`python3`, or a venv's `bin/python`).
    pub python: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnType {
    Postgres,
    Redis,
    Http,
    Sqlite,
    Smtp,
    /// A local directory (`file:///abs/dir`); the path is in `database`.
    File,
}

/// A connection as declared; secrets are only the names of env variables.
#[derive(Debug)]
pub struct ConnectionSpec {
    pub id: &'static str,
    pub conn_type: ConnType,
    pub description: &'static str,
    pub host: Option<&'static str>,
    pub port: Option<u16>,
    pub schema: Option<&'static str>,
    pub database: Option<&'static str>,
    pub login: Option<&'static str>,
    pub password_env: Option<&'static str>,
    /// The `extra` mapping as JSON; string values `${NAME}` are read from the environment.
    pub extra_json: &'static str,
    /// `standalone:` in the YAML: the connection (an Airflow-style URI, without secrets) used
    /// when Sluice runs without external services, unless the environment overrides it.
    pub standalone_uri: Option<&'static str>,
}

#[derive(Debug)]
pub struct PoolSpec {
    pub name: &'static str,
    pub slots: u32,
    pub description: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Runs only when triggered.
    Manual,
    /// One run at the start date.
    Once,
    /// A 5-field cron expression (presets already expanded).
    Cron(&'static str),
    /// When each of these datasets (ids) has been updated since the pipeline's last run.
    Datasets(&'static [&'static str]),
}

/// A dataset `pipelines.yaml` declares.
#[derive(Debug)]
pub struct DatasetSpec {
    pub id: &'static str,
    pub uri: &'static str,
    pub description: &'static str,
}

/// The type of a param or task output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    String,
    Int,
    Float,
    Bool,
    Json,
    List(&'static ValueType),
}

#[derive(Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ValueType,
    /// The default as JSON, if the param has one (a trigger must then give a value).
    pub default_json: Option<&'static str>,
    pub description: &'static str,
}

#[derive(Debug)]
pub struct PipelineSpec {
    pub id: &'static str,
    pub description: &'static str,
    pub owner: &'static str,
    pub tags: &'static [&'static str],
    pub schedule: Schedule,
    /// The schedule as written (`@daily`, `0 6 * * *`), for display.
    pub schedule_text: &'static str,
    pub timezone: &'static str,
    /// Local ISO date-time in `timezone`.
    pub start_date: Option<&'static str>,
    pub end_date: Option<&'static str>,
    pub catchup: bool,
    pub max_active_runs: u32,
    pub max_active_tasks: u32,
    pub paused_at_creation: bool,
    pub params: &'static [ParamSpec],
    /// Connections told when a run fails / succeeds.
    pub on_failure: &'static [&'static str],
    pub on_success: &'static [&'static str],
    /// Recipients of run-level emails.
    pub email: &'static [&'static str],
    pub tasks: &'static [TaskSpec],
    /// Every task's index in `tasks`, each after all of its upstreams; among tasks whose
    /// upstreams are all listed, the one declared first comes first (so a file written
    /// upstream-first gives `0, 1, 2, ...`). A graph fact: see [`crate::graph`].
    pub topo_order: &'static [u32],
    /// Hash of the pipeline's compiled definition; a change means a new version.
    pub version_hash: &'static str,
}

/// Where a pipeline was written, as the compiler read it: what the REST API's `dagSources`
/// and `dagWarnings` serve and the UI shows beside the pipeline.
#[derive(Debug)]
pub struct PipelineSource {
    pub pipeline: &'static str,
    /// The pipelines file, and the line its block starts on.
    pub file: &'static str,
    pub line: u32,
    /// The pipeline's block of the file, as written (it holds no secret: the compiler
    /// refuses one written in the file).
    pub yaml: &'static str,
    /// `(task id, Rust path)` of each task with a Rust body, in task order.
    pub bodies: &'static [(&'static str, &'static str)],
    /// The compiler's warnings inside the block.
    pub warnings: &'static [CompilerWarning],
}

/// One warning of the compiler, where it points.
#[derive(Debug)]
pub struct CompilerWarning {
    /// The warning's kind (`empty-pipeline`, `unused-param`...).
    pub code: &'static str,
    pub line: u32,
    pub col: u32,
    pub message: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "snake_case"))]
pub enum TriggerRule {
    AllSuccess,
    AllFailed,
    AllDone,
    AllSkipped,
    OneSuccess,
    OneFailed,
    OneDone,
    NoneFailed,
    NoneFailedMinOneSuccess,
    NoneSkipped,
    Always,
}

#[derive(Clone, Debug)]
pub enum TaskKind {
    /// A Rust async fn, run through the generated dispatch.
    Rust {
        path: &'static str,
    },
    /// A `bash -c` command template.
    Shell {
        command: &'static str,
        /// The task's `env:`: names and value templates (rendered as they are: a variable's
        /// value is data, never read as code).
        env: &'static [(&'static str, &'static str)],
        /// The exit code that ends the task `skipped` (Airflow's `skip_on_exit_code`, 99 by
        /// default); `None`: every non-zero code is a failure.
        skip_exit_code: Option<i32>,
    },
    Http {
        conn: &'static str,
        method: &'static str,
        endpoint: &'static str,
        body: Option<&'static str>,
        headers: &'static [(&'static str, &'static str)],
        expect_status: &'static [u16],
        /// Statuses that end the task `skipped` instead of failed.
        skip_status: &'static [u16],
    },
    Sql {
        conn: &'static str,
        statement: &'static str,
    },
    /// A function of the team's Python code, run by the deployment's interpreter.
    Python {
        /// The module's file, relative to the working directory (`tasks/report.py`).
        module: &'static str,
        function: &'static str,
    },
}

impl TaskKind {
    /// A shell step with no `env:` and the default `skip_exit_code`.
    pub const fn shell(command: &'static str) -> TaskKind {
        TaskKind::Shell { command, env: &[], skip_exit_code: Some(crate::defaults::SKIP_EXIT_CODE) }
    }

    /// The kind's key in `pipelines.yaml`: `rust`, `shell`, `http`, `sql` or `python`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Rust { .. } => "rust",
            TaskKind::Shell { .. } => "shell",
            TaskKind::Http { .. } => "http",
            TaskKind::Sql { .. } => "sql",
            TaskKind::Python { .. } => "python",
        }
    }

    /// Every template text of the task: what the runtime renders before it runs.
    pub fn templates(&self) -> Vec<&'static str> {
        match self {
            TaskKind::Rust { .. } | TaskKind::Python { .. } => Vec::new(),
            TaskKind::Shell { command, env, .. } => {
                std::iter::once(*command).chain(env.iter().map(|(_, v)| *v)).collect()
            }
            TaskKind::Http { endpoint, body, headers, .. } => {
                std::iter::once(*endpoint).chain(*body).chain(headers.iter().map(|(_, v)| *v)).collect()
            }
            TaskKind::Sql { statement, .. } => vec![*statement],
        }
    }
}

/// How a task is retried: Airflow's `retries`, `retry_delay`,
/// `retry_exponential_backoff` and `max_retry_delay`.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub retries: u32,
    pub retry_delay_secs: u64,
    pub exponential_backoff: bool,
    pub max_retry_delay_secs: Option<u64>,
}

impl RetryPolicy {
    /// Tries in all: the first and each retry.
    pub fn max_tries(&self) -> i64 {
        i64::from(self.retries) + 1
    }

    /// Seconds to wait before try `next_try` (2 is the first retry), doubling per retry
    /// under exponential backoff, never above `max_retry_delay`.
    pub fn delay_secs(&self, next_try: i64) -> u64 {
        let delay = if self.exponential_backoff {
            let exponent = u32::try_from((next_try - 2).max(0)).unwrap_or(u32::MAX).min(30);
            self.retry_delay_secs.saturating_mul(1u64 << exponent)
        } else {
            self.retry_delay_secs
        };
        self.max_retry_delay_secs.map_or(delay, |cap| delay.min(cap))
    }
}

/// How a sensor waits between pokes (Airflow's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "snake_case"))]
pub enum SensorMode {
    /// The try keeps its worker and pool slots and sleeps between pokes.
    Poke,
    /// The try ends after each "not yet" (`up_for_reschedule`) and holds no slot until the
    /// scheduler's timer queues the next poke.
    Reschedule,
}

impl SensorMode {
    pub const ALL: &'static [(&'static str, SensorMode)] =
        &[("poke", SensorMode::Poke), ("reschedule", SensorMode::Reschedule)];

    pub fn name(self) -> &'static str {
        SensorMode::ALL.iter().find(|(_, m)| *m == self).map_or("poke", |(n, _)| n)
    }
}

/// A task's `sensor:`: Airflow's `poke_interval`, `timeout`, `mode` and `soft_fail`, and
/// the exit code by which a shell command says "not yet".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SensorSpec {
    pub poke_interval_secs: u64,
    /// Seconds from the first poke after which the sensor gives up.
    pub timeout_secs: u64,
    pub mode: SensorMode,
    /// Past the timeout the task ends `skipped` instead of `failed`.
    pub soft_fail: bool,
    pub not_ready_exit_code: i32,
}

#[derive(Clone, Debug)]
pub struct OutputSpec {
    pub name: &'static str,
    pub ty: ValueType,
}

#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub id: &'static str,
    pub description: &'static str,
    pub kind: TaskKind,
    pub depends_on: &'static [&'static str],
    /// The index in the pipeline's `tasks` of each of `depends_on`, in the same order.
    pub upstream: &'static [u32],
    /// The indices of the tasks that list this one in `depends_on`, ascending, each once.
    pub downstream: &'static [u32],
    /// The longest path from a task without upstreams (0 for those): the column the web
    /// UI draws the task in.
    pub depth: u32,
    /// Airflow's default (`downstream`) weight rule: `priority_weight` plus that of every
    /// task below this one, each counted once. Task instances are queued by it.
    pub effective_priority_weight: i64,
    pub trigger_rule: TriggerRule,
    pub retry: RetryPolicy,
    pub execution_timeout_secs: Option<u64>,
    pub email_on_failure: bool,
    pub email_on_retry: bool,
    pub email: &'static [&'static str],
    /// Connections (http, smtp, file) told when a try fails for good, will be retried,
    /// succeeds; `smtp_default` is among them when `email_on_*` asks for it.
    pub on_failure: &'static [&'static str],
    pub on_retry: &'static [&'static str],
    pub on_success: &'static [&'static str],
    /// Seconds after the run's logical date by which the task must have succeeded.
    pub sla_secs: Option<u64>,
    pub pool: &'static str,
    pub pool_slots: u32,
    pub priority_weight: i32,
    pub queue: &'static str,
    pub connections: &'static [&'static str],
    pub outputs: &'static [OutputSpec],
    /// Datasets (ids) a success of this task updates.
    pub produces: &'static [&'static str],
    /// `sensor:`: the task waits for something outside; a "not yet" is poked again.
    pub sensor: Option<SensorSpec>,
    /// `branch:` the direct downstream tasks this task chooses among (its `branch` output
    /// names the chosen); the others are skipped. Empty: not a branch.
    pub branch: &'static [&'static str],
    pub renamed_from: &'static [&'static str],
}

impl TaskSpec {
    /// A task with every setting at its default (Airflow's), no dependencies and no graph
    /// facts: what hand-written tables (tests, tools) start from, `..TaskSpec::new(id, kind)`.
    pub const fn new(id: &'static str, kind: TaskKind) -> TaskSpec {
        TaskSpec {
            id,
            description: "",
            kind,
            depends_on: &[],
            upstream: &[],
            downstream: &[],
            depth: 0,
            effective_priority_weight: 1,
            trigger_rule: TriggerRule::AllSuccess,
            retry: RetryPolicy {
                retries: 0,
                retry_delay_secs: crate::defaults::RETRY_DELAY_SECS,
                exponential_backoff: false,
                max_retry_delay_secs: None,
            },
            execution_timeout_secs: None,
            email_on_failure: false,
            email_on_retry: false,
            email: &[],
            on_failure: &[],
            on_retry: &[],
            on_success: &[],
            sla_secs: None,
            pool: crate::defaults::POOL,
            pool_slots: 1,
            priority_weight: 1,
            queue: crate::defaults::QUEUE,
            connections: &[],
            outputs: &[],
            produces: &[],
            sensor: None,
            branch: &[],
            renamed_from: &[],
        }
    }
}

impl PipelineSpec {
    pub fn task(&self, id: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.id == id)
    }
}
