//! Standalone: the whole system in one process — SQLite, the in-process queue, the
//! scheduler, a worker and the web server.

use crate::crypto::Crypto;
use crate::registry::Registry;
use crate::scheduler::Scheduler;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};
use crate::worker::{LocalQueue, Worker};
use std::sync::Arc;
use tokio::sync::Notify;

/// Runs until Ctrl-C / SIGTERM: then stops taking work and lets running tasks finish.
pub async fn run(registry: &'static Registry, settings: &Settings) -> Result<(), String> {
    // The home holds the SQLite file and the keys made on first start.
    std::fs::create_dir_all(&settings.home)
        .map_err(|e| format!("cannot create {}: {e}; set SLUICE_HOME to a writable folder", settings.home.display()))?;
    let keys = crate::keys::standalone(registry, &settings.home, &|name| std::env::var(name).ok())?;
    let crypto = Arc::new(keys.crypto.clone());
    let store = Store::connect(&settings.store_url()).await.map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    let report = store.sync_pipelines(registry).await.map_err(|e| e.to_string())?;
    for id in &report.added {
        tracing::info!("pipeline {id} added");
    }
    announce_admin(registry, &store).await?;
    sync_connections(registry, &store, &crypto).await?;
    let (queue, receiver) = LocalQueue::new();
    let dispatch = Arc::new(queue);
    let scheduler = Scheduler::new(registry, store.clone(), dispatch.clone()).with_liveness(settings.liveness());
    let worker = Worker::new(registry, store.clone(), dispatch.clone(), "standalone")
        .taking_next(&[])
        .with_crypto(crypto)
        .with_log_limits(settings.task_log)
        .with_spool(settings.spool())
        .with_record_patience(settings.record_patience);
    let shutdown = Shutdown::new();
    crate::scheduler::Dispatch::dispatch(&*dispatch, recover(&worker, &shutdown).await.map_err(|e| e.to_string())?);
    let web =
        crate::web::serve(registry, store.clone(), scheduler.waker(), keys, settings.port, shutdown.clone()).await?;
    println!(
        "sluice standalone: http://127.0.0.1:{} (health: /health), store {}",
        settings.port,
        crate::store::redact(&settings.store_url())
    );
    let wal = sqlite_file(&settings.store_url()).map(|file| {
        let mut wal = file.into_os_string();
        wal.push("-wal");
        std::path::PathBuf::from(wal)
    });
    let watching =
        tokio::spawn(watch_other_processes(store.clone(), wal, scheduler.waker(), dispatch.clone(), shutdown.clone()));
    let scheduling = tokio::spawn(scheduler.run(shutdown.clone()));
    let beating = tokio::spawn(worker.clone().heartbeat(settings.heartbeat_every, shutdown.clone()));
    let working = tokio::spawn(worker.run(
        receiver,
        usize::try_from(registry.deployment.worker_concurrency).unwrap_or(16),
        shutdown.clone(),
    ));
    crate::shutdown::wait_for_signal().await;
    println!("shutting down: finishing running tasks");
    shutdown.trigger();
    let _ = tokio::join!(scheduling, working, web, watching, beating);
    Ok(())
}

/// What a start must do before the worker claims anything: record the outcomes the last
/// process spooled (their tries are still `running`), then put back to `queued` the tries
/// it left running without an outcome (at-least-once). In the other order the spooled
/// tries would be run again and their outcomes dropped. Returns every queued task
/// instance, for the in-process queue.
pub async fn recover(worker: &Worker, shutdown: &Shutdown) -> Result<Vec<crate::store::Queued>, StoreError> {
    let replayed = worker.replay_spool_first(shutdown).await;
    if replayed != crate::spool::Replayed::default() {
        println!(
            "outcome spool: {} recorded, {} superseded by the store, {} left",
            replayed.recorded,
            replayed.superseded,
            replayed.kept + replayed.stuck
        );
    }
    worker.store().recover_standalone().await
}

/// Creates the first admin if needed and says so; a generated password is shown once.
pub async fn announce_admin(registry: &Registry, store: &Store) -> Result<(), String> {
    match store.ensure_admin(registry.deployment).await.map_err(|e| e.to_string())? {
        crate::store::AdminSetup::Generated { username, password } => println!(
            "admin user `{username}` created with password {password} (shown only now; set {} to choose it)",
            registry.deployment.admin_password_env
        ),
        crate::store::AdminSetup::Created(username) => println!("admin user `{username}` created"),
        crate::store::AdminSetup::Exists(_) => {}
    }
    Ok(())
}

/// Wakes the scheduler when another process (the CLI) changed the SQLite file, and
/// runs what that process queued (marking a task done can queue its downstream).
/// Another process's commit appends to the write-ahead log `wal`: while the log's size
/// and time stay the same, nothing is read from the database, so an idle standalone
/// costs a `stat` every 100 ms.
async fn watch_other_processes(
    store: Store,
    wal: Option<std::path::PathBuf>,
    wake: Arc<Notify>,
    dispatch: Arc<LocalQueue>,
    shutdown: Shutdown,
) {
    let Ok(Some(mut seen)) = store.external_change_marker().await else { return };
    let stamp = |wal: &Option<std::path::PathBuf>| {
        let meta = std::fs::metadata(wal.as_ref()?).ok()?;
        Some((meta.len(), meta.modified().ok()?))
    };
    let mut last = stamp(&wal);
    loop {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            () = shutdown.wait() => return,
        }
        let now = stamp(&wal);
        if now.is_some() && now == last {
            continue;
        }
        last = now;
        if let Ok(Some(now)) = store.external_change_marker().await
            && now != seen
        {
            seen = now;
            // A task instance queued twice is claimed once.
            match store.all_queued().await {
                Ok(queued) => crate::scheduler::Dispatch::dispatch(&*dispatch, queued),
                Err(e) => tracing::warn!("{e}"),
            }
            wake.notify_one();
        }
    }
}

/// The database file of a `sqlite://path` URL; `None` for memory or another database.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Writes the connections declared in the YAML into the store (secrets from the
/// environment, encrypted with `crypto`); those that cannot be written are named.
pub async fn sync_connections(registry: &Registry, store: &Store, crypto: &Crypto) -> Result<(), String> {
    let report =
        store.sync_connections(registry, &|name| std::env::var(name).ok(), crypto).await.map_err(|e| e.to_string())?;
    for skipped in &report.skipped {
        eprintln!("warning: {skipped}");
    }
    Ok(())
}
