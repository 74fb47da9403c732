//! Connections in the metadata store, their secrets Fernet-encrypted at rest, and the
//! rotation of every stored secret onto a new key.
//!
//! A row's `password` and `extra` are Fernet tokens when `is_encrypted` is 1: that is the
//! case whenever the [`Crypto`] has a key and the connection has a password or an extra.
//! Without a key nothing is encrypted (`is_encrypted` 0), and a connection that holds a
//! secret (a password, or an extra with a secret-looking key) cannot be stored: the
//! [`Crypto`] refuses with a message saying how to make a key. Plaintext rows otherwise
//! exist only through [`Crypto::plaintext_for_tests`].
//!
//! Rows come from two places, recorded in `source`: `pipelines.yaml` (written by
//! [`Store::sync_connections`] at start, with secrets from the environment) and `runtime`
//! (the CLI, imports). A declared connection belongs to the YAML: run-time writes and
//! deletes refuse to touch it, since the next sync would undo them.

use super::audit::Change;
use super::{Doing, Result, Store, StoreError, Tx, get, opt, q};
use crate::connection::{Connection, is_secret_key};
use crate::crypto::{Crypto, CryptoError};
use crate::registry::Registry;
use serde_json::{Map, Value};
use sqlx::AssertSqlSafe;

/// Where a stored connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionSource {
    /// Declared in `pipelines.yaml`, written at start by [`Store::sync_connections`].
    PipelinesYaml,
    /// Added at run time (`sluice connections add/import`).
    Runtime,
}

impl ConnectionSource {
    /// The value of the `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionSource::PipelinesYaml => "pipelines.yaml",
            ConnectionSource::Runtime => "runtime",
        }
    }

    fn parse(text: &str) -> Result<ConnectionSource> {
        match text {
            "pipelines.yaml" => Ok(ConnectionSource::PipelinesYaml),
            "runtime" => Ok(ConnectionSource::Runtime),
            other => Err(StoreError::Conflict(format!("unknown connection source `{other}` in the store"))),
        }
    }
}

/// A stored connection without its secrets: what listings show. Reading it needs no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub id: String,
    pub conn_type: String,
    pub description: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub schema: Option<String>,
    pub database: Option<String>,
    pub login: Option<String>,
    pub has_password: bool,
    pub has_extra: bool,
    /// Whether the password and extra are stored as Fernet tokens.
    pub is_encrypted: bool,
    pub source: ConnectionSource,
    /// Microseconds since the epoch.
    pub updated_at: i64,
}

/// What [`Store::sync_connections`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConnectionSyncReport {
    /// Declared connections (re)written, in declaration order.
    pub written: Vec<String>,
    /// Connections that came from the YAML and are no longer declared: deleted.
    pub removed: Vec<String>,
    /// Declared connections that could not be written, one sentence each (a secret's
    /// variable is not set, no Fernet key): a row already stored for them is kept.
    pub skipped: Vec<String>,
}

/// What [`Store::import_connections`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConnectionImport {
    pub added: Vec<String>,
    /// Existing connections replaced (only with `overwrite`).
    pub replaced: Vec<String>,
}

/// What [`Store::rotate_secrets`] re-encrypted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RotationReport {
    /// Encrypted connections (password and extra).
    pub connections: usize,
    /// Encrypted variables.
    pub variables: usize,
}

impl Store {
    /// Adds a run-time connection; an existing id is a conflict (Airflow's
    /// `connections add`).
    pub async fn add_connection(&self, conn: &Connection, crypto: &Crypto) -> Result<()> {
        let sealed = Sealed::of(conn, crypto)?;
        let mut tx = self.begin().await?;
        if let Some(source) = self.source_of(&mut tx, &conn.id).await? {
            return Err(exists(&conn.id, source));
        }
        write(&mut tx, conn, &sealed, ConnectionSource::Runtime, self.now()).await?;
        self.audit(&mut tx, Change::new("connection.create").detail("conn_id", conn.id.as_str())).await?;
        tx.commit().await.doing("adding a connection")
    }

