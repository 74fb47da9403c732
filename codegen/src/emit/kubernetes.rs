//! Kubernetes manifests (`kubernetes/`): the compose deployment's sluice services and
//! PgBouncer as plain objects for `kubectl apply -k`, from the same model and with the same
//! variables and secrets per service (`deploy::sluice_environments` decides both).
//!
//! PostgreSQL and Redis are the cluster's managed services and are not deployed here: where
//! they are comes from a ConfigMap the operator creates (`<project>-services`). No secret is
//! written: each is a `secretKeyRef` into the Secret `<project>-secrets` that the operator
//! creates from `.env`, and a URL that carries the database password is composed by
//! Kubernetes from earlier variables (`$(POSTGRES_PASSWORD)`).
//!
//! Each file is a minijinja template under `codegen/templates/kubernetes/`, rendered from
//! values derived here, ordered and without the clock, like every generated file.

use super::deploy::{self, EnvSource};
use super::{GeneratedFile, header};
use crate::model::Config;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, Error, Value, context, syntax::SyntaxConfig};
use serde::Serialize;
use std::collections::BTreeMap;

/// The uid and gid every pod runs as: the image's `sluice` user (generated/Dockerfile).
/// PgBouncer runs as it too: it needs no account, only a writable `/run/pgbouncer`.
pub const RUN_AS_USER: u32 = 10001;
/// The keys of the operator's ConfigMap `<project>-services`: where the cluster's
/// PostgreSQL and Redis are.
pub const POSTGRES_HOST_VAR: &str = "SLUICE_POSTGRES_HOST";
pub const POSTGRES_PORT_VAR: &str = "SLUICE_POSTGRES_PORT";
pub const REDIS_HOST_VAR: &str = "SLUICE_REDIS_HOST";
pub const REDIS_PORT_VAR: &str = "SLUICE_REDIS_PORT";
/// The ScaledObject's file: applied on its own, where KEDA is installed, so it is not among
/// the kustomization's resources (without KEDA's CRD, `kubectl apply -k` would fail).
pub const AUTOSCALER_FILE: &str = "kubernetes/worker-autoscaler.yaml";
/// Where PgBouncer's start-up script writes the `[databases]` entry it composes from the
/// operator's ConfigMap: the generated ini cannot know the managed PostgreSQL's host.
const PGBOUNCER_DATABASES: &str = "/run/pgbouncer/databases.ini";
/// The longest object-name suffix (`-pgbouncer`, `-webserver`): names are DNS labels of at
/// most 63 characters.
const LONGEST_SUFFIX: usize = 10;

const TEMPLATES: &[(&str, &str)] = &[
    ("kubernetes/operator.j2", include_str!("../../templates/kubernetes/operator.j2")),
    ("kubernetes/kustomization.yaml", include_str!("../../templates/kubernetes/kustomization.yaml.j2")),
    ("kubernetes/settings.yaml", include_str!("../../templates/kubernetes/settings.yaml.j2")),
    ("kubernetes/data.yaml", include_str!("../../templates/kubernetes/data.yaml.j2")),
    ("kubernetes/pgbouncer.yaml", include_str!("../../templates/kubernetes/pgbouncer.yaml.j2")),
    ("kubernetes/sluice.yaml", include_str!("../../templates/kubernetes/sluice.yaml.j2")),
    (AUTOSCALER_FILE, include_str!("../../templates/kubernetes/worker-autoscaler.yaml.j2")),
];

/// Renders every manifest, by path relative to `generated/`.
pub fn render(config: &Config, source: &str) -> Result<Vec<GeneratedFile>, Error> {
    let env = environment()?;
    let context = Context::new(config)?;
    let base = Value::from(Serde(&context));
    let file = |path: &str, template: &str, ctx: Value| -> Result<GeneratedFile, Error> {
        let body = env.get_template(template)?.render(ctx)?;
        Ok(GeneratedFile { path: path.to_string(), contents: header("#", source) + &body })
    };
    let mut files = Vec::new();
    for w in &context.workloads {
        let ctx = context! { w => Value::from(Serde(w)), ..base.clone() };
        files.push(file(&format!("kubernetes/{}.yaml", w.name), "kubernetes/sluice.yaml", ctx)?);
    }
    for (path, _) in TEMPLATES.iter().filter(|(path, _)| path.ends_with(".yaml") && *path != "kubernetes/sluice.yaml") {
        files.push(file(path, path, base.clone())?);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn environment() -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).keep_trailing_newline(true).build()?);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("yaml", deploy::yaml);
    for (path, source) in TEMPLATES {
        env.add_template(path, source)?;
    }
    Ok(env)
}

