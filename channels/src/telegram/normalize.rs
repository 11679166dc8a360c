//! Telegram updates into what loopgate understands: a pure function of the update and the
//! owner's identities, tested on recorded payloads.

use loopgate_engine::signal::{Actor, Attachment, Conversation, NewSignal, SignalKind, Source, Trust, Urgency};
use loopgate_engine::suggestion::Claimant;
use loopgate_policies::Identities;
use teloxide_core::types::{MaybeInaccessibleMessage, Message, Update, UpdateKind, User};

use super::CHANNEL;
pub use crate::chat::{Command, parse_command};

/// One update, understood.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A message or an edit: always a signal; maybe also a command or the answer to an
    /// Edit prompt.
    Message(ChatMessage),
    /// A button press.
    Callback(Callback),
    /// Anything else (a poll, a member joining, a kind teloxide does not know): skipped.
    Ignored { update_id: i64, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub update_id: i64,
    pub signal: NewSignal,
    pub chat_id: i64,
    pub message_id: i32,
    pub claimant: Option<Claimant>,
    pub command: Option<Command>,
    /// The message this one replies to, when it does.
    pub reply_to: Option<i32>,
    pub edited: bool,
    /// Forwarded from someone (or somewhere) else: their words, never the owner's request.
    pub forwarded: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    pub update_id: i64,
    pub id: String,
    pub data: String,
    pub claimant: Claimant,
    /// The message under the button, when Telegram still lets the bot see it.
    pub message: Option<(i64, i32)>,
    pub signal: NewSignal,
}

pub fn normalize(raw: &serde_json::Value, identities: &Identities) -> Inbound {
    let update_id = raw.get("update_id").and_then(serde_json::Value::as_i64).unwrap_or_default();
    // From text, not from the value: teloxide's update kinds only read from a string
    // (from a `Value` every update reads as an unknown kind).
    let update: Update = match serde_json::from_str(&raw.to_string()) {
        Ok(update) => update,
        Err(error) => return Inbound::Ignored { update_id, reason: format!("unreadable update: {error}") },
    };
    match update.kind {
        UpdateKind::Message(message) => from_message(update_id, &message, false, raw, identities),
        UpdateKind::EditedMessage(message) => from_message(update_id, &message, true, raw, identities),
        UpdateKind::CallbackQuery(query) => {
            let Some(data) = query.data.clone() else {
                return Inbound::Ignored { update_id, reason: "a callback without data (a game)".into() };
            };
            let message = match &query.message {
                Some(MaybeInaccessibleMessage::Regular(m)) => Some((m.chat.id.0, m.id.0)),
                Some(MaybeInaccessibleMessage::Inaccessible(m)) => Some((m.chat.id.0, m.message_id.0)),
                None => None,
            };
            let mut signal = NewSignal::new(source(), kind("button"), data.clone());
            signal.external_id = Some(format!("callback:{}", query.id.0));
            signal.actor = Some(actor(&query.from, identities));
            signal.conversation = message.map(|(chat, _)| Conversation {
                id: chat.to_string(),
                title: None,
                thread_id: None,
                reply_to: message.map(|(_, m)| m.to_string()),
            });
            signal.payload = Some(raw.clone());
            signal.trust = Trust::Untrusted;
            Inbound::Callback(Callback {
                update_id,
                id: query.id.0.clone(),
                data,
                claimant: claimant(&query.from),
                message,
                signal,
            })
        }
        UpdateKind::Error(_) => {
            Inbound::Ignored { update_id, reason: "an update kind this version does not know".into() }
        }
        _ => Inbound::Ignored { update_id, reason: "not a message or a button press".into() },
    }
}

