//! Lower: the raw YAML tree -> the typed model. Every key is read with its type, every
//! default applied, and every structural mistake (unknown key, wrong type, missing id)
//! recorded; lowering goes on after a mistake so one run reports them all.

use crate::diag::{Diagnostic, Diagnostics, suggestion};
use crate::model::*;
use crate::parse::{Node, Value};
use crate::source::Span;
use sluice_contract::env::{env_ref, is_env_name};
use sluice_contract::ident::is_identifier;
use sluice_contract::secrets::is_secret_key;
use std::collections::BTreeMap;

pub const TOP_KEYS: &[&str] = &["deployment", "connections", "pools", "pgbouncer", "redis", "pipelines"];
const DEPLOYMENT_KEYS: &[&str] =
    &["project", "image", "webserver_port", "executor", "admin", "fernet_key_env", "secret_key_env", "metadata_db"];
const EXECUTOR_KEYS: &[&str] =
    &["parallelism", "worker_concurrency", "worker_replicas", "queues", "paused_at_creation", "load_examples"];
const ADMIN_KEYS: &[&str] = &["username_env", "password_env", "email_env"];
const METADATA_DB_KEYS: &[&str] = &["name", "user", "password"];
const CONNECTION_KEYS: &[&str] =
    &["id", "type", "description", "host", "port", "schema", "database", "login", "password", "extra", "standalone"];
const POOL_KEYS: &[&str] = &["name", "slots", "description"];
const PGBOUNCER_KEYS: &[&str] =
    &["pool_mode", "listen_port", "max_client_conn", "default_pool_size", "min_pool_size", "reserve_pool_size"];
const REDIS_KEYS: &[&str] = &["maxmemory", "maxmemory_policy", "broker_db", "rate_limit_db"];
pub const PIPELINE_KEYS: &[&str] = &[
    "id",
    "description",
    "owner",
    "tags",
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "paused_at_creation",
    "params",
    "default_args",
    "on_failure",
    "on_success",
    "tasks",
];
const PARAM_KEYS: &[&str] = &["type", "default", "description"];
const SETTINGS_KEYS: &[&str] = &[
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
    "email_on_failure",
    "email_on_retry",
    "email",
    "on_failure",
    "on_retry",
    "on_success",
    "sla",
];
const DEFAULT_ARGS_EXTRA_KEYS: &[&str] = &["pool", "queue", "priority_weight"];
pub const TASK_KEYS: &[&str] = &[
    "id",
    "description",
    "rust",
    "shell",
    "env",
    "http",
    "sql",
    "depends_on",
    "trigger_rule",
    "pool",
    "pool_slots",
    "priority_weight",
    "queue",
    "connections",
    "outputs",
    "renamed_from",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
    "email_on_failure",
    "email_on_retry",
    "email",
    "on_failure",
    "on_retry",
    "on_success",
    "sla",
];
const TASK_KINDS: &[&str] = &["rust", "shell", "http", "sql"];
/// Environment names a shell task's `env:` may not set: Sluice sets them from the run.
const RESERVED_ENV_PREFIXES: &[&str] = &["SLUICE_", "AIRFLOW_CTX_", "AIRFLOW_CONN_"];
const HTTP_KEYS: &[&str] = &["conn", "method", "endpoint", "body", "headers", "expect_status"];
const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
const SQL_KEYS: &[&str] = &["conn", "statement"];
pub const POOL_MODES: &[&str] = &["session", "transaction", "statement"];
pub const EVICTION_POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

/// Lowers the whole file. Returns a model even when errors were found, with the broken
/// parts left out or defaulted, so validation can still report what else is wrong.
pub fn lower(root: &Node, diags: &mut Diagnostics) -> Config {
    let mut l = Lowerer { diags };
    l.config(root)
}

struct Lowerer<'d> {
    diags: &'d mut Diagnostics,
}

/// The recognised entries of one YAML mapping.
struct Fields<'n> {
    span: Span,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, _, v)| *v)
    }

    /// The value of `key` unless it is absent or written as `null`/`~`.
    fn value(&self, key: &str) -> Option<&'n Node> {
        self.get(key).filter(|n| n.value != Value::Null)
    }

    fn key_span(&self, key: &str) -> Span {
        self.entries.iter().find(|(k, _, _)| *k == key).map_or(self.span, |(_, k, _)| k.span)
    }
}