/// What the templates see.
#[derive(Debug, Serialize)]
struct Context<'a> {
    config: &'a Config,
    /// The model's project: the Redis keys' prefix.
    project: &'a str,
    /// `project` as the prefix of object names (DNS labels: no `_`).
    prefix: String,
    image: &'a str,
    pgbouncer_image: String,
    secret: String,
    services: String,
    settings: String,
    /// Settings every sluice service shares (the ConfigMap `<prefix>-settings`).
    settings_data: BTreeMap<String, String>,
    /// Changes with the settings, so that pods restart to read them.
    settings_checksum: String,
    data_claim: String,
    data_dir: &'static str,
    run_as: u32,
    db_password_var: &'a str,
    service_vars: [&'static str; 4],
    pgbouncer: Pgbouncer,
    workloads: Vec<Workload>,
    /// Every manifest `kubectl apply -k` applies.
    resources: Vec<String>,
    autoscaler: Autoscaler,
}

#[derive(Debug, Serialize)]
struct Pgbouncer {
    name: String,
    ini: String,
    ini_checksum: String,
    databases_file: &'static str,
    /// The `[databases]` entry's database name and PostgreSQL database.
    database: String,
    user_var: &'static str,
    password_var: &'static str,
}

/// A sluice service: the one-shot init as a Job, the others as Deployments.
#[derive(Debug, Serialize)]
struct Workload {
    /// The compose service, the container and the `component` label.
    name: &'static str,
    /// The object's name, `<prefix>-<name>`.
    object: String,
    job: bool,
    /// Arguments after the image's `sluice` entrypoint.
    args: Vec<String>,
    replicas: u32,
    env: Vec<EnvVar>,
    /// The web server's port: a Service, HTTP probes and a preStop pause.
    port: Option<u16>,
    /// `sluice healthcheck <name>`, the compose health check, as the readiness probe.
    healthcheck: Option<Vec<String>>,
    termination_grace: Option<u32>,
    /// `minAvailable` or `maxUnavailable` of its PodDisruptionBudget.
    disruption: Option<(&'static str, u32)>,
    resources: Resources,
    /// A writable home directory (an emptyDir): shell tasks may write under `$HOME`.
    writable_home: bool,
    comment: &'static [&'static str],
}

#[derive(Clone, Debug, Serialize)]
struct Resources {
    cpu: &'static str,
    memory: &'static str,
    cpu_limit: &'static str,
    memory_limit: &'static str,
}

/// One entry of a container's `env`: a `value`, or a key of the Secret or of the
/// operator's ConfigMap.
#[derive(Debug, Serialize)]
struct EnvVar {
    name: String,
    value: Option<String>,
    secret_key: Option<String>,
    /// A secret with a default the service applies when the key is missing.
    optional: bool,
    services_key: Option<String>,
}

#[derive(Debug, Serialize)]
struct Autoscaler {
    min: u32,
    max: u32,
    /// Target stream length per worker: its task slots.
    per_worker: u32,
    broker_db: u8,
    /// (queue, stream) per queue the workers listen on.
    streams: Vec<(String, String)>,
}

