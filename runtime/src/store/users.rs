//! Users of the web UI and API, with argon2 password hashes.

use super::{Doing, Result, Store, StoreError, get, q};
use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

pub const ROLES: [&str; 4] = ["Admin", "Op", "User", "Viewer"];

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

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
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
        let hash = hash_password(password)?;
        let mut tx = self.begin().await?;
        let done = q("INSERT INTO users (username, email, first_name, last_name, role, password_hash, active, \
                      created_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7) ON CONFLICT (username) DO NOTHING")
        .bind(username)
        .bind(email)
        .bind(first_name)
        .bind(last_name)
        .bind(role)
        .bind(hash)
        .bind(self.now())
        .execute(&mut *tx)
        .await
        .doing("creating a user")?;
        tx.commit().await.doing("creating a user")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("user `{username}` already exists")));
        }
        Ok(())
    }

    /// Deletes a user; an unknown username is [`StoreError::NotFound`].
    pub async fn delete_user(&self, username: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = q("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await
            .doing("deleting a user")?;
        tx.commit().await.doing("deleting a user")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user `{username}`")));
        }
        Ok(())
    }

    /// Replaces a user's password (stored as a new argon2id hash); an unknown username is
    /// [`StoreError::NotFound`], an empty password a conflict.
    /// Gives a user another role.
    pub async fn set_role(&self, username: &str, role: &str) -> Result<()> {
        if !ROLES.contains(&role) {
            return Err(StoreError::Conflict(format!("unknown role `{role}`: use one of {}", ROLES.join(", "))));
        }
        let mut tx = self.begin().await?;
        let done = q("UPDATE users SET role = $2 WHERE username = $1")
            .bind(username)
            .bind(role)
            .execute(&mut *tx)
            .await
            .doing("changing a role")?;
        tx.commit().await.doing("changing a role")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user `{username}`")));
        }
        Ok(())
    }

    pub async fn set_password(&self, username: &str, password: &str) -> Result<()> {
        if password.is_empty() {
            return Err(StoreError::Conflict("a password cannot be empty".into()));
        }
        let hash = hash_password(password)?;
        let mut tx = self.begin().await?;
        let done = q("UPDATE users SET password_hash = $2 WHERE username = $1")
            .bind(username)
            .bind(hash)
            .execute(&mut *tx)
            .await
            .doing("changing a password")?;
        tx.commit().await.doing("changing a password")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user `{username}`")));
        }
        Ok(())
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

    /// Checks a login; `false` for unknown users, inactive users and wrong passwords alike.
    /// The role of an active user whose password is `password`; `None` otherwise.
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<Option<String>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT password_hash, role FROM users WHERE username = $1 AND active = 1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading a user")?;
        tx.commit().await.doing("reading a user")?;
        let Some(row) = row else { return Ok(None) };
        let hash: String = get(&row, "password_hash")?;
        // Verifying is deliberately slow (argon2): off the async threads.
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false);
        Ok(if ok { Some(get(&row, "role")?) } else { None })
    }

    pub async fn check_password(&self, username: &str, password: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let row = q("SELECT password_hash FROM users WHERE username = $1 AND active = 1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading a user")?;
        tx.commit().await.doing("reading a user")?;
        Ok(match row {
            Some(row) => verify_password(password, &get::<String>(&row, "password_hash")?),
            None => false,
        })
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
    /// `sluice standalone`); without a password variable, generates one.
    pub async fn ensure_admin(&self, deployment: &crate::spec::DeploymentSpec) -> Result<AdminSetup> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
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
