//! The email adapter: IMAP in (IDLE where the server has it, else polling), the digest out
//! over SMTP on a schedule and on demand, and answers by reply.
//!
//! ```text
//! IMAP (UIDVALIDITY + last UID in channel_state) ─▶ parse ─┬▶ signal
//!                                                          └▶ reply to a digest ─▶ engine ─▶ confirmation
//! digest_schedule / `loopgate digest` / POST /api/digest ─▶ digest ─▶ outbox ─▶ SMTP
//! ```
//!
//! A digest's numbers mean what they meant when it was sent: the mapping is kept under the
//! hash of its reply token (never the token itself) until it expires. A reply counts only
//! from an allowed sender and with a token that is known and not expired; a reply that is
//! not allowed gets no answer at all, so nothing of a digest can leak to a forger.

mod digest;
mod parse;
mod reply;

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use chrono_tz::Tz;
use futures_util::TryStreamExt;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use loopgate_engine::actions::{ApprovalDelivery, ApprovalState, Verdict};
use loopgate_engine::intelligence::Intelligence;
use loopgate_engine::outbox::{NewOutbound, Outbound, SendError, Verification};
use loopgate_engine::schedule::Schedule;
use loopgate_engine::suggestion::{Claimant, Delivery, Response, SuggestionState};
use loopgate_engine::{Store, StoreError};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

pub use digest::{Digest, Items, Note, Record, build as build_digest};
pub use parse::{Inbound, Mail, Me, Reply, digest_token, normalize};
pub use reply::{Command, GRAMMAR, Item, Line, parse_reply};

use crate::backoff::Backoff;
use crate::channel::{BoxFuture, Channel, ChannelContext, Sent, Wakes};
use crate::chat::{self, Pressed, sleep_or_stop};
use crate::liveness::{Liveness, wall_clock_ms};

pub const CHANNEL: &str = "email";

/// How long an answer waits for the engine before the confirmation says "running".
const ANSWER_WITHIN: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Suggestions and approvals a digest lists at most.
const DIGEST_LIMIT: u32 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (IMAP 993, SMTP 465).
    Tls,
    /// Plain, then upgraded with STARTTLS (IMAP 143, SMTP 587).
    StartTls,
    /// Plain text: loopback or a trusted network only.
    None,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub imap: ServerConfig,
    pub mailbox: String,
    pub smtp: ServerConfig,
    /// loopgate's address (`loopgate <me@example.org>` or a bare address).
    pub from: String,
    pub digest_to: Vec<String>,
    /// Cron (five fields, or six with seconds), in the owner's timezone.
    pub digest_schedule: Option<String>,
    /// Mixed into the stored hash of each reply token.
    pub reply_secret: String,
    /// How long a digest's reply token is honoured.
    pub reply_ttl: Duration,
    /// Without IDLE: how often to look for new mail.
    pub poll_interval: Duration,
    /// With IDLE: how long one IDLE lasts before it is renewed (servers drop it at 30 min).
    pub idle_timeout: Duration,
    pub stale_after: Duration,
    pub timezone: Tz,
}

pub struct Email {
    config: EmailConfig,
    from: Mailbox,
    /// The domain of the Message-IDs loopgate writes.
    id_domain: String,
    schedule: Option<croner::Cron>,
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    store: Store,
    intelligence: Arc<Intelligence>,
    liveness: Liveness,
    wakes: Wakes,
}

/// What asking for a digest came to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DigestOutcome {
    /// Queued for sending (the outbox sends it at once and retries it if need be).
    Queued { suggestions: usize, approvals: usize, message_id: String, outbound_id: i64 },
    /// Nothing waits for the owner: an empty digest is not sent.
    Empty,
    /// No `digest_to` is configured.
    NoRecipient,
}

trait ImapStream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> ImapStream for T {}
type Session = async_imap::Session<Box<dyn ImapStream>>;

impl Email {
    pub fn new(
        config: EmailConfig,
        store: Store,
        intelligence: Arc<Intelligence>,
        wakes: Wakes,
    ) -> anyhow::Result<Arc<Email>> {
        let from: Mailbox = config.from.parse().map_err(|e| anyhow::anyhow!("email.from: {e}"))?;
        let id_domain = from.email.domain().to_owned();
        let schedule = match &config.digest_schedule {
            None => None,
            Some(pattern) => Some(parse_schedule(pattern)?),
        };
        let smtp = smtp_transport(&config.smtp)?;
        let liveness = Liveness::new(CHANNEL, config.stale_after);
        Ok(Arc::new(Email { config, from, id_domain, schedule, smtp, store, intelligence, liveness, wakes }))
    }

