//! `sluice variables ...`: Airflow's `variables` commands over the store.
//!
//! `list` masks secret values; `get` prints the value asked for, secret or not, and
//! `export` writes every value (as Airflow's do): both are explicit requests.

use super::connections::write_private_file;
use super::error::{CliError, Context};
use super::fernet::crypto_of;
use super::open_store;
use super::output::{Output, render};
use crate::crypto::Crypto;
use crate::registry::Registry;
use crate::settings::Settings;
use crate::store::{OnExisting, Store};
use clap::{Subcommand, ValueEnum};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum VariablesCommand {
    /// Print a variable's value.
    Get {
        /// The variable's key.
        key: String,
        /// Printed when the variable is not set (else that is an error).
        #[arg(long, short)]
        default: Option<String>,
    },
    /// Set a variable. Keys that look secret (password, secret, token, api_key, ...) are
    /// secret without --secret.
    Set {
        /// The variable's key.
        key: String,
        /// The value: text, or JSON for `var.json.X`.
        value: String,
        /// Free text shown in listings (kept when not given).
        #[arg(long)]
        description: Option<String>,
        /// Encrypt the value at rest and mask it in listings and task logs.
        #[arg(long)]
        secret: bool,
    },
    /// List the variables; secret values show as ***.
    List,
    /// Delete a variable.
    Delete {
        /// The variable's key.
        key: String,
    },
    /// Import variables from a JSON file: {"key": "text" or any JSON value}.
    Import {
        /// The JSON file.
        file: PathBuf,
        /// What to do with keys that exist already.
        #[arg(long, short, value_enum, default_value_t = OnExistingKey::Overwrite)]
        action_on_existing_key: OnExistingKey,
    },
    /// Export every variable, secret values included, as JSON to a file or `-` for stdout.
    Export {
        /// The file to write (readable by its owner only), or `-`.
        file: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnExistingKey {
    Overwrite,
    Fail,
    Skip,
}

impl From<OnExistingKey> for OnExisting {
    fn from(action: OnExistingKey) -> OnExisting {
        match action {
            OnExistingKey::Overwrite => OnExisting::Overwrite,
            OnExistingKey::Fail => OnExisting::Fail,
            OnExistingKey::Skip => OnExisting::Skip,
        }
    }
}

/// `sluice variables ...` in the process.
pub async fn main(
    registry: &'static Registry,
    settings: &Settings,
    command: VariablesCommand,
    output: Output,
) -> Result<ExitCode, CliError> {
    let crypto = crypto_of(registry, settings)?;
    let store = open_store(registry, settings).await?;
    print!("{}", run(&store, &crypto, command, output).await?);
    Ok(ExitCode::SUCCESS)
}

/// Runs one `variables` command; returns what it prints, or the one-sentence error.
pub async fn run(
    store: &Store,
    crypto: &Crypto,
    command: VariablesCommand,
    output: Output,
) -> Result<String, CliError> {
    match command {
        VariablesCommand::Get { key, default } => match (store.variable(&key, crypto).await?, default) {
            (Some(value), _) | (None, Some(value)) => Ok(value + "\n"),
            (None, None) => Err(CliError::Input(format!("variable `{key}` not found"))),
        },
        VariablesCommand::Set { key, value, description, secret } => {
            store.set_variable(&key, &value, secret, description.as_deref(), crypto).await?;
            Ok(format!("variable `{key}` set\n"))
        }
        VariablesCommand::List => {
            let infos = store.variable_infos().await?;
            let rows: Vec<Value> = infos
                .iter()
                .map(|v| {
                    json!({
                        "key": v.key,
                        "value": v.value.as_deref().unwrap_or("***"),
                        "description": v.description,
                        "secret": v.secret,
                        "is_encrypted": v.is_encrypted,
                    })
                })
                .collect();
            Ok(render(output, &["key", "value", "description", "secret"], &rows))
        }
        VariablesCommand::Delete { key } => {
            store.delete_variable(&key).await?;
            Ok(format!("variable `{key}` deleted\n"))
        }
        VariablesCommand::Import { file, action_on_existing_key } => {
            let text = std::fs::read_to_string(&file).context(|| format!("cannot read {}", file.display()))?;
            let entries = parse_import(&text, &file)?;
            let report = store.import_variables(&entries, action_on_existing_key.into(), crypto).await?;
            let mut out = format!(
                "imported {} variable(s) from {}: {} created, {} overwritten",
                report.created.len() + report.overwritten.len(),
                file.display(),
                report.created.len(),
                report.overwritten.len()
            );
            if !report.skipped.is_empty() {
                out += &format!(", {} skipped ({})", report.skipped.len(), report.skipped.join(", "));
            }
            Ok(out + "\n")
        }
        VariablesCommand::Export { file } => {
            let vars = store.variables(crypto).await?;
            // Airflow exports a value that is JSON as that JSON, and any other as text.
            let doc: Map<String, Value> = vars
                .iter()
                .map(|v| {
                    let value = serde_json::from_str::<Value>(&v.value).unwrap_or_else(|_| json!(v.value));
                    (v.key.clone(), value)
                })
                .collect();
            let text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into()) + "\n";
            if file == "-" {
                return Ok(text);
            }
            write_private_file(Path::new(&file), &text)?;
            Ok(format!("exported {} variable(s) to {file} (it holds their values, secret ones too)\n", vars.len()))
        }
    }
}

/// Airflow's variables file: `{"key": value}`, a text value taken as it is and any other
/// JSON value stored as its JSON text. Never quotes the document: values may be secrets.
fn parse_import(text: &str, file: &Path) -> Result<Vec<(String, String)>, CliError> {
    let doc = serde_json::from_str::<Value>(text)
        .context(|| format!("cannot read the variables in {}: it is not valid JSON", file.display()))?;
    let Value::Object(entries) = doc else {
        return Err(CliError::Input(format!(
            "the variables in {} must be one JSON object of key: value",
            file.display()
        )));
    };
    if entries.is_empty() {
        return Err(CliError::Input(format!("{} holds no variables", file.display())));
    }
    Ok(entries
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (key, text)
        })
        .collect())
}
