//! What loopgate shows on Discord: suggestions and approvals as messages with button
//! components, their outcome once decided, interaction responses, and the slash commands.
//!
//! Everything here is pure. Text from channels is escaped for Discord's markdown, and every
//! message carries `allowed_mentions: {parse: []}`, so nothing quoted can ping anyone.

use chrono_tz::Tz;
use loopgate_engine::actions::{Approval, ApprovalDelivery, ApprovalState};
use loopgate_engine::outbox::NewOutbound;
use loopgate_engine::suggestion::{Delivery, DeliveryKind, Suggestion};
use serde_json::{Value, json};

use super::CHANNEL;
use crate::channel::approval_post_key;
use crate::chat::{self, Button, Markup, Preset, describe_action};
use crate::text::{self, Measure};

/// Discord's limits: a message's content (raw characters, markdown and escapes included)
/// and a component's `custom_id`.
pub const MAX_CONTENT: usize = 2000;
pub const MAX_CUSTOM_ID: usize = 100;
/// Discord's limits on a text input's value and placeholder, and a modal's title.
const MAX_INPUT: usize = 4000;
const MAX_PLACEHOLDER: usize = 100;
const MAX_TITLE: usize = 45;

const PRIMARY: u8 = 1;
const SECONDARY: u8 = 2;
const SUCCESS: u8 = 3;
const DANGER: u8 = 4;
/// Interaction response flag: only the presser sees it.
const EPHEMERAL: u64 = 1 << 6;

fn button(label: &str, style: u8, b: Button) -> Value {
    let custom_id = b.data();
    debug_assert!(custom_id.chars().count() <= MAX_CUSTOM_ID, "custom_id over Discord's limit: {custom_id}");
    json!({"type": 2, "style": style, "label": label, "custom_id": custom_id})
}

fn row(buttons: Vec<Value>) -> Value {
    json!({"type": 1, "components": buttons})
}

pub fn suggestion_buttons(id: i64) -> Vec<Value> {
    vec![row(vec![
        button("Act", PRIMARY, Button::Act(id)),
        button("Edit", SECONDARY, Button::Edit(id)),
        button("Snooze", SECONDARY, Button::SnoozeMenu(id)),
        button("Dismiss", DANGER, Button::Dismiss(id)),
    ])]
}

pub fn snooze_buttons(id: i64) -> Vec<Value> {
    let mut presets: Vec<Value> =
        Preset::ALL.into_iter().map(|p| button(p.label(), SECONDARY, Button::Snooze(id, p))).collect();
    presets.push(button("« Back", SECONDARY, Button::Back(id)));
    vec![row(presets)]
}

/// Under a reminder's acknowledgement while it waits: other times, and Cancel.
pub fn reminder_buttons(id: i64) -> Vec<Value> {
    let mut moves: Vec<Value> =
        Preset::ALL.into_iter().map(|p| button(p.label(), SECONDARY, Button::Move(id, p))).collect();
    moves.push(button("Cancel", DANGER, Button::Cancel(id)));
    vec![row(moves)]
}

/// The buttons a suggestion's message carries as it is now: none once it is decided.
pub fn components_for(s: &Suggestion) -> Vec<Value> {
    if loopgate_engine::request::reminder_waiting(s) {
        reminder_buttons(s.id)
    } else if s.state.is_answerable() {
        suggestion_buttons(s.id)
    } else {
        Vec::new()
    }
}

/// The acknowledgement of a reminder the owner asked for, as a reply to their message: a
/// posted copy of the reminder, so moving or cancelling it edits this message.
pub fn acknowledge(channel_id: u64, message_id: u64, s: &Suggestion, timezone: Tz) -> Value {
    let mut message = suggestion_body(s, timezone);
    message["message_reference"] = json!({"message_id": message_id.to_string(), "fail_if_not_exists": false});
    json!({"op": "post", "channel": channel_id.to_string(), "body": message, "surface": {"suggestion": s.id}})
}

