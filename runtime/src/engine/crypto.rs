//! Secrets at rest: Fernet tokens, compatible with Python `cryptography` and Airflow.
//!
//! The key comes from the deployment's fernet key variable (`SLUICE_FERNET_KEY` in the
//! sample): a comma-separated list of url-safe base64 32-byte keys, newest first. This is
//! Airflow's `MultiFernet` convention, so an existing `AIRFLOW__CORE__FERNET_KEY` value
//! works as is, and tokens written by Airflow decrypt here (and the other way round).
//! New tokens are made with the first key; decryption tries each key in order, which is
//! how a key is rotated: put the new key first, re-encrypt ([`Crypto::rotate`]), then drop
//! the old key.
//!
//! Airflow silently stores plaintext when no key is set. Sluice refuses instead: a
//! [`Crypto`] built without a key fails to encrypt with an error saying which variable to
//! set. Plaintext storage exists only for tests, through [`Crypto::plaintext_for_tests`].

use std::fmt;

/// The variable read when the deployment does not name another one.
pub const DEFAULT_KEY_VAR: &str = "SLUICE_FERNET_KEY";

/// How to make a key, for error messages (the same recipe as `generated/.env.example`).
const KEY_RECIPE: &str = "openssl rand -base64 32 | tr '+/' '-_'";

/// Encrypts and decrypts secrets with the configured Fernet keys.
///
/// Holds key material: its `Debug` shows only how many keys there are.
#[derive(Clone)]
pub struct Crypto {
    /// The variable the keys came from, for error messages.
    var: String,
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    /// Newest first; never empty.
    Keys(Vec<fernet::Fernet>),
    /// No key configured: encrypting and decrypting fail with [`CryptoError::NoKey`].
    NoKey,
    /// Tests only: "encrypting" returns the text unchanged.
    Plaintext,
}

/// Why a secret could not be encrypted or decrypted. The message is one sentence and
/// never contains key material, a token or a plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// No key is configured (the variable is unset or empty).
    NoKey { var: String },
    /// Key `position` (1-based) of `count` in the variable is not a Fernet key.
    InvalidKey { var: String, position: usize, count: usize, problem: KeyProblem },
    /// None of the configured keys decrypts the token (or the text is not a token).
    NoMatchingKey { var: String, count: usize },
    /// The token decrypted, but to bytes that are not UTF-8 text.
    NotUtf8,
    /// The variable holds bytes that are not UTF-8.
    NotUnicode { var: String },
}

/// What is wrong with one key of the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProblem {
    /// Nothing between two commas (or a leading/trailing comma).
    Empty,
    /// Not url-safe base64 of exactly 32 bytes; `chars` is the length of the text given.
    Malformed { chars: usize },
}

impl Crypto {
    /// Builds from the value of [`DEFAULT_KEY_VAR`]; see [`Crypto::from_named_env_value`].
    pub fn from_env_value(value: Option<&str>) -> Result<Crypto, CryptoError> {
        Crypto::from_named_env_value(DEFAULT_KEY_VAR, value)
    }

