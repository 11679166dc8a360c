//! A fake Telegram Bot API on 127.0.0.1 speaking the real wire protocol: `POST
//! /bot<token>/<method>` with JSON, method names case-insensitive, `{ok, result}` and
//! `{ok: false, error_code, description, parameters}` envelopes, `getUpdates` long polling
//! with offsets that confirm, and faults on demand (429 with `retry_after`, 500, a dropped
//! connection, a poll that never answers).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const BOT_TOKEN: &str = "123456:TEST-fake-telegram-token";
pub const BOT_ID: i64 = 555_000;

#[derive(Debug, Clone)]
pub enum Fault {
    RateLimited(u64),
    ServerError,
    /// The connection closes before any answer (and before anything is done).
    Drop,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub params: Value,
    pub at: Instant,
    /// Whether the call was answered with success.
    pub ok: bool,
}

#[derive(Default)]
struct Inner {
    updates: Mutex<VecDeque<Value>>,
    next_update_id: AtomicI64,
    new_update: Notify,
    calls: Mutex<Vec<Call>>,
    /// (chat, message id) → the message as the bot last left it.
    messages: Mutex<HashMap<(i64, i64), Value>>,
    next_message_id: AtomicI64,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    webhook: Mutex<Option<Value>>,
    stall_polls: AtomicBool,
    /// Groups upgraded to supergroups: old id → new id.
    migrated: Mutex<HashMap<i64, i64>>,
}

#[derive(Clone)]
pub struct FakeTelegram {
    pub url: String,
    inner: Arc<Inner>,
}

impl FakeTelegram {
    pub async fn start() -> FakeTelegram {
        let inner = Arc::new(Inner::default());
        inner.next_update_id.store(900_000_001, Ordering::SeqCst);
        inner.next_message_id.store(5000, Ordering::SeqCst);
        let app = Router::new().route("/{bot}/{method}", post(handle)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeTelegram { url, inner }
    }

    /// Queues an update of `kind` (`message`, `callback_query`, …) and returns its id.
    pub fn push(&self, kind: &str, body: Value) -> i64 {
        let id = self.inner.next_update_id.fetch_add(1, Ordering::SeqCst);
        self.inner.updates.lock().unwrap().push_back(json!({"update_id": id, kind: body}));
        self.inner.new_update.notify_waiters();
        id
    }

    pub fn push_message(&self, user: i64, name: &str, chat: i64, message_id: i64, text: &str) -> i64 {
        self.push("message", message_json(user, name, chat, message_id, text))
    }

    /// A press of `data` under the bot's message `message_id`; returns the callback id.
    pub fn press(&self, user: i64, name: &str, chat: i64, message_id: i64, data: &str) -> String {
        let callback_id = format!("cb-{}", self.inner.next_update_id.load(Ordering::SeqCst));
        self.push("callback_query", callback_json(&callback_id, user, name, chat, message_id, data));
        callback_id
    }

    pub fn fail_next(&self, method: &str, faults: Vec<Fault>) {
        self.inner.faults.lock().unwrap().entry(method.to_ascii_lowercase()).or_default().extend(faults);
    }

    /// Upgrades group `from` to supergroup `to`: sends to `from` are refused from now on
    /// with `migrate_to_chat_id`, as the Bot API does.
    pub fn migrate_chat(&self, from: i64, to: i64) {
        self.inner.migrated.lock().unwrap().insert(from, to);
    }

    pub fn stall_polls(&self, stall: bool) {
        self.inner.stall_polls.store(stall, Ordering::SeqCst);
    }

    /// Calls of `method` (any case), in order.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        let method = method.to_ascii_lowercase();
        self.inner.calls.lock().unwrap().iter().filter(|c| c.method == method).cloned().collect()
    }

    pub fn ok_calls(&self, method: &str) -> Vec<Value> {
        self.calls(method).into_iter().filter(|c| c.ok).map(|c| c.params).collect()
    }

    pub fn message(&self, chat: i64, id: i64) -> Option<Value> {
        self.inner.messages.lock().unwrap().get(&(chat, id)).cloned()
    }

    pub fn webhook(&self) -> Option<Value> {
        self.inner.webhook.lock().unwrap().clone()
    }

    /// Waits until `check` finds what it looks for in the fake's state.
    pub async fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&FakeTelegram) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; calls: {:#?}", self.summary());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn summary(&self) -> Vec<String> {
        let calls = self.inner.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.method != "getupdates")
            .map(|c| format!("{} ok={} {}", c.method, c.ok, c.params))
            .collect()
    }
}

pub fn user_json(user: i64, name: &str) -> Value {
    json!({"id": user, "is_bot": false, "first_name": name})
}

pub fn message_json(user: i64, name: &str, chat: i64, message_id: i64, text: &str) -> Value {
    json!({
        "message_id": message_id,
        "from": user_json(user, name),
        "chat": chat_json(chat, name),
        "date": chrono::Utc::now().timestamp(),
        "text": text,
    })
}