impl<'a> Context<'a> {
    fn new(config: &'a Config) -> Result<Self, Error> {
        let d = &config.deployment;
        let project = d.project.value.as_str();
        let connection_vars = deploy::checked_connection_vars(config)?;
        let prefix = object_prefix(project)?;
        let db = &d.metadata_db;
        let db_password_var = db.password.value.env.as_str();
        let pgbouncer_name = format!("{prefix}-pgbouncer");
        let environments = deploy::sluice_environments(config, &connection_vars);

        // Settings that every service has, with one value, are the settings ConfigMap;
        // any other (none today) is written into its container's env.
        let mut settings_data: BTreeMap<String, String> = BTreeMap::new();
        if let Some((_, first)) = environments.first() {
            for (name, source) in first {
                if let EnvSource::Setting(value) = source
                    && environments.iter().all(|(_, env)| env.get(name) == Some(source))
                {
                    settings_data.insert(name.clone(), value.clone());
                }
            }
        }

        let urls = Urls {
            user: &db.user.value,
            database: &db.name.value,
            password_var: db_password_var,
            pgbouncer: &pgbouncer_name,
            pgbouncer_port: config.pgbouncer.listen_port.value,
            broker_db: config.redis.broker_db.value,
            rate_limit_db: config.redis.rate_limit_db.value,
        };
        let mut env_of: BTreeMap<&str, Vec<EnvVar>> =
            environments.iter().map(|(service, env)| (*service, container_env(env, &settings_data, &urls))).collect();
        let mut take_env = |service: &str| env_of.remove(service).unwrap_or_default();
        let healthcheck = |service: &str| Some(vec!["sluice".into(), "healthcheck".into(), service.into()]);
        let small = Resources { cpu: "100m", memory: "128Mi", cpu_limit: "1", memory_limit: "512Mi" };
        let executor = &d.executor;
        let workloads = vec![
            Workload {
                name: "init",
                object: format!("{prefix}-init"),
                job: true,
                args: vec!["init".into()],
                replicas: 1,
                env: take_env("init"),
                port: None,
                healthcheck: None,
                termination_grace: None,
                disruption: None,
                resources: small.clone(),
                writable_home: false,
                comment: &[
                    "One-shot: migrates the metadata database (directly, not through PgBouncer), syncs the",
                    "compiled pipelines and creates the admin user. The other services wait for the database",
                    "to know their pipelines, so they need no ordering. A Job's pod template cannot change:",
                    "before applying a new image, `kubectl delete job NAME --ignore-not-found`; a finished",
                    "Job is deleted after an hour anyway, and the next `kubectl apply -k` runs init again.",
                ],
            },
            Workload {
                name: "webserver",
                object: format!("{prefix}-webserver"),
                job: false,
                args: vec!["webserver".into()],
                // Two, so that a drain or a rollout always leaves one serving: sessions are
                // signed with the shared key and rate limits live in Redis.
                replicas: 2,
                env: take_env("webserver"),
                port: Some(d.webserver_port.value),
                healthcheck: None,
                termination_grace: None,
                disruption: Some(("minAvailable", 1)),
                resources: Resources { cpu: "100m", memory: "256Mi", cpu_limit: "1", memory_limit: "1Gi" },
                writable_home: false,
                comment: &["Web UI and REST API, behind the Service of the same name (add an Ingress to expose it)."],
            },
            Workload {
                name: "scheduler",
                object: format!("{prefix}-scheduler"),
                job: false,
                args: vec!["scheduler".into()],
                replicas: 1,
                env: take_env("scheduler"),
                port: None,
                healthcheck: healthcheck("scheduler"),
                termination_grace: None,
                disruption: None,
                resources: small,
                writable_home: false,
                comment: &[
                    "Creates runs and enqueues ready tasks. Several may run: they coordinate through row",
                    "locks, so a rollout that briefly runs two is harmless.",
                ],
            },
            Workload {
                name: "worker",
                object: format!("{prefix}-worker"),
                job: false,
                args: deploy::worker_args(config),
                replicas: executor.worker_replicas.value,
                env: take_env("worker"),
                port: None,
                healthcheck: healthcheck("worker"),
                termination_grace: Some(deploy::WORKER_STOP_GRACE_SECS),
                // One at a time: each stopping worker hands its tasks back before the next goes.
                disruption: Some(("maxUnavailable", 1)),
                resources: Resources { cpu: "500m", memory: "512Mi", cpu_limit: "2", memory_limit: "2Gi" },
                writable_home: true,
                comment: &[
                    "Runs tasks. On SIGTERM a worker stops claiming, lets running tasks finish for",
                    "SLUICE_WORKER_GRACE_SECS, then hands the rest back to the queue, all within",
                    "terminationGracePeriodSeconds (compose's stop_grace_period). No preStop hook: nothing",
                    "routes traffic to a worker, and a hook would only delay SIGTERM and eat into that grace.",
                ],
            },
        ];

        let ini =
            deploy::pgbouncer_ini(config, &format!("%include {PGBOUNCER_DATABASES}"), "kubernetes/pgbouncer.yaml")?;
        let settings_text: String = settings_data.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let queues = deploy::queues(config);
        let per_worker = executor.worker_concurrency.value.max(1);
        let min = executor.worker_replicas.value;
        let mut resources: Vec<String> = ["data", "settings", "pgbouncer"]
            .iter()
            .map(|f| format!("{f}.yaml"))
            .chain(workloads.iter().map(|w| format!("{}.yaml", w.name)))
            .collect();
        resources.sort();

        Ok(Context {
            config,
            project,
            image: &d.image,
            pgbouncer_image: pgbouncer_image(&d.image),
            secret: format!("{prefix}-secrets"),
            services: format!("{prefix}-services"),
            settings: format!("{prefix}-settings"),
            settings_checksum: checksum(&settings_text),
            settings_data,
            data_claim: format!("{prefix}-data"),
            data_dir: deploy::SHARED_DATA_DIR,
            run_as: RUN_AS_USER,
            db_password_var,
            service_vars: [POSTGRES_HOST_VAR, POSTGRES_PORT_VAR, REDIS_HOST_VAR, REDIS_PORT_VAR],
            pgbouncer: Pgbouncer {
                name: pgbouncer_name,
                ini_checksum: checksum(&ini),
                ini,
                databases_file: PGBOUNCER_DATABASES,
                database: db.name.value.clone(),
                user_var: deploy::PGBOUNCER_USER_VAR,
                password_var: deploy::PGBOUNCER_PASSWORD_VAR,
            },
            workloads,
            resources,
            autoscaler: Autoscaler {
                min,
                // `parallelism` caps the task instances queued or running across all
                // workers: more workers than it takes to run that many at once would idle.
                max: min.max(executor.parallelism.value.div_ceil(per_worker)),
                per_worker,
                broker_db: config.redis.broker_db.value,
                streams: queues.iter().map(|q| (q.to_string(), format!("sluice:{project}:queue:{q}"))).collect(),
            },
            prefix,
        })
    }
}

