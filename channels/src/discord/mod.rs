//! The Discord adapter: a gateway connection in (chat messages, interactions), suggestions
//! and approvals out as messages with button components, interactions answered inside
//! Discord's three seconds.
//!
//! ```text
//! gateway (serenity) ─┬▶ MESSAGE_CREATE ─▶ normalize ─▶ signal (+ command reply, chat answer)
//!                     └▶ INTERACTION_CREATE ─┐
//! POST /webhooks/discord (Ed25519) ──────────┴▶ normalize ─▶ engine ─▶ interaction response
//! delivery events ─▶ render ─▶ outbox ─▶ send (REST: post, edit, react)
//! ```
//!
//! serenity keeps the gateway session (identify, heartbeats, resume); everything sent goes
//! through our REST transport ([`api`]), because serenity's rate limiter is off when a base
//! URL is set. A press updates its own message in the interaction response; every other
//! copy (another Discord message, the Telegram one) is edited by the delivery event the
//! decision raised, through the outbox.

mod api;
mod normalize;
mod render;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

use chrono_tz::Tz;
use loopgate_engine::actions::ApprovalDelivery;
use loopgate_engine::intelligence::Intelligence;
use loopgate_engine::outbox::{NewOutbound, Outbound, SendError, Verification};
use loopgate_engine::pairing::PairChannel;
use loopgate_engine::suggestion::Delivery;
use loopgate_engine::{Store, StoreError};
use reqwest::Method;
use serde_json::{Value, json};
use serenity::all::{ClientBuilder, ConnectionStage, GatewayIntents, HttpBuilder};
use serenity::client::{Context, EventHandler};
use serenity::model::application::Interaction;
use serenity::model::channel::Message;
use serenity::model::event::ResumedEvent;
use serenity::model::gateway::Ready;
use tokio::sync::watch;

pub use api::{CallError, RestApi};
pub use normalize::{ChatMessage, Inbound, Interacted, Place, What, normalize_interaction, normalize_message};
pub use render::escape;

use crate::backoff::Backoff;
use crate::channel::{BoxFuture, Channel, ChannelContext, Sent, Wakes, posted_copies};
use crate::chat::{self, Button, Commands, Markup, Pressed, sleep_or_stop};
use crate::liveness::{Liveness, wall_clock_ms};

pub const CHANNEL: &str = "discord";

/// How long a press waits for the engine before it is answered "deferred": Discord allows
/// three seconds for the response to arrive, and it still has to travel.
const ANSWER_WITHIN: Duration = Duration::from_millis(2000);
/// Tries at recording a gateway message before it is given up (100 ms, doubling).
const INBOUND_ATTEMPTS: u32 = 6;
/// A channel lookup on the inbound path: tries, and the longest wait between two.
const LOOKUP_ATTEMPTS: u32 = 5;
const MAX_LOOKUP_WAIT: Duration = Duration::from_secs(10);
/// How far a signed HTTP interaction's timestamp may be from now, either way.
const SIGNATURE_WINDOW_SECS: i64 = 300;
/// How often the gateway's connection stage is looked at for `/readyz`.
const WATCH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct DiscordConfig {
    pub token: String,
    /// The REST base (`https://discord.com`, or a proxy or test fake); calls go to
    /// `{api_base}/api/v10/…`, and the gateway is whatever `GET /gateway` there says.
    pub api_base: String,
    /// Known from READY when not configured; needed to register slash commands.
    pub application_id: Option<u64>,
    /// The application's Ed25519 public key (hex), for the HTTP interactions endpoint.
    pub public_key: Option<String>,
    /// Channels listened in besides DMs (and threads under them).
    pub channel_ids: Vec<u64>,
    /// Where suggestions and approvals are posted; else a DM to `dm_user_id`.
    pub delivery_channel_id: Option<u64>,
    /// The owner's Discord user, DMed when there is no delivery channel.
    pub dm_user_id: Option<u64>,
    /// How long without a connected gateway counts as dead, for `/readyz`.
    pub stale_after: Duration,
    pub timezone: Tz,
}

pub struct Discord {
    config: DiscordConfig,
    api: RestApi,
    store: Store,
    intelligence: Arc<Intelligence>,
    liveness: Liveness,
    wakes: Wakes,
    verifier: Option<serenity::interactions_endpoint::Verifier>,
    /// The bot's own user id, from READY: its own messages are never signals.
    bot_id: AtomicU64,
    commands_registered: AtomicBool,
    /// Channels seen, and whether they are listened to (threads need a lookup).
    places: Mutex<HashMap<u64, Place>>,
}