    fn me(&self) -> Me<'_> {
        Me { address: self.from.email.as_ref(), id_domain: &self.id_domain }
    }

    /// Builds the digest of what waits now and queues it; nothing is sent when nothing
    /// waits.
    pub async fn send_digest(&self) -> Result<DigestOutcome, StoreError> {
        if self.config.digest_to.is_empty() {
            return Ok(DigestOutcome::NoRecipient);
        }
        let suggestions = self.store.suggestions(&[SuggestionState::Active], DIGEST_LIMIT).await?;
        let approvals = self.store.approvals(&[ApprovalState::Pending], DIGEST_LIMIT).await?;
        let notes_key = loopgate_engine::workflow::DIGEST_NOTES_KEY;
        let notes: Vec<Note> = self
            .store
            .channel_state(CHANNEL, notes_key)
            .await?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let Some((token, digest)) = self.prepare(&suggestions, &approvals, &notes).await? else {
            return Ok(DigestOutcome::Empty);
        };
        let payload = self.digest_payload(&digest, "digest");
        let (outbound_id, _) = self
            .store
            .enqueue(&NewOutbound { channel: CHANNEL.into(), dedupe_key: format!("{CHANNEL}:digest:{token}"), payload })
            .await?;
        if !notes.is_empty() {
            // Delivered with this digest; the next one starts afresh.
            self.store.set_channel_state(CHANNEL, notes_key, "[]").await?;
        }
        self.wakes.outbox.notify_one();
        tracing::info!(suggestions = suggestions.len(), approvals = approvals.len(), "email: digest queued");
        Ok(DigestOutcome::Queued {
            suggestions: suggestions.len(),
            approvals: approvals.len(),
            message_id: digest.record.message_id,
            outbound_id,
        })
    }

    /// Builds a digest of these items with a fresh token and keeps what its numbers mean;
    /// `None` when there is nothing to list.
    async fn prepare(
        &self,
        suggestions: &[loopgate_engine::suggestion::Suggestion],
        approvals: &[loopgate_engine::actions::Approval],
        notes: &[Note],
    ) -> Result<Option<(String, Digest)>, StoreError> {
        let token = new_token();
        let now = self.store.clock().now();
        let expires_at = now + chrono::Duration::from_std(self.config.reply_ttl).unwrap_or(chrono::Duration::days(7));
        let Some(digest) = build_digest(
            Items { suggestions, approvals, notes },
            &token,
            &self.id_domain,
            now,
            expires_at,
            self.config.timezone,
        ) else {
            return Ok(None);
        };
        let record = serde_json::to_string(&digest.record).expect("a digest record serializes");
        self.store.set_channel_state(CHANNEL, &self.token_key(&token), &record).await?;
        Ok(Some((token, digest)))
    }

    fn digest_payload(&self, digest: &Digest, kind: &str) -> Value {
        json!({
            "kind": kind,
            "to": self.config.digest_to,
            "subject": digest.subject,
            "text": digest.text,
            "html": digest.html,
            "message_id": digest.record.message_id,
        })
    }

    /// An approval mailed on its own, the moment it is asked for: a digest of one, so it is
    /// answered like any digest ("approve A7"). Built at send time, so one decided in the
    /// meantime is not mailed at all.
    async fn mail_approval(&self, id: i64) -> Result<Sent, SendError> {
        let transient = |e: StoreError| SendError::Transient(e.to_string());
        let Some(approval) = self.store.approval(id).await.map_err(transient)? else {
            return Ok(Sent { platform_ref: "none".into() });
        };
        if approval.state != ApprovalState::Pending || self.config.digest_to.is_empty() {
            return Ok(Sent { platform_ref: "none".into() });
        }
        let Some((_, digest)) = self.prepare(&[], std::slice::from_ref(&approval), &[]).await.map_err(transient)?
        else {
            return Ok(Sent { platform_ref: "none".into() });
        };
        let message = compose(&self.from, &self.digest_payload(&digest, "approval")).map_err(SendError::Permanent)?;
        self.transmit(message, digest.record.message_id).await
    }

    /// Where a digest's record is kept: the token itself is never stored.
    fn token_key(&self, token: &str) -> String {
        let hash = Sha256::digest(format!("{}:{token}", self.config.reply_secret).as_bytes());
        format!("digest:{}", hex(&hash))
    }

    async fn digest_record(&self, token: &str) -> Result<Option<Record>, StoreError> {
        Ok(self
            .store
            .channel_state(CHANNEL, &self.token_key(token))
            .await?
            .and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// One message from the mailbox: a signal, an answer to a digest, or nothing.
    async fn on_mail(&self, raw: &[u8], uid_key: &str) -> Result<(), StoreError> {
        match normalize(raw, &self.me(), &self.intelligence.settings().answerers, uid_key) {
            Inbound::Mail(mail) => {
                let ingested = self.store.ingest(mail.signal.clone()).await?;
                self.on_owner_request(ingested.id, &mail.signal).await?;
            }
            Inbound::Reply(reply) => self.on_reply(reply).await?,
            Inbound::Ignored(reason) => {
                tracing::debug!(uid_key, reason, "email skipped");
                metrics::counter!("loopgate_email_skipped_total").increment(1);
            }
        }
        Ok(())
    }

    /// The owner writing to loopgate's own address: what the mail asks ("remind me
    /// tomorrow at 9 to …", in its first paragraph, else its subject) is carried out, and
    /// answered with a threaded reply saying what was understood.
    async fn on_owner_request(
        &self,
        id: loopgate_engine::signal::SignalId,
        signal: &loopgate_engine::signal::NewSignal,
    ) -> Result<(), StoreError> {
        // Plus-addressing ("loopgate+home@…") still reaches loopgate's own mailbox.
        let mailbox = |address: &str| {
            let address = address.trim().to_ascii_lowercase();
            match address.split_once('@') {
                Some((local, domain)) => format!("{}@{domain}", local.split('+').next().unwrap_or(local)),
                None => address,
            }
        };
        let me = mailbox(self.from.email.as_ref());
        let to_me = signal
            .payload
            .as_ref()
            .and_then(|p| p["to"].as_array())
            .is_some_and(|to| to.iter().any(|a| a.as_str().is_some_and(|a| mailbox(a) == me)));
        if !to_me || !signal.actor.as_ref().is_some_and(|a| a.is_owner) {
            return Ok(());
        }
        let (subject, body) = signal.text.split_once("\n\n").unwrap_or((signal.text.as_str(), ""));
        let first_paragraph = body.trim().split("\n\n").next().unwrap_or_default().trim();
        let mut reply = None;
        let tz = self.config.timezone;
        let said_at = signal.occurred_at.unwrap_or_else(|| self.store.clock().now());
        for text in [first_paragraph, subject.trim()].into_iter().filter(|t| !t.is_empty()) {
            // A From: header is a claim anyone can make: by mail, only what cannot harm
            // (a reminder, a question answered to the owner's own address).
            if let Some(request) = loopgate_engine::request::understand(text, said_at, tz)
                && !request.safe_by_mail()
            {
                reply = Some(
                    "By mail I take reminders and questions only; pausing, stopping, remembering and forgetting \
                     are for chat or the command line, where you are known for sure."
                        .to_owned(),
                );
                break;
            }
            let mut asked = signal.clone();
            asked.text = text.to_owned();
            reply = self.intelligence.handle_owner_signal(id, &asked).await?;
            if reply.is_some() {
                break;
            }
        }
        let Some(reply) = reply else { return Ok(()) };
        let payload = signal.payload.clone().unwrap_or_default();
        let message_id = payload["message_id"].as_str().map(str::to_owned);
        let mut references: Vec<String> = payload["references"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        references.extend(message_id.clone());
        let subject = payload["subject"].as_str().unwrap_or_default();
        let subject = match subject.get(..3) {
            Some(re) if re.eq_ignore_ascii_case("re:") => subject.to_owned(),
            _ if subject.is_empty() => "Re: your request".to_owned(),
            _ => format!("Re: {subject}"),
        };
        let key = format!("{CHANNEL}:answer:{}", message_id.clone().unwrap_or_else(|| id.to_string()));
        let to = signal.actor.as_ref().map(|a| a.id.clone()).unwrap_or_default();
        let payload = json!({
            "kind": "answer",
            "to": [to],
            "subject": subject,
            "text": format!("{reply}\n"),
            "message_id": format!("answer.{}@{}", &hex(&Sha256::digest(key.as_bytes()))[..24], self.id_domain),
            "in_reply_to": message_id,
            "references": references,
        });
        self.store.enqueue(&NewOutbound { channel: CHANNEL.into(), dedupe_key: key, payload }).await?;
        self.wakes.outbox.notify_one();
        Ok(())
    }

    /// An answer to a digest: each line applied, then one confirmation listing what came
    /// of each. From a sender who may not answer: nothing, and no mail back.
    async fn on_reply(&self, reply: Reply) -> Result<(), StoreError> {
        let span = tracing::info_span!("email_reply", from = %reply.from);
        async move {
            if !self.intelligence.settings().answerers.may_answer(CHANNEL, &reply.from) {
                tracing::warn!("email: a digest reply from a sender who may not answer; ignored");
                metrics::counter!("loopgate_email_replies_refused_total").increment(1);
                return Ok(());
            }
            let claimant = Claimant { channel: CHANNEL.into(), user_id: reply.from.clone(), name: None };
            let now = self.store.clock().now();
            let results = match self.digest_record(&reply.token).await? {
                None => vec!["This reply does not answer a digest I know of; nothing was applied.".to_owned()],
                Some(record) if record.expires_at < now => vec![format!(
                    "This digest's answers expired at {}; nothing was applied. Ask for a new digest (loopgate digest).",
                    chat::local(record.expires_at, self.config.timezone)
                )],
                Some(record) => {
                    let lines = parse_reply(&reply.text);
                    if lines.is_empty() {
                        vec![format!("I found no commands in your reply; nothing was applied. {GRAMMAR}")]
                    } else {
                        let mut results = Vec::with_capacity(lines.len());
                        for line in lines {
                            let outcome = self.apply(&line, &record, &claimant).await?;
                            results.push(format!("{}\n  → {outcome}", line.text));
                        }
                        results
                    }
                }
            };
            self.wakes.deliveries.notify_one();
            let subject = match reply.subject.get(..3) {
                Some(re) if re.eq_ignore_ascii_case("re:") => reply.subject.clone(),
                _ => format!("Re: {}", reply.subject),
            };
            let text = format!("What came of your reply:\n\n{}\n", results.join("\n\n"));
            let key = match &reply.message_id {
                Some(id) => format!("{CHANNEL}:confirm:{id}"),
                None => format!("{CHANNEL}:confirm:{}", hex(&Sha256::digest(reply.text.as_bytes()))),
            };
            let mut references = reply.references.clone();
            references.extend(reply.message_id.clone());
            let payload = json!({
                "kind": "confirmation",
                "to": [reply.from],
                "subject": subject,
                "text": text,
                "message_id": format!("confirm.{}@{}", &hex(&Sha256::digest(key.as_bytes()))[..24], self.id_domain),
                "in_reply_to": reply.message_id,
                "references": references,
            });
            self.store.enqueue(&NewOutbound { channel: CHANNEL.into(), dedupe_key: key, payload }).await?;
            self.wakes.outbox.notify_one();
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// One line of a reply, applied through the engine; what came of it, in words.
    async fn apply(&self, line: &Line, record: &Record, claimant: &Claimant) -> Result<String, StoreError> {
        // Not understood, an item the digest did not list, or a line of the digest pasted
        // back (a quote no rule recognised): nothing is applied, and the reason is said.
        let command = match record.admit(line) {
            Ok(command) => command,
            Err(why) => return Ok(why),
        };
        let tz = self.config.timezone;
        let pressed = match command {
            Command::Approve(id) | Command::Deny(id) => {
                let verdict = if matches!(command, Command::Approve(_)) { Verdict::Approve } else { Verdict::Deny };
                chat::decide(&self.intelligence, *id, verdict, claimant, ANSWER_WITHIN).await?
            }
            Command::Act(n) | Command::Snooze(n, _) | Command::Dismiss(n) | Command::Edit(n, _) => {
                let id = record.suggestions[n];
                if let Command::Act(_) = command
                    && let Some(suggestion) = self.store.suggestion(id).await?
                    && suggestion.state.is_answerable()
                    && loopgate_engine::request::needs_words(&suggestion)
                {
                    // A reply's words are the owner's: asked for, with the model's draft
                    // when there is one, never sent empty.
                    return Ok(match self.intelligence.draft_reply(&suggestion).await {
                        Some(draft) => format!(
                            "not applied: this reply needs your words. A draft: “{draft}” — to send it (or your own \
                             words), answer “{n} edit: <the text>”"
                        ),
                        None => format!("not applied: this reply needs your words — answer “{n} edit: <the text>”"),
                    });
                }
                let response = match command {
                    Command::Act(_) => Response::Act,
                    Command::Dismiss(_) => Response::Dismiss,
                    Command::Snooze(_, span) => Response::Snooze {
                        until: self.store.clock().now()
                            + chrono::Duration::from_std(*span).unwrap_or(chrono::Duration::days(1)),
                    },
                    Command::Edit(_, text) => {
                        let Some(suggestion) = self.store.suggestion(id).await? else {
                            return Ok("that suggestion no longer exists".into());
                        };
                        match chat::edit_response(&suggestion, text) {
                            Ok(response) => response,
                            Err(why) => return Ok(format!("not edited: {why}")),
                        }
                    }
                    _ => unreachable!("approvals handled above"),
                };
                chat::respond(&self.intelligence, id, response, claimant, tz, ANSWER_WITHIN).await?
            }
        };
        Ok(match pressed {
            Pressed::Done(text) => format!("applied: {text}"),
            Pressed::Running(text) => format!("applied: {text}"),
            Pressed::Refused(text) => format!("not applied: {text}"),
            Pressed::Open(_) | Pressed::AskWords(..) => unreachable!("an answer opens nothing"),
        })
    }

    async fn connect(&self) -> anyhow::Result<Session> {
        imap_login(&self.config.imap).await
    }

    /// Reads new mail until shutdown, reconnecting with backoff (1 s doubling to a minute).
    async fn run_imap(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut backoff = Backoff::default();
        loop {
            if let Err(error) = self.imap_session(&mut shutdown).await {
                metrics::counter!("loopgate_email_imap_errors_total").increment(1);
                tracing::warn!(error = format!("{error:#}"), "email: IMAP connection lost; reconnecting");
            } else {
                return Ok(());
            }
            let wait = backoff.next(None);
            if sleep_or_stop(wait, &mut shutdown).await {
                return Ok(());
            }
        }
    }

    /// One connection: read what is new, then wait (IDLE or a poll) and read again. Returns
    /// `Ok` only at shutdown.
    async fn imap_session(&self, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut session = self.connect().await?;
        let idle = session.capabilities().await?.has_str("IDLE");
        let mailbox = &self.config.mailbox;
        let selected = session.select(mailbox).await?;
        let validity = selected.uid_validity.unwrap_or(0);
        let validity_key = format!("uidvalidity:{mailbox}");
        let last_key = format!("last_uid:{mailbox}");
        let mut last: u32 = match self.store.channel_state(CHANNEL, &validity_key).await? {
            Some(saved) if saved == validity.to_string() => {
                self.store.channel_state(CHANNEL, &last_key).await?.and_then(|v| v.parse().ok()).unwrap_or(0)
            }
            known => {
                // First connection: what is already in the mailbox is history, not news.
                // A changed UIDVALIDITY (the mailbox was rebuilt): read it all again; mail
                // already seen is a duplicate by its Message-ID, never a second signal.
                let last = if known.is_none() { selected.uid_next.unwrap_or(1).saturating_sub(1) } else { 0 };
                if known.is_some() {
                    tracing::warn!(mailbox, validity, "email: UIDVALIDITY changed; reading the mailbox again");
                }
                self.store.set_channel_state(CHANNEL, &last_key, &last.to_string()).await?;
                self.store.set_channel_state(CHANNEL, &validity_key, &validity.to_string()).await?;
                last
            }
        };
        tracing::info!(mailbox, validity, last, idle, "email: reading the mailbox");
        loop {
            self.fetch_new(&mut session, validity, &mut last, &last_key).await?;
            self.liveness.mark(wall_clock_ms());
            if idle {
                let mut handle = session.idle();
                handle.init().await?;
                {
                    let (wait, _interrupt) = handle.wait_with_timeout(self.config.idle_timeout);
                    tokio::select! {
                        result = wait => { result?; }
                        _ = shutdown.changed() => return Ok(()),
                    }
                }
                session = handle.done().await?;
            } else {
                if sleep_or_stop(self.config.poll_interval, shutdown).await {
                    return Ok(());
                }
                session.noop().await?;
            }
        }
    }

    /// Reads every message after `last`, one at a time, moving `last` (and its saved copy)
    /// past each only once it is handled.
    async fn fetch_new(
        &self,
        session: &mut Session,
        validity: u32,
        last: &mut u32,
        last_key: &str,
    ) -> anyhow::Result<()> {
        let uids: Vec<u32> = {
            let found = session.uid_search(format!("UID {}:*", *last + 1)).await?;
            let mut uids: Vec<u32> = found.into_iter().filter(|uid| uid > last).collect();
            uids.sort_unstable();
            uids
        };
        for uid in uids {
            let fetched: Vec<_> = session.uid_fetch(uid.to_string(), "(UID BODY.PEEK[])").await?.try_collect().await?;
            for message in fetched.iter().filter(|m| m.uid == Some(uid)) {
                self.on_mail(message.body().unwrap_or_default(), &format!("uid:{validity}:{uid}")).await?;
            }
            *last = uid;
            self.store.set_channel_state(CHANNEL, last_key, &uid.to_string()).await?;
        }
        Ok(())
    }

    /// Sends the digest when the schedule says, at most once per occurrence, across
    /// restarts and clock changes (see `loopgate_engine::schedule`).
    async fn run_schedule(self: Arc<Self>, cron: croner::Cron, shutdown: watch::Receiver<bool>) {
        let schedule = Schedule {
            name: "digest".into(),
            cron,
            timezone: self.config.timezone,
            channel: CHANNEL.into(),
            key: "digest:last_run".into(),
        };
        let email = &self;
        schedule
            .run(&self.store, shutdown, move |_occurrence| async move {
                match email.send_digest().await {
                    Ok(outcome) => tracing::info!(?outcome, "email: scheduled digest"),
                    Err(error) => tracing::error!(%error, "email: the scheduled digest failed"),
                }
            })
            .await;
    }

    async fn perform(&self, outbound: &Outbound) -> Result<Sent, SendError> {
        if outbound.payload.get("kind").and_then(Value::as_str) == Some("approval")
            && let Some(id) = outbound.payload.get("approval").and_then(Value::as_i64)
        {
            return self.mail_approval(id).await;
        }
        let message = compose(&self.from, &outbound.payload).map_err(SendError::Permanent)?;
        let message_id = outbound.payload.get("message_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        self.transmit(message, message_id).await
    }

    async fn transmit(&self, message: lettre::Message, message_id: String) -> Result<Sent, SendError> {
        match self.smtp.send(message).await {
            Ok(_) => Ok(Sent { platform_ref: message_id }),
            // 5xx: the server will never take it (an unknown recipient, a refused sender).
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP refused it: {e}"))),
            // 4xx, a dropped connection, a timeout: worth trying again.
            Err(e) => Err(SendError::Transient(format!("SMTP: {e}"))),
        }
    }
}

/// A lettre message from an outbox payload: `to`, `subject`, `text`, optional `html`,
/// `message_id`, `in_reply_to`, `references`.
fn compose(from: &Mailbox, payload: &Value) -> Result<lettre::Message, String> {
    let text_of = |key: &str| payload.get(key).and_then(Value::as_str);
    let recipients: Vec<Mailbox> = payload
        .get("to")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|to| to.parse().map_err(|e| format!("recipient {to:?}: {e}")))
        .collect::<Result<_, _>>()?;
    if recipients.is_empty() {
        return Err("a mail without recipients".into());
    }
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(text_of("subject").unwrap_or_default())
        .date_now()
        .message_id(text_of("message_id").map(|id| format!("<{id}>")))
        // Automatic mail: vacation responders must not answer it (RFC 3834).
        .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-generated".into()))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Loopgate"),
            text_of("kind").unwrap_or("message").to_owned(),
        ));
    for to in recipients {
        builder = builder.to(to);
    }
    if let Some(id) = text_of("in_reply_to") {
        builder = builder.in_reply_to(format!("<{id}>"));
    }
    let references: Vec<String> = payload
        .get("references")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|id| format!("<{id}>"))
        .collect();
    if !references.is_empty() {
        builder = builder.references(references.join(" "));
    }
    let text = text_of("text").unwrap_or_default().to_owned();
    let built = match text_of("html") {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(text, html.to_owned())),
        None => builder.singlepart(SinglePart::plain(text)),
    };
    built.map_err(|e| format!("cannot build the mail: {e}"))
}

