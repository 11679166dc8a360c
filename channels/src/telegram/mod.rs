//! The Telegram adapter: long polling or a webhook in, suggestions and approvals out as
//! messages with inline keyboards, button presses and commands back to the engine.
//!
//! ```text
//! getUpdates / POST /webhooks/telegram ─▶ normalize ─▶ signal (+ answer, command, edit)
//! delivery events ─▶ render ─▶ outbox ─▶ send (sendMessage / editMessageText)
//! ```
//!
//! A button press is answered (`answerCallbackQuery`) as soon as the engine has decided
//! it; the message itself is edited to show the outcome by the delivery event the decision
//! raised, through the outbox like every other send, so every channel's copy is edited the
//! same way whoever decided where.

mod api;
mod normalize;
mod render;

use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use chrono_tz::Tz;
use loopgate_engine::actions::ApprovalDelivery;
use loopgate_engine::intelligence::Intelligence;
use loopgate_engine::outbox::{NewOutbound, Outbound, SendError, Verification};
use loopgate_engine::pairing::PairChannel;
use loopgate_engine::suggestion::Delivery;
use loopgate_engine::{Store, StoreError};
use serde_json::{Value, json};
use tokio::sync::watch;

pub use api::{BotApi, CallError};
pub use normalize::{Callback, ChatMessage, Command, Inbound, normalize, parse_command};
pub use render::escape;

use crate::backoff::Backoff;
use crate::channel::{BoxFuture, Channel, ChannelContext, Sent, Wakes, posted_copies};
use crate::chat::{self, Button, Commands, Markup, Pressed, sleep_or_stop};
use crate::liveness::Liveness;

pub const CHANNEL: &str = "telegram";

/// The update kinds loopgate asks for; everything else is never delivered.
const ALLOWED_UPDATES: [&str; 3] = ["message", "edited_message", "callback_query"];
/// The longest a button press waits for its outcome before it is answered "working on it"
/// (an approved webhook may take a while; the message shows the outcome when it is known).
const ANSWER_WITHIN: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Polling,
    /// Telegram POSTs updates to `url`, with `secret` in `X-Telegram-Bot-Api-Secret-Token`.
    Webhook {
        url: String,
        secret: String,
    },
}

#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub token: String,
    pub api_url: String,
    pub mode: Mode,
    /// Where suggestions and approvals are posted; `None` posts nothing.
    pub chat_id: Option<i64>,
    /// How long one `getUpdates` waits for something to happen.
    pub poll_timeout: Duration,
    /// How long without hearing from Telegram counts as dead, for `/readyz`.
    pub stale_after: Duration,
    /// In webhook mode, how often Telegram is asked whether updates are piling up.
    pub webhook_check: Duration,
    pub timezone: Tz,
}

pub struct Telegram {
    config: TelegramConfig,
    api: BotApi,
    store: Store,
    intelligence: Arc<Intelligence>,
    liveness: Liveness,
    wakes: Wakes,
    /// Chats that moved (a group upgraded to a supergroup), old id → new, as far as known;
    /// kept in `channel_state` so every later send and a restart use the new id.
    moved: std::sync::Mutex<std::collections::HashMap<i64, Option<i64>>>,
}

/// How a button press is answered: a toast, or an alert the user must dismiss.
struct Answer {
    text: String,
    alert: bool,
}

impl Answer {
    fn toast(text: impl Into<String>) -> Answer {
        Answer { text: text.into(), alert: false }
    }

    fn alert(text: impl Into<String>) -> Answer {
        Answer { text: text.into(), alert: true }
    }
}

impl Telegram {
    pub fn new(
        config: TelegramConfig,
        store: Store,
        intelligence: Arc<Intelligence>,
        wakes: Wakes,
    ) -> anyhow::Result<Arc<Telegram>> {
        let api = BotApi::new(&config.api_url, &config.token)?;
        let liveness = Liveness::new(CHANNEL, config.stale_after);
        let moved = std::sync::Mutex::default();
        Ok(Arc::new(Telegram { config, api, store, intelligence, liveness, wakes, moved }))
    }

