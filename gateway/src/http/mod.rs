//! The HTTP surface: API, health endpoints and (later) webhooks, as one axum router.
//!
//! API Boundary: this module is the only place that knows HTTP. Handlers translate
//! requests into engine calls and engine answers into JSON, nothing more.

mod actions;
mod auth;
mod error;
mod extract;
mod health;
mod intel;
mod memory;
mod signals;
mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use loopgate_channels::Liveness;
use loopgate_engine::Store;
use loopgate_engine::intelligence::Intelligence;
use loopgate_policies::Identities;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use auth::ApiToken;
pub use error::ApiError;

/// What every handler may use. Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub intelligence: Arc<Intelligence>,
    pub token: Option<ApiToken>,
    pub identities: Arc<Identities>,
    pub metrics: PrometheusHandle,
    /// One entry per running channel adapter; `/readyz` is unready while any is stale.
    pub channels: Arc<Vec<Liveness>>,
    /// The Telegram channel, for its webhook, when configured.
    pub telegram: Option<Arc<loopgate_channels::telegram::Telegram>>,
    pub discord: Option<Arc<loopgate_channels::discord::Discord>>,
    pub email: Option<Arc<loopgate_channels::email::Email>>,
    pub workflows: Arc<Vec<loopgate_engine::workflow::Workflow>>,
    /// The background workers, for `/readyz`: a panicked one is restarted and shown.
    pub workers: crate::supervise::Workers,
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let protected = Router::new()
        .route("/api/signals", post(signals::ingest).get(signals::list))
        .route("/api/signals/{id}", get(signals::get))
        .route("/api/memory", get(memory::search).post(memory::add))
        .route("/api/memory/{id}", get(memory::get).delete(memory::forget))
        .route("/api/pulse", post(intel::pulse))
        .route("/api/heartbeat", get(intel::heartbeat))
        .route("/api/runs", get(intel::runs))
        .route("/api/runs/{id}", get(intel::run))
        .route("/api/suggestions", get(intel::suggestions))
        .route("/api/suggestions/{id}", get(intel::suggestion))
        .route("/api/suggestions/{id}/respond", post(intel::respond))
        .route("/api/learning", get(intel::learning))
        .route("/api/learning/reset", post(intel::reset_learning))
        .route("/api/learning/{dimension}/{key}", delete(intel::forget_learning))
        .route("/api/tasks", post(actions::submit).get(actions::tasks))
        .route("/api/tasks/{id}", get(actions::task))
        .route("/api/approvals", get(actions::approvals))
        .route("/api/approvals/{id}", get(actions::approval))
        .route("/api/approvals/{id}/decide", post(actions::decide))
        .route("/api/audit", get(actions::audit))
        .route("/api/stop", post(intel::stop))
        .route("/api/digest", post(intel::digest))
        .route("/api/workflows", get(intel::workflows))
        .route("/api/workflows/{name}/run", post(intel::run_workflow))
        .route("/api/resume", post(intel::resume))
        .route("/metrics", get(health::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/webhooks/telegram", post(webhooks::telegram))
        .route("/webhooks/discord", post(webhooks::discord))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(record_metrics))
        .layer(TraceLayer::new_for_http().make_span_with(RequestSpan))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal(&"handler panicked").into_response()))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not accept that method")
}

/// Counts and times every request by route template (not raw path, which would let
/// callers create unbounded label values).
async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("loopgate_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("loopgate_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Gives every request a span with a short id, so its log lines can be followed.
#[derive(Clone, Default)]
struct RequestSpan;

impl<B> tower_http::trace::MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> tracing::Span {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        tracing::info_span!(
            "request",
            request_id = NEXT.fetch_add(1, Ordering::Relaxed),
            method = %request.method(),
            path = %request.uri().path(),
        )
    }
}
