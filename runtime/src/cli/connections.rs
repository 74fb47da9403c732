//! `sluice connections ...`: Airflow's `connections` commands over the store.
//!
//! Passwords and secret-looking extra values are never printed, except by `export`, which
//! is the explicit way to take secrets out (as Airflow's is); its file is made readable by
//! its owner only.

use super::error::{CliError, Context};
use super::fernet::crypto_of;
use super::open_store;
use super::output::{Output, render, table};
use crate::connection::{self, Connection, Format, mask_extra};
use crate::crypto::Crypto;
use crate::registry::Registry;
use crate::settings::Settings;
use crate::store::{ConnectionInfo, Store};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ConnectionsCommand {
    /// Add a connection: from fields, a URI or JSON (Airflow's `connections add`).
    Add(Box<AddArgs>),
    /// Show one connection; its password and secret extra values are masked.
    Get {
        /// The connection id.
        conn_id: String,
    },
    /// List the connections, without secrets (works without the Fernet key).
    List,
    /// Delete a connection added at run time (declared ones live in pipelines.yaml).
    Delete {
        /// The connection id.
        conn_id: String,
    },
    /// Import connections from a .json, .yaml/.yml or .env file in Airflow's formats.
    Import {
        /// The file; its extension names the format.
        file: PathBuf,
        /// Replace connections that exist already (else they make the import fail).
        #[arg(long)]
        overwrite: bool,
    },
    /// Export every connection, secrets included, to a file or `-` for stdout.
    Export {
        /// The file to write (readable by its owner only), or `-`.
        file: String,
        /// The format; default: from the file's extension, JSON for `-`.
        #[arg(long, visible_alias = "file-format", value_enum)]
        format: Option<FileFormat>,
    },
}

/// The fields of `connections add`, named as Airflow names them.
#[derive(Args, Debug, Default)]
pub struct AddArgs {
    /// The connection id, as tasks and templates name it.
    pub conn_id: String,
    /// The type: postgres, http, redis, sqlite, smtp, ...
    #[arg(long, required_unless_present_any = ["conn_uri", "conn_json"])]
    pub conn_type: Option<String>,
    /// The host name (an http host may carry its protocol: https://api.example.com).
    #[arg(long)]
    pub conn_host: Option<String>,
    /// The port, 0 to 65535.
    #[arg(long)]
    pub conn_port: Option<u16>,
    /// The user name.
    #[arg(long)]
    pub conn_login: Option<String>,
    /// Stored encrypted; never printed back.
    #[arg(long)]
    pub conn_password: Option<String>,
    /// Airflow's schema: the database for postgres and most types, http or https for http.
    #[arg(long)]
    pub conn_schema: Option<String>,
    /// A JSON object, e.g. '{"sslmode": "require"}'; stored encrypted.
    #[arg(long)]
    pub conn_extra: Option<String>,
    /// Free text shown in listings.
    #[arg(long)]
    pub conn_description: Option<String>,
    /// The whole connection as an Airflow URI, e.g. postgres://user:password@host:5432/db.
    #[arg(long, conflicts_with_all = FIELDS)]
    pub conn_uri: Option<String>,
    /// The whole connection as Airflow's JSON: {"conn_type": ..., "host": ..., ...}.
    #[arg(long, conflicts_with_all = FIELDS, conflicts_with = "conn_uri")]
    pub conn_json: Option<String>,
}

/// The field flags a URI or JSON cannot be combined with (Airflow's rule too).
const FIELDS: [&str; 7] =
    ["conn_type", "conn_host", "conn_port", "conn_login", "conn_password", "conn_schema", "conn_extra"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    Json,
    Yaml,
    Env,
}

impl From<FileFormat> for Format {
    fn from(f: FileFormat) -> Format {
        match f {
            FileFormat::Json => Format::Json,
            FileFormat::Yaml => Format::Yaml,
            FileFormat::Env => Format::Env,
        }
    }
}

/// `sluice connections ...` in the process: opens the store and the key, prints the result.
pub async fn main(
    registry: &'static Registry,
    settings: &Settings,
    command: ConnectionsCommand,
    output: Output,
) -> Result<ExitCode, CliError> {
    let crypto = crypto_of(registry, settings)?;
    let store = open_store(registry, settings).await?;
    print!("{}", run(&store, &crypto, command, output).await?);
    Ok(ExitCode::SUCCESS)
}

