//! The broker of distributed mode: Redis Streams with one consumer group.
//!
//! Each task queue is a stream (`sluice:<project>:queue:<queue>`) whose entries carry a
//! task instance id; workers read them through the group `workers`, so an entry goes to
//! one worker at a time, and acknowledge (and delete) it only after the task's outcome
//! is recorded in the store. Entries a dead worker left pending are claimed by the
//! others after [`RECLAIM_IDLE`]. Redis carries dispatch only: PostgreSQL says what must
//! run, and a task instance queued there but missing from Redis (a restart without
//! persistence, an eviction) is published again by the scheduler. A duplicate entry is
//! harmless: the store lets one worker claim a task instance once.
//!
//! Blocking reads use a connection of their own whose response timeout sits a margin
//! above the read's `BLOCK` time (the crate's default of 500 ms would cut every
//! `XREADGROUP ... BLOCK` short, and none at all would let a half-open connection, a Redis
//! that stopped answering without closing the socket, hold a worker forever). A read that
//! outlives that bound drops its connection; the next read makes a new one, which must
//! connect within [`CONNECT_TIMEOUT`] and answer a `PING` (the health check) before it is
//! trusted with a blocking read.

use crate::scheduler::Dispatch;
use crate::shutdown::Shutdown;
use crate::store::Queued;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, RedisError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, mpsc};

/// The consumer group every worker reads through.
pub const GROUP: &str = "workers";
/// A pending entry idle this long belongs to a worker presumed dead, and is claimed.
pub const RECLAIM_IDLE: Duration = Duration::from_secs(60);
/// How long one blocking read waits for work before the worker looks around again.
pub const BLOCK: Duration = Duration::from_secs(2);
/// How much longer than its `BLOCK` time a blocking read may take before its connection is
/// judged dead: room for a busy server and the network, far below "forever".
pub const READ_MARGIN: Duration = Duration::from_secs(3);
/// How long connecting to Redis (TCP and the HELLO/SELECT handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client-side bound on one blocking read that waits `block` on the server.
pub fn read_deadline(block: Duration) -> Duration {
    block.saturating_add(READ_MARGIN)
}

/// A broker failure, with what was being done.
#[derive(Debug)]
pub struct BrokerError {
    pub doing: &'static str,
    pub source: RedisError,
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis broker error while {}: {}", self.doing, self.source)
    }
}

impl std::error::Error for BrokerError {}

type Result<T> = std::result::Result<T, BrokerError>;

trait Doing<T> {
    fn doing(self, what: &'static str) -> Result<T>;
}

impl<T> Doing<T> for std::result::Result<T, RedisError> {
    fn doing(self, what: &'static str) -> Result<T> {
        self.map_err(|source| BrokerError { doing: what, source })
    }
}

/// One entry read from a queue's stream.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub stream: String,
    pub entry_id: String,
    pub ti_id: i64,
}

/// The most entries one acknowledgement carries.
const ACK_BATCH_AT_MOST: usize = 256;

/// One finished delivery to acknowledge, and whether the schedulers must look.
#[derive(Debug)]
struct Ack {
    delivery: Option<Delivery>,
    wake: bool,
}

/// Hands acknowledgements and wakes to the broker's background sender ([`Broker::acker`]).
#[derive(Debug, Clone)]
pub struct Acker {
    tx: tokio::sync::mpsc::UnboundedSender<Ack>,
}

impl Acker {
    /// Acknowledges `delivery` (once its outcome is in the store) and, with `wake`, tells
    /// the schedulers to look.
    pub fn send(&self, delivery: Option<Delivery>, wake: bool) {
        if delivery.is_none() && !wake {
            return;
        }
        // The sender only stops after every Acker is dropped.
        let _ = self.tx.send(Ack { delivery, wake });
    }
}

/// A connection to the broker (cheap to clone; reconnects after errors).
#[derive(Debug, Clone)]
pub struct Broker {
    client: Client,
    prefix: String,
    conn: Arc<Mutex<Option<MultiplexedConnection>>>,
}

