//! HTTP tasks: one request to the step's connection, as Airflow's `HttpOperator` sends it.
//!
//! The base URL is `schema://host:port` ([`crate::connection::Connection::base_url`]); the
//! endpoint is appended as Airflow's hook does. Basic auth comes from the connection's
//! login and password. `https` is checked against the system's roots and the CA file in
//! `extra.verify` ([`crate::tls`]).
//!
//! Every request has bounds besides the task's `execution_timeout` (which a task need not
//! set): a deadline on the whole exchange (connecting, sending, the answer and its body),
//! the connection's `extra.timeout` or [`DEADLINE`], so a server that accepts and never
//! answers, or dribbles forever, cannot hold a worker slot for good; and a cap on the body
//! read ([`MAX_BODY_BYTES`]), so an endless body cannot exhaust the worker's memory.

use super::{ExecEnv, render};
use crate::connection::Connection;
use crate::task::{TaskError, TaskInput};
use crate::template::TemplateContext;
use serde_json::Value;
use sluice_contract::outputs;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// How long connecting may take, whatever the deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The deadline of one request when its connection sets no `extra.timeout`.
pub const DEADLINE: Duration = Duration::from_secs(300);
/// Larger bodies fail the task: the body becomes an output, stored with the run.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How much of an unexpected response's body the error quotes.
pub(crate) const ERROR_BODY_BYTES: usize = 500;

/// The `http` step of a task, as compiled.
pub(super) struct Request<'a> {
    pub conn: &'a str,
    pub method: &'a str,
    pub endpoint: &'a str,
    pub body: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a str)],
    pub expect_status: &'a [u16],
    pub skip_status: &'a [u16],
    /// A sensor: a status outside `expect_status` is "not yet", not a failure.
    pub sensor: bool,
}

pub(super) async fn run(
    request: Request<'_>,
    input: &TaskInput,
    env: &ExecEnv,
) -> Result<serde_json::Value, TaskError> {
    let conn = input.connection(request.conn)?;
    let base = conn.base_url().map_err(|e| TaskError::new(e.to_string()))?;
    let ctx = TemplateContext::from_input(input, env.variables.clone());
    let endpoint = render(env, input, "the endpoint", request.endpoint, &ctx, None)?;
    let url = url_from_endpoint(&base, &endpoint);
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| TaskError::new(format!("`{}` is not an HTTP method", request.method)))?;

    let mut builder = client(conn)?.request(method.clone(), &url);
    for (name, value) in request.headers {
        builder = builder.header(*name, render(env, input, &format!("header `{name}`"), value, &ctx, None)?);
    }
    if let Some(login) = conn.login.as_deref().filter(|l| !l.is_empty()) {
        builder = builder.basic_auth(login, conn.password.as_deref());
    }
    if let Some(body) = request.body {
        builder = builder.body(render(env, input, "the body", body, &ctx, None)?);
    }

    let bounds = Bounds { deadline: deadline(conn, DEADLINE).map_err(TaskError::new)?, max_body: MAX_BODY_BYTES };
    let log = &input.log;
    log.info(format!("{method} {url}"));
    let Answer { status, body, truncated } = exchange(builder, &format!("{method} {url}"), conn, bounds).await?;
    if truncated {
        return Err(TaskError::new(too_large(&format!("{method} {url}"), MAX_BODY_BYTES)));
    }
    log.info(format!("HTTP {status}, {} bytes", body.len()));

    if request.skip_status.contains(&status) {
        return Err(TaskError::skip(format!(
            "{method} {url} returned status {status}, one of its `skip_status`: skipped"
        )));
    }
    let expected: &[u16] = if request.expect_status.is_empty() { &[200] } else { request.expect_status };
    if !expected.contains(&status) && request.sensor {
        return Err(TaskError::not_ready(format!("{method} {url} returned status {status}: not yet")));
    }
    if !expected.contains(&status) {
        let expected: Vec<String> = expected.iter().map(u16::to_string).collect();
        let text = String::from_utf8_lossy(&body);
        let quoted = if text.trim().is_empty() {
            "the body is empty".to_string()
        } else {
            format!("the body begins: {}", prefix(&text, ERROR_BODY_BYTES))
        };
        return Err(TaskError::new(format!(
            "{method} {url} returned status {status}, expected {}; {quoted}",
            expected.join(" or ")
        )));
    }
    let body = serde_json::from_slice::<serde_json::Value>(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    Ok(serde_json::json!({ outputs::HTTP_STATUS: status, outputs::HTTP_BODY: body }))
}

/// What one request may cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// For the whole exchange: connecting, sending, the answer and its body.
    pub deadline: Duration,
    /// The most of the body that is read.
    pub max_body: usize,
}

/// An answer read within its [`Bounds`].
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    /// At most `max_body` bytes.
    pub body: Vec<u8>,
    /// More followed than `max_body` bytes; it was not read (the connection is dropped).
    pub truncated: bool,
}

/// Sends `request` and reads its answer within `bounds`. `what` (`GET http://...`) and
/// `conn` name the request in errors.
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
    what: &str,
    conn: &Connection,
    bounds: Bounds,
) -> Result<Answer, TaskError> {
    let work = async {
        let mut response =
            request.send().await.map_err(|e| TaskError::new(format!("{what} failed: {}", error_chain(&e))))?;
        let status = response.status().as_u16();
        let mut body: Vec<u8> = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = bounds.max_body - body.len();
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        return Ok(Answer { status, body, truncated: true });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(Answer { status, body, truncated: false }),
                Err(e) => {
                    return Err(TaskError::new(format!(
                        "{what}: reading the response body failed: {}",
                        error_chain(&e)
                    )));
                }
            }
        }
    };
    // Dropping the unfinished exchange closes its connection.
    tokio::time::timeout(bounds.deadline, work)
        .await
        .unwrap_or_else(|_| Err(TaskError::new(past_deadline(what, conn, bounds.deadline))))
}

