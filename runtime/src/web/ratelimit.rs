//! Rate limits: failed logins per client address, and requests per user. Counted in
//! fixed windows, in Redis (db 2 of the deployment, `SLUICE_RATE_LIMIT_URL`) when several
//! web servers share the count, in process otherwise. Over the limit a request gets 429
//! with `Retry-After`. When Redis cannot be reached the limit is not enforced (logged):
//! the web server stays usable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A limit: at most `max` events per `window`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u64,
    pub window: Duration,
}

/// Failed logins allowed per client address and minute, unless `SLUICE_LOGIN_FAILURE_LIMIT`
/// says otherwise.
pub const LOGIN_FAILURES: Limit = Limit { max: 10, window: Duration::from_secs(60) };

/// Failed logins allowed per client address: `SLUICE_LOGIN_FAILURE_LIMIT` per minute
/// (default 10).
pub fn login_failures() -> Limit {
    Limit { max: per_minute("SLUICE_LOGIN_FAILURE_LIMIT").unwrap_or(LOGIN_FAILURES.max), ..LOGIN_FAILURES }
}

/// API requests allowed per user: `SLUICE_API_RATE_LIMIT` per minute (default 1200).
pub fn api_requests() -> Limit {
    Limit { max: per_minute("SLUICE_API_RATE_LIMIT").unwrap_or(1200), window: Duration::from_secs(60) }
}

fn per_minute(var: &str) -> Option<u64> {
    std::env::var(var).ok().and_then(|v| v.trim().parse().ok()).filter(|n| *n > 0)
}

/// The limits, and where counts are kept.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    counts: Counts,
    /// Failed logins per client address.
    pub login: Limit,
    /// Requests per user.
    pub api: Limit,
}

#[derive(Debug, Clone)]
enum Counts {
    InProcess(Arc<Mutex<HashMap<String, (Instant, u64)>>>),
    // Boxed: a TLS-capable client is large, and the in-process variant is one pointer.
    Redis { client: Box<redis::Client>, conn: Arc<tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>> },
}

impl RateLimiter {
    pub fn in_process() -> RateLimiter {
        RateLimiter { counts: Counts::InProcess(Arc::default()), login: login_failures(), api: api_requests() }
    }

    /// Counts in the Redis at `url` (`redis://redis:6379/2`).
    pub fn redis(url: &str) -> Result<RateLimiter, String> {
        let client = crate::tls::redis_client(url).map_err(|e| format!("SLUICE_RATE_LIMIT_URL: {e}"))?;
        Ok(RateLimiter {
            counts: Counts::Redis { client: Box::new(client), conn: Arc::default() },
            ..RateLimiter::in_process()
        })
    }

    pub fn with_limits(mut self, login: Limit, api: Limit) -> RateLimiter {
        self.login = login;
        self.api = api;
        self
    }

    /// `SLUICE_RATE_LIMIT_URL` when set, else in process.
    pub fn from_env() -> Result<RateLimiter, String> {
        match std::env::var(sluice_contract::settings::RATE_LIMIT_URL).ok().filter(|u| !u.is_empty()) {
            Some(url) => RateLimiter::redis(&url),
            None => Ok(RateLimiter::in_process()),
        }
    }

    /// Counts one event for `key`; `Err(wait)` when that is over `limit`, with how long
    /// until the window ends.
    pub async fn hit(&self, key: &str, limit: Limit) -> Result<(), Duration> {
        let (count, left) = match &self.counts {
            Counts::InProcess(counts) => {
                let mut counts = counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                if counts.len() > 100_000 {
                    counts.retain(|_, (start, _)| now.duration_since(*start) < limit.window);
                }
                let entry = counts.entry(key.to_string()).or_insert((now, 0));
                if now.duration_since(entry.0) >= limit.window {
                    *entry = (now, 0);
                }
                entry.1 += 1;
                (entry.1, limit.window.saturating_sub(now.duration_since(entry.0)))
            }
            Counts::Redis { client, conn } => match redis_hit(client, conn, key, limit).await {
                Ok(counted) => counted,
                Err(e) => {
                    tracing::warn!("rate limit not enforced: Redis answered {e}");
                    return Ok(());
                }
            },
        };
        if count > limit.max { Err(left.max(Duration::from_secs(1))) } else { Ok(()) }
    }