impl Broker {
    /// A broker at `url` (`redis://host:6379/1`) for `project`'s keys. Connects lazily.
    pub fn new(url: &str, project: &str) -> Result<Broker> {
        let client = crate::tls::redis_client(url).map_err(|e| BrokerError {
            doing: "reading the broker URL",
            source: RedisError::from((redis::ErrorKind::InvalidClientConfig, "invalid broker URL", e)),
        })?;
        Ok(Broker { client, prefix: format!("sluice:{project}"), conn: Arc::new(Mutex::new(None)) })
    }

    /// The stream of `queue`.
    pub fn stream(&self, queue: &str) -> String {
        format!("{}:queue:{queue}", self.prefix)
    }

    fn wake_channel(&self) -> String {
        format!("{}:wake", self.prefix)
    }

    /// The shared connection for short commands; a failed one is replaced on next use.
    async fn conn(&self) -> Result<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.client.get_multiplexed_async_connection().await.doing("connecting")?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn forget_connection(&self) {
        *self.conn.lock().await = None;
    }

    /// Runs a pipeline on the shared connection; drops the connection on failure.
    async fn run<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline, doing: &'static str) -> Result<T> {
        let mut conn = self.conn().await?;
        let result = pipe.query_async(&mut conn).await;
        if result.is_err() {
            self.forget_connection().await;
        }
        result.doing(doing)
    }

    /// A round trip, for health checks.
    pub async fn ping(&self) -> Result<()> {
        // A pipeline answers with one value per command, even for one command: read it as
        // a one-tuple (reading it as a bare string failed with "not string compatible").
        self.run::<(String,)>(redis::pipe().cmd("PING"), "pinging").await.map(|_| ())
    }

    /// The Redis server's run id: it changes when the server restarts (and, without
    /// persistence, forgets every stream).
    pub async fn server_run_id(&self) -> Result<String> {
        let info: String = self.run::<(String,)>(redis::pipe().cmd("INFO").arg("server"), "reading INFO").await?.0;
        Ok(info.lines().find_map(|l| l.strip_prefix("run_id:")).unwrap_or_default().trim().to_string())
    }

    /// Appends one entry per task instance to its queue's stream, in one round trip.
    pub async fn publish(&self, items: &[Queued]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for item in items {
            pipe.cmd("XADD").arg(self.stream(&item.queue)).arg("*").arg("ti").arg(item.ti_id).ignore();
        }
        self.run::<()>(&pipe, "publishing tasks").await
    }

    /// Creates the consumer group of each queue (and its stream) unless it exists; from
    /// the stream's start, so entries published before are delivered.
    pub async fn ensure_groups(&self, queues: &[String]) -> Result<()> {
        let mut conn = self.conn().await?;
        for queue in queues {
            let created: std::result::Result<(), RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.stream(queue))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                other => {
                    if other.is_err() {
                        self.forget_connection().await;
                    }
                    other.doing("creating a consumer group")?;
                }
            }
        }
        Ok(())
    }

    /// Acknowledges and deletes entries whose task outcome is recorded: one XACK and one
    /// XDEL per stream, for all of its entries.
    pub async fn ack(&self, deliveries: &[Delivery]) -> Result<()> {
        self.ack_and_wake(deliveries, false).await
    }

    /// [`Broker::ack`], and a wake for the schedulers in the same round trip.
    async fn ack_and_wake(&self, deliveries: &[Delivery], wake: bool) -> Result<()> {
        let mut streams: Vec<(&str, Vec<&str>)> = Vec::new();
        for d in deliveries {
            match streams.iter_mut().find(|(stream, _)| *stream == d.stream) {
                Some((_, ids)) => ids.push(&d.entry_id),
                None => streams.push((&d.stream, vec![&d.entry_id])),
            }
        }
        let mut pipe = redis::pipe();
        for (stream, ids) in &streams {
            pipe.cmd("XACK").arg(stream).arg(GROUP).arg(ids).ignore();
            pipe.cmd("XDEL").arg(stream).arg(ids).ignore();
        }
        if wake {
            pipe.cmd("PUBLISH").arg(self.wake_channel()).arg("1").ignore();
        }
        if streams.is_empty() && !wake {
            return Ok(());
        }
        self.run::<()>(&pipe, "acknowledging tasks").await
    }

    /// A background sender of acknowledgements and scheduler wakes: what a worker's tasks
    /// hand it while it sends is sent together, so a busy worker pays a few commands per
    /// batch rather than three per task. Dropping every [`Acker`] clone flushes what is
    /// left; await the handle to know it was sent.
    pub fn acker(&self) -> (Acker, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Ack>();
        let broker = self.clone();
        let sending = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut deliveries = Vec::new();
                let mut wake = false;
                let mut next = Some(first);
                while let Some(ack) = next {
                    deliveries.extend(ack.delivery);
                    wake |= ack.wake;
                    next = if deliveries.len() < ACK_BATCH_AT_MOST { rx.try_recv().ok() } else { None };
                }
                if let Err(e) = broker.ack_and_wake(&deliveries, wake).await {
                    tracing::warn!("{e}; the entries will be delivered again and found done");
                }
            }
        });
        (Acker { tx }, sending)
    }

    /// Claims for `consumer` the entries of `queues` pending longer than `min_idle`
    /// (their worker died before acknowledging them).
    pub async fn reclaim(&self, consumer: &str, queues: &[String], min_idle: Duration) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for queue in queues {
            let stream = self.stream(queue);
            let mut pipe = redis::pipe();
            pipe.cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
                .arg("0-0")
                .arg("COUNT")
                .arg(100);
            match self.run::<(StreamAutoClaimReply,)>(&pipe, "reclaiming pending tasks").await {
                Ok((reply,)) => out.extend(reply.claimed.iter().filter_map(|e| delivery(&stream, e))),
                Err(e) if e.source.code() == Some("NOGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Tells every scheduler to make a pass now (a trigger, an unpause, a retry...).
    pub async fn wake_schedulers(&self) -> Result<()> {
        self.run::<()>(redis::pipe().cmd("PUBLISH").arg(self.wake_channel()).arg("1").ignore(), "waking schedulers")
            .await
    }

    /// Notifies `wake` whenever a wake-up is published, until `shutdown`; reconnects
    /// with backoff after errors.
    pub async fn forward_wakes(&self, wake: Arc<Notify>, shutdown: Shutdown) {
        use futures_util::StreamExt;
        let mut backoff = Backoff::new();
        loop {
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await.doing("subscribing to wake-ups")?;
                pubsub.subscribe(self.wake_channel()).await.doing("subscribing to wake-ups")?;
                Ok::<_, BrokerError>(pubsub)
            };
            let mut pubsub = tokio::select! {
                s = subscribed => match s {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!("{e}; retrying in {:?}", backoff.peek());
                        tokio::select! { () = backoff.wait() => continue, () = shutdown.wait() => return }
                    }
                },
                () = shutdown.wait() => return,
            };
            backoff.reset();
            // Something may have happened while no subscription was listening.
            wake.notify_one();
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(_) => wake.notify_one(),
                        None => break,
                    },
                    () = shutdown.wait() => return,
                }
            }
            tracing::warn!("the broker's wake-up subscription ended; resubscribing");
        }
    }

    /// A reader for one worker: its own connection, for blocking reads.
    pub fn reader(&self, consumer: &str, queues: &[String]) -> Reader {
        Reader {
            broker: self.clone(),
            consumer: consumer.to_string(),
            streams: queues.iter().map(|q| self.stream(q)).collect(),
            queues: queues.to_vec(),
            conn: None,
            block: BLOCK,
        }
    }
}