pub fn approval_buttons(id: i64) -> Vec<Value> {
    vec![row(vec![button("Approve", SUCCESS, Button::Approve(id)), button("Deny", DANGER, Button::Deny(id))])]
}

pub fn escape(text: &str) -> String {
    Markup::Markdown.escape(text)
}

/// A card or reply that must fit one message: cut, its markdown intact, as a last resort.
fn cut(text: String) -> String {
    text::fit(Markup::Markdown, Measure::Chars, &text, MAX_CONTENT)
}

/// A message body: content, components (an empty list removes the buttons), no pings.
fn body(content: String, components: Vec<Value>) -> Value {
    json!({"content": cut(content), "components": components, "allowed_mentions": {"parse": []}})
}

/// A suggestion's message as it should look now: buttons while it is open, the outcome
/// once it is not.
pub fn suggestion_body(s: &Suggestion, timezone: Tz) -> Value {
    body(chat::suggestion_text(s, timezone, Markup::Markdown), components_for(s))
}

pub fn approval_body(a: &Approval, timezone: Tz) -> Value {
    let components = if a.state == ApprovalState::Pending { approval_buttons(a.id) } else { Vec::new() };
    body(chat::approval_text(a, timezone, Markup::Markdown), components)
}

/// The sends that keep Discord's copies of a suggestion true after `delivery`.
pub fn render_suggestion(delivery: &Delivery, timezone: Tz) -> Vec<NewOutbound> {
    let s = &delivery.suggestion;
    let key = format!("{CHANNEL}:suggestion:{}:event:{}", s.id, delivery.id);
    let payload = match delivery.kind {
        // Answered elsewhere before this channel caught up: nothing to post.
        DeliveryKind::Show if !s.state.is_answerable() => return Vec::new(),
        DeliveryKind::Show => {
            json!({"op": "post", "body": suggestion_body(s, timezone), "surface": {"suggestion": s.id}})
        }
        DeliveryKind::Update | DeliveryKind::Decided => {
            json!({"op": "edit", "body": suggestion_body(s, timezone), "edit": {"suggestion": s.id}})
        }
    };
    vec![NewOutbound { channel: CHANNEL.into(), dedupe_key: key, payload }]
}

pub fn render_approval(delivery: &ApprovalDelivery, timezone: Tz) -> Vec<NewOutbound> {
    let a = &delivery.approval;
    let (key, payload) = match delivery.kind {
        DeliveryKind::Show if a.state != ApprovalState::Pending => return Vec::new(),
        DeliveryKind::Show => {
            (approval_post_key(CHANNEL, a.id), json!({"op": "post", "body": approval_body(a, timezone)}))
        }
        DeliveryKind::Update | DeliveryKind::Decided => (
            format!("{CHANNEL}:approval:{}:event:{}", a.id, delivery.id),
            json!({"op": "edit", "body": approval_body(a, timezone), "edit": {"approval": a.id}}),
        ),
    };
    vec![NewOutbound { channel: CHANNEL.into(), dedupe_key: key, payload }]
}

/// A reply in a chat (a typed command's answer), markup already escaped by the caller.
pub fn reply(channel_id: u64, message_id: u64, content: String) -> Value {
    let mut message = body(content, Vec::new());
    message["message_reference"] = json!({"message_id": message_id.to_string(), "fail_if_not_exists": false});
    json!({"op": "post", "channel": channel_id.to_string(), "body": message})
}

/// A plain-text answer (escaped here), as many messages as it takes: split where Discord
/// would count past its limit (escapes included), each replying to the owner's message.
pub fn reply_parts(channel_id: u64, message_id: u64, plain: &str) -> Vec<Value> {
    let weight = |c: char| escape(&c.to_string()).chars().count();
    text::split(plain, MAX_CONTENT, weight)
        .into_iter()
        .map(|part| reply(channel_id, message_id, escape(&part)))
        .collect()
}

/// Interaction response 7: the message the button sits on, updated in place.
pub fn update_message(body: Value) -> Value {
    json!({"type": 7, "data": body})
}

