//! The services of distributed mode, one process each, as `generated/docker-compose.yml`
//! runs them: `sluice scheduler`, `sluice worker`, `sluice webserver` (and the one-shot
//! `sluice init`). They share PostgreSQL (through PgBouncer) as the truth and Redis
//! Streams as the dispatch channel.
//!
//! None of them crash-loops while a dependency is away: the scheduler and workers wait
//! for the database with backoff before they start, and ride out later outages (the
//! store's pool reconnects; the broker reconnects with backoff); the web server answers
//! at once and reports the database unhealthy meanwhile. SIGTERM stops each gracefully.

use crate::broker::{Acker, Backoff, Broker, Delivery, RECLAIM_IDLE, RedisDispatch};
use crate::registry::Registry;
use crate::scheduler::{Dispatch, Scheduler};
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::store::{Claimed, Store};
use crate::worker::Worker;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// How often the scheduler checks whether Redis restarted (and lost its streams).
const BROKER_CHECK: Duration = Duration::from_secs(5);
/// How long a worker keeps trying to claim a delivered task while the database is away.
const CLAIM_PATIENCE: Duration = Duration::from_secs(60);
/// How often a worker claims entries that dead workers left pending.
const RECLAIM_EVERY: Duration = Duration::from_secs(15);

/// `sluice scheduler`: creates runs, queues ready tasks, reaps zombies and re-dispatches
/// lost work. Several may run at once: each pipeline's changes take turns on its row lock.
pub async fn scheduler(registry: &'static Registry, settings: &Settings) -> Result<(), String> {
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let broker = broker(registry, settings)?;
    let Some(store) = wait_for_store(registry, settings, &shutdown).await else { return Ok(()) };
    let dispatch = Arc::new(RedisDispatch::start(broker.clone()));
    let scheduler = Scheduler::new(registry, store.clone(), dispatch.clone()).with_liveness(settings.liveness());
    let wake = scheduler.waker();
    let forwarding = {
        let (broker, shutdown) = (broker.clone(), shutdown.clone());
        tokio::spawn(async move { broker.forward_wakes(wake, shutdown).await })
    };
    let watching = tokio::spawn(republish_after_broker_restarts(broker, store, dispatch, shutdown.clone()));
    println!("sluice scheduler: started");
    scheduler.run(shutdown).await;
    let _ = tokio::join!(forwarding, watching);
    println!("sluice scheduler: stopped");
    Ok(())
}