    /// Builds from `value`, the content of the variable `var` (named in error messages).
    ///
    /// `None` or a blank value gives a `Crypto` that refuses to encrypt or decrypt with
    /// [`CryptoError::NoKey`]; the caller decides whether that is fatal at start. A list
    /// with a malformed entry is an error naming its position, never its text.
    pub fn from_named_env_value(var: &str, value: Option<&str>) -> Result<Crypto, CryptoError> {
        let var = var.to_string();
        let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
            return Ok(Crypto { var, mode: Mode::NoKey });
        };
        let parts: Vec<&str> = value.split(',').map(str::trim).collect();
        let count = parts.len();
        let mut keys = Vec::with_capacity(count);
        for (index, part) in parts.into_iter().enumerate() {
            let invalid = |problem| CryptoError::InvalidKey { var: var.clone(), position: index + 1, count, problem };
            if part.is_empty() {
                return Err(invalid(KeyProblem::Empty));
            }
            // Python's `Fernet(key)` decodes with `base64.urlsafe_b64decode`, which also takes
            // the standard alphabet (`+`, `/`: a key made by `openssl rand -base64 32` without
            // `tr` works in Airflow); `Fernet::new` wants the url-safe one.
            let url_safe = part.replace('+', "-").replace('/', "_");
            match fernet::Fernet::new(&url_safe) {
                Some(key) => keys.push(key),
                None => return Err(invalid(KeyProblem::Malformed { chars: part.chars().count() })),
            }
        }
        Ok(Crypto { var, mode: Mode::Keys(keys) })
    }

    /// Builds from the process environment variable `var`.
    pub fn from_env(var: &str) -> Result<Crypto, CryptoError> {
        match std::env::var(var) {
            Ok(value) => Crypto::from_named_env_value(var, Some(&value)),
            Err(std::env::VarError::NotPresent) => Crypto::from_named_env_value(var, None),
            Err(std::env::VarError::NotUnicode(_)) => Err(CryptoError::NotUnicode { var: var.to_string() }),
        }
    }

    /// A `Crypto` that stores secrets as plaintext. For tests and throwaway embedded
    /// runs only: a store must then record its values as not encrypted (see
    /// [`Crypto::is_encrypting`]).
    pub fn plaintext_for_tests() -> Crypto {
        Crypto { var: DEFAULT_KEY_VAR.to_string(), mode: Mode::Plaintext }
    }

    /// Whether [`Crypto::encrypt`] produces Fernet tokens (false for the plaintext mode and
    /// when no key is configured). Airflow's `is_encrypted` column takes this value.
    pub fn is_encrypting(&self) -> bool {
        matches!(self.mode, Mode::Keys(_))
    }

    /// How many keys are configured (0 without a key or in plaintext mode).
    pub fn key_count(&self) -> usize {
        match &self.mode {
            Mode::Keys(keys) => keys.len(),
            Mode::NoKey | Mode::Plaintext => 0,
        }
    }

    /// Encrypts with the first (newest) key into a Fernet token (url-safe base64 text).
    pub fn encrypt(&self, plaintext: &str) -> Result<String, CryptoError> {
        match &self.mode {
            Mode::Keys(keys) => Ok(keys[0].encrypt(plaintext.as_bytes())),
            Mode::NoKey => Err(self.no_key()),
            Mode::Plaintext => Ok(plaintext.to_string()),
        }
    }

    /// Decrypts a token made with any of the configured keys (no time-to-live check, like
    /// Airflow).
    pub fn decrypt(&self, token: &str) -> Result<String, CryptoError> {
        match &self.mode {
            Mode::Keys(keys) => {
                let token = token.trim();
                let bytes = keys
                    .iter()
                    .find_map(|key| key.decrypt(token).ok())
                    .ok_or(CryptoError::NoMatchingKey { var: self.var.clone(), count: keys.len() })?;
                String::from_utf8(bytes).map_err(|_| CryptoError::NotUtf8)
            }
            Mode::NoKey => Err(self.no_key()),
            Mode::Plaintext => Ok(token.to_string()),
        }
    }

    /// Decrypts with any configured key and re-encrypts with the first: after a new key is
    /// put at the head of the list, this moves a stored token onto it.
    pub fn rotate(&self, token: &str) -> Result<String, CryptoError> {
        let plaintext = self.decrypt(token)?;
        self.encrypt(&plaintext)
    }

    /// A new random key, in the format of Python's `Fernet.generate_key()`: 32 random bytes
    /// in url-safe base64 with padding (44 characters).
    pub fn generate_key() -> String {
        fernet::Fernet::generate_key()
    }

    fn no_key(&self) -> CryptoError {
        CryptoError::NoKey { var: self.var.clone() }
    }
}