/// Why an HTTP interaction was refused before anything happened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("the interactions endpoint is not configured (no discord.public_key)")]
    NotConfigured,
    #[error("invalid request signature")]
    BadSignature,
    #[error("the request was signed too long ago")]
    Stale,
    #[error("not a Discord interaction: {0}")]
    Malformed(String),
}

/// What an interaction came to: the response, and the signal that records it.
pub struct Answered {
    pub response: Value,
    signal: Option<loopgate_engine::signal::NewSignal>,
}

impl Discord {
    pub fn new(
        config: DiscordConfig,
        store: Store,
        intelligence: Arc<Intelligence>,
        wakes: Wakes,
    ) -> anyhow::Result<Arc<Discord>> {
        let api = RestApi::new(&config.api_base, &config.token)?;
        let verifier = match &config.public_key {
            None => None,
            Some(hex) => {
                let key = parse_public_key(hex)?;
                Some(
                    serenity::interactions_endpoint::Verifier::try_new(key)
                        .map_err(|_| anyhow::anyhow!("discord.public_key is not a valid Ed25519 key"))?,
                )
            }
        };
        let liveness = Liveness::new(CHANNEL, config.stale_after);
        Ok(Arc::new(Discord {
            config,
            api,
            store,
            intelligence,
            liveness,
            wakes,
            verifier,
            bot_id: AtomicU64::new(0),
            commands_registered: AtomicBool::new(false),
            places: Mutex::new(HashMap::new()),
        }))
    }

