//! Browser sessions: after a form login, a cookie holding the user, their session stamp
//! and a CSRF token, sealed with Fernet under a key derived from the session key
//! (`SLUICE_SECRET_KEY`, shared by every web server of a deployment). The cookie is
//! `HttpOnly` and `SameSite=Lax`; every form carries the CSRF token and every POST is
//! refused without it.
//!
//! The cookie proves who signed in, not what they may do: each request reads the user's
//! row ([`Store::account`]) and takes the role from there, and a cookie whose stamp is not
//! the row's any more (role changed, password reset, signed out) or whose user is gone is
//! no session at all.
//!
//! The login form has a CSRF token of its own, before any session exists: a random token
//! in the form and, sealed, in a short-lived cookie (a signed double submit), so another
//! site cannot sign a browser in under an account of its choosing.

use super::auth::Role;
use crate::crypto::same_secret;
use crate::store::{Account, Store, StoreError};
use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use axum::http::HeaderMap;
use axum::http::header;
use base64::Engine;
use serde::{Deserialize, Serialize};

pub const COOKIE: &str = "sluice_session";
/// How long a session lasts.
const TTL_SECS: u64 = 12 * 3600;
/// The login form's token cookie.
pub const LOGIN_COOKIE: &str = "sluice_login";
/// How long a login form may stay open before it must be reloaded.
const LOGIN_TTL_SECS: u64 = 3600;

/// A session: what its cookie holds, and the role read from the users table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "u")]
    pub username: String,
    /// The user's session stamp when they signed in; required, so a cookie made before
    /// stamps existed is no session.
    #[serde(rename = "s")]
    pub stamp: i64,
    /// The token forms must echo back.
    #[serde(rename = "c")]
    pub csrf: String,
    /// Signed in with a well-known default password: every page says to change it.
    #[serde(rename = "d", default)]
    pub default_password: bool,
    /// The user's role now, from the users table; never read from the cookie.
    #[serde(skip)]
    pub role: String,
}

impl Session {
    /// The session of `username`, signed in just now as `account`.
    pub fn new(username: &str, account: &Account) -> Session {
        Session {
            username: username.to_string(),
            stamp: account.session_stamp,
            csrf: random_token(),
            default_password: false,
            role: account.role.clone(),
        }
    }

    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Viewer)
    }

    /// Whether `token` (from a form or the `X-CSRF-Token` header) is this session's.
    pub fn csrf_matches(&self, token: &str) -> bool {
        !token.is_empty() && same_secret(token.as_bytes(), self.csrf.as_bytes())
    }
}

/// The role `session` has now: its user's, when the user is active and the stamp the
/// session was made under is still theirs; `None` when the session has ended.
pub fn current_role(session: &Session, account: Option<&Account>) -> Option<String> {
    let account = account?;
    same_secret(&session.stamp.to_be_bytes(), &account.session_stamp.to_be_bytes()).then(|| account.role.clone())
}

/// 16 random bytes in hex.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in a request.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

/// Seals and opens session cookies.
#[derive(Clone)]
pub struct Sessions {
    fernet: std::sync::Arc<fernet::Fernet>,
    /// Whether the cookie is marked `Secure` (the site is served over https).
    secure: bool,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("secure", &self.secure).finish_non_exhaustive()
    }
}

impl Sessions {
    /// Keys derived from `secret` (any text; argon2 stretches it), or a random key when
    /// there is none.
    pub fn new(secret: Option<&str>, secure: bool) -> Sessions {
        let mut key = [0u8; 32];
        match secret.filter(|s| !s.is_empty()) {
            Some(secret) => {
                if Argon2::default().hash_password_into(secret.as_bytes(), b"sluice-session-cookies", &mut key).is_err()
                {
                    OsRng.fill_bytes(&mut key);
                }
            }
            None => OsRng.fill_bytes(&mut key),
        }
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(key);
        let fernet = fernet::Fernet::new(&encoded).unwrap_or_else(|| {
            // A 32-byte url-safe key is always valid; keep a working (random) one regardless.
            fernet::Fernet::new(&fernet::Fernet::generate_key()).expect("a generated key is valid")
        });
        Sessions { fernet: std::sync::Arc::new(fernet), secure }
    }

    /// The `Set-Cookie` value that starts `session`.
    pub fn cookie(&self, session: &Session) -> String {
        let token = self.fernet.encrypt(serde_json::to_string(session).unwrap_or_default().as_bytes());
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={TTL_SECS}{secure}")
    }