/// Interaction response 6: acknowledged; the message is edited when the outcome is known.
pub fn deferred_update() -> Value {
    json!({"type": 6})
}

/// Interaction response 4 that only the presser sees (a refusal, a command's result),
/// sent as given: command results are markup already.
pub fn ephemeral(text: &str) -> Value {
    json!({"type": 4, "data": {"content": cut(text.to_owned()), "flags": EPHEMERAL, "allowed_mentions": {"parse": []}}})
}

pub fn pong() -> Value {
    json!({"type": 1})
}

/// Interaction response 9: the Edit form, prefilled with the action's text as it is now.
/// Its submission comes back with the custom id of the Edit button.
pub fn edit_modal(s: &Suggestion) -> Value {
    words_modal(s, None)
}

/// The Edit form; for a reply without words, the model's draft prefilled when there is one
/// (submitting it sends it, through policy and approval; closing the form discards it).
pub fn words_modal(s: &Suggestion, draft: Option<&str>) -> Value {
    let action = s.edited_action.as_ref().unwrap_or(&s.action);
    let current: String = draft
        .or_else(|| action.get("text").and_then(Value::as_str))
        .unwrap_or_default()
        .chars()
        .take(MAX_INPUT)
        .collect();
    // A reply's words are the owner's to write: an empty text shows what it is instead.
    let placeholder: String = describe_action(action).chars().take(MAX_PLACEHOLDER).collect();
    let mut input = json!({
        "type": 4,
        "custom_id": "action",
        "style": 2,
        "label": "The new text of the action",
        "placeholder": placeholder,
        "min_length": 1,
        "max_length": MAX_INPUT,
        "required": true,
    });
    if !current.trim().is_empty() {
        input["value"] = current.into();
    }
    let title: String = format!("Edit: {}", s.title).chars().take(MAX_TITLE).collect();
    json!({
        "type": 9,
        "data": {"custom_id": Button::Edit(s.id).data(), "title": title, "components": [row(vec![input])]},
    })
}

/// The slash commands, registered at start (a bulk overwrite, so removed ones go away).
pub fn slash_commands() -> Value {
    let plain = |name: &str, description: &str| json!({"name": name, "description": description, "type": 1});
    let with_text = |name: &str, description: &str, option: &str, about: &str| {
        json!({
            "name": name, "description": description, "type": 1,
            "options": [{"name": option, "description": about, "type": 3, "required": true, "max_length": 1000}],
        })
    };
    json!([
        plain("help", "What loopgate does here"),
        plain("suggestions", "What is waiting for you"),
        with_text("memory", "What loopgate remembers about something", "query", "Words to look for"),
        with_text("remember", "Remember something", "text", "What to remember"),
        plain("pause", "Stop thinking until /resume"),
        plain("stop", "Stop everything: no tasks, nothing dispatched"),
        plain("resume", "Carry on"),
        with_text("pair", "Become this loopgate's owner", "code", "The code `loopgate pair discord` printed"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_ids_fit_discord() {
        for component in
            suggestion_buttons(i64::MAX).iter().chain(&snooze_buttons(i64::MAX)).chain(&approval_buttons(i64::MAX))
        {
            for b in component["components"].as_array().unwrap() {
                let id = b["custom_id"].as_str().unwrap();
                assert!(id.len() <= 100, "{id}");
                assert!(Button::parse(id).is_some(), "{id}");
            }
        }
    }

    #[test]
    fn every_message_mutes_mentions_and_fits() {
        let long = body("<@123> @everyone ".repeat(300), Vec::new());
        assert_eq!(long["allowed_mentions"], json!({"parse": []}));
        assert!(long["content"].as_str().unwrap().chars().count() <= MAX_CONTENT);
        assert_eq!(ephemeral("x")["data"]["flags"], json!(64));
    }

    #[test]
    fn slash_commands_mirror_the_chat_commands() {
        let names: Vec<_> =
            slash_commands().as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
        assert_eq!(names, ["help", "suggestions", "memory", "remember", "pause", "stop", "resume", "pair"]);
    }
}
