//! Connections: resolved from the compiled specs and the environment, or added at run time.
//!
//! Besides [`Connection::from_spec`] (the compiled `pipelines.yaml`), connections come and go
//! in Airflow's formats, so an Airflow deployment's connections move over as they are:
//!
//! - URIs, as Airflow 2's `Connection(uri=...)` reads them and `get_uri()` writes them
//!   ([`Connection::from_uri`], [`Connection::to_uri`]); a shell task sees its connections
//!   as `AIRFLOW_CONN_<ID>=<uri>`.
//! - Environment variables `AIRFLOW_CONN_<ID>` and `SLUICE_CONN_<ID>`, holding a URI or a
//!   JSON object ([`connections_from_env`]).
//! - The files of `airflow connections export/import`: JSON, YAML and `.env`
//!   ([`export`], [`import`]).
//!
//! # The URI mapping
//!
//! `type://login:password@host:port/path?query`, every part percent-encoded as Python's
//! `quote(…, safe="")` does (only RFC 3986's unreserved characters stay as they are):
//!
//! | URI part | field |
//! |---|---|
//! | scheme | `conn_type`; `postgresql` reads as `postgres`, `https` as `http` with `schema: https`, `-` as `_` (written back with `-`, as Airflow does) |
//! | login, password | `login`, `password` (`user@` gives an empty password-less login, `user:@` an empty password) |
//! | host | `host`; Airflow's `type://protocol://host` form keeps `protocol://host` in `host` |
//! | port | `port` |
//! | path | Airflow's `schema`. For `http` it is our `schema` (the protocol, as Airflow's HTTP hook reads it: `http://host:443/https`); for every other type it is our `database` (Airflow's postgres hook reads `schema` as the database name) |
//! | query | `extra`: `?k=v&…` when every value is a string, else `?__extra__=<JSON>`, as Airflow writes it; both are read |
//!
//! The field the path does not carry (`database` of an http connection, `schema` of the
//! others) travels in the extra under `__database__` / `__schema__`, so every connection
//! round-trips; the JSON and YAML files use the same mapping for their `schema` key.
//! SQLite names its file in the path with its slashes kept: `sqlite:////abs/path.db` is
//! `/abs/path.db`, `sqlite:///rel/path.db` is `rel/path.db`; Airflow's own form,
//! `sqlite://%2Fabs%2Fpath.db` (the file in the host), is read too. Two differences from
//! Airflow: hosts keep their case (Python lowercases them), and a URI that does not parse is
//! an error rather than a connection with empty fields. `description` is not part of a URI
//! (as in Airflow), so the env format drops it.

use crate::spec::{ConnType, ConnectionSpec};
use serde::Serialize;
use serde_json::{Map, Value};
use sluice_contract::env::env_ref;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A resolved connection: secrets are filled from the environment by the runtime.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub conn_type: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub schema: Option<String>,
    pub database: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Free text shown in the UI; empty when there is none.
    pub description: String,
}

impl fmt::Debug for Connection {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("conn_type", &self.conn_type)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("login", &self.login)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// Why a connection could not be resolved, parsed or imported. One sentence naming the
/// connection and the field; it never contains a password or another secret value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionError {
    /// A field reads an environment variable that is not set.
    MissingEnv { conn_id: String, field: String, var: String },
    /// A field's value cannot be used; `problem` says why without quoting secrets.
    Invalid { conn_id: String, field: String, problem: String },
    /// Two entries of one import define the same connection.
    Duplicate { conn_id: String, format: Format },
    /// An import document as a whole cannot be read.
    Document { format: Format, problem: String },
    /// A file name whose extension names no import/export format.
    UnknownFormat { path: String },
}

impl ConnectionError {
    /// The connection the error is about, when it is about one.
    pub fn conn_id(&self) -> Option<&str> {
        match self {
            ConnectionError::MissingEnv { conn_id, .. }
            | ConnectionError::Invalid { conn_id, .. }
            | ConnectionError::Duplicate { conn_id, .. } => Some(conn_id),
            ConnectionError::Document { .. } | ConnectionError::UnknownFormat { .. } => None,
        }
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::MissingEnv { conn_id, field, var } => write!(
                f,
                "connection `{conn_id}`: `{field}` is read from the environment variable {var}, which is not set"
            ),
            ConnectionError::Invalid { conn_id, field, problem } => {
                write!(f, "connection `{conn_id}` has an invalid `{field}`: {problem}")
            }
            ConnectionError::Duplicate { conn_id, format } => {
                write!(f, "connection `{conn_id}` is defined more than once in the {format} connections")
            }
            ConnectionError::Document { format, problem } => {
                write!(f, "cannot read the {format} connections: {problem}")
            }
            ConnectionError::UnknownFormat { path } => write!(
                f,
                "cannot tell the format of `{path}` from its extension: use a .json, .yaml, .yml or .env file"
            ),
        }
    }
}

