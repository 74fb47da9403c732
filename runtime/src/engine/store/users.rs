//! Users of the web UI and API, with argon2 password hashes, and the session stamp that
//! ends a user's browser sessions when their role or password changes.

use super::audit::Change;
use super::{Doing, Result, Store, StoreError, get, q};
use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::LazyLock;

pub const ROLES: [&str; 4] = ["Admin", "Op", "User", "Viewer"];

/// The fewest characters a new password may have (the UI, the CLI and the admin password
/// from the environment all check it through [`check_new_password`]).
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Whether `password` may be set as a user's password; the error is one sentence.
/// Passwords already stored are not checked again: their users can still sign in.
pub fn check_new_password(password: &str) -> std::result::Result<(), String> {
    match password.chars().count() {
        0 => Err("the password cannot be empty".into()),
        n if n < MIN_PASSWORD_CHARS => {
            Err(format!("the password is too short: it needs at least {MIN_PASSWORD_CHARS} characters, not {n}"))
        }
        _ => Ok(()),
    }
}

/// What a sign-in or a session check reads of an active user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub role: String,
    /// Changes whenever the user's sessions must end (see migration 0005).
    pub session_stamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: String,
    pub active: bool,
}

/// A user to create ([`Store::add_user`]).
#[derive(Clone, Copy)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub role: &'a str,
    pub password: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
}

impl std::fmt::Debug for NewUser<'_> {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// An argon2id hash in PHC format.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Conflict(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches the PHC `hash` (argon2's comparison is constant-time).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash no password is known for, made with the same parameters as every stored hash:
/// an unknown or inactive user is checked against it, so that a wrong username costs the
/// same time as a wrong password and response times do not tell which names exist.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut unknowable = [0u8; 32];
    OsRng.fill_bytes(&mut unknowable);
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(&unknowable, &salt).map(|h| h.to_string()).unwrap_or_default()
});

/// Argon2 verifications running at once, at most one per CPU: each takes tens of
/// milliseconds of CPU and memory, so a flood of sign-ins queues here instead of starving
/// the scheduler and every other request.
static VERIFYING: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
});

/// Verifies `password` against `hash`, or against [`DUMMY_HASH`] when there is none
/// (then always `false`, after the same work), off the async threads and bounded by
/// [`VERIFYING`].
async fn verify_bounded(password: &str, hash: Option<String>) -> bool {
    let Ok(_permit) = VERIFYING.acquire().await else { return false };
    let known = hash.is_some();
    let password = password.to_string();
    // The dummy is made on first use, inside the blocking task too.
    let verify = move || verify_password(&password, hash.as_deref().unwrap_or(DUMMY_HASH.as_str()));
    let matches = tokio::task::spawn_blocking(verify).await.unwrap_or(false);
    known && matches
}

/// [`hash_password`], off the async threads and bounded by [`VERIFYING`] (hashing costs
/// what verifying does).
async fn hash_bounded(password: &str) -> Result<String> {
    let _permit =
        VERIFYING.acquire().await.map_err(|e| StoreError::Conflict(format!("cannot hash the password: {e}")))?;
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| StoreError::Conflict(format!("cannot hash the password: {e}")))?
}

/// A fresh session stamp; random, so that no earlier stamp of the user, or of a deleted
/// user of the same name, comes back.
fn new_session_stamp() -> i64 {
    i64::from_ne_bytes(OsRng.next_u64().to_ne_bytes())
}

/// A random password of 20 letters and digits.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 20];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

impl Store {
    /// Creates a user; an existing username is a conflict.
    pub async fn create_user(&self, username: &str, email: &str, role: &str, password: &str) -> Result<()> {
        self.add_user(&NewUser { username, email, role, password, first_name: "", last_name: "" }).await
    }

