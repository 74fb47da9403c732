//! Variables (Airflow's): key-value pairs for templates (`var.value.X`, `var.json.X`).
//!
//! A variable is secret when it is set as one, or when its key looks secret (`password`,
//! `secret`, `token`, `api_key`, ... as Airflow's secrets masker decides, see
//! [`is_secret_variable`]). Secret values are Fernet-encrypted at rest (`is_encrypted` 1)
//! and masked in listings; storing one without a key fails with the key error. Other
//! values are stored as they are, so listing them needs no key.
//!
//! The table has no column for "set as secret": a secret is recognised by its encryption
//! or its key. Only the test-only plaintext [`Crypto`] can therefore lose the mark of a
//! secret whose key does not look secret.

use super::audit::Change;
use super::{Doing, Result, Store, StoreError, Tx, get, q};
use crate::connection::is_secret_key;
use crate::crypto::{Crypto, CryptoError};
use sqlx::AssertSqlSafe;

/// A variable, its value decrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct Variable {
    pub key: String,
    pub value: String,
    pub description: String,
    /// Encrypted at rest, or its key looks secret: mask the value in logs and listings.
    pub secret: bool,
}

impl std::fmt::Debug for Variable {
    /// Never prints a secret value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.secret { "***" } else { self.value.as_str() };
        f.debug_struct("Variable")
            .field("key", &self.key)
            .field("value", &value)
            .field("description", &self.description)
            .field("secret", &self.secret)
            .finish()
    }
}

/// A variable as listings show it: the value only when it is not secret. Needs no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableInfo {
    pub key: String,
    /// `None` for a secret variable.
    pub value: Option<String>,
    pub description: String,
    pub secret: bool,
    pub is_encrypted: bool,
    /// Microseconds since the epoch.
    pub updated_at: i64,
}

/// What an import does with a key that exists already (Airflow's
/// `--action-on-existing-key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnExisting {
    #[default]
    Overwrite,
    /// The whole import fails and nothing is written.
    Fail,
    Skip,
}

/// What [`Store::import_variables`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VariableImport {
    pub created: Vec<String>,
    pub overwritten: Vec<String>,
    pub skipped: Vec<String>,
}

/// Whether a variable key looks secret, by Airflow's secrets-masker names.
pub fn is_secret_variable(key: &str) -> bool {
    is_secret_key(key)
}

/// Airflow's limit on variable keys.
const MAX_KEY_LEN: usize = 250;

impl Store {
    /// Sets a variable, creating or replacing it. `secret` (or a secret-looking key)
    /// encrypts the value, and a variable stored encrypted stays secret when it is set
    /// again (delete it to make it plain); `description: None` keeps the stored one.
    pub async fn set_variable(
        &self,
        key: &str,
        value: &str,
        secret: bool,
        description: Option<&str>,
        crypto: &Crypto,
    ) -> Result<()> {
        check_key(key)?;
        let mut tx = self.begin().await?;
        let was_secret = self.stored_encrypted(&mut tx, key).await?.unwrap_or(false);
        let (stored, encrypted) = seal(key, value, secret || was_secret, crypto)?;
        write(&mut tx, key, &stored, encrypted, description, self.now()).await?;
        self.audit(&mut tx, Change::new("variable.set").detail("key", key)).await?;
        tx.commit().await.doing("setting a variable")
    }

    /// A variable's value, decrypted; `None` when it is not set.
    pub async fn variable(&self, key: &str, crypto: &Crypto) -> Result<Option<String>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT key, val, is_encrypted, description, updated_at FROM variables WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading a variable")?;
        tx.commit().await.doing("reading a variable")?;
        row.map(|r| open(&r, crypto).map(|v| v.value)).transpose()
    }

    /// Every variable, decrypted, by key: what templates see (`var.value.X`). The `secret`
    /// flag says which values a task log must mask.
    pub async fn variables(&self, crypto: &Crypto) -> Result<Vec<Variable>> {
        let rows = self.variable_rows().await?;
        rows.iter().map(|r| open(r, crypto)).collect()
    }

    /// Every variable, secret values left out, by key: needs no key.
    pub async fn variable_infos(&self) -> Result<Vec<VariableInfo>> {
        let rows = self.variable_rows().await?;
        rows.iter().map(info).collect()
    }

    /// Deletes a variable; a missing one is [`StoreError::NotFound`].
    pub async fn delete_variable(&self, key: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let done =
            q("DELETE FROM variables WHERE key = $1").bind(key).execute(&mut *tx).await.doing("deleting a variable")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("variable `{key}`")));
        }
        self.audit(&mut tx, Change::new("variable.delete").detail("key", key)).await?;
        tx.commit().await.doing("deleting a variable")
    }

    /// Sets many variables in one transaction (`sluice variables import`); values are
    /// encrypted as [`Store::set_variable`] does, descriptions kept. With
    /// [`OnExisting::Fail`], one existing key fails the import and nothing is written.
    pub async fn import_variables(
        &self,
        entries: &[(String, String)],
        on_existing: OnExisting,
        crypto: &Crypto,
    ) -> Result<VariableImport> {
        for (key, _) in entries {
            check_key(key)?;
        }
        let mut report = VariableImport::default();
        let now = self.now();
        let mut tx = self.begin().await?;
        for (key, value) in entries {
            let existing = self.stored_encrypted(&mut tx, key).await?;
            match (existing, on_existing) {
                (Some(_), OnExisting::Fail) => {
                    return Err(StoreError::Conflict(format!(
                        "variable `{key}` already exists; nothing was imported \
                         (import with overwrite or skip for existing keys)"
                    )));
                }
                (Some(_), OnExisting::Skip) => {
                    report.skipped.push(key.clone());
                    continue;
                }
                (Some(_), OnExisting::Overwrite) => report.overwritten.push(key.clone()),
                (None, _) => report.created.push(key.clone()),
            }
            let (stored, encrypted) = seal(key, value, existing == Some(true), crypto)?;
            write(&mut tx, key, &stored, encrypted, None, now).await?;
        }
        let keys: Vec<&str> = entries.iter().map(|(key, _)| key.as_str()).collect();
        self.audit(&mut tx, Change::new("variable.import").detail("keys", keys)).await?;
        tx.commit().await.doing("importing variables")?;
        Ok(report)
    }

    /// Whether a stored variable is encrypted (`None`: not stored), locking its row on
    /// PostgreSQL.
    async fn stored_encrypted(&self, tx: &mut Tx, key: &str) -> Result<Option<bool>> {
        let row = q(AssertSqlSafe(format!("SELECT is_encrypted FROM variables WHERE key = $1{}", self.for_update())))
            .bind(key)
            .fetch_optional(&mut **tx)
            .await
            .doing("reading a variable")?;
        row.map(|r| get::<i64>(&r, "is_encrypted").map(|e| e == 1)).transpose()
    }

    async fn variable_rows(&self) -> Result<Vec<sqlx::any::AnyRow>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT key, val, is_encrypted, description, updated_at FROM variables ORDER BY key")
            .fetch_all(&mut *tx)
            .await
            .doing("listing variables")?;
        tx.commit().await.doing("listing variables")?;
        Ok(rows)
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.trim().is_empty() || key.chars().count() > MAX_KEY_LEN {
        return Err(StoreError::Conflict(format!(
            "`{key}` is not a valid variable key: use 1 to {MAX_KEY_LEN} characters, not only spaces"
        )));
    }
    Ok(())
}

