//! What loopgate shows on Telegram: suggestions and approvals as HTML messages with inline
//! keyboards, their outcome once decided, and what a button press carries back.
//!
//! Everything here is pure. Text that came from channels (titles quote people) is escaped
//! for Telegram's HTML mode, so `*_[`<>&` shows as written and nothing in it can turn into
//! markup or a link.

use chrono_tz::Tz;
use loopgate_engine::actions::{Approval, ApprovalDelivery, ApprovalState};
use loopgate_engine::outbox::NewOutbound;
use loopgate_engine::suggestion::{Delivery, DeliveryKind, Suggestion};
use serde_json::{Value, json};
use teloxide_core::types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, ParseMode};

use super::CHANNEL;
use crate::channel::approval_post_key;
use crate::chat::{self, Button, Markup, Preset, describe_action};
use crate::text::{self, Measure};

/// Telegram's limits, as Telegram measures them: a message's text after entity parsing
/// (UTF-16 code units; tags count nothing, `&amp;` one), and a button's `callback_data`
/// in bytes. (loopgate sends no captions: media are never sent.)
pub const MAX_TEXT: usize = 4096;
pub const MAX_CALLBACK_DATA: usize = 64;

fn button(label: &str, b: Button) -> InlineKeyboardButton {
    let data = b.data();
    debug_assert!(data.len() <= MAX_CALLBACK_DATA, "callback_data over Telegram's limit: {data}");
    InlineKeyboardButton::callback(label, data)
}

pub fn suggestion_keyboard(id: i64) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[
        button("Act", Button::Act(id)),
        button("Edit", Button::Edit(id)),
        button("Snooze", Button::SnoozeMenu(id)),
        button("Dismiss", Button::Dismiss(id)),
    ]])
}

pub fn snooze_keyboard(id: i64) -> InlineKeyboardMarkup {
    let presets: Vec<_> = Preset::ALL.into_iter().map(|p| button(p.label(), Button::Snooze(id, p))).collect();
    InlineKeyboardMarkup::new([presets, vec![button("« Back", Button::Back(id))]])
}

/// Under a reminder's acknowledgement while it waits: other times, and Cancel.
pub fn reminder_keyboard(id: i64) -> InlineKeyboardMarkup {
    let moves: Vec<_> = Preset::ALL.into_iter().map(|p| button(p.label(), Button::Move(id, p))).collect();
    InlineKeyboardMarkup::new([moves, vec![button("Cancel", Button::Cancel(id))]])
}

/// The buttons a suggestion's message carries as it is now: none once it is decided.
pub fn keyboard_for(s: &Suggestion) -> Option<InlineKeyboardMarkup> {
    if loopgate_engine::request::reminder_waiting(s) {
        Some(reminder_keyboard(s.id))
    } else {
        s.state.is_answerable().then(|| suggestion_keyboard(s.id))
    }
}

/// The acknowledgement of a reminder the owner asked for, as a reply to their message: a
/// posted copy of the reminder, so moving or cancelling it edits this message.
pub fn acknowledge(chat_id: i64, reply_to: i32, s: &Suggestion, timezone: Tz) -> Value {
    let mut params = send_message(chat_id, suggestion_text(s, timezone), keyboard_for(s));
    params["reply_parameters"] = json!({"message_id": reply_to, "allow_sending_without_reply": true});
    json!({"method": "sendMessage", "params": params, "surface": {"suggestion": s.id}})
}

pub fn approval_keyboard(id: i64) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[button("Approve", Button::Approve(id)), button("Deny", Button::Deny(id))]])
}

/// Escapes text for `parse_mode = HTML`: only `&`, `<` and `>` mean anything there.
pub fn escape(text: &str) -> String {
    Markup::Html.escape(text)
}

/// A card or reply that must fit one message: cut, its HTML intact, as a last resort.
fn cut(text: String) -> String {
    text::fit(Markup::Html, Measure::Utf16, &text, MAX_TEXT)
}

pub fn suggestion_text(s: &Suggestion, timezone: Tz) -> String {
    cut(chat::suggestion_text(s, timezone, Markup::Html))
}

pub fn approval_text(a: &Approval, timezone: Tz) -> String {
    cut(chat::approval_text(a, timezone, Markup::Html))
}

fn send_message(chat_id: i64, text: String, keyboard: Option<InlineKeyboardMarkup>) -> Value {
    use teloxide_core::payloads::SendMessageSetters;
    let mut payload = teloxide_core::payloads::SendMessage::new(ChatId(chat_id), text).parse_mode(ParseMode::Html);
    if let Some(keyboard) = keyboard {
        payload = payload.reply_markup(keyboard);
    }
    serde_json::to_value(payload).expect("a message serializes")
}

/// `editMessageText` parameters without the chat and message, which the sender fills in
/// for every posted copy. No `reply_markup` removes the keyboard.
fn edit_text(text: String, keyboard: Option<InlineKeyboardMarkup>) -> Value {
    let mut params = json!({"text": text, "parse_mode": "HTML"});
    if let Some(keyboard) = keyboard {
        params["reply_markup"] = serde_json::to_value(keyboard).expect("a keyboard serializes");
    }
    params
}

