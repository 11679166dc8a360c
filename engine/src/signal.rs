//! The normalized inbound event every channel, the API, the CLI and schedules produce.
//!
//! A [`NewSignal`] is what an adapter hands to the ledger; a [`Signal`] is what the ledger
//! keeps: the same facts plus its id, fingerprint and merge counters.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest text one signal may carry. Longer mail bodies are truncated by their adapter;
/// the API rejects them, because silently cutting a caller's text would hide data loss.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Platform ids (Telegram update ids, Discord snowflakes, Message-IDs) fit easily.
pub const MAX_EXTERNAL_ID_BYTES: usize = 512;
const MAX_NAME_BYTES: usize = 256;
const MAX_ATTACHMENTS: usize = 64;

/// Why a signal was refused. Every variant is the caller's mistake and is shown to them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SignalError {
    SignalError::Invalid { field, reason: reason.into() }
}

/// A short lowercase identifier such as a source (`telegram`) or a kind (`message`).
/// Kept to `[a-z0-9_.-]` so it is safe in metric labels, file names and SQL indexes.
fn parse_token(field: &'static str, value: &str) -> Result<String, SignalError> {
    if value.is_empty() || value.len() > 64 {
        return Err(invalid(field, "must be 1 to 64 characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b)) {
        return Err(invalid(field, format!("{value:?} may only contain a-z, 0-9, '_', '.' and '-'")));
    }
    Ok(value.to_owned())
}

macro_rules! token_newtype {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, SignalError> {
                parse_token($field, value).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = SignalError;
            fn try_from(value: String) -> Result<Self, SignalError> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_newtype!(
    /// Where a signal came from: `telegram`, `discord`, `email`, `api`, `cli`, `schedule`, …
    Source,
    "source"
);
token_newtype!(
    /// What happened: `message`, `message_edit`, `email`, `button`, `command`, `schedule`, …
    /// Open-ended so scripts can post their own kinds; the [`Family`] is derived from it.
    SignalKind,
    "kind"
);

/// Signals of one family share a retention period: chat chatter fades fast, mail and
/// schedules matter longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Chat messages and their edits.
    Message,
    /// Inbound mail.
    Email,
    /// Button presses, slash commands, replies to prompts.
    Interaction,
    /// Schedule and workflow triggers.
    Schedule,
    /// Anything else, e.g. events scripts post through the API.
    Event,
}

impl Family {
    pub const ALL: [Family; 5] = [Family::Message, Family::Email, Family::Interaction, Family::Schedule, Family::Event];

    pub fn of(kind: &SignalKind) -> Family {
        match kind.as_str() {
            "message" | "message_edit" | "chat" | "dm" | "reply" => Family::Message,
            "email" | "mail" => Family::Email,
            "button" | "command" | "interaction" | "callback" | "modal" => Family::Interaction,
            "schedule" | "cron" | "timer" => Family::Schedule,
            _ => Family::Event,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Message => "message",
            Family::Email => "email",
            Family::Interaction => "interaction",
            Family::Schedule => "schedule",
            Family::Event => "event",
        }
    }

    pub fn parse(value: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.as_str() == value)
    }
}

/// How pressing a signal is. Ordered, so a merge keeps the highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    Low,
    #[default]
    Normal,
    High,
    Critical,
}

impl Urgency {
    /// Stored as a small integer so `max()` in SQL keeps the highest.
    pub fn rank(self) -> i16 {
        match self {
            Urgency::Low => 0,
            Urgency::Normal => 1,
            Urgency::High => 2,
            Urgency::Critical => 3,
        }
    }

    pub fn from_rank(rank: i16) -> Urgency {
        match rank {
            i16::MIN..=0 => Urgency::Low,
            1 => Urgency::Normal,
            2 => Urgency::High,
            _ => Urgency::Critical,
        }
    }
}

/// Whether a signal's text may ever be read as the owner's own words.
/// Text from chats, mail and the API is untrusted data: it is shown and reasoned about,
/// never obeyed without the policy's consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// Typed by the owner on the machine (CLI) or produced by loopgate itself (schedules).
    Trusted,
    #[default]
    Untrusted,
}

impl Trust {
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Trusted => "trusted",
            Trust::Untrusted => "untrusted",
        }
    }

    pub fn parse(value: &str) -> Trust {
        if value == "trusted" { Trust::Trusted } else { Trust::Untrusted }
    }
}

