//! Deploy files: docker-compose, PgBouncer and Redis configs, .env example, Dockerfile.
//!
//! Each file is a minijinja template under `codegen/templates/`, rendered from the
//! serialized model plus a few values derived here (URLs, the environment of each
//! service, the documented variables of `.env.example`). Everything is ordered
//! (`BTreeMap`s, model order) and nothing reads the clock or the environment, so the
//! output is a pure function of the model: review diffs show only real changes.
//!
//! No secret is ever rendered: a secret is known here only by the name of the
//! environment variable that holds it, and reaches compose as `${NAME:?...}`.

use super::{GeneratedFile, header};
use crate::model::{Config, DEFAULT_QUEUE, TaskKind};
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Value, syntax::SyntaxConfig};
use serde::Serialize;
use sluice_contract::env::env_ref;
use std::collections::{BTreeMap, BTreeSet};

/// Renders every deploy file, by path relative to `generated/`, in a fixed order.
pub fn render(config: &Config, source: &str) -> Result<Vec<GeneratedFile>, Error> {
    let env = environment()?;
    let context = Value::from(Serde(Context::new(config)?));
    TEMPLATES
        .iter()
        .map(|t| {
            let body = env.get_template(t.path)?.render(&context)?;
            Ok(GeneratedFile { path: t.path.to_string(), contents: header(t.comment, source) + &body })
        })
        .collect()
}

/// `pgbouncer.ini` alone (no header), with `databases` as the body of its `[databases]`
/// section and `startup` naming the file whose start-up script writes its auth file.
pub(super) fn pgbouncer_ini(config: &Config, databases: &str, startup: &str) -> Result<String, Error> {
    let mut context = Context::new(config)?;
    context.pgbouncer_databases = databases.to_string();
    context.pgbouncer_startup = startup.to_string();
    environment()?.get_template("pgbouncer/pgbouncer.ini")?.render(Value::from(Serde(context)))
}

/// The Rust toolchain image of the Dockerfile's builder stage: the toolchain the project
/// is built and tested with (workspace `rust-version` is the minimum, not this).
pub const RUST_BUILDER_IMAGE: &str = "rust:1.95-bookworm";

/// The PgBouncer the `pgbouncer` image builds: Debian's source package (upstream tarball plus
/// Debian's patches, security fixes among them), checked by SHA-256.
/// `scripts/install-test-deps.sh` builds the same files for the tests; a test keeps the two
/// in step.
#[derive(Debug, Serialize)]
pub struct PgbouncerSource {
    pub version: &'static str,
    pub source_file: &'static str,
    pub source_url: &'static str,
    pub source_sha256: &'static str,
    pub patches_file: &'static str,
    pub patches_url: &'static str,
    pub patches_sha256: &'static str,
}

pub const PGBOUNCER: PgbouncerSource = PgbouncerSource {
    version: "1.24.1",
    source_file: "pgbouncer_1.24.1.orig.tar.gz",
    source_url: "http://deb.debian.org/debian/pool/main/p/pgbouncer/pgbouncer_1.24.1.orig.tar.gz",
    source_sha256: "da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0",
    patches_file: "pgbouncer_1.24.1-1+deb13u2.debian.tar.xz",
    patches_url: "http://deb.debian.org/debian/pool/main/p/pgbouncer/pgbouncer_1.24.1-1+deb13u2.debian.tar.xz",
    patches_sha256: "2325bcaa2e71919d399b9e5aef5b94ff988fc1f1d296908c3937b682b7be5cbb",
};

/// Where the sluice services read the password of the metadata database from inside the
/// PgBouncer container (its start-up script writes the auth file from these two).
pub(super) const PGBOUNCER_USER_VAR: &str = "SLUICE_DB_USER";
pub(super) const PGBOUNCER_PASSWORD_VAR: &str = "SLUICE_DB_PASSWORD";
/// Where every sluice service mounts the shared `sluice-data` volume (`SLUICE_HOME`).
pub(super) const SHARED_DATA_DIR: &str = "/data";
/// How long a stopping worker lets tasks finish, and how long compose (or Kubernetes) waits
/// for it before killing it: the difference is the time to hand the rest back.
pub(super) const WORKER_GRACE_SECS: u32 = 50;
pub(super) const WORKER_STOP_GRACE_SECS: u32 = 60;
/// Host port of the web server, overridable without regenerating.
const WEBSERVER_PORT_VAR: &str = sluice_contract::settings::WEBSERVER_PORT;

