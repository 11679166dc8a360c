//! A fake Discord on 127.0.0.1 speaking the real wire protocols: REST under `/api/v10/…`
//! (bot authorization, snowflake ids as strings, 429 with `retry_after` and
//! `X-RateLimit-*` headers, `enforce_nonce`, interaction callbacks accepted once) and a
//! gateway websocket doing Hello → Identify → READY, heartbeats and their acks, Resume →
//! replay → RESUMED, and dispatches of `MESSAGE_CREATE` and `INTERACTION_CREATE`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub const BOT_TOKEN: &str = "MTA1MDAwMDAwMDAwMDAwMDAwMA.GfAkE0.fake-discord-token-for-tests";
pub const BOT_ID: u64 = 1_050_000_000_000_000_000;
pub const APPLICATION_ID: u64 = 1_050_000_000_000_000_000;
pub const DM_CHANNEL: u64 = 1_120_000_000_000_000_000;
pub const GUILD: u64 = 1_000_000_000_000_000_000;
const HEARTBEAT_MS: u64 = 700;

#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with `retry_after` in seconds (as Discord sends it, a float).
    RateLimited(f64),
    ServerError,
    /// The call is carried out, then the connection drops before the answer.
    DropAfter,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub status: u16,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    calls: Mutex<Vec<Call>>,
    /// (channel, message) → the message as it is now.
    messages: Mutex<HashMap<(u64, u64), Value>>,
    nonces: Mutex<HashMap<String, (u64, u64)>>,
    next_id: AtomicU64,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    /// Interaction id → the response accepted for it.
    callbacks: Mutex<HashMap<String, Value>>,
    /// Interaction id → when its response arrived.
    callback_times: Mutex<HashMap<String, Instant>>,
    /// Woken whenever an interaction response arrives.
    callback_arrived: tokio::sync::Notify,
    /// Interaction id → (channel, message) its component sits on.
    interactions: Mutex<HashMap<String, (u64, u64)>>,
    /// Channel id → `GET /channels/{id}` answer (threads).
    channels: Mutex<HashMap<u64, Value>>,
    gateway: Gateway,
    ws_url: Mutex<String>,
}

#[derive(Default)]
struct Gateway {
    /// Every dispatch sent, with its sequence number, for replay on resume.
    log: Mutex<Vec<(u64, Value)>>,
    seq: AtomicU64,
    connection: Mutex<Option<mpsc::UnboundedSender<Ws>>>,
    identifies: AtomicUsize,
    resumes: AtomicUsize,
    heartbeats: AtomicUsize,
    silent: AtomicBool,
    /// On the next resume, replay this many dispatches the client already had.
    replay_extra: AtomicUsize,
    session: Mutex<String>,
}

#[derive(Clone)]
pub struct FakeDiscord {
    pub url: String,
    inner: Arc<Inner>,
}

impl FakeDiscord {
    pub async fn start() -> FakeDiscord {
        let inner = Arc::new(Inner::default());
        inner.next_id.store(1_300_000_000_000_000_000, Ordering::SeqCst);
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        *inner.ws_url.lock().unwrap() = format!("ws://{}", ws.local_addr().unwrap());
        tokio::spawn(accept_gateway(ws, inner.clone()));
        let app = Router::new().fallback(rest).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeDiscord { url, inner }
    }

    /// Sends a gateway dispatch (`MESSAGE_CREATE`, `INTERACTION_CREATE`) to the connected client.
    pub fn dispatch(&self, event: &str, data: Value) {
        let g = &self.inner.gateway;
        let seq = g.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let frame = json!({"op": 0, "t": event, "s": seq, "d": data});
        g.log.lock().unwrap().push((seq, frame.clone()));
        if g.silent.load(Ordering::SeqCst) {
            return;
        }
        if let Some(tx) = g.connection.lock().unwrap().as_ref() {
            let _ = tx.send(Ws::Text(frame.to_string()));
        }
    }

    pub fn message_create(&self, data: Value) {
        self.dispatch("MESSAGE_CREATE", data);
    }

    /// A button press on `message` by `user`, over the gateway; returns the interaction id.
    pub fn press(&self, user: &Value, message: &Value, custom_id: &str) -> String {
        let interaction = self.component_interaction(user, message, custom_id);
        let id = interaction["id"].as_str().unwrap().to_owned();
        self.dispatch("INTERACTION_CREATE", interaction);
        id
    }

