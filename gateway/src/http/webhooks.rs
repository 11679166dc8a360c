//! Platform webhooks. They are not behind the API token: each platform proves itself its
//! own way: Telegram with the secret it was given at `setWebhook`, Discord with an Ed25519
//! signature over the timestamp and the body.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::{ApiError, AppState};

use loopgate_channels::discord::EndpointError;

const TELEGRAM_SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// `POST /webhooks/telegram`: one update. Answered 200 only once it is recorded, so
/// Telegram delivers it again after any failure; a redelivery is handled idempotently.
pub async fn telegram(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(telegram) = state.telegram.as_ref() else {
        return Err(ApiError::not_found("the Telegram channel is not configured"));
    };
    let secret = headers.get(TELEGRAM_SECRET_HEADER).map(|v| v.as_bytes());
    if !telegram.webhook_secret_matches(secret) {
        metrics::counter!("loopgate_webhook_rejected_total", "channel" => "telegram").increment(1);
        tracing::warn!("telegram webhook: missing or wrong secret; rejected");
        return Err(ApiError::unauthorized("missing or wrong X-Telegram-Bot-Api-Secret-Token"));
    }
    let update: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not valid JSON: {e}"))
    })?;
    if update.get("update_id").and_then(serde_json::Value::as_i64).is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_an_update",
            "the body is not a Telegram update (no update_id)",
        ));
    }
    telegram.handle_webhook(&update).await?;
    Ok(Json(json!({"ok": true})))
}

/// `POST /webhooks/discord`: Discord's HTTP interactions endpoint. The signature is
/// checked before anything else; the response is the interaction's answer (a PING gets a
/// PONG), given within Discord's three seconds.
pub async fn discord(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(discord) = state.discord.as_ref() else {
        return Err(ApiError::not_found("the Discord channel is not configured"));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let answered =
        discord.handle_http_interaction(header("x-signature-ed25519"), header("x-signature-timestamp"), &body).await;
    match answered {
        Ok(response) => Ok(Json(response)),
        Err(e @ (EndpointError::BadSignature | EndpointError::Stale)) => {
            metrics::counter!("loopgate_webhook_rejected_total", "channel" => "discord").increment(1);
            tracing::warn!(reason = %e, "discord interactions: request refused");
            Err(ApiError::unauthorized(&e.to_string()))
        }
        Err(e @ EndpointError::NotConfigured) => Err(ApiError::not_found(e.to_string())),
        Err(e @ EndpointError::Malformed(_)) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "not_an_interaction", e.to_string()))
        }
    }
}