    /// The `Set-Cookie` value that ends a session.
    pub fn clear_cookie(&self) -> String {
        format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
    }

    /// What a request's session cookie holds, if it is sealed with this key and not
    /// expired; not yet checked against the users table (see [`Sessions::confirm`]).
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<Session> {
        let plain = self.fernet.decrypt_with_ttl(cookie(headers, COOKIE)?, TTL_SECS).ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// `session` with its user's current role, or `None` when it has ended (the user is
    /// gone, inactive, or their stamp changed). One read of the users table.
    pub async fn confirm(&self, store: &Store, mut session: Session) -> Result<Option<Session>, StoreError> {
        let account = store.account(&session.username).await?;
        Ok(current_role(&session, account.as_ref()).map(|role| {
            session.role = role;
            session
        }))
    }

    /// The signed-in session of a request, confirmed against the users table.
    pub async fn signed_in(&self, store: &Store, headers: &HeaderMap) -> Result<Option<Session>, StoreError> {
        match self.from_headers(headers) {
            Some(session) => self.confirm(store, session).await,
            None => Ok(None),
        }
    }

    /// A new login form token, and the `Set-Cookie` value carrying its sealed copy.
    pub fn login_token(&self) -> (String, String) {
        let token = random_token();
        let sealed = self.fernet.encrypt(token.as_bytes());
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{LOGIN_COOKIE}={sealed}; Path=/login; HttpOnly; SameSite=Strict; Max-Age={LOGIN_TTL_SECS}{secure}"
        );
        (token, cookie)
    }

    /// Whether `token` from a login form is the one sealed in the request's login cookie.
    pub fn login_token_matches(&self, headers: &HeaderMap, token: &str) -> bool {
        let Some(sealed) = cookie(headers, LOGIN_COOKIE) else { return false };
        let Ok(expected) = self.fernet.decrypt_with_ttl(sealed, LOGIN_TTL_SECS) else { return false };
        !token.is_empty() && same_secret(token.as_bytes(), &expected)
    }

    /// The `Set-Cookie` value that drops the login form's token once it is used.
    pub fn clear_login_cookie(&self) -> String {
        format!("{LOGIN_COOKIE}=; Path=/login; HttpOnly; SameSite=Strict; Max-Age=0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(role: &str, stamp: i64) -> Account {
        Account { role: role.into(), session_stamp: stamp }
    }

    #[test]
    fn a_session_has_the_role_of_the_users_table_while_its_stamp_holds() {
        let session = Session::new("ada", &account("Admin", 7));
        assert_eq!(current_role(&session, Some(&account("Viewer", 7))).as_deref(), Some("Viewer"), "demoted at once");
        assert_eq!(current_role(&session, Some(&account("Admin", 8))), None, "a new stamp ends it");
        assert_eq!(current_role(&session, None), None, "a deleted user has no session");
    }

    #[test]
    fn the_role_is_not_taken_from_the_cookie() {
        let sessions = Sessions::new(Some("key"), false);
        let cookie = sessions.cookie(&Session::new("ada", &account("Admin", 1)));
        let mut headers = HeaderMap::new();
        let pair = cookie.split(';').next().unwrap_or_default().to_string();
        headers.insert(header::COOKIE, pair.parse().expect("header value"));
        let read = sessions.from_headers(&headers).expect("a session");
        assert_eq!((read.username.as_str(), read.stamp, read.role.as_str()), ("ada", 1, ""));
    }

    #[test]
    fn a_login_token_needs_its_sealed_cookie() {
        let sessions = Sessions::new(Some("key"), false);
        let (token, set_cookie) = sessions.login_token();
        let mut headers = HeaderMap::new();
        assert!(!sessions.login_token_matches(&headers, &token), "no cookie");
        let pair = set_cookie.split(';').next().unwrap_or_default().to_string();
        headers.insert(header::COOKIE, pair.parse().expect("header value"));
        assert!(sessions.login_token_matches(&headers, &token));
        assert!(!sessions.login_token_matches(&headers, "0123456789abcdef0123456789abcdef"), "another token");
        assert!(!sessions.login_token_matches(&headers, ""));
        let other = Sessions::new(Some("another key"), false);
        assert!(!other.login_token_matches(&headers, &token), "a cookie sealed by another key");
    }
}