impl fmt::Debug for Crypto {
    /// Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.mode {
            Mode::Keys(_) => "fernet",
            Mode::NoKey => "no key",
            Mode::Plaintext => "plaintext (tests only)",
        };
        f.debug_struct("Crypto").field("var", &self.var).field("mode", &mode).field("keys", &self.key_count()).finish()
    }
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::NoKey { var } => write!(
                f,
                "no Fernet key is configured, so secrets cannot be encrypted or decrypted: \
                 set {var} to a key (make one with `{KEY_RECIPE}`; an Airflow fernet key works as is)"
            ),
            CryptoError::InvalidKey { var, position, count, problem } => {
                let which = if *count == 1 {
                    format!("the key in {var}")
                } else {
                    format!("key {position} of {count} in {var}")
                };
                match problem {
                    KeyProblem::Empty => {
                        write!(f, "{which} is empty: separate keys with single commas and leave no comma at either end")
                    }
                    KeyProblem::Malformed { chars } => write!(
                        f,
                        "{which} is not a Fernet key: expected 32 bytes in url-safe base64 \
                         (44 characters ending in `=`), found {chars} characters that do not decode to that; \
                         make one with `{KEY_RECIPE}`"
                    ),
                }
            }
            CryptoError::NoMatchingKey { var, count } => {
                let keys = if *count == 1 {
                    "the configured key".to_string()
                } else {
                    format!("none of the {count} configured keys")
                };
                let verb = if *count == 1 { "does not match" } else { "matches" };
                write!(
                    f,
                    "cannot decrypt: {keys} in {var} {verb} (or the value is not a Fernet token); \
                     was the key rotated without `sluice fernet rotate`?"
                )
            }
            CryptoError::NotUtf8 => {
                f.write_str("the decrypted value is not UTF-8 text, so it cannot be a stored secret")
            }
            CryptoError::NotUnicode { var } => {
                write!(f, "{var} is not valid Unicode; a Fernet key is plain ASCII text")
            }
        }
    }
}

impl std::error::Error for CryptoError {}