/// Runs one `connections` command; returns what it prints, or the one-sentence error.
pub async fn run(
    store: &Store,
    crypto: &Crypto,
    command: ConnectionsCommand,
    output: Output,
) -> Result<String, CliError> {
    match command {
        ConnectionsCommand::Add(args) => {
            let conn = connection_of(&args)?;
            store.add_connection(&conn, crypto).await?;
            Ok(format!("connection `{}` added: {}\n", conn.id, conn.masked_uri()))
        }
        ConnectionsCommand::Get { conn_id } => {
            let info = store.connection_info(&conn_id).await?;
            let conn = store.connection(&conn_id, crypto).await?;
            Ok(show(&info, &conn, output))
        }
        ConnectionsCommand::List => {
            let infos = store.connection_infos().await?;
            let rows: Vec<Value> = infos.iter().map(info_json).collect();
            Ok(render(
                output,
                &["conn_id", "conn_type", "host", "port", "schema", "database", "login", "source", "is_encrypted"],
                &rows,
            ))
        }
        ConnectionsCommand::Delete { conn_id } => {
            store.delete_connection(&conn_id).await?;
            Ok(format!("connection `{conn_id}` deleted\n"))
        }
        ConnectionsCommand::Import { file, overwrite } => {
            let format = Format::from_path(&file)?;
            let text = std::fs::read_to_string(&file).context(|| format!("cannot read {}", file.display()))?;
            let conns = connection::import(&text, format)?;
            if conns.is_empty() {
                return Err(CliError::Input(format!("{} holds no connections", file.display())));
            }
            let report = store.import_connections(&conns, overwrite, crypto).await?;
            let mut out = format!("imported {} connection(s) from {}", conns.len(), file.display());
            if !report.added.is_empty() {
                out += &format!("; added: {}", report.added.join(", "));
            }
            if !report.replaced.is_empty() {
                out += &format!("; replaced: {}", report.replaced.join(", "));
            }
            Ok(out + "\n")
        }
        ConnectionsCommand::Export { file, format } => {
            let format = match (format, file.as_str()) {
                (Some(f), _) => f.into(),
                (None, "-") => Format::Json,
                (None, path) => Format::from_path(path)?,
            };
            let conns = store.connections(crypto).await?;
            let text = connection::export(&conns, format);
            if file == "-" {
                return Ok(text);
            }
            write_private_file(Path::new(&file), &text)?;
            Ok(format!("exported {} connection(s) to {file} ({format}; it holds their secrets)\n", conns.len()))
        }
    }
}

/// The connection `connections add` describes. Never quotes a value in an error: the
/// text may hold a password.
fn connection_of(args: &AddArgs) -> Result<Connection, CliError> {
    let id = args.conn_id.as_str();
    let mut conn = if let Some(uri) = &args.conn_uri {
        Connection::from_uri(id, uri)?
    } else {
        let fields = match &args.conn_json {
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(fields)) => fields,
                _ => return Err(CliError::Input(format!("--conn-json of connection `{id}` is not a JSON object"))),
            },
            None => {
                let extra = match &args.conn_extra {
                    None => None,
                    Some(text) => match serde_json::from_str::<Value>(text) {
                        Ok(Value::Object(map)) => Some(Value::Object(map).to_string()),
                        _ => {
                            return Err(CliError::Input(format!(
                                "--conn-extra of connection `{id}` is not a JSON object"
                            )));
                        }
                    },
                };
                let mut fields = serde_json::Map::new();
                let mut put = |key: &str, value: Option<Value>| {
                    if let Some(value) = value {
                        fields.insert(key.to_string(), value);
                    }
                };
                put("conn_type", args.conn_type.clone().map(Value::String));
                put("host", args.conn_host.clone().map(Value::String));
                put("port", args.conn_port.map(Value::from));
                put("login", args.conn_login.clone().map(Value::String));
                put("password", args.conn_password.clone().map(Value::String));
                put("schema", args.conn_schema.clone().map(Value::String));
                put("extra", extra.map(Value::String));
                fields
            }
        };
        // Airflow's field names and their mapping (schema, extra as text) are the import's.
        let doc = Value::Object([(id.to_string(), Value::Object(fields))].into_iter().collect());
        let mut conns = connection::import(&doc.to_string(), Format::Json)?;
        conns.pop().ok_or_else(|| CliError::Input(format!("connection `{id}` is empty")))?
    };
    if let Some(description) = &args.conn_description {
        conn.description = description.clone();
    }
    Ok(conn)
}

/// `connections get`: one field per line, secrets masked.
fn show(info: &ConnectionInfo, conn: &Connection, output: Output) -> String {
    let extra = (!conn.extra.is_empty()).then(|| mask_extra(&Value::Object(conn.extra.clone())));
    let fields = json!({
        "conn_id": conn.id,
        "conn_type": conn.conn_type,
        "description": conn.description,
        "host": conn.host,
        "port": conn.port,
        "schema": conn.schema,
        "database": conn.database,
        "login": conn.login,
        "password": conn.password.as_ref().map(|_| "***"),
        "extra": extra,
        "uri": conn.masked_uri(),
        "source": info.source.as_str(),
        "is_encrypted": info.is_encrypted,
    });
    match output {
        Output::Json => serde_json::to_string_pretty(&fields).unwrap_or_else(|_| "{}".into()) + "\n",
        Output::Table => {
            let order = [
                "conn_id",
                "conn_type",
                "description",
                "host",
                "port",
                "schema",
                "database",
                "login",
                "password",
                "extra",
                "uri",
                "source",
                "is_encrypted",
            ];
            let rows: Vec<Value> = order
                .iter()
                .map(|key| {
                    let value = match &fields[*key] {
                        Value::Object(_) => Value::String(fields[*key].to_string()),
                        other => other.clone(),
                    };
                    json!({"field": key, "value": value})
                })
                .collect();
            table(&["field", "value"], &rows)
        }
    }
}

fn info_json(c: &ConnectionInfo) -> Value {
    json!({
        "conn_id": c.id,
        "conn_type": c.conn_type,
        "description": c.description,
        "host": c.host,
        "port": c.port,
        "schema": c.schema,
        "database": c.database,
        "login": c.login,
        "has_password": c.has_password,
        "source": c.source.as_str(),
        "is_encrypted": c.is_encrypted,
    })
}

/// Writes a file that holds secrets: created readable and writable by its owner only
/// (on Unix), replacing one that exists.
pub(super) fn write_private_file(path: &Path, text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let cannot = || format!("cannot write {}", path.display());
    let mut file = options.open(path).context(cannot)?;
    // `mode` applies only to a new file: narrow an existing one before writing to it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).context(cannot)?;
    }
    file.write_all(text.as_bytes()).context(cannot)
}
