//! What Sluice's tests start for themselves: the deployment of `generated/` as local
//! processes (a fresh database on PostgreSQL, the real PgBouncer and Redis on the generated
//! configs, the sluice services with their compose environment), `sluice standalone`,
//! private PostgreSQL and Redis servers (plain or with TLS), an HTTPS server, an SMTP server
//! with STARTTLS and implicit TLS, and the test certificates they present. Every server is
//! a real one; each is stopped on Drop. A missing tool fails the test with the command that
//! installs it (`scripts/install-test-deps.sh`); nothing is skipped.
//!
//! ```ignore
//! use sluice_testkit::{compose::Compose, database::Database, pgbouncer::Bouncer, redis::Redis};
//! let compose = Compose::load();
//! let db = Database::fresh("e2e");
//! let bouncer = Bouncer::start(&compose, &db);
//! let redis = Redis::start(&compose);
//! let mut worker = compose.service("worker", &vars).expect("all variables set");
//! worker.rewrite_addresses(&[
//!     ("postgres:5432/airflow", &format!("{}/{}", db.address(), db.name())),
//!     ("pgbouncer:6432/airflow", &format!("{}/{}", bouncer.address(), db.name())),
//!     ("redis:6379", &redis.address()),
//! ]);
//! ```
//!
//! Services started from compose have only what must differ on one machine rewritten:
//! container paths become temp files, fixed ports become free loopback ports, and the
//! compose host names (`postgres`, `pgbouncer`, `redis`) become `127.0.0.1`.

pub mod certs;
pub mod cluster;
pub mod compose;
pub mod database;
pub mod https;
pub mod pgbouncer;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod smtp;
pub mod standalone;
pub mod venv;
pub mod workspace;

pub use workspace::report;