    /// Writes a connection, replacing one of the same id. A run-time write cannot replace a
    /// connection declared in `pipelines.yaml` (the next sync would undo it).
    pub async fn upsert_connection(&self, conn: &Connection, source: ConnectionSource, crypto: &Crypto) -> Result<()> {
        let sealed = Sealed::of(conn, crypto)?;
        let mut tx = self.begin().await?;
        if source == ConnectionSource::Runtime
            && self.source_of(&mut tx, &conn.id).await? == Some(ConnectionSource::PipelinesYaml)
        {
            return Err(declared(&conn.id, "changed"));
        }
        write(&mut tx, conn, &sealed, source, self.now()).await?;
        self.audit(&mut tx, Change::new("connection.edit").detail("conn_id", conn.id.as_str())).await?;
        tx.commit().await.doing("writing a connection")
    }

    /// Imports run-time connections in one transaction: all or nothing. Existing ids are a
    /// conflict naming them unless `overwrite`; connections declared in `pipelines.yaml`
    /// are a conflict either way.
    pub async fn import_connections(
        &self,
        conns: &[Connection],
        overwrite: bool,
        crypto: &Crypto,
    ) -> Result<ConnectionImport> {
        let sealed = conns.iter().map(|c| Sealed::of(c, crypto)).collect::<Result<Vec<_>>>()?;
        let mut report = ConnectionImport::default();
        let mut tx = self.begin().await?;
        let mut existing = Vec::new();
        for conn in conns {
            match self.source_of(&mut tx, &conn.id).await? {
                Some(ConnectionSource::PipelinesYaml) => return Err(declared(&conn.id, "imported over")),
                Some(ConnectionSource::Runtime) => existing.push(conn.id.as_str()),
                None => {}
            }
        }
        if !overwrite && !existing.is_empty() {
            return Err(StoreError::Conflict(format!(
                "{} already exist{}: {}; nothing was imported (import with overwrite to replace them)",
                plural(existing.len(), "connection"),
                if existing.len() == 1 { "s" } else { "" },
                existing.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ")
            )));
        }
        let now = self.now();
        for (conn, sealed) in conns.iter().zip(&sealed) {
            write(&mut tx, conn, sealed, ConnectionSource::Runtime, now).await?;
            if existing.contains(&conn.id.as_str()) {
                report.replaced.push(conn.id.clone());
            } else {
                report.added.push(conn.id.clone());
            }
        }
        let ids: Vec<&str> = conns.iter().map(|c| c.id.as_str()).collect();
        self.audit(&mut tx, Change::new("connection.import").detail("conn_ids", ids)).await?;
        tx.commit().await.doing("importing connections")?;
        Ok(report)
    }

    /// One connection, decrypted. A missing id is [`StoreError::NotFound`]; an encrypted
    /// row that the configured keys do not open is a conflict saying so.
    pub async fn connection(&self, id: &str, crypto: &Crypto) -> Result<Connection> {
        let mut tx = self.begin().await?;
        let row = q(AssertSqlSafe(format!("SELECT {COLUMNS} FROM connections WHERE conn_id = $1")))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading a connection")?;
        tx.commit().await.doing("reading a connection")?;
        match row {
            Some(row) => open(&row, crypto),
            None => Err(not_found(id)),
        }
    }

    /// Every connection, decrypted, by id.
    pub async fn connections(&self, crypto: &Crypto) -> Result<Vec<Connection>> {
        let rows = self.connection_rows().await?;
        rows.iter().map(|row| open(row, crypto)).collect()
    }

    /// Every connection without its secrets, by id: needs no key.
    pub async fn connection_infos(&self) -> Result<Vec<ConnectionInfo>> {
        let rows = self.connection_rows().await?;
        rows.iter().map(info).collect()
    }

    /// One connection without its secrets: needs no key.
    pub async fn connection_info(&self, id: &str) -> Result<ConnectionInfo> {
        let mut tx = self.begin().await?;
        let row = q(AssertSqlSafe(format!("SELECT {COLUMNS} FROM connections WHERE conn_id = $1")))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading a connection")?;
        tx.commit().await.doing("reading a connection")?;
        match row {
            Some(row) => info(&row),
            None => Err(not_found(id)),
        }
    }

