//! Standalone: the whole system in one process — SQLite, the in-process queue, the
//! scheduler, a worker and the web server.

use crate::registry::Registry;
use crate::scheduler::Scheduler;
use crate::settings::Settings;
use crate::store::Store;
use crate::worker::{LocalQueue, Worker};
use std::sync::Arc;
use tokio::sync::Notify;

/// Runs until Ctrl-C / SIGTERM: then stops taking work and lets running tasks finish.
pub async fn run(registry: &'static Registry, settings: &Settings) -> Result<(), String> {
    if settings.database_url.is_none() {
        std::fs::create_dir_all(&settings.home).map_err(|e| {
            format!("cannot create {}: {e}; set SLUICE_HOME to a writable folder", settings.home.display())
        })?;
    }
    let store = Store::connect(&settings.store_url()).await.map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    let report = store.sync_pipelines(registry).await.map_err(|e| e.to_string())?;
    for id in &report.added {
        tracing::info!("pipeline {id} added");
    }
    announce_admin(registry, &store).await?;
    sync_connections(registry, &store).await?;
    let (queue, receiver) = LocalQueue::new();
    let dispatch = Arc::new(queue);
    crate::scheduler::Dispatch::dispatch(&*dispatch, store.recover_standalone().await.map_err(|e| e.to_string())?);
    let scheduler = Scheduler::new(registry, store.clone(), dispatch.clone());
    let worker = Worker::new(registry, store.clone(), dispatch, "standalone");
    let shutdown = Arc::new(Notify::new());
    let web = crate::web::serve(store.clone(), scheduler.waker(), settings.port, shutdown.clone()).await?;
    println!(
        "sluice standalone: http://127.0.0.1:{} (health: /health), store {}",
        settings.port,
        crate::store::redact(&settings.store_url())
    );
    let watching = tokio::spawn(watch_other_processes(store.clone(), scheduler.waker(), shutdown.clone()));
    let scheduling = tokio::spawn(scheduler.run(shutdown.clone()));
    let working = tokio::spawn(worker.run(
        receiver,
        usize::try_from(registry.deployment.worker_concurrency).unwrap_or(16),
        shutdown.clone(),
    ));
    wait_for_signal().await;
    println!("shutting down: finishing running tasks");
    shutdown.notify_waiters();
    let _ = tokio::join!(scheduling, working, web, watching);
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
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

/// Wakes the scheduler when another process (the CLI) changed the SQLite file.
async fn watch_other_processes(store: Store, wake: Arc<Notify>, shutdown: Arc<Notify>) {
    let Ok(Some(mut seen)) = store.external_change_marker().await else { return };
    loop {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
            () = shutdown.notified() => return,
        }
        if let Ok(Some(now)) = store.external_change_marker().await
            && now != seen
        {
            seen = now;
            wake.notify_one();
        }
    }
}

/// Writes the connections declared in the YAML into the store (secrets from the
/// environment, encrypted with the Fernet key); those that cannot be written are named.
pub async fn sync_connections(registry: &Registry, store: &Store) -> Result<(), String> {
    let crypto = match crate::crypto::Crypto::from_env(registry.deployment.fernet_key_env) {
        Ok(crypto) => crypto,
        Err(e) => {
            eprintln!("warning: connections not stored: {e}");
            return Ok(());
        }
    };
    let report =
        store.sync_connections(registry, &|name| std::env::var(name).ok(), &crypto).await.map_err(|e| e.to_string())?;
    for skipped in &report.skipped {
        eprintln!("warning: {skipped}");
    }
    Ok(())
}
