//! The Redis Streams broker against a real `redis-server`: delivery through the consumer
//! group, acknowledgement, reclaiming a dead consumer's entries, a stream lost to a
//! restart, and scheduler wake-ups.

use sluice_runtime::broker::Broker;
use sluice_runtime::shutdown::Shutdown;
use sluice_runtime::store::Queued;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (run scripts/install-test-deps.sh)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server listens");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/1", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn queued(ti_id: i64) -> Queued {
    Queued { ti_id, queue: "default".into(), priority_weight: 1 }
}

#[tokio::test]
async fn entries_go_to_one_consumer_and_a_dead_ones_are_reclaimed() {
    let redis = RedisServer::start();
    let broker = Broker::new(&redis.url(), "test").expect("broker");
    let queues = vec!["default".to_string()];
    let mut a = broker.reader("worker-a", &queues);
    let mut b = broker.reader("worker-b", &queues);
    // Groups are created on first read, from the stream's start: entries published
    // before any worker existed are delivered.
    broker.publish(&[queued(1), queued(2), queued(3)]).await.expect("publish");
    let first = a.read(2).await.expect("read");
    assert_eq!(first.iter().map(|d| d.ti_id).collect::<Vec<_>>(), [1, 2]);
    let rest = b.read(10).await.expect("read");
    assert_eq!(rest.iter().map(|d| d.ti_id).collect::<Vec<_>>(), [3], "each entry goes to one consumer");
    broker.ack(&first[..1]).await.expect("ack");
    // worker-a dies holding entry 2: after the idle time another consumer claims it.
    assert!(broker.reclaim("worker-b", &queues, Duration::from_secs(60)).await.expect("reclaim").is_empty());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reclaimed = broker.reclaim("worker-b", &queues, Duration::from_millis(10)).await.expect("reclaim");
    assert_eq!(reclaimed.iter().map(|d| d.ti_id).collect::<Vec<_>>(), [2, 3], "unacknowledged entries, oldest first");
    broker.ack(&reclaimed).await.expect("ack");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(broker.reclaim("worker-b", &queues, Duration::from_millis(10)).await.expect("reclaim").is_empty());
    assert!(a.read(10).await.expect("read").is_empty(), "acknowledged entries are gone");
}

#[tokio::test]
async fn a_stream_lost_with_its_group_is_recreated() {
    let redis = RedisServer::start();
    let broker = Broker::new(&redis.url(), "test").expect("broker");
    let queues = vec!["default".to_string()];
    let mut reader = broker.reader("worker-a", &queues);
    broker.publish(&[queued(1)]).await.expect("publish");
    assert_eq!(reader.read(10).await.expect("read").len(), 1);
    let before = broker.server_run_id().await.expect("run id");
    // What a restart without persistence leaves: nothing.
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.expect("flush");
    assert!(reader.read(10).await.expect("NOGROUP is recovered from").is_empty());
    broker.publish(&[queued(7)]).await.expect("publish");
    assert_eq!(reader.read(10).await.expect("read").iter().map(|d| d.ti_id).collect::<Vec<_>>(), [7]);
    assert_eq!(broker.server_run_id().await.expect("run id"), before, "same server: same run id");
}

#[tokio::test]
async fn a_wake_up_reaches_every_subscribed_scheduler() {
    let redis = RedisServer::start();
    let broker = Broker::new(&redis.url(), "test").expect("broker");
    let shutdown = Shutdown::new();
    let wakes: Vec<Arc<tokio::sync::Notify>> = (0..2).map(|_| Arc::new(tokio::sync::Notify::new())).collect();
    for wake in &wakes {
        let (broker, wake, shutdown) = (broker.clone(), wake.clone(), shutdown.clone());
        tokio::spawn(async move { broker.forward_wakes(wake, shutdown).await });
    }
    // A subscription wakes its scheduler once when it starts; take that one first.
    for wake in &wakes {
        tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("subscribed");
    }
    broker.wake_schedulers().await.expect("publish a wake-up");
    for wake in &wakes {
        tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("woken");
    }
    shutdown.trigger();
}

#[tokio::test]
async fn rate_limits_are_counted_in_redis_across_limiters() {
    use sluice_runtime::web::ratelimit::{Limit, RateLimiter};
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}/2", redis.port);
    let limit = Limit { max: 2, window: Duration::from_secs(30) };
    // Two web servers share one count.
    let (a, b) = (RateLimiter::redis(&url).expect("limiter"), RateLimiter::redis(&url).expect("limiter"));
    assert!(a.hit("login-failures:10.0.0.7", limit).await.is_ok());
    assert!(b.hit("login-failures:10.0.0.7", limit).await.is_ok());
    assert_eq!(a.blocked("login-failures:10.0.0.7", limit).await.map(|w| w <= Duration::from_secs(30)), Some(true));
    let wait = b.hit("login-failures:10.0.0.7", limit).await.expect_err("over the limit");
    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(30), "{wait:?}");
    assert!(a.hit("login-failures:10.0.0.8", limit).await.is_ok(), "another address has its own count");
    a.reset("login-failures:10.0.0.7").await;
    assert_eq!(b.blocked("login-failures:10.0.0.7", limit).await, None);
}