/// Connects and logs in to an IMAP server, with the configured security.
async fn imap_login(server: &ServerConfig) -> anyhow::Result<Session> {
    let tcp =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect((server.host.as_str(), server.port)))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {}:{} timed out", server.host, server.port))??;
    let stream: Box<dyn ImapStream> = match server.security {
        Security::None => Box::new(tcp),
        Security::Tls => Box::new(tls(&server.host, tcp).await?),
        Security::StartTls => {
            let mut plain = async_imap::Client::new(tcp);
            plain.read_response().await?.ok_or_else(|| anyhow::anyhow!("the server closed before its greeting"))?;
            plain.run_command_and_check_ok("STARTTLS", None).await?;
            Box::new(tls(&server.host, plain.into_inner()).await?)
        }
    };
    let mut client = async_imap::Client::new(stream);
    // After STARTTLS there is no second greeting.
    if server.security != Security::StartTls {
        client.read_response().await?.ok_or_else(|| anyhow::anyhow!("the server closed before its greeting"))?;
    }
    let session = client.login(&server.username, &server.password).await.map_err(|(error, _)| error)?;
    Ok(session)
}

/// Logs in to the IMAP server and out again: proves the address, the security and the
/// credentials (for `loopgate init` and `doctor`).
pub async fn check_imap(server: &ServerConfig) -> anyhow::Result<()> {
    let mut session = tokio::time::timeout(CONNECT_TIMEOUT * 2, imap_login(server))
        .await
        .map_err(|_| anyhow::anyhow!("{}:{} did not answer in time", server.host, server.port))??;
    session.logout().await?;
    Ok(())
}