impl std::error::Error for ConnectionError {}

/// The file formats of `airflow connections export/import`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `{"conn_id": {"conn_type": …, "host": …, "extra": "<json>"}, …}`
    Json,
    /// The same mapping, in YAML.
    Yaml,
    /// One `conn_id=uri` line per connection.
    Env,
}

impl Format {
    /// The format a file's extension names: `.json`, `.yaml`/`.yml` or `.env`.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Format, ConnectionError> {
        let path = path.as_ref();
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("json") => Ok(Format::Json),
            Some("yaml" | "yml") => Ok(Format::Yaml),
            Some("env") => Ok(Format::Env),
            _ => Err(ConnectionError::UnknownFormat { path: path.display().to_string() }),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
            Format::Env => "env",
        })
    }
}

/// Extra keys carrying the field that the URI path (Airflow's `schema`) does not.
const EXTRA_SCHEMA: &str = "__schema__";
const EXTRA_DATABASE: &str = "__database__";
/// Airflow's query key for an extra that is not a flat mapping of strings.
const EXTRA_JSON: &str = "__extra__";
const MASK: &str = "***";

impl Connection {
    /// Resolves a compiled connection: the password from the variable named in
    /// `password_env`, and top-level `extra` strings written `${NAME}` from the variable
    /// `NAME`. `env` looks a variable up (`|name| std::env::var(name).ok()` in production).
    pub fn from_spec(
        spec: &ConnectionSpec,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Connection, ConnectionError> {
        let missing = |field: String, var: &str| ConnectionError::MissingEnv {
            conn_id: spec.id.to_string(),
            field,
            var: var.to_string(),
        };
        let password = match spec.password_env {
            Some(var) => Some(env(var).ok_or_else(|| missing("password".into(), var))?),
            None => None,
        };
        let mut extra = if spec.extra_json.trim().is_empty() {
            Map::new()
        } else {
            match serde_json::from_str::<Value>(spec.extra_json) {
                Ok(Value::Object(map)) => map,
                _ => return Err(invalid(spec.id, "extra", "the compiled extra is not a JSON object")),
            }
        };
        for (key, value) in extra.iter_mut() {
            if let Value::String(text) = value
                && let Some(var) = env_ref(text)
            {
                *value = Value::String(env(var).ok_or_else(|| missing(format!("extra.{key}"), var))?);
            }
        }
        Ok(Connection {
            id: spec.id.to_string(),
            conn_type: type_name(spec.conn_type).to_string(),
            host: spec.host.map(str::to_string),
            port: spec.port,
            schema: spec.schema.map(str::to_string),
            database: spec.database.map(str::to_string),
            login: spec.login.map(str::to_string),
            password,
            extra,
            description: spec.description.to_string(),
        })
    }

    /// Reads an Airflow connection URI (see the module docs for the mapping).
    pub fn from_uri(id: &str, uri: &str) -> Result<Connection, ConnectionError> {
        uri::parse(id, uri)
    }

    /// The connection as an Airflow connection URI, the form Airflow 2's `get_uri()` writes
    /// and `Connection(uri=...)` reads. Contains the password: never log it (see
    /// [`Connection::masked_uri`]).
    pub fn to_uri(&self) -> String {
        uri::render(self, false)
    }

    /// What a shell task sees in `AIRFLOW_CONN_<ID>` ([`Connection::env_var_name`]): the
    /// same text as [`Connection::to_uri`].
    pub fn uri(&self) -> String {
        self.to_uri()
    }

    /// The URI for display: the password and secret-looking extra values (`token`,
    /// `api_key`, `secret`, … as Airflow's secrets masker decides) are replaced by `***`.
    pub fn masked_uri(&self) -> String {
        uri::render(self, true)
    }

    /// `AIRFLOW_CONN_<ID>`: the variable a shell task reads this connection from.
    pub fn env_var_name(&self) -> String {
        format!("AIRFLOW_CONN_{}", self.id.to_ascii_uppercase())
    }

    /// `schema://host:port` of an http connection, as Airflow's HTTP hook builds it: the
    /// schema defaults to `http`, and a host that already has a protocol is kept as is.
    pub fn base_url(&self) -> Result<String, ConnectionError> {
        if self.conn_type != "http" {
            return Err(invalid(
                &self.id,
                "conn_type",
                &format!("a base URL needs an http connection, and this one is `{}`", self.conn_type),
            ));
        }
        let host = self.host.as_deref().filter(|h| !h.is_empty());
        let Some(host) = host else {
            return Err(invalid(&self.id, "host", "a base URL needs a host, and none is set"));
        };
        let mut url = if host.contains("://") {
            host.to_string()
        } else {
            let schema = self.schema.as_deref().filter(|s| !s.is_empty()).unwrap_or("http");
            let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.into() };
            format!("{schema}://{host}")
        };
        if let Some(port) = self.port {
            url.push_str(&format!(":{port}"));
        }
        Ok(url)
    }
}

