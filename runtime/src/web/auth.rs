//! Who is calling, and what they may do: HTTP basic auth against the users table
//! (argon2 hashes), and Airflow's roles in increasing power: Viewer reads; User also
//! triggers, pauses, clears and marks; Op also manages connections, variables and pools;
//! Admin also manages users.
//!
//! An API handler takes a [`Caller`]; a UI handler states what it needs in its signature:
//! [`SignedIn<R>`] for a page, [`CsrfForm<R, F>`] for a form post, `R` the least role.
//! A refused page request never reaches the handler.

use super::AppState;
use super::problem::{Problem, store_failure};
use super::session::Session;
use crate::store::{Actor, Store, StoreError, Surface};
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

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
    /// The client's address, for the audit log.
    pub from: String,
}

impl Caller {
    /// The store, recording the changes it makes as this caller's (through the API).
    pub fn store(&self, state: &AppState) -> Store {
        state.store.acting_as(Actor::new(&self.username, Surface::Api, &self.from))
    }

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
                return Ok(Caller { role: session.role(), username: session.username, from: client_address(parts) });
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
        Ok(Caller {
            username: username.to_string(),
            role: Role::parse(&account.role).unwrap_or(Role::Viewer),
            from: client_address(parts),
        })
    }
}

/// The client's address, the key its failed logins are counted under.
pub fn client_address(parts: &Parts) -> String {
    client_address_of(&parts.extensions)
}

fn client_address_of(extensions: &axum::http::Extensions) -> String {
    extensions.get::<ConnectInfo<std::net::SocketAddr>>().map_or_else(|| "local".to_string(), |c| c.0.ip().to_string())
}

/// The least role a UI page or form needs, named as a type: `SignedIn<Op>`.
pub trait MinRole {
    const ROLE: Role;
}

/// Any signed-in user.
#[derive(Debug)]
pub enum Viewer {}

#[derive(Debug)]
pub enum User {}

#[derive(Debug)]
pub enum Op {}

#[derive(Debug)]
pub enum Admin {}

impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}

impl MinRole for User {
    const ROLE: Role = Role::User;
}

impl MinRole for Op {
    const ROLE: Role = Role::Op;
}

impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// Why a UI request is not served.
#[derive(Debug)]
pub enum Refused {
    /// Not signed in, or the session has ended: to the login page.
    SignIn,
    /// A role too weak, or a form without its session's CSRF token.
    Forbidden(String),
    /// The users table could not be read.
    Store(StoreError),
    /// The form body could not be read.
    Form(FormRejection),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn => Redirect::to("/login").into_response(),
            Refused::Forbidden(why) => (StatusCode::FORBIDDEN, why).into_response(),
            Refused::Store(e) => store_failure(e).into_response(),
            Refused::Form(e) => e.into_response(),
        }
    }
}

/// The signed-in user of a UI request, their role from the users table and at least
/// `R`; derefs to their [`Session`].
#[derive(Debug)]
pub struct SignedIn<R = Viewer> {
    session: Session,
    role: PhantomData<R>,
}

impl<R: MinRole> SignedIn<R> {
    /// `session`, confirmed against the users table, if its role is at least `R`.
    fn at_least(session: Session, refusal: impl FnOnce(&Session) -> String) -> Result<SignedIn<R>, Refused> {
        if session.role() < R::ROLE {
            return Err(Refused::Forbidden(refusal(&session)));
        }
        Ok(SignedIn { session, role: PhantomData })
    }
}

impl<R> std::ops::Deref for SignedIn<R> {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl<R: MinRole> FromRequestParts<AppState> for SignedIn<R> {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<SignedIn<R>, Refused> {
        let session = state.sessions.signed_in(&state.store, &parts.headers).await.map_err(Refused::Store)?;
        let session = session.ok_or(Refused::SignIn)?;
        SignedIn::at_least(session, |s| format!("this page needs the {:?} role; yours is {}", R::ROLE, s.role))
    }
}

/// A form without fields of its own (a delete or action button): only its CSRF token.
#[derive(Debug, Deserialize)]
pub struct NoFields {}

/// A posted UI form: its fields `F`, sent with the CSRF token of the session of a user
/// whose role is at least `R`. Every UI route that changes something takes one, so none
/// can skip the token or the role.
#[derive(Debug)]
pub struct CsrfForm<R, F = NoFields> {
    pub session: SignedIn<R>,
    pub form: F,
    /// The store, recording the changes it makes in the audit log as this form's
    /// sender's, from the client's address.
    pub store: Store,
}

/// A form body as posted: the token beside the form's own fields.
#[derive(Deserialize)]
struct Posted<F> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: F,
}

impl<R: MinRole, F: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<R, F> {
    type Rejection = Refused;

    async fn from_request(request: Request, state: &AppState) -> Result<CsrfForm<R, F>, Refused> {
        let session = state.sessions.from_headers(request.headers());
        let from = client_address_of(request.extensions());
        let Form(posted) = Form::<Posted<F>>::from_request(request, state).await.map_err(Refused::Form)?;
        let session = session.ok_or(Refused::SignIn)?;
        // The token before the users table: a forged request costs no database read.
        if !session.csrf_matches(&posted.csrf) {
            return Err(Refused::Forbidden("the form's CSRF token is missing or stale: reload the page".into()));
        }
        let session = state.sessions.confirm(&state.store, session).await.map_err(Refused::Store)?;
        let session = session.ok_or(Refused::SignIn)?;
        let session = SignedIn::at_least(session, |s| format!("your role {} cannot do this", s.role))?;
        let store = state.store.acting_as(Actor::new(&session.username, Surface::Ui, from));
        Ok(CsrfForm { session, form: posted.form, store })
    }
}
