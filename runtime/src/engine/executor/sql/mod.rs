//! SQL tasks: the rendered statement on a postgres or sqlite connection, taken from the
//! worker's pool for that connection ([`pools`]).
//!
//! The statement is sent with `raw_sql`: PostgreSQL's simple query protocol, unprepared and
//! in one round trip, which is correct behind PgBouncer in transaction mode (prepared
//! statements, even unnamed ones split over two round trips, are not; see
//! `reference/pgbouncer-transaction-mode.md`), and runs a script of several statements as
//! one implicit transaction. Values come back as text and are converted by column type,
//! so every PostgreSQL type has a value (timestamps, numerics, uuids... as text; json as
//! JSON), where sqlx's `Any` driver would fail on any type beyond ints, floats, text and
//! bytes.
//!
//! Outputs: `rows`, the first [`MAX_ROWS`] rows as `{column: value}`, and `rows_affected`:
//! for a statement that returns rows, how many it returned (PostgreSQL's command tag
//! counts the same); otherwise the rows it inserted, updated or deleted.

mod pools;

pub use pools::SqlConnections;

use super::{ExecEnv, render};
use crate::connection::Connection;
use crate::task::{TaskError, TaskInput};
use crate::template::{Language, TemplateContext};
use serde_json::{Map, Value};
use sluice_contract::outputs;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow, PgValueFormat};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Column, ConnectOptions, Row, TypeInfo, ValueRef};
use std::time::Duration;

/// Rows kept in the outputs.
pub const MAX_ROWS: usize = 100;
/// How long connecting may take, whatever the task's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn run(
    conn_id: &str,
    statement: &str,
    input: &TaskInput,
    env: &ExecEnv,
    sensor: bool,
) -> Result<Value, TaskError> {
    let conn = input.connection(conn_id)?;
    let ctx = TemplateContext::from_input(input, env.variables.clone());
    // Values become literals by the rules of the server the statement goes to.
    let language = if conn.conn_type == "sqlite" { Language::Sqlite } else { Language::Postgres };
    let sql = render(env, input, "the statement", statement, &ctx, Some(language))?;
    let log = &input.log;
    log.info(format!("Running statement on `{conn_id}`: {sql}"));
    let Rows { rows, affected: rows_affected, first_value } = execute(Some(&env.sql_connections), conn, &sql).await?;
    let returned = rows.len();
    let rows: Vec<Value> = rows.into_iter().take(MAX_ROWS).collect();
    if returned > MAX_ROWS {
        log.info(format!(
            "{rows_affected} rows affected; {returned} rows returned, the outputs keep the first {MAX_ROWS}"
        ));
    } else {
        log.info(format!("{rows_affected} rows affected; {returned} rows returned"));
    }
    if sensor {
        match &first_value {
            None => return Err(TaskError::not_ready("the query returned no rows")),
            Some(value) if !is_truthy(value) => {
                return Err(TaskError::not_ready(format!("the query's first value is {value}")));
            }
            Some(_) => {}
        }
    }
    Ok(serde_json::json!({ outputs::SQL_ROWS_AFFECTED: rows_affected, outputs::SQL_ROWS: rows }))
}

/// Whether an sql sensor's first value means "ready": not null, false, zero or empty (as
/// Python reads it), nor the text `0` (as Airflow's `SqlSensor` reads it).
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "0",
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// What a statement returned.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    /// Each row as `{column: value}`.
    pub rows: Vec<Value>,
    /// The rows it returned, or else changed.
    pub affected: u64,
    /// The first column of the first row: what an sql sensor reads.
    pub first_value: Option<Value>,
}

/// Runs `sql` (one statement or a script) on a postgres or sqlite connection, kept on
/// `shelves` when given: the rows it returned, and how many rows it returned or changed.
pub(crate) async fn execute(shelves: Option<&SqlConnections>, conn: &Connection, sql: &str) -> Result<Rows, TaskError> {
    match conn.conn_type.as_str() {
        "postgres" => postgres(shelves, conn, sql).await,
        "sqlite" => sqlite(shelves, conn, sql).await,
        other => Err(TaskError::new(format!(
            "connection `{}` is of type {other}, and SQL needs a postgres or sqlite connection",
            conn.id
        ))),
    }
}

