//! The owner's model over HTTP: the OpenAI-compatible chat completions API (hosted APIs,
//! Ollama, llama.cpp, vLLM: one code path, `base_url` configurable) and the Anthropic
//! Messages API. Timeouts, and retries with backoff on 429 and 5xx honouring `retry-after`;
//! the engine counts the tokens and keeps the budget.

use std::time::Duration;

use loopgate_engine::model::{BoxFuture, Completion, Model, ModelError, Request, Role};
use serde_json::{Value, json};

/// Attempts per call (the first and two retries).
const ATTEMPTS: u32 = 3;
/// The longest `retry-after` waited inside a call; longer ones fail the call.
const LONGEST_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OpenAi,
    Anthropic,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub kind: Kind,
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    pub timeout: Duration,
}

pub struct Provider {
    config: ModelConfig,
    http: reqwest::Client,
}

impl Provider {
    pub fn new(config: ModelConfig) -> anyhow::Result<Provider> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(config.timeout)
            .user_agent(concat!("loopgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Provider { config, http })
    }

    fn body(&self, request: &Request) -> (String, Value) {
        let base = self.config.base_url.trim_end_matches('/');
        let turns: Vec<Value> = request
            .turns
            .iter()
            .map(|t| json!({"role": match t.role { Role::User => "user", Role::Assistant => "assistant" }, "content": t.content}))
            .collect();
        match self.config.kind {
            Kind::OpenAi => {
                let mut messages = vec![json!({"role": "system", "content": request.system})];
                messages.extend(turns);
                let mut body =
                    json!({"model": self.config.model, "messages": messages, "max_tokens": request.max_tokens});
                if request.json {
                    body["response_format"] = json!({"type": "json_object"});
                }
                (format!("{base}/chat/completions"), body)
            }
            Kind::Anthropic => (
                format!("{base}/v1/messages"),
                json!({"model": self.config.model, "system": request.system, "messages": turns, "max_tokens": request.max_tokens}),
            ),
        }
    }

    fn read(&self, answer: &Value) -> Result<Completion, ModelError> {
        let tokens = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        let (text, input, output) = match self.config.kind {
            Kind::OpenAi => (
                answer.pointer("/choices/0/message/content").and_then(Value::as_str).map(str::to_owned),
                tokens(answer.pointer("/usage/prompt_tokens")),
                tokens(answer.pointer("/usage/completion_tokens")),
            ),
            Kind::Anthropic => (
                answer.get("content").and_then(Value::as_array).map(|blocks| {
                    blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
                }),
                tokens(answer.pointer("/usage/input_tokens")),
                tokens(answer.pointer("/usage/output_tokens")),
            ),
        };
        let text = text.ok_or_else(|| ModelError::Unavailable("an answer without text".into()))?;
        Ok(Completion { text, model: self.config.model.clone(), input_tokens: input, output_tokens: output })
    }

    async fn attempt(&self, url: &str, body: &Value) -> Result<Completion, (ModelError, Option<Duration>)> {
        let mut request = self.http.post(url).json(body);
        match (self.config.kind, &self.config.api_key) {
            (Kind::OpenAi, Some(key)) => request = request.bearer_auth(key),
            (Kind::Anthropic, Some(key)) => request = request.header("x-api-key", key),
            (_, None) => {}
        }
        if self.config.kind == Kind::Anthropic {
            request = request.header("anthropic-version", "2023-06-01");
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return Err((ModelError::Unavailable("timed out".into()), None)),
            Err(e) => return Err((ModelError::Unavailable(e.without_url().to_string()), None)),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, 3600.0)));
        let text = response.text().await.map_err(|e| (ModelError::Unavailable(e.without_url().to_string()), None))?;
        if status.is_success() {
            let answer: Value = serde_json::from_str(&text)
                .map_err(|_| (ModelError::Unavailable("an answer that is not JSON".into()), None))?;
            return self.read(&answer).map_err(|e| (e, None));
        }
        let detail: String = text.chars().take(300).collect();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err((ModelError::Unavailable(format!("{status}: {detail}")), retry_after));
        }
        Err((ModelError::Refused(format!("{status}: {detail}")), None))
    }
}

impl Model for Provider {
    fn name(&self) -> String {
        let kind = match self.config.kind {
            Kind::OpenAi => "openai",
            Kind::Anthropic => "anthropic",
        };
        format!("{kind}/{}", self.config.model)
    }

    fn complete<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Completion, ModelError>> {
        Box::pin(async move {
            let (url, body) = self.body(request);
            let mut last = ModelError::Unavailable("not tried".into());
            for attempt in 0..ATTEMPTS {
                match self.attempt(&url, &body).await {
                    Ok(completion) => return Ok(completion),
                    Err((error @ ModelError::Refused(_), _)) => return Err(error),
                    Err((error, retry_after)) => {
                        tracing::warn!(%error, attempt, "model call failed");
                        last = error;
                        if attempt + 1 == ATTEMPTS {
                            break;
                        }
                        let backoff = Duration::from_millis(250 << attempt);
                        let wait = retry_after.unwrap_or(backoff);
                        if wait > LONGEST_WAIT {
                            break;
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            Err(last)
        })
    }
}