/// Whether two secrets (a CSRF token, a session stamp, a password) are equal, in time that
/// depends only on their lengths: `==` stops at the first differing byte, which lets a
/// caller who can time many attempts find a secret one byte at a time.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_equal_only_when_equal() {
        use super::same_secret;
        assert!(same_secret(b"csrf-token", b"csrf-token"));
        assert!(!same_secret(b"csrf-token", b"csrf-tokeN"));
        assert!(!same_secret(b"csrf-token", b"csrf-toke"), "a prefix is not the secret");
        assert!(!same_secret(b"", b"x"));
        assert!(same_secret(b"", b""));
    }

    use super::*;

    fn crypto(keys: &[&str]) -> Crypto {
        Crypto::from_env_value(Some(&keys.join(","))).expect("generated keys are valid")
    }

    #[test]
    fn round_trip() {
        let key = Crypto::generate_key();
        let c = crypto(&[&key]);
        assert!(c.is_encrypting());
        let token = c.encrypt("s3cr3t: päss").expect("a key is configured");
        assert_ne!(token, "s3cr3t: päss");
        assert!(token.starts_with("gAAAAA"), "a Fernet token starts with version 0x80 and a timestamp");
        assert_eq!(c.decrypt(&token).expect("same key"), "s3cr3t: päss");
        // Two encryptions differ (random IV), both decrypt.
        let again = c.encrypt("s3cr3t: päss").expect("a key is configured");
        assert_ne!(token, again);
        assert_eq!(c.decrypt(&again).expect("same key"), "s3cr3t: päss");
    }

    #[test]
    fn generated_key_has_python_format() {
        let key = Crypto::generate_key();
        assert_eq!(key.len(), 44);
        assert!(key.ends_with('='));
        assert!(key[..43].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(key, Crypto::generate_key());
    }

    #[test]
    fn rotation_with_two_keys() {
        let (old, new) = (Crypto::generate_key(), Crypto::generate_key());
        let before = crypto(&[&old]);
        let token = before.encrypt("db-password").expect("a key is configured");

        // New key first, old key second: old tokens still decrypt.
        let during = crypto(&[&new, &old]);
        assert_eq!(during.key_count(), 2);
        assert_eq!(during.decrypt(&token).expect("old key is still listed"), "db-password");
        let rotated = during.rotate(&token).expect("old key is still listed");

        // The rotated token is made with the new key alone.
        let after = crypto(&[&new]);
        assert_eq!(after.decrypt(&rotated).expect("rotated onto the new key"), "db-password");
        assert!(after.decrypt(&token).is_err(), "the old token needs the old key");
        // New tokens use the first key.
        let fresh = during.encrypt("x").expect("a key is configured");
        assert_eq!(after.decrypt(&fresh).expect("encrypted with the first key"), "x");
        assert!(before.decrypt(&fresh).is_err());
    }

    #[test]
    fn wrong_key_is_a_clear_error() {
        let token = crypto(&[&Crypto::generate_key()]).encrypt("hunter2").expect("a key is configured");
        let other = crypto(&[&Crypto::generate_key(), &Crypto::generate_key()]);
        let err = other.decrypt(&token).expect_err("no key matches");
        assert_eq!(err, CryptoError::NoMatchingKey { var: DEFAULT_KEY_VAR.into(), count: 2 });
        let text = err.to_string();
        assert!(text.contains("none of the 2 configured keys in SLUICE_FERNET_KEY matches"), "{text}");
        assert!(text.contains("sluice fernet rotate"), "{text}");
        assert!(!text.contains("hunter2") && !text.contains(&token));
        // Garbage is not a token either.
        assert!(other.decrypt("not a token").is_err());
        assert!(other.decrypt("").is_err());
    }

    #[test]
    fn malformed_key_names_its_position_not_its_text() {
        let good = Crypto::generate_key();
        let bad = "c2hvcnQta2V5";
        let err = Crypto::from_named_env_value("AIRFLOW__CORE__FERNET_KEY", Some(&format!("{good},{bad}")))
            .expect_err("the second key is too short");
        assert_eq!(
            err,
            CryptoError::InvalidKey {
                var: "AIRFLOW__CORE__FERNET_KEY".into(),
                position: 2,
                count: 2,
                problem: KeyProblem::Malformed { chars: 12 }
            }
        );
        let text = err.to_string();
        assert!(text.starts_with("key 2 of 2 in AIRFLOW__CORE__FERNET_KEY is not a Fernet key"), "{text}");
        assert!(!text.contains(bad) && !text.contains(&good), "{text}");

        let err = Crypto::from_env_value(Some("not base64 at all!!")).expect_err("not base64");
        assert!(err.to_string().starts_with("the key in SLUICE_FERNET_KEY is not a Fernet key"), "{err}");

        let err = Crypto::from_env_value(Some(&format!("{good},"))).expect_err("trailing comma");
        assert_eq!(
            err,
            CryptoError::InvalidKey { var: DEFAULT_KEY_VAR.into(), position: 2, count: 2, problem: KeyProblem::Empty }
        );
    }

    #[test]
    fn spaces_around_keys_are_ignored() {
        let (a, b) = (Crypto::generate_key(), Crypto::generate_key());
        let c = Crypto::from_env_value(Some(&format!(" {a} , {b}\n"))).expect("keys are valid once trimmed");
        assert_eq!(c.key_count(), 2);
        assert_eq!(crypto(&[&a]).decrypt(&c.encrypt("v").expect("a key is configured")).expect("first key"), "v");
    }

    #[test]
    fn standard_base64_alphabet_is_accepted_like_python_does() {
        // The same 32 bytes in both alphabets.
        let url_safe = "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_8=";
        let standard = "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/8=";
        let token = crypto(&[standard]).encrypt("v").expect("a key is configured");
        assert_eq!(crypto(&[url_safe]).decrypt(&token).expect("same key bytes"), "v");
    }

    #[test]
    fn empty_or_missing_key_refuses_to_encrypt() {
        for value in [None, Some(""), Some("  ")] {
            let c = Crypto::from_named_env_value("MY_FERNET_KEY", value).expect("no key is not an error by itself");
            assert!(!c.is_encrypting());
            assert_eq!(c.key_count(), 0);
            let err = c.encrypt("hunter2").expect_err("no key");
            assert_eq!(err, CryptoError::NoKey { var: "MY_FERNET_KEY".into() });
            let text = err.to_string();
            assert!(text.contains("set MY_FERNET_KEY"), "{text}");
            assert!(text.contains("openssl rand -base64 32"), "{text}");
            assert!(!text.contains("hunter2"));
            assert!(c.decrypt("gAAAAAB...").is_err());
        }
    }

    #[test]
    fn plaintext_mode_is_explicit() {
        let c = Crypto::plaintext_for_tests();
        assert!(!c.is_encrypting());
        assert_eq!(c.encrypt("v").expect("plaintext mode"), "v");
        assert_eq!(c.decrypt("v").expect("plaintext mode"), "v");
        assert_eq!(c.rotate("v").expect("plaintext mode"), "v");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = Crypto::generate_key();
        let text = format!("{:?}", crypto(&[&key]));
        assert!(!text.contains(&key));
        assert_eq!(text, r#"Crypto { var: "SLUICE_FERNET_KEY", mode: "fernet", keys: 1 }"#);
    }
}