async fn postgres(shelves: Option<&SqlConnections>, conn: &Connection, sql: &str) -> Result<Rows, TaskError> {
    let id = &conn.id;
    let host = conn
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| TaskError::new(format!("connection `{id}` has no host")))?;
    let port = conn.port.unwrap_or(5432);
    let mut options = PgConnectOptions::new_without_pgpass()
        .host(host)
        .port(port)
        .application_name("sluice")
        // PgBouncer rejects this startup parameter.
        .extra_float_digits(None)
        // The task log has the statement, masked; sqlx's own log would not mask it.
        .disable_statement_logging();
    if let Some(login) = conn.login.as_deref().filter(|l| !l.is_empty()) {
        options = options.username(login);
    }
    // The connection alone says how to connect: sqlx would fill what it leaves out from
    // the worker's PG* variables (PGPASSWORD, PGDATABASE, PGSSLMODE), which are not the
    // task's to use.
    options = options.password(conn.password.as_deref().unwrap_or(""));
    let database = conn.database.as_deref().or(conn.schema.as_deref()).filter(|d| !d.is_empty());
    options = options.database(database.or(conn.login.as_deref()).unwrap_or("postgres"));
    let mode = conn.extra.get("sslmode").and_then(Value::as_str).unwrap_or("prefer");
    let mode =
        mode.parse().map_err(|_| TaskError::new(format!("connection `{id}` has an unknown sslmode `{mode}`")))?;
    options = options.ssl_mode(mode);
    // Airflow's postgres extras: the CA that `verify-ca` / `verify-full` check against
    // (the system's roots otherwise), and a client certificate.
    let path = |key: &str| conn.extra.get(key).and_then(Value::as_str).filter(|p| !p.is_empty());
    if let Some(ca) = path("sslrootcert") {
        options = options.ssl_root_cert(ca);
    }
    if let (Some(cert), Some(key)) = (path("sslcert"), path("sslkey")) {
        options = options.ssl_client_cert(cert).ssl_client_key(key);
    }
    let target = format!("`{id}` (postgres at {host}:{port})");
    let opened = async {
        match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
            Ok(connected) => connected,
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    };
    let mut db: pools::Lease<PgConnection> =
        pools::take(shelves, conn, opened).await.map_err(|e| cannot_connect(&target, &e))?;
    let failed = |e: sqlx::Error| {
        TaskError::new(format!("the statement failed on `{id}`: {}", crate::store::describe_sqlx_error(&e)))
    };
    let query = sqlx::raw_sql(AssertSqlSafe(sql.to_string()));
    let result = if returns_rows(sql) {
        let fetched = query.fetch_all(&mut *db).await.map_err(failed)?;
        let rows: Vec<Value> = fetched.iter().map(pg_row).collect();
        let first_value = fetched.first().filter(|r| !r.columns().is_empty()).map(|r| pg_value(r, 0));
        Rows { affected: rows.len() as u64, rows, first_value }
    } else {
        let done = query.execute(&mut *db).await.map_err(failed)?;
        Rows { affected: done.rows_affected(), ..Rows::default() }
    };
    db.give_back().await;
    Ok(result)
}

/// Why a connection could not be had: the server's answer, or its silence.
fn cannot_connect(target: &str, e: &sqlx::Error) -> TaskError {
    match e {
        // The connect timeout above.
        sqlx::Error::PoolTimedOut => {
            TaskError::new(format!("cannot connect to {target}: no answer within {}s", CONNECT_TIMEOUT.as_secs()))
        }
        e => TaskError::new(format!("cannot connect to {target}: {}", crate::store::describe_sqlx_error(e))),
    }
}

