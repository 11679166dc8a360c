//! Tasks, approvals and the audit log over HTTP: `POST /api/tasks`, `GET /api/tasks[/{id}]`,
//! `GET /api/approvals[/{id}]`, `POST /api/approvals/{id}/decide`, `GET /api/audit`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use loopgate_engine::actions::{Approval, ApprovalState, DecideError, SubmitError, Task, TaskState, Verdict};
use loopgate_engine::suggestion::Responder;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use super::intel::{ListParams, limit};

/// The API token is the owner's.
fn owner() -> Responder {
    Responder { by: "owner".into(), via: "api".into() }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
    action: serde_json::Value,
    #[serde(default)]
    reason: Option<String>,
}

/// Runs an action through policy now: 201 with the task as it is (`succeeded`, `failed`,
/// `awaiting_approval`, …).
pub async fn submit(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TaskBody>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    let reason = body.reason.unwrap_or_else(|| "asked for through the API".into());
    let task = state.intelligence.submit(&body.action, &reason, &owner()).await.map_err(|e| match e {
        SubmitError::Invalid(message) => ApiError::invalid(format!("action: {message}")),
        SubmitError::Store(e) => e.into(),
    })?;
    Ok((StatusCode::CREATED, Json(task)))
}

/// `?state=` as a comma list; empty or `all` means every state.
fn states<T>(value: Option<&str>, parse: fn(&str) -> Option<T>) -> Result<Vec<T>, ApiError> {
    match value.map(str::trim).filter(|v| !v.is_empty() && *v != "all") {
        None => Ok(Vec::new()),
        Some(list) => list
            .split(',')
            .map(|s| parse(s.trim()).ok_or_else(|| ApiError::invalid(format!("state {:?} is not known", s.trim()))))
            .collect(),
    }
}

pub async fn tasks(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let wanted = states(params.state.as_deref(), TaskState::parse)?;
    let tasks = state.store.tasks(&wanted, limit(params.limit, 50)?).await?;
    Ok(Json(json!({ "tasks": tasks })))
}

pub async fn task(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<Task>, ApiError> {
    Ok(Json(state.store.task(id).await?.ok_or_else(|| ApiError::not_found(format!("no task {id}")))?))
}

pub async fn approvals(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let wanted = states(params.state.as_deref(), ApprovalState::parse)?;
    let approvals = state.store.approvals(&wanted, limit(params.limit, 50)?).await?;
    Ok(Json(json!({ "approvals": approvals })))
}

pub async fn approval(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<Approval>, ApiError> {
    Ok(Json(state.store.approval(id).await?.ok_or_else(|| ApiError::not_found(format!("no approval {id}")))?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    decision: String,
}

pub async fn decide(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<DecideBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let verdict = Verdict::parse(body.decision.trim()).ok_or_else(|| {
        ApiError::invalid(format!("decision must be \"approve\" or \"deny\", not {:?}", body.decision))
    })?;
    let (approval, task) = state.intelligence.decide(id, verdict, &owner()).await?;
    Ok(Json(json!({ "approval": approval, "task": task })))
}

impl From<DecideError> for ApiError {
    fn from(error: DecideError) -> ApiError {
        match error {
            DecideError::NotFound(id) => ApiError::not_found(format!("no approval {id}")),
            e @ DecideError::AlreadyDecided { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already_decided", e.to_string())
            }
            e @ DecideError::Unauthorized { .. } => ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            DecideError::Store(e) => e.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    limit: Option<u32>,
}

pub async fn audit(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let entries = state.store.audit_log(limit(params.limit, 100)?).await?;
    Ok(Json(json!({ "audit": entries })))
}