/// Greets the SMTP server (EHLO, STARTTLS or TLS, AUTH when a username is set).
pub async fn check_smtp(server: &ServerConfig) -> anyhow::Result<()> {
    let transport = smtp_transport(server)?;
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, transport.test_connection()).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => anyhow::bail!("{}:{} did not accept the connection", server.host, server.port),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => anyhow::bail!("{}:{} did not answer in time", server.host, server.port),
    }
}

fn smtp_transport(server: &ServerConfig) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let builder = match server.security {
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&server.host)?,
        Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&server.host)?,
        Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host),
    };
    let mut builder = builder.port(server.port).timeout(Some(Duration::from_secs(30)));
    if !server.username.is_empty() {
        builder = builder.credentials(Credentials::new(server.username.clone(), server.password.clone()));
    }
    Ok(builder.build())
}

async fn tls(
    host: &str,
    tcp: tokio::net::TcpStream,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let roots = tokio_rustls::rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = tokio_rustls::rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned())?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?)
}

/// A cron pattern for `digest_schedule`: five fields, or six with seconds.
pub fn parse_schedule(pattern: &str) -> anyhow::Result<croner::Cron> {
    let fields = pattern.split_whitespace().count();
    let parser = croner::parser::CronParser::builder()
        .seconds(if fields == 6 { croner::parser::Seconds::Required } else { croner::parser::Seconds::Disallowed })
        .build();
    parser.parse(pattern).map_err(|e| anyhow::anyhow!("{pattern:?} is not a cron schedule: {e}"))
}

