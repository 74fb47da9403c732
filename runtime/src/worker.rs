//! The worker: claims queued task instances, runs them through the executors, streams
//! their logs into the store, and records the outcome — which, in the same transaction,
//! queues whatever became ready downstream.

use crate::clock::to_rfc3339;
use crate::connection::Connection;
use crate::registry::Registry;
use crate::scheduler::Dispatch;
use crate::spec::{ConnectionSpec, PipelineSpec, TaskKind, TaskSpec};
use crate::store::{Claimed, Outcome, Queued, Store, StoreError};
use crate::task::{Logger, RunInfo, TaskInput};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore, mpsc};

/// The in-process queue of standalone mode: task instance ids in dispatch order.
#[derive(Debug, Clone)]
pub struct LocalQueue {
    tx: mpsc::UnboundedSender<i64>,
}

impl LocalQueue {
    pub fn new() -> (LocalQueue, mpsc::UnboundedReceiver<i64>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (LocalQueue { tx }, rx)
    }
}

impl Dispatch for LocalQueue {
    fn dispatch(&self, queued: Vec<Queued>) {
        for q in queued {
            // The receiver lives as long as the worker; after shutdown the store still
            // holds the task as queued, and the next start picks it up.
            let _ = self.tx.send(q.ti_id);
        }
    }
}

#[derive(Debug, Clone)]
pub struct Worker {
    registry: &'static Registry,
    store: Store,
    dispatch: Arc<dyn Dispatch>,
    name: String,
    /// Variables for templates (`var.value.X`).
    variables: Arc<BTreeMap<String, String>>,
    /// Set when Sluice runs without external services: connections then resolve to their
    /// `standalone:` URI, relative paths under this directory (`SLUICE_HOME`).
    standalone_home: Option<PathBuf>,
}

impl Worker {
    pub fn new(
        registry: &'static Registry,
        store: Store,
        dispatch: Arc<dyn Dispatch>,
        name: impl Into<String>,
    ) -> Worker {
        Worker {
            registry,
            store,
            dispatch,
            name: name.into(),
            variables: Arc::new(BTreeMap::new()),
            standalone_home: standalone_home_from_env(),
        }
    }

    /// Whether connections resolve to their `standalone:` URIs, and the directory
    /// (`SLUICE_HOME`) their relative paths are under. [`Worker::new`] decides from the
    /// environment: standalone when `SLUICE_DATABASE_URL` is unset, as the store is then
    /// the embedded SQLite file.
    pub fn standalone_connections(mut self, home: Option<PathBuf>) -> Worker {
        self.standalone_home = home;
        self
    }