/// What the URLs of the metadata database and Redis are made of.
struct Urls<'a> {
    user: &'a str,
    database: &'a str,
    password_var: &'a str,
    pgbouncer: &'a str,
    pgbouncer_port: u16,
    broker_db: u8,
    rate_limit_db: u8,
}

/// A container's `env`: first what later values refer to (Kubernetes expands `$(NAME)` only
/// for variables defined before), then the service's own variables by name. Settings that
/// come from the settings ConfigMap (`envFrom`) are left out.
fn container_env(env: &BTreeMap<String, EnvSource>, shared: &BTreeMap<String, String>, urls: &Urls) -> Vec<EnvVar> {
    let var = |name: &str| EnvVar {
        name: name.to_string(),
        value: None,
        secret_key: None,
        optional: false,
        services_key: None,
    };
    let mut out: Vec<EnvVar> = [POSTGRES_HOST_VAR, POSTGRES_PORT_VAR, REDIS_HOST_VAR, REDIS_PORT_VAR]
        .iter()
        .map(|name| EnvVar { services_key: Some(name.to_string()), ..var(name) })
        .collect();
    out.push(EnvVar { secret_key: Some(urls.password_var.to_string()), ..var(urls.password_var) });
    let (user, database, password) = (urls.user, urls.database, urls.password_var);
    let redis = format!("redis://$({REDIS_HOST_VAR}):$({REDIS_PORT_VAR})");
    for (name, source) in env {
        if out.iter().any(|e| &e.name == name) {
            continue;
        }
        let value = |v: String| EnvVar { value: Some(v), ..var(name) };
        out.push(match source {
            EnvSource::Setting(v) if shared.get(name) == Some(v) => continue,
            // `$$` is a literal `$` to Kubernetes.
            EnvSource::Setting(v) => value(v.replace('$', "$$")),
            EnvSource::Secret { default } => {
                EnvVar { secret_key: Some(name.clone()), optional: default.is_some(), ..var(name) }
            }
            EnvSource::DatabaseUrl => {
                value(format!("postgres://{user}:$({password})@{}:{}/{database}", urls.pgbouncer, urls.pgbouncer_port))
            }
            EnvSource::DatabaseDirectUrl => value(format!(
                "postgres://{user}:$({password})@$({POSTGRES_HOST_VAR}):$({POSTGRES_PORT_VAR})/{database}"
            )),
            EnvSource::BrokerUrl => value(format!("{redis}/{}", urls.broker_db)),
            EnvSource::RateLimitUrl => value(format!("{redis}/{}", urls.rate_limit_db)),
        });
    }
    out
}

/// Object names start with `<project>-`: a DNS label (lowercase letters, digits, `-`,
/// starting with a letter), so the project's `_` become `-`.
fn object_prefix(project: &str) -> Result<String, Error> {
    let prefix = project.replace('_', "-");
    let starts_with_letter = prefix.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !starts_with_letter || prefix.len() + LONGEST_SUFFIX > 63 {
        return Err(deploy::invalid(format!(
            "project `{project}` cannot prefix Kubernetes object names: start it with a letter and keep it \
             under {} characters",
            63 - LONGEST_SUFFIX + 1
        )));
    }
    Ok(prefix)
}

/// PgBouncer's image: the `pgbouncer` target of generated/Dockerfile, in the sluice image's
/// repository with `-pgbouncer` after its tag (`mlsp/sluice:latest-pgbouncer`). A digest
/// pins the sluice image only, so it is dropped here.
pub fn pgbouncer_image(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    let tagged = name.rsplit('/').next().is_some_and(|last| last.contains(':'));
    if tagged { format!("{name}-pgbouncer") } else { format!("{name}:latest-pgbouncer") }
}

/// FNV-1a of `text`, in hex: a pod template annotation that changes with a ConfigMap, so
/// `kubectl apply` restarts the pods that read it once at start.
fn checksum(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}
