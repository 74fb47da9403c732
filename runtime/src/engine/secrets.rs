//! Every secret value this process knows, masked wherever text leaves it: task logs (on
//! top of each task's own connection passwords and secret variables, see
//! [`crate::task::Logger::mask`]) and the process's own log on stderr.
//!
//! The process learns its secrets at start ([`register_from_env`]: the Fernet keys, the
//! session key, the admin password, the passwords inside the database and Redis URLs, and
//! every variable whose name looks secret, such as `MLSP_DB_PASSWORD`), and later as it
//! reads them (keys standalone generates, connection passwords it decrypts).

use crate::Registry;
use std::io::Write;
use std::sync::{OnceLock, RwLock};

/// Values shorter than this are not masked: they would star out ordinary words.
pub const MIN_LEN: usize = 3;

fn known() -> &'static RwLock<Vec<String>> {
    static KNOWN: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    KNOWN.get_or_init(RwLock::default)
}

/// Adds `value` (each of its lines) to what is masked.
pub fn register(value: &str) {
    let mut known = known().write().unwrap_or_else(std::sync::PoisonError::into_inner);
    for part in value.lines().map(str::trim_end) {
        if part.chars().count() >= MIN_LEN && !known.iter().any(|s| s == part) {
            known.push(part.to_string());
            // Longest first, so a secret that contains another is masked whole.
            known.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }
}

/// Adds the password of a `scheme://user:password@host/...` URL, as written and decoded.
pub fn register_url_password(url: &str) {
    let Some((_, rest)) = url.split_once("://") else { return };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let Some((userinfo, _)) = authority.rsplit_once('@') else { return };
    if let Some((_, password)) = userinfo.split_once(':') {
        register(password);
        if let Ok(decoded) = crate::connection::uri::decode("", "password", password) {
            register(&decoded);
        }
    }
}

/// `text` with every known secret replaced by `***`.
pub fn redact(text: &str) -> String {
    let known = known().read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut text = text.to_string();
    for secret in known.iter() {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// Names of settings that always hold a secret, besides the deployment's own names.
const SECRET_SETTINGS: &[&str] = &["AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__WEBSERVER__SECRET_KEY"];
/// Settings that are URLs which may carry a password.
const URL_SETTINGS: &[&str] = &[
    sluice_contract::settings::DATABASE_URL,
    sluice_contract::settings::DATABASE_DIRECT_URL,
    sluice_contract::settings::BROKER_URL,
    sluice_contract::settings::RATE_LIMIT_URL,
];

/// Registers what the environment holds that is secret (see the module's documentation).
pub fn register_from_env(registry: &Registry) {
    register_from(registry, std::env::vars());
}

/// [`register_from_env`] over given variables (for tests).
pub fn register_from(registry: &Registry, vars: impl IntoIterator<Item = (String, String)>) {
    let d = registry.deployment;
    let named = [d.fernet_key_env, d.secret_key_env, d.admin_password_env];
    for (name, value) in vars {
        if name == d.fernet_key_env || name == "AIRFLOW__CORE__FERNET_KEY" {
            value.split(',').for_each(|key| register(key.trim()));
        } else if named.contains(&name.as_str())
            || SECRET_SETTINGS.contains(&name.as_str())
            || crate::connection::is_secret_key(&name)
        {
            register(&value);
        }
        if URL_SETTINGS.contains(&name.as_str())
            || name.starts_with(sluice_contract::settings::CONN_PREFIX)
            || name.starts_with("AIRFLOW_CONN_")
        {
            register_url_password(&value);
        }
    }
}

/// stderr, with every known secret masked: the writer of the process's own log. The log
/// formatter hands over one whole event per write, so a secret is never split.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaskedStderr;

impl Write for MaskedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_as_written_and_decoded() {
        register_url_password("postgres://user:p%40ss-word-1@db:5432/x");
        assert_eq!(redact("a p%40ss-word-1 b p@ss-word-1"), "a *** b ***");
    }

    #[test]
    fn a_secret_that_contains_another_is_masked_whole() {
        register("abc-short");
        register("abc-short-and-longer");
        assert_eq!(redact("x abc-short-and-longer y"), "x *** y");
    }
}