struct Template {
    path: &'static str,
    comment: &'static str,
    source: &'static str,
}

const TEMPLATES: &[Template] = &[
    Template { path: ".env.example", comment: "#", source: include_str!("../../templates/env.example.j2") },
    Template { path: "Dockerfile", comment: "#", source: include_str!("../../templates/Dockerfile.j2") },
    Template {
        path: "Dockerfile.dockerignore",
        comment: "#",
        source: include_str!("../../templates/Dockerfile.dockerignore.j2"),
    },
    Template {
        path: "docker-compose.yml",
        comment: "#",
        source: include_str!("../../templates/docker-compose.yml.j2"),
    },
    Template {
        path: "pgbouncer/pgbouncer.ini",
        comment: "#",
        source: include_str!("../../templates/pgbouncer.ini.j2"),
    },
    Template { path: "redis/redis.conf", comment: "#", source: include_str!("../../templates/redis.conf.j2") },
    Template { path: "postgres/initdb.sh", comment: "#", source: include_str!("../../templates/initdb.sh.j2") },
];

/// The compose service that runs PostgreSQL: a connection to this host is to a database of
/// the deployment's own server, which must exist before a task connects.
const POSTGRES_SERVICE: &str = "postgres";

fn environment() -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).keep_trailing_newline(true).build()?);
    // Config files, not HTML: nothing is escaped implicitly; the filters below quote.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // A typo in a template is an error, not an empty string in a deploy file.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("yaml", yaml);
    env.add_filter("literal", literal);
    for t in TEMPLATES {
        env.add_template(t.path, t.source)?;
    }
    Ok(env)
}

/// Any value as a YAML flow scalar or sequence (`["CMD", "sluice"]`). JSON is a subset of
/// YAML, so quoting as JSON never lets a value change the document's structure.
pub(super) fn yaml(value: &Value) -> Result<String, Error> {
    if value.kind() == minijinja::value::ValueKind::Seq {
        let items: Result<Vec<String>, Error> = value.try_iter()?.map(|item| yaml(&item)).collect();
        return Ok(format!("[{}]", items?.join(", ")));
    }
    serde_json::to_string(value).map_err(|e| invalid(e.to_string()))
}

/// A string from the model as a YAML scalar that compose takes literally: `$` doubled,
/// so a value can never start an interpolation.
fn literal(value: &str) -> Result<String, Error> {
    yaml(&Value::from(compose_literal(value)))
}

fn compose_literal(value: &str) -> String {
    value.replace('$', "$$")
}

/// `${NAME:?...}`: compose refuses to start while `NAME` is unset or empty, and says
/// "required variable NAME is missing a value: see .env.example".
fn required(name: &str) -> String {
    format!("${{{name}:?see .env.example}}")
}

/// `${NAME:-default}`: overridable, with a default that is no secret.
fn defaulted(name: &str, default: &str) -> String {
    format!("${{{name}:-{}}}", compose_literal(default))
}

pub(super) fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// Names become compose keys, shell words and pgbouncer.ini tokens: refuse anything that
/// would need quoting in one of them (validation reports these with a location first).
fn check_name(what: &str, value: &str, ok: impl Fn(char) -> bool) -> Result<(), Error> {
    if value.is_empty() || !value.chars().all(ok) {
        return Err(invalid(format!("{what} `{value}` cannot be written into the deploy files")));
    }
    Ok(())
}

fn check_env_name(name: &str) -> Result<(), Error> {
    let ok = name.chars().next().is_some_and(|c| !c.is_ascii_digit());
    check_name("environment variable", name, |c| c.is_ascii_alphanumeric() || c == '_')?;
    if ok { Ok(()) } else { Err(invalid(format!("environment variable `{name}` starts with a digit"))) }
}