    /// How long `key` must wait when it is already over `limit`; counts nothing.
    pub async fn blocked(&self, key: &str, limit: Limit) -> Option<Duration> {
        let (count, left) = match &self.counts {
            Counts::InProcess(counts) => {
                let counts = counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let (start, count) = *counts.get(key)?;
                let elapsed = Instant::now().duration_since(start);
                if elapsed >= limit.window {
                    return None;
                }
                (count, limit.window - elapsed)
            }
            Counts::Redis { client, conn } => {
                let mut c = connection(client, conn).await.ok()?;
                let key = redis_key(key);
                let read: redis::RedisResult<(Option<u64>, i64)> =
                    redis::pipe().cmd("GET").arg(&key).cmd("PTTL").arg(&key).query_async(&mut c).await;
                let (count, ttl) = read.ok()?;
                (count?, Duration::from_millis(u64::try_from(ttl).ok()?))
            }
        };
        (count >= limit.max).then_some(left.max(Duration::from_secs(1)))
    }

    /// Takes back one event of `key` counted by [`RateLimiter::hit`]: a login counted as
    /// a failure before its password was checked, which turned out right.
    pub async fn forgive(&self, key: &str, limit: Limit) {
        match &self.counts {
            Counts::InProcess(counts) => {
                let mut counts = counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some((_, count)) = counts.get_mut(key) {
                    *count = count.saturating_sub(1);
                }
            }
            Counts::Redis { client, conn } => {
                if let Ok(mut c) = connection(client, conn).await {
                    // Should the window have ended in between, DECR makes a key of -1: the
                    // expiry keeps that from lasting longer than a window.
                    let window = u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX);
                    let key = redis_key(key);
                    let done: redis::RedisResult<()> = redis::pipe()
                        .cmd("DECR")
                        .arg(&key)
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(&key)
                        .arg(window)
                        .arg("NX")
                        .ignore()
                        .query_async(&mut c)
                        .await;
                    if done.is_err() {
                        *conn.lock().await = None;
                    }
                }
            }
        }
    }

    /// Forgets `key`'s count.
    pub async fn reset(&self, key: &str) {
        match &self.counts {
            Counts::InProcess(counts) => {
                counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
            }
            Counts::Redis { client, conn } => {
                if let Ok(mut c) = connection(client, conn).await {
                    let deleted: redis::RedisResult<()> =
                        redis::cmd("DEL").arg(redis_key(key)).query_async(&mut c).await;
                    if deleted.is_err() {
                        *conn.lock().await = None;
                    }
                }
            }
        }
    }
}

fn redis_key(key: &str) -> String {
    format!("sluice:ratelimit:{key}")
}

async fn connection(
    client: &redis::Client,
    slot: &tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let mut slot = slot.lock().await;
    if let Some(conn) = slot.as_ref() {
        return Ok(conn.clone());
    }
    let conn = client.get_multiplexed_async_connection().await?;
    *slot = Some(conn.clone());
    Ok(conn)
}

/// `INCR` and, on the window's first event, `PEXPIRE`, in one round trip.
async fn redis_hit(
    client: &redis::Client,
    slot: &tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    key: &str,
    limit: Limit,
) -> redis::RedisResult<(u64, Duration)> {
    let mut conn = connection(client, slot).await?;
    let key = redis_key(key);
    let window = u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX);
    let result: redis::RedisResult<(u64, (), i64)> = redis::pipe()
        .cmd("INCR")
        .arg(&key)
        .cmd("PEXPIRE")
        .arg(&key)
        .arg(window)
        .arg("NX")
        .cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await;
    match result {
        Ok((count, (), ttl)) => Ok((count, Duration::from_millis(u64::try_from(ttl).unwrap_or(window)))),
        Err(e) => {
            *slot.lock().await = None;
            Err(e)
        }
    }
}
