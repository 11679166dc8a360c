//! Discord messages and interactions into what loopgate understands: pure functions of
//! the payload (as serenity's model reads it) and the owner's identities, tested on
//! recorded payloads.

use loopgate_engine::signal::{Actor, Attachment, Conversation, NewSignal, SignalKind, Source, Trust, Urgency};
use loopgate_engine::suggestion::Claimant;
use loopgate_policies::Identities;
use serenity::model::application::{ActionRowComponent, CommandDataOptionValue, Interaction};
use serenity::model::channel::Message;
use serenity::model::user::User;

use super::CHANNEL;
use crate::chat::{Command, parse_command};

/// Where a message was written, as far as loopgate listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A direct message to the bot.
    Direct,
    /// One of the configured `channel_ids`.
    Channel,
    /// A thread under one of the configured channels.
    Thread { parent: u64 },
    /// Anywhere else: not listened to.
    Elsewhere,
    /// A guild channel Discord would not describe (the lookup kept failing): the message
    /// is recorded with what is known rather than lost, and answers nothing.
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub signal: NewSignal,
    pub channel_id: u64,
    pub message_id: u64,
    pub claimant: Claimant,
    /// A `/command` typed as text (in a DM, where the client may not offer slash commands).
    pub command: Option<Command>,
    pub place: Place,
}

/// A readable text for a message without one: a voice message with its length, a
/// sticker by name, files by name.
fn stand_in(message: &Message) -> Option<String> {
    if let Some(voice) = message.attachments.iter().find_map(|a| a.duration_secs) {
        let seconds = voice.round() as u64;
        return Some(format!("[voice message {}:{:02}]", seconds / 60, seconds % 60));
    }
    if let Some(sticker) = message.sticker_items.first() {
        return Some(format!("[sticker {}]", sticker.name));
    }
    let names: Vec<&str> = message.attachments.iter().map(|a| a.filename.as_str()).collect();
    (!names.is_empty()).then(|| format!("[file: {}]", names.join(", ")))
}

/// Why a message is not a signal, or the signal it is.
pub fn normalize_message(
    message: &Message,
    place: Place,
    bot_id: Option<u64>,
    identities: &Identities,
) -> Result<ChatMessage, &'static str> {
    if place == Place::Elsewhere {
        return Err("a channel loopgate does not listen in");
    }
    // Our own posts, and other bots', would otherwise feed back into the loop.
    if message.author.bot || Some(message.author.id.get()) == bot_id {
        return Err("written by a bot");
    }
    let text = match message.content.trim() {
        "" => stand_in(message).unwrap_or_default(),
        _ => message.content.clone(),
    };
    if text.trim().is_empty() && message.attachments.is_empty() {
        return Err("neither text, a file nor a sticker (a join, a pin)");
    }
    let command = if place == Place::Direct { parse_command(&text) } else { None };
    let mut signal = NewSignal::new(source(), kind(if command.is_some() { "command" } else { "message" }), text);
    // A message id is unique across Discord: a redelivery after a resume is a duplicate.
    signal.external_id = Some(message.id.get().to_string());
    signal.actor = Some(actor(&message.author, identities));
    let channel = message.channel_id.get();
    let (conversation, thread) = match place {
        Place::Thread { parent } => (parent, Some(channel)),
        _ => (channel, None),
    };
    signal.conversation = Some(Conversation {
        id: conversation.to_string(),
        title: (place == Place::Direct).then(|| display_name(&message.author)),
        thread_id: thread.map(|t| t.to_string()),
        reply_to: message.message_reference.as_ref().and_then(|r| r.message_id).map(|m| m.get().to_string()),
    });
    signal.occurred_at = Some(*message.timestamp);
    signal.attachments = message
        .attachments
        .iter()
        .map(|a| Attachment { name: a.filename.clone(), mime: a.content_type.clone(), size: Some(u64::from(a.size)) })
        .collect();
    signal.payload = serde_json::to_value(message).ok();
    if command.as_ref().is_some_and(|c| c.pairing_code().is_some()) {
        // A code is a credential: neither the text nor the raw message keeps it.
        signal.text = format!("/pair {}", crate::chat::PAIRING_REDACTED);
        signal.payload = None;
    }
    signal.urgency = Urgency::Normal;
    signal.trust = Trust::Untrusted;
    Ok(ChatMessage {
        signal,
        channel_id: channel,
        message_id: message.id.get(),
        claimant: claimant(&message.author),
        command,
        place,
    })
}