fn check_db_name(what: &str, name: &str) -> Result<(), Error> {
    check_name(what, name, |c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// What the templates see: the model as `config`, plus values derived from it.
#[derive(Debug, Serialize)]
struct Context<'a> {
    config: &'a Config,
    project: &'a str,
    network: String,
    rust_image: &'static str,
    pgbouncer: &'static PgbouncerSource,
    pgbouncer_user_var: &'static str,
    pgbouncer_password_var: &'static str,
    /// The body of `pgbouncer.ini`'s `[databases]` section.
    pgbouncer_databases: String,
    /// The deploy file whose start-up script writes PgBouncer's auth file.
    pgbouncer_startup: String,
    /// `${POSTGRES_PASSWORD:?...}` (by the model's variable name).
    db_password: String,
    sluice_services: Vec<SluiceService>,
    /// Redis `databases`: enough for the broker and rate-limit db numbers.
    redis_databases: u32,
    env_groups: Vec<EnvGroup>,
    /// The databases the connections name on the compose's own PostgreSQL, made with the
    /// metadata database when its volume is first created.
    init_databases: Vec<InitDatabase>,
    /// The files of the Python tasks' modules, which the image carries (with an interpreter).
    python_modules: Vec<String>,
}

/// The module files of the Python tasks, sorted, each once.
fn python_modules(config: &Config) -> Vec<String> {
    let mut modules: Vec<String> = config
        .pipelines
        .iter()
        .flat_map(|p| &p.tasks)
        .filter_map(|t| match &t.kind {
            TaskKind::Python { module, .. } => Some(module.value.clone()),
            _ => None,
        })
        .collect();
    modules.sort();
    modules.dedup();
    modules
}

/// A database of a connection to the compose's PostgreSQL, and its owner.
#[derive(Debug, Serialize)]
struct InitDatabase {
    name: String,
    owner: String,
    /// The variable with the owner's password, when the owner is a role of its own (not
    /// the metadata database's user, which the server's start makes).
    password_var: Option<String>,
}

/// A compose service that runs the `sluice` binary.
#[derive(Debug, Serialize)]
struct SluiceService {
    name: &'static str,
    /// Arguments after the image's `sluice` entrypoint.
    command: Vec<String>,
    /// `None` for the worker: a fixed name would stop `--scale worker=N`.
    container_name: Option<String>,
    restart: &'static str,
    /// `None` for the one-shot init (compose ignores health for completed services).
    healthcheck: Option<Vec<String>>,
    replicas: Option<u32>,
    publish: Option<String>,
    stop_grace_period: Option<String>,
    /// Service name -> compose condition.
    depends_on: Vec<(&'static str, &'static str)>,
    /// Variable -> value in compose syntax (interpolations already written).
    environment: BTreeMap<String, String>,
    /// Lines of the comment above the service.
    comment: &'static [&'static str],
}

#[derive(Debug, Serialize)]
struct EnvGroup {
    title: &'static str,
    vars: Vec<EnvVar>,
}

/// One variable of `.env.example`: never a secret value, only a non-secret default.
#[derive(Debug, Serialize)]
struct EnvVar {
    name: String,
    value: String,
    comment: Vec<String>,
}