    pub fn component_interaction(&self, user: &Value, message: &Value, custom_id: &str) -> Value {
        let mut i = self.interaction_base(user, 3);
        self.remember_message(&i, message);
        i["message"] = message.clone();
        i["channel_id"] = message["channel_id"].clone();
        i["data"] = json!({"custom_id": custom_id, "component_type": 2});
        i
    }

    pub fn modal_submit(&self, user: &Value, message: &Value, custom_id: &str, text: &str) -> String {
        let mut i = self.interaction_base(user, 5);
        self.remember_message(&i, message);
        i["message"] = message.clone();
        i["channel_id"] = message["channel_id"].clone();
        i["data"] = json!({"custom_id": custom_id, "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": "action", "value": text}]}
        ]});
        let id = i["id"].as_str().unwrap().to_owned();
        self.dispatch("INTERACTION_CREATE", i);
        id
    }

    pub fn slash(&self, user: &Value, name: &str, argument: Option<(&str, &str)>) -> String {
        let mut i = self.interaction_base(user, 2);
        let options: Vec<Value> =
            argument.map(|(n, v)| json!({"name": n, "type": 3, "value": v})).into_iter().collect();
        i["data"] = json!({"id": "1060000000000000001", "name": name, "type": 1, "options": options});
        let id = i["id"].as_str().unwrap().to_owned();
        self.dispatch("INTERACTION_CREATE", i);
        id
    }

    fn remember_message(&self, interaction: &Value, message: &Value) {
        let key = (
            message["channel_id"].as_str().unwrap().parse().unwrap(),
            message["id"].as_str().unwrap().parse().unwrap(),
        );
        self.inner.interactions.lock().unwrap().insert(interaction["id"].as_str().unwrap().to_owned(), key);
    }

    fn interaction_base(&self, user: &Value, kind: u8) -> Value {
        let id = self.next_id();
        json!({
            "id": id.to_string(),
            "application_id": APPLICATION_ID.to_string(),
            "type": kind,
            "token": format!("token-{id}"),
            "version": 1,
            "channel_id": DM_CHANNEL.to_string(),
            "channel": {"id": DM_CHANNEL.to_string(), "type": 1, "flags": 0},
            "user": user,
            "app_permissions": "562949953601536",
            "locale": "en-GB",
            "entitlements": [],
            "authorizing_integration_owners": {"1": user["id"]},
            "context": 1,
            "attachment_size_limit": 10485760,
        })
    }

    /// Closes the gateway connection the way Discord does before a resume (close 4000);
    /// on the resume, `replay` dispatches the client already had are sent again.
    pub fn disconnect(&self, replay: usize) {
        let g = &self.inner.gateway;
        g.replay_extra.store(replay, Ordering::SeqCst);
        if let Some(tx) = g.connection.lock().unwrap().take() {
            let _ = tx.send(Ws::Close(Some(CloseFrame { code: CloseCode::Library(4000), reason: "reset".into() })));
        }
    }

    /// A gateway that stops talking: no acks, no Hello on new connections.
    pub fn silence(&self, silent: bool) {
        self.inner.gateway.silent.store(silent, Ordering::SeqCst);
        if silent {
            // Whatever connection there is hears nothing more.
            self.inner.gateway.connection.lock().unwrap().take();
        }
    }

    pub fn identifies(&self) -> usize {
        self.inner.gateway.identifies.load(Ordering::SeqCst)
    }

    pub fn resumes(&self) -> usize {
        self.inner.gateway.resumes.load(Ordering::SeqCst)
    }

    pub fn add_thread(&self, thread: u64, parent: u64) {
        self.inner.channels.lock().unwrap().insert(
            thread,
            json!({"id": thread.to_string(), "type": 11, "guild_id": GUILD.to_string(), "parent_id": parent.to_string()}),
        );
    }

    pub fn fail_next(&self, route: &str, faults: Vec<Fault>) {
        self.inner.faults.lock().unwrap().entry(route.to_owned()).or_default().extend(faults);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().unwrap().clone()
    }

    /// Successful calls whose `METHOD path` matches `route` (`*` matches one segment).
    pub fn ok_calls(&self, route: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.status < 300 && route_matches(route, &c.method, &c.path)).collect()
    }

    pub fn messages(&self) -> Vec<Value> {
        let mut all: Vec<Value> = self.inner.messages.lock().unwrap().values().cloned().collect();
        all.sort_by_key(|m| m["id"].as_str().unwrap().parse::<u64>().unwrap());
        all
    }

    /// The response loopgate gave to interaction `id`.
    pub fn callback(&self, id: &str) -> Option<Value> {
        self.inner.callbacks.lock().unwrap().get(id).cloned()
    }

    pub async fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&FakeDiscord) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; calls: {:#?}", self.calls());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// When the response to interaction `id` arrived.
    pub fn callback_at(&self, id: &str) -> Option<Instant> {
        self.inner.callback_times.lock().unwrap().get(id).copied()
    }

    /// Waits (without spinning) until the response to interaction `id` has arrived; when it did.
    pub async fn callback_arrival(&self, id: &str) -> Instant {
        loop {
            let arrived = self.inner.callback_arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(at) = self.callback_at(id) {
                return at;
            }
            arrived.await;
        }
    }

    pub async fn wait_for_callback(&self, id: &str) -> Value {
        let arrived = tokio::time::timeout(Duration::from_secs(15), self.callback_arrival(id)).await;
        assert!(arrived.is_ok(), "no response to interaction {id}; calls: {:#?}", self.calls());
        self.callback(id).unwrap()
    }

    /// The posted message carrying button `custom_id`.
    pub async fn posted(&self, custom_id: &str) -> Value {
        let needle = format!("\"{custom_id}\"");
        self.wait_for(&format!("a message with button {custom_id}"), |f| {
            f.messages().into_iter().find(|m| m["components"].to_string().contains(&needle))
        })
        .await
    }

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::SeqCst)
    }
}