/// Reads new entries of some queues for one consumer.
#[derive(Debug)]
pub struct Reader {
    broker: Broker,
    consumer: String,
    queues: Vec<String>,
    streams: Vec<String>,
    conn: Option<MultiplexedConnection>,
    /// How long the server holds one read open waiting for work ([`BLOCK`]).
    block: Duration,
}

impl Reader {
    /// The same reader, waiting `block` on the server per read (and judging the
    /// connection dead after [`read_deadline`] of it).
    pub fn with_block(mut self, block: Duration) -> Reader {
        self.block = block;
        self
    }

    /// Up to `count` new entries, waiting up to [`BLOCK`] for the first. An error when
    /// Redis does not answer within [`read_deadline`] (or a new connection's handshake
    /// within [`CONNECT_TIMEOUT`]); the connection is then dropped and the next read
    /// connects afresh.
    pub async fn read(&mut self, count: usize) -> Result<Vec<Delivery>> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            slot => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(read_deadline(self.block)));
                let mut conn = self
                    .broker
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .doing("connecting to read tasks")?;
                // Without a database index or a password the handshake may need no answer:
                // a connection to a Redis that does not answer would only be found out by
                // the first read's deadline.
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .doing("checking a new connection to read tasks")?;
                self.broker.ensure_groups(&self.queues).await?;
                slot.insert(conn)
            }
        };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("BLOCK")
            // `BLOCK 0` would wait forever: at least a millisecond.
            .arg(u64::try_from(self.block.as_millis()).unwrap_or(2000).max(1))
            .arg("STREAMS")
            .arg(&self.streams);
        for _ in &self.streams {
            cmd.arg(">");
        }
        let reply: std::result::Result<Option<StreamReadReply>, RedisError> = cmd.query_async(conn).await;
        match reply {
            Ok(reply) => Ok(reply
                .map(|r| r.keys.iter().flat_map(|k| k.ids.iter().filter_map(|e| delivery(&k.key, e))).collect())
                .unwrap_or_default()),
            // The stream or group is gone (Redis restarted without its data): recreate.
            Err(e) if e.code() == Some("NOGROUP") => {
                self.broker.ensure_groups(&self.queues).await?;
                Ok(Vec::new())
            }
            Err(e) => {
                self.conn = None;
                let doing = if e.is_timeout() {
                    "reading tasks (no answer within the read deadline: the connection is dropped and remade)"
                } else {
                    "reading tasks"
                };
                Err(BrokerError { doing, source: e })
            }
        }
    }
}

