//! Calls to Discord's REST API (`{api_base}/api/v10/…`).
//!
//! serenity's own HTTP client turns its rate limiter off when a base URL is set, and its
//! errors keep neither `retry_after` nor the `X-RateLimit-*` headers. So REST calls go
//! through this transport: a 429 becomes [`CallError::RateLimited`] with Discord's wait, a
//! bucket that reports no requests left makes the next call to the same route wait for
//! its reset, and the outbox can tell retryable failures from permanent refusals. The
//! bot token never reaches a log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// A bucket wait longer than this is handed back to the caller (the outbox schedules
/// the retry) rather than slept inside the call.
const LONGEST_INLINE_WAIT: Duration = Duration::from_secs(5);
const GLOBAL: &str = "global";

pub struct RestApi {
    client: reqwest::Client,
    /// `{api_base}/api/v10`.
    base: String,
    authorization: String,
    /// When each route (method + major parameter) may be called again.
    resets: Mutex<HashMap<String, Instant>>,
}

/// Why a call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// 429, or a bucket known to be empty: wait this long.
    #[error("rate limited by Discord, retry after {} ms", .0.as_millis())]
    RateLimited(Duration),
    /// 5xx, or an answer that is not Discord's JSON.
    #[error("Discord server error: {0}")]
    Server(String),
    #[error("cannot reach Discord: {0}")]
    Network(String),
    /// 4xx other than 429: the request itself is wrong (unknown channel, missing access).
    #[error("Discord refused the request ({status}, code {code}): {message}")]
    Refused { status: u16, code: i64, message: String },
}

impl CallError {
    /// How long Discord asked to wait, when it did (a 429 or an empty bucket).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::RateLimited(wait) => Some(*wait),
            _ => None,
        }
    }

    /// Discord's "Unknown Message" / "Unknown Channel": the thing to edit is gone.
    pub fn is_gone(&self) -> bool {
        matches!(self, CallError::Refused { status: 404, .. } | CallError::Refused { code: 10003 | 10008, .. })
    }
}

impl RestApi {
    pub fn new(api_base: &str, token: &str) -> anyhow::Result<RestApi> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(CALL_TIMEOUT)
            .user_agent(concat!("DiscordBot (https://github.com/loopgate/loopgate, ", env!("CARGO_PKG_VERSION"), ")"))
            .build()?;
        Ok(RestApi {
            client,
            base: format!("{}/api/v10", api_base.trim_end_matches('/')),
            authorization: format!("Bot {token}"),
            resets: Mutex::new(HashMap::new()),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CallError> {
        self.call(Method::GET, path, None).await
    }

    /// Calls `path` (which starts with `/`) and decodes the JSON answer (`null` for 204).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CallError> {
        let route = route_of(&method, path);
        self.wait_for_bucket(&route).await?;
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .header("Authorization", &self.authorization);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| CallError::Network(e.without_url().to_string()))?;
        let status = response.status();
        let limits = RateLimitHeaders::read(response.headers());
        let bytes = response.bytes().await.map_err(|e| CallError::Network(e.without_url().to_string()))?;
        if let Some(reset_after) = limits.empty_bucket_resets_after() {
            self.note_reset(&route, reset_after);
        }
        let json: Option<Value> =
            if bytes.is_empty() { Some(Value::Null) } else { serde_json::from_slice(&bytes).ok() };
        if status == StatusCode::TOO_MANY_REQUESTS {
            let body_wait = json.as_ref().and_then(|j| j.get("retry_after")).and_then(Value::as_f64);
            let wait = body_wait.or(limits.retry_after).map_or(Duration::from_secs(1), seconds);
            let global =
                limits.global || json.as_ref().and_then(|j| j.get("global")).and_then(Value::as_bool) == Some(true);
            self.note_reset(if global { GLOBAL } else { &route }, wait);
            metrics::counter!("loopgate_discord_rate_limited_total").increment(1);
            return Err(CallError::RateLimited(wait.max(Duration::from_millis(10))));
        }
        if status.is_success() {
            return json.ok_or_else(|| CallError::Server(format!("{method} {}: unreadable answer", route)));
        }
        let code = json.as_ref().and_then(|j| j.get("code")).and_then(Value::as_i64).unwrap_or(0);
        let message = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(Value::as_str)
            .map_or_else(|| status.to_string(), str::to_owned);
        if status.is_client_error() {
            Err(CallError::Refused { status: status.as_u16(), code, message })
        } else {
            Err(CallError::Server(format!("{status} {message}")))
        }
    }