/// One interaction, understood.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// Discord checking the HTTP endpoint.
    Ping,
    Interacted(Box<Interacted>),
    /// Autocomplete and kinds loopgate offers nothing for.
    Ignored(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Interacted {
    pub id: u64,
    pub token: String,
    pub claimant: Claimant,
    /// The message the component sits on: `(channel, message)`.
    pub message: Option<(u64, u64)>,
    pub what: What,
    pub signal: NewSignal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A button: its `custom_id`.
    Press(String),
    /// A modal sent back: its `custom_id` and the text typed.
    Submit { custom_id: String, text: String },
    /// A slash command with its one argument, if any.
    Command(Command),
}

pub fn normalize_interaction(interaction: &Interaction, identities: &Identities) -> Inbound {
    let (id, token, user, channel, message, what) = match interaction {
        Interaction::Ping(_) => return Inbound::Ping,
        Interaction::Autocomplete(_) => return Inbound::Ignored("autocomplete"),
        Interaction::Component(i) => (
            i.id,
            &i.token,
            &i.user,
            i.channel_id,
            Some((i.message.channel_id.get(), i.message.id.get())),
            What::Press(i.data.custom_id.clone()),
        ),
        Interaction::Modal(i) => {
            let text = i
                .data
                .components
                .iter()
                .flat_map(|row| &row.components)
                .find_map(|c| match c {
                    ActionRowComponent::InputText(input) => input.value.clone(),
                    _ => None,
                })
                .unwrap_or_default();
            let message = i.message.as_ref().map(|m| (m.channel_id.get(), m.id.get()));
            (i.id, &i.token, &i.user, i.channel_id, message, What::Submit { custom_id: i.data.custom_id.clone(), text })
        }
        Interaction::Command(i) => {
            let argument = i
                .data
                .options
                .iter()
                .find_map(|o| match &o.value {
                    CommandDataOptionValue::String(text) => Some(text.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            let command = Command { name: i.data.name.to_ascii_lowercase(), argument: argument.trim().to_owned() };
            (i.id, &i.token, &i.user, i.channel_id, None, What::Command(command))
        }
        _ => return Inbound::Ignored("an interaction kind this version does not know"),
    };
    let (kind_name, text) = match &what {
        What::Press(custom_id) => ("button", custom_id.clone()),
        What::Submit { custom_id, text } => ("button", format!("{custom_id}: {text}")),
        What::Command(c) if c.argument.is_empty() => ("command", format!("/{}", c.name)),
        What::Command(c) if c.pairing_code().is_some() => {
            ("command", format!("/{} {}", c.name, crate::chat::PAIRING_REDACTED))
        }
        What::Command(c) => ("command", format!("/{} {}", c.name, c.argument)),
    };
    let mut signal = NewSignal::new(source(), kind(kind_name), text);
    signal.external_id = Some(format!("interaction:{}", id.get()));
    signal.actor = Some(actor(user, identities));
    signal.conversation = Some(Conversation {
        id: channel.get().to_string(),
        title: None,
        thread_id: None,
        reply_to: message.map(|(_, m)| m.to_string()),
    });
    signal.payload = match &what {
        What::Command(c) if c.pairing_code().is_some() => None,
        _ => serde_json::to_value(interaction).ok(),
    };
    signal.trust = Trust::Untrusted;
    Inbound::Interacted(Box::new(Interacted {
        id: id.get(),
        token: token.clone(),
        claimant: claimant(user),
        message,
        what,
        signal,
    }))
}

/// An edit of a direct message, as the gateway tells it (`MESSAGE_UPDATE`).
#[derive(Debug, Clone, PartialEq)]
pub struct Edited {
    pub signal: NewSignal,
    pub channel_id: u64,
    pub message_id: u64,
}

/// The owner's edit of a direct message to loopgate: a signal of its own (`message_edit`,
/// one per edit), so a request in it can be followed. Anything else — an edit in a
/// guild, someone else's, an update that carries no new text (an embed unfurled) — is not.
pub fn normalize_edit(
    event: &serenity::model::event::MessageUpdateEvent,
    identities: &Identities,
) -> Result<Edited, &'static str> {
    if event.guild_id.is_some() {
        return Err("an edit in a guild channel");
    }
    let (Some(author), Some(text), Some(edited)) = (&event.author, &event.content, event.edited_timestamp) else {
        return Err("an update without new text");
    };
    let actor = actor(author, identities);
    if !actor.is_owner {
        return Err("someone else's edit");
    }
    let mut signal = NewSignal::new(source(), kind("message_edit"), text.clone());
    signal.external_id = Some(format!("{}:edit:{}", event.id.get(), edited.unix_timestamp()));
    signal.actor = Some(actor);
    signal.conversation = Some(Conversation {
        id: event.channel_id.get().to_string(),
        title: Some(display_name(author)),
        thread_id: None,
        reply_to: None,
    });
    signal.occurred_at = Some(*edited);
    signal.trust = Trust::Untrusted;
    Ok(Edited { signal, channel_id: event.channel_id.get(), message_id: event.id.get() })
}

fn source() -> Source {
    Source::parse(CHANNEL).expect("a valid source")
}

fn kind(name: &str) -> SignalKind {
    SignalKind::parse(name).expect("a valid kind")
}

fn display_name(user: &User) -> String {
    user.global_name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| user.name.clone())
}

fn claimant(user: &User) -> Claimant {
    Claimant { channel: CHANNEL.into(), user_id: user.id.get().to_string(), name: Some(display_name(user)) }
}

fn actor(user: &User, identities: &Identities) -> Actor {
    let id = user.id.get().to_string();
    Actor { is_owner: identities.is_owner(CHANNEL, &id), name: Some(display_name(user)), id }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "80351110224678912";

    fn identities() -> Identities {
        Identities::new(Vec::<String>::new(), [OWNER.to_owned()], Vec::<String>::new())
    }

    fn message(name: &str) -> Message {
        let path = format!("{}/src/discord/recorded/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn interaction(name: &str) -> Interaction {
        let path = format!("{}/src/discord/recorded/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn the_owners_edit_of_a_direct_message_is_a_signal_of_its_own() {
        let path = format!("{}/src/discord/recorded/message_update.json", env!("CARGO_MANIFEST_DIR"));
        let event: serenity::model::event::MessageUpdateEvent =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let edited = normalize_edit(&event, &identities()).unwrap();
        assert_eq!(edited.message_id, 1190000000000000001);
        assert_eq!(edited.signal.kind.as_str(), "message_edit");
        assert_eq!(edited.signal.text, "Remind me to send the ACME invoice on Friday at 10");
        assert!(edited.signal.external_id.as_deref().unwrap().starts_with("1190000000000000001:edit:"));
        let mut stranger = event.clone();
        stranger.author.as_mut().unwrap().id = serenity::model::id::UserId::new(5);
        assert!(normalize_edit(&stranger, &identities()).is_err());
        let mut unfurled = event;
        unfurled.content = None;
        assert!(normalize_edit(&unfurled, &identities()).is_err());
    }

    #[test]
    fn a_voice_message_is_a_signal_with_its_length_and_file() {
        let m = normalize_message(&message("voice_message"), Place::Direct, Some(1), &identities()).unwrap();
        assert_eq!(m.signal.text, "[voice message 0:07]");
        assert_eq!(m.signal.attachments[0].name, "voice-message.ogg");
        assert_eq!(m.signal.attachments[0].mime.as_deref(), Some("audio/ogg"));
    }

    #[test]
    fn a_direct_message_from_the_owner_is_a_signal_with_its_author() {
        let m = normalize_message(&message("dm_message"), Place::Direct, Some(1), &identities()).unwrap();
        assert_eq!(m.signal.external_id.as_deref(), Some("1190000000000000001"));
        assert_eq!(m.signal.text, "Remind me to send the **ACME** invoice <@&1> tomorrow");
        let actor = m.signal.actor.as_ref().unwrap();
        assert!(actor.is_owner);
        assert_eq!(actor.name.as_deref(), Some("Nelly"));
        assert_eq!(m.signal.trust, Trust::Untrusted);
        assert_eq!(m.signal.kind.as_str(), "message");
        assert_eq!(m.claimant.user_id, OWNER);
        assert_eq!(m.command, None);
        assert!(m.signal.payload.is_some());
    }

    #[test]
    fn a_message_whose_place_discord_would_not_tell_is_still_recorded() {
        let m = normalize_message(&message("thread_reply"), Place::Unknown, Some(1), &identities()).unwrap();
        let conversation = m.signal.conversation.as_ref().unwrap();
        // What is known: the channel it was written in; no command is read from it.
        assert_eq!(conversation.id, "1150000000000000000");
        assert_eq!(m.command, None);
        assert_eq!(m.signal.external_id.as_deref(), Some(m.message_id.to_string().as_str()));
    }

    #[test]
    fn a_reply_in_a_thread_keeps_its_channel_thread_and_reference() {
        let parent = 1100000000000000000;
        let m = normalize_message(&message("thread_reply"), Place::Thread { parent }, Some(1), &identities()).unwrap();
        let conversation = m.signal.conversation.as_ref().unwrap();
        assert_eq!(conversation.id, parent.to_string());
        assert_eq!(conversation.thread_id.as_deref(), Some("1150000000000000000"));
        assert_eq!(conversation.reply_to.as_deref(), Some("1189999999999999999"));
        assert!(!m.signal.actor.as_ref().unwrap().is_owner);
        assert_eq!(m.signal.attachments.len(), 1);
        assert_eq!(m.signal.attachments[0].name, "q3-report.pdf");
        assert_eq!(m.signal.attachments[0].size, Some(48213));
    }

    #[test]
    fn bots_unlistened_channels_and_empty_messages_are_not_signals() {
        let ids = identities();
        let bot = message("bot_message");
        assert!(normalize_message(&bot, Place::Channel, Some(1), &ids).is_err());
        let dm = message("dm_message");
        assert!(normalize_message(&dm, Place::Elsewhere, Some(1), &ids).is_err());
        // Our own bot's id, even without the bot flag.
        let own_id = dm.author.id.get();
        assert!(normalize_message(&dm, Place::Direct, Some(own_id), &ids).is_err());
        let mut empty = dm.clone();
        empty.content = "  ".into();
        assert!(normalize_message(&empty, Place::Direct, Some(1), &ids).is_err());
    }

    #[test]
    fn a_typed_command_in_a_dm_is_a_command() {
        let mut m = message("dm_message");
        m.content = "/memory acme".into();
        let dm = normalize_message(&m, Place::Direct, None, &identities()).unwrap();
        assert_eq!(dm.command, Some(Command { name: "memory".into(), argument: "acme".into() }));
        assert_eq!(dm.signal.kind.as_str(), "command");
        // In a channel, a slash is just text.
        let channel = normalize_message(&m, Place::Channel, None, &identities()).unwrap();
        assert_eq!(channel.command, None);
    }

    #[test]
    fn a_button_press_names_its_button_presser_and_message() {
        let Inbound::Interacted(i) = normalize_interaction(&interaction("button_press"), &identities()) else {
            panic!("not an interaction")
        };
        assert_eq!(i.what, What::Press("s:7:dismiss".into()));
        assert_eq!(i.claimant.user_id, OWNER);
        assert_eq!(i.message, Some((1120000000000000000, 1188888888888888888)));
        assert_eq!(i.signal.external_id.as_deref(), Some("interaction:1200000000000000001"));
        assert_eq!(i.token, "aW50ZXJhY3Rpb246MTIwMDAwMDAwMDAwMDAwMDAwMQ");
    }

    #[test]
    fn a_modal_submission_carries_the_typed_text() {
        let Inbound::Interacted(i) = normalize_interaction(&interaction("modal_submit"), &identities()) else {
            panic!("not an interaction")
        };
        assert_eq!(i.what, What::Submit { custom_id: "s:7:edit".into(), text: "Send it on Friday instead".into() });
        assert_eq!(i.message, Some((1120000000000000000, 1188888888888888888)));
    }

    #[test]
    fn a_slash_command_carries_its_argument() {
        let Inbound::Interacted(i) = normalize_interaction(&interaction("slash_memory"), &identities()) else {
            panic!("not an interaction")
        };
        assert_eq!(i.what, What::Command(Command { name: "memory".into(), argument: "acme invoices".into() }));
        assert_eq!(i.signal.kind.as_str(), "command");
        assert_eq!(normalize_interaction(&interaction("ping"), &identities()), Inbound::Ping);
    }
}