/// An unguessable reply token: 20 characters of `a-z0-9` (about 103 bits).
fn new_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut token = String::with_capacity(20);
    while token.len() < 20 {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        // 252 = 7 × 36: bytes above it are dropped, so every character is equally likely.
        token.extend(
            bytes.iter().filter(|b| **b < 252).map(|b| ALPHABET[usize::from(*b % 36)] as char).take(20 - token.len()),
        );
    }
    token
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Channel for Email {
    fn name(&self) -> &'static str {
        CHANNEL
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    fn run_inbound(self: Arc<Self>, ctx: ChannelContext) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            if let Some(cron) = self.schedule.clone() {
                tokio::spawn(self.clone().run_schedule(cron, ctx.shutdown.clone()));
            }
            self.run_imap(ctx.shutdown).await
        })
    }

    /// Suggestions reach email through the digest, not one mail each.
    fn render(&self, _: &Delivery) -> Vec<NewOutbound> {
        Vec::new()
    }

    /// An approval is mailed at once (besides the next digest), when someone gets mail.
    fn render_approval(&self, delivery: &ApprovalDelivery) -> Vec<NewOutbound> {
        let a = &delivery.approval;
        if delivery.kind != loopgate_engine::suggestion::DeliveryKind::Show
            || a.state != ApprovalState::Pending
            || self.config.digest_to.is_empty()
        {
            return Vec::new();
        }
        vec![NewOutbound {
            channel: CHANNEL.into(),
            dedupe_key: crate::channel::approval_post_key(CHANNEL, a.id),
            payload: json!({"kind": "approval", "approval": a.id}),
        }]
    }

    fn message(&self, task: i64, action: &Value) -> Result<Vec<Value>, String> {
        let target = action.get("target").cloned().unwrap_or(Value::Null);
        let to = target.get("conversation").and_then(Value::as_str).unwrap_or_default().trim();
        let address: Mailbox = to.parse().map_err(|_| format!("{to:?} is not an email address to write to"))?;
        let text = action.get("text").and_then(Value::as_str).unwrap_or_default().trim();
        if text.is_empty() {
            return Err("the message has no text: edit it first".into());
        }
        let reply_to = target.get("reply_to").and_then(Value::as_str).map(|id| id.trim_matches(['<', '>']).to_owned());
        let subject = action.get("subject").and_then(Value::as_str).map_or_else(
            || if reply_to.is_some() { "Re: your message".to_owned() } else { "A message for you".to_owned() },
            str::to_owned,
        );
        // One mail, however long: SMTP has no length limit a mail body could meet, and
        // lettre encodes lines over 998 octets (quoted-printable) and folds long headers.
        Ok(vec![json!({
            "kind": "message",
            "to": [address.to_string()],
            "subject": subject,
            "text": text,
            "message_id": format!("task.{task}@{}", self.id_domain),
            "in_reply_to": reply_to,
            "references": reply_to.iter().collect::<Vec<_>>(),
        })])
    }

    fn send<'a>(&'a self, outbound: &'a Outbound) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(self.perform(outbound))
    }

    fn verify<'a>(&'a self, outbound: &'a Outbound) -> BoxFuture<'a, Verification> {
        // SMTP cannot say whether a mail went out. A digest or a confirmation sent twice
        // carries the same Message-ID (mail clients show it once); anything else is not
        // repeated.
        let kind = outbound.payload.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
        Box::pin(async move {
            if matches!(kind.as_str(), "digest" | "confirmation") {
                Verification::SafeToResend
            } else {
                Verification::Unknown
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unguessable_and_well_formed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }

    #[test]
    fn a_long_message_keeps_every_line_within_998_octets_and_reads_back_whole() {
        // One 6,000-character line (no breaks at all) and a subject of 300 characters.
        let text: String = (0..600).map(|n| format!("word{n:05} ")).collect::<String>().replace(' ', "·");
        let subject = format!("Re: {}", "the quarterly numbers ".repeat(14).trim_end());
        let payload = json!({
            "kind": "message", "to": ["lee@example.org"], "subject": subject, "text": text,
            "message_id": "task.7@loopgate.test",
        });
        let from: Mailbox = "loopgate <loopgate@example.org>".parse().unwrap();
        let raw = compose(&from, &payload).unwrap().formatted();
        for line in raw.split(|b| *b == b'\n') {
            assert!(line.len() <= 998, "a line of {} octets", line.len());
        }
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.body_text(0).unwrap().trim_end(), text);
        assert_eq!(parsed.subject().unwrap(), subject);
    }

    #[test]
    fn schedules_are_cron_with_or_without_seconds() {
        assert!(parse_schedule("0 7 * * *").is_ok());
        assert!(parse_schedule("*/2 * * * * *").is_ok());
        assert!(parse_schedule("every morning").is_err());
    }

    #[test]
    fn outbox_payloads_become_threaded_mail() {
        let from: Mailbox = "loopgate <loopgate@test.local>".parse().unwrap();
        let payload = json!({
            "kind": "confirmation", "to": ["owner@test.local"], "subject": "Re: digest", "text": "done",
            "message_id": "confirm.1@test.local", "in_reply_to": "reply-1@test.local",
            "references": ["digest.x@test.local", "reply-1@test.local"],
        });
        let mail = String::from_utf8(compose(&from, &payload).unwrap().formatted()).unwrap();
        for header in [
            "Message-ID: <confirm.1@test.local>",
            "In-Reply-To: <reply-1@test.local>",
            "References: <digest.x@test.local> <reply-1@test.local>",
            "Auto-Submitted: auto-generated",
            "X-Loopgate: confirmation",
        ] {
            assert!(mail.contains(header), "{header} in {mail}");
        }
        assert!(compose(&from, &json!({"to": [], "text": "x"})).is_err());
        assert!(compose(&from, &json!({"to": ["not an address"], "text": "x"})).is_err());
    }
}
