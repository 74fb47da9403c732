//! Which names hold secrets. One list for both sides: the compiler refuses a literal value
//! under such a key (it must be `${ENV_VAR}`), and the runtime masks the value of such a
//! key wherever it shows one. A word added here does both at once.

/// Airflow's secrets masker's names (`sensitive_var_conn_names` defaults and the words it
/// always masks). A name holds a secret when it contains one of them, in any case.
pub const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "authorization",
    "credential",
    "keyfile_dict",
    "service_account",
];

/// Whether `key` (an `extra` key, a variable, a header) names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::is_secret_key;

    #[test]
    fn secret_names_are_found_in_any_case_and_inside_longer_names() {
        for key in ["password", "DB_PASSWORD", "Api_Key", "x-auth-token", "gcp_credentials", "Authorization"] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["host", "endpoint", "timeout", "from", "verify"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}
