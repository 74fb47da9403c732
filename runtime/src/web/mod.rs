//! The web server: `/health` in Airflow's shape, the REST API at `/api/v1` (Airflow's
//! stable API v1), and a landing page where the UI mounts.

mod api;
pub mod auth;
mod metrics;
pub mod problem;
pub mod ratelimit;
pub mod session;
mod ui;

use crate::crypto::Crypto;
use crate::keys::WebKeys;
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::store::Store;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use std::sync::Arc;
use tokio::sync::Notify;

/// What every handler sees.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub registry: &'static Registry,
    /// Wakes the scheduler(s) after a change they act on (a trigger, an unpause).
    pub wake: Arc<Notify>,
    /// Seals connection secrets and secret variables written through the API.
    pub crypto: Arc<Crypto>,
    /// Counts failed logins and requests per user.
    pub limiter: ratelimit::RateLimiter,
    /// Seals the UI's session cookies.
    pub sessions: session::Sessions,
    /// The last `/health` reading.
    pub health: HealthCache,
    /// What `/api/v1/config` serves.
    pub config: Arc<crate::effective::WebConfig>,
}

/// The largest request body accepted (a conf, a connection, a variable).
const BODY_LIMIT: usize = 1024 * 1024;

/// Every route, for the server and for handler tests.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::metrics))
        .nest("/api/v1", api::router())
        .merge(ui::router())
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// What pages may load: styles from this site (the one stylesheet), nothing else; forms
/// post only here; no site may frame a page (clickjacking). Pages have no script, inline
/// style or image, so the policy costs them nothing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Sent with every answer, pages, API, errors and `/health` alike.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        // For browsers older than `frame-ancestors`.
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Run ids and dates in URLs stay on this site.
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Binds `port` on all interfaces and serves until `shutdown`; returns the server task.
pub async fn serve(
    registry: &'static Registry,
    store: Store,
    wake: Arc<Notify>,
    keys: WebKeys,
    port: u16,
    shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let limiter = ratelimit::RateLimiter::from_env()?;
    // Secure cookies when people reach the site over https.
    let secure = std::env::var("SLUICE_BASE_URL").is_ok_and(|u| u.starts_with("https://"));
    let sessions = session::Sessions::new(Some(&keys.session_secret), secure);
    let app = router(AppState {
        store,
        registry,
        wake,
        crypto: Arc::new(keys.crypto),
        limiter,
        sessions,
        health: HealthCache::default(),
        config: Arc::new(crate::effective::WebConfig::from_env(registry)?),
    })
    .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|e| format!("cannot listen on port {port}: {e}; set SLUICE_WEBSERVER_PORT to a free port"))?;
    Ok(tokio::spawn(async move {
        let stop = async move { shutdown.wait().await };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::warn!("web server stopped: {e}");
        }
    }))
}

/// How long one health reading answers `/health` (compose health checks and load
/// balancers poll it often; the database is asked at most this often).
const HEALTH_TTL: std::time::Duration = std::time::Duration::from_millis(250);

/// How long `/health` waits for the database before it reports it unhealthy.
const HEALTH_QUERY_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The last health reading and when it was taken.
pub type HealthCache = Arc<tokio::sync::Mutex<Option<(std::time::Instant, serde_json::Value)>>>;

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let mut cached = state.health.lock().await;
    if let Some((at, reading)) = cached.as_ref()
        && at.elapsed() < HEALTH_TTL
    {
        return Json(reading.clone());
    }
    // A database that does not answer within the bound is unhealthy: a health check must
    // answer, not hang while PostgreSQL or PgBouncer is away.
    let db_ok = matches!(tokio::time::timeout(HEALTH_QUERY_LIMIT, state.store.check()).await, Ok(Ok(())));
    let beat = if db_ok {
        tokio::time::timeout(HEALTH_QUERY_LIMIT, state.store.latest_heartbeat("scheduler"))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    } else {
        None
    };
    let fresh = beat.is_some_and(|at| state.store.now() - at <= crate::scheduler::HEARTBEAT_TIMEOUT_SECS * 1_000_000);
    let reading = serde_json::json!({
        "metadatabase": { "status": if db_ok { "healthy" } else { "unhealthy" } },
        "scheduler": {
            "status": if fresh { "healthy" } else { "unhealthy" },
            "latest_scheduler_heartbeat": beat.map(crate::clock::to_rfc3339),
        },
    });
    *cached = Some((std::time::Instant::now(), reading.clone()));
    Json(reading)
}
