//! The compiled model: what `pipelines.yaml` means, with references still by id but every
//! value typed and every default applied. `lower` builds it, `validate` checks it, `emit`
//! writes it out. Serialized, it is `generated/pipelines.lock.json`.

use crate::source::Span;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// A value and where it was written. Serializes as the bare value (spans never reach the
/// lock file), and compares by value only, so `plan` diffs ignore formatting moves.
#[derive(Clone, Debug, Default)]
pub struct Sp<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Sp<T> {
    pub fn new(value: T, span: Span) -> Self {
        Sp { value, span }
    }

    /// Whether the value was written in the file. A default carries the zero-length span
    /// of the mapping it is missing from (so messages about it still point somewhere).
    pub fn is_explicit(&self) -> bool {
        self.span.len > 0
    }
}

impl<T: PartialEq> PartialEq for Sp<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Serialize> Serialize for Sp<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sp<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(|value| Sp { value, span: Span::default() })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub deployment: Deployment,
    pub connections: Vec<Connection>,
    pub pools: Vec<Pool>,
    pub pgbouncer: PgBouncer,
    pub redis: Redis,
    /// Data that pipelines produce and consume (Airflow's datasets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<Dataset>,
    pub pipelines: Vec<Pipeline>,
}

/// A dataset: what a task's `produces` updates and a pipeline's `schedule: {datasets}` waits for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub id: Sp<String>,
    /// Where the data lives (`postgres://mlsp/games`, `s3://bucket/key`): its name outside Sluice.
    pub uri: Sp<String>,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Compose project name and prefix of container names (`mlsp`).
    pub project: Sp<String>,
    pub image: String,
    pub webserver_port: Sp<u16>,
    pub executor: Executor,
    pub admin: Admin,
    /// Name of the env variable that holds the Fernet key(s), comma-separated for rotation.
    pub fernet_key_env: Sp<String>,
    /// Name of the env variable with the web server's session-signing secret.
    pub secret_key_env: Sp<String>,
    pub metadata_db: MetadataDb,
    /// The interpreter Python tasks run with.
    #[serde(default = "default_python", skip_serializing_if = "is_default_python")]
    pub python: Sp<String>,
}

fn default_python() -> Sp<String> {
    Sp::new(DEFAULT_PYTHON.to_string(), crate::source::Span::default())
}

fn is_default_python(python: &Sp<String>) -> bool {
    python.value == DEFAULT_PYTHON
}

/// The interpreter of Python tasks unless `deployment.python` names another.
pub const DEFAULT_PYTHON: &str = "python3";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Executor {
    /// Most task instances running at once across all workers.
    pub parallelism: Sp<u32>,
    /// Task slots per worker process.
    pub worker_concurrency: Sp<u32>,
    /// Worker containers started by default (`docker compose up --scale worker=N` overrides).
    pub worker_replicas: Sp<u32>,
    /// Queues workers may listen on; `default` always exists.
    pub queues: Vec<Sp<String>>,
    pub paused_at_creation: bool,
    pub load_examples: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Admin {
    pub username_env: Sp<String>,
    pub password_env: Sp<String>,
    pub email_env: Sp<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetadataDb {
    pub name: Sp<String>,
    pub user: Sp<String>,
    pub password: Sp<EnvRef>,
}

/// A secret given as `${ENV_VAR}`: only the variable's name is ever stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRef {
    pub env: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnType {
    Postgres,
    Redis,
    Http,
    Sqlite,
    Smtp,
    /// A local directory; the path is in `database`.
    File,
}

impl ConnType {
    pub const ALL: &'static [(&'static str, ConnType)] = &[
        ("postgres", ConnType::Postgres),
        ("redis", ConnType::Redis),
        ("http", ConnType::Http),
        ("sqlite", ConnType::Sqlite),
        ("smtp", ConnType::Smtp),
        ("file", ConnType::File),
    ];

    pub fn name(self) -> &'static str {
        ConnType::ALL.iter().find(|(_, t)| *t == self).map_or("?", |(n, _)| n)
    }

    pub fn is_sql(self) -> bool {
        matches!(self, ConnType::Postgres | ConnType::Sqlite)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: Sp<String>,
    #[serde(rename = "type")]
    pub conn_type: Sp<ConnType>,
    pub description: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// URL scheme for http (`http`/`https`), as Airflow's `schema` field for other types.
    pub schema: Option<String>,
    pub database: Option<String>,
    pub login: Option<String>,
    pub password: Option<Sp<EnvRef>>,
    /// Extra settings; string values may be `${ENV_VAR}` references.
    pub extra: BTreeMap<String, serde_json::Value>,
    /// The connection (a URI without secrets) used when Sluice runs without external
    /// services; the environment still overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standalone: Option<Sp<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub name: Sp<String>,
    pub slots: Sp<u32>,
    pub description: String,
}

