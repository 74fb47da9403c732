//! Connections: resolved from the compiled specs and the environment, or added at run time.

use std::fmt;

/// A resolved connection: secrets are filled from the environment by the runtime.
#[derive(Clone, Default)]
pub struct Connection {
    pub id: String,
    pub conn_type: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub schema: Option<String>,
    pub database: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for Connection {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("conn_type", &self.conn_type)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("login", &self.login)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