async fn sqlite(shelves: Option<&SqlConnections>, conn: &Connection, sql: &str) -> Result<Rows, TaskError> {
    let id = &conn.id;
    let path = conn
        .database
        .as_deref()
        .or(conn.host.as_deref())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| TaskError::new(format!("connection `{id}` names no database file")))?;
    // Like `sqlite3.connect`, a missing file is created (and here its folder too).
    if let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| TaskError::new(format!("cannot create the folder of `{id}` (sqlite file {path}): {e}")))?;
    }
    let options = SqliteConnectOptions::new().filename(path).create_if_missing(true).disable_statement_logging();
    let mut db: pools::Lease<SqliteConnection> = pools::take(shelves, conn, options.connect())
        .await
        .map_err(|e| TaskError::new(format!("cannot open `{id}` (sqlite file {path}): {e}")))?;
    let failed = |e: sqlx::Error| {
        TaskError::new(format!("the statement failed on `{id}`: {}", crate::store::describe_sqlx_error(&e)))
    };
    // The connection's running total before and after: what this statement (or script)
    // changed, whatever earlier tasks did on it.
    let total_changes = "SELECT total_changes()";
    let before: i64 = sqlx::query_scalar(total_changes).fetch_one(&mut *db).await.map_err(failed)?;
    let fetched = sqlx::raw_sql(AssertSqlSafe(sql.to_string())).fetch_all(&mut *db).await.map_err(failed)?;
    let rows: Vec<Value> = fetched.iter().map(sqlite_row).collect();
    let first_value = fetched.first().filter(|r| !r.columns().is_empty()).map(|r| sqlite_value(r, 0));
    let after: i64 = sqlx::query_scalar(total_changes).fetch_one(&mut *db).await.map_err(failed)?;
    db.give_back().await;
    let changes = after.saturating_sub(before);
    let affected = if rows.is_empty() { u64::try_from(changes).unwrap_or(0) } else { rows.len() as u64 };
    Ok(Rows { rows, affected, first_value })
}

// ---------------------------------------------------------------------------------------
// Values

fn pg_row(row: &PgRow) -> Value {
    let mut object = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        object.insert(column.name().to_string(), pg_value(row, i));
    }
    Value::Object(object)
}

/// A PostgreSQL value in text format, by its column's type.
fn pg_value(row: &PgRow, index: usize) -> Value {
    let Ok(raw) = row.try_get_raw(index) else { return Value::Null };
    if raw.is_null() {
        return Value::Null;
    }
    let type_name = raw.type_info().name().to_string();
    let text = match (raw.format(), raw.as_bytes()) {
        (PgValueFormat::Text, Ok(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        // raw_sql always returns text; anything else is a value we cannot read.
        _ => return Value::String(format!("<{type_name} value in binary format>")),
    };
    match type_name.as_str() {
        "BOOL" => match text.as_str() {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            _ => Value::String(text),
        },
        "INT2" | "INT4" | "INT8" | "OID" | "FLOAT4" | "FLOAT8" | "NUMERIC" => number(text),
        "JSON" | "JSONB" => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        _ => Value::String(text),
    }
}

/// An integer if it is one, else a finite float, else the text (`NaN`, a numeric too large).
fn number(text: String) -> Value {
    if let Ok(int) = text.parse::<i64>() {
        return Value::from(int);
    }
    match text.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
        Some(float) => Value::Number(float),
        None => Value::String(text),
    }
}

fn sqlite_row(row: &SqliteRow) -> Value {
    let mut object = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        object.insert(column.name().to_string(), sqlite_value(row, i));
    }
    Value::Object(object)
}

