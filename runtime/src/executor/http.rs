//! HTTP tasks: one request to the step's connection, as Airflow's `HttpOperator` sends it.
//!
//! The base URL is `schema://host:port` ([`crate::connection::Connection::base_url`]); the
//! endpoint is appended as Airflow's hook does. Basic auth comes from the connection's
//! login and password. This build speaks plain HTTP only (reqwest without a TLS backend).

use super::{ExecEnv, render};
use crate::task::{TaskError, TaskInput};
use crate::template::TemplateContext;
use std::sync::OnceLock;
use std::time::Duration;

/// How long connecting may take, whatever the task's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Larger bodies fail the task: the body becomes an output, stored with the run.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
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
}

pub(super) async fn run(
    request: Request<'_>,
    input: &TaskInput,
    env: &ExecEnv,
) -> Result<serde_json::Value, TaskError> {
    let conn = input.connection(request.conn)?;
    let base = conn.base_url().map_err(|e| TaskError::new(e.to_string()))?;
    if base.to_ascii_lowercase().starts_with("https://") {
        return Err(TaskError::new(format!(
            "connection `{}` uses https, which this build cannot speak (it has no TLS support): use http, or a TLS-terminating proxy",
            conn.id
        )));
    }
    let ctx = TemplateContext::from_input(input, env.variables.clone());
    let endpoint = render(env, input, "the endpoint", request.endpoint, &ctx, None)?;
    let url = url_from_endpoint(&base, &endpoint);
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| TaskError::new(format!("`{}` is not an HTTP method", request.method)))?;

    let mut builder = client()?.request(method.clone(), &url);
    for (name, value) in request.headers {
        builder = builder.header(*name, render(env, input, &format!("header `{name}`"), value, &ctx, None)?);
    }
    if let Some(login) = conn.login.as_deref().filter(|l| !l.is_empty()) {
        builder = builder.basic_auth(login, conn.password.as_deref());
    }
    if let Some(body) = request.body {
        builder = builder.body(render(env, input, "the body", body, &ctx, None)?);
    }

    let log = &input.log;
    log.info(format!("{method} {url}"));
    let mut response =
        builder.send().await.map_err(|e| TaskError::new(format!("{method} {url} failed: {}", error_chain(&e))))?;
    let status = response.status().as_u16();
    let mut body: Vec<u8> = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(TaskError::new(format!(
                        "{method} {url} returned a body larger than {} MiB",
                        MAX_BODY_BYTES / (1024 * 1024)
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(TaskError::new(format!(
                    "{method} {url}: reading the response body failed: {}",
                    error_chain(&e)
                )));
            }
        }
    }
    log.info(format!("HTTP {status}, {} bytes", body.len()));

    let expected: &[u16] = if request.expect_status.is_empty() { &[200] } else { request.expect_status };
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
    Ok(serde_json::json!({ "status": status, "body": body }))
}

/// One client for every request: it pools connections.
pub(crate) fn client() -> Result<&'static reqwest::Client, TaskError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| TaskError::new(format!("cannot set up the HTTP client: {}", error_chain(&e))))?;
    Ok(CLIENT.get_or_init(|| client))
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
