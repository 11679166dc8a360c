//! What loopgate shows on Telegram: suggestions and approvals as HTML messages with inline
//! keyboards, their outcome once decided, and what a button press carries back.
//!
//! Everything here is pure. Text that came from channels (titles quote people) is escaped
//! for Telegram's HTML mode, so `*_[`<>&` shows as written and nothing in it can turn into
//! markup or a link.

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use loopgate_engine::actions::{Approval, ApprovalDelivery, ApprovalState};
use loopgate_engine::outbox::NewOutbound;
use loopgate_engine::suggestion::{Delivery, DeliveryKind, Suggestion, SuggestionState};
use loopgate_policies::ActionView;
use serde_json::{Value, json};
use teloxide_core::types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, ParseMode};

use super::CHANNEL;

/// Telegram's limit on a message's text; longer text is cut with an ellipsis.
const MAX_TEXT: usize = 4096;
/// Evidence lines shown under a suggestion.
const MAX_EVIDENCE: usize = 3;

/// Escapes text for `parse_mode = HTML`: only `&`, `<` and `>` mean anything there.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// What a button carries (`callback_data`, at most 64 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    Act(i64),
    Edit(i64),
    /// Opens the snooze presets.
    SnoozeMenu(i64),
    Snooze(i64, Preset),
    /// Closes the snooze presets.
    Back(i64),
    Dismiss(i64),
    Approve(i64),
    Deny(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    OneHour,
    TomorrowMorning,
    NextWeek,
}

impl Preset {
    const ALL: [Preset; 3] = [Preset::OneHour, Preset::TomorrowMorning, Preset::NextWeek];

    fn code(self) -> &'static str {
        match self {
            Preset::OneHour => "1h",
            Preset::TomorrowMorning => "tm",
            Preset::NextWeek => "nw",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Preset::OneHour => "1 hour",
            Preset::TomorrowMorning => "Tomorrow 09:00",
            Preset::NextWeek => "Next week",
        }
    }

    /// When the snooze ends, in the owner's timezone: in an hour; tomorrow at 09:00; next
    /// Monday at 09:00.
    pub fn until(self, now: DateTime<Utc>, timezone: Tz) -> DateTime<Utc> {
        let local = now.with_timezone(&timezone).date_naive();
        let day = match self {
            Preset::OneHour => return now + Duration::hours(1),
            Preset::TomorrowMorning => local + Duration::days(1),
            Preset::NextWeek => local + Duration::days(7 - i64::from(local.weekday().num_days_from_monday())),
        };
        let nine = day.and_time(NaiveTime::from_hms_opt(9, 0, 0).expect("09:00 exists"));
        // A 09:00 skipped by a clock change falls back to an hour later.
        timezone
            .from_local_datetime(&nine)
            .earliest()
            .or_else(|| timezone.from_local_datetime(&(nine + Duration::hours(1))).earliest())
            .map_or(now + Duration::days(1), |t| t.with_timezone(&Utc))
    }
}

impl Button {
    pub fn data(self) -> String {
        match self {
            Button::Act(id) => format!("s:{id}:act"),
            Button::Edit(id) => format!("s:{id}:edit"),
            Button::SnoozeMenu(id) => format!("s:{id}:snooze"),
            Button::Snooze(id, preset) => format!("s:{id}:snooze:{}", preset.code()),
            Button::Back(id) => format!("s:{id}:back"),
            Button::Dismiss(id) => format!("s:{id}:dismiss"),
            Button::Approve(id) => format!("a:{id}:approve"),
            Button::Deny(id) => format!("a:{id}:deny"),
        }
    }

    /// Reads `callback_data`; anything else (an old or forged button) is `None`.
    pub fn parse(data: &str) -> Option<Button> {
        let mut parts = data.split(':');
        let subject = parts.next()?;
        let id: i64 = parts.next()?.parse().ok().filter(|id| *id > 0)?;
        let verb = parts.next()?;
        let extra = parts.next();
        if parts.next().is_some() {
            return None;
        }
        let button = match (subject, verb, extra) {
            ("s", "act", None) => Button::Act(id),
            ("s", "edit", None) => Button::Edit(id),
            ("s", "snooze", None) => Button::SnoozeMenu(id),
            ("s", "snooze", Some(code)) => Button::Snooze(id, Preset::ALL.into_iter().find(|p| p.code() == code)?),
            ("s", "back", None) => Button::Back(id),
            ("s", "dismiss", None) => Button::Dismiss(id),
            ("a", "approve", None) => Button::Approve(id),
            ("a", "deny", None) => Button::Deny(id),
            _ => return None,
        };
        Some(button)
    }
}