    /// Creates a user with a first and last name; an existing username is a conflict.
    pub async fn add_user(&self, user: &NewUser<'_>) -> Result<()> {
        let NewUser { username, email, role, password, first_name, last_name } = *user;
        if !ROLES.contains(&role) {
            return Err(StoreError::Conflict(format!("unknown role `{role}`: use one of {}", ROLES.join(", "))));
        }
        if username.trim().is_empty() {
            return Err(StoreError::Conflict("a username cannot be empty".into()));
        }
        check_new_password(password).map_err(StoreError::Conflict)?;
        let hash = hash_bounded(password).await?;
        let mut tx = self.begin().await?;
        let done = q("INSERT INTO users (username, email, first_name, last_name, role, password_hash, active, \
                      created_at, session_stamp) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8) \
                      ON CONFLICT (username) DO NOTHING")
        .bind(username)
        .bind(email)
        .bind(first_name)
        .bind(last_name)
        .bind(role)
        .bind(hash)
        .bind(self.now())
        .bind(new_session_stamp())
        .execute(&mut *tx)
        .await
        .doing("creating a user")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("user `{username}` already exists")));
        }
        self.audit(&mut tx, Change::new("user.create").detail("user", username).detail("role", role)).await?;
        tx.commit().await.doing("creating a user")
    }

    /// Deletes a user; an unknown username is [`StoreError::NotFound`].
    pub async fn delete_user(&self, username: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = q("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await
            .doing("deleting a user")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user `{username}`")));
        }
        self.audit(&mut tx, Change::new("user.delete").detail("user", username)).await?;
        tx.commit().await.doing("deleting a user")
    }

    /// Gives a user another role, and ends their sessions (a demoted user keeps no page
    /// open with the old role's buttons).
    pub async fn set_role(&self, username: &str, role: &str) -> Result<()> {
        if !ROLES.contains(&role) {
            return Err(StoreError::Conflict(format!("unknown role `{role}`: use one of {}", ROLES.join(", "))));
        }
        let mut tx = self.begin().await?;
        let done = q("UPDATE users SET role = $2, session_stamp = $3 WHERE username = $1")
            .bind(username)
            .bind(role)
            .bind(new_session_stamp())
            .execute(&mut *tx)
            .await
            .doing("changing a role")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user `{username}`")));
        }
        self.audit(&mut tx, Change::new("user.role").detail("user", username).detail("role", role)).await?;
        tx.commit().await.doing("changing a role")
    }

    /// Replaces a user's password (stored as a new argon2id hash) and ends their sessions;
    /// an unknown username is [`StoreError::NotFound`], a password refused by
    /// [`check_new_password`] a conflict.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<()> {
        check_new_password(password).map_err(StoreError::Conflict)?;
        let hash = hash_bounded(password).await?;
        let mut tx = self.begin().await?;
        let done = q("UPDATE users SET password_hash = $2, session_stamp = $3 WHERE username = $1")
            .bind(username)
            .bind(hash)
            .bind(new_session_stamp())
            .execute(&mut *tx)
            .await
            .doing("changing a password")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user `{username}`")));
        }
        self.audit(&mut tx, Change::new("user.password").detail("user", username)).await?;
        tx.commit().await.doing("changing a password")
    }

    pub async fn users(&self) -> Result<Vec<UserRow>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT username, email, first_name, last_name, role, active FROM users ORDER BY username")
            .fetch_all(&mut *tx)
            .await
            .doing("listing users")?;
        tx.commit().await.doing("listing users")?;
        rows.iter()
            .map(|r| {
                Ok(UserRow {
                    username: get(r, "username")?,
                    email: get(r, "email")?,
                    first_name: get(r, "first_name")?,
                    last_name: get(r, "last_name")?,
                    role: get(r, "role")?,
                    active: get::<i64>(r, "active")? == 1,
                })
            })
            .collect()
    }

    /// Ends every browser session of `username` (signing out: a copy of the cookie is
    /// worthless afterwards). An unknown user has none to end.
    pub async fn end_sessions(&self, username: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        q("UPDATE users SET session_stamp = $2 WHERE username = $1")
            .bind(username)
            .bind(new_session_stamp())
            .execute(&mut *tx)
            .await
            .doing("ending sessions")?;
        self.audit(&mut tx, Change::new("logout").detail("user", username)).await?;
        tx.commit().await.doing("ending sessions")
    }

    /// The role and session stamp of an active user; `None` for an unknown or inactive
    /// one. Every request of a browser session reads this: one row by its unique index.
    pub async fn account(&self, username: &str) -> Result<Option<Account>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT role, session_stamp FROM users WHERE username = $1 AND active = 1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading a user")?;
        tx.commit().await.doing("reading a user")?;
        row.map(|r| Ok(Account { role: get(&r, "role")?, session_stamp: get(&r, "session_stamp")? })).transpose()
    }

    /// The account of an active user whose password is `password`; `None` for unknown
    /// users, inactive users and wrong passwords alike, each after one argon2
    /// verification (see [`DUMMY_HASH`]).
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<Option<Account>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT password_hash, role, session_stamp FROM users WHERE username = $1 AND active = 1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading a user")?;
        tx.commit().await.doing("reading a user")?;
        let hash = row.as_ref().map(|r| get::<String>(r, "password_hash")).transpose()?;
        if !verify_bounded(password, hash).await {
            return Ok(None);
        }
        row.map(|r| Ok(Account { role: get(&r, "role")?, session_stamp: get(&r, "session_stamp")? })).transpose()
    }

    /// Whether `password` is the password of the active user `username`.
    pub async fn check_password(&self, username: &str, password: &str) -> Result<bool> {
        Ok(self.authenticate(username, password).await?.is_some())
    }
}

