//! The owner's requests, in their own words, taken as commands: "remind me …", "remember
//! that …", "forget …", "what's open", "what do you know about …", stop / pause / resume,
//! help. A request takes effect when its signal is handled, on any channel, whatever the
//! heartbeat's threshold, cooldown, budget or quiet hours say (those govern only what
//! loopgate infers on its own), and is answered at once with what was understood.
//!
//! [`understand`] is pure (a table of phrasings, tested); [`Intelligence::handle_request`]
//! carries a request out and says what came of it, in plain text the channel escapes.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::intelligence::Intelligence;
use crate::memory::{MemoryCandidate, MemoryKind, RememberOutcome};
use crate::reflect::detect::{self, MAX_TITLE, bounded, reminder_request};
use crate::reflect::when;
use crate::signal::SignalId;
use crate::store::{MemoryQuery, NewSuggestion, StoreError};
use crate::suggestion::{SuggestionId, SuggestionState};

/// Where pending questions ("When should I remind you to …?") are kept, by conversation.
const ASKED: &str = "requests";
/// How long a question waits for its answer before a time alone means nothing.
const ASK_FOR: chrono::Duration = chrono::Duration::hours(12);
/// Longest reminder task kept in an acknowledgement line.
const MAX_TASK: usize = 200;

/// What the owner asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Remind me of `task` at `at`; no time given is a question back.
    Remind {
        task: String,
        at: Option<DateTime<Utc>>,
    },
    Remember(String),
    Forget(String),
    /// "what's open", "what do I have".
    WhatsOpen,
    /// "what do you know about X".
    Recall(String),
    Pause,
    Stop,
    Resume,
    Help,
    /// "never mind", "forget it": the question waiting for an answer is dropped.
    NeverMind,
}

/// Reads a request in `text`, said at `said_at` (relative times count from then), in the
/// owner's zone. `None`: not a request (small talk, a note, a question for a model).
pub fn understand(text: &str, said_at: DateTime<Utc>, timezone: Tz) -> Option<Request> {
    if let Some((task, at)) = reminder_request(text, said_at, timezone) {
        return Some(Request::Remind { task, at });
    }
    let plain = plain(text);
    let rest_after = |prefixes: &[&str]| {
        prefixes.iter().find_map(|p| plain.strip_prefix(p)).map(str::trim).filter(|r| !r.is_empty())
    };
    let original_after = |prefixes: &[&str]| {
        let lower = text.trim().to_lowercase();
        prefixes.iter().find_map(|p| {
            lower.starts_with(p).then(|| text.trim()[p.len()..].trim().trim_end_matches(['.', '!']).trim().to_owned())
        })
    };
    if let Some(what) = original_after(&["remember that ", "remember: ", "remember "]).filter(|w| !w.is_empty()) {
        return Some(Request::Remember(what));
    }
    // "forget it", "never mind": the owner drops what was just asked, nothing is deleted.
    if matches!(plain.as_str(), "forget it" | "forget that" | "never mind" | "nevermind" | "nvm" | "cancel") {
        return Some(Request::NeverMind);
    }
    if rest_after(&["forget "]).is_some() {
        let what = original_after(&["forget about ", "forget that ", "forget "]).unwrap_or_default();
        if !what.is_empty() {
            return Some(Request::Forget(what));
        }
    }
    if let Some(topic) = rest_after(&[
        "what do you know about ",
        "what do you remember about ",
        "what do you know of ",
        "what have you got on ",
        "tell me what you know about ",
    ]) {
        return Some(Request::Recall(topic.trim_end_matches('?').trim().to_owned()));
    }
    const OPEN: &[&str] = &[
        "what's open",
        "whats open",
        "what is open",
        "what do i have",
        "what have i got",
        "what's pending",
        "whats pending",
        "what's on my plate",
        "whats on my plate",
        "anything open",
        "what's waiting",
        "whats waiting",
        "what's next",
        "whats next",
        "open items",
        "my reminders",
        "what are my reminders",
    ];
    if OPEN.iter().any(|p| plain == *p || plain.starts_with(&format!("{p} "))) {
        return Some(Request::WhatsOpen);
    }
    match plain.as_str() {
        "pause" | "hold on" | "pause please" => Some(Request::Pause),
        "stop" | "stop everything" | "stop please" => Some(Request::Stop),
        "resume" | "continue" | "unpause" | "carry on" | "go on" | "start again" => Some(Request::Resume),
        "help" | "what can you do" | "commands" | "how does this work" => Some(Request::Help),
        _ => None,
    }
}