/// A SQLite value by its storage class; other declared types are tried as integer, real,
/// boolean and text in turn.
fn sqlite_value(row: &SqliteRow, index: usize) -> Value {
    let Ok(raw) = row.try_get_raw(index) else { return Value::Null };
    if raw.is_null() {
        return Value::Null;
    }
    let type_name = raw.type_info().name().to_string();
    let int = || row.try_get_unchecked::<i64, _>(index).ok().map(Value::from);
    let real = || row.try_get_unchecked::<f64, _>(index).ok().and_then(serde_json::Number::from_f64).map(Value::Number);
    let boolean = || row.try_get_unchecked::<bool, _>(index).ok().map(Value::Bool);
    let text = || row.try_get_unchecked::<String, _>(index).ok().map(Value::String);
    let blob = || {
        row.try_get_unchecked::<Vec<u8>, _>(index).ok().map(|b| Value::String(String::from_utf8_lossy(&b).into_owned()))
    };
    let value = match type_name.as_str() {
        "INTEGER" => int(),
        "REAL" => real(),
        "TEXT" => text(),
        "BLOB" => blob(),
        _ => int().or_else(real).or_else(boolean).or_else(text),
    };
    value.unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------
// Does the statement return rows?

/// Whether the last statement of `sql` returns rows (`SELECT`, `VALUES`, `SHOW`,
/// `EXPLAIN`, DML with `RETURNING`, a `WITH` whose main statement does), by its keywords
/// outside strings, quoted names and comments. PostgreSQL only: the rows of a statement
/// and its command tag come in one stream that sqlx only exposes through
/// `futures_core::Stream`, which this crate does not depend on; this reads the rows with
/// `fetch_all`, or the count with `execute`, depending on the answer.
pub(crate) fn returns_rows(sql: &str) -> bool {
    let statements = statements(sql);
    let Some(last) = statements.iter().rev().find(|s| !s.is_empty()) else { return false };
    let top: Vec<&str> = last.iter().filter(|(_, depth)| *depth == 0).map(|(w, _)| w.as_str()).collect();
    let first = match last.first() {
        Some((word, depth)) if *depth > 0 => return matches!(word.as_str(), "SELECT" | "VALUES" | "TABLE"),
        Some((word, _)) => word.as_str(),
        None => return false,
    };
    let main = if first == "WITH" {
        top.iter()
            .copied()
            .find(|w| matches!(*w, "SELECT" | "VALUES" | "TABLE" | "INSERT" | "UPDATE" | "DELETE" | "MERGE"))
    } else {
        Some(first)
    };
    match main {
        Some("SELECT") => !top.contains(&"INTO"),
        Some("VALUES" | "TABLE" | "SHOW" | "EXPLAIN" | "FETCH") => true,
        Some("INSERT" | "UPDATE" | "DELETE" | "MERGE") => top.contains(&"RETURNING"),
        _ => false,
    }
}

/// The words (upper-cased) of each statement, with their parenthesis depth.
fn statements(sql: &str) -> Vec<Vec<(String, usize)>> {
    let chars: Vec<char> = sql.chars().collect();
    let mut statements = vec![Vec::new()];
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                // PostgreSQL's block comments nest.
                let mut nesting = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        nesting += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        nesting -= 1;
                        i += 2;
                        if nesting == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            '\'' => {
                let escapes = i > 0 && matches!(chars[i - 1], 'e' | 'E');
                i = skip_quoted(&chars, i, '\'', escapes);
                continue;
            }
            '"' => {
                i = skip_quoted(&chars, i, '"', false);
                continue;
            }
            '$' => {
                if let Some(end) = skip_dollar_quoted(&chars, i) {
                    i = end;
                    continue;
                }
            }
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ';' => {
                statements.push(Vec::new());
                depth = 0;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$')) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect::<String>().to_uppercase();
                if let Some(statement) = statements.last_mut() {
                    statement.push((word, depth));
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    statements
}

/// The index after a quoted string or name opened at `start`; a doubled quote is a quote,
/// and with `escapes` (PostgreSQL's `E'...'`) a backslash escapes the next character.
fn skip_quoted(chars: &[char], start: usize, quote: char, escapes: bool) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        if escapes && chars[i] == '\\' {
            i += 2;
        } else if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// The index after a `$tag$ ... $tag$` string opened at `start`, if one opens there.
fn skip_dollar_quoted(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    if chars.get(i) != Some(&'$') || chars.get(start + 1).is_some_and(|c| c.is_ascii_digit()) {
        return None; // `$1` is a parameter, not a quote
    }
    let tag: &[char] = &chars[start..=i];
    let mut j = i + 1;
    while j + tag.len() <= chars.len() {
        if &chars[j..j + tag.len()] == tag {
            return Some(j + tag.len());
        }
        j += 1;
    }
    Some(chars.len())
}

#[cfg(test)]
mod tests {
    use super::returns_rows;

    #[test]
    fn statements_that_return_rows() {
        for sql in [
            "SELECT 1",
            "  select * from t -- trailing",
            "/* a /* nested */ comment */ VALUES (1), (2)",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
            "INSERT INTO t VALUES (1) RETURNING id",
            "UPDATE t SET a = 'x;y' WHERE b = $$; DELETE$$ RETURNING a",
            "CREATE TABLE t (a int); INSERT INTO t VALUES (1); SELECT * FROM t;",
            "(SELECT 1) UNION (SELECT 2)",
            "EXPLAIN ANALYZE DELETE FROM t",
            "SHOW search_path",
        ] {
            assert!(returns_rows(sql), "{sql}");
        }
    }

    #[test]
    fn statements_that_do_not() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 'RETURNING'",
            "DELETE FROM t WHERE a IN (SELECT a FROM u RETURNING)",
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
            "SELECT * INTO t2 FROM t",
            "CREATE TABLE \"select\" (a int)",
            "SELECT 1; DROP TABLE t",
            "-- SELECT 1\nTRUNCATE t",
            "",
            E_STRING,
        ] {
            assert!(!returns_rows(sql), "{sql}");
        }
    }

    const E_STRING: &str = r"INSERT INTO t VALUES (E'it\'s; SELECT')";
}
