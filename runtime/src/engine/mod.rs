//! The engine: what decides and does the work, whatever surface asks. The store
//! (PostgreSQL or SQLite, the truth), the pure rules it decides with, the scheduler, the
//! worker with its executors, the broker (Redis, a dispatch channel), and what they share:
//! settings, secrets, templates, connections, task logs.

pub mod broker;
pub mod clock;
pub mod connection;
pub mod crypto;
pub mod effective;
pub mod executor;
pub mod io;
pub mod keys;
pub mod notify;
pub mod params;
pub mod registry;
pub mod repair;
pub mod resolver;
pub mod rules;
pub mod scheduler;
pub mod secrets;
pub mod settings;
pub mod shutdown;
/// The compiled pipelines' static tables (shared with the compiler).
pub use sluice_contract::spec;
pub mod spool;
pub mod store;
pub mod task;
pub mod tasklog;
pub mod template;
pub mod timetable;
pub mod tls;
pub mod worker;
