//! Settings from the environment, with the defaults of the embedded mode.

use crate::registry::Registry;
use std::path::PathBuf;

/// Where the services find the store and what they serve on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SLUICE_DATABASE_URL`; standalone defaults to a SQLite file under `home`.
    pub database_url: Option<String>,
    /// `SLUICE_DATABASE_DIRECT_URL`: the database without PgBouncer, for migrations.
    pub database_direct_url: Option<String>,
    /// `SLUICE_HOME` (default `./sluice-data`): the SQLite file and other local state.
    pub home: PathBuf,
    /// `SLUICE_WEBSERVER_PORT`, else the deployment's `webserver_port`.
    pub port: u16,
}

impl Settings {
    pub fn from_env(registry: &Registry) -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Settings {
            database_url: var("SLUICE_DATABASE_URL"),
            database_direct_url: var("SLUICE_DATABASE_DIRECT_URL"),
            home: var("SLUICE_HOME").map_or_else(|| PathBuf::from("sluice-data"), PathBuf::from),
            port: var("SLUICE_WEBSERVER_PORT")
                .and_then(|p| p.parse().ok())
                .unwrap_or(registry.deployment.webserver_port),
        }
    }

    /// The store URL: the configured one, or the standalone SQLite file.
    pub fn store_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.home.join("sluice.sqlite").display()))
    }

    /// The URL migrations use: direct when configured (PgBouncer cannot hold the
    /// migration lock's session), else the store URL.
    pub fn migration_url(&self) -> String {
        self.database_direct_url.clone().unwrap_or_else(|| self.store_url())
    }
}