fn button(label: &str, b: Button) -> InlineKeyboardButton {
    InlineKeyboardButton::callback(label, b.data())
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

pub fn approval_keyboard(id: i64) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[button("Approve", Button::Approve(id)), button("Deny", Button::Deny(id))]])
}

/// "webhook deploy", "message to telegram:42: On my way", for people to read.
pub fn describe_action(action: &Value) -> String {
    let view = ActionView::of(action).ok();
    let kind = view.as_ref().map_or("action", |v| v.kind.as_str());
    let target = view.as_ref().map(|v| v.target.as_str()).filter(|t| !t.is_empty() && *t != "self");
    let text = action.get("text").and_then(Value::as_str).map(str::trim).filter(|t| !t.is_empty());
    let mut out = kind.to_owned();
    if let Some(target) = target {
        out.push_str(if kind == "message" { " to " } else { " " });
        out.push_str(target);
    }
    if let Some(text) = text {
        out.push_str(": ");
        out.push_str(text);
    }
    out
}

fn local(at: DateTime<Utc>, timezone: Tz) -> String {
    at.with_timezone(&timezone).format("%a %d %b %H:%M %Z").to_string()
}

fn cut(mut text: String) -> String {
    if text.chars().count() > MAX_TEXT {
        text = text.chars().take(MAX_TEXT - 1).collect();
        // Never leave half an entity behind: drop back to before the last '&'.
        if let Some(amp) = text.rfind('&').filter(|&i| !text[i..].contains(';')) {
            text.truncate(amp);
        }
        text.push('…');
    }
    text
}

pub fn suggestion_text(s: &Suggestion, timezone: Tz) -> String {
    let mut text = format!("💡 <b>{}</b>\n{}", escape(&s.title), escape(&s.why_now));
    for line in s.evidence.iter().take(MAX_EVIDENCE) {
        text.push_str(&format!("\n• {}", escape(&line.summary)));
    }
    let action = s.edited_action.as_ref().unwrap_or(&s.action);
    text.push_str(&format!("\n\n→ {} · {} risk", escape(&describe_action(action)), s.risk.as_str()));
    if s.policy == loopgate_policies::Effect::Ask {
        text.push_str(" · asks for your approval before it runs");
    }
    if let Some(outcome) = suggestion_outcome(s, timezone) {
        text.push_str("\n\n");
        text.push_str(&outcome);
    }
    cut(text)
}

/// The line that replaces the buttons once a suggestion is no longer open to answers.
fn suggestion_outcome(s: &Suggestion, timezone: Tz) -> Option<String> {
    let (mark, what) = match s.state {
        SuggestionState::Active | SuggestionState::Scheduled => return None,
        SuggestionState::Acted => ("✅", "Acted"),
        SuggestionState::Edited => ("✏️", "Edited"),
        SuggestionState::Snoozed => ("💤", "Snoozed"),
        SuggestionState::Dismissed => ("✖️", "Dismissed"),
        SuggestionState::Expired => ("⌛", "Expired"),
        SuggestionState::Ignored => ("⌛", "Ignored"),
        SuggestionState::Superseded => ("↪️", "No longer needed"),
    };
    let mut line = format!("{mark} <b>{what}</b>");
    if let Some(d) = &s.decision {
        line.push_str(&format!(" via {} by {} · {}", escape(&d.via), escape(&d.by), local(d.at, timezone)));
    }
    if let (SuggestionState::Snoozed, Some(until)) = (s.state, s.snoozed_until) {
        line.push_str(&format!("\nBack {}", local(until, timezone)));
    }
    Some(line)
}

pub fn approval_text(a: &Approval, timezone: Tz) -> String {
    let mut text = format!(
        "🔐 <b>Approval A{}</b>\n{}\n\n→ {} · {} risk\nExpires {}",
        a.id,
        escape(&a.reason),
        escape(&describe_action(&a.action)),
        a.risk.as_str(),
        local(a.expires_at, timezone)
    );
    let outcome = match a.state {
        ApprovalState::Pending => None,
        ApprovalState::Approved => Some("✅ <b>Approved</b>"),
        ApprovalState::Denied => Some("🚫 <b>Denied</b>"),
        ApprovalState::Expired => Some("⌛ <b>Expired</b> — not run"),
    };
    if let Some(outcome) = outcome {
        text.push_str("\n\n");
        text.push_str(outcome);
        if let Some(d) = a.decision.as_ref().filter(|_| a.state != ApprovalState::Expired) {
            text.push_str(&format!(" via {} by {} · {}", escape(&d.via), escape(&d.by), local(d.at, timezone)));
        }
    }
    cut(text)
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
            "params": edit_text(suggestion_text(s, timezone), open.then(|| suggestion_keyboard(s.id))),
            "edit": {"suggestion": s.id},
        }),
    };
    vec![NewOutbound { channel: CHANNEL.into(), dedupe_key: key, payload }]
}