pub use sluice_contract::defaults::{POOL as DEFAULT_POOL, POOL_SLOTS as DEFAULT_POOL_SLOTS, QUEUE as DEFAULT_QUEUE};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PgBouncer {
    pub pool_mode: Sp<String>,
    pub listen_port: Sp<u16>,
    pub max_client_conn: Sp<u32>,
    pub default_pool_size: Sp<u32>,
    pub min_pool_size: Sp<u32>,
    pub reserve_pool_size: Sp<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Redis {
    pub maxmemory: Sp<String>,
    pub maxmemory_policy: Sp<String>,
    pub broker_db: Sp<u8>,
    pub rate_limit_db: Sp<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: Sp<String>,
    pub description: String,
    pub owner: String,
    pub tags: Vec<String>,
    pub schedule: Sp<Schedule>,
    pub timezone: Sp<String>,
    /// ISO 8601 local date-time in `timezone` (`2024-01-01T00:00:00`).
    pub start_date: Option<Sp<String>>,
    pub end_date: Option<Sp<String>>,
    pub catchup: Sp<bool>,
    pub max_active_runs: Sp<u32>,
    pub max_active_tasks: Sp<u32>,
    pub paused_at_creation: bool,
    pub params: Vec<Param>,
    /// Connections told when a run fails or succeeds (Airflow's DAG-level callbacks).
    pub on_failure: Vec<Sp<String>>,
    pub on_success: Vec<Sp<String>>,
    /// Recipients of run-level emails: the `email` of `default_args`.
    pub email: Vec<String>,
    pub tasks: Vec<Task>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "expr")]
pub enum Schedule {
    /// No schedule: runs only when triggered.
    Manual,
    /// One run, at the start date.
    Once,
    /// A 5-field cron expression; presets like `@daily` are kept as written in `expr`.
    Cron(String),
    /// Runs when each of these datasets has been updated since its last run.
    Datasets(Vec<Sp<String>>),
}

impl Schedule {
    pub const PRESETS: &'static [(&'static str, &'static str)] = &[
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ];

    /// The 5-field cron a preset stands for, or the expression itself.
    pub fn cron(&self) -> Option<&str> {
        match self {
            Schedule::Cron(expr) => {
                Some(Schedule::PRESETS.iter().find(|(name, _)| *name == expr).map_or(expr.as_str(), |(_, cron)| cron))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Manual => f.write_str("manual only"),
            Schedule::Once => f.write_str("@once"),
            Schedule::Cron(expr) => f.write_str(expr),
            Schedule::Datasets(ids) => {
                let ids: Vec<&str> = ids.iter().map(|d| d.value.as_str()).collect();
                write!(f, "on datasets {}", ids.join(", "))
            }
        }
    }
}

/// The type of a param or a task output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    String,
    Int,
    Float,
    Bool,
    Json,
    List(Box<ValueType>),
}

impl ValueType {
    /// The compiler's form of a type the runtime's tables spell.
    pub fn from_spec(ty: &spec::ValueType) -> ValueType {
        match ty {
            spec::ValueType::String => ValueType::String,
            spec::ValueType::Int => ValueType::Int,
            spec::ValueType::Float => ValueType::Float,
            spec::ValueType::Bool => ValueType::Bool,
            spec::ValueType::Json => ValueType::Json,
            spec::ValueType::List(inner) => ValueType::List(Box::new(ValueType::from_spec(inner))),
        }
    }