/// A group's move to a supergroup, as the update stream tells it: `(old id, new id)`. The
/// old group gets a message with `migrate_to_chat_id`, the new supergroup one with
/// `migrate_from_chat_id`; either says the same.
pub fn migration(raw: &serde_json::Value) -> Option<(i64, i64)> {
    let message = raw.get("message")?;
    let chat = message.pointer("/chat/id")?.as_i64()?;
    if let Some(to) = message.get("migrate_to_chat_id").and_then(serde_json::Value::as_i64) {
        return Some((chat, to));
    }
    let from = message.get("migrate_from_chat_id").and_then(serde_json::Value::as_i64)?;
    Some((from, chat))
}

fn source() -> Source {
    Source::parse(CHANNEL).expect("a valid source")
}

fn kind(name: &str) -> SignalKind {
    SignalKind::parse(name).expect("a valid kind")
}

fn claimant(user: &User) -> Claimant {
    Claimant { channel: CHANNEL.into(), user_id: user.id.0.to_string(), name: Some(display_name(user)) }
}

fn display_name(user: &User) -> String {
    match &user.username {
        Some(username) if user.first_name.trim().is_empty() => format!("@{username}"),
        _ => user.full_name(),
    }
}

fn actor(user: &User, identities: &Identities) -> Actor {
    let id = user.id.0.to_string();
    Actor { is_owner: identities.is_owner(CHANNEL, &id), name: Some(display_name(user)), id }
}

/// "0:07", "1:02:03".
fn duration(seconds: u32) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}

fn file(name: &str, mime: Option<String>, size: u32) -> Attachment {
    Attachment { name: name.to_owned(), mime, size: Some(u64::from(size)) }
}

