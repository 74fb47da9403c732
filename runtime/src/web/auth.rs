//! Who is calling, and what they may do: HTTP basic auth against the users table
//! (argon2 hashes), and Airflow's roles in increasing power: Viewer reads; User also
//! triggers, pauses, clears and marks; Op also manages connections, variables and pools;
//! Admin also manages users.

use super::AppState;
use super::problem::Problem;
use axum::extract::FromRequestParts;
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

fn unauthorized(detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, detail).with_header(header::WWW_AUTHENTICATE, r#"Basic realm="Sluice""#)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Problem> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
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
        match state.store.authenticate(username, password).await? {
            Some(role) => {
                Ok(Caller { username: username.to_string(), role: Role::parse(&role).unwrap_or(Role::Viewer) })
            }
            None => Err(unauthorized("invalid username or password")),
        }
    }
}