/// Connections defined in the environment: `AIRFLOW_CONN_<ID>` and `SLUICE_CONN_<ID>`, each
/// holding a URI or (as Airflow 2.3+ accepts) a JSON object. The id is the rest of the name,
/// lowercased. When both prefixes define one id, `SLUICE_CONN_` wins. Other variables are
/// ignored. Sorted by id, so the result does not depend on the environment's order.
pub fn connections_from_env(vars: impl Iterator<Item = (String, String)>) -> Vec<Result<Connection, ConnectionError>> {
    let mut found: BTreeMap<String, (bool, Result<Connection, ConnectionError>)> = BTreeMap::new();
    for (name, value) in vars {
        let (rest, sluice) = if let Some(rest) = name.strip_prefix(sluice_contract::settings::CONN_PREFIX) {
            (rest, true)
        } else if let Some(rest) = name.strip_prefix("AIRFLOW_CONN_") {
            (rest, false)
        } else {
            continue;
        };
        let id = rest.to_ascii_lowercase();
        if found.get(&id).is_some_and(|(was_sluice, _)| *was_sluice && !sluice) {
            continue;
        }
        let parsed = if id.is_empty() {
            Err(invalid(&name, "id", "the variable name has nothing after its prefix"))
        } else {
            from_text(&id, &value)
        };
        found.insert(id, (sluice, parsed));
    }
    found.into_values().map(|(_, parsed)| parsed).collect()
}

/// Writes connections in one of `airflow connections export`'s formats, sorted by id. The
/// output holds passwords in clear, as Airflow's does. If two connections share an id, the
/// last one is kept.
pub fn export(conns: &[Connection], format: Format) -> String {
    match format {
        Format::Env => {
            let lines: BTreeMap<&str, String> = conns.iter().map(|c| (c.id.as_str(), c.to_uri())).collect();
            lines.into_iter().map(|(id, uri)| format!("{id}={uri}\n")).collect()
        }
        Format::Json | Format::Yaml => {
            let doc: BTreeMap<&str, AirflowFields<'_>> =
                conns.iter().map(|c| (c.id.as_str(), AirflowFields::of(c))).collect();
            // A map of strings and numbers always serializes; the fallback keeps the
            // signature infallible without a panic path.
            let json = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into()) + "\n";
            match format {
                // JSON is YAML too, so the fallback still imports.
                Format::Yaml => serde_saphyr::to_string(&doc).unwrap_or(json),
                _ => json,
            }
        }
    }
}

/// Reads connections written by [`export`] or by `airflow connections export`. In JSON and
/// YAML, an entry may be a mapping of fields or a URI string; in env files, a line is
/// `conn_id=<uri or JSON object>`, with blank lines and `#` comments skipped.
pub fn import(text: &str, format: Format) -> Result<Vec<Connection>, ConnectionError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    match format {
        Format::Env => import_env(text),
        Format::Json => {
            let doc = serde_json::from_str::<Value>(text).map_err(|e| {
                // serde_json's syntax messages ("expected `,` or `}`") never quote the input.
                ConnectionError::Document { format, problem: format!("it is not valid JSON ({e})") }
            })?;
            import_mapping(doc, format)
        }
        Format::Yaml => {
            let doc = serde_saphyr::from_str::<Value>(text).map_err(|e| {
                // serde-saphyr's message can quote the offending line: give only where it is.
                let at = e.location().map(|l| format!(" at line {}, column {}", l.line(), l.column()));
                ConnectionError::Document { format, problem: format!("it is not valid YAML{}", at.unwrap_or_default()) }
            })?;
            import_mapping(doc, format)
        }
    }
}

fn import_mapping(doc: Value, format: Format) -> Result<Vec<Connection>, ConnectionError> {
    let Value::Object(entries) = doc else {
        return Err(ConnectionError::Document {
            format,
            problem: "the top level must be a mapping from connection id to connection".into(),
        });
    };
    entries
        .into_iter()
        .map(|(id, entry)| match entry {
            Value::String(uri) => Connection::from_uri(&id, &uri),
            Value::Object(fields) => from_airflow_fields(&id, fields),
            _ => Err(invalid(&id, "connection", "expected a mapping of fields or a URI string")),
        })
        .collect()
}