    /// Whether a webhook request carries our secret, compared in constant time.
    pub fn webhook_secret_matches(&self, header: Option<&[u8]>) -> bool {
        use subtle::ConstantTimeEq;
        match (&self.config.mode, header) {
            (Mode::Webhook { secret, .. }, Some(given)) => secret.as_bytes().ct_eq(given).into(),
            _ => false,
        }
    }

    /// One update from the webhook: a sign of life, then handled like a polled one.
    pub async fn handle_webhook(&self, raw: &Value) -> Result<(), StoreError> {
        self.liveness.mark(self.now_ms());
        self.handle_update(raw).await
    }

    /// Wall-clock time for liveness: whether Telegram answered lately is a matter of real
    /// seconds, whatever clock the engine runs on.
    fn now_ms(&self) -> i64 {
        crate::liveness::wall_clock_ms()
    }

    /// Handles one update, whether polled or posted. Handling it twice (a redelivery after
    /// a crash) changes nothing more: signals are unique by the platform's id, decisions
    /// are compare-and-swap, and every send is queued under a key derived from the update.
    /// An error means the store failed and the update must be delivered again.
    pub async fn handle_update(&self, raw: &Value) -> Result<(), StoreError> {
        let identities = &self.intelligence.settings().answerers;
        if let Some((from, to)) = normalize::migration(raw) {
            self.chat_moved(from, to).await?;
        }
        match normalize(raw, identities) {
            Inbound::Message(message) => self.on_message(message).await,
            Inbound::Callback(callback) => self.on_callback(callback).await,
            Inbound::Ignored { update_id, reason } => {
                tracing::debug!(update_id, reason, "telegram update skipped");
                metrics::counter!("loopgate_telegram_updates_skipped_total").increment(1);
                Ok(())
            }
        }
    }

    async fn ingest(&self, signal: loopgate_engine::signal::NewSignal) -> Result<(), StoreError> {
        self.store.ingest(signal).await?;
        Ok(())
    }

    /// Queues ordered sends in one commit and wakes the outbox worker.
    async fn enqueue_all(&self, parts: Vec<NewOutbound>) -> Result<(), StoreError> {
        self.store.enqueue_all(&parts).await?;
        self.wakes.outbox.notify_one();
        Ok(())
    }

    /// Queues a send and wakes the outbox worker.
    async fn enqueue(&self, dedupe_key: String, payload: Value) -> Result<(), StoreError> {
        self.store.enqueue(&NewOutbound { channel: CHANNEL.into(), dedupe_key, payload }).await?;
        self.wakes.outbox.notify_one();
        Ok(())
    }

