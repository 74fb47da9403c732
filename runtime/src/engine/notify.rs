//! Delivers the notifications the store queued (see `store::alerts`): a webhook
//! (`http` connection: `POST` of the JSON body to the connection's URL plus its
//! `extra.endpoint`), an email (`smtp` connection, to the task's `email` list), or a JSON
//! line appended to `notifications.jsonl` in a `file` connection's directory.
//!
//! The body names the pipeline, run, task, try, state, logical date and error, with links
//! to the run and the try's log in the REST API under `SLUICE_BASE_URL`. A failed send is
//! retried with backoff, up to [`MAX_ATTEMPTS`] times; what is sent twice (a crash after
//! sending, before recording it) carries the same `id` for receivers to drop.
//!
//! A receiver that stalls can hold back nothing but its own alert: the alerts of a batch
//! are sent at once, each within its deadline ([`SEND_DEADLINE`], or the connection's
//! `extra.timeout` when shorter), and each is recorded as soon as it ends. Of a webhook's
//! answer only the status counts; at most [`ANSWER_BYTES`] of its body are read.

use crate::connection::Connection;
use crate::connection::uri::encode;
use crate::executor::http::{Bounds, deadline, past_deadline};
use crate::registry::Registry;
use crate::resolver::Resolver;
use crate::store::{MAX_ATTEMPTS, NotificationRow, Store};
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;

/// How many notifications one pass claims, and sends at once.
const BATCH: i64 = 20;
/// The longest one send may take, whatever its kind. Below the store's 60 s send lease,
/// so no other process takes an alert over while its first sender still waits on it.
pub const SEND_DEADLINE: Duration = Duration::from_secs(30);
/// How much of a webhook's answer is read: only its status counts, and the start of the
/// body is quoted when the status is not 2xx.
pub const ANSWER_BYTES: usize = 64 * 1024;
/// The wait before the first retry; it doubles with each attempt, up to [`MAX_BACKOFF_SECS`].
const FIRST_BACKOFF_SECS: i64 = 10;
const MAX_BACKOFF_SECS: i64 = 600;
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends due notifications. Cheap to clone; any number may run, in any process.
#[derive(Debug, Clone)]
pub struct Notifier {
    store: Store,
    connections: Resolver,
    /// Where the web server is reached from outside, for links (`SLUICE_BASE_URL`).
    base_url: String,
}

/// `SLUICE_BASE_URL`, else `http://localhost:<webserver port>` (Airflow's
/// `[webserver] base_url`).
pub fn base_url_from_env(registry: &Registry) -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    var("SLUICE_BASE_URL").map_or_else(
        || {
            let port = var(sluice_contract::settings::WEBSERVER_PORT)
                .unwrap_or_else(|| registry.deployment.webserver_port.to_string());
            format!("http://localhost:{port}")
        },
        |url| url.trim_end_matches('/').to_string(),
    )
}

impl Notifier {
    pub fn new(store: Store, connections: Resolver, base_url: impl Into<String>) -> Notifier {
        Notifier { store, connections, base_url: base_url.into() }
    }

    pub fn with_connections(mut self, connections: Resolver) -> Notifier {
        self.connections = connections;
        self
    }