fn import_env(text: &str) -> Result<Vec<Connection>, ConnectionError> {
    let mut conns: Vec<Connection> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let document = |problem: String| ConnectionError::Document { format: Format::Env, problem };
        let Some((id, value)) = line.split_once('=') else {
            return Err(document(format!("line {} has no `=`; expected `conn_id=uri`", index + 1)));
        };
        let id = id.trim();
        if id.is_empty() {
            return Err(document(format!("line {} has no connection id before `=`", index + 1)));
        }
        if conns.iter().any(|c| c.id == id) {
            return Err(ConnectionError::Duplicate { conn_id: id.to_string(), format: Format::Env });
        }
        conns.push(from_text(id, value)?);
    }
    Ok(conns)
}

/// A URI, or a JSON object when the text starts with `{`.
fn from_text(id: &str, text: &str) -> Result<Connection, ConnectionError> {
    let text = text.trim();
    if !text.starts_with('{') {
        return Connection::from_uri(id, text);
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => from_airflow_fields(id, fields),
        // Never quote the text: it holds the password.
        _ => Err(invalid(id, "connection", "the value starts with `{` but is not a JSON object")),
    }
}

/// The fields of one connection in Airflow's JSON/YAML export and `AIRFLOW_CONN_` JSON.
#[derive(Serialize)]
struct AirflowFields<'a> {
    conn_type: &'a str,
    description: Option<&'a str>,
    login: Option<&'a str>,
    password: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<u16>,
    schema: Option<&'a str>,
    /// A JSON text, as Airflow stores and exports it.
    extra: Option<String>,
}

impl<'a> AirflowFields<'a> {
    fn of(c: &'a Connection) -> AirflowFields<'a> {
        let (schema, extra) = airflow_schema_and_extra(c);
        AirflowFields {
            conn_type: &c.conn_type,
            description: Some(c.description.as_str()).filter(|d| !d.is_empty()),
            login: c.login.as_deref(),
            password: c.password.as_deref(),
            host: c.host.as_deref(),
            port: c.port,
            schema,
            extra: (!extra.is_empty()).then(|| Value::Object(extra).to_string()),
        }
    }
}

/// Airflow's `schema` (the URI path) and the extra carrying our other field.
fn airflow_schema_and_extra(c: &Connection) -> (Option<&str>, Map<String, Value>) {
    let mut extra = c.extra.clone();
    let (primary, secondary, key) = if c.conn_type == "http" {
        (c.schema.as_deref(), c.database.as_deref(), EXTRA_DATABASE)
    } else {
        (c.database.as_deref(), c.schema.as_deref(), EXTRA_SCHEMA)
    };
    if let Some(value) = secondary {
        extra.insert(key.to_string(), Value::String(value.to_string()));
    }
    (primary, extra)
}

const AIRFLOW_KEYS: &[&str] =
    &["conn_id", "conn_type", "description", "host", "login", "password", "schema", "port", "extra", "extra_dejson"];

/// Builds a connection from Airflow's field names (Airflow's `Connection.from_json` and the
/// import of `airflow connections import`).
fn from_airflow_fields(id: &str, mut fields: Map<String, Value>) -> Result<Connection, ConnectionError> {
    if let Some(key) = fields.keys().find(|k| !AIRFLOW_KEYS.contains(&k.as_str()) && k.as_str() != "uri") {
        return Err(invalid(id, key, &format!("unknown key; expected one of {}", AIRFLOW_KEYS.join(", "))));
    }
    if let Some(uri) = fields.remove("uri") {
        if fields.keys().any(|k| k != "conn_id" && k != "description") {
            return Err(invalid(id, "uri", "a URI cannot be mixed with separate fields (Airflow refuses it too)"));
        }
        let Value::String(uri) = uri else { return Err(invalid(id, "uri", "must be text")) };
        let mut conn = Connection::from_uri(id, &uri)?;
        conn.description = text_field(id, &fields, "description")?.unwrap_or_default();
        return Ok(conn);
    }
    if let Some(other) = text_field(id, &fields, "conn_id")?
        && other != id
    {
        return Err(invalid(id, "conn_id", &format!("it says `{other}`, which is not the id it is listed under")));
    }
    let Some(conn_type) = text_field(id, &fields, "conn_type")?.filter(|t| !t.is_empty()) else {
        return Err(invalid(id, "conn_type", "it is missing; set it to postgres, http, redis, sqlite, smtp, …"));
    };
    let given = |key| fields.get(key).filter(|v: &&Value| !v.is_null());
    let mut extra = match (given("extra"), given("extra_dejson")) {
        (Some(_), Some(_)) => return Err(invalid(id, "extra", "give `extra` or `extra_dejson`, not both")),
        (Some(value), None) => extra_value(id, "extra", value)?,
        (None, Some(value)) => extra_value(id, "extra_dejson", value)?,
        (None, None) => Map::new(),
    };
    let port = match fields.get("port") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().and_then(|n| u16::try_from(n).ok()).ok_or_else(bad_port(id))?),
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.trim().parse::<u16>().map_err(|_| bad_port(id)())?),
        Some(_) => return Err(bad_port(id)()),
    };
    let (conn_type, https) = normalize_type(&conn_type);
    let mut conn = Connection {
        id: id.to_string(),
        conn_type,
        host: text_field(id, &fields, "host")?,
        port,
        login: text_field(id, &fields, "login")?,
        password: text_field(id, &fields, "password")?,
        description: text_field(id, &fields, "description")?.unwrap_or_default(),
        ..Connection::default()
    };
    let schema = text_field(id, &fields, "schema")?.filter(|s| !s.is_empty());
    let schema = if https { schema.or_else(|| Some("https".into())) } else { schema };
    conn.set_airflow_schema(schema, &mut extra)?;
    conn.extra = extra;
    Ok(conn)
}