pub fn user_json(id: u64, name: &str) -> Value {
    json!({"id": id.to_string(), "username": name.to_lowercase(), "global_name": name, "discriminator": "0", "avatar": null, "public_flags": 0})
}

/// A `MESSAGE_CREATE` payload; `guild` is `None` for a DM.
pub fn message_json(id: u64, channel: u64, guild: Option<u64>, author: &Value, content: &str) -> Value {
    let mut m = json!({
        "id": id.to_string(),
        "channel_id": channel.to_string(),
        "author": author,
        "content": content,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": false,
        "type": 0,
        "flags": 0,
        "components": [],
    });
    if let Some(guild) = guild {
        m["guild_id"] = guild.to_string().into();
    }
    m
}

fn route_matches(route: &str, method: &str, path: &str) -> bool {
    let Some((want_method, want_path)) = route.split_once(' ') else { return false };
    let want: Vec<&str> = want_path.split('/').collect();
    let got: Vec<&str> = path.split('/').collect();
    want_method == method && want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| *w == "*" || w == g)
}

fn discord_error(status: StatusCode, code: u32, message: &str) -> Response {
    (status, axum::Json(json!({"code": code, "message": message}))).into_response()
}

async fn rest(State(inner): State<Arc<Inner>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().strip_prefix("/api/v10").unwrap_or(uri.path()).to_owned();
    let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
    let is_callback = path.starts_with("/interactions/");
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bot {BOT_TOKEN}"));
    let fault = {
        let mut faults = inner.faults.lock().unwrap();
        faults
            .iter_mut()
            .find(|(route, _)| route_matches(route, method.as_str(), &path))
            .and_then(|(_, q)| q.pop_front())
    };
    let (status, response) = if !authorized && !is_callback {
        (401, discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized"))
    } else {
        match fault {
            Some(Fault::RateLimited(after)) => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(
                        json!({"message": "You are being rate limited.", "retry_after": after, "global": false}),
                    ),
                )
                    .into_response();
                let h = r.headers_mut();
                h.insert("retry-after", format!("{}", after.ceil() as u64).parse().unwrap());
                h.insert("x-ratelimit-remaining", "0".parse().unwrap());
                h.insert("x-ratelimit-reset-after", format!("{after:.3}").parse().unwrap());
                h.insert("x-ratelimit-scope", "user".parse().unwrap());
                (429, r)
            }
            Some(Fault::ServerError) => {
                (500, discord_error(StatusCode::INTERNAL_SERVER_ERROR, 0, "500: Internal Server Error"))
            }
            Some(Fault::DropAfter) => {
                let _ = serve(&inner, &method, &path, &body);
                record(&inner, &method, &path, &body, 599);
                // Aborting the handler closes the connection without an answer.
                std::panic::resume_unwind(Box::new("dropped connection"));
            }
            None => serve(&inner, &method, &path, &body),
        }
    };
    record(&inner, &method, &path, &body, status);
    response
}