/// Re-encrypts every encrypted variable with the first key, inside the rotation's
/// transaction; returns how many.
pub(super) async fn rotate(store: &Store, tx: &mut Tx, crypto: &Crypto) -> Result<usize> {
    let rows = q(AssertSqlSafe(format!(
        "SELECT key, val FROM variables WHERE is_encrypted = 1 ORDER BY key{}",
        store.for_update()
    )))
    .fetch_all(&mut **tx)
    .await
    .doing("reading encrypted variables")?;
    for row in &rows {
        let key: String = get(row, "key")?;
        let token: String = get(row, "val")?;
        let rotated = crypto.rotate(&token).map_err(|e| unreadable(&key, &e))?;
        q("UPDATE variables SET val = $2, updated_at = $3 WHERE key = $1")
            .bind(&key)
            .bind(rotated)
            .bind(store.now())
            .execute(&mut **tx)
            .await
            .doing("re-encrypting a variable")?;
    }
    Ok(rows.len())
}

/// The value as stored, and whether it is encrypted.
fn seal(key: &str, value: &str, secret: bool, crypto: &Crypto) -> Result<(String, bool)> {
    if !(secret || is_secret_variable(key)) {
        return Ok((value.to_string(), false));
    }
    let stored = crypto
        .encrypt(value)
        .map_err(|e| StoreError::Conflict(format!("secret variable `{key}` cannot be stored: {e}")))?;
    Ok((stored, crypto.is_encrypting()))
}

async fn write(
    tx: &mut Tx,
    key: &str,
    stored: &str,
    encrypted: bool,
    description: Option<&str>,
    now: i64,
) -> Result<()> {
    // Without a description, an existing row keeps its own.
    let sql = match description {
        Some(_) => {
            "INSERT INTO variables (key, val, is_encrypted, description, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (key) DO UPDATE SET val = excluded.val, is_encrypted = excluded.is_encrypted, \
             description = excluded.description, updated_at = excluded.updated_at"
        }
        None => {
            "INSERT INTO variables (key, val, is_encrypted, description, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (key) DO UPDATE SET val = excluded.val, is_encrypted = excluded.is_encrypted, \
             updated_at = excluded.updated_at"
        }
    };
    q(sql)
        .bind(key)
        .bind(stored)
        .bind(i64::from(encrypted))
        .bind(description.unwrap_or_default())
        .bind(now)
        .execute(&mut **tx)
        .await
        .doing("writing a variable")?;
    Ok(())
}

fn open(row: &sqlx::any::AnyRow, crypto: &Crypto) -> Result<Variable> {
    let key: String = get(row, "key")?;
    let stored: String = get(row, "val")?;
    let encrypted = get::<i64>(row, "is_encrypted")? == 1;
    let value = if encrypted { crypto.decrypt(&stored).map_err(|e| unreadable(&key, &e))? } else { stored };
    Ok(Variable { secret: encrypted || is_secret_variable(&key), description: get(row, "description")?, key, value })
}

fn info(row: &sqlx::any::AnyRow) -> Result<VariableInfo> {
    let key: String = get(row, "key")?;
    let is_encrypted = get::<i64>(row, "is_encrypted")? == 1;
    let secret = is_encrypted || is_secret_variable(&key);
    Ok(VariableInfo {
        value: if secret { None } else { Some(get(row, "val")?) },
        description: get(row, "description")?,
        secret,
        is_encrypted,
        updated_at: get(row, "updated_at")?,
        key,
    })
}

fn unreadable(key: &str, e: &CryptoError) -> StoreError {
    StoreError::Conflict(format!("cannot read variable `{key}`: {e}"))
}