fn delivery(stream: &str, entry: &StreamId) -> Option<Delivery> {
    let ti_id = entry.get::<i64>("ti").or_else(|| entry.get::<String>("ti").and_then(|s| s.parse().ok()))?;
    Some(Delivery { stream: stream.to_string(), entry_id: entry.id.clone(), ti_id })
}

/// Dispatch through the broker: queued task instances are handed to a publisher task
/// that sends them in batches, retrying while Redis is away (the scheduler's stuck-task
/// sweep covers a process that dies holding some).
#[derive(Debug, Clone)]
pub struct RedisDispatch {
    tx: mpsc::UnboundedSender<Vec<Queued>>,
}

impl RedisDispatch {
    pub fn start(broker: Broker) -> RedisDispatch {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Queued>>();
        tokio::spawn(async move {
            let mut backoff = Backoff::new();
            while let Some(mut batch) = rx.recv().await {
                while let Ok(more) = rx.try_recv() {
                    batch.extend(more);
                }
                crate::failpoint!("dispatch.before_publish");
                while let Err(e) = broker.publish(&batch).await {
                    tracing::warn!("{e}; {} task(s) held, retrying in {:?}", batch.len(), backoff.peek());
                    backoff.wait().await;
                    while let Ok(more) = rx.try_recv() {
                        batch.extend(more);
                    }
                }
                crate::failpoint!("dispatch.after_publish");
                backoff.reset();
            }
        });
        RedisDispatch { tx }
    }
}

impl Dispatch for RedisDispatch {
    fn dispatch(&self, queued: Vec<Queued>) {
        if !queued.is_empty() {
            // The publisher lives as long as the runtime; when it is gone the process is
            // stopping, and the store still holds the tasks as queued.
            let _ = self.tx.send(queued);
        }
    }
}

/// Exponential backoff between reconnect attempts: 100 ms doubling to 5 s.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    pub fn peek(&self) -> Duration {
        self.next
    }

    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Self::MAX);
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}