impl Lowerer<'_> {
    fn error(&mut self, code: &'static str, span: Span, message: String, hint: Option<String>) {
        let mut d = Diagnostic::error(code, span, message);
        d.hint = hint;
        self.diags.push(d);
    }

    fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        self.error("wrong-type", node.span, format!("{what} must be {expected}, found {}", node.value.kind()), None);
    }

    /// Checks that `node` is a mapping with only `allowed` keys, each once.
    fn fields<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let entries = self.fields_any(node, what)?;
        let mut fields = Fields { span: node.span, entries: Vec::new() };
        for (name, key, value) in entries {
            if allowed.contains(&name) {
                fields.entries.push((name, key, value));
            } else {
                let hint = suggestion(name, allowed.iter().copied())
                    .unwrap_or_else(|| format!("known keys: {}", allowed.join(", ")));
                self.error("unknown-key", key.span, format!("unknown key `{name}` in {what}"), Some(hint));
            }
        }
        Some(fields)
    }

    fn missing(&mut self, fields: &Fields<'_>, key: &str, what: &str, hint: &str) {
        self.error("missing-key", fields.span, format!("{what} has no `{key}`"), Some(hint.into()));
    }

    /// A string that must be there; its absence is reported with `hint`.
    fn required(&mut self, fields: &Fields<'_>, key: &str, what: &str, hint: &str) -> Option<Sp<String>> {
        let value = self.opt_string(fields, key, what);
        if value.is_none() && fields.value(key).is_none() {
            self.missing(fields, key, what, hint);
        }
        value
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Sp<String>> {
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            _ => {
                self.wrong_type(node, what, "a string");
                return None;
            }
        };
        Some(Sp::new(text, node.span))
    }

    fn opt_string(&mut self, fields: &Fields<'_>, key: &str, what: &str) -> Option<Sp<String>> {
        let node = fields.value(key)?;
        self.string(node, &format!("`{key}` of {what}"))
    }

    fn string_or(&mut self, fields: &Fields<'_>, key: &str, what: &str, default: &str) -> Sp<String> {
        self.opt_string(fields, key, what).unwrap_or_else(|| Sp::new(default.to_string(), fields.key_span(key)))
    }

    fn integer<T: TryFrom<i64>>(&mut self, node: &Node, what: &str, min: i64, max: i64) -> Option<Sp<T>> {
        let Value::Int(i) = node.value else {
            self.wrong_type(node, what, &format!("an integer from {min} to {max}"));
            return None;
        };
        if i < min || i > max {
            self.error("out-of-range", node.span, format!("{what} must be from {min} to {max}, found {i}"), None);
            return None;
        }
        T::try_from(i).ok().map(|v| Sp::new(v, node.span))
    }

    fn int_or<T: TryFrom<i64> + Default>(
        &mut self,
        fields: &Fields<'_>,
        key: &str,
        what: &str,
        (min, max): (i64, i64),
        default: T,
    ) -> Sp<T> {
        let span = fields.key_span(key);
        fields
            .value(key)
            .and_then(|n| self.integer(n, &format!("`{key}` of {what}"), min, max))
            .unwrap_or(Sp::new(default, span))
    }

    fn bool_or(&mut self, fields: &Fields<'_>, key: &str, what: &str, default: bool) -> Sp<bool> {
        match fields.value(key) {
            Some(node) => match node.value {
                Value::Bool(b) => Sp::new(b, node.span),
                _ => {
                    self.wrong_type(node, &format!("`{key}` of {what}"), "`true` or `false`");
                    Sp::new(default, node.span)
                }
            },
            None => Sp::new(default, fields.key_span(key)),
        }
    }

    /// A list of strings; a single string is read as a list of one.
    fn string_list(&mut self, fields: &Fields<'_>, key: &str, what: &str) -> Vec<Sp<String>> {
        let Some(node) = fields.value(key) else { return Vec::new() };
        let what = format!("`{key}` of {what}");
        match &node.value {
            Value::Seq(items) => items.iter().filter_map(|i| self.string(i, &format!("an entry of {what}"))).collect(),
            Value::Str(_) => self.string(node, &what).into_iter().collect(),
            _ => {
                self.wrong_type(node, &what, "a list of strings");
                Vec::new()
            }
        }
    }

    /// `90` (seconds), `30s`, `5m`, `2h`, `1d`, or combinations like `1h30m`.
    fn duration(&mut self, node: &Node, what: &str) -> Option<u64> {
        match &node.value {
            Value::Int(i) if *i >= 0 => u64::try_from(*i).ok(),
            Value::Str(s) => match parse_duration(s) {
                Some(secs) => Some(secs),
                None => {
                    self.error(
                        "invalid-duration",
                        node.span,
                        format!("{what} is not a duration: `{s}`"),
                        Some("write seconds as a number, or a duration like `30s`, `5m`, `2h`, `1d`, `1h30m`".into()),
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(node, what, "a duration like `5m`");
                None
            }
        }
    }

    fn env_name(&mut self, fields: &Fields<'_>, key: &str, what: &str, default: &str) -> Sp<String> {
        let name = self.string_or(fields, key, what, default);
        if !is_env_name(&name.value) {
            self.error(
                "invalid-env-name",
                name.span,
                format!("`{key}` of {what} must name an environment variable, found `{}`", name.value),
                Some("use capitals, digits and `_`, e.g. `SLUICE_ADMIN_PASSWORD`".into()),
            );
        }
        name
    }

    /// A secret: must be `${ENV_VAR}`; a literal value is an error and is never kept.
    fn secret(&mut self, node: &Node, what: &str, suggested_env: &str) -> Option<Sp<EnvRef>> {
        let text = self.string(node, what)?;
        match env_ref(&text.value) {
            Some(env) => Some(Sp::new(EnvRef { env: env.to_string() }, text.span)),
            None => {
                self.error(
                    "literal-secret",
                    text.span,
                    format!("{what} is a literal secret; secrets must come from the environment"),
                    Some(format!(
                        "write `${{{suggested_env}}}` and set {suggested_env} in the environment (see generated/.env.example)"
                    )),
                );
                None
            }
        }
    }

    fn config(&mut self, root: &Node) -> Config {
        let top =
            self.fields(root, "the top level", TOP_KEYS).unwrap_or(Fields { span: root.span, entries: Vec::new() });
        let deployment = self.deployment(top.value("deployment"));
        let connections = self.list(top.value("connections"), "`connections`", |l, n, i| l.connection(n, i));
        let pools = self.list(top.value("pools"), "`pools`", |l, n, _| l.pool(n));
        let pgbouncer = self.pgbouncer(top.value("pgbouncer"));
        let redis = self.redis(top.value("redis"));
        if top.get("pipelines").is_none() {
            self.missing(&top, "pipelines", "the file", "add `pipelines:` with at least one pipeline");
        }
        let paused = deployment.executor.paused_at_creation;
        let pipelines = self.list(top.value("pipelines"), "`pipelines`", |l, n, _| l.pipeline(n, paused));
        Config { deployment, connections, pools, pgbouncer, redis, pipelines }
    }

    fn list<T>(
        &mut self,
        node: Option<&Node>,
        what: &str,
        mut item: impl FnMut(&mut Self, &Node, usize) -> Option<T>,
    ) -> Vec<T> {
        let Some(node) = node else { return Vec::new() };
        let Value::Seq(items) = &node.value else {
            self.wrong_type(node, what, "a list (entries start with `- `)");
            return Vec::new();
        };
        items.iter().enumerate().filter_map(|(i, n)| item(self, n, i)).collect()
    }

    fn sub_fields<'n>(&mut self, node: Option<&'n Node>, what: &str, keys: &[&str], at: Span) -> Fields<'n> {
        node.and_then(|n| self.fields(n, what, keys)).unwrap_or(Fields { span: at, entries: Vec::new() })
    }

    fn deployment(&mut self, node: Option<&Node>) -> Deployment {
        let at = node.map_or(Span::default(), |n| n.span);
        let f = self.sub_fields(node, "`deployment`", DEPLOYMENT_KEYS, at);
        let w = "`deployment`";
        let project = self.string_or(&f, "project", w, "sluice");
        if !is_identifier(&project.value) {
            self.error(
                "invalid-id",
                project.span,
                format!("project name `{}` must be lowercase letters, digits and `_`", project.value),
                Some("it prefixes container and network names, e.g. `mlsp`".into()),
            );
        }
        let image =
            self.opt_string(&f, "image", w).map_or_else(|| format!("{}/sluice:latest", project.value), |s| s.value);
        let webserver_port = self.int_or(&f, "webserver_port", w, (1, 65535), 8080u16);

        let e = self.sub_fields(f.value("executor"), "`deployment.executor`", EXECUTOR_KEYS, f.span);
        let ew = "`deployment.executor`";
        let mut queues = self.string_list(&e, "queues", ew);
        if !queues.iter().any(|q| q.value == DEFAULT_QUEUE) {
            queues.insert(0, Sp::new(DEFAULT_QUEUE.to_string(), e.key_span("queues")));
        }
        let executor = Executor {
            parallelism: self.int_or(&e, "parallelism", ew, (1, 100_000), 32u32),
            worker_concurrency: self.int_or(&e, "worker_concurrency", ew, (1, 10_000), 16u32),
            worker_replicas: self.int_or(&e, "worker_replicas", ew, (0, 1_000), 1u32),
            queues,
            paused_at_creation: self.bool_or(&e, "paused_at_creation", ew, true).value,
            load_examples: self.bool_or(&e, "load_examples", ew, false).value,
        };

        let a = self.sub_fields(f.value("admin"), "`deployment.admin`", ADMIN_KEYS, f.span);
        let aw = "`deployment.admin`";
        let admin = Admin {
            username_env: self.env_name(&a, "username_env", aw, "SLUICE_ADMIN_USERNAME"),
            password_env: self.env_name(&a, "password_env", aw, "SLUICE_ADMIN_PASSWORD"),
            email_env: self.env_name(&a, "email_env", aw, "SLUICE_ADMIN_EMAIL"),
        };
        let fernet_key_env = self.env_name(&f, "fernet_key_env", w, "SLUICE_FERNET_KEY");
        let secret_key_env = self.env_name(&f, "secret_key_env", w, "SLUICE_SECRET_KEY");

        let m = self.sub_fields(f.value("metadata_db"), "`deployment.metadata_db`", METADATA_DB_KEYS, f.span);
        let mw = "`deployment.metadata_db`";
        let password = match m.value("password") {
            Some(node) => self.secret(node, "the metadata database password", "POSTGRES_PASSWORD"),
            None => None,
        };
        let metadata_db = MetadataDb {
            name: self.string_or(&m, "name", mw, "sluice"),
            user: self.string_or(&m, "user", mw, "sluice"),
            password: password
                .unwrap_or_else(|| Sp::new(EnvRef { env: "POSTGRES_PASSWORD".into() }, m.key_span("password"))),
        };
        Deployment { project, image, webserver_port, executor, admin, fernet_key_env, secret_key_env, metadata_db }
    }

    fn connection(&mut self, node: &Node, index: usize) -> Option<Connection> {
        let what = peek_id(node, "id").map_or(format!("connection #{}", index + 1), |id| format!("connection `{id}`"));
        let f = self.fields(node, &what, CONNECTION_KEYS)?;
        let id = self.required(&f, "id", &what, "add `id: my_connection`")?;
        let w = format!("connection `{}`", id.value);
        let conn_type = match self.opt_string(&f, "type", &w) {
            Some(t) => match ConnType::ALL.iter().find(|(n, _)| *n == t.value) {
                Some((_, ty)) => Sp::new(*ty, t.span),
                None => {
                    let names = ConnType::ALL.iter().map(|(n, _)| *n);
                    let hint = suggestion(&t.value, names.clone())
                        .unwrap_or_else(|| format!("known types: {}", names.collect::<Vec<_>>().join(", ")));
                    self.error("unknown-type", t.span, format!("unknown connection type `{}`", t.value), Some(hint));
                    return None;
                }
            },
            None => {
                self.missing(&f, "type", &w, "add `type:` (postgres, redis, http, sqlite or smtp)");
                return None;
            }
        };
        let password = match f.value("password") {
            Some(n) => {
                self.secret(n, &format!("the password of {w}"), &format!("{}_PASSWORD", id.value.to_uppercase()))
            }
            None => None,
        };
        let mut extra = BTreeMap::new();
        if let Some(node) = f.value("extra") {
            if let Value::Map(entries) = &node.value {
                for (key, value) in entries {
                    let Value::Str(key) = &key.value else { continue };
                    if is_secret_key(key)
                        && let Value::Str(text) = &value.value
                        && env_ref(text).is_none()
                    {
                        let env = format!("{}_{}", id.value, key).to_uppercase();
                        self.secret(value, &format!("`extra.{key}` of {w}"), &env);
                        continue;
                    }
                    extra.insert(key.clone(), to_json(value));
                }
            } else {
                self.wrong_type(node, &format!("`extra` of {w}"), "a mapping");
            }
        }
        let port = f.value("port").and_then(|n| self.integer::<u16>(n, &format!("`port` of {w}"), 1, 65535));
        let standalone =
            self.opt_string(&f, "standalone", &w).filter(|uri| self.standalone_uri(uri, conn_type.value, &id.value));
        Some(Connection {
            description: self.opt_string(&f, "description", &w).map(|s| s.value).unwrap_or_default(),
            host: self.opt_string(&f, "host", &w).map(|s| s.value),
            port: port.map(|p| p.value),
            schema: self.opt_string(&f, "schema", &w).map(|s| s.value),
            database: self.opt_string(&f, "database", &w).map(|s| s.value),
            login: self.opt_string(&f, "login", &w).map(|s| s.value),
            id,
            conn_type,
            password,
            extra,
            standalone,
        })
    }

    /// Whether a connection's `standalone:` URI is usable: `type://…` of the declared type,
    /// or of a stand-in for it (sqlite for postgres, a `file` directory for an http
    /// source), and without a password (secrets come from the environment).
    fn standalone_uri(&mut self, uri: &Sp<String>, declared: ConnType, id: &str) -> bool {
        let w = format!("connection `{id}`");
        let Some((scheme, rest)) = uri.value.split_once("://") else {
            let hint = "write a URI such as `sqlite://app.sqlite` or `file://data/sample`".to_string();
            self.error("invalid-value", uri.span, format!("`standalone` of {w} is not a `type://…` URI"), Some(hint));
            return false;
        };
        let scheme = scheme.to_ascii_lowercase();
        let name = match scheme.as_str() {
            "postgresql" => "postgres",
            "https" => "http",
            other => other,
        };
        let Some((_, ty)) = ConnType::ALL.iter().find(|(n, _)| *n == name) else {
            let names = ConnType::ALL.iter().map(|(n, _)| *n);
            let hint = suggestion(name, names.clone())
                .unwrap_or_else(|| format!("known types: {}", names.collect::<Vec<_>>().join(", ")));
            self.error(
                "unknown-type",
                uri.span,
                format!("`standalone` of {w} has unknown connection type `{scheme}`"),
                Some(hint),
            );
            return false;
        };
        let compatible = *ty == declared
            || (declared == ConnType::Postgres && *ty == ConnType::Sqlite)
            || (declared == ConnType::Http && *ty == ConnType::File);
        if !compatible {
            let hint = match declared {
                ConnType::Postgres => {
                    "a postgres connection stands in as `postgres://…` or `sqlite://file.sqlite`".into()
                }
                ConnType::Http => "an http connection stands in as `http://…` or a local directory `file://dir`".into(),
                other => format!("a {0} connection stands in only as `{0}://…`", other.name()),
            };
            self.error(
                "wrong-connection-type",
                uri.span,
                format!(
                    "`standalone` of {w} is a {} connection, but the connection is of type {}",
                    ty.name(),
                    declared.name()
                ),
                Some(hint),
            );
            return false;
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if *ty != ConnType::File
            && let Some((userinfo, _)) = authority.rsplit_once('@')
            && userinfo.contains(':')
        {
            let env = format!("{}{}", sluice_contract::settings::CONN_PREFIX, id.to_uppercase());
            self.error(
                "literal-secret",
                uri.span,
                format!("`standalone` of {w} holds a password; secrets must come from the environment"),
                Some(format!("drop the password from the URI and set {env} in the environment instead")),
            );
            return false;
        }
        true
    }

    fn pool(&mut self, node: &Node) -> Option<Pool> {
        let f = self.fields(node, "a pool", POOL_KEYS)?;
        let name = self.required(&f, "name", "a pool", "add `name: my_pool`")?;
        let w = format!("pool `{}`", name.value);
        let Some(slots) =
            f.value("slots").and_then(|n| self.integer::<u32>(n, &format!("`slots` of {w}"), 0, 1_000_000))
        else {
            if f.value("slots").is_none() {
                self.missing(&f, "slots", &w, "add `slots: 4`, the number of task slots");
            }
            return None;
        };
        let description = self.opt_string(&f, "description", &w).map(|s| s.value).unwrap_or_default();
        Some(Pool { name, slots, description })
    }

    fn pgbouncer(&mut self, node: Option<&Node>) -> PgBouncer {
        let f = self.sub_fields(node, "`pgbouncer`", PGBOUNCER_KEYS, Span::default());
        let w = "`pgbouncer`";
        let pool_mode = self.string_or(&f, "pool_mode", w, "transaction");
        self.one_of(&pool_mode, POOL_MODES, "pool_mode");
        PgBouncer {
            pool_mode,
            listen_port: self.int_or(&f, "listen_port", w, (1, 65535), 6432u16),
            max_client_conn: self.int_or(&f, "max_client_conn", w, (1, 1_000_000), 1000u32),
            default_pool_size: self.int_or(&f, "default_pool_size", w, (1, 10_000), 25u32),
            min_pool_size: self.int_or(&f, "min_pool_size", w, (0, 10_000), 10u32),
            reserve_pool_size: self.int_or(&f, "reserve_pool_size", w, (0, 10_000), 5u32),
        }
    }

    fn redis(&mut self, node: Option<&Node>) -> Redis {
        let f = self.sub_fields(node, "`redis`", REDIS_KEYS, Span::default());
        let w = "`redis`";
        let maxmemory = self.string_or(&f, "maxmemory", w, "512mb");
        if parse_memory(&maxmemory.value).is_none() {
            self.error(
                "invalid-size",
                maxmemory.span,
                format!("`maxmemory` is not a size: `{}`", maxmemory.value),
                Some("write bytes or a size like `512mb`, `2gb`".into()),
            );
        }
        let maxmemory_policy = self.string_or(&f, "maxmemory_policy", w, "noeviction");
        self.one_of(&maxmemory_policy, EVICTION_POLICIES, "maxmemory_policy");
        Redis {
            maxmemory,
            maxmemory_policy,
            broker_db: self.int_or(&f, "broker_db", w, (0, 15), 1u8),
            rate_limit_db: self.int_or(&f, "rate_limit_db", w, (0, 15), 2u8),
        }
    }

    fn one_of(&mut self, value: &Sp<String>, allowed: &[&str], key: &str) {
        if !allowed.contains(&value.value.as_str()) {
            let hint = suggestion(&value.value, allowed.iter().copied())
                .unwrap_or_else(|| format!("one of: {}", allowed.join(", ")));
            self.error("invalid-value", value.span, format!("`{key}` cannot be `{}`", value.value), Some(hint));
        }
    }

    fn pipeline(&mut self, node: &Node, paused_default: bool) -> Option<Pipeline> {
        let what = peek_id(node, "id").map_or("a pipeline".into(), |id| format!("pipeline `{id}`"));
        let f = self.fields(node, &what, PIPELINE_KEYS)?;
        let id = self.required(&f, "id", &what, "add `id: my_pipeline`")?;
        let w = format!("pipeline `{}`", id.value);
        let schedule = match f.get("schedule") {
            None => Sp::new(Schedule::Manual, f.key_span("schedule")),
            Some(n) if n.value == Value::Null => Sp::new(Schedule::Manual, n.span),
            Some(n) => match self.string(n, &format!("`schedule` of {w}")) {
                Some(s) if s.value == "@once" => Sp::new(Schedule::Once, s.span),
                Some(s) if s.value == "None" || s.value == "none" => Sp::new(Schedule::Manual, s.span),
                Some(s) => Sp::new(Schedule::Cron(s.value), s.span),
                None => Sp::new(Schedule::Manual, n.span),
            },
        };
        let defaults = self.default_args(f.value("default_args"), &w);
        let tasks = self.list(f.value("tasks"), &format!("`tasks` of {w}"), |l, n, i| l.task(n, i, &w, &defaults));
        match f.value("tasks").map(|n| &n.value) {
            None => self.missing(&f, "tasks", &w, "add `tasks:` with at least one task"),
            Some(Value::Seq(items)) if items.is_empty() => {
                self.diags.push(Diagnostic::warning("empty-pipeline", id.span, format!("{w} has no tasks")));
            }
            Some(_) => {}
        }
        Some(Pipeline {
            description: self.opt_string(&f, "description", &w).map(|s| s.value).unwrap_or_default(),
            owner: self.opt_string(&f, "owner", &w).map_or_else(|| "sluice".into(), |s| s.value),
            tags: self.string_list(&f, "tags", &w).into_iter().map(|s| s.value).collect(),
            schedule,
            timezone: self.string_or(&f, "timezone", &w, "UTC"),
            start_date: self.date(&f, "start_date", &w),
            end_date: self.date(&f, "end_date", &w),
            catchup: self.bool_or(&f, "catchup", &w, false),
            max_active_runs: self.int_or(&f, "max_active_runs", &w, (1, 10_000), 16u32),
            max_active_tasks: self.int_or(&f, "max_active_tasks", &w, (1, 100_000), 16u32),
            paused_at_creation: self.bool_or(&f, "paused_at_creation", &w, paused_default).value,
            params: self.params(f.value("params"), &w),
            on_failure: self.string_list(&f, "on_failure", &w),
            on_success: self.string_list(&f, "on_success", &w),
            email: defaults.settings.email.clone(),
            tasks,
            id,
        })
    }

    fn date(&mut self, f: &Fields<'_>, key: &str, what: &str) -> Option<Sp<String>> {
        let text = self.opt_string(f, key, what)?;
        match normalize_date(&text.value) {
            Some(iso) => Some(Sp::new(iso, text.span)),
            None => {
                self.error(
                    "invalid-date",
                    text.span,
                    format!("`{key}` of {what} is not a date: `{}`", text.value),
                    Some("write `2024-01-01` or `2024-01-01T06:00:00` (local time in the pipeline's timezone)".into()),
                );
                None
            }
        }
    }

    fn params(&mut self, node: Option<&Node>, what: &str) -> Vec<Param> {
        let Some(node) = node else { return Vec::new() };
        let Some(f) = self.fields_any(node, &format!("`params` of {what}")) else { return Vec::new() };
        let mut params = Vec::new();
        for (name, key, value) in f {
            let pw = format!("param `{name}` of {what}");
            let is_spec =
                matches!(&value.value, Value::Map(e) if e.iter().any(|(k, _)| k.value == Value::Str("type".into())));
            let param = if is_spec {
                let Some(p) = self.fields(value, &pw, PARAM_KEYS) else { continue };
                let Some(ty_text) = self.opt_string(&p, "type", &pw) else { continue };
                let Some(ty) = self.value_type(&ty_text, &pw) else { continue };
                let default = p.get("default").map(to_json);
                if let (Some(d), Some(node)) = (&default, p.get("default"))
                    && !ty.value.accepts(d)
                {
                    self.error(
                        "param-type",
                        node.span,
                        format!("the default of {pw} does not have type `{}`", ty.value),
                        Some(format!("give a value of type `{}`, or change `type`", ty.value)),
                    );
                }
                let description = self.opt_string(&p, "description", &pw).map(|s| s.value).unwrap_or_default();
                Param { name: Sp::new(name.to_string(), key.span), ty, default, description }
            } else {
                let default = to_json(value);
                Param {
                    name: Sp::new(name.to_string(), key.span),
                    ty: Sp::new(infer_type(&default), value.span),
                    default: Some(default),
                    description: String::new(),
                }
            };
            params.push(param);
        }
        params
    }

    /// A mapping with arbitrary (user-chosen) string keys, duplicates reported.
    fn fields_any<'n>(&mut self, node: &'n Node, what: &str) -> Option<Vec<(&'n str, &'n Node, &'n Node)>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, what, "a mapping");
            return None;
        };
        let mut out: Vec<(&str, &Node, &Node)> = Vec::new();
        for (key, value) in entries {
            let Value::Str(name) = &key.value else {
                self.error("wrong-type", key.span, format!("keys of {what} must be strings"), None);
                continue;
            };
            if let Some((_, first, _)) = out.iter().find(|(k, _, _)| k == name) {
                let line = first.span.line;
                self.error(
                    "duplicate-key",
                    key.span,
                    format!("duplicate key `{name}` in {what} (first written on line {line})"),
                    Some("remove one of the two".into()),
                );
                continue;
            }
            out.push((name.as_str(), key, value));
        }
        Some(out)
    }

    fn value_type(&mut self, text: &Sp<String>, what: &str) -> Option<Sp<ValueType>> {
        match ValueType::parse(&text.value) {
            Some(ty) => Some(Sp::new(ty, text.span)),
            None => {
                let hint = suggestion(&text.value, ValueType::SCALARS.iter().copied()).unwrap_or_else(|| {
                    format!("types are {}, or `list<T>` of one of them", ValueType::SCALARS.join(", "))
                });
                self.error("unknown-type", text.span, format!("unknown type `{}` for {what}", text.value), Some(hint));
                None
            }
        }
    }

    fn default_args(&mut self, node: Option<&Node>, what: &str) -> TaskDefaults {
        let keys: Vec<&str> = SETTINGS_KEYS.iter().chain(DEFAULT_ARGS_EXTRA_KEYS).copied().collect();
        let f = self.sub_fields(node, &format!("`default_args` of {what}"), &keys, Span::default());
        let w = format!("`default_args` of {what}");
        let settings = self.settings(&f, &w, &TaskSettings::default());
        TaskDefaults {
            pool: self.opt_string(&f, "pool", &w),
            queue: self.opt_string(&f, "queue", &w),
            priority_weight: f
                .value("priority_weight")
                .and_then(|n| self.integer::<i32>(n, "`priority_weight`", -1_000_000, 1_000_000)),
            settings,
        }
    }

    fn settings(&mut self, f: &Fields<'_>, what: &str, base: &TaskSettings) -> TaskSettings {
        let mut s = base.clone();
        if let Some(n) = f.value("retries")
            && let Some(v) = self.integer::<u32>(n, &format!("`retries` of {what}"), 0, 1000)
        {
            s.retries = v.value;
        }
        if let Some(n) = f.value("retry_delay") {
            s.retry_delay_secs = self.duration(n, &format!("`retry_delay` of {what}")).unwrap_or(s.retry_delay_secs);
        }
        s.retry_exponential_backoff =
            self.bool_or(f, "retry_exponential_backoff", what, s.retry_exponential_backoff).value;
        if let Some(n) = f.value("max_retry_delay") {
            s.max_retry_delay_secs =
                self.duration(n, &format!("`max_retry_delay` of {what}")).or(s.max_retry_delay_secs);
        }
        if let Some(n) = f.value("execution_timeout") {
            s.execution_timeout_secs =
                self.duration(n, &format!("`execution_timeout` of {what}")).or(s.execution_timeout_secs);
        }
        s.email_on_failure = self.bool_or(f, "email_on_failure", what, s.email_on_failure).value;
        s.email_on_retry = self.bool_or(f, "email_on_retry", what, s.email_on_retry).value;
        if f.value("email").is_some() {
            s.email = self.string_list(f, "email", what).into_iter().map(|e| e.value).collect();
        }
        for (key, targets) in
            [("on_failure", &mut s.on_failure), ("on_retry", &mut s.on_retry), ("on_success", &mut s.on_success)]
        {
            if f.value(key).is_some() {
                *targets = self.string_list(f, key, what);
            }
        }
        if let Some(n) = f.value("sla") {
            s.sla_secs = self.duration(n, &format!("`sla` of {what}")).map(|secs| Sp::new(secs, n.span)).or(s.sla_secs);
        }
        s
    }

    fn task(&mut self, node: &Node, index: usize, pipeline: &str, defaults: &TaskDefaults) -> Option<Task> {
        let what = peek_id(node, "id")
            .map_or(format!("task #{} of {pipeline}", index + 1), |id| format!("task `{id}` of {pipeline}"));
        let f = self.fields(node, &what, TASK_KEYS)?;
        let id = self.required(&f, "id", &what, "add `id: my_task`")?;
        let w = format!("task `{}` of {pipeline}", id.value);
        let kind = self.task_kind(&f, &w);
        let outputs = match f.value("outputs") {
            Some(node) if kind.as_ref().is_some_and(|k| !matches!(k, TaskKind::Rust { .. })) => {
                let kind_name = kind.as_ref().map_or("", TaskKind::name);
                let fixed: Vec<String> = kind
                    .as_ref()
                    .map(implicit_outputs)
                    .unwrap_or_default()
                    .iter()
                    .map(|(n, t)| format!("`{n}: {t}`"))
                    .collect();
                self.error(
                    "outputs-not-allowed",
                    node.span,
                    format!("{w} is a {kind_name} task; only rust tasks declare `outputs`"),
                    Some(format!("a {kind_name} task always outputs {}", fixed.join(" and "))),
                );
                Vec::new()
            }
            Some(node) => self.outputs(node, &w),
            None => Vec::new(),
        };
        let trigger_rule = match self.opt_string(&f, "trigger_rule", &w) {
            Some(t) => match TriggerRule::ALL.iter().find(|(n, _)| *n == t.value) {
                Some((_, rule)) => Sp::new(*rule, t.span),
                None => {
                    let names = TriggerRule::ALL.iter().map(|(n, _)| *n);
                    let hint = suggestion(&t.value, names.clone())
                        .unwrap_or_else(|| format!("trigger rules: {}", names.collect::<Vec<_>>().join(", ")));
                    self.error(
                        "unknown-trigger-rule",
                        t.span,
                        format!("unknown trigger rule `{}`", t.value),
                        Some(hint),
                    );
                    Sp::new(TriggerRule::AllSuccess, t.span)
                }
            },
            None => Sp::new(TriggerRule::AllSuccess, f.key_span("trigger_rule")),
        };
        let pool = self.opt_string(&f, "pool", &w).or_else(|| defaults.pool.clone());
        let queue = self.opt_string(&f, "queue", &w).or_else(|| defaults.queue.clone());
        let priority_weight = match f.value("priority_weight") {
            Some(n) => {
                self.integer::<i32>(n, &format!("`priority_weight` of {w}"), -1_000_000, 1_000_000).map(|v| v.value)
            }
            None => defaults.priority_weight.as_ref().map(|v| v.value),
        };
        Some(Task {
            description: self.opt_string(&f, "description", &w).map(|s| s.value).unwrap_or_default(),
            kind: kind?,
            depends_on: self.string_list(&f, "depends_on", &w),
            trigger_rule,
            settings: self.settings(&f, &w, &defaults.settings),
            pool: pool.unwrap_or_else(|| Sp::new(DEFAULT_POOL.into(), f.key_span("pool"))),
            pool_slots: self.int_or(&f, "pool_slots", &w, (1, 1_000_000), 1u32),
            priority_weight: priority_weight.unwrap_or(1),
            queue: queue.unwrap_or_else(|| Sp::new(DEFAULT_QUEUE.into(), f.key_span("queue"))),
            connections: self.string_list(&f, "connections", &w),
            outputs,
            renamed_from: self.string_list(&f, "renamed_from", &w),
            id,
        })
    }

    fn task_kind(&mut self, f: &Fields<'_>, what: &str) -> Option<TaskKind> {
        let given: Vec<&str> = TASK_KINDS.iter().copied().filter(|k| f.get(k).is_some()).collect();
        match given.as_slice() {
            [] => {
                self.missing(
                    f,
                    "rust`, `shell`, `http` or `sql",
                    what,
                    "give the task one kind, e.g. `shell: echo hello`",
                );
                return None;
            }
            [_] => {}
            [_, second, ..] => {
                self.error(
                    "several-kinds",
                    f.key_span(second),
                    format!("{what} has more than one kind: {}", given.join(", ")),
                    Some("a task is exactly one of rust, shell, http or sql; split it into two tasks".into()),
                );
                return None;
            }
        }
        let node = f.get(given[0])?;
        if given[0] != "shell" && f.get("env").is_some() {
            self.error(
                "env-not-shell",
                f.key_span("env"),
                format!("{what} sets `env`, which only shell tasks have"),
                Some("remove `env:`, or make the task a `shell:` task".into()),
            );
        }
        match given[0] {
            "rust" => self.string(node, &format!("`rust` of {what}")).map(|path| TaskKind::Rust { path }),
            "shell" => {
                let env = f.get("env").map(|n| self.shell_env(n, what)).unwrap_or_default();
                self.string(node, &format!("`shell` of {what}")).map(|command| TaskKind::Shell { command, env })
            }
            "http" => self.http_step(node, what).map(TaskKind::Http),
            _ => {
                let sw = format!("`sql` of {what}");
                let s = self.fields(node, &sw, SQL_KEYS)?;
                let conn = self.required(&s, "conn", &sw, "add `conn:` naming a postgres or sqlite connection");
                let statement = self.required(&s, "statement", &sw, "add `statement: SELECT 1`");
                Some(TaskKind::Sql { conn: conn?, statement: statement? })
            }
        }
    }

    fn http_step(&mut self, node: &Node, what: &str) -> Option<HttpStep> {
        let hw = format!("`http` of {what}");
        let h = self.fields(node, &hw, HTTP_KEYS)?;
        let conn = self.required(&h, "conn", &hw, "add `conn:` naming an http connection");
        let endpoint = self.required(&h, "endpoint", &hw, "add `endpoint: /path`");
        let method = self.string_or(&h, "method", &hw, "GET");
        let method = Sp::new(method.value.to_uppercase(), method.span);
        self.one_of(&method, HTTP_METHODS, "method");
        let body = h.value("body").and_then(|n| match &n.value {
            Value::Map(_) | Value::Seq(_) => Some(Sp::new(to_json(n).to_string(), n.span)),
            _ => self.string(n, &format!("`body` of {hw}")),
        });
        let headers = match h.value("headers") {
            Some(node) => self.headers(node, &hw),
            None => BTreeMap::new(),
        };
        let expect_status = match h.value("expect_status") {
            None => vec![200],
            Some(n) => match &n.value {
                Value::Seq(items) => items
                    .iter()
                    .filter_map(|i| self.integer::<u16>(i, "an expected status", 100, 599).map(|s| s.value))
                    .collect(),
                _ => self.integer::<u16>(n, "`expect_status`", 100, 599).map(|s| s.value).into_iter().collect(),
            },
        };
        Some(HttpStep { conn: conn?, method, endpoint: endpoint?, body, headers, expect_status })
    }

    /// `env:` of a shell task: variable names, and values that are templates. Names that
    /// Sluice sets itself are reserved; a secret must come from a connection or a variable.
    fn shell_env(&mut self, node: &Node, what: &str) -> BTreeMap<String, Sp<String>> {
        let mut env = BTreeMap::new();
        let ew = format!("`env` of {what}");
        for (name, key, value) in self.fields_any(node, &ew).unwrap_or_default() {
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.error(
                    "invalid-env-name",
                    key.span,
                    format!("`{name}` in {ew} is not an environment variable name"),
                    Some("use letters, digits and `_`, not starting with a digit, e.g. `LEAGUE`".into()),
                );
                continue;
            }
            let upper = name.to_ascii_uppercase();
            if let Some(prefix) = RESERVED_ENV_PREFIXES.iter().find(|p| upper.starts_with(**p)) {
                self.error(
                    "reserved-env-name",
                    key.span,
                    format!("`{name}` in {ew} starts with `{prefix}`, which Sluice sets itself"),
                    Some("choose another name; run facts and connections are already in the environment".into()),
                );
                continue;
            }
            let Some(v) = self.string(value, &format!("`{name}` of {ew}")) else { continue };
            if is_secret_key(name) && !v.value.contains("{{") && !v.value.is_empty() {
                self.error(
                    "literal-secret",
                    v.span,
                    format!("`{name}` in {ew} is a literal secret"),
                    Some("take it from a connection or a variable, e.g. `{{ conn.backend_api.password }}`".into()),
                );
                continue;
            }
            env.insert(name.to_string(), v);
        }
        env
    }

    /// Header values are templates; credentials must come from a connection, not the YAML.
    fn headers(&mut self, node: &Node, what: &str) -> BTreeMap<String, String> {
        let mut headers = BTreeMap::new();
        for (name, _, value) in self.fields_any(node, &format!("`headers` of {what}")).unwrap_or_default() {
            let Some(v) = self.string(value, &format!("header `{name}`")) else { continue };
            let lower = name.to_ascii_lowercase();
            let sensitive = lower == "authorization" || is_secret_key(&lower) || lower.ends_with("-key");
            if sensitive && !v.value.contains("{{") {
                self.error(
                    "literal-secret",
                    v.span,
                    format!("header `{name}` of {what} is a literal secret"),
                    Some("take it from the connection instead, e.g. `Bearer {{ conn.backend_api.password }}`".into()),
                );
                continue;
            }
            headers.insert(name.to_string(), v.value);
        }
        headers
    }

    fn outputs(&mut self, node: &Node, what: &str) -> Vec<Output> {
        let Some(entries) = self.fields_any(node, &format!("`outputs` of {what}")) else { return Vec::new() };
        let mut outputs = Vec::new();
        for (name, key, value) in entries {
            let ow = format!("output `{name}` of {what}");
            let Some(ty_text) = self.string(value, &format!("the type of {ow}")) else { continue };
            if let Some(ty) = self.value_type(&ty_text, &ow) {
                outputs.push(Output { name: Sp::new(name.to_string(), key.span), ty });
            }
        }
        outputs
    }
}