impl Request {
    /// Whether a request may come by mail, where the sender's address is only a claim:
    /// reminders and questions (answered to the owner's own address) only — nothing that
    /// deletes, pauses or teaches.
    pub fn safe_by_mail(&self) -> bool {
        matches!(
            self,
            Request::Remind { .. } | Request::WhatsOpen | Request::Recall(_) | Request::Help | Request::NeverMind
        )
    }
}

/// Lowercase, one space between words, without a greeting to the bot or "please" at the
/// start and without closing punctuation.
fn plain(text: &str) -> String {
    let mut out = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase().replace('’', "'");
    for lead in ["hey loopgate ", "hi loopgate ", "loopgate ", "please ", "can you ", "could you "] {
        if let Some(rest) = out.strip_prefix(lead) {
            out = rest.trim_start_matches([',', ' ']).to_owned();
        }
    }
    out.trim_end_matches(['?', '!', '.', ' ']).to_owned()
}

/// "never …", "don't …" read as constraints; "watch …", "tell me when …" as watch items;
/// anything else the owner asks to remember is a preference.
pub fn kind_of_note(text: &str) -> MemoryKind {
    let lower = text.trim().to_lowercase();
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| lower.starts_with(p));
    if starts(&["never ", "don't ", "dont ", "do not ", "always ", "only "]) {
        MemoryKind::Constraint
    } else if starts(&["watch ", "tell me when ", "let me know when ", "keep an eye on "]) {
        MemoryKind::WatchItem
    } else {
        MemoryKind::Preference
    }
}

/// A one-line answer to small talk, without a model: never the same paragraph for
/// everything.
pub fn small_talk(text: &str) -> &'static str {
    let p = plain(text);
    let first = p.split(' ').next().unwrap_or_default();
    let has = |words: &[&str]| words.iter().any(|w| p == *w || p.starts_with(&format!("{w} ")));
    if has(&["thanks", "thank you", "thx", "ty", "cheers", "many thanks", "thanks a lot"]) {
        "You're welcome."
    } else if has(&["bye", "see you", "see ya", "later", "good night", "gn", "talk later", "ttyl"]) {
        "See you."
    } else if has(&["hi", "hello", "hey", "good morning", "good afternoon", "good evening", "morning", "yo"]) {
        "Hi! Ask me to remind you of something, or say “help”."
    } else if has(&["ok", "okay", "k", "kk", "cool", "great", "nice", "got it", "sure", "perfect", "alright", "👍"])
        || first == "👍"
    {
        "👍"
    } else {
        "Noted."
    }
}

/// The owner's message, as handled: where it came from and what it said.
#[derive(Debug, Clone)]
pub struct Said<'a> {
    /// The signal the message became (for an edit, the edit's own).
    pub signal: SignalId,
    /// For an edit: the signal of the message it edits.
    pub edits: Option<SignalId>,
    /// Channel and conversation, for a question waiting for its answer there.
    pub source: &'a str,
    pub conversation: &'a str,
    pub text: &'a str,
    /// When it was said; relative times ("in 10 minutes") count from here.
    pub at: DateTime<Utc>,
    /// Who, as decisions record it.
    pub by: &'a str,
}

/// What came of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    /// A reminder set (or, for an edit, moved) to `at`; `id` is its suggestion, waiting.
    Reminder { id: SuggestionId, task: String, at: DateTime<Utc>, moved: bool },
    /// A reminder without a time: asked when; the answer sets it.
    AskWhen { task: String },
    /// An edit that no longer asks: its reminder is cancelled.
    Cancelled { id: SuggestionId, task: String },
    /// Done; here is what to say (plain text).
    Answer(String),
    /// Not a request: small talk, or something for the model.
    NotARequest,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Asked {
    task: String,
    signal: SignalId,
    at: DateTime<Utc>,
}