    /// Sends everything due now; returns how many were delivered. Errors of single sends
    /// are recorded on their rows and logged, not returned.
    pub async fn deliver_due(&self) -> usize {
        let mut delivered = 0;
        loop {
            let batch = match self.store.claim_due_notifications(BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!("cannot read pending notifications: {e}");
                    return delivered;
                }
            };
            if batch.is_empty() {
                return delivered;
            }
            let sends = batch.len();
            delivered += futures_util::stream::iter(batch)
                .map(|n| self.deliver(n))
                .buffer_unordered(sends)
                .filter(|sent| std::future::ready(*sent))
                .count()
                .await;
        }
    }

    /// Sends one notification within its deadline and records the result; whether it was
    /// delivered.
    async fn deliver(&self, n: NotificationRow) -> bool {
        let result = self.send(&n).await;
        let sent = result.is_ok();
        let recorded = match result {
            Ok(()) => self.store.notification_sent(n.id).await,
            Err(error) => {
                let retry_at = (n.attempts < MAX_ATTEMPTS).then(|| self.store.now() + backoff_micros(n.attempts));
                let what = if retry_at.is_some() { "will retry" } else { "giving up" };
                tracing::warn!(
                    "notification {} ({} of {}) through `{}` failed, {what}: {error}",
                    n.id,
                    n.event,
                    n.pipeline_id,
                    n.target
                );
                self.store.notification_failed(n.id, &error, retry_at).await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!("cannot record the delivery of notification {}: {e}", n.id);
        }
        sent
    }

    /// The JSON body: the stored payload with its id and links.
    pub fn body(&self, n: &NotificationRow) -> Value {
        let mut body = n.payload.clone();
        if let Value::Object(fields) = &mut body {
            let run_url = format!(
                "{}/api/v1/dags/{}/dagRuns/{}",
                self.base_url,
                encode(&n.pipeline_id, b""),
                encode(&n.run_id, b"")
            );
            let log_url = match (&n.task_id, fields.get("try").and_then(Value::as_i64)) {
                (Some(task), Some(try_number)) => {
                    Value::String(format!("{run_url}/taskInstances/{}/logs/{try_number}", encode(task, b"")))
                }
                _ => Value::Null,
            };
            fields.insert("id".into(), n.id.into());
            fields.insert("run_url".into(), run_url.into());
            fields.insert("log_url".into(), log_url);
        }
        body
    }

    /// One attempt, within [`send_deadline`] of its connection.
    async fn send(&self, n: &NotificationRow) -> Result<(), String> {
        let conn = self.connections.resolve(&n.target)?;
        let limit = send_deadline(&conn)?;
        let body = self.body(n);
        let attempt = async {
            match conn.conn_type.as_str() {
                "http" => {
                    let endpoint = conn.extra.get("endpoint").and_then(Value::as_str).unwrap_or_default();
                    let bounds = Bounds { deadline: limit, max_body: ANSWER_BYTES };
                    crate::io::post_bounded(&conn, endpoint, &body, bounds).await.map_err(|e| e.message)
                }
                "smtp" => send_email(&conn, &n.recipients, &subject(n), &email_text(&body)).await,
                "file" => append_line(&conn, &body).await,
                other => Err(format!("connection `{}` is of type {other}; notify through http, smtp or file", conn.id)),
            }
        };
        let what = format!("notifying through `{}`", conn.id);
        tokio::time::timeout(limit, attempt).await.unwrap_or_else(|_| Err(past_deadline(&what, &conn, limit)))
    }
}

/// How long one send through `conn` may take: [`SEND_DEADLINE`], or the connection's
/// `extra.timeout` when shorter.
fn send_deadline(conn: &Connection) -> Result<Duration, String> {
    deadline(conn, SEND_DEADLINE).map(|d| d.min(SEND_DEADLINE))
}

fn backoff_micros(attempts: i64) -> i64 {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    FIRST_BACKOFF_SECS.saturating_mul(1 << exponent).min(MAX_BACKOFF_SECS) * 1_000_000
}

/// `[sluice] sports_data_scraper.load failed (try 3)`, `[sluice] run … of … failed`.
fn subject(n: &NotificationRow) -> String {
    let state = n.payload.get("state").and_then(Value::as_str).unwrap_or(&n.event);
    match (&n.task_id, n.event.as_str()) {
        (Some(task), "sla_miss") => format!("[sluice] SLA missed: {}.{task}", n.pipeline_id),
        (Some(task), _) => {
            let try_number = n.payload.get("try").and_then(Value::as_i64).unwrap_or(0);
            format!("[sluice] {}.{task} {state} (try {try_number})", n.pipeline_id)
        }
        (None, _) => format!("[sluice] run {} of {} {state}", n.run_id, n.pipeline_id),
    }
}

/// One `key: value` line per field of the body.
fn email_text(body: &Value) -> String {
    let Value::Object(fields) = body else { return body.to_string() };
    fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}: {s}\n"),
            other => format!("{k}: {other}\n"),
        })
        .collect()
}

