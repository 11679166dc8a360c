//! Workflow intelligence over HTTP: `POST /api/pulse`, `GET /api/heartbeat`,
//! `GET /api/runs[/{id}]`, `GET /api/suggestions[/{id}]`, `POST /api/suggestions/{id}/respond`,
//! `GET /api/learning`, `DELETE /api/learning/{dimension}/{key}`, `POST /api/learning/reset`,
//! `POST /api/stop`, `POST /api/resume`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use loopgate_engine::intelligence::{HeartbeatStatus, PulseReport};
use loopgate_engine::learning::Dimension;
use loopgate_engine::store::RunDetail;
use loopgate_engine::suggestion::{RespondError, Responded, Responder, Suggestion};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiJsonOrEmpty, ApiQuery};
use crate::answer::{self, AnswerParts};

const MAX_LIMIT: u32 = 200;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulseBody {
    /// Pulse as the timer would: cooldown, budget and quiet hours apply. For driving the
    /// heartbeat from an outside scheduler.
    #[serde(default)]
    scheduled: bool,
}

pub async fn pulse(
    State(state): State<AppState>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<PulseBody>,
) -> Result<Json<PulseReport>, ApiError> {
    Ok(Json(state.intelligence.pulse(!body.scheduled).await?))
}

pub async fn heartbeat(State(state): State<AppState>) -> Result<Json<HeartbeatStatus>, ApiError> {
    Ok(Json(state.intelligence.status().await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub(super) state: Option<String>,
    pub(super) limit: Option<u32>,
}

pub(super) fn limit(value: Option<u32>, default: u32) -> Result<u32, ApiError> {
    let limit = value.unwrap_or(default);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid(format!("limit must be between 1 and {MAX_LIMIT}")))
    }
}

pub async fn runs(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if params.state.is_some() {
        return Err(ApiError::invalid("runs cannot be filtered by state"));
    }
    let runs = state.store.runs(limit(params.limit, 20)?).await?;
    Ok(Json(json!({"runs": runs})))
}