    /// An interaction POSTed to `/webhooks/discord`: the signature is checked over
    /// `timestamp + body` before the body is even parsed.
    pub async fn handle_http_interaction(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
    ) -> Result<Value, EndpointError> {
        let verifier = self.verifier.as_ref().ok_or(EndpointError::NotConfigured)?;
        let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
            return Err(EndpointError::BadSignature);
        };
        verifier.verify(signature, timestamp, body).map_err(|()| EndpointError::BadSignature)?;
        // A genuine request recorded and sent again later decides nothing twice anyway;
        // refusing old ones keeps it from even being read.
        let signed_at: i64 = timestamp.trim().parse().map_err(|_| EndpointError::BadSignature)?;
        if (wall_clock_ms() / 1000 - signed_at).abs() > SIGNATURE_WINDOW_SECS {
            return Err(EndpointError::Stale);
        }
        let interaction: Interaction =
            serde_json::from_slice(body).map_err(|e| EndpointError::Malformed(e.to_string()))?;
        let answered = self.answer(&interaction).await;
        self.record(answered.signal).await;
        Ok(answered.response)
    }

    /// The response to one interaction, whichever way it came. Handling it twice (a
    /// replay) changes nothing more: decisions are compare-and-swap and the second one
    /// is told who decided first.
    pub async fn answer(&self, interaction: &Interaction) -> Answered {
        let started = Instant::now();
        let interacted = match normalize_interaction(interaction, &self.intelligence.settings().answerers) {
            Inbound::Ping => return Answered { response: render::pong(), signal: None },
            // Autocomplete wants choices; loopgate's commands offer none.
            Inbound::Ignored(reason) => {
                tracing::debug!(reason, "discord interaction skipped");
                return Answered { response: json!({"type": 8, "data": {"choices": []}}), signal: None };
            }
            Inbound::Interacted(interacted) => interacted,
        };
        let span = tracing::info_span!("discord_interaction", interaction = interacted.id, user = %interacted.claimant.user_id);
        async move {
            let response = match self.interact(&interacted).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::error!(%error, "an interaction failed");
                    render::ephemeral("Internal error — nothing was changed. Please try again.")
                }
            };
            metrics::histogram!("loopgate_discord_interaction_seconds").record(started.elapsed().as_secs_f64());
            Answered { response, signal: Some(interacted.signal) }
        }
        .instrument(span)
        .await
    }

    async fn record(&self, signal: Option<loopgate_engine::signal::NewSignal>) {
        if let Some(signal) = signal
            && let Err(error) = self.store.ingest(signal).await
        {
            tracing::error!(%error, "discord: an interaction could not be recorded as a signal");
        }
    }

    async fn interact(&self, i: &Interacted) -> Result<Value, StoreError> {
        match &i.what {
            What::Press(custom_id) => match Button::parse(custom_id) {
                None => Ok(render::ephemeral("This button is no longer valid.")),
                Some(button) => self.press(button, i).await,
            },
            What::Submit { custom_id, text } => match Button::parse(custom_id) {
                Some(Button::Edit(id)) => self.submit_edit(id, text, i).await,
                _ => Ok(render::ephemeral("This form is no longer valid.")),
            },
            What::Command(command) if command.name == "pair" => match command.pairing_code() {
                // The answer is ephemeral: only the sender sees whether their code worked.
                Some(code) => Ok(render::ephemeral(
                    &chat::pair(&self.intelligence, PairChannel::Discord, &i.claimant, code).await?,
                )),
                None => Ok(render::ephemeral("Usage: /pair CODE (the code `loopgate pair discord` printed)")),
            },
            What::Command(command) => {
                let commands = self.commands();
                if !commands.allowed(Some(&i.claimant), &command.name) {
                    return Ok(render::ephemeral(chat::COMMAND_REFUSAL));
                }
                // Results are only for the one who asked: memory and suggestions are private,
                // and a command may be used in a shared channel.
                Ok(render::ephemeral(&commands.run(&command.name, &command.argument).await?))
            }
        }
    }

    async fn press(&self, button: Button, i: &Interacted) -> Result<Value, StoreError> {
        let pressed = chat::press(&self.intelligence, button, &i.claimant, self.config.timezone, ANSWER_WITHIN).await?;
        let suggestion = match pressed {
            Pressed::Done(_) => {
                self.wakes.deliveries.notify_one();
                return self.as_it_is_now(button).await;
            }
            Pressed::Running(_) => {
                self.wakes.deliveries.notify_one();
                return Ok(render::deferred_update());
            }
            Pressed::Refused(text) => return Ok(render::ephemeral(&text)),
            // A reply without words: the form asks for them (the draft prefilled).
            Pressed::AskWords(suggestion, draft) => return Ok(render::words_modal(&suggestion, draft.as_deref())),
            Pressed::Open(suggestion) => suggestion,
        };
        let tz = self.config.timezone;
        Ok(match button {
            Button::Edit(_) => render::edit_modal(&suggestion),
            Button::SnoozeMenu(id) => {
                let mut body = render::suggestion_body(&suggestion, tz);
                body["components"] = render::snooze_buttons(id).into();
                render::update_message(body)
            }
            _ => render::update_message(render::suggestion_body(&suggestion, tz)),
        })
    }

    /// The pressed message as it should look after the decision: outcome, no buttons.
    async fn as_it_is_now(&self, button: Button) -> Result<Value, StoreError> {
        let tz = self.config.timezone;
        let body = match button {
            Button::Approve(id) | Button::Deny(id) => {
                self.store.approval(id).await?.map(|a| render::approval_body(&a, tz))
            }
            Button::Act(id)
            | Button::Dismiss(id)
            | Button::Snooze(id, _)
            | Button::Edit(id)
            | Button::Move(id, _)
            | Button::Cancel(id)
            | Button::Send(id)
            | Button::Discard(id) => self.store.suggestion(id).await?.map(|s| render::suggestion_body(&s, tz)),
            Button::SnoozeMenu(_) | Button::Back(_) => None,
        };
        Ok(body.map_or_else(render::deferred_update, render::update_message))
    }

    /// The Edit form sent back: its text is the edited action.
    async fn submit_edit(&self, id: i64, text: &str, i: &Interacted) -> Result<Value, StoreError> {
        let Some(suggestion) = self.store.suggestion(id).await? else {
            return Ok(render::ephemeral("This suggestion no longer exists."));
        };
        let response = match chat::edit_response(&suggestion, text) {
            Ok(response) => response,
            Err(why) => return Ok(render::ephemeral(&format!("Not edited: {why}"))),
        };
        let tz = self.config.timezone;
        match chat::respond(&self.intelligence, id, response, &i.claimant, tz, ANSWER_WITHIN).await? {
            Pressed::Refused(text) => Ok(render::ephemeral(&text)),
            Pressed::Running(_) => {
                self.wakes.deliveries.notify_one();
                Ok(render::deferred_update())
            }
            Pressed::Done(text) => {
                self.wakes.deliveries.notify_one();
                // A form opened from a message may update it; one opened elsewhere may not.
                if i.message.is_some() {
                    self.as_it_is_now(Button::Edit(id)).await
                } else {
                    Ok(render::ephemeral(&text))
                }
            }
            Pressed::Open(_) | Pressed::AskWords(..) => unreachable!("an answer opens nothing"),
        }
    }

    fn commands(&self) -> Commands<'_> {
        Commands {
            intelligence: &self.intelligence,
            markup: Markup::Markdown,
            timezone: self.config.timezone,
            channel: CHANNEL,
        }
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

    /// A chat message from the gateway.
    pub async fn on_message(&self, message: &Message) {
        self.mark_alive();
        let place = self.place_of(message).await;
        let bot_id = Some(self.bot_id.load(Ordering::Relaxed)).filter(|id| *id != 0);
        let chat = match normalize_message(message, place, bot_id, &self.intelligence.settings().answerers) {
            Ok(chat) => chat,
            Err(reason) => {
                tracing::debug!(message = message.id.get(), reason, "discord message skipped");
                return;
            }
        };
        let span = tracing::info_span!("discord_message", channel = chat.channel_id, message = chat.message_id);
        async move {
            // The gateway never delivers a message again: a store that failed once (busy,
            // a restarting PostgreSQL) is tried again before the message is given up.
            // Handling it twice changes nothing more (keyed by the message id).
            let mut wait = Duration::from_millis(100);
            for attempt in 1..=INBOUND_ATTEMPTS {
                match self.on_chat(chat.clone()).await {
                    Ok(()) => return,
                    Err(error) if attempt < INBOUND_ATTEMPTS => {
                        tracing::warn!(%error, attempt, "discord: recording a message failed; retrying");
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                    Err(error) => {
                        metrics::counter!("loopgate_discord_messages_lost_total").increment(1);
                        tracing::error!(%error, "discord: a message could not be recorded");
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The owner edited a direct message: a request in it follows the new words (moved or
    /// cancelled; the acknowledgement is edited through its delivery event).
    pub async fn on_message_update(&self, event: &serenity::model::event::MessageUpdateEvent) {
        self.mark_alive();
        let edited = match normalize::normalize_edit(event, &self.intelligence.settings().answerers) {
            Ok(edited) => edited,
            Err(reason) => {
                tracing::debug!(message = event.id.get(), reason, "discord edit skipped");
                return;
            }
        };
        let span = tracing::info_span!("discord_edit", channel = edited.channel_id, message = edited.message_id);
        async move {
            if let Err(error) = self.on_edit(edited).await {
                tracing::error!(%error, "discord: an edit could not be recorded");
            }
        }
        .instrument(span)
        .await
    }

    async fn on_edit(&self, edited: normalize::Edited) -> Result<(), StoreError> {
        let now = self.store.clock().now();
        let ingested = self.store.ingest(edited.signal.clone()).await?;
        let original = self.store.signal_by_external_id(CHANNEL, &edited.message_id.to_string()).await?;
        let owner = edited.signal.actor.as_ref().and_then(|a| a.name.clone()).unwrap_or_else(|| "the owner".into());
        let conversation = edited.channel_id.to_string();
        let said = loopgate_engine::request::Said {
            signal: ingested.id,
            edits: Some(original.unwrap_or(ingested.id)),
            source: CHANNEL,
            conversation: &conversation,
            text: &edited.signal.text,
            at: now,
            by: &owner,
        };
        let key = format!("{CHANNEL}:reply:{}:edit:{}", edited.message_id, ingested.id);
        let (channel_id, message_id) = (edited.channel_id, edited.message_id);
        match chat::owner_said(&self.intelligence, &said).await? {
            chat::Reply::Acknowledge(s) => {
                self.enqueue(key, render::acknowledge(channel_id, message_id, &s, self.config.timezone)).await
            }
            chat::Reply::Text(text) => {
                self.enqueue_all(chat::parts(CHANNEL, &key, render::reply_parts(channel_id, message_id, &text))).await
            }
            chat::Reply::Nothing | chat::Reply::Chat => {
                self.wakes.deliveries.notify_one();
                Ok(())
            }
        }
    }

    async fn on_chat(&self, m: ChatMessage) -> Result<(), StoreError> {
        let is_owner = m.signal.actor.as_ref().is_some_and(|a| a.is_owner);
        // Keyed by the message: a redelivery after a resume queues nothing new.
        let key = format!("{CHANNEL}:reply:{}", m.message_id);
        if let Some(code) = m.command.as_ref().and_then(|c| c.pairing_code()) {
            // Commands are read in DMs only, so a code never pairs from a shared channel.
            let text = chat::pair(&self.intelligence, PairChannel::Discord, &m.claimant, code).await?;
            self.enqueue(key, render::reply(m.channel_id, m.message_id, text)).await?;
        } else if let Some(command) = &m.command {
            let commands = self.commands();
            let text = if commands.allowed(Some(&m.claimant), &command.name) {
                commands.run(&command.name, &command.argument).await?
            } else {
                chat::COMMAND_REFUSAL.into()
            };
            self.enqueue(key, render::reply(m.channel_id, m.message_id, text)).await?;
        } else if is_owner && m.place == Place::Direct {
            // The owner talking to the assistant: recorded first, then a request in it is
            // carried out and acknowledged, or the conversation answered.
            let (channel_id, message_id) = (m.channel_id, m.message_id);
            let now = self.store.clock().now();
            let ingested = self.store.ingest(m.signal.clone()).await?;
            let owner = m.claimant.name.clone().unwrap_or_else(|| "the owner".into());
            let conversation = channel_id.to_string();
            let said = loopgate_engine::request::Said {
                signal: ingested.id,
                edits: None,
                source: CHANNEL,
                conversation: &conversation,
                text: &m.signal.text,
                at: m.signal.occurred_at.unwrap_or(now),
                by: &owner,
            };
            match chat::owner_said(&self.intelligence, &said).await? {
                chat::Reply::Acknowledge(s) => {
                    let ack = render::acknowledge(channel_id, message_id, &s, self.config.timezone);
                    self.enqueue(key, ack).await?;
                }
                chat::Reply::Text(text) => {
                    let replies = render::reply_parts(channel_id, message_id, &text);
                    self.enqueue_all(chat::parts(CHANNEL, &key, replies)).await?;
                }
                chat::Reply::Nothing => self.wakes.deliveries.notify_one(),
                chat::Reply::Chat => {
                    let turn =
                        chat::ChatTurn { source: CHANNEL, conversation, owner, text: m.signal.text.clone(), key };
                    turn.answer_later(self.intelligence.clone(), self.store.clone(), self.wakes.clone(), move |text| {
                        render::reply_parts(channel_id, message_id, &text)
                    });
                }
            }
            return Ok(());
        }
        self.store.ingest(m.signal).await?;
        Ok(())
    }

    /// Whether a guild channel is listened to: a configured one, or a thread under one
    /// (which takes one lookup per thread, remembered).
    async fn place_of(&self, message: &Message) -> Place {
        if message.guild_id.is_none() {
            return Place::Direct;
        }
        let channel = message.channel_id.get();
        if self.config.channel_ids.contains(&channel) {
            return Place::Channel;
        }
        if self.config.channel_ids.is_empty() {
            return Place::Elsewhere;
        }
        if let Some(place) = self.places.lock().expect("places").get(&channel) {
            return *place;
        }
        // A lookup is rate-limited like a send: waits as Discord asks, a few times, and
        // then records the message with what is known rather than dropping it.
        let mut attempt = 0;
        let place = loop {
            attempt += 1;
            match self.api.get(&format!("/channels/{channel}")).await {
                Ok(info) => {
                    let is_thread = matches!(info.get("type").and_then(Value::as_u64), Some(10..=12));
                    let parent = info.get("parent_id").and_then(Value::as_str).and_then(|p| p.parse().ok());
                    break match parent {
                        Some(parent) if is_thread && self.config.channel_ids.contains(&parent) => {
                            Place::Thread { parent }
                        }
                        _ => Place::Elsewhere,
                    };
                }
                // Unknown or hidden from the bot: not a place it listens in.
                Err(CallError::Refused { status: 403 | 404, .. }) => break Place::Elsewhere,
                Err(error) if attempt < LOOKUP_ATTEMPTS => {
                    // A message waits on this, so quicker than a reconnect: 250 ms, doubling.
                    let doubling = Duration::from_millis(250 << (attempt - 1));
                    let wait = error.retry_after().unwrap_or(doubling).min(MAX_LOOKUP_WAIT);
                    tracing::warn!(%error, channel, attempt, ?wait, "discord: a channel lookup failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(error) => {
                    // Not remembered: the next message asks again.
                    tracing::warn!(%error, channel, "discord: cannot tell where a message was written; recorded anyway");
                    metrics::counter!("loopgate_discord_lookups_failed_total").increment(1);
                    return Place::Unknown;
                }
            }
        };
        self.places.lock().expect("places").insert(channel, place);
        place
    }

    fn mark_alive(&self) {
        self.liveness.mark(wall_clock_ms());
    }

    async fn on_ready(&self, ready: &Ready) {
        self.mark_alive();
        self.bot_id.store(ready.user.id.get(), Ordering::Relaxed);
        tracing::info!(user = %ready.user.name, session = %ready.session_id, "discord: gateway ready");
        let application = self.config.application_id.unwrap_or(ready.application.id.get());
        if self.commands_registered.load(Ordering::Relaxed) {
            return;
        }
        let path = format!("/applications/{application}/commands");
        match self.api.call(Method::PUT, &path, Some(&render::slash_commands())).await {
            Ok(_) => {
                self.commands_registered.store(true, Ordering::Relaxed);
                tracing::info!("discord: slash commands registered");
            }
            // Tried again at the next READY; chat and buttons work without them.
            Err(error) => tracing::warn!(%error, "discord: cannot register slash commands"),
        }
    }

    /// The interaction response for one that came over the gateway: it goes back by REST.
    async fn on_gateway_interaction(&self, interaction: &Interaction) {
        self.mark_alive();
        let answered = self.answer(interaction).await;
        let path = format!("/interactions/{}/{}/callback", interaction.id().get(), interaction.token());
        if let Err(error) = self.api.call(Method::POST, &path, Some(&answered.response)).await {
            // Discord takes a response only once and only for three seconds; a replayed
            // interaction ends here, having changed nothing.
            tracing::warn!(%error, "discord: interaction response not accepted");
        }
        self.record(answered.signal).await;
    }

    /// Whom to DM without a delivery channel: the configured owner, else the first owner
    /// who paired.
    fn dm_user(&self) -> Option<u64> {
        self.config.dm_user_id.or_else(|| {
            self.intelligence.settings().answerers.paired_on(CHANNEL).first().and_then(|id| id.parse().ok())
        })
    }

    /// Where suggestions and approvals go: the delivery channel, or the owner's DM (opened
    /// once, remembered).
    async fn delivery_channel(&self) -> Result<u64, SendError> {
        if let Some(channel) = self.config.delivery_channel_id {
            return Ok(channel);
        }
        let Some(user) = self.dm_user() else {
            return Err(SendError::Permanent("no discord.delivery_channel_id and no owner to DM".into()));
        };
        let key = format!("dm:{user}");
        let transient = |e: StoreError| SendError::Transient(e.to_string());
        if let Some(saved) = self.store.channel_state(CHANNEL, &key).await.map_err(transient)?
            && let Ok(channel) = saved.parse()
        {
            return Ok(channel);
        }
        let opened = self
            .api
            .call(Method::POST, "/users/@me/channels", Some(&json!({"recipient_id": user.to_string()})))
            .await
            .map_err(send_error)?;
        let channel: u64 = opened
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| SendError::Transient("Discord opened a DM without an id".into()))?;
        self.store.set_channel_state(CHANNEL, &key, &channel.to_string()).await.map_err(transient)?;
        Ok(channel)
    }

    async fn perform(&self, outbound: &Outbound) -> Result<Sent, SendError> {
        let payload = &outbound.payload;
        let op = payload.get("op").and_then(Value::as_str).unwrap_or_default();
        let body = payload.get("body");
        match (op, body) {
            ("post", Some(body)) if body.is_object() => self.post(outbound, body).await,
            ("edit", Some(body)) if body.is_object() => {
                let edit = payload.get("edit").cloned().unwrap_or(Value::Null);
                let targets = posted_copies(&self.store, CHANNEL, &edit)
                    .await
                    .map_err(|e| SendError::Transient(e.to_string()))?;
                let body = strip_for_edit(body);
                for target in &targets {
                    let Some((channel, message)) = target.split_once(':') else { continue };
                    let path = format!("/channels/{channel}/messages/{message}");
                    match self.api.call(Method::PATCH, &path, Some(&body)).await {
                        Ok(_) => {}
                        // The owner deleted the message: nothing left to update.
                        Err(e) if e.is_gone() => {}
                        Err(e) => return Err(send_error(e)),
                    }
                }
                Ok(Sent { platform_ref: if targets.is_empty() { "none".into() } else { targets.join(",") } })
            }
            _ => Err(SendError::Permanent("a malformed outbox payload".into())),
        }
    }

    async fn post(&self, outbound: &Outbound, body: &Value) -> Result<Sent, SendError> {
        let channel = match outbound.payload.get("channel").and_then(Value::as_str) {
            Some(channel) => channel.to_owned(),
            None => self.delivery_channel().await?.to_string(),
        };
        let mut body = body.clone();
        // With an enforced nonce Discord answers a repeat of the same post (a retry after a
        // lost answer) with the message it already made, instead of making a second one.
        body["nonce"] = format!("lg{}", outbound.id).into();
        body["enforce_nonce"] = true.into();
        let result = self
            .api
            .call(Method::POST, &format!("/channels/{channel}/messages"), Some(&body))
            .await
            .map_err(send_error)?;
        let message = result.get("id").and_then(Value::as_str).unwrap_or_default();
        let platform_ref = format!("{channel}:{message}");
        if let Some(id) = outbound.payload.pointer("/surface/suggestion").and_then(Value::as_i64)
            && let Err(error) = self.store.record_surface(id, CHANNEL, &platform_ref).await
        {
            // The message is out; failing the send now would post it twice.
            tracing::error!(%error, suggestion = id, "could not record where a suggestion was posted");
        }
        Ok(Sent { platform_ref })
    }

    /// Runs the gateway until shutdown, reconnecting with backoff when the session ends.
    async fn run_gateway(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut backoff = Backoff::default();
        loop {
            // Asked here first: when this call fails, serenity falls back to Discord's
            // public gateway, which a configured base (a proxy, a test) must never reach.
            let wait = match self.api.get("/gateway").await {
                Err(error) => {
                    tracing::warn!(%error, "discord: cannot get the gateway address; retrying");
                    Some(error)
                }
                Ok(_) => {
                    let session = self.clone().session(shutdown.clone()).await;
                    if *shutdown.borrow() {
                        return Ok(());
                    }
                    match session {
                        Ok(()) => tracing::warn!("discord: the gateway session ended; reconnecting"),
                        Err(error) => tracing::warn!(%error, "discord: the gateway session failed; reconnecting"),
                    }
                    None
                }
            };
            let wait = backoff.next(wait.and_then(|e| e.retry_after()));
            if sleep_or_stop(wait, &mut shutdown).await {
                return Ok(());
            }
        }
    }

    /// One serenity client, from connect to shutdown or a failure it gives up on.
    async fn session(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let http = HttpBuilder::new(&self.config.token)
            .proxy(self.config.api_base.trim_end_matches('/'))
            .ratelimiter_disabled(true)
            .build();
        let intents =
            GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES | GatewayIntents::MESSAGE_CONTENT;
        let mut client = ClientBuilder::new_with_http(http, intents).event_handler(Handler(self.clone())).await?;
        let manager = client.shard_manager.clone();
        // Connected is what serenity reports only while heartbeats are acknowledged: a
        // gateway that goes quiet is reconnected, and stops counting as alive.
        let watcher = tokio::spawn({
            let discord = self.clone();
            let manager = manager.clone();
            async move {
                loop {
                    let connected =
                        manager.runners.lock().await.values().any(|r| r.stage == ConnectionStage::Connected);
                    if connected {
                        discord.mark_alive();
                    }
                    tokio::time::sleep(WATCH_EVERY).await;
                }
            }
        });
        let result = tokio::select! {
            result = client.start() => result.map_err(anyhow::Error::from),
            _ = shutdown.changed() => {
                manager.shutdown_all().await;
                Ok(())
            }
        };
        watcher.abort();
        result
    }
}

struct Handler(Arc<Discord>);

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _: Context, ready: Ready) {
        self.0.on_ready(&ready).await;
    }

    async fn resume(&self, _: Context, _: ResumedEvent) {
        tracing::info!("discord: gateway session resumed");
        self.0.mark_alive();
    }

    async fn message(&self, _: Context, message: Message) {
        self.0.on_message(&message).await;
    }

    async fn message_update(
        &self,
        _: Context,
        _: Option<Message>,
        _: Option<Message>,
        event: serenity::model::event::MessageUpdateEvent,
    ) {
        self.0.on_message_update(&event).await;
    }

    async fn interaction_create(&self, _: Context, interaction: Interaction) {
        self.0.on_gateway_interaction(&interaction).await;
    }
}

/// An edit changes content and components only; the nonce and reply reference are for posts.
fn strip_for_edit(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(map) = body.as_object_mut() {
        map.retain(|k, _| matches!(k.as_str(), "content" | "components" | "allowed_mentions" | "embeds"));
    }
    body
}

fn send_error(error: CallError) -> SendError {
    match error {
        CallError::RateLimited(retry_after) => SendError::RateLimited { retry_after },
        e @ (CallError::Server(_) | CallError::Network(_)) => SendError::Transient(e.to_string()),
        e @ CallError::Refused { .. } => SendError::Permanent(e.to_string()),
    }
}

/// A 64-digit hex Ed25519 public key, as the developer portal shows it.
pub fn parse_public_key(hex: &str) -> anyhow::Result<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        anyhow::bail!("discord.public_key must be 64 hex digits (the application's public key)");
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(key)
}

impl Channel for Discord {
    fn name(&self) -> &'static str {
        CHANNEL
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    fn run_inbound(self: Arc<Self>, ctx: ChannelContext) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(self.run_gateway(ctx.shutdown))
    }

    fn render(&self, delivery: &Delivery) -> Vec<NewOutbound> {
        if self.config.delivery_channel_id.is_none() && self.dm_user().is_none() {
            return Vec::new();
        }
        render::render_suggestion(delivery, self.config.timezone)
    }

    fn render_approval(&self, delivery: &ApprovalDelivery) -> Vec<NewOutbound> {
        if self.config.delivery_channel_id.is_none() && self.dm_user().is_none() {
            return Vec::new();
        }
        render::render_approval(delivery, self.config.timezone)
    }

    fn message(&self, _task: i64, action: &Value) -> Result<Vec<Value>, String> {
        let target = action.get("target").cloned().unwrap_or(Value::Null);
        let channel = target.get("conversation").and_then(Value::as_str).unwrap_or_default().trim();
        let channel: u64 = channel.parse().map_err(|_| format!("{channel:?} is not a Discord channel id"))?;
        let text = action.get("text").and_then(Value::as_str).unwrap_or_default().trim();
        if text.is_empty() {
            return Err("the message has no text: edit it first".into());
        }
        let reply_to = target.get("reply_to").and_then(Value::as_str).filter(|r| r.chars().all(|c| c.is_ascii_digit()));
        // The owner's words as written (Discord counts them raw), never a ping; the first
        // part answers the message it replies to.
        let parts = crate::text::split(text, render::MAX_CONTENT, |_| 1);
        Ok(parts
            .into_iter()
            .enumerate()
            .map(|(n, content)| {
                let mut body = json!({"content": content, "allowed_mentions": {"parse": []}});
                if let (0, Some(reply_to)) = (n, reply_to) {
                    body["message_reference"] = json!({"message_id": reply_to, "fail_if_not_exists": false});
                }
                json!({"op": "post", "channel": channel.to_string(), "body": body})
            })
            .collect())
    }

    fn send<'a>(&'a self, outbound: &'a Outbound) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(self.perform(outbound))
    }

    fn verify<'a>(&'a self, outbound: &'a Outbound) -> BoxFuture<'a, Verification> {
        // A post's enforced nonce only holds for minutes, and a crash may be older: a post
        // in doubt is not repeated. Edits set the same state however often.
        let op = outbound.payload.get("op").and_then(Value::as_str).unwrap_or_default().to_owned();
        Box::pin(async move { if op == "post" { Verification::Unknown } else { Verification::SafeToResend } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_64_hex_digits() {
        let key = parse_public_key(&"ab".repeat(32)).unwrap();
        assert_eq!(key, [0xab; 32]);
        assert!(parse_public_key("abc").is_err());
        assert!(parse_public_key(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn edits_carry_only_what_an_edit_changes() {
        let body =
            json!({"content": "x", "components": [], "nonce": "lg1", "message_reference": {}, "allowed_mentions": {}});
        assert_eq!(strip_for_edit(&body), json!({"content": "x", "components": [], "allowed_mentions": {}}));
    }

    #[test]
    fn platform_errors_map_to_retry_decisions() {
        assert_eq!(
            send_error(CallError::RateLimited(Duration::from_millis(1500))),
            SendError::RateLimited { retry_after: Duration::from_millis(1500) }
        );
        assert!(matches!(send_error(CallError::Server("502".into())), SendError::Transient(_)));
        let refused = CallError::Refused { status: 403, code: 50001, message: "Missing Access".into() };
        assert!(matches!(send_error(refused), SendError::Permanent(_)));
    }
}
