//! `sluice config list`: the effective settings, and where each comes from.
//!
//! Secrets are never shown: database and Redis URLs have their password replaced by
//! `***`, and keys are reported only as set or not set.

use super::error::CliError;
use super::output::{Output, render};
use crate::crypto::Crypto;
use crate::registry::Registry;
use crate::settings::Settings;
use crate::store::redact;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// List the effective settings (no secret values).
    List,
}

/// `sluice config ...` in the process.
pub async fn main(
    registry: &'static Registry,
    settings: &Settings,
    command: ConfigCommand,
    output: Output,
) -> Result<ExitCode, CliError> {
    let env = |name: &str| std::env::var(name).ok();
    print!("{}", run(registry, settings, &env, command, output));
    Ok(ExitCode::SUCCESS)
}

/// Runs one `config` command; `env` looks a variable up (the process environment in
/// production).
pub fn run(
    registry: &Registry,
    settings: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
    command: ConfigCommand,
    output: Output,
) -> String {
    match command {
        ConfigCommand::List => render(output, &["setting", "value", "source"], &settings_rows(registry, settings, env)),
    }
}

fn settings_rows(registry: &Registry, settings: &Settings, env: &dyn Fn(&str) -> Option<String>) -> Vec<Value> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let d = registry.deployment;
    let yaml = registry.source;
    let from_env_or = |var: &str, default: &str| if env(var).is_some() { var.to_string() } else { default.to_string() };
    let mut rows = vec![
        row(
            "mode",
            env(sluice_contract::settings::MODE).unwrap_or_else(|| "standalone".into()),
            &from_env_or(sluice_contract::settings::MODE, "default"),
        ),
        row("project", d.project, yaml),
        row("pipelines", registry.pipelines.len(), yaml),
        row("connections_declared", registry.connections.len(), yaml),
        row(
            "database_url",
            redact(&settings.store_url()),
            &from_env_or(sluice_contract::settings::DATABASE_URL, "default: SQLite in SLUICE_HOME"),
        ),
    ];
    if let Some(url) = &settings.database_direct_url {
        rows.push(row("database_direct_url", redact(url), "SLUICE_DATABASE_DIRECT_URL"));
    }
    rows.push(row(
        "home",
        settings.home.display().to_string(),
        &from_env_or(sluice_contract::settings::HOME, "default"),
    ));
    let port_source =
        if env(sluice_contract::settings::WEBSERVER_PORT).and_then(|p| p.parse::<u16>().ok()) == Some(settings.port) {
            "SLUICE_WEBSERVER_PORT"
        } else {
            yaml
        };
    rows.push(row("webserver_port", settings.port, port_source));
    rows.push(row("parallelism", d.parallelism, yaml));
    rows.push(row("worker_concurrency", d.worker_concurrency, yaml));
    rows.push(row("worker_replicas", d.worker_replicas, yaml));
    rows.push(row("queues", d.queues.join(", "), yaml));
    rows.push(row("paused_at_creation", d.paused_at_creation, yaml));
    for (setting, var) in [("broker_url", "SLUICE_BROKER_URL"), ("rate_limit_url", "SLUICE_RATE_LIMIT_URL")] {
        if let Some(url) = env(var) {
            rows.push(row(setting, redact(&url), var));
        }
    }
    rows.push(row("fernet_key_env", d.fernet_key_env, yaml));
    rows.push(row("fernet_key", fernet_state(d.fernet_key_env, env(d.fernet_key_env)), d.fernet_key_env));
    rows.push(row("secret_key_env", d.secret_key_env, yaml));
    rows.push(row("secret_key", set_or_not(env(d.secret_key_env).is_some()), d.secret_key_env));
    rows.push(row(
        "admin_username",
        env(d.admin_username_env).unwrap_or_else(|| "admin".into()),
        &from_env_or(d.admin_username_env, "default"),
    ));
    rows.push(row("admin_password", set_or_not(env(d.admin_password_env).is_some()), d.admin_password_env));
    rows
}

fn row(setting: &str, value: impl Into<Value>, source: &str) -> Value {
    json!({"setting": setting, "value": value.into(), "source": source})
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
