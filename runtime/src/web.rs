//! The web server. For now: `/health` in Airflow's shape and a landing page; the UI and
//! the REST API mount here.

use crate::shutdown::Shutdown;
use crate::store::Store;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
struct AppState {
    store: Store,
}

/// Binds `port` on all interfaces and serves until `shutdown`; returns the server task.
pub async fn serve(
    store: Store,
    _wake_scheduler: Arc<Notify>,
    port: u16,
    shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let app = axum::Router::new().route("/", get(index)).route("/health", get(health)).with_state(AppState { store });
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

async fn index() -> Html<&'static str> {
    Html(
        "<!doctype html><title>Sluice</title><h1>Sluice</h1><p>The scheduler is running. See <a href=\"/health\">/health</a>.</p>",
    )
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let db_ok = state.store.check().await.is_ok();
    let beat = if db_ok { state.store.latest_heartbeat("scheduler").await.ok().flatten() } else { None };
    let fresh = beat.is_some_and(|at| state.store.now() - at <= crate::scheduler::HEARTBEAT_TIMEOUT_SECS * 1_000_000);
    Json(serde_json::json!({
        "metadatabase": { "status": if db_ok { "healthy" } else { "unhealthy" } },
        "scheduler": {
            "status": if fresh { "healthy" } else { "unhealthy" },
            "latest_scheduler_heartbeat": beat.map(crate::clock::to_rfc3339),
        },
    }))
}