    async fn on_callback(&self, callback: Callback) -> Result<(), StoreError> {
        let started = Instant::now();
        let span = tracing::info_span!("telegram_callback", callback = %callback.id, user = %callback.claimant.user_id);
        async move {
            let outcome = match Button::parse(&callback.data) {
                None => Ok(Answer::alert("This button is no longer valid.")),
                Some(button) => self.press(button, &callback).await,
            };
            let answer = match &outcome {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::error!(%error, "a button press failed");
                    &Answer::alert("Internal error — nothing was changed. Please try again.")
                }
            };
            self.answer_callback(&callback.id, answer).await;
            metrics::histogram!("loopgate_telegram_callback_seconds").record(started.elapsed().as_secs_f64());
            outcome?;
            self.wakes.deliveries.notify_one();
            self.ingest(callback.signal).await
        }
        .instrument(span)
        .await
    }

    async fn answer_callback(&self, id: &str, answer: &Answer) {
        let params = json!({"callback_query_id": id, "text": answer.text, "show_alert": answer.alert});
        if let Err(error) = self.api.call_json("answerCallbackQuery", &params).await {
            // Telegram accepts an answer only briefly; a late or lost one leaves a spinner,
            // not a wrong state, so it is not retried.
            tracing::warn!(%error, "answerCallbackQuery failed");
        }
    }

    async fn press(&self, button: Button, callback: &Callback) -> Result<Answer, StoreError> {
        let pressed =
            chat::press(&self.intelligence, button, &callback.claimant, self.config.timezone, ANSWER_WITHIN).await?;
        let suggestion = match pressed {
            Pressed::Done(text) | Pressed::Running(text) => return Ok(Answer::toast(text)),
            Pressed::Refused(text) => return Ok(Answer::alert(text)),
            Pressed::AskWords(suggestion, draft) => {
                let Some((chat_id, _)) = callback.message else {
                    return Ok(Answer::alert("I cannot see that chat any more; answer from the API."));
                };
                let key = format!("{CHANNEL}:callback:{}", callback.id);
                return Ok(match draft {
                    Some(text) => {
                        self.enqueue(key, render::draft(chat_id, &suggestion, &text)).await?;
                        Answer::toast("Here is a draft: Send, Edit or Cancel.")
                    }
                    None => {
                        self.enqueue(key, render::words_prompt(chat_id, &suggestion)).await?;
                        Answer::toast("Reply to my next message with the words to send.")
                    }
                });
            }
            Pressed::Open(suggestion) => suggestion,
        };
        let id = suggestion.id;
        // Keyed by the press: a redelivered update queues nothing new.
        let key = format!("{CHANNEL}:callback:{}", callback.id);
        match (button, callback.message) {
            (Button::Edit(_), Some((chat_id, _))) => {
                self.enqueue(key, render::edit_prompt(chat_id, &suggestion)).await?;
                Ok(Answer::toast("Reply to my next message with the new text."))
            }
            (Button::Edit(_), None) => Ok(Answer::alert("I cannot see that chat any more; edit it from the API.")),
            (_, None) => Ok(Answer::alert("That message is too old to change; answer from /suggestions.")),
            (Button::SnoozeMenu(_), Some((chat_id, message_id))) => {
                self.enqueue(key, render::swap_keyboard(chat_id, message_id, render::snooze_keyboard(id))).await?;
                Ok(Answer::toast("Snooze until…"))
            }
            (_, Some((chat_id, message_id))) => {
                self.enqueue(key, render::swap_keyboard(chat_id, message_id, render::suggestion_keyboard(id))).await?;
                Ok(Answer::toast(""))
            }
        }
    }

    async fn on_message(&self, message: ChatMessage) -> Result<(), StoreError> {
        let span = tracing::info_span!("telegram_message", chat = message.chat_id, message = message.message_id);
        async move {
            if let Some(code) = message.command.as_ref().and_then(|c| c.pairing_code()).map(str::to_owned) {
                return self.on_pairing(message, &code).await;
            }
            if let (Some(reply_to), false) = (message.reply_to, message.edited)
                && let Some(prompt) =
                    self.store.outbound_by_ref(CHANNEL, &format!("{}:{reply_to}", message.chat_id)).await?
                && let Some(id) = prompt.payload.pointer("/prompt/edit_suggestion").and_then(Value::as_i64)
            {
                self.on_edit_reply(&message, id).await?;
            } else if let Some(command) = &message.command {
                self.on_command(&message, command).await?;
            } else if message.chat_id > 0 && message.signal.actor.as_ref().is_some_and(|a| a.is_owner) {
                return self.on_owner_message(message).await;
            }
            self.ingest(message.signal).await
        }
        .instrument(span)
        .await
    }

    /// The owner talking to the assistant in its private chat: recorded first (so it is
    /// part of the conversation an answer sees), then a request in it is carried out and
    /// acknowledged, or the conversation answered.
    async fn on_owner_message(&self, message: ChatMessage) -> Result<(), StoreError> {
        let (chat_id, message_id) = (message.chat_id, message.message_id);
        let now = self.store.clock().now();
        let ingested = self.store.ingest(message.signal.clone()).await?;
        if message.forwarded {
            // Someone else's words passed on: recorded, never taken as the owner's command.
            return Ok(());
        }
        let edits = match message.edited {
            true => self.store.signal_by_external_id(CHANNEL, &format!("{chat_id}:{message_id}")).await?,
            false => None,
        };
        let owner = message.signal.actor.as_ref().and_then(|a| a.name.clone()).unwrap_or_else(|| "the owner".into());
        let conversation = chat_id.to_string();
        let said = loopgate_engine::request::Said {
            signal: ingested.id,
            edits,
            source: CHANNEL,
            conversation: &conversation,
            text: &message.signal.text,
            // An edit's relative time ("in 10 minutes") counts from the edit.
            at: if message.edited { now } else { message.signal.occurred_at.unwrap_or(now) },
            by: &owner,
        };
        // One answer per message, and one per edit of it.
        let key = match message.edited {
            true => format!("{CHANNEL}:reply:{chat_id}:{message_id}:edit:{}", ingested.id),
            false => format!("{CHANNEL}:reply:{chat_id}:{message_id}"),
        };
        match chat::owner_said(&self.intelligence, &said).await? {
            chat::Reply::Acknowledge(s) => {
                self.enqueue(key, render::acknowledge(chat_id, message_id, &s, self.config.timezone)).await
            }
            chat::Reply::Text(text) => {
                self.enqueue_all(chat::parts(CHANNEL, &key, render::reply_parts(chat_id, Some(message_id), &text)))
                    .await
            }
            chat::Reply::Nothing => {
                self.wakes.deliveries.notify_one();
                Ok(())
            }
            chat::Reply::Chat => {
                let chat = crate::chat::ChatTurn {
                    source: CHANNEL,
                    conversation: message.chat_id.to_string(),
                    owner: message
                        .signal
                        .actor
                        .as_ref()
                        .and_then(|a| a.name.clone())
                        .unwrap_or_else(|| "the owner".into()),
                    text: message.signal.text.clone(),
                    key,
                };
                chat.answer_later(self.intelligence.clone(), self.store.clone(), self.wakes.clone(), move |text| {
                    render::reply_parts(chat_id, Some(message_id), &text)
                });
                Ok(())
            }
        }
    }

    /// `/start CODE`: pairing, answered in the chat it came from (a private chat only: a
    /// code typed in a group is seen by everyone there). The code is not recorded.
    async fn on_pairing(&self, mut message: ChatMessage, code: &str) -> Result<(), StoreError> {
        let answer = match (&message.claimant, message.chat_id > 0, message.edited) {
            (_, _, true) => None,
            (Some(claimant), true, false) => {
                Some(chat::pair(&self.intelligence, PairChannel::Telegram, claimant, code).await?)
            }
            (_, false, false) => {
                // Everyone here has seen it now: it must not work for any of them.
                self.store.revoke_pairing_code(PairChannel::Telegram, code).await?;
                Some(
                    "Pairing works only in a private chat with me: everyone here saw that code, so it no longer \
                     works. Run `loopgate pair telegram` for a new one and send it to me privately."
                        .into(),
                )
            }
            (None, true, false) => None,
        };
        if let Some(answer) = answer {
            self.reply(&message, escape(&answer)).await?;
        }
        // A code is a credential: neither the text nor the raw update keeps it.
        message.signal.text = format!("/start {}", chat::PAIRING_REDACTED);
        message.signal.payload = None;
        self.ingest(message.signal).await
    }

    async fn reply(&self, message: &ChatMessage, html: String) -> Result<(), StoreError> {
        let key = format!("{CHANNEL}:reply:{}:{}", message.chat_id, message.message_id);
        self.enqueue(key, render::reply(message.chat_id, Some(message.message_id), html)).await
    }

    /// The owner's reply to an Edit prompt: the edited action, decided like a button press.
    async fn on_edit_reply(&self, message: &ChatMessage, id: i64) -> Result<(), StoreError> {
        let Some(claimant) = &message.claimant else { return Ok(()) };
        let Some(suggestion) = self.store.suggestion(id).await? else {
            return self.reply(message, "This suggestion no longer exists.".into()).await;
        };
        let answer = match chat::edit_response(&suggestion, &message.signal.text) {
            Err(why) => format!("Not edited: {why}"),
            Ok(response) => {
                match chat::respond(&self.intelligence, id, response, claimant, self.config.timezone, ANSWER_WITHIN)
                    .await?
                {
                    Pressed::Done(text) | Pressed::Running(text) | Pressed::Refused(text) => text,
                    Pressed::Open(_) | Pressed::AskWords(..) => unreachable!("an answer opens nothing"),
                }
            }
        };
        self.wakes.deliveries.notify_one();
        self.reply(message, escape(&answer)).await
    }

    async fn on_command(&self, message: &ChatMessage, command: &Command) -> Result<(), StoreError> {
        let commands = self.commands();
        let text = if commands.allowed(message.claimant.as_ref(), &command.name) {
            commands.run(&command.name, &command.argument).await?
        } else {
            chat::COMMAND_REFUSAL.into()
        };
        self.reply(message, text).await
    }

    fn commands(&self) -> Commands<'_> {
        Commands {
            intelligence: &self.intelligence,
            markup: Markup::Html,
            timezone: self.config.timezone,
            channel: CHANNEL,
        }
    }

    /// Where suggestions and approvals go: the configured chat, else the private chat of
    /// the first owner who paired (a private chat's id is its user's id).
    fn chat_id(&self) -> Option<i64> {
        self.config.chat_id.or_else(|| {
            self.intelligence.settings().answerers.paired_on(CHANNEL).first().and_then(|id| id.parse().ok())
        })
    }

    /// Where a chat is now: itself, or where it moved (followed to the end).
    pub async fn current_chat(&self, chat: i64) -> Result<i64, StoreError> {
        let mut at = chat;
        for _ in 0..4 {
            let known = self.moved.lock().unwrap().get(&at).copied();
            let next = match known {
                Some(next) => next,
                None => {
                    let saved = self.store.channel_state(CHANNEL, &moved_key(at)).await?;
                    let next = saved.and_then(|s| s.parse().ok());
                    self.moved.lock().unwrap().insert(at, next);
                    next
                }
            };
            match next {
                Some(next) if next != at => at = next,
                _ => break,
            }
        }
        Ok(at)
    }

    /// Records that `from` is now `to`, for good: from a refusal's `migrate_to_chat_id` or
    /// from the migration messages in the update stream.
    pub async fn chat_moved(&self, from: i64, to: i64) -> Result<(), StoreError> {
        if from == to || self.current_chat(from).await? == to {
            return Ok(());
        }
        self.store.set_channel_state(CHANNEL, &moved_key(from), &to.to_string()).await?;
        self.moved.lock().unwrap().insert(from, Some(to));
        tracing::warn!(from, to, "telegram: the chat moved (a group became a supergroup); sending to the new id");
        metrics::counter!("loopgate_telegram_chat_moves_total").increment(1);
        if self.chat_id() == Some(from) {
            self.liveness.set_delivery_error(None);
        }
        Ok(())
    }

    /// The configured delivery chat and where it is now, when it moved (for `doctor`).
    pub async fn delivery_chat_move(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let Some(chat) = self.chat_id() else { return Ok(None) };
        let now = self.current_chat(chat).await?;
        Ok((now != chat).then_some((chat, now)))
    }

    /// One call, sent to where its chat is now; a `migrate_to_chat_id` answer is followed
    /// (remembered, and the call made again there, once).
    async fn call_in_chat(&self, method: &str, params: &Value) -> Result<Value, CallError> {
        let mut params = params.clone();
        let chat = params.get("chat_id").and_then(Value::as_i64);
        if let Some(chat) = chat {
            let now = self.current_chat(chat).await.map_err(|e| CallError::Network(e.to_string()))?;
            params["chat_id"] = now.into();
        }
        match self.api.call_json(method, &params).await {
            Err(CallError::Migrated { to }) if chat.is_some() => {
                let from = params["chat_id"].as_i64().unwrap_or_default();
                self.chat_moved(from, to).await.map_err(|e| CallError::Network(e.to_string()))?;
                params["chat_id"] = to.into();
                self.api.call_json(method, &params).await
            }
            other => other,
        }
    }

    /// A send the owner's delivery chat refused for good: `/readyz` says so, and the owner
    /// hears of it through every other channel (a suggestion they can dismiss).
    async fn delivery_chat_failed(&self, chat: i64, description: &str) {
        if self.chat_id().is_none_or(|c| c != chat) || !chat_is_unreachable(description) {
            return;
        }
        let why = format!("Telegram refuses messages to chat {chat}: {description}");
        tracing::error!(chat, description, "telegram: the delivery chat refuses messages");
        if let Err(error) = self.intelligence.alert_owner(&format!("telegram:chat:{chat}:unreachable"), &why).await {
            tracing::error!(%error, "telegram: cannot tell the owner that the delivery chat is unreachable");
        }
        // After the owner's alert is raised: whoever sees /readyz unready finds it too.
        self.liveness.set_delivery_error(Some(why));
    }

    async fn perform(&self, outbound: &Outbound) -> Result<Sent, SendError> {
        let payload = &outbound.payload;
        let method = payload.get("method").and_then(Value::as_str).unwrap_or_default();
        let params = payload.get("params").cloned().unwrap_or(Value::Null);
        if method.is_empty() || !params.is_object() {
            return Err(SendError::Permanent("a malformed outbox payload".into()));
        }
        if let Some(edit) = payload.get("edit") {
            let targets =
                posted_copies(&self.store, CHANNEL, edit).await.map_err(|e| SendError::Transient(e.to_string()))?;
            for target in &targets {
                let Some((chat, message)) = split_ref(target) else { continue };
                let mut params = params.clone();
                params["chat_id"] = chat.into();
                params["message_id"] = message.into();
                match self.call_in_chat(method, &params).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_modified() => {}
                    // The owner deleted the message: nothing left to update.
                    Err(CallError::Refused { code: 400, description }) if description.contains("not found") => {}
                    Err(e) => return Err(send_error(e)),
                }
            }
            return Ok(Sent { platform_ref: if targets.is_empty() { "none".into() } else { targets.join(",") } });
        }
        let result = match self.call_in_chat(method, &params).await {
            Ok(result) => result,
            Err(e) if e.is_not_modified() => Value::Bool(true),
            Err(e) => {
                if let (CallError::Refused { description, .. }, Some(chat)) = (&e, params["chat_id"].as_i64()) {
                    let chat = self.current_chat(chat).await.unwrap_or(chat);
                    self.delivery_chat_failed(chat, description).await;
                }
                return Err(send_error(e));
            }
        };
        if params["chat_id"].as_i64().is_some_and(|c| Some(c) == self.chat_id()) {
            self.liveness.set_delivery_error(None);
        }
        let platform_ref = match (result.pointer("/chat/id").and_then(Value::as_i64), result.get("message_id")) {
            (Some(chat), Some(message)) => format!("{chat}:{message}"),
            _ => method.to_owned(),
        };
        if let Some(id) = payload.pointer("/surface/suggestion").and_then(Value::as_i64)
            && let Err(error) = self.store.record_surface(id, CHANNEL, &platform_ref).await
        {
            // The message is out; failing the send now would post it twice.
            tracing::error!(%error, suggestion = id, "could not record where a suggestion was posted");
        }
        Ok(Sent { platform_ref })
    }

    /// Polls until shutdown: the offset is saved after each update is handled, so a
    /// restart neither loses nor replays one.
    async fn poll(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut backoff = Backoff::default();
        // getUpdates is refused (409) while a webhook is set.
        while let Err(error) = self.api.call_json("deleteWebhook", &json!({})).await {
            tracing::warn!(%error, "telegram: cannot clear a webhook before polling; retrying");
            if sleep_or_stop(backoff.next(error.retry_after()), &mut shutdown).await {
                return Ok(());
            }
        }
        let mut offset: i64 = match self.store.channel_state(CHANNEL, "offset").await? {
            Some(saved) => saved.parse().unwrap_or(0),
            None => 0,
        };
        tracing::info!(offset, "telegram: polling for updates");
        loop {
            let updates = tokio::select! {
                result = self.api.updates(offset, self.config.poll_timeout, &ALLOWED_UPDATES) => result,
                _ = shutdown.changed() => return Ok(()),
            };
            let updates = match updates {
                Ok(updates) => updates,
                Err(error) => {
                    metrics::counter!("loopgate_telegram_poll_errors_total").increment(1);
                    tracing::warn!(%error, "telegram: getUpdates failed; reconnecting");
                    if sleep_or_stop(backoff.next(error.retry_after()), &mut shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            self.liveness.mark(self.now_ms());
            backoff.reset();
            for raw in updates {
                let Some(update_id) = raw.get("update_id").and_then(Value::as_i64) else {
                    tracing::warn!("telegram: an update without an id; skipped");
                    continue;
                };
                if update_id < offset {
                    continue;
                }
                if let Err(error) = self.handle_update(&raw).await {
                    tracing::error!(%error, update_id, "telegram: an update could not be recorded; it will be fetched again");
                    let _ = sleep_or_stop(Duration::from_secs(1), &mut shutdown).await;
                    break;
                }
                offset = update_id + 1;
                self.store.set_channel_state(CHANNEL, "offset", &offset.to_string()).await?;
            }
        }
    }

    /// Webhook mode: registers the webhook, then watches that updates are not piling up
    /// unread at Telegram (which is how a webhook that stopped reaching us shows).
    async fn watch_webhook(
        self: Arc<Self>,
        url: String,
        secret: String,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut backoff = Backoff::default();
        let register = json!({"url": url, "secret_token": secret, "allowed_updates": ALLOWED_UPDATES});
        loop {
            let info = self.api.call_json("getWebhookInfo", &json!({})).await;
            let wait = match info {
                Ok(info) if info.get("url").and_then(Value::as_str) != Some(url.as_str()) => {
                    match self.api.call_json("setWebhook", &register).await {
                        Ok(_) => {
                            tracing::info!(%url, "telegram: webhook registered");
                            backoff.reset();
                            Duration::ZERO
                        }
                        Err(error) => {
                            tracing::warn!(%error, "telegram: setWebhook failed; retrying");
                            backoff.next(error.retry_after())
                        }
                    }
                }
                Ok(info) => {
                    backoff.reset();
                    let pending = info.get("pending_update_count").and_then(Value::as_i64).unwrap_or(0);
                    if pending == 0 {
                        self.liveness.mark(self.now_ms());
                    } else {
                        let error = info.get("last_error_message").and_then(Value::as_str).unwrap_or("none");
                        tracing::warn!(pending, last_error = error, "telegram: updates are waiting at Telegram");
                    }
                    self.config.webhook_check
                }
                Err(error) => {
                    tracing::warn!(%error, "telegram: getWebhookInfo failed");
                    backoff.next(error.retry_after())
                }
            };
            if sleep_or_stop(wait, &mut shutdown).await {
                return Ok(());
            }
        }
    }
}

fn split_ref(platform_ref: &str) -> Option<(i64, i64)> {
    let (chat, message) = platform_ref.split_once(':')?;
    Some((chat.parse().ok()?, message.parse().ok()?))
}

fn send_error(error: CallError) -> SendError {
    match error {
        CallError::RateLimited(retry_after) => SendError::RateLimited { retry_after },
        // Followed in `perform`; seen here only if the new chat moved again at once.
        e @ (CallError::Server(_) | CallError::Network(_) | CallError::Migrated { .. }) => {
            SendError::Transient(e.to_string())
        }
        e @ CallError::Refused { .. } => SendError::Permanent(e.to_string()),
    }
}

/// Where a chat's moves are kept: `chat:{old}:moved_to` → the new id.
fn moved_key(chat: i64) -> String {
    format!("chat:{chat}:moved_to")
}

/// Refusals that say the bot cannot write to the chat at all (not one bad message).
fn chat_is_unreachable(description: &str) -> bool {
    let d = description.to_ascii_lowercase();
    ["chat not found", "bot was blocked", "bot was kicked", "not a member", "have no rights", "user is deactivated"]
        .iter()
        .any(|p| d.contains(p))
}

impl Channel for Telegram {
    fn name(&self) -> &'static str {
        CHANNEL
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    fn run_inbound(self: Arc<Self>, ctx: ChannelContext) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            match self.config.mode.clone() {
                Mode::Polling => self.poll(ctx.shutdown).await,
                Mode::Webhook { url, secret } => self.watch_webhook(url, secret, ctx.shutdown).await,
            }
        })
    }

    fn render(&self, delivery: &Delivery) -> Vec<NewOutbound> {
        match self.chat_id() {
            Some(chat_id) => render::render_suggestion(delivery, chat_id, self.config.timezone),
            None => Vec::new(),
        }
    }

    fn render_approval(&self, delivery: &ApprovalDelivery) -> Vec<NewOutbound> {
        match self.chat_id() {
            Some(chat_id) => render::render_approval(delivery, chat_id, self.config.timezone),
            None => Vec::new(),
        }
    }

    fn message(&self, _task: i64, action: &Value) -> Result<Vec<Value>, String> {
        let target = action.get("target").cloned().unwrap_or(Value::Null);
        let chat = target.get("conversation").and_then(Value::as_str).unwrap_or_default();
        let chat_id: i64 = chat.trim().parse().map_err(|_| format!("{chat:?} is not a Telegram chat id"))?;
        let text = action.get("text").and_then(Value::as_str).unwrap_or_default().trim();
        if text.is_empty() {
            return Err("the message has no text: edit it first".into());
        }
        let reply_to =
            // "chat:message", or an edit's "chat:message:edit:…": the message is the second.
            target.get("reply_to").and_then(Value::as_str).and_then(|r| {
                let mut parts = r.split(':');
                let first = parts.next()?;
                parts.next().unwrap_or(first).parse::<i64>().ok()
            });
        // The owner's words, as written: no markup, so Telegram counts them as they are.
        let parts = crate::text::split(text, render::MAX_TEXT, char::len_utf16);
        Ok(parts
            .into_iter()
            .enumerate()
            .map(|(n, part)| {
                let mut params = json!({"chat_id": chat_id, "text": part});
                if let (0, Some(message_id)) = (n, reply_to) {
                    params["reply_parameters"] = json!({"message_id": message_id, "allow_sending_without_reply": true});
                }
                json!({"method": "sendMessage", "params": params})
            })
            .collect())
    }

    fn send<'a>(&'a self, outbound: &'a Outbound) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(self.perform(outbound))
    }

    fn verify<'a>(&'a self, outbound: &'a Outbound) -> BoxFuture<'a, Verification> {
        // Telegram cannot say whether a message was posted, so a post in doubt is never
        // repeated; an edit sets a message to the same content however often it runs.
        let method = outbound.payload.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
        Box::pin(async move {
            if method.starts_with("editMessage") { Verification::SafeToResend } else { Verification::Unknown }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_errors_map_to_retry_decisions() {
        assert_eq!(
            send_error(CallError::RateLimited(Duration::from_secs(3))),
            SendError::RateLimited { retry_after: Duration::from_secs(3) }
        );
        assert!(matches!(send_error(CallError::Server("500".into())), SendError::Transient(_)));
        assert!(matches!(send_error(CallError::Network("reset".into())), SendError::Transient(_)));
        let refused = CallError::Refused { code: 400, description: "Bad Request: chat not found".into() };
        assert!(matches!(send_error(refused), SendError::Permanent(_)));
    }
}