/// Who sent it, in the platform's own terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The platform's stable id: a Telegram user id, a Discord snowflake, an address.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Set by the ledger's caller from the `[owner]` identities, never by the sender.
    #[serde(default)]
    pub is_owner: bool,
}

/// Where it was said: a chat, a channel, a mail thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A Discord thread, a Telegram topic, a mail thread root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The platform id of the message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// What was attached. Only metadata: loopgate does not keep other people's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A signal as an adapter produces it, before the ledger has seen it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSignal {
    pub source: Source,
    pub kind: SignalKind,
    /// The platform's own id for this event. A second delivery with the same
    /// `(source, external_id)` is a duplicate, never a second signal.
    pub external_id: Option<String>,
    pub actor: Option<Actor>,
    pub conversation: Option<Conversation>,
    pub text: String,
    pub urgency: Urgency,
    /// When it happened on the platform; the ledger records when it arrived separately.
    pub occurred_at: Option<DateTime<Utc>>,
    pub attachments: Vec<Attachment>,
    /// The raw platform payload (or a reference to it), kept for audit and re-parsing.
    pub payload: Option<serde_json::Value>,
    pub trust: Trust,
}

impl NewSignal {
    /// A plain signal with everything optional left empty.
    pub fn new(source: Source, kind: SignalKind, text: impl Into<String>) -> NewSignal {
        NewSignal {
            source,
            kind,
            external_id: None,
            actor: None,
            conversation: None,
            text: text.into(),
            urgency: Urgency::Normal,
            occurred_at: None,
            attachments: Vec::new(),
            payload: None,
            trust: Trust::Untrusted,
        }
    }

    /// Checks the limits the ledger relies on. Adapters call it too, so a bad platform
    /// payload is refused at the edge with the same message the API gives.
    pub fn validate(&self) -> Result<(), SignalError> {
        if self.text.len() > MAX_TEXT_BYTES {
            return Err(invalid("text", format!("is longer than {MAX_TEXT_BYTES} bytes")));
        }
        if self.text.trim().is_empty() && self.attachments.is_empty() && self.payload.is_none() {
            return Err(invalid("text", "is empty (send text, attachments or a payload)"));
        }
        if let Some(id) = &self.external_id
            && (id.is_empty() || id.len() > MAX_EXTERNAL_ID_BYTES)
        {
            return Err(invalid("external_id", format!("must be 1 to {MAX_EXTERNAL_ID_BYTES} bytes")));
        }
        if let Some(actor) = &self.actor {
            check_name("actor.id", &actor.id, false)?;
            check_name("actor.name", actor.name.as_deref().unwrap_or(""), true)?;
        }
        if let Some(conv) = &self.conversation {
            check_name("conversation.id", &conv.id, false)?;
            for (field, value) in [
                ("conversation.title", &conv.title),
                ("conversation.thread_id", &conv.thread_id),
                ("conversation.reply_to", &conv.reply_to),
            ] {
                check_name(field, value.as_deref().unwrap_or(""), true)?;
            }
        }
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(invalid("attachments", format!("has more than {MAX_ATTACHMENTS} entries")));
        }
        for attachment in &self.attachments {
            check_name("attachments.name", &attachment.name, false)?;
        }
        Ok(())
    }

    /// What makes two signals "the same thing": same place, same sender, same words.
    /// Whitespace and case do not matter; timestamps and platform ids do not either, so a
    /// bot that repeats its alert every minute becomes one signal with a count.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        let mut field = |value: &str| {
            hasher.update((value.len() as u64).to_le_bytes());
            hasher.update(value.as_bytes());
        };
        field(self.source.as_str());
        field(self.kind.as_str());
        field(self.actor.as_ref().map_or("", |a| a.id.as_str()));
        let conversation = self.conversation.as_ref();
        field(conversation.map_or("", |c| c.id.as_str()));
        field(conversation.and_then(|c| c.thread_id.as_deref()).unwrap_or(""));
        field(&normalize_text(&self.text));
        for attachment in &self.attachments {
            field(&attachment.name);
        }
        if self.text.trim().is_empty() {
            // A payload-only event is identified by its payload.
            field(&self.payload.as_ref().map(|p| p.to_string()).unwrap_or_default());
        }
        let digest = hasher.finalize();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn family(&self) -> Family {
        Family::of(&self.kind)
    }
}

fn check_name(field: &'static str, value: &str, may_be_empty: bool) -> Result<(), SignalError> {
    if !may_be_empty && value.trim().is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(invalid(field, format!("is longer than {MAX_NAME_BYTES} bytes")));
    }
    Ok(())
}

