//! What Sluice's tests start for themselves: private PostgreSQL and Redis servers (plain
//! or with TLS), an HTTPS server, an SMTP server with STARTTLS and implicit TLS, and the
//! test certificates they present. Every server is a real one; each is stopped on Drop.

pub mod certs;
pub mod compose;
pub mod https;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod smtp;
pub mod venv;