/// The dedupe key of the message that posts an approval: there is one per approval, and
/// its later edits find it by this key.
pub fn approval_post_key(id: i64) -> String {
    format!("{CHANNEL}:approval:{id}:post")
}

pub fn render_approval(delivery: &ApprovalDelivery, chat_id: i64, timezone: Tz) -> Vec<NewOutbound> {
    let a = &delivery.approval;
    let pending = a.state == ApprovalState::Pending;
    let (key, payload) = match delivery.kind {
        DeliveryKind::Show if !pending => return Vec::new(),
        DeliveryKind::Show => (
            approval_post_key(a.id),
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

/// Swaps the keyboard under a message the owner is looking at (snooze presets, back).
pub fn swap_keyboard(chat_id: i64, message_id: i32, keyboard: InlineKeyboardMarkup) -> Value {
    json!({
        "method": "editMessageReplyMarkup",
        "params": {"chat_id": chat_id, "message_id": message_id, "reply_markup": keyboard},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_render_literally() {
        assert_eq!(escape("*_[`<b>&amp;"), "*_[`&lt;b&gt;&amp;amp;");
    }

    #[test]
    fn every_button_fits_telegram_and_reads_back() {
        let id = i64::MAX;
        let buttons = [
            Button::Act(id),
            Button::Edit(id),
            Button::SnoozeMenu(id),
            Button::Snooze(id, Preset::OneHour),
            Button::Snooze(id, Preset::TomorrowMorning),
            Button::Snooze(id, Preset::NextWeek),
            Button::Back(id),
            Button::Dismiss(id),
            Button::Approve(id),
            Button::Deny(id),
        ];
        for b in buttons {
            let data = b.data();
            assert!(data.len() <= 64, "{data}");
            assert_eq!(Button::parse(&data), Some(b));
        }
        for forged in
            ["", "s:1", "s:x:act", "s:-1:act", "s:1:act:more", "s:1:snooze:3d", "a:1:act", "z:1:act", "s:0:act"]
        {
            assert_eq!(Button::parse(forged), None, "{forged}");
        }
    }

    #[test]
    fn presets_land_in_the_owners_timezone() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // Wednesday 2026-11-18 22:30 UTC = 23:30 in Berlin.
        let now = Utc.with_ymd_and_hms(2026, 11, 18, 22, 30, 0).unwrap();
        assert_eq!(Preset::OneHour.until(now, tz), now + Duration::hours(1));
        assert_eq!(Preset::TomorrowMorning.until(now, tz), Utc.with_ymd_and_hms(2026, 11, 19, 8, 0, 0).unwrap());
        assert_eq!(Preset::NextWeek.until(now, tz), Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap());
        // Past midnight in Berlin but still the 18th in UTC: "tomorrow" is the 20th there.
        let late = Utc.with_ymd_and_hms(2026, 11, 18, 23, 30, 0).unwrap();
        assert_eq!(Preset::TomorrowMorning.until(late, tz), Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap());
        // On a Monday, next week is the Monday after.
        let monday = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        assert_eq!(Preset::NextWeek.until(monday, tz), Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap());
    }

    #[test]
    fn long_text_is_cut_without_breaking_an_entity() {
        let text = cut(format!("{}&amp;", "a".repeat(MAX_TEXT - 3)));
        assert!(text.ends_with('…') && !text.contains('&'), "{}", &text[text.len() - 10..]);
        assert!(text.chars().count() <= MAX_TEXT);
    }

    #[test]
    fn actions_read_as_sentences() {
        let message =
            json!({"kind": "message", "target": {"channel": "telegram", "conversation": "42"}, "text": "On my way"});
        assert_eq!(describe_action(&message), "message to telegram:42: On my way");
        assert_eq!(describe_action(&json!({"kind": "webhook", "endpoint": "deploy"})), "webhook deploy");
        assert_eq!(describe_action(&json!({"kind": "note", "text": "x"})), "note: x");
        assert_eq!(describe_action(&json!("garbage")), "action");
    }
}
