//! Connections of SQL tasks, kept open between tasks: a shelf of idle connections per
//! connection id in each worker ([`SqlConnections`], which the worker hands to every task's
//! [`super::super::ExecEnv`]). Opening a PostgreSQL connection costs a TCP
//! handshake, startup and authentication (about 20 ms, more with TLS); opening a SQLite file
//! a few milliseconds. Rust bodies' SQL helpers open their own connection each time.
//!
//! Why not sqlx's `Pool`: it retries a refused connection until its acquire timeout and
//! then reports only that it timed out, where a task must fail at once with the server's
//! own error, as it did on a fresh connection. Here a task takes an idle connection that
//! still answers a ping, or opens one itself exactly as before.
//!
//! A shelf is keyed by the connection's id and a fingerprint of everything that says how to
//! connect: a connection edited in the UI or its environment variable gets a new shelf on its
//! next use. An idle connection is dropped after [`IDLE`], any after [`LIFETIME`].
//!
//! What one task leaves on a connection does not reach the next: a PostgreSQL connection
//! rolls back a transaction left open and resets its session (settings, role, temporary
//! tables, cursors, advisory locks, listeners) before it goes back on the shelf; a SQLite
//! connection rolls back a transaction left open. One whose reset fails, or whose task
//! failed, is closed. Every task that uses a shelf declared the same connection, so it can
//! only reach what that connection's credentials already reach.

use crate::connection::Connection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Idle connections a shelf keeps at most.
const MAX_IDLE: usize = 16;
/// An idle connection is closed after this long.
const IDLE: Duration = Duration::from_secs(60);
/// A connection is replaced after this long, so server-side changes (a password rotated,
/// a server moved behind the same name) are picked up.
const LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The idle connections of one connection id, as it was when they were opened.
pub(super) struct Shelf<C> {
    fingerprint: u64,
    idle: Mutex<Vec<Idle<C>>>,
}

struct Idle<C> {
    conn: C,
    opened: Instant,
    since: Instant,
}

type Shelves<C> = Mutex<HashMap<String, Arc<Shelf<C>>>>;

/// A worker's shelves. Connections belong to the async runtime that opened them, so the
/// shelves live with the worker, not in a process-wide static.
#[derive(Clone, Default)]
pub struct SqlConnections {
    postgres: Arc<Shelves<PgConnection>>,
    sqlite: Arc<Shelves<SqliteConnection>>,
}

impl std::fmt::Debug for SqlConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqlConnections")
    }
}

type Reset<'c> = Pin<Box<dyn Future<Output = bool> + Send + 'c>>;

/// A connection taken for one task; [`Lease::give_back`] returns it.
pub(super) struct Lease<C: Kind> {
    conn: C,
    opened: Instant,
    /// None: a connection for one use, closed when given back.
    shelf: Option<Arc<Shelf<C>>>,
}

/// A kind of connection that can be shelved.
pub(super) trait Kind: sqlx::Connection + Sized + 'static {
    fn shelves(all: &SqlConnections) -> &Shelves<Self>;
    /// Back to a fresh session; false when the connection should be closed instead.
    fn reset(&mut self) -> Reset<'_>;
}

impl Kind for PgConnection {
    fn shelves(all: &SqlConnections) -> &Shelves<Self> {
        &all.postgres
    }

    /// Ends a transaction the task left open (PostgreSQL only warns when there is none),
    /// then resets the session.
    fn reset(&mut self) -> Reset<'_> {
        Box::pin(async move {
            sqlx::raw_sql("ROLLBACK").execute(&mut *self).await.is_ok()
                && sqlx::raw_sql(RESET_SESSION).execute(&mut *self).await.is_ok()
        })
    }
}

/// What `DISCARD ALL` does, but `DEALLOCATE ALL`: behind PgBouncer with prepared
/// statements enabled, dropping the server's statements would break other clients' ones.
const RESET_SESSION: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
     SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES";

impl Kind for SqliteConnection {
    fn shelves(all: &SqlConnections) -> &Shelves<Self> {
        &all.sqlite
    }

    /// Rolls back a transaction the task left open (an error when there is none, which is
    /// the usual case and harmless).
    fn reset(&mut self) -> Reset<'_> {
        Box::pin(async move {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *self).await;
            true
        })
    }
}

/// An idle connection of `conn` from `shelves` that still answers, or a new one from
/// `open` (which is all there is without shelves).
pub(super) async fn take<C, F>(
    shelves: Option<&SqlConnections>,
    conn: &Connection,
    open: F,
) -> Result<Lease<C>, sqlx::Error>
where
    C: Kind,
    F: Future<Output = Result<C, sqlx::Error>>,
{
    let shelf = shelves.map(|all| shelf::<C>(all, conn));
    while let Some(mut idle) = shelf.as_ref().and_then(|shelf| shelf.pop()) {
        if idle.conn.ping().await.is_ok() {
            return Ok(Lease { conn: idle.conn, opened: idle.opened, shelf });
        }
    }
    Ok(Lease { conn: open.await?, opened: Instant::now(), shelf })
}

impl<C: Kind> Lease<C> {
    /// Resets the connection and puts it back on its shelf (two round trips on PostgreSQL,
    /// paid before the task ends so the next task finds it there); closes it without one.
    pub(super) async fn give_back(self) {
        let Lease { mut conn, opened, shelf } = self;
        match shelf {
            Some(shelf) if conn.reset().await => shelf.put(Idle { conn, opened, since: Instant::now() }),
            _ => {
                let _ = conn.close().await;
            }
        }
    }
}

impl<C: Kind> Deref for Lease<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C: Kind> DerefMut for Lease<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

impl<C> Shelf<C> {
    /// The most recently used idle connection still within its limits; older ones are
    /// dropped on the way.
    fn pop(&self) -> Option<Idle<C>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(candidate) = idle.pop() {
            if candidate.since.elapsed() < IDLE && candidate.opened.elapsed() < LIFETIME {
                return Some(candidate);
            }
        }
        None
    }

    fn put(&self, conn: Idle<C>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// The shelf of `conn`, a new one when there is none or `conn` changed since.
fn shelf<C: Kind>(all: &SqlConnections, conn: &Connection) -> Arc<Shelf<C>> {
    let fingerprint = fingerprint(conn);
    let mut shelves = C::shelves(all).lock().unwrap_or_else(PoisonError::into_inner);
    match shelves.get(&conn.id) {
        Some(shelf) if shelf.fingerprint == fingerprint => Arc::clone(shelf),
        _ => {
            let shelf = Arc::new(Shelf { fingerprint, idle: Mutex::default() });
            shelves.insert(conn.id.clone(), Arc::clone(&shelf));
            shelf
        }
    }
}

/// Everything that says how to connect, hashed: the id alone would keep connections whose
/// password or host has since changed.
fn fingerprint(conn: &Connection) -> u64 {
    let mut hasher = DefaultHasher::new();
    (&conn.conn_type, &conn.host, conn.port, &conn.schema, &conn.database, &conn.login, &conn.password)
        .hash(&mut hasher);
    serde_json::Value::Object(conn.extra.clone()).to_string().hash(&mut hasher);
    hasher.finish()
}
