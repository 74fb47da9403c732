//! `sluice fernet ...`: make a key, move stored secrets onto a new one.
//!
//! Rotation, as with Airflow's `rotate-fernet-key`: set the key variable to
//! `NEW_KEY,OLD_KEY`, run `sluice fernet rotate`, then set it to `NEW_KEY` alone.

use super::error::CliError;
use super::open_store;
use super::output::Output;
use crate::crypto::Crypto;
use crate::registry::Registry;
use crate::settings::Settings;
use crate::store::Store;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum FernetCommand {
    /// Print a new Fernet key (the same format as Python's `Fernet.generate_key()`).
    Generate,
    /// Re-encrypt every stored secret with the first key of the key variable's list.
    Rotate,
}

/// `sluice fernet ...` in the process.
pub async fn main(
    registry: &'static Registry,
    settings: &Settings,
    command: FernetCommand,
    _output: Output,
) -> Result<ExitCode, CliError> {
    let text = match command {
        FernetCommand::Generate => generate(),
        FernetCommand::Rotate => {
            let crypto = crypto_of(registry, settings)?;
            let store = open_store(registry, settings).await?;
            rotate(&store, &crypto, registry.deployment.fernet_key_env).await?
        }
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `fernet generate`: the key and a newline, nothing else, so that
/// `SLUICE_FERNET_KEY=$(sluice fernet generate)` works.
pub fn generate() -> String {
    Crypto::generate_key() + "\n"
}

/// `fernet rotate`: re-encrypts, and says what to do next. `var` names the key variable.
pub async fn rotate(store: &Store, crypto: &Crypto, var: &str) -> Result<String, CliError> {
    let report = store.rotate_secrets(crypto).await?;
    let keys = crypto.key_count();
    let next =
        if keys > 1 { format!("; the other {} key(s) in {var} can now be removed", keys - 1) } else { String::new() };
    Ok(format!(
        "re-encrypted {} connection(s) and {} variable(s) with the first key in {var}{next}\n",
        report.connections, report.variables
    ))
}

/// The deployment's keys, from its key variable (or the key standalone keeps in
/// `SLUICE_HOME`, see [`crate::keys::fernet`]). A malformed key is an error; a missing one
/// is not, until something must be encrypted or decrypted.
pub(super) fn crypto_of(registry: &Registry, settings: &Settings) -> Result<Crypto, CliError> {
    Ok(crate::keys::fernet(registry, settings, &|name| std::env::var(name).ok())?)
}