impl Intelligence {
    /// Carries out what the owner's message asks, at once. Handling the same message twice
    /// (a redelivery) changes nothing more: a reminder is keyed by the message's signal.
    pub async fn handle_request(&self, said: &Said<'_>) -> Result<Handled, StoreError> {
        let tz = self.settings().rules.timezone;
        let request = understand(said.text, said.at, tz);
        if let Some(edited) = said.edits {
            return self.edited(said, edited, request).await;
        }
        if request.is_none()
            && let Some(asked) = self.asked(said).await?
            && let Some(found) = when::find(said.text, said.at, tz)
            // An answer is a time, maybe with a word or two ("ok, tomorrow at 9"); "the
            // meeting moved to 3pm" is news, not the answer.
            && when::words(said.text).len() <= found.words.1 - found.words.0 + 2
        {
            // "tomorrow at 9" answering "When should I remind you to …?"
            self.store().set_channel_state(ASKED, &asked_key(said), "").await?;
            return self.set_reminder(asked.signal, &asked.task, found.at, said).await;
        }
        let Some(request) = request else { return Ok(Handled::NotARequest) };
        if !matches!(request, Request::Remind { at: None, .. } | Request::NeverMind) {
            self.store().set_channel_state(ASKED, &asked_key(said), "").await?;
        }
        Ok(match request {
            Request::Remind { task, at: Some(at) } => self.set_reminder(said.signal, &task, at, said).await?,
            Request::Remind { task, at: None } => {
                let asked = Asked { task: task.clone(), signal: said.signal, at: said.at };
                let value = serde_json::to_string(&asked).expect("a question serializes");
                self.store().set_channel_state(ASKED, &asked_key(said), &value).await?;
                Handled::AskWhen { task }
            }
            Request::Remember(what) => Handled::Answer(self.remember_for_owner(&what).await?),
            Request::Forget(what) => Handled::Answer(self.forget_for_owner(&what).await?),
            Request::Recall(topic) => Handled::Answer(self.recall(&topic).await?),
            Request::WhatsOpen => Handled::Answer(self.whats_open().await?),
            Request::Pause => {
                self.set_paused(true).await?;
                Handled::Answer("⏸ Paused: no new suggestions and no tasks run until you say “resume”.".into())
            }
            Request::Stop => {
                self.set_paused(true).await?;
                Handled::Answer("⏹ Stopped: nothing is dispatched and no task runs until you say “resume”.".into())
            }
            Request::Resume => {
                self.set_paused(false).await?;
                Handled::Answer("▶️ Resumed.".into())
            }
            Request::Help => Handled::Answer(capabilities().into()),
            Request::NeverMind => match self.asked(said).await? {
                Some(asked) => {
                    self.store().set_channel_state(ASKED, &asked_key(said), "").await?;
                    Handled::Answer(format!("OK — no reminder to {}.", asked.task))
                }
                None => Handled::Answer("OK.".into()),
            },
        })
    }

    /// The question waiting for an answer in this conversation, if it is still fresh.
    async fn asked(&self, said: &Said<'_>) -> Result<Option<Asked>, StoreError> {
        let saved = self.store().channel_state(ASKED, &asked_key(said)).await?;
        let asked: Option<Asked> = saved.filter(|s| !s.is_empty()).and_then(|s| serde_json::from_str(&s).ok());
        Ok(asked.filter(|a| said.at - a.at <= ASK_FOR))
    }