/// Lowercases and folds runs of whitespace so "Deploy  failed\n" and "deploy failed" match.
pub fn normalize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// Identifies a stored signal. Small integers so they fit callback data and email commands.
pub type SignalId = i64;

/// A signal as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub id: SignalId,
    pub source: Source,
    pub kind: SignalKind,
    pub family: Family,
    pub external_id: Option<String>,
    pub actor: Option<Actor>,
    pub conversation: Option<Conversation>,
    pub text: String,
    pub urgency: Urgency,
    pub trust: Trust,
    pub occurred_at: DateTime<Utc>,
    pub attachments: Vec<Attachment>,
    pub payload: Option<serde_json::Value>,
    pub fingerprint: String,
    /// How many deliveries were merged into this signal.
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Rises on every insert or merge; the heartbeat reads what is above its last cursor.
    pub seq: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> NewSignal {
        NewSignal::new(Source::parse("telegram").unwrap(), SignalKind::parse("message").unwrap(), text)
    }

    #[test]
    fn tokens_reject_what_would_break_labels() {
        assert!(Source::parse("telegram").is_ok());
        assert!(Source::parse("my-script.v2").is_ok());
        for bad in ["", "Telegram", "tele gram", "a/b", &"x".repeat(65)] {
            assert!(Source::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn fingerprint_ignores_case_whitespace_and_ids() {
        let mut a = msg("Deploy  FAILED\n");
        a.external_id = Some("1".into());
        let mut b = msg("deploy failed");
        b.external_id = Some("2".into());
        b.occurred_at = Some(Utc::now());
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn fingerprint_separates_place_sender_and_words() {
        let base = msg("hello");
        let mut other_actor = base.clone();
        other_actor.actor = Some(Actor { id: "42".into(), name: None, is_owner: false });
        let mut other_chat = base.clone();
        other_chat.conversation = Some(Conversation { id: "c1".into(), title: None, thread_id: None, reply_to: None });
        let other_words = msg("hello there");
        let mut other_source = base.clone();
        other_source.source = Source::parse("discord").unwrap();
        let prints = [&base, &other_actor, &other_chat, &other_words, &other_source].map(|s| s.fingerprint());
        for i in 0..prints.len() {
            for j in i + 1..prints.len() {
                assert_ne!(prints[i], prints[j], "{i} and {j} collide");
            }
        }
    }

    #[test]
    fn field_boundaries_are_part_of_the_fingerprint() {
        // "ab" + "" must not equal "a" + "b".
        let mut a = msg("x");
        a.actor = Some(Actor { id: "ab".into(), name: None, is_owner: false });
        let mut b = msg("x");
        b.actor = Some(Actor { id: "a".into(), name: None, is_owner: false });
        b.conversation = Some(Conversation { id: "b".into(), title: None, thread_id: None, reply_to: None });
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn validation_names_the_field() {
        let empty = msg("   ");
        assert_eq!(empty.validate().unwrap_err().to_string(), "text is empty (send text, attachments or a payload)");
        let long = msg(&"x".repeat(MAX_TEXT_BYTES + 1));
        assert!(long.validate().unwrap_err().to_string().starts_with("text is longer"));
        let mut bad_id = msg("hi");
        bad_id.external_id = Some(String::new());
        assert!(bad_id.validate().unwrap_err().to_string().starts_with("external_id"));
        let mut no_actor = msg("hi");
        no_actor.actor = Some(Actor { id: " ".into(), name: None, is_owner: false });
        assert_eq!(no_actor.validate().unwrap_err().to_string(), "actor.id is empty");
    }

    #[test]
    fn families_follow_kinds() {
        let family = |k: &str| Family::of(&SignalKind::parse(k).unwrap());
        assert_eq!(family("message"), Family::Message);
        assert_eq!(family("email"), Family::Email);
        assert_eq!(family("button"), Family::Interaction);
        assert_eq!(family("schedule"), Family::Schedule);
        assert_eq!(family("deploy.finished"), Family::Event);
        for f in Family::ALL {
            assert_eq!(Family::parse(f.as_str()), Some(f));
        }
    }

    #[test]
    fn urgency_rank_round_trips_and_orders() {
        for u in [Urgency::Low, Urgency::Normal, Urgency::High, Urgency::Critical] {
            assert_eq!(Urgency::from_rank(u.rank()), u);
        }
        assert!(Urgency::Critical > Urgency::High && Urgency::High > Urgency::Normal);
    }
}