/// Publishes every queued task instance again when Redis is new to us: at start, and
/// whenever its run id changes (a restart, which without persistence loses the streams).
async fn republish_after_broker_restarts(
    broker: Broker,
    store: Store,
    dispatch: Arc<RedisDispatch>,
    shutdown: Shutdown,
) {
    let mut known: Option<String> = None;
    loop {
        match broker.server_run_id().await {
            Ok(id) if known.as_ref() != Some(&id) => match store.all_queued().await {
                Ok(queued) => {
                    if known.is_some() {
                        tracing::warn!("Redis restarted: dispatching {} queued task(s) again", queued.len());
                    }
                    dispatch.dispatch(queued);
                    known = Some(id);
                }
                Err(e) => tracing::warn!("cannot list queued tasks: {e}"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(BROKER_CHECK) => {}
            () = shutdown.wait() => return,
        }
    }
}

/// `sluice worker`: takes task instances of `queues` from the broker and runs up to
/// `concurrency` at once. On SIGTERM it stops taking work, lets running tasks finish
/// for the grace period, then stops the rest and hands them back to the queue.
pub async fn worker(
    registry: &'static Registry,
    settings: &Settings,
    queues: Vec<String>,
    concurrency: usize,
) -> Result<(), String> {
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let broker = broker(registry, settings)?;
    let Some(store) = wait_for_store(registry, settings, &shutdown).await else { return Ok(()) };
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let name = format!("{host}-{}", std::process::id());
    let dispatch = Arc::new(RedisDispatch::start(broker.clone()));
    let worker = Worker::new(registry, store.clone(), dispatch, name.clone())
        .taking_next(&queues)
        .with_log_limits(settings.task_log)
        .with_spool(settings.spool())
        .with_record_patience(settings.record_patience);
    // Outcomes an earlier worker process could not record come before any new work.
    let replayed = worker.replay_spool_first(&shutdown).await;
    if replayed != crate::spool::Replayed::default() {
        println!(
            "sluice worker {name}: outcome spool: {} recorded, {} superseded by the store, {} left",
            replayed.recorded,
            replayed.superseded,
            replayed.kept + replayed.stuck
        );
    }
    let beating = tokio::spawn(worker.clone().heartbeat(settings.heartbeat_every, shutdown.clone()));
    let concurrency = concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    // Given when the grace period is over: running tasks stop and are handed back.
    let abandon = Shutdown::new();
    let mut reader = broker.reader(&name, &queues);
    let (acker, acks_sent) = broker.acker();
    let mut backoff = Backoff::new();
    let mut last_reclaim: Option<tokio::time::Instant> = None;
    println!("sluice worker {name}: queues {}, concurrency {concurrency}", queues.join(","));
    while !shutdown.is_triggered() {
        let free = slots.available_permits();
        if free == 0 {
            tokio::select! {
                permit = slots.clone().acquire_owned() => drop(permit),
                () = shutdown.wait() => break,
            }
            continue;
        }
        let mut deliveries = tokio::select! {
            read = reader.read(free) => match read {
                Ok(deliveries) => {
                    backoff.reset();
                    deliveries
                }
                Err(e) => {
                    tracing::warn!("{e}; retrying in {:?}", backoff.peek());
                    tokio::select! { () = backoff.wait() => continue, () = shutdown.wait() => break }
                }
            },
            () = shutdown.wait() => break,
        };
        if last_reclaim.is_none_or(|at| at.elapsed() >= RECLAIM_EVERY) {
            match broker.reclaim(&name, &queues, RECLAIM_IDLE).await {
                Ok(reclaimed) => deliveries.extend(reclaimed),
                Err(e) => tracing::warn!("{e}"),
            }
            last_reclaim = Some(tokio::time::Instant::now());
        }
        if deliveries.is_empty() {
            continue;
        }
        // Claimed together, in one transaction; what is left unclaimed stays pending in
        // the stream, to be reclaimed.
        let Some(claimed) = claim_patiently(&worker, &deliveries, &shutdown).await else { continue };
        let mut claimed: HashMap<i64, Claimed> = claimed.into_iter().map(|c| (c.ti_id, c)).collect();
        for delivery in deliveries {
            // A duplicate entry, or a task instance no longer queued: nothing to run.
            let Some(claimed) = claimed.remove(&delivery.ti_id) else {
                acker.send(Some(delivery), false);
                continue;
            };
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let (worker, broker, acker, abandon) = (worker.clone(), broker.clone(), acker.clone(), abandon.clone());
            tokio::spawn(async move {
                process(&worker, &broker, &acker, delivery, claimed, &abandon).await;
                drop(permit);
            });
        }
    }
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    let running = concurrency - slots.available_permits();
    if running > 0 {
        println!("sluice worker {name}: stopping; {running} running task(s) get {:?} to finish", settings.worker_grace);
    }
    if tokio::time::timeout(settings.worker_grace, slots.acquire_many(all)).await.is_err() {
        abandon.trigger();
        let _ = slots.acquire_many(all).await;
    }
    let _ = beating.await;
    // Every task has ended: what they acknowledged is sent before the process goes.
    drop(acker);
    let _ = acks_sent.await;
    println!("sluice worker {name}: stopped");
    Ok(())
}

/// Claims delivered task instances for this worker in one transaction, retrying while
/// the database is away (rather than leave them to the stuck-task sweep); `None` when it
/// stays away for [`CLAIM_PATIENCE`] or the worker stops.
async fn claim_patiently(worker: &Worker, deliveries: &[Delivery], shutdown: &Shutdown) -> Option<Vec<Claimed>> {
    let ids: Vec<i64> = deliveries.iter().map(|d| d.ti_id).collect();
    let mut backoff = Backoff::new();
    let started = tokio::time::Instant::now();
    loop {
        match worker.claim_many(&ids).await {
            Ok(claimed) => return Some(claimed),
            Err(e) if started.elapsed() < CLAIM_PATIENCE => {
                tracing::warn!("task instances {ids:?}: {e}; retrying in {:?}", backoff.peek());
                tokio::select! {
                    () = backoff.wait() => {}
                    () = shutdown.wait() => return None,
                }
            }
            Err(e) => {
                tracing::warn!("task instances {ids:?}: {e}; left pending for another try");
                return None;
            }
        }
    }
}

/// Runs one delivered, claimed task instance and acknowledges its entry once the outcome
/// is in the store.
async fn process(
    worker: &Worker,
    broker: &Broker,
    acker: &Acker,
    delivery: Delivery,
    mut claimed: Claimed,
    abandon: &Shutdown,
) {
    // The delivered task, then whatever this worker claimed while finishing the one before.
    let mut delivered = Some(delivery);
    loop {
        tokio::select! {
            finished = worker.run_claimed(&claimed) => match finished {
                Ok(mut finished) => {
                    crate::failpoint!("worker.before_ack");
                    acker.send(delivered.take(), finished.needs_scheduler());
                    match finished.next.take() {
                        Some(next) => claimed = next,
                        None => return,
                    }
                }
                Err(e) => return tracing::warn!("task instance {}: outcome not recorded: {e}", claimed.ti_id),
            },
            () = abandon.wait() => {
                // A try whose outcome is spooled has ended: it is recorded from the spool,
                // and handing it back would run it again under the same try number.
                if worker.spooled(claimed.ti_id, claimed.try_number).await {
                    tracing::warn!("task instance {}: its outcome waits in the spool", claimed.ti_id);
                    return;
                }
                match worker.store().hand_back(claimed.ti_id, claimed.try_number).await {
                    Ok(Some(queued)) => {
                        tracing::warn!("task instance {} handed back unfinished", claimed.ti_id);
                        if let Err(e) = broker.publish(&[queued]).await {
                            tracing::warn!("{e}; the scheduler will dispatch it again");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("task instance {}: cannot hand it back: {e}", claimed.ti_id),
                }
                acker.send(delivered.take(), false);
                return;
            }
        }
    }
}

/// `sluice webserver`: the UI, the API and `/health`. It listens at once; the database
/// is reached on first use, so `/health` reports it unhealthy while it is away.
pub async fn webserver(registry: &'static Registry, settings: &Settings) -> Result<(), String> {
    let keys = crate::keys::webserver(registry, &|name| std::env::var(name).ok())?;
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let store = Store::connect_lazy(&settings.store_url()).await.map_err(|e| e.to_string())?;
    let wake = Arc::new(Notify::new());
    if settings.broker_url.is_some() {
        let broker = broker(registry, settings)?;
        let (wake, shutdown) = (wake.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = wake.notified() => {}
                    () = shutdown.wait() => return,
                }
                if let Err(e) = broker.wake_schedulers().await {
                    tracing::warn!("{e}");
                }
            }
        });
    }
    let web = crate::web::serve(registry, store, wake, keys, settings.port, shutdown.clone()).await?;
    println!("sluice webserver: http://0.0.0.0:{} (health: /health)", settings.port);
    let _ = web.await;
    println!("sluice webserver: stopped");
    Ok(())
}

/// The broker of `SLUICE_BROKER_URL`.
pub fn broker(registry: &Registry, settings: &Settings) -> Result<Broker, String> {
    let url = settings.broker_url.as_deref().ok_or_else(|| {
        "SLUICE_BROKER_URL is not set: distributed services need the Redis broker, e.g. redis://redis:6379/1 \
         (or run everything in one process with `sluice standalone`)"
            .to_string()
    })?;
    Broker::new(url, registry.deployment.project).map_err(|e| e.to_string())
}

/// Tells the schedulers to look now, when a broker is configured (after the CLI changed
/// something they act on); best effort, as their sweep would find it anyway.
pub async fn wake_schedulers(registry: &Registry, settings: &Settings) {
    if settings.broker_url.is_none() {
        return;
    }
    match broker(registry, settings) {
        Ok(broker) => {
            if let Err(e) = broker.wake_schedulers().await {
                tracing::warn!("{e}; the schedulers will notice within their sweep");
            }
        }
        Err(e) => tracing::warn!("{e}"),
    }
}

/// Dispatches task instances the CLI queued, when a broker is configured (standalone
/// picks them up when it notices the change); best effort, as the scheduler dispatches
/// what stays queued too long.
pub async fn publish(registry: &Registry, settings: &Settings, queued: &[crate::store::Queued]) {
    if settings.broker_url.is_none() || queued.is_empty() {
        return;
    }
    match broker(registry, settings).map(|b| async move { b.publish(queued).await }) {
        Ok(sent) => {
            if let Err(e) = sent.await {
                tracing::warn!("{e}; the scheduler will dispatch them again");
            }
        }
        Err(e) => tracing::warn!("{e}"),
    }
}

/// The store, once the database answers and `sluice init` has prepared it; `None` when
/// told to stop first. Waiting says why, with backoff, instead of exiting.
async fn wait_for_store(registry: &'static Registry, settings: &Settings, shutdown: &Shutdown) -> Option<Store> {
    let url = settings.store_url();
    let mut backoff = Backoff::new();
    loop {
        let ready = async {
            let store = Store::connect(&url).await.map_err(|e| e.to_string())?;
            // The pipelines this binary carries must be known to the store (`init` syncs
            // them; a newer binary syncs its own).
            store.sync_pipelines(registry).await.map_err(|e| format!("{e} (has `sluice init` run?)"))?;
            Ok::<_, String>(store)
        };
        match ready.await {
            Ok(store) => return Some(store),
            Err(e) => tracing::warn!("waiting for the metadata database: {e}; retrying in {:?}", backoff.peek()),
        }
        tokio::select! {
            () = backoff.wait() => {}
            () = shutdown.wait() => return None,
        }
    }
}