/// What [`Store::ensure_admin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminSetup {
    /// A user of that name exists already: left as it is.
    Exists(String),
    /// Created with the password from the environment.
    Created(String),
    /// Created with a generated password, shown once to the operator.
    Generated { username: String, password: String },
}

impl Store {
    /// Creates the first admin from the deployment's env variables (`sluice init`,
    /// `sluice standalone`); without a password variable, generates one. A password
    /// variable that [`check_new_password`] refuses is an error even when the admin
    /// exists: a weak password lying in the environment is worth hearing about at start.
    pub async fn ensure_admin(&self, deployment: &crate::spec::DeploymentSpec) -> Result<AdminSetup> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(password) = var(deployment.admin_password_env) {
            check_new_password(&password)
                .map_err(|why| StoreError::Conflict(format!("{}: {why}", deployment.admin_password_env)))?;
        }
        let username = var(deployment.admin_username_env).unwrap_or_else(|| "admin".into());
        let email = var(deployment.admin_email_env).unwrap_or_else(|| "admin@example.com".into());
        if self.users().await?.iter().any(|u| u.username == username) {
            return Ok(AdminSetup::Exists(username));
        }
        let (password, generated) = match var(deployment.admin_password_env) {
            Some(p) => (p, false),
            None => (generate_password(), true),
        };
        match self.create_user(&username, &email, "Admin", &password).await {
            Ok(()) => {}
            // Another `init` created it at the same moment: that one wins.
            Err(StoreError::Conflict(_)) => return Ok(AdminSetup::Exists(username)),
            Err(e) => return Err(e),
        }
        Ok(if generated { AdminSetup::Generated { username, password } } else { AdminSetup::Created(username) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_empty_passwords_are_refused() {
        assert_eq!(check_new_password(""), Err("the password cannot be empty".into()));
        assert!(check_new_password("seven77").is_err_and(|e| e.contains("at least 8 characters, not 7")));
        assert!(check_new_password("ééééééé").is_err(), "characters are counted, not bytes");
        assert_eq!(check_new_password("eight888"), Ok(()));
    }

    /// An unknown user is checked against the dummy hash: it must cost what a real one does.
    #[test]
    fn the_dummy_hash_has_the_parameters_of_a_real_one() {
        let real = hash_password("a real password").expect("hash");
        let real = PasswordHash::new(&real).expect("a PHC string");
        let dummy = PasswordHash::new(&DUMMY_HASH).expect("a PHC string");
        assert_eq!(
            (dummy.algorithm, dummy.version, dummy.params.to_string()),
            (real.algorithm, real.version, real.params.to_string())
        );
        assert!(!verify_password("", &DUMMY_HASH) && !verify_password("a real password", &DUMMY_HASH));
    }
}