fn chat_json(chat: i64, name: &str) -> Value {
    if chat > 0 {
        json!({"id": chat, "first_name": name, "type": "private"})
    } else {
        json!({"id": chat, "title": "A group", "type": "group"})
    }
}

pub fn callback_json(id: &str, user: i64, name: &str, chat: i64, message_id: i64, data: &str) -> Value {
    json!({
        "id": id,
        "from": user_json(user, name),
        "message": {
            "message_id": message_id,
            "from": {"id": BOT_ID, "is_bot": true, "first_name": "loopgate", "username": "loopgate_bot"},
            "chat": chat_json(chat, name),
            "date": chrono::Utc::now().timestamp(),
            "text": "a suggestion",
        },
        "chat_instance": "-4242",
        "data": data,
    })
}

fn error(status: u16, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(seconds) = retry_after {
        body["parameters"] = json!({"retry_after": seconds});
    }
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

fn migrated(to: i64) -> Response {
    let body = json!({
        "ok": false,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": to},
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// Telegram's limit on a message's text after entity parsing.
pub const MAX_TEXT: usize = 4096;
/// The tags Telegram's HTML parse mode knows.
const TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "tg-emoji",
    "code",
    "pre",
    "blockquote",
];

/// The text of a `sendMessage` / `editMessageText` as Telegram would show it, or the
/// refusal Telegram answers: empty text, HTML that does not parse (unknown or unbalanced
/// tags, a bare `<` or `&`, an unknown entity), or more than 4,096 characters once parsed.
#[allow(clippy::result_large_err)] // a fake: the refusal is the answer, as it is
fn check_text(params: &Value) -> Result<String, Response> {
    let raw = params["text"].as_str().unwrap_or_default();
    let shown = match params["parse_mode"].as_str() {
        Some(mode) if mode.eq_ignore_ascii_case("html") => {
            parse_html(raw).map_err(|why| error(400, &format!("Bad Request: can't parse entities: {why}"), None))?
        }
        _ => raw.to_owned(),
    };
    if shown.trim().is_empty() {
        return Err(error(400, "Bad Request: message text is empty", None));
    }
    if shown.encode_utf16().count() > MAX_TEXT {
        return Err(error(400, "Bad Request: message is too long", None));
    }
    Ok(shown)
}

/// Every `callback_data` within 64 bytes, as Telegram requires.
#[allow(clippy::result_large_err)] // a fake: the refusal is the answer, as it is
fn check_keyboard(params: &Value) -> Result<(), Response> {
    let rows = params.pointer("/reply_markup/inline_keyboard").and_then(Value::as_array);
    for button in rows.into_iter().flatten().filter_map(Value::as_array).flatten() {
        if let Some(data) = button["callback_data"].as_str()
            && (data.is_empty() || data.len() > 64)
        {
            return Err(error(400, "Bad Request: BUTTON_DATA_INVALID", None));
        }
    }
    Ok(())
}

/// Telegram's HTML parse mode, strictly: the visible text, or why it cannot be parsed.
pub fn parse_html(html: &str) -> Result<String, String> {
    let mut shown = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                let end = rest
                    .find('>')
                    .ok_or_else(|| format!("unclosed start tag at byte offset {}", html.len() - rest.len()))?;
                let inner = &rest[1..end];
                if let Some(name) = inner.strip_prefix('/') {
                    let name = name.trim().to_ascii_lowercase();
                    match open.pop() {
                        Some(top) if top == name => {}
                        Some(top) => {
                            return Err(format!(
                                "unmatched end tag at byte offset {}, expected \"</{top}>\", found \"</{name}>\"",
                                html.len() - rest.len()
                            ));
                        }
                        None => return Err(format!("unexpected end tag at byte offset {}", html.len() - rest.len())),
                    }
                } else {
                    let name = inner.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
                    if !TAGS.contains(&name.as_str()) {
                        return Err(format!(
                            "unsupported start tag \"{name}\" at byte offset {}",
                            html.len() - rest.len()
                        ));
                    }
                    open.push(name);
                }
                rest = &rest[end + 1..];
            }
            '&' => {
                let end = rest.find(';').filter(|&e| e <= 10);
                let entity = end.map(|e| &rest[..=e]);
                let (text, len) = match entity {
                    Some("&lt;") => ("<", 4),
                    Some("&gt;") => (">", 4),
                    Some("&amp;") => ("&", 5),
                    Some("&quot;") => ("\"", 6),
                    // Telegram reads a bare `&` as itself.
                    _ => ("&", 1),
                };
                shown.push_str(text);
                rest = &rest[len..];
            }
            '>' => {
                shown.push('>');
                rest = &rest[1..];
            }
            c => {
                shown.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if let Some(top) = open.pop() {
        return Err(format!("can't find end tag corresponding to start tag \"{top}\""));
    }
    Ok(shown)
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    Path((bot, method)): Path<(String, String)>,
    body: String,
) -> Response {
    if bot != format!("bot{BOT_TOKEN}") {
        return error(401, "Unauthorized", None);
    }
    let method = method.to_ascii_lowercase();
    let params: Value = if body.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str(&body) {
            Ok(params) => params,
            Err(_) => return error(400, "Bad Request: can't parse JSON", None),
        }
    };
    let fault = inner.faults.lock().unwrap().get_mut(&method).and_then(VecDeque::pop_front);
    let record = |ok: bool| {
        inner.calls.lock().unwrap().push(Call {
            method: method.clone(),
            params: params.clone(),
            at: Instant::now(),
            ok,
        })
    };
    match fault {
        Some(Fault::RateLimited(seconds)) => {
            record(false);
            return error(429, &format!("Too Many Requests: retry after {seconds}"), Some(seconds));
        }
        Some(Fault::ServerError) => {
            record(false);
            return error(500, "Internal Server Error", None);
        }
        Some(Fault::Drop) => {
            record(false);
            // Aborting the handler closes the connection without an answer.
            std::panic::resume_unwind(Box::new("dropped connection"));
        }
        None => {}
    }
    let response = answer(&inner, &method, &params).await;
    record(response.status().is_success());
    response
}

async fn answer(inner: &Inner, method: &str, params: &Value) -> Response {
    match method {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "loopgate", "username": "loopgate_bot",
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "has_main_web_app": false,
        })),
        "getupdates" => {
            if inner.webhook.lock().unwrap().is_some() {
                return error(409, "Conflict: can't use getUpdates method while webhook is active", None);
            }
            if inner.stall_polls.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let offset = params["offset"].as_i64().unwrap_or(0);
            let timeout = Duration::from_secs(params["timeout"].as_u64().unwrap_or(0));
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let notified = inner.new_update.notified();
                {
                    let mut updates = inner.updates.lock().unwrap();
                    // An offset confirms every update below it: they are gone for good.
                    while updates.front().is_some_and(|u| u["update_id"].as_i64().unwrap() < offset) {
                        updates.pop_front();
                    }
                    if !updates.is_empty() {
                        return ok(Value::Array(updates.iter().take(100).cloned().collect()));
                    }
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return ok(json!([]));
                }
            }
        }
        "sendmessage" => {
            let Some(chat) = params["chat_id"].as_i64() else {
                return error(400, "Bad Request: chat_id is empty", None);
            };
            if let Some(to) = inner.migrated.lock().unwrap().get(&chat) {
                return migrated(*to);
            }
            if let Err(refusal) = check_text(params) {
                return refusal;
            }
            // Kept as sent, markup included, so tests can look at both.
            let text = params["text"].as_str().unwrap_or_default();
            if let Err(refusal) = check_keyboard(params) {
                return refusal;
            }
            if chat == 404 {
                return error(400, "Bad Request: chat not found", None);
            }
            let id = inner.next_message_id.fetch_add(1, Ordering::SeqCst);
            let mut message = json!({
                "message_id": id,
                "from": {"id": BOT_ID, "is_bot": true, "first_name": "loopgate", "username": "loopgate_bot"},
                "chat": chat_json(chat, "Owner"),
                "date": chrono::Utc::now().timestamp(),
                "text": text,
            });
            if let Some(markup) = params.get("reply_markup").filter(|m| m.get("inline_keyboard").is_some()) {
                message["reply_markup"] = markup.clone();
            }
            inner.messages.lock().unwrap().insert((chat, id), message.clone());
            ok(message)
        }
        "editmessagetext" | "editmessagereplymarkup" => {
            let (Some(chat), Some(id)) = (params["chat_id"].as_i64(), params["message_id"].as_i64()) else {
                return error(400, "Bad Request: message identifier is not specified", None);
            };
            if method == "editmessagetext"
                && let Err(refusal) = check_text(params)
            {
                return refusal;
            }
            if let Err(refusal) = check_keyboard(params) {
                return refusal;
            }
            let mut messages = inner.messages.lock().unwrap();
            let Some(message) = messages.get_mut(&(chat, id)) else {
                return error(400, "Bad Request: message to edit not found", None);
            };
            let before = message.clone();
            if method == "editmessagetext" {
                message["text"] = params["text"].clone();
            }
            match params.get("reply_markup") {
                Some(markup) => message["reply_markup"] = markup.clone(),
                None => {
                    if let Some(fields) = message.as_object_mut() {
                        fields.remove("reply_markup");
                    }
                }
            }
            if *message == before {
                return error(
                    400,
                    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
                    None,
                );
            }
            ok(message.clone())
        }
        "answercallbackquery" => ok(json!(true)),
        "setwebhook" => {
            *inner.webhook.lock().unwrap() = Some(params.clone());
            ok(json!(true))
        }
        "deletewebhook" => {
            *inner.webhook.lock().unwrap() = None;
            ok(json!(true))
        }
        "getwebhookinfo" => {
            let url = inner.webhook.lock().unwrap().as_ref().and_then(|w| w["url"].as_str().map(str::to_owned));
            ok(json!({"url": url.unwrap_or_default(), "has_custom_certificate": false, "pending_update_count": 0}))
        }
        _ => error(404, "Not Found: method not found", None),
    }
}
