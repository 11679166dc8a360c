//! Fake model providers on 127.0.0.1 speaking the real request and response JSON: the
//! OpenAI chat completions API (`POST /chat/completions`) and the Anthropic Messages API
//! (`POST /v1/messages`), with usage counts, and faults on demand (500, 429 with
//! `retry-after`, an answer slower than the client's timeout).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub enum Fault {
    Status(u16),
    /// 429 with `retry-after` in seconds.
    RateLimited(u64),
    /// Answers after this long.
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub api: &'static str,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    seen: Mutex<Vec<Seen>>,
    answers: Mutex<VecDeque<String>>,
    faults: Mutex<VecDeque<Fault>>,
    usage: Mutex<(u64, u64)>,
}

#[derive(Clone)]
pub struct FakeModel {
    pub url: String,
    inner: Arc<Inner>,
}

impl FakeModel {
    pub async fn start() -> FakeModel {
        let inner = Arc::new(Inner::default());
        *inner.usage.lock().unwrap() = (120, 30);
        let app = Router::new()
            .route("/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeModel { url, inner }
    }

    /// The next answers, in order (then "OK.").
    pub fn answer(&self, text: &str) {
        self.inner.answers.lock().unwrap().push_back(text.to_owned());
    }

    pub fn fail_next(&self, faults: Vec<Fault>) {
        self.inner.faults.lock().unwrap().extend(faults);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }
}

async fn fault(inner: &Inner) -> Option<Response> {
    let next = inner.faults.lock().unwrap().pop_front();
    match next? {
        Fault::Status(code) => Some(
            (StatusCode::from_u16(code).unwrap(), Json(json!({"error": {"message": "the fake fails on purpose"}})))
                .into_response(),
        ),
        Fault::RateLimited(after) => {
            let mut r =
                (StatusCode::TOO_MANY_REQUESTS, Json(json!({"error": {"message": "slow down"}}))).into_response();
            r.headers_mut().insert("retry-after", after.to_string().parse().unwrap());
            Some(r)
        }
        Fault::Slow(wait) => {
            tokio::time::sleep(wait).await;
            None
        }
    }
}

fn next_answer(inner: &Inner) -> String {
    inner.answers.lock().unwrap().pop_front().unwrap_or_else(|| "OK.".into())
}

async fn openai(State(inner): State<Arc<Inner>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    inner.seen.lock().unwrap().push(Seen { api: "openai", headers, body: body.clone() });
    if let Some(response) = fault(&inner).await {
        return response;
    }
    let (input, output) = *inner.usage.lock().unwrap();
    Json(json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_763_800_000, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": next_answer(&inner)}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
    }))
    .into_response()
}

async fn anthropic(State(inner): State<Arc<Inner>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    inner.seen.lock().unwrap().push(Seen { api: "anthropic", headers: headers.clone(), body: body.clone() });
    if headers.get("x-api-key").is_none() || headers.get("anthropic-version").is_none() {
        return (StatusCode::UNAUTHORIZED, Json(json!({"type": "error", "error": {"type": "authentication_error", "message": "x-api-key header is required"}}))).into_response();
    }
    if let Some(response) = fault(&inner).await {
        return response;
    }
    let (input, output) = *inner.usage.lock().unwrap();
    Json(json!({
        "id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "text", "text": next_answer(&inner)}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": input, "output_tokens": output},
    }))
    .into_response()
}
