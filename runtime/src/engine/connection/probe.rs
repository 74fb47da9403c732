//! Testing a connection (the API's `connections/test` and the UI's Test button): reach the
//! system it names the way a task would, and say what answered. Off unless
//! `SLUICE_TEST_CONNECTION=Enabled`, as Airflow's `[core] test_connection`: a probe makes
//! the webserver reach any host a caller names.

use super::Connection;
use std::time::Duration;

/// The variable that enables connection tests.
pub const TEST_CONNECTION: &str = "SLUICE_TEST_CONNECTION";

/// How long a probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether connection tests are enabled: `Enabled` (any case); unset or `Disabled` is
/// off, as in Airflow.
pub fn tests_enabled(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("enabled"))
}

/// Reaches `conn`: what answered, or why nothing did. The message never holds a secret.
pub async fn probe(conn: &Connection) -> Result<String, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, reach(conn)).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("connection `{}`: no answer within {} s", conn.id, PROBE_TIMEOUT.as_secs())),
    }
}

async fn reach(conn: &Connection) -> Result<String, String> {
    match conn.conn_type.as_str() {
        "postgres" | "sqlite" => {
            crate::executor::sql::execute(None, conn, "SELECT 1").await.map_err(|e| e.to_string())?;
            Ok(format!("connected to `{}` and ran SELECT 1", conn.id))
        }
        "http" => {
            let url = conn.base_url().map_err(|e| e.to_string())?;
            let client = crate::executor::http::client(conn).map_err(|e| e.to_string())?;
            let mut request = client.get(&url);
            if let Some(login) = conn.login.as_deref().filter(|l| !l.is_empty()) {
                request = request.basic_auth(login, conn.password.as_deref());
            }
            let response = request
                .send()
                .await
                .map_err(|e| format!("GET {url} failed: {}", crate::executor::http::error_chain(&e)))?;
            let status = response.status();
            if status.is_client_error() || status.is_server_error() {
                return Err(format!("GET {url} answered {status}"));
            }
            Ok(format!("GET {url} answered {status}"))
        }
        "redis" => {
            let client = crate::tls::redis_client(&conn.uri())?;
            let mut link = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| format!("cannot connect to `{}`: {e}", conn.id))?;
            let pong: String = redis::cmd("PING")
                .query_async(&mut link)
                .await
                .map_err(|e| format!("`{}` did not answer PING: {e}", conn.id))?;
            Ok(format!("`{}` answered PING with {pong}", conn.id))
        }
        "smtp" => {
            let (transport, address) = crate::notify::smtp_transport(conn)?;
            match transport.test_connection().await {
                Ok(true) => Ok(format!("the SMTP server at {address} answered")),
                Ok(false) => Err(format!("the SMTP server at {address} did not accept a connection")),
                Err(e) => Err(format!("cannot reach {address}: {}", crate::executor::http::error_chain(&e))),
            }
        }
        "file" => {
            let dir = conn.database.as_deref().unwrap_or_default();
            match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => Ok(format!("`{dir}` is a directory")),
                Ok(_) => Err(format!("`{dir}` is not a directory")),
                Err(e) => Err(format!("cannot read `{dir}`: {e}")),
            }
        }
        other => Err(format!("connections of type `{other}` cannot be tested")),
    }
}