    /// Deletes a run-time connection. A connection declared in `pipelines.yaml` is a
    /// conflict: remove it from the YAML instead.
    pub async fn delete_connection(&self, id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        match self.source_of(&mut tx, id).await? {
            None => return Err(not_found(id)),
            Some(ConnectionSource::PipelinesYaml) => return Err(declared(id, "deleted")),
            Some(ConnectionSource::Runtime) => {}
        }
        q("DELETE FROM connections WHERE conn_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .doing("deleting a connection")?;
        self.audit(&mut tx, Change::new("connection.delete").detail("conn_id", id)).await?;
        tx.commit().await.doing("deleting a connection")
    }

    /// Writes the connections declared in `pipelines.yaml`, with their secrets read through
    /// `env` ([`Connection::from_spec`]), as source `pipelines.yaml`; deletes the ones the
    /// YAML no longer declares. Run-time connections are left alone, except one whose id the
    /// YAML now declares: the YAML wins. A declared connection that cannot be resolved or
    /// encrypted is reported in [`ConnectionSyncReport::skipped`] and its stored row, if
    /// any, kept; only database errors fail the sync. One transaction.
    pub async fn sync_connections(
        &self,
        registry: &Registry,
        env: &dyn Fn(&str) -> Option<String>,
        crypto: &Crypto,
    ) -> Result<ConnectionSyncReport> {
        let mut report = ConnectionSyncReport::default();
        let mut resolved = Vec::new();
        for spec in registry.connections {
            let conn = match Connection::from_spec(spec, env) {
                Ok(conn) => conn,
                Err(e) => {
                    report.skipped.push(e.to_string());
                    continue;
                }
            };
            match Sealed::of(&conn, crypto) {
                Ok(sealed) => resolved.push((conn, sealed)),
                Err(e) => report.skipped.push(e.to_string()),
            }
        }
        let now = self.now();
        let mut tx = self.begin_exclusive("sync_connections").await?;
        for (conn, sealed) in &resolved {
            write(&mut tx, conn, sealed, ConnectionSource::PipelinesYaml, now).await?;
            report.written.push(conn.id.clone());
        }
        let rows = q(AssertSqlSafe(format!(
            "SELECT conn_id FROM connections WHERE source = 'pipelines.yaml' ORDER BY conn_id{}",
            self.for_update()
        )))
        .fetch_all(&mut *tx)
        .await
        .doing("listing declared connections")?;
        for row in rows {
            let id: String = get(&row, "conn_id")?;
            if registry.connections.iter().all(|spec| spec.id != id) {
                q("DELETE FROM connections WHERE conn_id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .doing("deleting an undeclared connection")?;
                report.removed.push(id);
            }
        }
        tx.commit().await.doing("committing the connection sync")?;
        Ok(report)
    }

    /// Re-encrypts every encrypted connection (password and extra) and variable with the
    /// first key of `crypto` (`sluice fernet rotate`): put the new key first in the list,
    /// rotate, then drop the old key. One transaction: a token no configured key opens fails
    /// the whole rotation and changes nothing. Without a key it fails with the key error.
    pub async fn rotate_secrets(&self, crypto: &Crypto) -> Result<RotationReport> {
        if !crypto.is_encrypting() {
            return Err(StoreError::Conflict(match crypto.encrypt("") {
                Err(e) => e.to_string(),
                Ok(_) => "rotating secrets needs a Fernet key, and this store writes them as plaintext".into(),
            }));
        }
        let mut report = RotationReport::default();
        let mut tx = self.begin().await?;
        let rows = q(AssertSqlSafe(format!(
            "SELECT conn_id, password, extra FROM connections WHERE is_encrypted = 1 ORDER BY conn_id{}",
            self.for_update()
        )))
        .fetch_all(&mut *tx)
        .await
        .doing("reading encrypted connections")?;
        for row in rows {
            let id: String = get(&row, "conn_id")?;
            let rotate = |field: &str, token: Option<String>| {
                token.map(|t| crypto.rotate(&t).map_err(|e| unreadable(&id, field, &e))).transpose()
            };
            let password = rotate("password", opt(&row, "password"))?;
            let extra = rotate("extra", opt(&row, "extra"))?;
            q("UPDATE connections SET password = $2, extra = $3, updated_at = $4 WHERE conn_id = $1")
                .bind(&id)
                .bind(password)
                .bind(extra)
                .bind(self.now())
                .execute(&mut *tx)
                .await
                .doing("re-encrypting a connection")?;
            report.connections += 1;
        }
        report.variables = super::variables::rotate(self, &mut tx, crypto).await?;
        self.audit(
            &mut tx,
            Change::new("fernet.rotate")
                .detail("connections", report.connections)
                .detail("variables", report.variables),
        )
        .await?;
        tx.commit().await.doing("committing the key rotation")?;
        Ok(report)
    }

    async fn connection_rows(&self) -> Result<Vec<sqlx::any::AnyRow>> {
        let mut tx = self.begin().await?;
        let rows = q(AssertSqlSafe(format!("SELECT {COLUMNS} FROM connections ORDER BY conn_id")))
            .fetch_all(&mut *tx)
            .await
            .doing("listing connections")?;
        tx.commit().await.doing("listing connections")?;
        Ok(rows)
    }

    /// The source of a stored connection, locking its row on PostgreSQL.
    async fn source_of(&self, tx: &mut Tx, id: &str) -> Result<Option<ConnectionSource>> {
        let row = q(AssertSqlSafe(format!("SELECT source FROM connections WHERE conn_id = $1{}", self.for_update())))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .doing("reading a connection")?;
        row.map(|r| ConnectionSource::parse(&get::<String>(&r, "source")?)).transpose()
    }
}

const COLUMNS: &str = "conn_id, conn_type, description, host, port, schema, database, login, password, extra, \
                       is_encrypted, source, updated_at";

/// Airflow's limit on connection ids.
const MAX_ID_LEN: usize = 250;

/// A connection's secrets as they are stored.
struct Sealed {
    password: Option<String>,
    extra: Option<String>,
    encrypted: bool,
}

impl Sealed {
    /// Encrypts the password and extra when `crypto` has a key. Without one, a connection
    /// with a secret is refused with the key error; one without is stored as it is.
    fn of(conn: &Connection, crypto: &Crypto) -> Result<Sealed> {
        check_id(&conn.id)?;
        if conn.conn_type.trim().is_empty() {
            return Err(StoreError::Conflict(format!("connection `{}` has no conn_type", conn.id)));
        }
        let extra = (!conn.extra.is_empty()).then(|| Value::Object(conn.extra.clone()).to_string());
        let has_secret = conn.password.as_deref().is_some_and(|p| !p.is_empty()) || has_secret_key(&conn.extra);
        let has_content = conn.password.is_some() || extra.is_some();
        if !(has_content && (crypto.is_encrypting() || has_secret)) {
            return Ok(Sealed { password: conn.password.clone(), extra, encrypted: false });
        }
        let seal = |text: Option<&str>| {
            text.map(|t| crypto.encrypt(t))
                .transpose()
                .map_err(|e| StoreError::Conflict(format!("connection `{}` cannot be stored: {e}", conn.id)))
        };
        Ok(Sealed {
            password: seal(conn.password.as_deref())?,
            extra: seal(extra.as_deref())?,
            encrypted: crypto.is_encrypting(),
        })
    }
}

async fn write(tx: &mut Tx, conn: &Connection, sealed: &Sealed, source: ConnectionSource, now: i64) -> Result<()> {
    q("INSERT INTO connections (conn_id, conn_type, description, host, port, schema, database, login, password, \
       extra, is_encrypted, source, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
       ON CONFLICT (conn_id) DO UPDATE SET conn_type = excluded.conn_type, description = excluded.description, \
       host = excluded.host, port = excluded.port, schema = excluded.schema, database = excluded.database, \
       login = excluded.login, password = excluded.password, extra = excluded.extra, \
       is_encrypted = excluded.is_encrypted, source = excluded.source, updated_at = excluded.updated_at")
    .bind(&conn.id)
    .bind(&conn.conn_type)
    .bind(&conn.description)
    .bind(conn.host.clone())
    .bind(conn.port.map(i64::from))
    .bind(conn.schema.clone())
    .bind(conn.database.clone())
    .bind(conn.login.clone())
    .bind(sealed.password.clone())
    .bind(sealed.extra.clone())
    .bind(i64::from(sealed.encrypted))
    .bind(source.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await
    .doing("writing a connection")?;
    Ok(())
}

/// A row as a connection, its secrets decrypted.
fn open(row: &sqlx::any::AnyRow, crypto: &Crypto) -> Result<Connection> {
    let meta = info(row)?;
    let id = &meta.id;
    let decrypt = |field: &str, text: Option<String>| match text {
        Some(token) if meta.is_encrypted => crypto.decrypt(&token).map(Some).map_err(|e| unreadable(id, field, &e)),
        other => Ok(other),
    };
    let password = decrypt("password", opt(row, "password"))?;
    let extra = match decrypt("extra", opt(row, "extra"))? {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(StoreError::Conflict(format!(
                    "the stored extra of connection `{id}` is not a JSON object"
                )));
            }
        },
    };
    Ok(Connection {
        id: meta.id,
        conn_type: meta.conn_type,
        host: meta.host,
        port: meta.port,
        schema: meta.schema,
        database: meta.database,
        login: meta.login,
        password,
        extra,
        description: meta.description,
    })
}

fn info(row: &sqlx::any::AnyRow) -> Result<ConnectionInfo> {
    let id: String = get(row, "conn_id")?;
    let port = match opt::<i64>(row, "port") {
        None => None,
        Some(port) => Some(u16::try_from(port).map_err(|_| {
            StoreError::Conflict(format!("the stored port of connection `{id}` is out of range: {port}"))
        })?),
    };
    Ok(ConnectionInfo {
        conn_type: get(row, "conn_type")?,
        description: get(row, "description")?,
        host: opt(row, "host"),
        port,
        schema: opt(row, "schema"),
        database: opt(row, "database"),
        login: opt(row, "login"),
        has_password: opt::<String>(row, "password").is_some(),
        has_extra: opt::<String>(row, "extra").is_some(),
        is_encrypted: get::<i64>(row, "is_encrypted")? == 1,
        source: ConnectionSource::parse(&get::<String>(row, "source")?)?,
        updated_at: get(row, "updated_at")?,
        id,
    })
}

/// Airflow's rule for connection ids: 1 to 250 of letters, digits and `_ - . : / \ # ! ( )`.
fn check_id(id: &str) -> Result<()> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || "_-.:/\\#!()".contains(c);
    if id.is_empty() || id.chars().count() > MAX_ID_LEN || !id.chars().all(valid_char) {
        return Err(StoreError::Conflict(format!(
            "`{id}` is not a valid connection id: use 1 to {MAX_ID_LEN} letters, digits and `_ - . : / \\ # ! ( )`"
        )));
    }
    Ok(())
}

/// Whether an extra holds a value under a secret-looking key, at any depth.
fn has_secret_key(extra: &Map<String, Value>) -> bool {
    fn walk(value: &Value) -> bool {
        match value {
            Value::Object(map) => map.iter().any(|(k, v)| is_secret_key(k) || walk(v)),
            Value::Array(items) => items.iter().any(walk),
            _ => false,
        }
    }
    extra.iter().any(|(k, v)| is_secret_key(k) || walk(v))
}

fn unreadable(id: &str, field: &str, e: &CryptoError) -> StoreError {
    StoreError::Conflict(format!("cannot read the {field} of connection `{id}`: {e}"))
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("connection `{id}`"))
}

fn exists(id: &str, source: ConnectionSource) -> StoreError {
    match source {
        ConnectionSource::PipelinesYaml => declared(id, "added again"),
        ConnectionSource::Runtime => StoreError::Conflict(format!("connection `{id}` already exists")),
    }
}

fn declared(id: &str, verb: &str) -> StoreError {
    StoreError::Conflict(format!(
        "connection `{id}` is declared in pipelines.yaml, so it cannot be {verb} at run time: change it in the YAML"
    ))
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}
