//! Browser sessions: after a form login, a cookie holding the user, their role and a CSRF
//! token, sealed with Fernet under a key derived from `SLUICE_SECRET_KEY` (so every web
//! server of a deployment reads every session; without the variable, a key of this process
//! only). The cookie is `HttpOnly` and `SameSite=Lax`; every form carries the CSRF token and
//! every POST is refused without it.

use super::auth::Role;
use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use axum::http::HeaderMap;
use axum::http::header;
use base64::Engine;
use serde::{Deserialize, Serialize};

pub const COOKIE: &str = "sluice_session";
/// How long a session lasts.
const TTL_SECS: u64 = 12 * 3600;

/// What a session cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "u")]
    pub username: String,
    #[serde(rename = "r")]
    pub role: String,
    /// The token forms must echo back.
    #[serde(rename = "c")]
    pub csrf: String,
    /// Signed in with a well-known default password: every page says to change it.
    #[serde(rename = "d", default)]
    pub default_password: bool,
}

impl Session {
    pub fn new(username: &str, role: &str) -> Session {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        let csrf = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Session { username: username.to_string(), role: role.to_string(), csrf, default_password: false }
    }

    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Viewer)
    }
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

    /// The session of a request, if its cookie is valid and not expired.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<Session> {
        let cookies = headers.get_all(header::COOKIE);
        let token = cookies
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")).map(str::to_string))?;
        let plain = self.fernet.decrypt_with_ttl(&token, TTL_SECS).ok()?;
        serde_json::from_slice(&plain).ok()
    }
}