/// The deadline of a request on `conn`: its `extra.timeout` (seconds, a positive number or
/// a string of one) when set, else `default`.
pub(crate) fn deadline(conn: &Connection, default: Duration) -> Result<Duration, String> {
    let Some(value) = conn.extra.get("timeout").filter(|v| !v.is_null()) else { return Ok(default) };
    let secs = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    secs.filter(|s| s.is_finite() && *s > 0.0).and_then(|s| Duration::try_from_secs_f64(s).ok()).ok_or_else(|| {
        format!("connection `{}`: `extra.timeout` must be a positive number of seconds, not {value}", conn.id)
    })
}

/// The error of a request that outlived its deadline.
pub(crate) fn past_deadline(what: &str, conn: &Connection, deadline: Duration) -> String {
    format!(
        "{what}: no complete answer within the {deadline:?} deadline (set `extra.timeout` on connection `{}` to change it)",
        conn.id
    )
}

/// The error of a body over its cap.
pub(crate) fn too_large(what: &str, max_body: usize) -> String {
    format!("{what} returned a body larger than the {} cap; the rest was not read", size(max_body))
}

/// `16 MiB`, `64 KiB`, `100 bytes`.
fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1024 * 1024 && b % (1024 * 1024) == 0 => format!("{} MiB", b / (1024 * 1024)),
        b if b >= 1024 && b % 1024 == 0 => format!("{} KiB", b / 1024),
        b => format!("{b} bytes"),
    }
}

/// The client for `conn`'s requests. Clients pool connections, so there is one per
/// trust: the system's roots, plus the CA file in the connection's `extra.verify`
/// (Airflow's `HttpHook` option) when it names one.
pub(crate) fn client(conn: &Connection) -> Result<reqwest::Client, TaskError> {
    static CLIENTS: OnceLock<Mutex<HashMap<Option<PathBuf>, reqwest::Client>>> = OnceLock::new();
    let ca_file = verify_ca_file(conn)?;
    let clients = CLIENTS.get_or_init(Mutex::default);
    if let Some(client) = clients.lock().unwrap_or_else(PoisonError::into_inner).get(&ca_file) {
        return Ok(client.clone());
    }
    let client = crate::tls::http_client_builder_trusting(ca_file.as_deref())
        .map_err(|e| TaskError::new(format!("connection `{}`: {e}", conn.id)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| TaskError::new(format!("cannot set up the HTTP client: {}", error_chain(&e))))?;
    clients.lock().unwrap_or_else(PoisonError::into_inner).insert(ca_file, client.clone());
    Ok(client)
}

/// The CA file that `extra.verify` names. `true` (or no key) trusts the system's roots;
/// `false` is refused, since a certificate is always checked.
fn verify_ca_file(conn: &Connection) -> Result<Option<PathBuf>, TaskError> {
    match conn.extra.get("verify") {
        None | Some(Value::Null | Value::Bool(true)) => Ok(None),
        Some(Value::String(path)) if !path.is_empty() => Ok(Some(PathBuf::from(path))),
        Some(Value::Bool(false)) => Err(TaskError::new(format!(
            "connection `{}` sets `extra.verify: false`, and Sluice always checks certificates: \
             name the server's CA file in `extra.verify` instead",
            conn.id
        ))),
        Some(other) => Err(TaskError::new(format!(
            "connection `{}`: `extra.verify` is {other}; give `true` or the path of a CA file (PEM)",
            conn.id
        ))),
    }
}

/// Airflow's `HttpHook.url_from_endpoint`: a `/` between base and endpoint when neither
/// has one.
pub(crate) fn url_from_endpoint(base: &str, endpoint: &str) -> String {
    if !base.ends_with('/') && !endpoint.is_empty() && !endpoint.starts_with('/') {
        format!("{base}/{endpoint}")
    } else {
        format!("{base}{endpoint}")
    }
}

/// The error and its causes ("error sending request: ... : Connection refused").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub(crate) fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(extra: Value) -> Connection {
        let Value::Object(extra) = extra else { panic!("an object") };
        Connection { id: "api".into(), conn_type: "http".into(), extra, ..Connection::default() }
    }

    #[test]
    fn the_deadline_comes_from_extra_timeout_or_the_default() {
        let default = Duration::from_secs(300);
        assert_eq!(deadline(&conn(serde_json::json!({})), default), Ok(default));
        assert_eq!(deadline(&conn(serde_json::json!({"timeout": null})), default), Ok(default));
        assert_eq!(deadline(&conn(serde_json::json!({"timeout": 5})), default), Ok(Duration::from_secs(5)));
        assert_eq!(deadline(&conn(serde_json::json!({"timeout": 0.5})), default), Ok(Duration::from_millis(500)));
        assert_eq!(deadline(&conn(serde_json::json!({"timeout": " 90 "})), default), Ok(Duration::from_secs(90)));
        for bad in [serde_json::json!(0), serde_json::json!(-1), serde_json::json!("soon"), serde_json::json!([1])] {
            let error = deadline(&conn(serde_json::json!({ "timeout": bad })), default).expect_err("refused");
            assert!(error.starts_with("connection `api`: `extra.timeout` must be a positive number"), "{error}");
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(MAX_BODY_BYTES), "16 MiB");
        assert_eq!(size(64 * 1024), "64 KiB");
        assert_eq!(size(1000), "1000 bytes");
        assert_eq!(
            too_large("GET http://h/x", 64 * 1024),
            "GET http://h/x returned a body larger than the 64 KiB cap; the rest was not read"
        );
    }
}