/// Per-pipeline defaults applied to every task that does not set its own.
#[derive(Debug)]
struct TaskDefaults {
    settings: TaskSettings,
    pool: Option<Sp<String>>,
    queue: Option<Sp<String>>,
    priority_weight: Option<Sp<i32>>,
}

/// The string under `key` of a mapping node, read before the mapping is checked so
/// messages about it can already name it.
fn peek_id(node: &Node, key: &str) -> Option<String> {
    let Value::Map(entries) = &node.value else { return None };
    entries.iter().find_map(|(k, v)| match (&k.value, &v.value) {
        (Value::Str(k), Value::Str(v)) if k == key => Some(v.clone()),
        _ => None,
    })
}

fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(secs);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
        any = true;
    }
    (any && number.is_empty()).then_some(total)
}

/// `512mb`, `2gb`, `1024` -> bytes.
pub fn parse_memory(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1024,
        "m" | "mb" => 1024 * 1024,
        "g" | "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn normalize_date(text: &str) -> Option<String> {
    use chrono::{NaiveDate, NaiveDateTime};
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|d| d.format("%Y-%m-%dT%H:%M:%S").to_string());
    }
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S").to_string())
}

fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match &k.value {
                        Value::Str(s) => s.clone(),
                        other => to_json(&Node { value: other.clone(), span: k.span }).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}

fn infer_type(value: &serde_json::Value) -> ValueType {
    use serde_json::Value as J;
    match value {
        J::String(_) => ValueType::String,
        J::Bool(_) => ValueType::Bool,
        J::Number(n) if n.is_i64() => ValueType::Int,
        J::Number(_) => ValueType::Float,
        J::Array(items) => {
            let first = items.first().map_or(ValueType::Json, infer_type);
            if items.iter().all(|i| infer_type(i) == first) && first != ValueType::Json {
                ValueType::List(Box::new(first))
            } else {
                ValueType::Json
            }
        }
        _ => ValueType::Json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("2d"), Some(172_800));
        assert_eq!(parse_duration("5 minutes"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5m3"), None);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512mb"), Some(512 * 1024 * 1024));
        assert_eq!(parse_memory("2GB"), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_memory("lots"), None);
    }
}