    /// Takes task instances from `queue` and runs up to `concurrency` at once, until
    /// `shutdown` is notified; running tasks are finished before it returns.
    pub async fn run(self, mut queue: mpsc::UnboundedReceiver<i64>, concurrency: usize, shutdown: Arc<Notify>) {
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        loop {
            let ti_id = tokio::select! {
                next = queue.recv() => match next { Some(id) => id, None => break },
                () = shutdown.notified() => break,
            };
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let worker = self.clone();
            tokio::spawn(async move {
                if let Err(e) = worker.run_task(ti_id).await {
                    tracing::warn!("task instance {ti_id}: {e}");
                }
                drop(permit);
            });
        }
        // Wait for running tasks: every permit back means nothing runs.
        let _ = slots.acquire_many(u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX)).await;
    }

    /// Claims, runs and records one task instance. A claim lost to another worker is
    /// not an error.
    pub async fn run_task(&self, ti_id: i64) -> Result<(), StoreError> {
        let Some(claimed) = self.store.claim(ti_id, &self.name).await? else { return Ok(()) };
        let pipeline = self.registry.pipeline(&claimed.pipeline_id);
        let task = pipeline.and_then(|p| p.task(&claimed.task_id));
        let (Some(pipeline), Some(task)) = (pipeline, task) else {
            let message = format!(
                "task `{}` of pipeline `{}` is not in this build of the pipelines",
                claimed.task_id, claimed.pipeline_id
            );
            return self.record(None, &claimed, Outcome::Failed(message)).await;
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let input = match self.input(pipeline, task, &claimed, Logger::streaming(tx)) {
            Ok(input) => input,
            Err(message) => return self.record(Some(pipeline), &claimed, Outcome::Failed(message)).await,
        };
        let store = self.store.clone();
        let (ti, try_number) = (claimed.ti_id, claimed.try_number);
        let logs = tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(line) = rx.recv().await {
                batch.push((line.stream.as_str().to_string(), line.text));
                while let Ok(more) = rx.try_recv() {
                    batch.push((more.stream.as_str().to_string(), more.text));
                }
                if let Err(e) = store.append_logs(ti, try_number, &batch).await {
                    tracing::warn!("cannot write the log of task instance {ti}: {e}");
                }
                batch.clear();
            }
        });
        let env = crate::executor::ExecEnv::new(self.variables_for(&input.log).await);
        let result = crate::executor::execute(self.registry, pipeline, task, input, &env).await;
        // The input (and its log sender) is dropped by now: the log writer drains and ends.
        let _ = logs.await;
        let outcome = match result {
            Ok(outputs) => Outcome::Success(outputs),
            Err(e) => Outcome::Failed(e.message),
        };
        self.record(Some(pipeline), &claimed, outcome).await
    }

    /// The variables templates see (`var.value.X`): the fixed ones given to the worker,
    /// then those in the store; values of secret variables are masked in the task log.
    async fn variables_for(&self, log: &Logger) -> Arc<BTreeMap<String, String>> {
        let mut all = (*self.variables).clone();
        let stored = match crate::crypto::Crypto::from_env(self.registry.deployment.fernet_key_env) {
            Ok(crypto) => self.store.variables(&crypto).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(vars) => {
                for v in vars {
                    if v.secret {
                        log.mask(&v.value);
                    }
                    all.insert(v.key, v.value);
                }
            }
            Err(e) => tracing::warn!("variables are not available to templates: {e}"),
        }
        Arc::new(all)
    }

    async fn record(
        &self,
        pipeline: Option<&PipelineSpec>,
        claimed: &Claimed,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        if let Outcome::Failed(message) = &outcome {
            self.store.append_logs(claimed.ti_id, claimed.try_number, &[("error".into(), message.clone())]).await?;
        }
        let Some(pipeline) = pipeline else { return Ok(()) };
        let queued = self
            .store
            .finish(pipeline, claimed.ti_id, claimed.try_number, &outcome, self.registry.deployment.parallelism)
            .await?;
        self.dispatch.dispatch(queued);
        Ok(())
    }

    /// The untyped input of a task instance: run info, params, the connections it
    /// declared (and the one its step uses), upstream outputs.
    fn input(
        &self,
        pipeline: &PipelineSpec,
        task: &TaskSpec,
        claimed: &Claimed,
        log: Logger,
    ) -> Result<TaskInput, String> {
        let conf: serde_json::Value = serde_json::from_str(&claimed.run.conf).unwrap_or(serde_json::Value::Null);
        let params = crate::params::resolve(pipeline, &conf)?;
        let mut ids: Vec<&str> = task.connections.to_vec();
        match &task.kind {
            TaskKind::Http { conn, .. } | TaskKind::Sql { conn, .. } => ids.push(conn),
            _ => {}
        }
        let mut connections = BTreeMap::new();
        for id in ids {
            if let Some(conn) = connection_from_env(id) {
                let conn = conn?;
                if let Some(password) = &conn.password {
                    log.mask(password);
                }
                connections.insert(id.to_string(), conn);
                continue;
            }
            let spec = self
                .registry
                .connections
                .iter()
                .find(|c| c.id == id)
                .ok_or_else(|| format!("connection `{id}` is not declared in {}", self.registry.source))?;
            let conn = match (&self.standalone_home, spec.standalone_uri) {
                (Some(home), Some(uri)) => standalone_connection(spec, uri, home)?,
                _ => Connection::from_spec(spec, &|name: &str| std::env::var(name).ok()).map_err(|e| e.to_string())?,
            };
            if let Some(password) = &conn.password {
                log.mask(password);
            }
            connections.insert(id.to_string(), conn);
        }
        let run = &claimed.run;
        Ok(TaskInput {
            run: RunInfo {
                pipeline_id: claimed.pipeline_id.clone(),
                run_id: run.run_id.clone(),
                task_id: claimed.task_id.clone(),
                try_number: u32::try_from(claimed.try_number).unwrap_or(u32::MAX),
                logical_date: to_rfc3339(run.logical_date),
                data_interval_start: to_rfc3339(run.data_interval_start),
                data_interval_end: to_rfc3339(run.data_interval_end),
            },
            params,
            connections,
            upstream_outputs: claimed.outputs.clone(),
            log,
        })
    }
}

/// `SLUICE_HOME` (default `./sluice-data`) when `SLUICE_DATABASE_URL` is unset, the
/// same rule as [`crate::settings::Settings`].
fn standalone_home_from_env() -> Option<PathBuf> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if var("SLUICE_DATABASE_URL").is_some() {
        return None;
    }
    Some(var("SLUICE_HOME").map_or_else(|| PathBuf::from("sluice-data"), PathBuf::from))
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
    ["SLUICE_CONN_", "AIRFLOW_CONN_"].iter().find_map(|prefix| {
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
