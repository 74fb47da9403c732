//! `sluice config list`: the effective settings, and where each comes from.
//!
//! Secrets are never shown: database and Redis URLs have their password replaced by
//! `***`, and keys are reported only as set or not set.

use super::error::CliError;
use super::output::{Output, render};
use crate::registry::Registry;
use crate::settings::Settings;
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
    crate::effective::effective(registry, settings, env)
        .into_iter()
        .map(|s| json!({"setting": s.name, "value": s.value, "source": s.source}))
        .collect()
}