/// What a message holds besides text, as a readable stand-in for its text (used when it
/// has no text or caption) and its files' metadata (nothing is downloaded).
fn media(message: &Message) -> (Option<String>, Vec<Attachment>) {
    fn mime<M: ToString>(m: &Option<M>) -> Option<String> {
        m.as_ref().map(ToString::to_string)
    }
    if let Some(v) = message.voice() {
        let text = format!("[voice note {}]", duration(v.duration.seconds()));
        return (Some(text), vec![file("voice.ogg", mime(&v.mime_type), v.file.size)]);
    }
    if let Some(a) = message.audio() {
        let what = match (&a.performer, &a.title, &a.file_name) {
            (Some(p), Some(t), _) => format!("{p} – {t}"),
            (None, Some(t), _) => t.clone(),
            (_, _, Some(name)) => name.clone(),
            _ => "audio".into(),
        };
        let text = format!("[audio: {what} {}]", duration(a.duration.seconds()));
        let name = a.file_name.clone().unwrap_or_else(|| "audio".into());
        return (Some(text), vec![file(&name, mime(&a.mime_type), a.file.size)]);
    }
    if let Some(v) = message.video_note() {
        let text = format!("[video note {}]", duration(v.duration.seconds()));
        return (Some(text), vec![file("video_note.mp4", Some("video/mp4".into()), v.file.size)]);
    }
    if let Some(v) = message.video() {
        let text = format!("[video {}]", duration(v.duration.seconds()));
        let name = v.file_name.clone().unwrap_or_else(|| "video.mp4".into());
        return (Some(text), vec![file(&name, mime(&v.mime_type), v.file.size)]);
    }
    if let Some(a) = message.animation() {
        let name = a.file_name.clone().unwrap_or_else(|| "animation.mp4".into());
        return (Some("[GIF]".into()), vec![file(&name, mime(&a.mime_type), a.file.size)]);
    }
    if let Some(sticker) = message.sticker() {
        let text = match &sticker.emoji {
            Some(emoji) => format!("[sticker {emoji}]"),
            None => "[sticker]".into(),
        };
        return (Some(text), vec![file("sticker.webp", None, sticker.file.size)]);
    }
    if let Some(venue) = message.venue() {
        return (Some(format!("[place: {}, {}]", venue.title, venue.address)), Vec::new());
    }
    if let Some(l) = message.location() {
        return (Some(format!("[location {:.5}, {:.5}]", l.latitude, l.longitude)), Vec::new());
    }
    if let Some(c) = message.contact() {
        let name = [Some(c.first_name.as_str()), c.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>();
        return (Some(format!("[contact: {} {}]", name.join(" "), c.phone_number)), Vec::new());
    }
    if let Some(poll) = message.poll() {
        let options: Vec<&str> = poll.options.iter().map(|o| o.text.as_str()).collect();
        return (Some(format!("[poll: {} — {}]", poll.question, options.join(" / "))), Vec::new());
    }
    if let Some(dice) = message.dice() {
        let emoji = serde_json::to_value(dice.emoji).ok().and_then(|e| e.as_str().map(str::to_owned));
        return (Some(format!("[{} {}]", emoji.unwrap_or_else(|| "dice".into()), dice.value)), Vec::new());
    }
    (None, Vec::new())
}

fn from_message(
    update_id: i64,
    message: &Message,
    edited: bool,
    raw: &serde_json::Value,
    identities: &Identities,
) -> Inbound {
    let text = message.text().or_else(|| message.caption()).unwrap_or_default().to_owned();
    let mut attachments = Vec::new();
    if let Some(document) = message.document() {
        attachments.push(Attachment {
            name: document.file_name.clone().unwrap_or_else(|| "document".into()),
            mime: document.mime_type.as_ref().map(ToString::to_string),
            size: Some(u64::from(document.file.size)),
        });
    }
    if let Some(photo) = message.photo().and_then(|sizes| sizes.last()) {
        attachments.push(Attachment {
            name: "photo".into(),
            mime: Some("image/jpeg".into()),
            size: Some(u64::from(photo.file.size)),
        });
    }
    let (stand_in, media) = media(message);
    attachments.extend(media);
    let text = if text.trim().is_empty() { stand_in.unwrap_or_default() } else { text };
    if text.trim().is_empty() && attachments.is_empty() {
        return Inbound::Ignored { update_id, reason: "a service message (a join, a pin, a title change)".into() };
    }
    let command = (!edited).then(|| parse_command(&text)).flatten();
    let signal_kind = match (edited, &command) {
        (true, _) => "message_edit",
        (false, Some(_)) => "command",
        (false, None) => "message",
    };
    let chat = &message.chat;
    let mut signal = NewSignal::new(source(), kind(signal_kind), text);
    // The platform's own id: a message is `chat:message`; each edit of it is its own event.
    signal.external_id = Some(match message.edit_date() {
        Some(at) if edited => format!("{}:{}:edit:{}", chat.id.0, message.id.0, at.timestamp()),
        _ => format!("{}:{}", chat.id.0, message.id.0),
    });
    signal.actor = message.from.as_ref().map(|user| actor(user, identities));
    let title = chat
        .title()
        .map(str::to_owned)
        .or_else(|| chat.is_private().then(|| message.from.as_ref().map(display_name)).flatten());
    let reply_to = message.reply_to_message().map(|m| m.id.0);
    signal.conversation = Some(Conversation {
        id: chat.id.0.to_string(),
        title,
        thread_id: message.thread_id.map(|t| t.0.0.to_string()),
        reply_to: reply_to.map(|m| m.to_string()),
    });
    signal.occurred_at = Some(message.date);
    signal.attachments = attachments;
    signal.payload = Some(raw.clone());
    signal.urgency = Urgency::Normal;
    signal.trust = Trust::Untrusted;
    Inbound::Message(ChatMessage {
        update_id,
        signal,
        chat_id: chat.id.0,
        message_id: message.id.0,
        claimant: message.from.as_ref().map(claimant),
        command,
        reply_to,
        edited,
        forwarded: message.forward_origin().is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Identities {
        Identities::new(["111".to_owned()], Vec::<String>::new(), Vec::<String>::new())
    }

    fn recorded(name: &str) -> Inbound {
        let text = match name {
            "private_message" => include_str!("recorded/private_message.json"),
            "group_reply_in_thread" => include_str!("recorded/group_reply_in_thread.json"),
            "edited_message" => include_str!("recorded/edited_message.json"),
            "callback_query" => include_str!("recorded/callback_query.json"),
            "document_with_caption" => include_str!("recorded/document_with_caption.json"),
            "command_with_botname" => include_str!("recorded/command_with_botname.json"),
            "poll" => include_str!("recorded/poll.json"),
            "sticker" => include_str!("recorded/sticker.json"),
            "migrate_to_chat_id" => include_str!("recorded/migrate_to_chat_id.json"),
            "migrate_from_chat_id" => include_str!("recorded/migrate_from_chat_id.json"),
            "future_kind" => include_str!("recorded/future_kind.json"),
            other => panic!("no recording {other}"),
        };
        normalize(&serde_json::from_str(text).unwrap(), &owner())
    }

    fn message(name: &str) -> ChatMessage {
        match recorded(name) {
            Inbound::Message(m) => m,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn an_owners_private_message_is_a_signal_marked_as_theirs() {
        let m = message("private_message");
        let s = &m.signal;
        assert_eq!((s.source.as_str(), s.kind.as_str()), ("telegram", "message"));
        assert_eq!(s.external_id.as_deref(), Some("111:42"));
        assert_eq!(s.text, "Remind me to send the *draft* <today> & check [notes]");
        let actor = s.actor.as_ref().unwrap();
        assert_eq!((actor.id.as_str(), actor.name.as_deref(), actor.is_owner), ("111", Some("Ana Lima"), true));
        let conversation = s.conversation.as_ref().unwrap();
        assert_eq!((conversation.id.as_str(), conversation.title.as_deref()), ("111", Some("Ana Lima")));
        assert_eq!(s.occurred_at.unwrap().timestamp(), 1_763_800_000);
        assert_eq!(s.trust, Trust::Untrusted, "chat text is data, never an instruction");
        assert!(s.payload.is_some() && m.command.is_none() && !m.edited);
        assert_eq!(m.claimant.unwrap().user_id, "111");
    }

    #[test]
    fn a_strangers_group_reply_keeps_chat_thread_and_reply() {
        let m = message("group_reply_in_thread");
        let s = &m.signal;
        assert!(!s.actor.as_ref().unwrap().is_owner);
        let c = s.conversation.as_ref().unwrap();
        assert_eq!(c.id, "-1001234567890");
        assert_eq!(c.title.as_deref(), Some("Launch team"));
        assert_eq!(c.thread_id.as_deref(), Some("6990"));
        assert_eq!(c.reply_to.as_deref(), Some("6995"));
        assert_eq!(m.reply_to, Some(6995));
        assert_eq!(s.external_id.as_deref(), Some("-1001234567890:7001"));
    }

    #[test]
    fn each_edit_is_its_own_event() {
        let m = message("edited_message");
        assert!(m.edited);
        assert_eq!(m.signal.kind.as_str(), "message_edit");
        assert_eq!(m.signal.external_id.as_deref(), Some("111:42:edit:1763800300"));
        assert_eq!(m.signal.text, "Remind me to send the final draft");
    }

    #[test]
    fn a_button_press_carries_who_what_and_where() {
        let inbound = recorded("callback_query");
        let Inbound::Callback(c) = inbound else { panic!("{inbound:?}") };
        assert_eq!(c.id, "4382bfdwdsb323b2d9");
        assert_eq!(c.data, "s:12:act");
        assert_eq!(c.message, Some((111, 900)));
        assert_eq!(c.claimant.user_id, "111");
        assert_eq!(c.signal.kind.as_str(), "button");
        assert_eq!(c.signal.external_id.as_deref(), Some("callback:4382bfdwdsb323b2d9"));
    }

    #[test]
    fn files_are_named_and_captions_are_the_text() {
        let m = message("document_with_caption");
        assert_eq!(m.signal.text, "Invoice for November");
        let a = &m.signal.attachments[0];
        assert_eq!(
            (a.name.as_str(), a.mime.as_deref(), a.size),
            ("invoice-2026-11.pdf", Some("application/pdf"), Some(48213))
        );
    }

    #[test]
    fn commands_lose_their_bot_name_and_case() {
        let m = message("command_with_botname");
        assert_eq!(m.signal.kind.as_str(), "command");
        assert_eq!(m.command, Some(Command { name: "memory".into(), argument: "invoices ACME".into() }));
        assert_eq!(
            parse_command("/remember  buy milk "),
            Some(Command { name: "remember".into(), argument: "buy milk".into() })
        );
        assert_eq!(parse_command("not /a command"), None);
        assert_eq!(parse_command("/"), None);
        assert_eq!(parse_command("/rm -rf"), Some(Command { name: "rm".into(), argument: "-rf".into() }));
        assert_eq!(parse_command("/../etc"), None);
    }

    fn message_of(raw: &serde_json::Value) -> ChatMessage {
        match normalize(raw, &owner()) {
            Inbound::Message(m) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn every_message_is_a_signal_whatever_it_holds() {
        let voice: serde_json::Value = serde_json::from_str(include_str!("recorded/voice_note.json")).unwrap();
        let m = message_of(&voice);
        assert_eq!(m.signal.text, "[voice note 0:07]");
        assert_eq!(m.signal.attachments[0].mime.as_deref(), Some("audio/ogg"));
        assert_eq!(m.signal.attachments[0].size, Some(20480));
        assert!(m.signal.actor.as_ref().unwrap().is_owner);

        let all: Vec<serde_json::Value> = serde_json::from_str(include_str!("recorded/media_messages.json")).unwrap();
        let texts: Vec<String> = all.iter().map(|raw| message_of(raw).signal.text).collect();
        assert_eq!(
            texts,
            [
                "[audio: Nina Simone – Feeling Good 3:25]",
                "[video note 0:12]",
                "[location 52.52001, 13.40495]",
                "[contact: Ben Okafor +4930123456]",
                "[poll: Lunch at noon? — Yes / No]",
                // A caption is the text; the file is still an attachment.
                "the demo from today",
            ]
        );
        assert_eq!(message_of(&all[5]).signal.attachments[0].name, "demo.mp4");
        let sticker = match recorded("sticker") {
            Inbound::Message(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(sticker.signal.text, "[sticker 👍]");
    }

    #[test]
    fn everything_else_is_skipped_with_its_id() {
        for name in ["poll", "future_kind"] {
            match recorded(name) {
                Inbound::Ignored { update_id, .. } => assert!(update_id > 815_300_000, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        let garbage = normalize(&serde_json::json!({"update_id": 5, "message": {"text": 3}}), &owner());
        assert!(matches!(garbage, Inbound::Ignored { update_id: 5, .. }), "{garbage:?}");
    }

    #[test]
    fn a_group_upgraded_to_a_supergroup_says_where_it_went() {
        for name in ["migrate_to_chat_id", "migrate_from_chat_id"] {
            let raw: serde_json::Value = serde_json::from_str(match name {
                "migrate_to_chat_id" => include_str!("recorded/migrate_to_chat_id.json"),
                _ => include_str!("recorded/migrate_from_chat_id.json"),
            })
            .unwrap();
            assert_eq!(migration(&raw), Some((-4004001, -1001234567890)), "{name}");
            // A service message, not something anyone wrote: no signal, no error.
            assert!(matches!(recorded(name), Inbound::Ignored { .. } | Inbound::Message(_)), "{name}");
        }
        let plain: serde_json::Value = serde_json::from_str(include_str!("recorded/private_message.json")).unwrap();
        assert_eq!(migration(&plain), None);
    }
}