/// The sends that keep Telegram's copies of a suggestion true after `delivery`.
pub fn render_suggestion(delivery: &Delivery, chat_id: i64, timezone: Tz) -> Vec<NewOutbound> {
    let s = &delivery.suggestion;
    let key = format!("{CHANNEL}:suggestion:{}:event:{}", s.id, delivery.id);
    let open = s.state.is_answerable();
    let payload = match delivery.kind {
        // A show that went stale (answered through another channel before this one
        // caught up) posts nothing: the decided event that follows has nothing to edit.
        DeliveryKind::Show if !open => return Vec::new(),
        DeliveryKind::Show => json!({
            "method": "sendMessage",
            "params": send_message(chat_id, suggestion_text(s, timezone), Some(suggestion_keyboard(s.id))),
            "surface": {"suggestion": s.id},
        }),
        DeliveryKind::Update | DeliveryKind::Decided => json!({
            "method": "editMessageText",
            "params": edit_text(suggestion_text(s, timezone), keyboard_for(s)),
            "edit": {"suggestion": s.id},
        }),
    };
    vec![NewOutbound { channel: CHANNEL.into(), dedupe_key: key, payload }]
}

pub fn render_approval(delivery: &ApprovalDelivery, chat_id: i64, timezone: Tz) -> Vec<NewOutbound> {
    let a = &delivery.approval;
    let pending = a.state == ApprovalState::Pending;
    let (key, payload) = match delivery.kind {
        DeliveryKind::Show if !pending => return Vec::new(),
        DeliveryKind::Show => (
            approval_post_key(CHANNEL, a.id),
            json!({
                "method": "sendMessage",
                "params": send_message(chat_id, approval_text(a, timezone), Some(approval_keyboard(a.id))),
            }),
        ),
        DeliveryKind::Update | DeliveryKind::Decided => (
            format!("{CHANNEL}:approval:{}:event:{}", a.id, delivery.id),
            json!({
                "method": "editMessageText",
                "params": edit_text(approval_text(a, timezone), pending.then(|| approval_keyboard(a.id))),
                "edit": {"approval": a.id},
            }),
        ),
    };
    vec![NewOutbound { channel: CHANNEL.into(), dedupe_key: key, payload }]
}

/// A plain reply in a chat (a command's answer), HTML-escaped by the caller.
pub fn reply(chat_id: i64, reply_to: Option<i32>, html: String) -> Value {
    let mut params = send_message(chat_id, cut(html), None);
    if let Some(message_id) = reply_to {
        params["reply_parameters"] = json!({"message_id": message_id, "allow_sending_without_reply": true});
    }
    json!({"method": "sendMessage", "params": params})
}

/// A plain-text answer (escaped here), as many messages as it takes: split where Telegram
/// would count past its limit, the first replying to `reply_to`.
pub fn reply_parts(chat_id: i64, reply_to: Option<i32>, plain: &str) -> Vec<Value> {
    text::split(plain, MAX_TEXT, char::len_utf16)
        .into_iter()
        .enumerate()
        .map(|(n, part)| reply(chat_id, reply_to.filter(|_| n == 0), escape(&part)))
        .collect()
}

/// The prompt Edit sends: the owner's reply to it is the edited action.
pub fn edit_prompt(chat_id: i64, s: &Suggestion) -> Value {
    let action = s.edited_action.as_ref().unwrap_or(&s.action);
    let text = format!(
        "✏️ Editing: <b>{}</b>\nNow: {}\n\nReply to this message with the new text.",
        escape(&s.title),
        escape(&describe_action(action))
    );
    let mut params = send_message(chat_id, cut(text), None);
    params["reply_markup"] = json!({"force_reply": true, "input_field_placeholder": "The new text"});
    json!({"method": "sendMessage", "params": params, "prompt": {"edit_suggestion": s.id}})
}

/// Act on a reply without words: asks for them; the owner's reply to this prompt is the
/// text to send (through policy and approval, as every message).
pub fn words_prompt(chat_id: i64, s: &Suggestion) -> Value {
    let text = format!("✍️ <b>{}</b>\n\nWhat should I send? Reply to this message with the words.", escape(&s.title));
    let mut params = send_message(chat_id, cut(text), None);
    params["reply_markup"] = json!({"force_reply": true, "input_field_placeholder": "Your reply"});
    json!({"method": "sendMessage", "params": params, "prompt": {"edit_suggestion": s.id}})
}

/// The model's draft of a reply, to send as it is, edit, or discard.
pub fn draft(chat_id: i64, s: &Suggestion, draft: &str) -> Value {
    let text = format!("✍️ Draft — <b>{}</b>\n\n{}", escape(&s.title), escape(draft));
    let keyboard = InlineKeyboardMarkup::new([[
        button("Send", Button::Send(s.id)),
        button("Edit", Button::Edit(s.id)),
        button("Cancel", Button::Discard(s.id)),
    ]]);
    json!({"method": "sendMessage", "params": send_message(chat_id, cut(text), Some(keyboard))})
}

/// Swaps the keyboard under a message the owner is looking at (snooze presets, back).
pub fn swap_keyboard(chat_id: i64, message_id: i32, keyboard: InlineKeyboardMarkup) -> Value {
    json!({
        "method": "editMessageReplyMarkup",
        "params": {"chat_id": chat_id, "message_id": message_id, "reply_markup": keyboard},
    })
}
