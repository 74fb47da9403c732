//! Data access for Rust task bodies, through the connections a task declares.
//!
//! The same body works against real services and in standalone mode, where a connection
//! may resolve to a stand-in (its `standalone:` URI): an http data source to a local
//! directory (`file`), a postgres database to a SQLite file.
//!
//! | helper | file | http | postgres / sqlite |
//! |---|---|---|---|
//! | [`read_text`] | reads `<dir>/<path>` | `GET <base_url>/<path>` | — |
//! | [`post_json`] | — | `POST <base_url>/<path>`, JSON in and out | — |
//! | [`sql_execute`], [`sql_query_json`] | — | — | the SQL, unprepared (PgBouncer-safe) |

use crate::executor::http::{
    Answer, Bounds, DEADLINE, ERROR_BODY_BYTES, MAX_BODY_BYTES, client, deadline, exchange, prefix, too_large,
    url_from_endpoint,
};
use crate::task::{Connection, TaskError};
use serde_json::Value;
use std::path::{Component, Path};

/// The text of `path` from a data source: a file under a `file` connection's directory, or
/// the body of `GET <base_url>/<path>` on an http connection (a status other than 2xx is an
/// error). `path` is relative and may not climb out of the directory (`..`). An http
/// request has the bounds of an http task's: the connection's `extra.timeout` (default
/// 300 s) for the whole exchange, and a 16 MiB body.
pub async fn read_text(conn: &Connection, path: &str) -> Result<String, TaskError> {
    match conn.conn_type.as_str() {
        "file" => {
            let file = file_path(conn, path)?;
            tokio::fs::read_to_string(&file)
                .await
                .map_err(|e| TaskError::new(format!("cannot read {} (connection `{}`): {e}", file.display(), conn.id)))
        }
        "http" => {
            let url = http_url(conn, path)?;
            let request = client(conn)?.get(&url);
            let (status, body) = send(conn, authorized(conn, request), "GET", &url).await?;
            expect_success("GET", &url, status, &body)?;
            Ok(body)
        }
        other => Err(TaskError::new(format!(
            "connection `{}` is of type {other}; reading data needs a file or http connection",
            conn.id
        ))),
    }
}

/// `POST <base_url>/<path>` with a JSON body on an http connection; the response as JSON
/// (`null` when empty). A status other than 2xx is an error quoting the start of the body.
/// Bounded as [`read_text`] is.
pub async fn post_json(conn: &Connection, path: &str, body: &Value) -> Result<Value, TaskError> {
    let (url, request) = post_request(conn, path, body)?;
    let (status, text) = send(conn, request, "POST", &url).await?;
    expect_success("POST", &url, status, &text)?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| TaskError::new(format!("POST {url} returned a body that is not JSON: {e}")))
}

/// Runs SQL (one statement or a `;`-separated script, as one implicit transaction) on a
/// postgres or sqlite connection; returns the rows changed (or returned). Sent unprepared
/// (`raw_sql`), so it is correct behind PgBouncer in transaction mode; values must be
/// written into the text (quote strings with [`sql_quote`]).
pub async fn sql_execute(conn: &Connection, statements: &str) -> Result<u64, TaskError> {
    crate::executor::sql::execute(None, conn, statements).await.map(|r| r.affected)
}

/// Runs a query on a postgres or sqlite connection; each row as a `{column: value}` object.
pub async fn sql_query_json(conn: &Connection, sql: &str) -> Result<Vec<Value>, TaskError> {
    crate::executor::sql::execute(None, conn, sql).await.map(|r| r.rows)
}

/// `text` as a SQL string literal: in single quotes, quotes doubled (standard SQL, as both
/// PostgreSQL with `standard_conforming_strings` and SQLite read it).
pub fn sql_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Where task bodies keep local files: `SLUICE_HOME` (default `./sluice-data`), the folder
/// of the standalone store. In distributed mode every worker must see the same folder (a
/// shared volume) for one task to read what another wrote.
pub fn home_dir() -> std::path::PathBuf {
    std::env::var(sluice_contract::settings::HOME)
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sluice-data".into())
        .into()
}

/// The directory of a `file` connection.
pub fn directory(conn: &Connection) -> Result<&Path, TaskError> {
    conn.database
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(Path::new)
        .ok_or_else(|| TaskError::new(format!("file connection `{}` names no directory", conn.id)))
}

/// `path` under a `file` connection's directory; `..`, absolute paths and prefixes are
/// refused so a path from data cannot read outside it.
pub fn file_path(conn: &Connection, path: &str) -> Result<std::path::PathBuf, TaskError> {
    let relative = Path::new(path);
    if !relative.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(TaskError::new(format!("`{path}` must be a relative path inside connection `{}`", conn.id)));
    }
    Ok(directory(conn)?.join(relative))
}

fn http_url(conn: &Connection, path: &str) -> Result<String, TaskError> {
    let base = conn.base_url().map_err(|e| TaskError::new(e.to_string()))?;
    Ok(url_from_endpoint(&base, path))
}

/// Basic auth from login/password, else a bearer token from `extra.token`.
fn authorized(conn: &Connection, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    if let Some(login) = conn.login.as_deref().filter(|l| !l.is_empty()) {
        request.basic_auth(login, conn.password.as_deref())
    } else if let Some(token) = conn.extra.get("token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        request.bearer_auth(token)
    } else {
        request
    }
}

