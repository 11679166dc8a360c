//! Liveness, readiness and metrics endpoints.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;

/// The process is up and serving HTTP. Says nothing about its dependencies.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers, every configured channel is receiving (and its
/// delivery place takes messages), and no background worker is down after a panic.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => json!({"ok": true, "backend": state.store.backend()}),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            json!({"ok": false, "backend": state.store.backend(), "error": e.to_string()})
        }
        Err(_) => json!({"ok": false, "backend": state.store.backend(), "error": "timed out after 2s"}),
    };
    let now_ms = loopgate_channels::wall_clock_ms();
    let channels: Vec<_> = state.channels.iter().map(|c| c.report(now_ms)).collect();
    let ready = database["ok"] == true && channels.iter().all(|c| c.live) && state.workers.all_running();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "unready" },
        "database": database,
        "channels": channels,
        "workers": state.workers.report(),
    });
    (status, Json(body))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