    /// An edited message: its reminder follows the new words (new text, new time), or is
    /// cancelled when the edit no longer asks for one.
    async fn edited(
        &self,
        said: &Said<'_>,
        original: SignalId,
        request: Option<Request>,
    ) -> Result<Handled, StoreError> {
        let tz = self.settings().rules.timezone;
        let key = reminder_key(original);
        let existing = self.store().suggestion_by_key(&key).await?;
        let waiting = existing.filter(|s| matches!(s.state, SuggestionState::Scheduled | SuggestionState::Snoozed));
        match (request, waiting) {
            (Some(Request::Remind { task, at: Some(at) }), Some(current)) => {
                let (title, action) = reminder_parts(&task);
                let why = reminded_at(at, tz);
                if self.store().reschedule_reminder(&current, &title, &why, &action, at).await? {
                    self.due_changed();
                    return Ok(Handled::Reminder { id: current.id, task, at, moved: true });
                }
                Ok(Handled::Answer("That reminder has already come due; I left it as it was.".into()))
            }
            (Some(Request::Remind { task, at: Some(at) }), None) => self.set_reminder(original, &task, at, said).await,
            (Some(Request::Remind { task, at: None }), _) => {
                let asked = Asked { task: task.clone(), signal: original, at: said.at };
                let value = serde_json::to_string(&asked).expect("a question serializes");
                self.store().set_channel_state(ASKED, &asked_key(said), &value).await?;
                Ok(Handled::AskWhen { task })
            }
            (_, Some(current)) => {
                self.store().cancel_suggestion(current.id, said.by, said.source).await?;
                self.due_changed();
                let task = current.title.trim_start_matches("Reminder: ").to_owned();
                Ok(Handled::Cancelled { id: current.id, task })
            }
            // An edit that asks nothing, of a message that asked nothing: nothing to do.
            (_, None) => Ok(Handled::NotARequest),
        }
    }

    /// A reminder the owner asked for: a suggestion that waits for its time, keyed by the
    /// message that asked (the reflector's own reading of it is then the same idea).
    async fn set_reminder(
        &self,
        asked_in: SignalId,
        task: &str,
        at: DateTime<Utc>,
        said: &Said<'_>,
    ) -> Result<Handled, StoreError> {
        let now = self.store().clock().now();
        let tz = self.settings().rules.timezone;
        let mut key = reminder_key(asked_in);
        if let Some(existing) = self.store().suggestion_by_key(&key).await? {
            let open = matches!(
                existing.state,
                SuggestionState::Scheduled | SuggestionState::Snoozed | SuggestionState::Active
            );
            if open && existing.snoozed_until.or(existing.due_at) == Some(at) {
                // The same message handled again (a redelivery): nothing changes.
                return Ok(Handled::Reminder { id: existing.id, task: task.to_owned(), at, moved: false });
            }
            if open {
                // Raised already without a time (the reflector read the request before its
                // answer came): the answer gives it its time.
                let (title, action) = reminder_parts(task);
                let why = reminded_at(at, tz);
                if self.store().reschedule_reminder(&existing, &title, &why, &action, at).await? {
                    self.due_changed();
                    return Ok(Handled::Reminder { id: existing.id, task: task.to_owned(), at, moved: false });
                }
            }
            // The same words as a request answered long ago (the ledger merged them into
            // that signal): a new reminder, not the old one.
            key = format!("{key}:{}", crate::clock::to_millis(now));
        }
        let (title, action) = reminder_parts(task);
        let suggestion = NewSuggestion {
            key: key.clone(),
            topic: None,
            title,
            why_now: reminded_at(at, tz),
            evidence: vec![crate::suggestion::EvidenceLine {
                signal_id: asked_in,
                summary: format!("you on {}: “{}”", said.source, detect::excerpt(said.text)),
            }],
            confidence: 0.95,
            score: 0.95,
            action,
            class: "reminder".into(),
            source: said.source.to_owned(),
            reflector: "request".into(),
            state: if at > now { SuggestionState::Scheduled } else { SuggestionState::Active },
            due_at: Some(crate::clock::to_millis(at)),
            expires_at: crate::clock::to_millis(at.max(now) + self.settings().expires_after),
            risk: loopgate_policies::Risk::Low,
            policy: loopgate_policies::Effect::Allow,
        };
        let created = self.store().create_suggestions("request", &[suggestion]).await?;
        let id = match created.first() {
            Some(id) => *id,
            None => self.store().suggestion_by_key(&key).await?.map(|s| s.id).expect("raised, or raised before"),
        };
        tracing::info!(suggestion = id, %at, "reminder set at the owner's request");
        self.due_changed();
        Ok(Handled::Reminder { id, task: task.to_owned(), at, moved: false })
    }

