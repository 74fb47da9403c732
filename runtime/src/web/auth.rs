//! Who is calling, and what they may do: HTTP basic auth against the users table
//! (argon2 hashes), and Airflow's roles in increasing power: Viewer reads; User also
//! triggers, pauses, clears and marks; Op also manages connections, variables and pools;
//! Admin also manages users.

use super::AppState;
use super::problem::Problem;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use base64::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    User,
    Op,
    Admin,
}

impl Role {
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "Viewer" => Some(Role::Viewer),
            "User" => Some(Role::User),
            "Op" => Some(Role::Op),
            "Admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub role: Role,
}

impl Caller {
    /// Forbids the request unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), Problem> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "user `{}` has role {:?}; this needs {role:?} or above",
                self.username, self.role
            )))
        }
    }
}

fn too_many(wait: std::time::Duration, what: &str) -> Problem {
    let secs = wait.as_secs().max(1);
    Problem::new(StatusCode::TOO_MANY_REQUESTS, format!("{what}; try again in {secs} s"))
        .with_header(header::RETRY_AFTER, &secs.to_string())
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, detail).with_header(header::WWW_AUTHENTICATE, r#"Basic realm="Sluice""#)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Problem> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        // A signed-in browser: its session, and for changes the CSRF token in a header. A
        // session that has ended is no caller: the request is anonymous.
        if header.is_none()
            && let Some(session) = state.sessions.from_headers(&parts.headers)
        {
            let reads = matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD);
            let token = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !reads && !session.csrf_matches(token) {
                return Err(Problem::forbidden(
                    "a session request that changes something needs the X-CSRF-Token header",
                ));
            }
            if let Some(session) = state.sessions.confirm(&state.store, session).await? {
                return Ok(Caller { role: session.role(), username: session.username });
            }
            return Err(unauthorized("your session has ended: sign in again"));
        }
        let Some(encoded) = header.and_then(|h| h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic "))) else {
            return Err(unauthorized("authentication required: use HTTP basic auth with a Sluice user"));
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let Some((username, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return Err(unauthorized("malformed basic auth header"));
        };
        let failures = format!("login-failures:{}", client_address(parts));
        // Counted as a failure before the hash is checked, and forgiven when it matches:
        // concurrent guesses cannot all pass a check made before any of them failed.
        if let Err(wait) = state.limiter.hit(&failures, state.limiter.login).await {
            return Err(too_many(wait, "too many failed logins from this address"));
        }
        let Some(account) = state.store.authenticate(username, password).await? else {
            return Err(unauthorized("invalid username or password"));
        };
        state.limiter.forgive(&failures, state.limiter.login).await;
        if let Err(wait) = state.limiter.hit(&format!("api:{username}"), state.limiter.api).await {
            return Err(too_many(wait, "too many requests for this user"));
        }
        Ok(Caller { username: username.to_string(), role: Role::parse(&account.role).unwrap_or(Role::Viewer) })
    }
}

/// The client's address, the key its failed logins are counted under.
pub fn client_address(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "local".to_string(), |c| c.0.ip().to_string())
}
