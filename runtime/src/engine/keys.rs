//! The two keys a web server needs: the Fernet key(s) that seal stored secrets, and the
//! session key that seals browser sessions.
//!
//! A deployment gives both in the environment (the variables named by
//! `deployment.fernet_key_env` and `deployment.secret_key_env`). Every web server of a
//! deployment must share the session key, or a session made by one is refused by the
//! next, so `sluice webserver` refuses to start without it. `sluice standalone`, run
//! without them, makes each key once and keeps it in `SLUICE_HOME` (files only their
//! owner can read), so that after a restart stored secrets still decrypt and people stay
//! signed in. The environment always wins over the files.

use crate::crypto::Crypto;
use crate::registry::Registry;
use crate::settings::Settings;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The Fernet key standalone made, in `SLUICE_HOME`.
pub const FERNET_FILE: &str = "fernet.key";
/// The session key standalone made, in `SLUICE_HOME`.
pub const SESSION_FILE: &str = "secret.key";

/// The keys of one web server. Its `Debug` shows no key.
#[derive(Clone)]
pub struct WebKeys {
    pub crypto: Crypto,
    /// Any text; the session cookie key is derived from it.
    pub session_secret: String,
}

impl std::fmt::Debug for WebKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebKeys").field("crypto", &self.crypto).finish_non_exhaustive()
    }
}

/// `sluice webserver`: both keys from the environment; a missing session key is an error.
pub fn webserver(registry: &Registry, lookup: &dyn Fn(&str) -> Option<String>) -> Result<WebKeys, String> {
    let (fernet_var, secret_var) = (registry.deployment.fernet_key_env, registry.deployment.secret_key_env);
    let session_secret = set(lookup, secret_var).ok_or_else(|| {
        format!(
            "{secret_var} is not set: every web server of a deployment must share one session key, so set it \
             to the same random text everywhere (e.g. the output of `openssl rand -base64 32`)"
        )
    })?;
    let crypto =
        Crypto::from_named_env_value(fernet_var, set(lookup, fernet_var).as_deref()).map_err(|e| e.to_string())?;
    Ok(WebKeys { crypto, session_secret })
}

/// `sluice standalone`: each key from the environment, else from its file in `home`,
/// made there on first start.
pub fn standalone(
    registry: &Registry,
    home: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<WebKeys, String> {
    let (fernet_var, secret_var) = (registry.deployment.fernet_key_env, registry.deployment.secret_key_env);
    let crypto = match set(lookup, fernet_var) {
        Some(value) => Crypto::from_named_env_value(fernet_var, Some(&value)),
        None => {
            let path = home.join(FERNET_FILE);
            let value = read_or_make(&path, Crypto::generate_key)?;
            Crypto::from_named_env_value(&path.display().to_string(), Some(&value))
        }
    }
    .map_err(|e| e.to_string())?;
    let session_secret = match set(lookup, secret_var) {
        Some(value) => value,
        None => read_or_make(&home.join(SESSION_FILE), random_secret)?,
    };
    Ok(WebKeys { crypto, session_secret })
}

/// The Fernet key(s) of a command run beside a store: the environment, else, when the
/// store is standalone's SQLite file, the key standalone made in `SLUICE_HOME` (never
/// made here: a command that made a key nobody else has would lock its secrets away).
pub fn fernet(
    registry: &Registry,
    settings: &Settings,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Crypto, String> {
    let var = registry.deployment.fernet_key_env;
    let from_home = || -> Option<(PathBuf, String)> {
        let path = settings.home.join(FERNET_FILE);
        let text = std::fs::read_to_string(&path).ok()?;
        Some((path, text.trim().to_string()))
    };
    match (set(lookup, var), settings.database_url.is_none()) {
        (Some(value), _) => Crypto::from_named_env_value(var, Some(&value)),
        (None, true) => match from_home() {
            Some((path, value)) => Crypto::from_named_env_value(&path.display().to_string(), Some(&value)),
            None => Crypto::from_named_env_value(var, None),
        },
        (None, false) => Crypto::from_named_env_value(var, None),
    }
    .map_err(|e| e.to_string())
}

/// A variable's value; empty counts as unset.
fn set(lookup: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    lookup(var).filter(|v| !v.trim().is_empty())
}

/// 32 random bytes as url-safe base64.
fn random_secret() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    use base64::Engine;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// The key in `path`, or a new one from `make` written there with mode 0600. The file is
/// created exclusively, so two processes starting at once cannot both write one.
fn read_or_make(path: &Path, make: fn() -> String) -> Result<String, String> {
    let key = read_or_make_unmasked(path, make)?;
    crate::secrets::register(&key);
    Ok(key)
}

fn read_or_make_unmasked(path: &Path, make: fn() -> String) -> Result<String, String> {
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    match created {
        Ok(mut file) => {
            let key = make();
            file.write_all(format!("{key}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write {}: {e}; set SLUICE_HOME to a writable folder", path.display()))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let key = text.trim();
            if key.is_empty() {
                return Err(format!("{} is empty: delete it and start again to make a new key", path.display()));
            }
            Ok(key.to_string())
        }
        Err(e) => Err(format!("cannot create {}: {e}; set SLUICE_HOME to a writable folder", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::read_or_make;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_made_once_private_and_read_back() {
        let home = tempfile::tempdir().expect("temp dir");
        let path = home.path().join("k");
        let first = read_or_make(&path, || "first".into()).expect("made");
        let again = read_or_make(&path, || "second".into()).expect("read");
        assert_eq!((first.as_str(), again.as_str()), ("first", "first"), "made once, then reused");
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner reads it");
        std::fs::write(&path, "\n").expect("emptied");
        assert!(read_or_make(&path, || "third".into()).expect_err("empty").contains("is empty"));
    }
}