    /// Waits out a bucket Discord said is empty; hands long waits back to the caller.
    async fn wait_for_bucket(&self, route: &str) -> Result<(), CallError> {
        let until = {
            let resets = self.resets.lock().expect("rate-limit table");
            [route, GLOBAL].iter().filter_map(|key| resets.get(*key).copied()).max()
        };
        let Some(until) = until else { return Ok(()) };
        let wait = until.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Ok(());
        }
        if wait > LONGEST_INLINE_WAIT {
            return Err(CallError::RateLimited(wait));
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn note_reset(&self, route: &str, after: Duration) {
        let mut resets = self.resets.lock().expect("rate-limit table");
        let now = Instant::now();
        resets.retain(|_, at| *at > now);
        resets.insert(route.to_owned(), now + after);
    }
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.clamp(0.0, 3600.0)).unwrap_or(Duration::from_secs(1))
}

#[derive(Debug, Default, PartialEq)]
struct RateLimitHeaders {
    remaining: Option<u64>,
    reset_after: Option<f64>,
    retry_after: Option<f64>,
    global: bool,
}

impl RateLimitHeaders {
    fn read(headers: &reqwest::header::HeaderMap) -> RateLimitHeaders {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        RateLimitHeaders {
            remaining: text("x-ratelimit-remaining").and_then(|v| v.parse().ok()),
            reset_after: text("x-ratelimit-reset-after").and_then(|v| v.parse().ok()),
            retry_after: text("retry-after").and_then(|v| v.parse().ok()),
            global: text("x-ratelimit-global").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }

    fn empty_bucket_resets_after(&self) -> Option<Duration> {
        match (self.remaining, self.reset_after) {
            (Some(0), Some(after)) => Some(seconds(after)),
            _ => None,
        }
    }
}

/// Discord limits per route and "major parameter" (the channel, guild or webhook):
/// `POST /channels/1/messages` and `POST /channels/2/messages` have separate buckets.
fn route_of(method: &Method, path: &str) -> String {
    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or_default();
    let major = match first {
        "channels" | "guilds" | "webhooks" | "interactions" => segments.next().unwrap_or_default(),
        _ => "",
    };
    let rest: Vec<&str> = segments.map(|s| if s.chars().all(|c| c.is_ascii_digit()) { ":id" } else { s }).collect();
    format!("{method} /{first}/{major}/{}", rest.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_keep_the_major_parameter_and_fold_the_rest() {
        assert_eq!(route_of(&Method::POST, "/channels/1/messages"), "POST /channels/1/messages");
        assert_eq!(route_of(&Method::PATCH, "/channels/1/messages/99"), "PATCH /channels/1/messages/:id");
        assert_eq!(
            route_of(&Method::PATCH, "/channels/1/messages/98"),
            route_of(&Method::PATCH, "/channels/1/messages/99")
        );
        assert_ne!(route_of(&Method::POST, "/channels/1/messages"), route_of(&Method::POST, "/channels/2/messages"));
        assert_eq!(route_of(&Method::GET, "/gateway"), "GET /gateway//");
    }

    #[test]
    fn an_empty_bucket_is_read_from_the_headers() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("X-RateLimit-Remaining", "0".parse().unwrap());
        headers.insert("X-RateLimit-Reset-After", "1.250".parse().unwrap());
        let read = RateLimitHeaders::read(&headers);
        assert_eq!(read.empty_bucket_resets_after(), Some(Duration::from_millis(1250)));
        headers.insert("X-RateLimit-Remaining", "3".parse().unwrap());
        assert_eq!(RateLimitHeaders::read(&headers).empty_bucket_resets_after(), None);
    }
}
