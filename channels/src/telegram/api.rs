//! Calls to the Telegram Bot API.
//!
//! The request and answer shapes are teloxide-core's payloads and types; the transport is
//! ours. teloxide's own transport sleeps ten seconds inside any call that meets a 5xx and
//! folds the HTTP status into an error string, so the outbox could tell neither a server
//! error from a permanent refusal nor retry on its own schedule. Here the status, the
//! `error_code` and `parameters.retry_after` all reach [`CallError`], and the bot token
//! never reaches a log: errors are stripped of the URL it is part of.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use teloxide_core::requests::Payload;

/// Longest any call but `getUpdates` may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct BotApi {
    client: reqwest::Client,
    /// `{api_url}/bot{token}/`; every method is POSTed under it.
    base: String,
}

/// Why a call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// 429: wait this long before the next call.
    #[error("rate limited by Telegram, retry after {} s", .0.as_secs())]
    RateLimited(Duration),
    /// 5xx, or an answer that is not the Bot API's envelope (a proxy's error page).
    #[error("Telegram server error: {0}")]
    Server(String),
    /// The connection failed or timed out.
    #[error("cannot reach Telegram: {0}")]
    Network(String),
    /// 4xx other than 429: the request itself is wrong (chat not found, bad token).
    #[error("Telegram refused the request ({code}): {description}")]
    Refused { code: u16, description: String },
    /// The chat is a supergroup now, with a new id: the same call there will do.
    #[error("the chat moved: it is now {to}")]
    Migrated { to: i64 },
}

impl CallError {
    /// How long Telegram asked to wait, when it did (a 429).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::RateLimited(wait) => Some(*wait),
            _ => None,
        }
    }

    /// A 400 that means the edit changed nothing: the message already shows it.
    pub fn is_not_modified(&self) -> bool {
        matches!(self, CallError::Refused { code: 400, description } if description.contains("message is not modified"))
    }
}

/// The Bot API's envelope: `{ok, result}` or `{ok: false, error_code, description, parameters}`.
#[derive(serde::Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    error_code: Option<u16>,
    description: Option<String>,
    parameters: Option<Parameters>,
}

#[derive(serde::Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
    /// The group became a supergroup with this id: the old id is refused from now on.
    migrate_to_chat_id: Option<i64>,
}

impl BotApi {
    pub fn new(api_url: &str, token: &str) -> anyhow::Result<BotApi> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        Ok(BotApi { client, base: format!("{}/bot{token}/", api_url.trim_end_matches('/')) })
    }

    /// Calls the method of a teloxide payload and decodes its answer.
    pub async fn call<P>(&self, payload: &P) -> Result<P::Output, CallError>
    where
        P: Payload + Serialize,
        P::Output: DeserializeOwned,
    {
        let extra = payload.timeout_hint().unwrap_or_default();
        self.request(P::NAME, payload, CALL_TIMEOUT + extra).await
    }

    /// Calls a method by name with parameters already in JSON (what the outbox stored).
    pub async fn call_json(&self, method: &str, params: &serde_json::Value) -> Result<serde_json::Value, CallError> {
        self.request(method, params, CALL_TIMEOUT).await
    }

    /// `getUpdates`, answered as raw JSON values so that one update teloxide cannot read
    /// does not make the whole batch unreadable.
    pub async fn updates(
        &self,
        offset: i64,
        timeout: Duration,
        allowed: &[&str],
    ) -> Result<Vec<serde_json::Value>, CallError> {
        let params = serde_json::json!({"offset": offset, "timeout": timeout.as_secs(), "allowed_updates": allowed});
        // Twice the poll and a little more: a poll the server holds past that is a stall,
        // and the caller reconnects.
        self.request("getUpdates", &params, timeout * 2 + Duration::from_secs(5)).await
    }

    async fn request<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let response = self
            .client
            .post(format!("{}{method}", self.base))
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| CallError::Network(e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| CallError::Network(e.without_url().to_string()))?;
        let envelope: Envelope<T> = match serde_json::from_slice(&bytes) {
            Ok(envelope) => envelope,
            Err(_) if status.is_client_error() && status.as_u16() != 429 => {
                return Err(CallError::Refused { code: status.as_u16(), description: status.to_string() });
            }
            Err(error) if status.is_success() => {
                return Err(CallError::Server(format!("{method}: unreadable answer: {error}")));
            }
            Err(_) => return Err(CallError::Server(format!("{method}: HTTP {status}"))),
        };
        if envelope.ok && status.is_success() {
            return envelope.result.ok_or_else(|| CallError::Server(format!("{method}: answer without a result")));
        }
        let code = envelope.error_code.unwrap_or(status.as_u16());
        let description = envelope.description.unwrap_or_else(|| status.to_string());
        if let Some(to) = envelope.parameters.as_ref().and_then(|p| p.migrate_to_chat_id) {
            return Err(CallError::Migrated { to });
        }
        match code {
            429 => {
                let seconds = envelope.parameters.and_then(|p| p.retry_after).unwrap_or(1);
                Err(CallError::RateLimited(Duration::from_secs(seconds.max(1))))
            }
            400..=499 => Err(CallError::Refused { code, description }),
            _ => Err(CallError::Server(format!("{code} {description}"))),
        }
    }
}