impl Connection {
    /// Places Airflow's `schema` (and the reserved extra key of the other field) into our
    /// `schema`/`database`, removing that key from `extra`.
    fn set_airflow_schema(
        &mut self,
        schema: Option<String>,
        extra: &mut Map<String, Value>,
    ) -> Result<(), ConnectionError> {
        let key = if self.conn_type == "http" { EXTRA_DATABASE } else { EXTRA_SCHEMA };
        let secondary = match extra.remove(key) {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(invalid(&self.id, &format!("extra.{key}"), "must be text")),
        };
        if self.conn_type == "http" {
            (self.schema, self.database) = (schema, secondary);
        } else {
            (self.database, self.schema) = (schema, secondary);
        }
        Ok(())
    }
}

fn bad_port(id: &str) -> impl Fn() -> ConnectionError + '_ {
    move || invalid(id, "port", "expected a number from 0 to 65535")
}

/// A text field: a string, or a number written without quotes in YAML (`schema: 0`).
fn text_field(id: &str, fields: &Map<String, Value>, key: &str) -> Result<Option<String>, ConnectionError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(invalid(id, key, "expected text")),
    }
}

/// `extra` as Airflow stores it (a JSON text) or as a mapping.
fn extra_value(id: &str, field: &str, value: &Value) -> Result<Map<String, Value>, ConnectionError> {
    match value {
        Value::Object(map) => Ok(map.clone()),
        Value::String(text) if text.trim().is_empty() => Ok(Map::new()),
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(invalid(id, field, "expected a JSON object (as text or as a mapping)")),
        },
        _ => Err(invalid(id, field, "expected a JSON object (as text or as a mapping)")),
    }
}

/// Airflow's scheme normalization, plus `https` -> `http` (the bool: the schema is https).
fn normalize_type(scheme: &str) -> (String, bool) {
    let lower = scheme.to_ascii_lowercase();
    match lower.as_str() {
        "postgresql" => ("postgres".into(), false),
        "https" => ("http".into(), true),
        _ => (lower.replace('-', "_"), false),
    }
}

fn type_name(conn_type: ConnType) -> &'static str {
    match conn_type {
        ConnType::Postgres => "postgres",
        ConnType::Redis => "redis",
        ConnType::Http => "http",
        ConnType::Sqlite => "sqlite",
        ConnType::Smtp => "smtp",
        ConnType::File => "file",
    }
}

fn invalid(conn_id: &str, field: &str, problem: &str) -> ConnectionError {
    ConnectionError::Invalid { conn_id: conn_id.to_string(), field: field.to_string(), problem: problem.to_string() }
}

pub use sluice_contract::secrets::is_secret_key;

/// Replaces secret values (by key, at any depth, see [`is_secret_key`]) with `***`.
pub fn mask_extra(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), if is_secret_key(k) { Value::String(MASK.into()) } else { mask_extra(v) }))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_extra).collect()),
        other => other.clone(),
    }
}

/// Parsing and writing Airflow connection URIs.
pub mod probe;
pub(crate) mod uri;
