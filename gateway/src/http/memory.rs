//! `GET/POST /api/memory`, `GET/DELETE /api/memory/{id}`: the owner's view of memory.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use loopgate_engine::{Memory, MemoryCandidate, MemoryKind, MemoryQuery, RememberOutcome};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};

pub const MAX_LIMIT: u32 = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    q: Option<String>,
    kind: Option<String>,
    limit: Option<u32>,
}

pub async fn search(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let kind =
        params.kind.as_deref().map(MemoryKind::parse).transpose().map_err(|e| ApiError::invalid(e.to_string()))?;
    let limit = params.limit.unwrap_or(20);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let hits = state.store.search_memories(&MemoryQuery { text: params.q.unwrap_or_default(), kind, limit }).await?;
    Ok(Json(json!({"memories": hits})))
}

/// What the owner asks loopgate to remember. It is theirs: trusted and certain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    kind: MemoryKind,
    content: String,
    #[serde(default)]
    subject: String,
}

pub async fn add(State(state): State<AppState>, ApiJson(body): ApiJson<AddBody>) -> Result<Response, ApiError> {
    let mut candidate = MemoryCandidate::from_owner(body.kind, body.content);
    candidate.subject = body.subject.trim().to_owned();
    let outcome = state.store.remember(candidate).await?;
    let status = match &outcome {
        RememberOutcome::Created { .. } => StatusCode::CREATED,
        RememberOutcome::Reinforced { .. } | RememberOutcome::Superseded { .. } => StatusCode::OK,
        RememberOutcome::Rejected { reason } => {
            // The owner's own words are never rejected; reaching here is a bug worth seeing.
            return Err(ApiError::internal(&format!("owner memory rejected: {reason}")));
        }
    };
    Ok((status, Json(outcome)).into_response())
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError::not_found(format!("no memory {id:?}")))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Memory>, ApiError> {
    let id = parse_id(&id)?;
    state.store.get_memory(id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no memory {id}")))
}

pub async fn forget(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if state.store.forget_memory(id).await? {
        tracing::info!(memory_id = id, "memory forgotten");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no memory {id}")))
    }
}