#[tokio::test]
async fn ping_answers_on_a_url_with_a_db_index() {
    let redis = RedisServer::start();
    assert!(redis.url().ends_with("/1"), "the URL selects db 1");
    let broker = Broker::new(&redis.url(), "test").expect("broker");
    broker.ping().await.expect("PONG through a connection that selected db 1");
    broker.ping().await.expect("again, on the kept connection");
}

/// A TCP proxy in front of a real Redis that can freeze: every connection open at that
/// moment stops forwarding for good but keeps its sockets open (a half-open connection, a
/// Redis that stopped answering), and connections made while frozen are accepted but
/// reach Redis only once thawed.
struct FreezingProxy {
    port: u16,
    frozen: tokio::sync::watch::Sender<bool>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl FreezingProxy {
    async fn start(upstream: u16) -> FreezingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (frozen, _) = tokio::sync::watch::channel(false);
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (watch, count) = (frozen.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut frozen = watch.subscribe();
                tokio::spawn(async move {
                    if frozen.wait_for(|f| !*f).await.is_err() {
                        return;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                    let cut = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                        changed = frozen.wait_for(|f| *f) => changed.is_ok(),
                    };
                    if cut {
                        // Hold both sockets open and silent until the test ends.
                        std::future::pending::<()>().await;
                    }
                });
            }
        });
        FreezingProxy { port, frozen, accepted }
    }

    /// With `db` when given (`/1`), else Redis's default db and no SELECT in the handshake.
    fn url(&self, db: Option<u8>) -> String {
        match db {
            Some(db) => format!("redis://127.0.0.1:{}/{db}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }

    fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Turns a hang into a failure: far above every bound the broker keeps.
async fn or_hang<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), work).await.unwrap_or_else(|_| panic!("{what} hung"))
}

#[tokio::test]
async fn a_read_from_a_redis_that_stops_answering_fails_and_reconnects() {
    reading_through_a_freeze(Some(1)).await;
}

#[tokio::test]
async fn a_read_from_a_redis_that_stops_answering_fails_and_reconnects_on_the_default_db() {
    reading_through_a_freeze(None).await;
}

async fn reading_through_a_freeze(db: Option<u8>) {
    let redis = RedisServer::start();
    let proxy = FreezingProxy::start(redis.port).await;
    let direct = Broker::new(&format!("redis://127.0.0.1:{}/{}", redis.port, db.unwrap_or(0)), "test").expect("broker");
    let through_proxy = Broker::new(&proxy.url(db), "test").expect("broker");
    let queues = vec!["default".to_string()];
    let mut reader = through_proxy.reader("worker-a", &queues).with_block(Duration::from_millis(200));

    direct.publish(&[queued(1)]).await.expect("publish");
    let first = or_hang("a read", reader.read(10)).await.expect("read through the proxy");
    assert_eq!(first.iter().map(|d| d.ti_id).collect::<Vec<_>>(), [1]);
    let before = proxy.connections();

    proxy.freeze(true);
    let error = or_hang("a read from a frozen Redis", reader.read(10)).await.expect_err("no answer");
    assert!(error.to_string().contains("no answer within the read deadline"), "{error}");
    // Still frozen: the new connection (its handshake, or the PING that checks it) gets no
    // answer either.
    let error = or_hang("a reconnect to a frozen Redis", reader.read(10)).await.expect_err("no handshake");
    assert!(error.source.is_timeout(), "{error}");

    proxy.freeze(false);
    direct.publish(&[queued(2)]).await.expect("publish");
    let delivered = or_hang("work flowing again", async {
        loop {
            match reader.read(10).await {
                Ok(deliveries) if !deliveries.is_empty() => return deliveries,
                Ok(_) => {}
                // The broker's shared connection, which the reader checks the groups on
                // when it connects, may still be a frozen one: it times out and is remade.
                Err(e) => eprintln!("retrying after: {e}"),
            }
        }
    })
    .await;
    assert_eq!(delivered.iter().map(|d| d.ti_id).collect::<Vec<_>>(), [2], "work flows again");
    assert!(proxy.connections() > before, "the reader connected afresh");
}