    /// Moves a waiting reminder to `at` (a button under its acknowledgement), for someone
    /// who may answer it. Says what came of it, in words for the presser.
    pub async fn move_reminder(
        &self,
        id: SuggestionId,
        at: DateTime<Utc>,
        claimant: &crate::suggestion::Claimant,
    ) -> Result<Result<DateTime<Utc>, String>, StoreError> {
        let Some(current) = self.waiting_reminder(id, claimant).await? else {
            return Ok(Err(self.why_not_waiting(id, claimant).await?));
        };
        let action = current.edited_action.clone().unwrap_or_else(|| current.action.clone());
        let why = reminded_at(at, self.settings().rules.timezone);
        if self.store().reschedule_reminder(&current, &current.title, &why, &action, at).await? {
            self.due_changed();
            Ok(Ok(at))
        } else {
            Ok(Err("This reminder has just changed; look again.".into()))
        }
    }

    /// Cancels a waiting reminder, for someone who may answer it; it teaches nothing.
    pub async fn cancel_reminder(
        &self,
        id: SuggestionId,
        claimant: &crate::suggestion::Claimant,
    ) -> Result<Result<(), String>, StoreError> {
        if self.waiting_reminder(id, claimant).await?.is_none() {
            return Ok(Err(self.why_not_waiting(id, claimant).await?));
        }
        let by = claimant.name.clone().unwrap_or_else(|| claimant.user_id.clone());
        if self.store().cancel_suggestion(id, &by, &claimant.channel).await? {
            self.due_changed();
            Ok(Ok(()))
        } else {
            Ok(Err("This reminder has just changed; look again.".into()))
        }
    }

    async fn waiting_reminder(
        &self,
        id: SuggestionId,
        claimant: &crate::suggestion::Claimant,
    ) -> Result<Option<crate::suggestion::Suggestion>, StoreError> {
        if self.authorize(claimant, &format!("suggestion:{id}")).is_none() {
            return Ok(None);
        }
        Ok(self.store().suggestion(id).await?.filter(reminder_waiting))
    }

    async fn why_not_waiting(
        &self,
        id: SuggestionId,
        claimant: &crate::suggestion::Claimant,
    ) -> Result<String, StoreError> {
        if !self.settings().answerers.may_answer(&claimant.channel, &claimant.user_id) {
            return Ok("Sorry — only the owner of this assistant can answer that.".into());
        }
        Ok(match self.store().suggestion(id).await? {
            None => "This reminder no longer exists.".into(),
            Some(s) if s.state == SuggestionState::Superseded => "This reminder was cancelled.".into(),
            Some(_) => "This reminder has come due already; answer it where it was posted.".into(),
        })
    }

    /// A signal recorded by a script or at the shell: if the owner wrote it (their account,
    /// or trusted text without an author), what it asks is carried out. Returns what to
    /// tell them, in plain text, when it asked for something.
    pub async fn handle_owner_signal(
        &self,
        id: SignalId,
        signal: &crate::signal::NewSignal,
    ) -> Result<Option<String>, StoreError> {
        let by_owner = match &signal.actor {
            Some(actor) => actor.is_owner,
            None => signal.trust == crate::signal::Trust::Trusted,
        };
        if !by_owner {
            return Ok(None);
        }
        let now = self.store().clock().now();
        let conversation = signal.conversation.as_ref().map_or("", |c| c.id.as_str());
        let said = Said {
            signal: id,
            edits: None,
            source: signal.source.as_str(),
            conversation,
            text: &signal.text,
            at: signal.occurred_at.unwrap_or(now),
            by: signal.actor.as_ref().map_or("owner", |a| a.name.as_deref().unwrap_or(&a.id)),
        };
        let tz = self.settings().rules.timezone;
        Ok(match self.handle_request(&said).await? {
            Handled::Reminder { task, at, .. } => Some(format!("⏰ {}: {task}", reminder_when(at, now, tz))),
            Handled::AskWhen { task } => Some(format!("When should I remind you to {task}?")),
            Handled::Cancelled { task, .. } => Some(format!("Cancelled: {task}")),
            Handled::Answer(text) => Some(text),
            Handled::NotARequest => None,
        })
    }