impl<'a> Context<'a> {
    fn new(config: &'a Config) -> Result<Self, Error> {
        let d = &config.deployment;
        let db = &d.metadata_db;
        let project = d.project.value.as_str();
        let connection_vars = checked_connection_vars(config)?;
        let port = d.webserver_port.value;
        let listen_port = config.pgbouncer.listen_port.value;
        let (db_name, db_user) = (compose_literal(&db.name.value), compose_literal(&db.user.value));
        let db_password = required(&db.password.value.env);
        let compose_env = |env: &BTreeMap<String, EnvSource>| -> BTreeMap<String, String> {
            env.iter()
                .map(|(name, source)| {
                    let value = match source {
                        EnvSource::Setting(value) => compose_literal(value),
                        EnvSource::Secret { default: None } => required(name),
                        EnvSource::Secret { default: Some(default) } => defaulted(name, default),
                        EnvSource::DatabaseUrl => {
                            format!("postgres://{db_user}:{db_password}@pgbouncer:{listen_port}/{db_name}")
                        }
                        EnvSource::DatabaseDirectUrl => {
                            format!("postgres://{db_user}:{db_password}@postgres:5432/{db_name}")
                        }
                        EnvSource::BrokerUrl => format!("redis://redis:6379/{}", config.redis.broker_db.value),
                        EnvSource::RateLimitUrl => format!("redis://redis:6379/{}", config.redis.rate_limit_db.value),
                    };
                    (name.clone(), value)
                })
                .collect()
        };
        let [init_env, web_env, scheduler_env, worker_env] =
            sluice_environments(config, &connection_vars).map(|(_, env)| compose_env(&env));

        let container = |service: &str| Some(format!("{project}-{service}"));
        let health = |service: &str| Some(vec!["CMD".into(), "sluice".into(), "healthcheck".into(), service.into()]);
        let infra = [("postgres", "service_healthy"), ("pgbouncer", "service_healthy"), ("redis", "service_healthy")];
        let after_init = || {
            let mut deps = vec![("init", "service_completed_successfully")];
            deps.extend(infra);
            deps
        };

        let sluice_services = vec![
            SluiceService {
                name: "init",
                command: vec!["init".into()],
                container_name: container("init"),
                restart: "no",
                healthcheck: None,
                replicas: None,
                publish: None,
                stop_grace_period: None,
                depends_on: infra.to_vec(),
                environment: init_env,
                comment: &[
                    "One-shot: migrates the metadata database (directly, not through PgBouncer), syncs the",
                    "compiled pipelines and creates the admin user, then exits; the others start once it",
                    "exited 0. No health check: compose waits for it to complete, not to be healthy.",
                ],
            },
            SluiceService {
                name: "webserver",
                command: vec!["webserver".into()],
                container_name: container("webserver"),
                restart: "unless-stopped",
                healthcheck: health("webserver"),
                replicas: None,
                publish: Some(format!("{}:{port}", defaulted(WEBSERVER_PORT_VAR, &port.to_string()))),
                stop_grace_period: None,
                depends_on: after_init(),
                environment: web_env,
                comment: &["Web UI and REST API: the only service with a port on the host."],
            },
            SluiceService {
                name: "scheduler",
                command: vec!["scheduler".into()],
                container_name: container("scheduler"),
                restart: "unless-stopped",
                healthcheck: health("scheduler"),
                replicas: None,
                publish: None,
                stop_grace_period: None,
                depends_on: after_init(),
                environment: scheduler_env,
                comment: &[
                    "Creates runs and enqueues ready tasks. Several may run: they coordinate through row locks.",
                ],
            },
            SluiceService {
                name: "worker",
                command: worker_args(config),
                container_name: None,
                restart: "unless-stopped",
                healthcheck: health("worker"),
                replicas: Some(d.executor.worker_replicas.value),
                publish: None,
                stop_grace_period: Some(format!("{WORKER_STOP_GRACE_SECS}s")),
                depends_on: after_init(),
                environment: worker_env,
                comment: &[
                    "Runs tasks. No container_name and no host port, so `docker compose up --scale worker=N`",
                    "works. On SIGTERM a worker stops claiming, lets running tasks finish for",
                    "SLUICE_WORKER_GRACE_SECS, then hands the rest back, within stop_grace_period.",
                ],
            },
        ];

        Ok(Context {
            config,
            project,
            network: format!("{project}-network"),
            rust_image: RUST_BUILDER_IMAGE,
            pgbouncer: &PGBOUNCER,
            pgbouncer_user_var: PGBOUNCER_USER_VAR,
            pgbouncer_password_var: PGBOUNCER_PASSWORD_VAR,
            // Compose runs PostgreSQL itself, as the service `postgres`.
            pgbouncer_databases: format!("{0} = host=postgres port=5432 dbname={0}", db.name.value),
            pgbouncer_startup: "docker-compose.yml".into(),
            db_password,
            sluice_services,
            redis_databases: 16.max(u32::from(config.redis.broker_db.value.max(config.redis.rate_limit_db.value)) + 1),
            env_groups: env_groups(config, &connection_vars),
            init_databases: init_databases(config)?,
            python_modules: python_modules(config),
        })
    }
}

/// The databases of postgres connections to the compose's own server, by name (each once,
/// the metadata database left out: the server's start makes it).
fn init_databases(config: &Config) -> Result<Vec<InitDatabase>, Error> {
    let metadata = &config.deployment.metadata_db;
    let mut databases: BTreeMap<String, InitDatabase> = BTreeMap::new();
    for conn in &config.connections {
        if conn.conn_type.value != crate::model::ConnType::Postgres || conn.host.as_deref() != Some(POSTGRES_SERVICE) {
            continue;
        }
        let Some(name) = conn.database.clone().filter(|d| *d != metadata.name.value) else { continue };
        check_db_name("connection database name", &name)?;
        let owner = conn.login.clone().unwrap_or_else(|| metadata.user.value.clone());
        check_db_name("connection login", &owner)?;
        let password_var =
            if owner == metadata.user.value { None } else { conn.password.as_ref().map(|p| p.value.env.clone()) };
        databases.entry(name.clone()).or_insert(InitDatabase { name, owner, password_var });
    }
    Ok(databases.into_values().collect())
}

