//! Where a declared connection's settings come from at run time, first match wins:
//! 1. the environment: `SLUICE_CONN_<ID>`, then Airflow's `AIRFLOW_CONN_<ID>` (a URI or JSON);
//! 2. without external services (no `SLUICE_DATABASE_URL`), the `standalone:` URI;
//! 3. the declaration in `pipelines.yaml`, its secrets read from the environment.

use crate::connection::Connection;
use crate::registry::Registry;
use crate::spec::ConnectionSpec;
use std::path::{Path, PathBuf};

/// Resolves the connections of one registry.
#[derive(Debug, Clone)]
pub struct Resolver {
    registry: &'static Registry,
    /// Set when Sluice runs without external services: connections then resolve to their
    /// `standalone:` URI, relative paths under this directory (`SLUICE_HOME`).
    standalone_home: Option<PathBuf>,
}

impl Resolver {
    /// Standalone when `SLUICE_DATABASE_URL` is unset (the store is then the embedded
    /// SQLite file), with `SLUICE_HOME` (default `./sluice-data`) as the home.
    pub fn from_env(registry: &'static Registry) -> Resolver {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let standalone_home = match var(sluice_contract::settings::DATABASE_URL) {
            Some(_) => None,
            None => {
                Some(var(sluice_contract::settings::HOME).map_or_else(|| PathBuf::from("sluice-data"), PathBuf::from))
            }
        };
        Resolver { registry, standalone_home }
    }

    /// Whether `standalone:` URIs are used, and the directory their relative paths are under.
    pub fn standalone(mut self, home: Option<PathBuf>) -> Resolver {
        self.standalone_home = home;
        self
    }

    /// The connection `id`, or one sentence saying why it cannot be had.
    pub fn resolve(&self, id: &str) -> Result<Connection, String> {
        if let Some(conn) = connection_from_env(id) {
            return conn;
        }
        let spec = self
            .registry
            .connections
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| format!("connection `{id}` is not declared in {}", self.registry.source))?;
        match (&self.standalone_home, spec.standalone_uri) {
            (Some(home), Some(uri)) => standalone_connection(spec, uri, home),
            _ => Connection::from_spec(spec, &|name: &str| std::env::var(name).ok()).map_err(|e| e.to_string()),
        }
    }
}

/// A connection's `standalone:` URI. A relative sqlite file or `file` directory is under
/// `home`, except one written `./…`, which is relative to the working directory (data a
/// repository ships: `file://./data/sample`).
fn standalone_connection(spec: &ConnectionSpec, uri: &str, home: &Path) -> Result<Connection, String> {
    let mut conn = Connection::from_uri(spec.id, uri).map_err(|e| format!("{e} (its `standalone:` URI)"))?;
    conn.description = spec.description.to_string();
    if matches!(conn.conn_type.as_str(), "sqlite" | "file")
        && let Some(path) = conn.database.take()
    {
        let relative = Path::new(&path).is_relative() && !path.starts_with("./");
        conn.database = Some(if relative { home.join(&path).display().to_string() } else { path });
    }
    Ok(conn)
}

/// A connection given in the environment (`SLUICE_CONN_<ID>`, then Airflow's
/// `AIRFLOW_CONN_<ID>`, as a URI or JSON) overrides the one declared in the YAML.
fn connection_from_env(id: &str) -> Option<Result<Connection, String>> {
    let upper = id.to_ascii_uppercase();
    [sluice_contract::settings::CONN_PREFIX, "AIRFLOW_CONN_"].iter().find_map(|prefix| {
        let name = format!("{prefix}{upper}");
        let value = std::env::var(&name).ok()?;
        let parsed = crate::connection::connections_from_env(std::iter::once((name, value))).into_iter().next()?;
        Some(parsed.map_err(|e| e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::standalone_connection;
    use crate::spec::{ConnType, ConnectionSpec};
    use std::path::Path;

    fn spec(uri: &'static str) -> ConnectionSpec {
        ConnectionSpec {
            id: "c",
            conn_type: ConnType::Postgres,
            description: "d",
            host: Some("postgres"),
            port: None,
            schema: None,
            database: None,
            login: None,
            password_env: Some("UNSET_PASSWORD"),
            extra_json: "{}",
            standalone_uri: Some(uri),
        }
    }

    #[test]
    fn standalone_paths_are_under_home_unless_dot_relative() {
        let home = Path::new("/h");
        let resolve = |uri: &'static str| {
            let conn = standalone_connection(&spec(uri), uri, home).expect("a valid URI");
            (conn.conn_type, conn.database.unwrap_or_default())
        };
        assert_eq!(resolve("sqlite://mlsp.sqlite"), ("sqlite".into(), "/h/mlsp.sqlite".into()));
        assert_eq!(resolve("sqlite:////abs/x.db"), ("sqlite".into(), "/abs/x.db".into()));
        assert_eq!(resolve("file://mlflow"), ("file".into(), "/h/mlflow".into()));
        assert_eq!(resolve("file://./data/sample"), ("file".into(), "./data/sample".into()));
        assert_eq!(resolve("file:///srv/feed"), ("file".into(), "/srv/feed".into()));
        // No secret is needed: the declared password variable is not read.
        assert_eq!(standalone_connection(&spec("sqlite://a.db"), "sqlite://a.db", home).map(|c| c.password), Ok(None));
    }
}