pub async fn run(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<RunDetail>, ApiError> {
    state.store.run(&id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no reflection run {id:?}")))
}

/// `state` is one state, several separated by commas, or `open` (scheduled, active and
/// snoozed). Without it, every state.
pub async fn suggestions(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let states = answer::state_filter(params.state.as_deref().unwrap_or_default()).map_err(ApiError::invalid)?;
    let suggestions = state.store.suggestions(&states, limit(params.limit, 50)?).await?;
    Ok(Json(json!({"suggestions": suggestions})))
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError::not_found(format!("no suggestion {id:?}")))
}

pub async fn suggestion(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Suggestion>, ApiError> {
    let id = parse_id(&id)?;
    state.store.suggestion(id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no suggestion {id}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondBody {
    response: String,
    edited_action: Option<serde_json::Value>,
    snooze_until: Option<DateTime<Utc>>,
    /// "90m", "3h", "2d".
    snooze_for: Option<String>,
}

pub async fn respond(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RespondBody>,
) -> Result<Json<Responded>, ApiError> {
    let id = parse_id(&id)?;
    let now = state.store.clock().now();
    let parts = AnswerParts {
        response: &body.response,
        edited_action: body.edited_action.as_ref(),
        snooze_until: body.snooze_until,
        snooze_for: body.snooze_for.as_deref(),
    };
    // Only an edit of the text needs the current action; anything else is checked first,
    // so a bad answer to a missing suggestion says what is wrong with the answer.
    let original = match parts.response {
        "edit" if parts.edited_action.is_some_and(|e| e.is_string()) => {
            state.store.suggestion(id).await?.ok_or_else(|| ApiError::not_found(format!("no suggestion {id}")))?.action
        }
        _ => serde_json::Value::Null,
    };
    let response = answer::response(&parts, &original, now).map_err(ApiError::invalid)?;
    // The API token is the owner's.
    let responder = Responder { by: "owner".into(), via: "api".into() };
    Ok(Json(state.intelligence.respond(id, &response, &responder).await?))
}

impl From<RespondError> for ApiError {
    fn from(error: RespondError) -> ApiError {
        match error {
            RespondError::NotFound(id) => ApiError::not_found(format!("no suggestion {id}")),
            e @ RespondError::AlreadyDecided { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already_decided", e.to_string())
            }
            RespondError::Invalid(message) => ApiError::invalid(message),
            e @ RespondError::Unauthorized { .. } => ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            RespondError::Store(e) => e.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearningParams {
    dimension: Option<String>,
    limit: Option<u32>,
}

fn dimension(name: &str) -> Result<Dimension, ApiError> {
    Dimension::parse(name).ok_or_else(|| {
        let names: Vec<_> = Dimension::ALL.iter().map(|d| d.as_str()).collect();
        ApiError::invalid(format!("dimension {name:?} is not one of {}", names.join(", ")))
    })
}

/// `GET /api/learning`: what the owner's answers taught, per dimension, each key with its
/// evidence, what it says and how many ideas it holds back.
pub async fn learning(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<LearningParams>,
) -> Result<Json<loopgate_engine::learning::Overview>, ApiError> {
    let only = params.dimension.as_deref().map(dimension).transpose()?;
    Ok(Json(state.store.learning(only, limit(params.limit, 50)? as usize).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    dimension: String,
    key: String,
}

/// `POST /api/learning/reset {dimension, key}`: forgets what one key learned (and what it
/// held back); audited. 404 when nothing was learned about it.
pub async fn reset_learning(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    reset(&state, &body.dimension, &body.key).await
}

/// `DELETE /api/learning/{dimension}/{key}`: the same, for a key that fits in a path.
pub async fn forget_learning(
    State(state): State<AppState>,
    Path((dimension, key)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    reset(&state, &dimension, &key).await
}

async fn reset(state: &AppState, name: &str, key: &str) -> Result<Json<serde_json::Value>, ApiError> {
    let dimension = dimension(name)?;
    // The API token is the owner's.
    let by = Responder { by: "owner".into(), via: "api".into() };
    if !state.store.reset_learning(dimension.as_str(), key, &by).await? {
        return Err(ApiError::not_found(format!("nothing is learned about {name} {key:?}")));
    }
    tracing::info!(dimension = name, key, "learning reset by the owner");
    Ok(Json(json!({"reset": true, "dimension": dimension, "key": key})))
}

pub async fn stop(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.intelligence.set_paused(true).await?;
    tracing::warn!("kill switch: paused by the API");
    Ok(Json(json!({"paused": true})))
}

pub async fn resume(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.intelligence.set_paused(false).await?;
    tracing::info!("kill switch released by the API");
    Ok(Json(json!({"paused": false})))
}

/// `POST /api/digest`: builds the email digest now and queues it (sent at once by the
/// email channel's outbox). An empty digest is not sent.
pub async fn digest(State(state): State<AppState>) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Some(email) = state.email.as_ref() else {
        return Err(ApiError::not_found("the email channel is not configured"));
    };
    let outcome = email.send_digest().await?;
    let status = match outcome {
        loopgate_channels::email::DigestOutcome::Queued { .. } => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    Ok((status, Json(serde_json::to_value(outcome).expect("a digest outcome serializes"))))
}

/// `GET /api/workflows`: the configured workflows, their triggers and steps.
pub async fn workflows(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "workflows": *state.workflows }))
}

/// `POST /api/workflows/{name}/run`: runs one now, as the owner asked through the API.
/// 201 with the run's task; 409 while the kill switch is on.
pub async fn run_workflow(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    use loopgate_engine::workflow::WorkflowError;
    let Some(workflow) = state.workflows.iter().find(|w| w.name == name) else {
        return Err(ApiError::not_found(format!("no workflow named {name:?} is configured")));
    };
    let responder = Responder { by: "api".into(), via: "api".into() };
    match state.intelligence.run_workflow(workflow, &[], &responder).await {
        Ok(task) => Ok((StatusCode::CREATED, Json(serde_json::to_value(task).expect("a task serializes")))),
        Err(e @ WorkflowError::Stopped) => Err(ApiError::new(StatusCode::CONFLICT, "stopped", e.to_string())),
        Err(e @ WorkflowError::Invalid(_)) => {
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_workflow", e.to_string()))
        }
        Err(WorkflowError::Store(e)) => Err(e.into()),
    }
}