/// Sends through the SMTP connection, secured as Airflow's SMTP hook does it: implicit TLS,
/// or STARTTLS with `extra.disable_ssl`, or neither with `extra.disable_tls` as well (a
/// relay on the private network), and then never with a login. Certificates are checked
/// against the system's roots and the CA file in `extra.ssl_ca_certs`. `extra.from` is
/// the sender.
async fn send_email(conn: &Connection, recipients: &[String], subject: &str, text: &str) -> Result<(), String> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::{AsyncTransport, Message};

    let from = conn.extra.get("from").and_then(Value::as_str).unwrap_or("sluice@localhost");
    let mailbox = |address: &str| -> Result<Mailbox, String> {
        address.parse().map_err(|e| format!("`{address}` is not an email address: {e}"))
    };
    let mut message = Message::builder().from(mailbox(from)?).subject(subject).header(ContentType::TEXT_PLAIN);
    if recipients.is_empty() {
        return Err("no recipients: set `email:` on the task or the pipeline's `default_args`".into());
    }
    for to in recipients {
        message = message.to(mailbox(to)?);
    }
    let message = message.body(text.to_string()).map_err(|e| format!("cannot build the email: {e}"))?;
    let (transport, address) = smtp_transport(conn)?;
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("sending email through {address} failed: {}", crate::executor::http::error_chain(&e)))
}

/// The SMTP transport of `conn` (see [`send_email`]) and the `host:port` it talks to.
pub(crate) fn smtp_transport(
    conn: &Connection,
) -> Result<(lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String), String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, Tokio1Executor};

    let host = conn
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("smtp connection `{}` has no host", conn.id))?;
    let port = conn.port.unwrap_or(25);
    let login = conn.login.as_deref().filter(|l| !l.is_empty());
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .timeout(Some(SMTP_TIMEOUT))
        .tls(smtp_tls(conn, host, login.is_some())?);
    if let Some(login) = login {
        transport = transport.credentials(Credentials::new(login.into(), conn.password.clone().unwrap_or_default()));
    }
    Ok((transport.build(), format!("{host}:{port}")))
}

/// How the SMTP connection is secured (see [`send_email`]).
fn smtp_tls(conn: &Connection, host: &str, has_login: bool) -> Result<lettre::transport::smtp::client::Tls, String> {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let flag = |key: &str| conn.extra.get(key).and_then(Value::as_bool).unwrap_or(false);
    let (disable_ssl, disable_tls) = (flag("disable_ssl"), flag("disable_tls"));
    if disable_ssl && disable_tls {
        if has_login {
            return Err(format!(
                "smtp connection `{}` would send its login in clear (`disable_ssl` and `disable_tls` are both set): \
                 drop `disable_tls` to use STARTTLS, or the login",
                conn.id
            ));
        }
        return Ok(Tls::None);
    }
    crate::tls::provider();
    let mut parameters = TlsParameters::builder(host.to_string());
    if let Some(path) = conn.extra.get("ssl_ca_certs").and_then(Value::as_str).filter(|p| !p.is_empty()) {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read the CA file {path}: {e}"))?;
        let ca =
            Certificate::from_pem(&pem).map_err(|e| format!("the CA file {path} holds no usable certificate: {e}"))?;
        parameters = parameters.add_root_certificate(ca);
    }
    let parameters = parameters.build_rustls().map_err(|e| format!("cannot set up TLS for {host}: {e}"))?;
    Ok(if disable_ssl { Tls::Required(parameters) } else { Tls::Wrapper(parameters) })
}

/// Appends the body as one line to `notifications.jsonl` in the connection's directory.
async fn append_line(conn: &Connection, body: &Value) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let dir = crate::io::directory(conn).map_err(|e| e.message)?;
    tokio::fs::create_dir_all(dir).await.map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("notifications.jsonl");
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.write_all(format!("{body}\n").as_bytes())
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // tokio's File writes in the background: without a flush the line may land after the
    // notification is reported sent (or not at all if the process ends).
    file.flush().await.map_err(|e| format!("cannot write {}: {e}", path.display()))
}