fn record(inner: &Inner, method: &Method, path: &str, body: &Value, status: u16) {
    inner.calls.lock().unwrap().push(Call {
        method: method.to_string(),
        path: path.to_owned(),
        body: body.clone(),
        status,
        at: Instant::now(),
    });
}

fn serve(inner: &Inner, method: &Method, path: &str, body: &Value) -> (u16, Response) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ok = |v: Value| (200, axum::Json(v).into_response());
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["gateway"]) => ok(json!({"url": inner.ws_url.lock().unwrap().clone()})),
        ("GET", ["users", "@me"]) => ok(bot_user()),
        ("GET", ["channels", id]) => match inner.channels.lock().unwrap().get(&id.parse().unwrap_or(0)) {
            Some(channel) => ok(channel.clone()),
            None => (404, discord_error(StatusCode::NOT_FOUND, 10003, "Unknown Channel")),
        },
        ("POST", ["users", "@me", "channels"]) => {
            ok(json!({"id": DM_CHANNEL.to_string(), "type": 1, "recipients": [{"id": body["recipient_id"]}]}))
        }
        ("PUT", ["applications", _, "commands"]) => {
            let commands: Vec<Value> = body
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(n, mut c)| {
                    c["id"] = format!("10600000000000000{n:02}").into();
                    c
                })
                .collect();
            ok(Value::Array(commands))
        }
        ("POST", ["channels", channel, "messages"]) => {
            let channel: u64 = channel.parse().unwrap_or(0);
            if body["content"].as_str().is_none_or(|c| c.trim().is_empty()) {
                return (400, discord_error(StatusCode::BAD_REQUEST, 50006, "Cannot send an empty message"));
            }
            if let Err(refusal) = check_body(body) {
                return (400, refusal);
            }
            let nonce = body["nonce"].as_str().map(str::to_owned);
            if body["enforce_nonce"] == true
                && let Some(nonce) = &nonce
                && let Some(existing) = inner.nonces.lock().unwrap().get(nonce).copied()
            {
                return ok(inner.messages.lock().unwrap()[&existing].clone());
            }
            let id = inner.next_id.fetch_add(1, Ordering::SeqCst);
            let mut message = message_json(id, channel, None, &bot_user(), body["content"].as_str().unwrap());
            message["components"] = body["components"].clone();
            if !body["components"].is_array() {
                message["components"] = json!([]);
            }
            message["application_id"] = APPLICATION_ID.to_string().into();
            inner.messages.lock().unwrap().insert((channel, id), message.clone());
            if let Some(nonce) = nonce {
                inner.nonces.lock().unwrap().insert(nonce, (channel, id));
            }
            ok(message)
        }
        ("PATCH", ["channels", channel, "messages", id]) => {
            let key = (channel.parse().unwrap_or(0), id.parse().unwrap_or(0));
            let mut messages = inner.messages.lock().unwrap();
            let Some(message) = messages.get_mut(&key) else {
                return (404, discord_error(StatusCode::NOT_FOUND, 10008, "Unknown Message"));
            };
            if let Err(refusal) = check_body(body) {
                return (400, refusal);
            }
            apply_edit(message, body);
            ok(message.clone())
        }
        ("PUT", ["channels", _, "messages", _, "reactions", _, "@me"]) => (204, StatusCode::NO_CONTENT.into_response()),
        ("POST", ["interactions", id, _token, "callback"]) => {
            if let Err(refusal) = check_body(&body["data"]) {
                return (400, refusal);
            }
            let mut callbacks = inner.callbacks.lock().unwrap();
            if callbacks.contains_key(*id) {
                return (
                    400,
                    discord_error(StatusCode::BAD_REQUEST, 40060, "Interaction has already been acknowledged."),
                );
            }
            callbacks.insert((*id).to_owned(), body.clone());
            inner.callback_times.lock().unwrap().insert((*id).to_owned(), Instant::now());
            inner.callback_arrived.notify_waiters();
            // Type 7 updates the message the component sits on, as Discord does.
            let on = inner.interactions.lock().unwrap().get(*id).copied();
            if body["type"] == 7
                && let Some(key) = on
                && let Some(message) = inner.messages.lock().unwrap().get_mut(&key)
            {
                apply_edit(message, &body["data"]);
            }
            (204, StatusCode::NO_CONTENT.into_response())
        }
        _ => (404, discord_error(StatusCode::NOT_FOUND, 0, "404: Not Found")),
    }
}