    /// A reply for the owner to send, drafted by their model from the message it answers
    /// (and what is remembered about its author): `None` without a model, over budget, or
    /// when it fails — then the owner is asked for the words.
    pub async fn draft_reply(&self, s: &crate::suggestion::Suggestion) -> Option<String> {
        use crate::model::{Purpose, Request as Ask, Role, Turn, UNTRUSTED_RULE, untrusted};
        self.model()?;
        let mut context = String::new();
        for line in &s.evidence {
            if let Ok(Some(signal)) = self.store().get_signal(line.signal_id).await {
                let who = signal
                    .actor
                    .as_ref()
                    .map_or("someone".to_owned(), |a| a.name.clone().unwrap_or_else(|| a.id.clone()));
                context.push_str(&untrusted(signal.source.as_str(), &who, &signal.text));
                context.push('\n');
            }
        }
        let about = s.title.split(':').next().unwrap_or_default().trim_start_matches("Reply to ").to_owned();
        let memories =
            self.store().search_memories(&MemoryQuery { text: about, kind: None, limit: 3 }).await.unwrap_or_default();
        if !memories.is_empty() {
            context.push_str("What the owner told you to remember:\n");
            let lines: Vec<String> = memories.iter().map(|h| format!("- {}", h.memory.content)).collect();
            context.push_str(&untrusted("memory", "loopgate", &lines.join("\n")));
        }
        let ask = Ask {
            purpose: Purpose::Compose,
            system: format!(
                "Draft the owner's reply to the message below, in their voice: short, plain, no greeting line if \
                 the thread is informal, no signature. Answer with the reply's text only. {UNTRUSTED_RULE}"
            ),
            turns: vec![Turn { role: Role::User, content: context }],
            max_tokens: 300,
            json: false,
        };
        match self.ask(&ask).await {
            Ok(done) if !done.text.trim().is_empty() => Some(done.text.trim().chars().take(2000).collect()),
            Ok(_) => None,
            Err(error) => {
                tracing::info!(%error, suggestion = s.id, "no draft: the owner is asked for the words");
                None
            }
        }
    }

    /// Keeps a draft shown to the owner until they send or discard it.
    pub async fn keep_draft(&self, id: SuggestionId, text: &str) -> Result<(), StoreError> {
        self.store().set_channel_state(ASKED, &format!("draft:{id}"), text).await
    }

    /// The draft kept for suggestion `id`, taken (it is gone afterwards).
    pub async fn take_draft(&self, id: SuggestionId) -> Result<Option<String>, StoreError> {
        let key = format!("draft:{id}");
        let draft = self.store().channel_state(ASKED, &key).await?.filter(|d| !d.is_empty());
        if draft.is_some() {
            self.store().set_channel_state(ASKED, &key, "").await?;
        }
        Ok(draft)
    }

    async fn remember_for_owner(&self, what: &str) -> Result<String, StoreError> {
        let candidate = MemoryCandidate::from_owner(kind_of_note(what), what.to_owned());
        let kind = candidate.kind;
        Ok(match self.store().remember(candidate).await? {
            RememberOutcome::Rejected { reason } => format!("Not remembered: {reason}"),
            _ => format!("Remembered ({}): {what}", kind.as_str()),
        })
    }

    /// Forgets, for good, the one memory that holds every word asked about; with several,
    /// names them and forgets none (a deletion is never a guess); with none, says so. Asked
    /// twice, the second finds nothing left.
    async fn forget_for_owner(&self, what: &str) -> Result<String, StoreError> {
        let words: Vec<String> = when::words(what).into_iter().filter(|w| w.chars().count() >= 3).collect();
        let hits = self.store().search_memories(&MemoryQuery { text: what.to_owned(), kind: None, limit: 5 }).await?;
        let holds_all = |content: &str| {
            let content = content.to_lowercase();
            !words.is_empty() && words.iter().all(|w| content.contains(w.as_str()))
        };
        let matching: Vec<_> = hits.into_iter().filter(|h| holds_all(&h.memory.content)).collect();
        match matching.as_slice() {
            [] => Ok(format!("I remember nothing about “{what}”.")),
            [hit] => {
                self.store().forget_memory(hit.memory.id).await?;
                Ok(format!("Forgotten: {} (#{})", hit.memory.content, hit.memory.id))
            }
            several => {
                let mut text = "Which one? Say more of it (or forget it with `loopgate memory forget ID`):".to_owned();
                for hit in several {
                    text.push_str(&format!("\n• {} (#{})", hit.memory.content, hit.memory.id));
                }
                Ok(text)
            }
        }
    }

