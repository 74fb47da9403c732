//! The effective settings and where each comes from, for `sluice config list` and the
//! API's `/config`. Secrets are never in it: database and Redis URLs have their password
//! replaced by `***`, keys and passwords are reported only as set or not set, and each
//! such setting is marked sensitive so `SLUICE_EXPOSE_CONFIG=non-sensitive-only` can hide
//! even that.

use crate::connection::probe::TEST_CONNECTION;
use crate::crypto::Crypto;
use crate::registry::Registry;
use crate::settings::Settings;
use crate::store::redact;
use serde_json::Value;

/// One setting: its section (Airflow's `[core]`, `[database]`...), name, value and source.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub section: &'static str,
    pub name: &'static str,
    pub value: Value,
    pub source: String,
    /// A URL with its password masked, or whether a key or password is set.
    pub sensitive: bool,
}

/// Whether the API serves the configuration (`SLUICE_EXPOSE_CONFIG`, as Airflow's
/// `[webserver] expose_config`; default: not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExposeConfig {
    #[default]
    No,
    /// Every setting, the sensitive ones as `< hidden >`.
    NonSensitiveOnly,
    /// Every setting, already masked.
    Yes,
}

/// The variable [`ExposeConfig`] is read from.
pub const EXPOSE_CONFIG: &str = "SLUICE_EXPOSE_CONFIG";

impl ExposeConfig {
    /// `true`, `false` or `non-sensitive-only` (any case); unset is `false`.
    pub fn parse(value: Option<&str>) -> Result<ExposeConfig, String> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "false" | "0" | "no") => Ok(ExposeConfig::No),
            Some("true" | "1" | "yes") => Ok(ExposeConfig::Yes),
            Some("non-sensitive-only") => Ok(ExposeConfig::NonSensitiveOnly),
            Some(other) => {
                Err(format!("{EXPOSE_CONFIG}=`{other}` is not a choice: use true, false or non-sensitive-only"))
            }
        }
    }
}

/// The webserver's switches and what the API's `/config` serves.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    pub expose: ExposeConfig,
    pub settings: Vec<Setting>,
    /// Whether connections may be tested (`SLUICE_TEST_CONNECTION=Enabled`).
    pub connection_tests: bool,
}

impl WebConfig {
    /// This process's settings and `SLUICE_EXPOSE_CONFIG`; a value that is not a choice
    /// is an error naming it.
    pub fn from_env(registry: &Registry) -> Result<WebConfig, String> {
        let env = |name: &str| std::env::var(name).ok();
        let settings = effective(registry, &Settings::from_env(registry), &env);
        Ok(WebConfig {
            expose: ExposeConfig::parse(env(EXPOSE_CONFIG).as_deref())?,
            settings,
            connection_tests: crate::connection::probe::tests_enabled(env(TEST_CONNECTION).as_deref()),
        })
    }
}

/// Every effective setting, in a stable order; `env` looks a variable up (the process
/// environment in production).
pub fn effective(registry: &Registry, settings: &Settings, env: &dyn Fn(&str) -> Option<String>) -> Vec<Setting> {
    use sluice_contract::settings as vars;
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let d = registry.deployment;
    let yaml = registry.source.to_string();
    let from_env_or = |var: &str, default: &str| if env(var).is_some() { var.to_string() } else { default.to_string() };
    let plain =
        |section, name, value: Value, source: String| Setting { section, name, value, source, sensitive: false };
    let secret =
        |section, name, value: Value, source: String| Setting { section, name, value, source, sensitive: true };
    let mut rows = vec![
        plain(
            "core",
            "mode",
            env(vars::MODE).unwrap_or_else(|| "standalone".into()).into(),
            from_env_or(vars::MODE, "default"),
        ),
        plain("core", "project", d.project.into(), yaml.clone()),
        plain("core", "pipelines", registry.pipelines.len().into(), yaml.clone()),
        plain("core", "connections_declared", registry.connections.len().into(), yaml.clone()),
        secret(
            "database",
            "database_url",
            redact(&settings.store_url()).into(),
            from_env_or(vars::DATABASE_URL, "default: SQLite in SLUICE_HOME"),
        ),
    ];
    if let Some(url) = &settings.database_direct_url {
        rows.push(secret("database", "database_direct_url", redact(url).into(), vars::DATABASE_DIRECT_URL.into()));
    }
    rows.push(plain("core", "home", settings.home.display().to_string().into(), from_env_or(vars::HOME, "default")));
    let port_source = if env(vars::WEBSERVER_PORT).and_then(|p| p.parse::<u16>().ok()) == Some(settings.port) {
        vars::WEBSERVER_PORT.to_string()
    } else {
        yaml.clone()
    };
    rows.push(plain("webserver", "webserver_port", settings.port.into(), port_source));
    rows.push(plain("core", "parallelism", d.parallelism.into(), yaml.clone()));
    rows.push(plain("celery", "worker_concurrency", d.worker_concurrency.into(), yaml.clone()));
    rows.push(plain("celery", "worker_replicas", d.worker_replicas.into(), yaml.clone()));
    rows.push(plain("celery", "queues", d.queues.join(", ").into(), yaml.clone()));
    rows.push(plain("core", "paused_at_creation", d.paused_at_creation.into(), yaml.clone()));
    for (name, var) in [("broker_url", "SLUICE_BROKER_URL"), ("rate_limit_url", "SLUICE_RATE_LIMIT_URL")] {
        if let Some(url) = env(var) {
            rows.push(secret("celery", name, redact(&url).into(), var.into()));
        }
    }
    rows.push(plain("core", "fernet_key_env", d.fernet_key_env.into(), yaml.clone()));
    rows.push(secret(
        "core",
        "fernet_key",
        fernet_state(d.fernet_key_env, env(d.fernet_key_env)).into(),
        d.fernet_key_env.into(),
    ));
    rows.push(plain("webserver", "secret_key_env", d.secret_key_env.into(), yaml));
    rows.push(secret(
        "webserver",
        "secret_key",
        set_or_not(env(d.secret_key_env).is_some()).into(),
        d.secret_key_env.into(),
    ));
    rows.push(plain(
        "webserver",
        "admin_username",
        env(d.admin_username_env).unwrap_or_else(|| "admin".into()).into(),
        from_env_or(d.admin_username_env, "default"),
    ));
    rows.push(secret(
        "webserver",
        "admin_password",
        set_or_not(env(d.admin_password_env).is_some()).into(),
        d.admin_password_env.into(),
    ));
    let tests = env(TEST_CONNECTION).unwrap_or_else(|| "Disabled".into());
    rows.push(plain("core", "test_connection", tests.into(), from_env_or(TEST_CONNECTION, "default")));
    let expose = env(EXPOSE_CONFIG).unwrap_or_else(|| "false".into());
    rows.push(plain("webserver", "expose_config", expose.into(), from_env_or(EXPOSE_CONFIG, "default")));
    rows
}

fn set_or_not(set: bool) -> &'static str {
    if set { "set" } else { "not set" }
}

/// "set (2 keys)", "not set" or why the value is not a key list; never the keys.
fn fernet_state(var: &str, value: Option<String>) -> String {
    match Crypto::from_named_env_value(var, value.as_deref()) {
        Ok(c) if c.key_count() == 0 => "not set".into(),
        Ok(c) if c.key_count() == 1 => "set (1 key)".into(),
        Ok(c) => format!("set ({} keys, the first encrypts)", c.key_count()),
        Err(e) => format!("invalid: {e}"),
    }
}