    pub const SCALARS: &'static [&'static str] = &["string", "int", "float", "bool", "json"];

    /// Reads `string`, `int`, `float`, `bool`, `json` or `list<T>`.
    pub fn parse(text: &str) -> Option<ValueType> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix("list<").and_then(|t| t.strip_suffix('>')) {
            return ValueType::parse(inner).map(|t| ValueType::List(Box::new(t)));
        }
        Some(match text {
            "string" => ValueType::String,
            "int" => ValueType::Int,
            "float" => ValueType::Float,
            "bool" => ValueType::Bool,
            "json" => ValueType::Json,
            _ => return None,
        })
    }

    /// Whether a JSON value (a default, a trigger's conf) has this type.
    pub fn accepts(&self, value: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match (self, value) {
            (ValueType::String, J::String(_)) | (ValueType::Bool, J::Bool(_)) | (ValueType::Json, _) => true,
            (ValueType::Int, J::Number(n)) => n.is_i64(),
            (ValueType::Float, J::Number(_)) => true,
            (ValueType::List(inner), J::Array(items)) => items.iter().all(|i| inner.accepts(i)),
            _ => false,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::String => f.write_str("string"),
            ValueType::Int => f.write_str("int"),
            ValueType::Float => f.write_str("float"),
            ValueType::Bool => f.write_str("bool"),
            ValueType::Json => f.write_str("json"),
            ValueType::List(inner) => write!(f, "list<{inner}>"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub name: Sp<String>,
    #[serde(rename = "type")]
    pub ty: Sp<ValueType>,
    pub default: Option<serde_json::Value>,
    pub description: String,
}

pub use sluice_contract::spec::TriggerRule;
use sluice_contract::{outputs, spec};

/// Retry, timeout and alert settings, as `default_args` of a pipeline or overridden per task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSettings {
    pub retries: u32,
    pub retry_delay_secs: u64,
    pub retry_exponential_backoff: bool,
    pub max_retry_delay_secs: Option<u64>,
    pub execution_timeout_secs: Option<u64>,
    pub email_on_failure: bool,
    pub email_on_retry: bool,
    pub email: Vec<String>,
    /// Connections (http, smtp or file) told when a try fails for good, is retried, succeeds.
    pub on_failure: Vec<Sp<String>>,
    pub on_retry: Vec<Sp<String>>,
    pub on_success: Vec<Sp<String>>,
    /// How long after the run's logical date the task must have succeeded.
    pub sla_secs: Option<Sp<u64>>,
}

impl Default for TaskSettings {
    /// Airflow's defaults: no retries, 5 minutes between tries, no timeout.
    fn default() -> Self {
        TaskSettings {
            retries: 0,
            retry_delay_secs: sluice_contract::defaults::RETRY_DELAY_SECS,
            retry_exponential_backoff: false,
            max_retry_delay_secs: None,
            execution_timeout_secs: None,
            email_on_failure: true,
            email_on_retry: false,
            email: Vec::new(),
            on_failure: Vec::new(),
            on_retry: Vec::new(),
            on_success: Vec::new(),
            sla_secs: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: Sp<String>,
    pub description: String,
    #[serde(flatten)]
    pub kind: TaskKind,
    pub depends_on: Vec<Sp<String>>,
    pub trigger_rule: Sp<TriggerRule>,
    #[serde(flatten)]
    pub settings: TaskSettings,
    pub pool: Sp<String>,
    pub pool_slots: Sp<u32>,
    pub priority_weight: i32,
    pub queue: Sp<String>,
    pub connections: Vec<Sp<String>>,
    pub outputs: Vec<Output>,
    /// How the task waits for something outside, when it is a sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<Sensor>,
    /// Datasets a success of this task updates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub produces: Vec<Sp<String>>,
    /// The direct downstream tasks this task chooses among; the others are skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branch: Vec<Sp<String>>,
    /// Former ids of this task: its history is kept under the new id.
    pub renamed_from: Vec<Sp<String>>,
}

/// A task's `sensor:` mapping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sensor {
    pub poke_interval_secs: Sp<u64>,
    pub timeout_secs: Sp<u64>,
    pub mode: Sp<SensorMode>,
    pub soft_fail: bool,
    /// The exit code of a shell sensor that says "not yet".
    pub exit_code: Sp<i32>,
}

pub use sluice_contract::spec::SensorMode;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum TaskKind {
    Rust {
        path: Sp<String>,
    },
    Shell {
        command: Sp<String>,
        /// Variables the command gets besides the run's facts; values are templates.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        env: BTreeMap<String, Sp<String>>,
        /// The exit code that ends the task skipped (`None`: none does). Written only when
        /// it is not Airflow's 99, so a pipeline that keeps the default keeps its hash.
        #[serde(default = "default_skip_exit_code", skip_serializing_if = "is_default_skip_exit_code")]
        skip_exit_code: Option<i32>,
    },
    Http(HttpStep),
    Sql {
        conn: Sp<String>,
        statement: Sp<String>,
    },
    Python {
        /// The module's file, relative to the pipelines file's folder.
        module: Sp<String>,
        function: Sp<String>,
    },
}

impl TaskKind {
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Rust { .. } => "rust",
            TaskKind::Shell { .. } => "shell",
            TaskKind::Http(_) => "http",
            TaskKind::Sql { .. } => "sql",
            TaskKind::Python { .. } => "python",
        }
    }

    /// Every template the runtime renders for this task, with where it was written.
    pub fn templates(&self) -> Vec<&Sp<String>> {
        match self {
            TaskKind::Rust { .. } | TaskKind::Python { .. } => Vec::new(),
            TaskKind::Shell { command, env, .. } => std::iter::once(command).chain(env.values()).collect(),
            TaskKind::Http(http) => std::iter::once(&http.endpoint).chain(http.body.as_ref()).collect(),
            TaskKind::Sql { statement, .. } => vec![statement],
        }
    }

    /// The template whose values the runtime quotes for the language it is written in: a
    /// shell command or an SQL statement.
    pub fn quoted_template(&self) -> Option<&Sp<String>> {
        match self {
            TaskKind::Shell { command, .. } => Some(command),
            TaskKind::Sql { statement, .. } => Some(statement),
            _ => None,
        }
    }

    /// The connection the step itself uses (http and sql), besides the declared ones.
    pub fn step_connection(&self) -> Option<&Sp<String>> {
        match self {
            TaskKind::Http(http) => Some(&http.conn),
            TaskKind::Sql { conn, .. } => Some(conn),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpStep {
    pub conn: Sp<String>,
    pub method: Sp<String>,
    pub endpoint: Sp<String>,
    pub body: Option<Sp<String>>,
    pub headers: BTreeMap<String, String>,
    pub expect_status: Vec<u16>,
    /// Statuses that end the task skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_status: Vec<u16>,
}

fn default_skip_exit_code() -> Option<i32> {
    Some(sluice_contract::defaults::SKIP_EXIT_CODE)
}

fn is_default_skip_exit_code(code: &Option<i32>) -> bool {
    *code == default_skip_exit_code()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub name: Sp<String>,
    #[serde(rename = "type")]
    pub ty: Sp<ValueType>,
}

impl Pipeline {
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id.value == id)
    }
}

impl Config {
    pub fn pool_slots(&self, name: &str) -> Option<u32> {
        match self.pools.iter().find(|p| p.name.value == name) {
            Some(pool) => Some(pool.slots.value),
            None if name == DEFAULT_POOL => Some(DEFAULT_POOL_SLOTS),
            None => None,
        }
    }

    pub fn connection(&self, id: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.id.value == id)
    }

    /// Orders every list by id so the lock file and emitted files do not depend on the
    /// order of the YAML (tasks keep their order: it is the order people read them in).
    pub fn canonicalize(&mut self) {
        self.connections.sort_by(|a, b| a.id.value.cmp(&b.id.value));
        self.pools.sort_by(|a, b| a.name.value.cmp(&b.name.value));
        self.pipelines.sort_by(|a, b| a.id.value.cmp(&b.id.value));
    }
}

/// The outputs every non-Rust task kind produces, with their types. Rust tasks declare theirs.
pub fn implicit_outputs(kind: &TaskKind) -> Vec<(&'static str, ValueType)> {
    match kind {
        TaskKind::Rust { .. } | TaskKind::Python { .. } => Vec::new(),
        TaskKind::Shell { .. } => outputs::SHELL.iter().map(implicit).collect(),
        TaskKind::Http(_) => outputs::HTTP.iter().map(implicit).collect(),
        TaskKind::Sql { .. } => outputs::SQL.iter().map(implicit).collect(),
    }
}

/// The outputs a task has without declaring them: its kind's, and a branch task's choice.
pub fn undeclared_outputs(task: &Task) -> Vec<(&'static str, ValueType)> {
    let mut all = implicit_outputs(&task.kind);
    if !task.branch.is_empty() {
        all.push((outputs::BRANCH, ValueType::List(Box::new(ValueType::String))));
    }
    all
}

fn implicit((name, ty): &(&'static str, spec::ValueType)) -> (&'static str, ValueType) {
    (name, ValueType::from_spec(ty))
}