/// `POST <base_url>/<path>` of `body` within `bounds`, for alerts: the answer as read, a
/// body over the cap cut (only the status counts; the body is quoted in errors). A status
/// other than 2xx is an error.
pub(crate) async fn post_bounded(conn: &Connection, path: &str, body: &Value, bounds: Bounds) -> Result<(), TaskError> {
    let (url, request) = post_request(conn, path, body)?;
    let answer = exchange(request, &format!("POST {url}"), conn, bounds).await?;
    expect_success("POST", &url, answer.status, &String::from_utf8_lossy(&answer.body))
}

/// The URL and the authorized request of a JSON `POST` on an http connection.
fn post_request(conn: &Connection, path: &str, body: &Value) -> Result<(String, reqwest::RequestBuilder), TaskError> {
    if conn.conn_type != "http" {
        return Err(TaskError::new(format!(
            "connection `{}` is of type {}; posting JSON needs an http connection",
            conn.id, conn.conn_type
        )));
    }
    let url = http_url(conn, path)?;
    let request = authorized(conn, client(conn)?.post(&url).json(body));
    Ok((url, request))
}

/// Sends a task's request within the bounds of an http task's; the body as text.
async fn send(
    conn: &Connection,
    request: reqwest::RequestBuilder,
    method: &str,
    url: &str,
) -> Result<(u16, String), TaskError> {
    let what = format!("{method} {url}");
    let bounds = Bounds { deadline: deadline(conn, DEADLINE).map_err(TaskError::new)?, max_body: MAX_BODY_BYTES };
    let Answer { status, body, truncated } = exchange(request, &what, conn, bounds).await?;
    if truncated {
        return Err(TaskError::new(too_large(&what, MAX_BODY_BYTES)));
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn expect_success(method: &str, url: &str, status: u16, body: &str) -> Result<(), TaskError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    Err(TaskError::new(format!(
        "{method} {url} returned status {status}; the body begins: {}",
        prefix(body, ERROR_BODY_BYTES)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn conn(conn_type: &str, database: Option<String>) -> Connection {
        Connection { id: "c".into(), conn_type: conn_type.into(), database, ..Connection::default() }
    }

    #[tokio::test]
    async fn reads_files_inside_the_directory_only() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("a.csv"), "x,y\n").expect("write");
        let feed = conn("file", Some(dir.path().display().to_string()));
        assert_eq!(read_text(&feed, "a.csv").await.map_err(|e| e.message), Ok("x,y\n".to_string()));
        assert!(read_text(&feed, "../a.csv").await.is_err());
        assert!(read_text(&feed, "/etc/passwd").await.is_err());
        assert!(read_text(&feed, "missing.csv").await.expect_err("no such file").message.contains("missing.csv"));
    }

    #[tokio::test]
    async fn sqlite_round_trip() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = conn("sqlite", Some(dir.path().join("sub/t.sqlite").display().to_string()));
        let script = "CREATE TABLE t (k TEXT PRIMARY KEY, v REAL); INSERT INTO t VALUES ('a', 1.5), ('b', 2) \
                      ON CONFLICT (k) DO UPDATE SET v = excluded.v";
        assert_eq!(sql_execute(&db, script).await.map_err(|e| e.message), Ok(2));
        let upsert =
            format!("INSERT INTO t VALUES ({}, 3) ON CONFLICT (k) DO UPDATE SET v = excluded.v", sql_quote("a"));
        sql_execute(&db, &upsert).await.expect("upsert");
        let rows = sql_query_json(&db, "SELECT k, v FROM t ORDER BY k").await.expect("query");
        assert_eq!(rows, vec![serde_json::json!({"k": "a", "v": 3.0}), serde_json::json!({"k": "b", "v": 2.0})]);
        assert_eq!(sql_quote("it's"), "'it''s'");
    }

    /// A one-request HTTP server answering `status` and `body`; returns the request it saw.
    async fn serve_once(status: u16, body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 8192];
            let n = socket.read(&mut buf).await.expect("read");
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            socket.write_all(reply.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (format!("{port}"), handle)
    }

    fn http(port: &str) -> Connection {
        Connection {
            id: "api".into(),
            conn_type: "http".into(),
            host: Some("127.0.0.1".into()),
            port: port.parse().ok(),
            ..Connection::default()
        }
    }

    #[tokio::test]
    async fn posts_json_and_reports_failures() {
        let (port, server) = serve_once(200, r#"{"ok": true}"#).await;
        let answer = post_json(&http(&port), "/api/x", &serde_json::json!({"name": "m"})).await.expect("posted");
        assert_eq!(answer, serde_json::json!({"ok": true}));
        let request = server.await.expect("server");
        assert!(request.starts_with("POST /api/x HTTP/1.1"), "{request}");
        assert!(request.ends_with(r#"{"name":"m"}"#), "{request}");

        let (port, _server) = serve_once(404, "no such thing").await;
        let err = read_text(&http(&port), "nfl.csv").await.expect_err("a 404");
        assert!(err.message.contains("status 404") && err.message.contains("no such thing"), "{}", err.message);
    }
}