/// Discord's limits on a message body: content up to 2,000 characters, a component's
/// `custom_id` of 1 to 100 and a button's label up to 80. Answers 50035 as Discord does.
#[allow(clippy::result_large_err)] // a fake: the refusal is the answer, as it is
fn check_body(body: &Value) -> Result<(), Response> {
    let invalid = |what: &str| discord_error(StatusCode::BAD_REQUEST, 50035, &format!("Invalid Form Body ({what})"));
    if body["content"].as_str().is_some_and(|c| c.chars().count() > 2000) {
        return Err(invalid("content: Must be 2000 or fewer in length."));
    }
    let rows = body["components"].as_array().into_iter().flatten();
    for component in rows.flat_map(|row| row["components"].as_array().cloned().unwrap_or_default()) {
        if let Some(id) = component["custom_id"].as_str()
            && (id.is_empty() || id.chars().count() > 100)
        {
            return Err(invalid("custom_id: Must be between 1 and 100 in length."));
        }
        if component["label"].as_str().is_some_and(|l| l.chars().count() > 80) {
            return Err(invalid("label: Must be 80 or fewer in length."));
        }
    }
    Ok(())
}

fn apply_edit(message: &mut Value, body: &Value) {
    for field in ["content", "components"] {
        if let Some(v) = body.get(field) {
            message[field] = v.clone();
        }
    }
}

pub fn bot_user() -> Value {
    json!({"id": BOT_ID.to_string(), "username": "loopgate", "global_name": null, "discriminator": "4242", "avatar": null, "bot": true, "verified": true, "mfa_enabled": false, "flags": 0, "public_flags": 0})
}

async fn accept_gateway(listener: tokio::net::TcpListener, inner: Arc<Inner>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        tokio::spawn(gateway_connection(stream, inner.clone()));
    }
}

async fn gateway_connection(stream: tokio::net::TcpStream, inner: Arc<Inner>) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let (mut sink, mut source) = ws.split();
    let g = &inner.gateway;
    if g.silent.load(Ordering::SeqCst) {
        // Accept, then say nothing at all.
        while source.next().await.is_some() {}
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Ws>();
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let closing = matches!(frame, Ws::Close(_));
            if sink.send(frame).await.is_err() || closing {
                break;
            }
        }
    });
    let _ = tx.send(Ws::Text(json!({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_MS}}).to_string()));
    while let Some(Ok(frame)) = source.next().await {
        let Ws::Text(text) = frame else { continue };
        let Ok(payload) = serde_json::from_str::<Value>(&text) else { continue };
        if g.silent.load(Ordering::SeqCst) {
            continue;
        }
        match payload["op"].as_u64() {
            Some(1) => {
                g.heartbeats.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(Ws::Text(json!({"op": 11}).to_string()));
            }
            Some(2) => {
                g.identifies.fetch_add(1, Ordering::SeqCst);
                let session = format!("session-{}", g.identifies.load(Ordering::SeqCst));
                *g.session.lock().unwrap() = session.clone();
                let seq = g.seq.fetch_add(1, Ordering::SeqCst) + 1;
                let ready = json!({"op": 0, "t": "READY", "s": seq, "d": {
                    "v": 10,
                    "user": bot_user(),
                    "guilds": [],
                    "session_id": session,
                    "resume_gateway_url": inner.ws_url.lock().unwrap().clone(),
                    "application": {"id": APPLICATION_ID.to_string(), "flags": 0},
                }});
                g.log.lock().unwrap().push((seq, ready.clone()));
                let _ = tx.send(Ws::Text(ready.to_string()));
                *g.connection.lock().unwrap() = Some(tx.clone());
            }
            Some(6) => {
                g.resumes.fetch_add(1, Ordering::SeqCst);
                let after = payload["d"]["seq"].as_u64().unwrap_or(0);
                let extra = g.replay_extra.swap(0, Ordering::SeqCst) as u64;
                let from = after.saturating_sub(extra);
                let replay: Vec<Value> = g
                    .log
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(s, f)| *s > from && f["t"] != "READY")
                    .map(|(_, f)| f.clone())
                    .collect();
                for frame in replay {
                    let _ = tx.send(Ws::Text(frame.to_string()));
                }
                let seq = g.seq.load(Ordering::SeqCst);
                let _ = tx.send(Ws::Text(json!({"op": 0, "t": "RESUMED", "s": seq, "d": {}}).to_string()));
                *g.connection.lock().unwrap() = Some(tx.clone());
            }
            _ => {}
        }
    }
    writer.abort();
}