/// Checks every name the deploy files write unquoted and returns the connections' variables.
pub(super) fn checked_connection_vars(config: &Config) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let d = &config.deployment;
    let db = &d.metadata_db;
    check_name("project", &d.project.value, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')?;
    check_db_name("metadata database name", &db.name.value)?;
    check_db_name("metadata database user", &db.user.value)?;
    for q in &d.executor.queues {
        check_name("queue", &q.value, |c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')?;
    }
    for name in [
        &db.password.value.env,
        &d.fernet_key_env.value,
        &d.secret_key_env.value,
        &d.admin.username_env.value,
        &d.admin.password_env.value,
        &d.admin.email_env.value,
    ] {
        check_env_name(name)?;
    }
    connection_vars(config)
}

/// Where one variable of a sluice service's environment comes from. Decided once, here, for
/// compose and Kubernetes alike: both give each service the same variables and secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum EnvSource {
    /// A fixed value that is no secret.
    Setting(String),
    /// The operator's variable of the same name (`.env`, a Kubernetes Secret); with a
    /// default when it may be left out.
    Secret { default: Option<&'static str> },
    /// The metadata database through PgBouncer.
    DatabaseUrl,
    /// The metadata database directly, for what transaction pooling breaks.
    DatabaseDirectUrl,
    /// The broker's Redis database.
    BrokerUrl,
    /// The rate-limit store's Redis database.
    RateLimitUrl,
}

/// The queues workers listen on: the configured ones, else `default`.
pub(super) fn queues(config: &Config) -> Vec<&str> {
    let queues: Vec<&str> = config.deployment.executor.queues.iter().map(|q| q.value.as_str()).collect();
    if queues.is_empty() { vec![DEFAULT_QUEUE] } else { queues }
}

/// The worker's arguments after the image's `sluice` entrypoint.
pub(super) fn worker_args(config: &Config) -> Vec<String> {
    vec![
        "worker".into(),
        "--queues".into(),
        queues(config).join(","),
        "--concurrency".into(),
        config.deployment.executor.worker_concurrency.value.to_string(),
    ]
}

/// The sluice services in start order, each with its environment.
pub(super) fn sluice_environments(
    config: &Config,
    connection_vars: &BTreeMap<String, Vec<String>>,
) -> [(&'static str, BTreeMap<String, EnvSource>); 4] {
    let d = &config.deployment;
    let setting = |value: &str| EnvSource::Setting(value.to_string());
    let secret = EnvSource::Secret { default: None };
    // Shared by every sluice service. Through PgBouncer for ordinary queries; direct
    // to PostgreSQL for what transaction pooling breaks (migrations, LISTEN/NOTIFY,
    // advisory locks held across statements).
    let mut common = BTreeMap::new();
    common.insert(sluice_contract::settings::MODE.to_string(), setting("distributed"));
    // Files tasks hand each other (scraped data, models) live on the shared volume.
    common.insert(sluice_contract::settings::HOME.to_string(), setting(SHARED_DATA_DIR));
    // Less than the worker's stop grace period: running tasks are handed back before the
    // container is killed.
    common.insert(sluice_contract::settings::WORKER_GRACE_SECS.to_string(), setting(&WORKER_GRACE_SECS.to_string()));
    common.insert(sluice_contract::settings::DATABASE_URL.into(), EnvSource::DatabaseUrl);
    common.insert(sluice_contract::settings::DATABASE_DIRECT_URL.into(), EnvSource::DatabaseDirectUrl);
    common.insert(sluice_contract::settings::BROKER_URL.into(), EnvSource::BrokerUrl);
    // Every service reads or writes stored secrets (connections, secret variables).
    common.insert(d.fernet_key_env.value.clone(), secret.clone());

    // Each service gets only the secrets it uses: the admin's password only the one-shot
    // init that creates the admin; the session key and the rate-limit store only the web
    // server; the connections' secrets only the services that run tasks or send alerts.
    let mut init = common.clone();
    init.insert(d.admin.username_env.value.clone(), EnvSource::Secret { default: Some("admin") });
    init.insert(d.admin.password_env.value.clone(), secret.clone());
    init.insert(d.admin.email_env.value.clone(), EnvSource::Secret { default: Some("admin@example.com") });
    let mut web = common.clone();
    web.insert(d.secret_key_env.value.clone(), secret.clone());
    web.insert(sluice_contract::settings::RATE_LIMIT_URL.into(), EnvSource::RateLimitUrl);
    let mut tasks = common;
    for name in connection_vars.keys() {
        tasks.entry(name.clone()).or_insert_with(|| secret.clone());
    }
    [("init", init), ("webserver", web), ("scheduler", tasks.clone()), ("worker", tasks)]
}

/// Every `${NAME}` the connections reference (passwords and `extra` strings), with where.
fn connection_vars(config: &Config) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let mut vars: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &config.connections {
        let id = &c.id.value;
        if let Some(p) = &c.password {
            let metadata = &config.deployment.metadata_db;
            let same_role = c.conn_type.value == crate::model::ConnType::Postgres
                && c.host.as_deref() == Some(POSTGRES_SERVICE)
                && c.login.as_deref().is_none_or(|login| login == metadata.user.value);
            let what = if same_role {
                // One role, one password: the server knows only the metadata user's.
                format!(
                    "password of connection `{id}`, which logs in as `{}` on this deployment's PostgreSQL: \
                     the same value as {}",
                    metadata.user.value, metadata.password.value.env
                )
            } else {
                format!("password of connection `{id}`")
            };
            vars.entry(p.value.env.clone()).or_default().push(what);
        }
        for (key, value) in &c.extra {
            if let Some(name) = value.as_str().and_then(env_ref) {
                vars.entry(name.to_string()).or_default().push(format!("`extra.{key}` of connection `{id}`"));
            }
        }
    }
    for name in vars.keys() {
        check_env_name(name)?;
    }
    Ok(vars)
}

/// The variables of `.env.example`, grouped; each appears once, in its first group.
fn env_groups(config: &Config, connection_vars: &BTreeMap<String, Vec<String>>) -> Vec<EnvGroup> {
    let d = &config.deployment;
    let port = d.webserver_port.value.to_string();
    let var = |name: &str, value: &str, comment: &[&str]| EnvVar {
        name: name.to_string(),
        value: value.to_string(),
        comment: comment.iter().map(|s| s.to_string()).collect(),
    };
    let db_comment = format!(
        "Required. Password of `{}` on the metadata database `{}`.",
        d.metadata_db.user.value, d.metadata_db.name.value
    );
    let mut groups = vec![
        EnvGroup {
            title: "Web server",
            vars: vec![var(
                WEBSERVER_PORT_VAR,
                &port,
                &[&format!("Host port of the web UI and API (inside the network it listens on {port}).")],
            )],
        },
        EnvGroup {
            title: "Admin user, created by `sluice init`",
            vars: vec![
                var(&d.admin.username_env.value, "admin", &["Login name of the first admin."]),
                var(
                    &d.admin.password_env.value,
                    "",
                    &["Required. Password of the first admin; change it in the UI after the first login."],
                ),
                var(&d.admin.email_env.value, "admin@example.com", &["E-mail address of the first admin."]),
            ],
        },
        EnvGroup {
            title: "Security",
            vars: vec![
                var(
                    &d.fernet_key_env.value,
                    "",
                    &[
                        "Required. Fernet key(s) encrypting connection secrets at rest; comma-separated,",
                        "newest first, to rotate. An Airflow fernet key works as is.",
                        "New key: openssl rand -base64 32 | tr '+/' '-_'",
                    ],
                ),
                var(
                    &d.secret_key_env.value,
                    "",
                    &["Required. Signs web sessions; the same on every web server.", "New key: openssl rand -hex 32"],
                ),
            ],
        },
        EnvGroup {
            title: "Metadata database (PostgreSQL, through PgBouncer)",
            vars: vec![var(
                &d.metadata_db.password.value.env,
                "",
                &[
                    &db_comment,
                    "PostgreSQL takes it when its volume is first created. It is part of SLUICE_DATABASE_URL:",
                    "use URL-safe characters (letters, digits, `-`, `_`, `.`, `~`).",
                ],
            )],
        },
    ];
    let connections = connection_vars
        .iter()
        .map(|(name, uses)| var(name, "", &[&format!("Required. {}.", capitalize(&uses.join("; ")))]))
        .collect();
    groups.push(EnvGroup { title: "Connections (secrets the pipelines' connections reference)", vars: connections });

    // One variable may serve twice (a connection reusing the metadata password): keep its
    // first, more specific entry.
    let mut seen = BTreeSet::new();
    for group in &mut groups {
        group.vars.retain(|v| seen.insert(v.name.clone()));
    }
    groups.retain(|g| !g.vars.is_empty());
    groups
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}