    async fn recall(&self, topic: &str) -> Result<String, StoreError> {
        let hits = self.store().search_memories(&MemoryQuery { text: topic.to_owned(), kind: None, limit: 5 }).await?;
        if hits.is_empty() {
            return Ok(format!("I know nothing about “{topic}” yet. Tell me: “remember that …”."));
        }
        let mut text = format!("About “{topic}”:");
        for hit in hits {
            text.push_str(&format!("\n• {} ({})", hit.memory.content, hit.memory.kind.as_str()));
        }
        Ok(text)
    }

    /// Open suggestions first, then reminders still to come, with their times.
    async fn whats_open(&self) -> Result<String, StoreError> {
        let tz = self.settings().rules.timezone;
        let store = self.store();
        let open = store.suggestions(&[SuggestionState::Active], 10).await?;
        let mut waiting = store.suggestions(&[SuggestionState::Scheduled, SuggestionState::Snoozed], 50).await?;
        waiting.sort_by_key(|s| s.snoozed_until.or(s.due_at));
        if open.is_empty() && waiting.is_empty() {
            return Ok("Nothing open, and no reminders to come.".into());
        }
        let mut text = String::new();
        if !open.is_empty() {
            text.push_str("Open now:");
            for s in &open {
                text.push_str(&format!("\n• {}", s.title));
            }
        }
        if !waiting.is_empty() {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str("Coming up:");
            for s in waiting.iter().take(10) {
                let when = s.snoozed_until.or(s.due_at).map(|t| detect::local(t, tz));
                text.push_str(&format!("\n• {} — {}", when.unwrap_or_default(), s.title));
            }
        }
        Ok(text)
    }
}

/// Whether acting on `s` would send a message with nothing in it ("Reply to Ana: …" as
/// raised): the owner's words (or a draft they approve) come first.
pub fn needs_words(s: &crate::suggestion::Suggestion) -> bool {
    let action = s.edited_action.as_ref().unwrap_or(&s.action);
    action.get("kind").and_then(|k| k.as_str()) == Some("message")
        && action.get("text").and_then(|t| t.as_str()).is_none_or(|t| t.trim().is_empty())
}

/// "Today 15:01 (Europe/Berlin)", "Tomorrow 09:00 (…)", "Fri 09:00 (…)", "Mon 7 Dec 09:00
/// (…)": when a reminder will come, as the owner says it.
pub fn reminder_when(at: DateTime<Utc>, now: DateTime<Utc>, timezone: Tz) -> String {
    let (local, today) = (at.with_timezone(&timezone), now.with_timezone(&timezone).date_naive());
    let day = match (local.date_naive() - today).num_days() {
        0 => "Today".to_owned(),
        1 => "Tomorrow".to_owned(),
        2..=6 => local.format("%a").to_string(),
        _ => local.format("%a %-d %b").to_string(),
    };
    format!("{day} {} ({})", local.format("%H:%M"), timezone.name())
}

/// Whether `s` is a reminder the owner asked for that is still waiting for its time (its
/// acknowledgement then offers other times and Cancel).
pub fn reminder_waiting(s: &crate::suggestion::Suggestion) -> bool {
    s.class == "reminder" && matches!(s.state, SuggestionState::Scheduled | SuggestionState::Snoozed)
}

/// The capabilities, for `/start`, `/help`, "help", and at most once a day unprompted.
pub fn capabilities() -> &'static str {
    "I'm loopgate. Things you can say:\n\
     • “remind me tomorrow at 9 to call the dentist” — a reminder, at its time\n\
     • “remember that I prefer mornings” — kept in my memory; “forget …” removes it\n\
     • “what's open” — suggestions waiting for you and reminders to come\n\
     • “what do you know about Ana” — what I remember\n\
     • “pause”, “stop”, “resume” — the kill switch\n\
     I also post suggestions with buttons: Act, Edit, Snooze, Dismiss."
}

