//! `POST /api/signals` and `GET /api/signals`: the ledger over HTTP.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use loopgate_engine::{
    Actor, Attachment, Conversation, NewSignal, Signal, SignalKind, SignalQuery, Source, Trust, Urgency,
};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};

/// The body of `POST /api/signals`. Unknown fields are refused so a typo never silently
/// drops data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestBody {
    source: String,
    kind: String,
    external_id: Option<ExternalId>,
    #[serde(default, deserialize_with = "id_or_object")]
    actor: Option<ActorInput>,
    #[serde(default, deserialize_with = "id_or_object")]
    conversation: Option<ConversationInput>,
    text: String,
    urgency: Option<Urgency>,
    occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    attachments: Vec<Attachment>,
    payload: Option<serde_json::Value>,
}

/// Platforms number some events (Telegram's update_id), so numbers are accepted too.
#[derive(Debug)]
struct ExternalId(String);

impl<'de> Deserialize<'de> for ExternalId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ExternalId, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ExternalId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ExternalId, E> {
                Ok(ExternalId(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ExternalId, E> {
                Ok(ExternalId(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ExternalId, E> {
                Ok(ExternalId(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `"dana"` or `{"id": "dana", "name": "Dana"}`. Whether the actor is the owner is decided
/// here from the configured identities, never taken from the caller.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActorInput {
    id: String,
    name: Option<String>,
}

impl From<String> for ActorInput {
    fn from(id: String) -> ActorInput {
        ActorInput { id, name: None }
    }
}

/// `"chat-id"` or the full conversation object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversationInput {
    id: String,
    title: Option<String>,
    thread_id: Option<String>,
    reply_to: Option<String>,
}

impl From<String> for ConversationInput {
    fn from(id: String) -> ConversationInput {
        ConversationInput { id, title: None, thread_id: None, reply_to: None }
    }
}

/// Accepts a bare id string or the object, keeping serde's own message for a bad object
/// (an untagged enum would replace it with "did not match any variant").
fn id_or_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + From<String>,
{
    struct Visitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de> + From<String>> serde::de::Visitor<'de> for Visitor<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an id string or an object with an id")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<T>, E> {
            Ok(Some(T::from(v.to_owned())))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    deserializer.deserialize_any(Visitor(std::marker::PhantomData))
}

impl IngestBody {
    fn into_signal(self, state: &AppState) -> Result<NewSignal, ApiError> {
        let source = Source::parse(&self.source).map_err(|e| ApiError::invalid(e.to_string()))?;
        let kind = SignalKind::parse(&self.kind).map_err(|e| ApiError::invalid(e.to_string()))?;
        let actor = self.actor.map(|ActorInput { id, name }| {
            let is_owner = state.identities.is_owner(source.as_str(), &id);
            Actor { id, name, is_owner }
        });
        let conversation = self.conversation.map(|c| Conversation {
            id: c.id,
            title: c.title,
            thread_id: c.thread_id,
            reply_to: c.reply_to,
        });
        Ok(NewSignal {
            source,
            kind,
            external_id: self.external_id.map(|id| id.0),
            actor,
            conversation,
            text: self.text,
            urgency: self.urgency.unwrap_or_default(),
            occurred_at: self.occurred_at,
            attachments: self.attachments,
            payload: self.payload,
            // Whoever holds the API token, the text they forward came from somewhere else.
            trust: Trust::Untrusted,
        })
    }
}

pub async fn ingest(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<IngestBody>,
) -> Result<impl IntoResponse, ApiError> {
    let signal = body.into_signal(&state)?;
    let outcome = state.store.ingest(signal.clone()).await?;
    let status = if outcome.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    if !outcome.duplicate {
        tracing::debug!(signal_id = outcome.id, merged = outcome.merged, "signal recorded");
    }
    let mut body = json!({"id": outcome.id, "duplicate": outcome.duplicate, "merged": outcome.merged});
    // The owner's own request ("remind me in 10 minutes to …") is a command, taken now.
    // A delivery seen before (a retry of the same request) is not carried out twice.
    if !outcome.duplicate
        && let Some(reply) = state.intelligence.handle_owner_signal(outcome.id, &signal).await?
    {
        body["reply"] = reply.into();
    }
    Ok((status, Json(body)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// An RFC 3339 time, or a duration back from now such as `15m` or `2d`.
    since: Option<String>,
    source: Option<String>,
    /// Read forward from a `seq` cursor instead of newest first.
    after_seq: Option<i64>,
    limit: Option<u32>,
}

pub const MAX_LIST_LIMIT: u32 = 1000;

pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = state.store.clock().now();
    let since = params.since.as_deref().map(|s| parse_since(s, now)).transpose()?;
    let source =
        params.source.as_deref().map(Source::parse).transpose().map_err(|e| ApiError::invalid(e.to_string()))?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be between 1 and {MAX_LIST_LIMIT}")));
    }
    let query = SignalQuery { since, source, after_seq: params.after_seq, owner_only: false, limit };
    let signals: Vec<Signal> = state.store.list_signals(&query).await?;
    Ok(Json(json!({"signals": signals})))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Signal>, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found(format!("no signal {id:?}")))?;
    state.store.get_signal(id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no signal {id}")))
}

fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| ApiError::invalid(format!("since {text:?} is neither an RFC 3339 time nor a duration like 15m")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_and_durations() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_since("2026-11-22T09:00:00+00:00", now).unwrap(), now - chrono::Duration::hours(1));
        assert_eq!(parse_since("15m", now).unwrap(), now - chrono::Duration::minutes(15));
        assert!(parse_since("yesterday", now).is_err());
    }
}
