//! Fresh databases on the tests' PostgreSQL, owned by the metadata user of
//! `generated/docker-compose.yml`, and `psql` to query them.

use crate::compose::Compose;
use crate::process::{Env, tool};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh database on the local PostgreSQL, owned by the compose's metadata user
/// (`POSTGRES_USER`, created as a login role when missing); dropped on Drop.
#[derive(Debug)]
pub struct Database {
    name: String,
    user: String,
    /// The server's `host:port`.
    server: String,
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl Database {
    /// The metadata user's password in every test. PostgreSQL's trust auth ignores it;
    /// PgBouncer's SCRAM auth file and the clients' URLs must agree on it. URL-safe,
    /// because compose writes it into URLs unescaped.
    pub const PASSWORD: &'static str = "sluice-test-password";
    /// Where the tests' PostgreSQL listens (the machine's on 127.0.0.1:5432, or a private
    /// one: [`crate::postgres::address`]).
    pub fn server() -> &'static str {
        crate::postgres::address()
    }

    /// Creates `<prefix>_<pid>_<n>` (dropping a leftover of that name first). `prefix`:
    /// lowercase letters, digits and `_`.
    pub fn fresh(prefix: &str) -> Database {
        Database::fresh_on(Database::server(), prefix)
    }

    /// As [`Database::fresh`], on the server at `server` (`host:port`, trust auth for
    /// `postgres`), e.g. a [`crate::postgres::PrivatePostgres`].
    pub fn fresh_on(server: &str, prefix: &str) -> Database {
        assert!(
            prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "database prefix `{prefix}`: use lowercase letters, digits and `_`"
        );
        let vars = Env::from([("POSTGRES_PASSWORD".to_string(), Database::PASSWORD.to_string())]);
        let postgres = Compose::load().service("postgres", &vars).unwrap_or_else(|e| panic!("compose: {e}"));
        let user = postgres.environment.get("POSTGRES_USER").expect("POSTGRES_USER in the postgres service").clone();
        assert!(user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "unusual role name `{user}`");
        let name = format!("{prefix}_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst));

        // Tests create the role concurrently: the loser of the race sees unique_violation.
        let admin_sql = |sql: &str| match psql_at(server, "postgres", sql) {
            Ok(out) => out,
            Err(e) => panic!("`{sql}` on PostgreSQL at {server} (trust auth for `postgres`): {e}"),
        };
        admin_sql(&format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN \
                 CREATE ROLE {user} LOGIN PASSWORD '{pw}'; \
               END IF; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; \
             END $$",
            pw = Database::PASSWORD
        ));
        let can_login = admin_sql(&format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = '{user}'"));
        assert_eq!(can_login.trim(), "t", "role {user} exists but cannot log in");
        admin_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        admin_sql(&format!("CREATE DATABASE {name} OWNER {user}"));
        Database { name, user, server: server.to_string() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &str {
        Database::PASSWORD
    }

    /// `host:port` of its server, what `postgres:5432` becomes.
    pub fn address(&self) -> String {
        self.server.clone()
    }

    /// Straight to PostgreSQL, as `SLUICE_DATABASE_DIRECT_URL` (migrations, LISTEN).
    pub fn direct_url(&self) -> String {
        postgres_url(&self.user, Database::PASSWORD, &self.server, &self.name)
    }
}

impl Drop for Database {
    /// Best effort: `WITH (FORCE)` ends connections a bouncer may still hold.
    fn drop(&mut self) {
        let _ = psql_at(&self.server, "postgres", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// Runs one statement as `postgres` on `database` of the local PostgreSQL; its output
/// (`a|b` rows). Panics on error.
pub fn psql_on(database: &str, sql: &str) -> String {
    psql_at(Database::server(), database, sql).unwrap_or_else(|e| panic!("`{sql}` on {database}: {e}"))
}

/// Runs one statement as `postgres` on `database` of the server at `server`.
pub fn psql_at(server: &str, database: &str, sql: &str) -> Result<String, String> {
    psql_login(server, "postgres", None, database, sql)
}

/// Runs one statement as `user` (with `password`, or none) on `database` of the server (or
/// PgBouncer) at `server`; its output (`a|b` rows), or psql's error message.
pub fn psql_login(
    server: &str,
    user: &str,
    password: Option<&str>,
    database: &str,
    sql: &str,
) -> Result<String, String> {
    let (host, port) = server.split_once(':').expect("host:port");
    let mut cmd = Command::new(tool("psql"));
    cmd.arg(format!("host={host} port={port} user={user} dbname={database} connect_timeout=10"))
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env_remove("PGSERVICE")
        .env_remove("PGPASSWORD");
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    let out = cmd.output().map_err(|e| format!("run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `postgres://user:password@address/database`, user and password percent-encoded.
pub fn postgres_url(user: &str, password: &str, address: &str, database: &str) -> String {
    format!("postgres://{}:{}@{address}/{database}", percent_encode(user), percent_encode(password))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