fn asked_key(said: &Said<'_>) -> String {
    format!("ask:{}:{}", said.source, said.conversation)
}

/// The idea key of the reminder a message asked for: the reflector reads the same.
pub fn reminder_key(signal: SignalId) -> String {
    format!("reminder:{signal}")
}

/// A reminder's why-now: when the owner asked for it, in their zone.
fn reminded_at(at: DateTime<Utc>, tz: Tz) -> String {
    format!("you asked to be reminded at {}", detect::local(at, tz))
}

/// A reminder's title and the action that marks it done.
fn reminder_parts(task: &str) -> (String, serde_json::Value) {
    let title = bounded(&format!("Reminder: {}", bounded(task, MAX_TASK)), MAX_TITLE);
    (title, serde_json::json!({"kind": "note", "text": format!("Done: {task}")}))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at() -> DateTime<Utc> {
        // Sunday 29 November 2026, 15:00 in Berlin.
        Utc.with_ymd_and_hms(2026, 11, 29, 14, 0, 0).unwrap()
    }

    fn read(text: &str) -> Option<Request> {
        understand(text, at(), chrono_tz::Europe::Berlin)
    }

    #[test]
    fn what_the_owner_says_reads_as_the_request_meant() {
        let berlin = |h, m| chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 11, 30, h, m, 0).unwrap().to_utc();
        let cases: Vec<(&str, Option<Request>)> = vec![
            (
                "remind me in 1 minute to take the cake out of the oven",
                Some(Request::Remind {
                    task: "take the cake out of the oven".into(),
                    at: Some(at() + chrono::Duration::minutes(1)),
                }),
            ),
            (
                "remind me tomorrow at 9am to call the dentist",
                Some(Request::Remind { task: "call the dentist".into(), at: Some(berlin(9, 0)) }),
            ),
            ("remind me to call the plumber", Some(Request::Remind { task: "call the plumber".into(), at: None })),
            ("Remember that Ana prefers calls", Some(Request::Remember("Ana prefers calls".into()))),
            (
                "remember: the wifi password is on the fridge",
                Some(Request::Remember("the wifi password is on the fridge".into())),
            ),
            ("forget that Ana prefers calls", Some(Request::Forget("Ana prefers calls".into()))),
            ("What's open?", Some(Request::WhatsOpen)),
            ("what do I have", Some(Request::WhatsOpen)),
            ("what do you know about Ana?", Some(Request::Recall("ana".into()))),
            ("pause", Some(Request::Pause)),
            ("Stop.", Some(Request::Stop)),
            ("resume", Some(Request::Resume)),
            ("help", Some(Request::Help)),
            ("what can you do?", Some(Request::Help)),
            ("forget it", Some(Request::NeverMind)),
            ("never mind", Some(Request::NeverMind)),
            ("thanks!", None),
            ("ok", None),
            ("see you later", None),
            ("I'll stop by the shop", None),
            ("don't forget the milk", None),
        ];
        for (text, expected) in cases {
            assert_eq!(read(text), expected, "{text}");
        }
    }

    #[test]
    fn dont_let_me_forget_is_a_reminder_not_a_forget() {
        assert!(matches!(read("don't let me forget to water the plants tonight"), Some(Request::Remind { .. })));
    }

    #[test]
    fn small_talk_gets_a_fitting_line_not_one_paragraph_for_all() {
        let lines: Vec<&str> =
            ["thanks!", "ok", "see you later", "hello", "the train is late"].iter().map(|t| small_talk(t)).collect();
        assert_eq!(
            lines,
            ["You're welcome.", "👍", "See you.", "Hi! Ask me to remind you of something, or say “help”.", "Noted."]
        );
        assert!(lines.iter().all(|l| !l.contains('\n')));
    }

    #[test]
    fn notes_get_a_kind() {
        assert_eq!(kind_of_note("never book flights before 8"), MemoryKind::Constraint);
        assert_eq!(kind_of_note("watch the ACME invoice"), MemoryKind::WatchItem);
        assert_eq!(kind_of_note("I like window seats"), MemoryKind::Preference);
    }
}
