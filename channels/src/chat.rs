//! What every chat adapter shares: the buttons and what they carry, the words shown for
//! suggestions, approvals and their outcomes (in each platform's markup), what a press
//! does in the engine, and the chat commands.
//!
//! Platform adapters decide only how these look and travel on their platform: a Telegram
//! toast or a Discord ephemeral reply, an inline keyboard or components.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use loopgate_engine::actions::{Approval, ApprovalState, DecideError, TaskState, Verdict};
use loopgate_engine::intelligence::Intelligence;
use loopgate_engine::memory::MemoryCandidate;
use loopgate_engine::suggestion::{Claimant, RespondError, Responded, Response, Suggestion, SuggestionState};
use loopgate_engine::{MemoryQuery, RememberOutcome, StoreError};
use loopgate_policies::ActionView;
use serde_json::Value;
use tokio::sync::watch;

use crate::text::shorten;

/// What a button carries: Telegram `callback_data` (at most 64 bytes), a Discord
/// `custom_id` (at most 100 characters).
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
    /// Moves a reminder still waiting for its time (under its acknowledgement).
    Move(i64, Preset),
    /// Cancels a reminder still waiting for its time.
    Cancel(i64),
    /// Sends the draft reply shown (through policy and approval, as every message).
    Send(i64),
    /// Throws the draft reply away.
    Discard(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    OneHour,
    TomorrowMorning,
    NextWeek,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::OneHour, Preset::TomorrowMorning, Preset::NextWeek];

    pub fn code(self) -> &'static str {
        match self {
            Preset::OneHour => "1h",
            Preset::TomorrowMorning => "tm",
            Preset::NextWeek => "nw",
        }
    }

    pub fn label(self) -> &'static str {
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
            Button::Move(id, preset) => format!("s:{id}:at:{}", preset.code()),
            Button::Cancel(id) => format!("s:{id}:cancel"),
            Button::Send(id) => format!("s:{id}:send"),
            Button::Discard(id) => format!("s:{id}:discard"),
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
            ("s", "at", Some(code)) => Button::Move(id, Preset::ALL.into_iter().find(|p| p.code() == code)?),
            ("s", "cancel", None) => Button::Cancel(id),
            ("s", "send", None) => Button::Send(id),
            ("s", "discard", None) => Button::Discard(id),
            _ => return None,
        };
        Some(button)
    }
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

/// A time as the owner reads it, in their timezone.
pub fn local(at: DateTime<Utc>, timezone: Tz) -> String {
    at.with_timezone(&timezone).format("%a %d %b %H:%M %Z").to_string()
}

/// How a platform marks text up. Text from channels is always escaped, so nothing in it
/// turns into markup, a link or a mention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    /// Telegram's `parse_mode = HTML`.
    Html,
    /// Discord's markdown.
    Markdown,
}

impl Markup {
    pub fn escape(self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            match (self, c) {
                (Markup::Html, '&') => out.push_str("&amp;"),
                (Markup::Html, '<') => out.push_str("&lt;"),
                (Markup::Html, '>') => out.push_str("&gt;"),
                // `<` would open a mention (`<@id>`), a channel link or a custom emoji.
                (
                    Markup::Markdown,
                    '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '<' | '#' | '-' | '[' | ']' | '(' | ')' | ':',
                ) => {
                    out.push('\\');
                    out.push(c);
                }
                (_, c) => out.push(c),
            }
        }
        out
    }

    /// `text` is markup already (escaped by the caller).
    pub fn bold(self, text: &str) -> String {
        match self {
            Markup::Html => format!("<b>{text}</b>"),
            Markup::Markdown => format!("**{text}**"),
        }
    }

    /// For fixed text only: nothing inside a code span can be escaped on Discord.
    pub fn code(self, text: &str) -> String {
        match self {
            Markup::Html => format!("<code>{}</code>", Markup::Html.escape(text)),
            Markup::Markdown => format!("`{text}`"),
        }
    }
}

/// Evidence lines shown under a suggestion.
const MAX_EVIDENCE: usize = 3;
/// Bounds on a card's parts, in characters before escaping. Together (with the outcome
/// line) they stay well under Telegram's 4,096; on Discord, where escapes count, the
/// card is cut by [`crate::text::fit`] as a last resort, markup intact.
const MAX_TITLE: usize = 160;
const MAX_WHY: usize = 400;
const MAX_EVIDENCE_LINE: usize = 160;
const MAX_ACTION: usize = 700;

pub use loopgate_engine::request::reminder_when;

/// The task of a reminder, from its title.
fn reminder_task(s: &Suggestion) -> &str {
    s.title.strip_prefix("Reminder: ").unwrap_or(&s.title)
}

/// A reminder the owner asked for, as acknowledged: what and when (buttons move or cancel
/// it while it waits); once cancelled, that.
fn reminder_text(s: &Suggestion, now: DateTime<Utc>, timezone: Tz, markup: Markup) -> Option<String> {
    let task = markup.escape(&shorten(reminder_task(s), MAX_TITLE));
    if loopgate_engine::request::reminder_waiting(s) {
        let at = s.snoozed_until.or(s.due_at)?;
        return Some(format!("⏰ {}: {task}", markup.bold(&markup.escape(&reminder_when(at, now, timezone)))));
    }
    if s.class == "reminder" && s.state == SuggestionState::Superseded && s.decision.is_some() {
        return Some(format!("✖️ {}: {task}", markup.bold("Cancelled")));
    }
    None
}

/// A suggestion as posted, and, once it is no longer open, its outcome (what, via which
/// channel, by whom, when). A reminder the owner asked for reads as its acknowledgement
/// while it waits.
pub fn suggestion_text(s: &Suggestion, timezone: Tz, markup: Markup) -> String {
    // Relative to its last change ("Today", "Tomorrow"): that is when this text is shown,
    // on the engine's clock.
    if let Some(text) = reminder_text(s, s.updated_at, timezone, markup) {
        return text;
    }
    card_text(s, timezone, markup)
}

fn card_text(s: &Suggestion, timezone: Tz, markup: Markup) -> String {
    let e = |t: &str| markup.escape(t);
    let short = |t: &str, max: usize| e(&shorten(t, max));
    let mut text = format!("💡 {}\n{}", markup.bold(&short(&s.title, MAX_TITLE)), short(&s.why_now, MAX_WHY));
    // Why it ranks where it does, in the owner's terms ("ranked up: you acted on 6 of this
    // sender's last 7"), when learning had a say.
    if !s.ranking.ranked.trim().is_empty() {
        text.push_str(&format!("\n↕ {}", short(&s.ranking.ranked, MAX_EVIDENCE_LINE)));
    }
    for line in s.evidence.iter().take(MAX_EVIDENCE) {
        text.push_str(&format!("\n• {}", short(&line.summary, MAX_EVIDENCE_LINE)));
    }
    let action = s.edited_action.as_ref().unwrap_or(&s.action);
    text.push_str(&format!("\n\n→ {} · {} risk", short(&describe_action(action), MAX_ACTION), s.risk.as_str()));
    if s.policy == loopgate_policies::Effect::Ask {
        text.push_str(" · asks for your approval before it runs");
    }
    if let Some(outcome) = suggestion_outcome(s, timezone, markup) {
        text.push_str("\n\n");
        text.push_str(&outcome);
    }
    text
}

/// The line that replaces the buttons once a suggestion is no longer open to answers.
fn suggestion_outcome(s: &Suggestion, timezone: Tz, markup: Markup) -> Option<String> {
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
    let mut line = format!("{mark} {}", markup.bold(what));
    if let Some(d) = &s.decision {
        let (via, by) = (markup.escape(&d.via), markup.escape(&d.by));
        line.push_str(&format!(" via {via} by {by} · {}", local(d.at, timezone)));
    }
    if let (SuggestionState::Snoozed, Some(until)) = (s.state, s.snoozed_until) {
        line.push_str(&format!("\nBack {}", local(until, timezone)));
    }
    Some(line)
}

pub fn approval_text(a: &Approval, timezone: Tz, markup: Markup) -> String {
    let mut text = format!(
        "🔐 {}\n{}\n\n→ {} · {} risk\nExpires {}",
        markup.bold(&format!("Approval A{}", a.id)),
        markup.escape(&shorten(&a.reason, MAX_WHY)),
        markup.escape(&shorten(&describe_action(&a.action), MAX_ACTION)),
        a.risk.as_str(),
        local(a.expires_at, timezone)
    );
    let outcome = match a.state {
        ApprovalState::Pending => None,
        ApprovalState::Approved => Some(format!("✅ {}", markup.bold("Approved"))),
        ApprovalState::Denied => Some(format!("🚫 {}", markup.bold("Denied"))),
        ApprovalState::Expired => Some(format!("⌛ {} — not run", markup.bold("Expired"))),
    };
    if let Some(outcome) = outcome {
        text.push_str("\n\n");
        text.push_str(&outcome);
        if let Some(d) = a.decision.as_ref().filter(|_| a.state != ApprovalState::Expired) {
            let (via, by) = (markup.escape(&d.via), markup.escape(&d.by));
            text.push_str(&format!(" via {via} by {by} · {}", local(d.at, timezone)));
        }
    }
    text
}

pub const REFUSAL: &str = "Sorry — only the owner of this assistant can answer that.";
pub const COMMAND_REFUSAL: &str = "Sorry — I only take commands from my owner.";

/// What a pairing code is replaced by in the recorded signal: a code is a credential, and
/// the ledger is read by reflection and shown on every surface.
pub const PAIRING_REDACTED: &str = "[pairing code]";

impl Command {
    /// The code of a pairing command: `/start CODE` (Telegram's deep link sends this) or
    /// `/pair CODE`. `None` for every other command, and for a bare `/start`.
    pub fn pairing_code(&self) -> Option<&str> {
        match self.name.as_str() {
            "start" | "pair" if !self.argument.trim().is_empty() => Some(self.argument.trim()),
            _ => None,
        }
    }
}

/// Someone sent a pairing code: the reply they see, in plain text. One wording for every
/// refusal, so a guesser learns nothing about which codes exist.
pub async fn pair(
    intelligence: &Intelligence,
    channel: loopgate_engine::pairing::PairChannel,
    claimant: &Claimant,
    code: &str,
) -> Result<String, StoreError> {
    use loopgate_engine::pairing::{Redeemed, Refusal};
    let platform = capitalize(channel.as_str());
    Ok(match intelligence.pair(channel, claimant, code).await? {
        Redeemed::Paired => format!(
            "✅ Paired: you are now the owner of this loopgate on {platform}. Suggestions and approvals come here; \
             try \"remind me in 10 minutes to stretch\"."
        ),
        Redeemed::AlreadyOwner => format!("You are already the owner of this loopgate on {platform}."),
        Redeemed::Refused(Refusal::RateLimited) => {
            "Too many wrong codes in the last hour: nothing was changed. Try again later.".into()
        }
        Redeemed::Refused(_) => format!(
            "That code is not valid (mistyped, expired or already used): nothing was changed. \
             Run `loopgate pair {}` on the machine for a new one.",
            channel.as_str()
        ),
    })
}

/// What a button press came to, in words for the presser (plain text, not markup).
#[derive(Debug, Clone, PartialEq)]
pub enum Pressed {
    /// Decided; the message will show it too.
    Done(String),
    /// Still running after the wait; the message shows the outcome when it is known.
    Running(String),
    /// Nothing changed: not allowed, already decided, gone, invalid.
    Refused(String),
    /// A button that opens something (snooze presets, back, the edit form) on a
    /// suggestion that is open and that the presser may answer.
    Open(Box<Suggestion>),
    /// Act on a reply that has no words yet: the owner's words are asked for (as Edit
    /// does), or the model's draft is shown to send, edit or discard.
    AskWords(Box<Suggestion>, Option<String>),
}

/// What pressing `button` does, for `claimant`. The engine decides and authorizes; a
/// decision that takes longer than `wait` carries on and is reported as running.
pub async fn press(
    intelligence: &Arc<Intelligence>,
    button: Button,
    claimant: &Claimant,
    timezone: Tz,
    wait: StdDuration,
) -> Result<Pressed, StoreError> {
    let response = match button {
        Button::Act(id) => match open(intelligence, id, claimant).await? {
            Pressed::Open(s) if loopgate_engine::request::needs_words(&s) => {
                // A draft the model cannot give within the platform's answer window is no
                // draft: the owner is asked for the words instead.
                let draft = within(wait, {
                    let (intelligence, s) = (intelligence.clone(), s.clone());
                    async move { intelligence.draft_reply(&s).await }
                })
                .await
                .flatten();
                if let Some(draft) = &draft {
                    intelligence.keep_draft(id, draft).await?;
                }
                return Ok(Pressed::AskWords(s, draft));
            }
            Pressed::Refused(why) => return Ok(Pressed::Refused(why)),
            _ => Response::Act,
        },
        Button::Send(id) => {
            let Pressed::Open(s) = open(intelligence, id, claimant).await? else {
                return open(intelligence, id, claimant).await;
            };
            let Some(draft) = intelligence.take_draft(id).await? else {
                return Ok(Pressed::Refused("This draft is gone; press Act for a new one.".into()));
            };
            match edit_response(&s, &draft) {
                Ok(response) => return respond(intelligence, id, response, claimant, timezone, wait).await,
                Err(why) => return Ok(Pressed::Refused(capitalize(&why))),
            }
        }
        Button::Discard(id) => {
            if let Pressed::Refused(why) = open(intelligence, id, claimant).await? {
                return Ok(Pressed::Refused(why));
            }
            intelligence.take_draft(id).await?;
            return Ok(Pressed::Done("Draft discarded.".into()));
        }
        Button::Dismiss(_) => Response::Dismiss,
        Button::Snooze(_, preset) => {
            Response::Snooze { until: preset.until(intelligence.store().clock().now(), timezone) }
        }
        Button::SnoozeMenu(id) | Button::Back(id) | Button::Edit(id) => return open(intelligence, id, claimant).await,
        Button::Approve(id) | Button::Deny(id) => {
            let verdict = if matches!(button, Button::Approve(_)) { Verdict::Approve } else { Verdict::Deny };
            return decide(intelligence, id, verdict, claimant, wait).await;
        }
        Button::Move(id, preset) => {
            let now = intelligence.store().clock().now();
            return Ok(match intelligence.move_reminder(id, preset.until(now, timezone), claimant).await? {
                Ok(at) => Pressed::Done(format!("⏰ Moved to {}", reminder_when(at, now, timezone))),
                Err(why) => Pressed::Refused(why),
            });
        }
        Button::Cancel(id) => {
            return Ok(match intelligence.cancel_reminder(id, claimant).await? {
                Ok(()) => Pressed::Done("Cancelled.".into()),
                Err(why) => Pressed::Refused(why),
            });
        }
    };
    let id = match button {
        Button::Act(id) | Button::Dismiss(id) | Button::Snooze(id, _) => id,
        _ => unreachable!("handled above"),
    };
    respond(intelligence, id, response, claimant, timezone, wait).await
}

/// Decides approval `id`; a decision that takes longer than `wait` carries on.
pub async fn decide(
    intelligence: &Arc<Intelligence>,
    id: i64,
    verdict: Verdict,
    claimant: &Claimant,
    wait: StdDuration,
) -> Result<Pressed, StoreError> {
    let (intelligence, claimant) = (intelligence.clone(), claimant.clone());
    let decided = within(wait, async move { intelligence.decide_from(id, verdict, &claimant).await }).await;
    Ok(match decided {
        None => Pressed::Running("Approved — running; the message will show the outcome.".into()),
        Some(Ok((approval, task))) => Pressed::Done(match task.state {
            TaskState::Succeeded => format!("Approved A{} — done.", approval.id),
            TaskState::Failed => format!("Approved A{} — it failed: {}", approval.id, task.error.unwrap_or_default()),
            TaskState::Cancelled => format!("Denied A{}: it will not run.", approval.id),
            state => format!("A{} {}: task {state}.", approval.id, approval.state),
        }),
        Some(Err(DecideError::Unauthorized { .. })) => Pressed::Refused(REFUSAL.into()),
        Some(Err(DecideError::NotFound(_))) => Pressed::Refused("This approval no longer exists.".into()),
        Some(Err(e @ DecideError::AlreadyDecided { .. })) => Pressed::Refused(capitalize(&e.to_string())),
        Some(Err(DecideError::Store(e))) => return Err(e),
    })
}

/// Answers suggestion `id` (a button, or the text of an edit).
pub async fn respond(
    intelligence: &Arc<Intelligence>,
    id: i64,
    response: Response,
    claimant: &Claimant,
    timezone: Tz,
    wait: StdDuration,
) -> Result<Pressed, StoreError> {
    let (intelligence, who) = (intelligence.clone(), claimant.clone());
    let answered = within(wait, async move { intelligence.respond_from(id, &response, &who).await }).await;
    Ok(match answered {
        None => Pressed::Running("Done — running; the message will show the outcome.".into()),
        Some(Ok(responded)) => Pressed::Done(describe_responded(&responded, timezone)),
        Some(Err(error)) => Pressed::Refused(refusal(error)?),
    })
}

/// Buttons that open something: nothing is decided yet, but only someone who may answer
/// gets it, and only while the suggestion is open.
async fn open(intelligence: &Intelligence, id: i64, claimant: &Claimant) -> Result<Pressed, StoreError> {
    if intelligence.authorize(claimant, &format!("suggestion:{id}")).is_none() {
        return Ok(Pressed::Refused(REFUSAL.into()));
    }
    let Some(suggestion) = intelligence.store().suggestion(id).await? else {
        return Ok(Pressed::Refused("This suggestion no longer exists.".into()));
    };
    if !suggestion.state.is_answerable() {
        let error = RespondError::AlreadyDecided {
            state: suggestion.state,
            decision: suggestion.decision.clone(),
            snoozed_until: suggestion.snoozed_until,
        };
        return Ok(Pressed::Refused(capitalize(&error.to_string())));
    }
    Ok(Pressed::Open(Box::new(suggestion)))
}

/// The edited action from the text the owner typed: the text replaces the action's text,
/// everything else about the action stays.
pub fn edit_response(suggestion: &Suggestion, text: &str) -> Result<Response, String> {
    let original = suggestion.edited_action.as_ref().unwrap_or(&suggestion.action);
    let action = loopgate_engine::suggestion::edited_action(original, &Value::String(text.trim().to_owned()))?;
    Ok(Response::Edit { action })
}

/// What a refused answer says; store errors go up.
pub fn refusal(error: RespondError) -> Result<String, StoreError> {
    Ok(match error {
        RespondError::Unauthorized { .. } => REFUSAL.into(),
        RespondError::NotFound(_) => "This suggestion no longer exists.".into(),
        e @ RespondError::AlreadyDecided { .. } => capitalize(&e.to_string()),
        RespondError::Invalid(why) => capitalize(&why),
        RespondError::Store(e) => return Err(e),
    })
}

pub fn describe_responded(responded: &Responded, timezone: Tz) -> String {
    let s = &responded.suggestion;
    let mut text = match s.state {
        SuggestionState::Snoozed => match s.snoozed_until {
            Some(until) => format!("Snoozed until {}.", until.with_timezone(&timezone).format("%a %d %b %H:%M")),
            None => "Snoozed.".into(),
        },
        SuggestionState::Dismissed => "Dismissed.".into(),
        SuggestionState::Edited => "Edited.".into(),
        _ => "Done.".into(),
    };
    if let Some(task) = &responded.task {
        text.push(' ');
        text.push_str(&match (task.state, task.approval_id) {
            (TaskState::AwaitingApproval, Some(approval)) => format!("It waits for approval A{approval}."),
            (TaskState::Succeeded, _) => "It ran.".into(),
            (TaskState::Failed, _) => format!("It did not run: {}", task.error.clone().unwrap_or_default()),
            (state, _) => format!("Task {state}."),
        });
    }
    text
}

pub fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The chat commands, the same on every chat platform: `/suggestions`, `/memory`,
/// `/remember`, `/pause`, `/resume`, `/stop`, `/help`.
pub struct Commands<'a> {
    pub intelligence: &'a Intelligence,
    pub markup: Markup,
    pub timezone: Tz,
    /// The platform's name, for the log.
    pub channel: &'static str,
}

impl Commands<'_> {
    /// Whether `claimant` may give commands.
    pub fn allowed(&self, claimant: Option<&Claimant>, name: &str) -> bool {
        claimant.is_some_and(|c| self.intelligence.authorize(c, &format!("command:{name}")).is_some())
    }

    /// Runs one command (already authorized) and says what came of it, in markup.
    pub async fn run(&self, name: &str, argument: &str) -> Result<String, StoreError> {
        let m = self.markup;
        let argument = argument.trim();
        Ok(match name {
            "start" | "help" => self.help(),
            "suggestions" => self.list_suggestions().await?,
            "memory" if argument.is_empty() => format!("Usage: {}", m.code("/memory <words>")),
            "memory" => self.search_memory(argument).await?,
            "remember" if argument.is_empty() => format!("Usage: {}", m.code("/remember <text>")),
            "remember" => {
                let candidate = MemoryCandidate::from_owner(kind_of_note(argument), argument.to_owned());
                let kind = candidate.kind;
                match self.intelligence.store().remember(candidate).await? {
                    RememberOutcome::Rejected { reason } => {
                        format!("Not remembered: {}", m.escape(&reason.to_string()))
                    }
                    _ => format!("Remembered ({}): {}", kind.as_str(), m.escape(argument)),
                }
            }
            "pause" => {
                self.intelligence.set_paused(true).await?;
                tracing::warn!(channel = self.channel, "kill switch: paused from chat");
                "⏸ Paused: no new suggestions and no tasks run until /resume.".into()
            }
            "stop" => {
                self.intelligence.set_paused(true).await?;
                tracing::warn!(channel = self.channel, "kill switch: stopped from chat");
                "⏹ Stopped: nothing is dispatched and no task runs until /resume.".into()
            }
            "resume" => {
                self.intelligence.set_paused(false).await?;
                tracing::warn!(channel = self.channel, "kill switch: resumed from chat");
                "▶️ Resumed.".into()
            }
            other => format!("I don't know /{}. Try /help.", m.escape(other)),
        })
    }

    fn help(&self) -> String {
        let m = self.markup;
        format!(
            "{}\n\n/suggestions — what is waiting for you\n\
             /memory {} — what I remember about something\n\
             /remember {} — remember something\n\
             /pause, /stop, /resume — the kill switch",
            m.escape(loopgate_engine::request::capabilities()),
            m.escape("<words>"),
            m.escape("<text>"),
        )
    }

    async fn list_suggestions(&self) -> Result<String, StoreError> {
        let m = self.markup;
        let store = self.intelligence.store();
        let open = store.suggestions(&[SuggestionState::Active, SuggestionState::Snoozed], 20).await?;
        if open.is_empty() {
            return Ok("Nothing waiting for you.".into());
        }
        let mut text = m.bold("Open suggestions");
        for s in open {
            text.push_str(&format!("\n#{} {}", s.id, m.escape(&s.title)));
            if let (SuggestionState::Snoozed, Some(until)) = (s.state, s.snoozed_until) {
                let local = until.with_timezone(&self.timezone).format("%a %H:%M");
                text.push_str(&format!(" (snoozed until {local})"));
            }
        }
        Ok(text)
    }

    async fn search_memory(&self, query: &str) -> Result<String, StoreError> {
        let m = self.markup;
        let store = self.intelligence.store();
        let hits = store.search_memories(&MemoryQuery { text: query.to_owned(), kind: None, limit: 5 }).await?;
        if hits.is_empty() {
            return Ok(format!("Nothing remembered about “{}”.", m.escape(query)));
        }
        let mut text = m.bold(&format!("Remembered about “{}”", m.escape(query)));
        for hit in hits {
            let memory = hit.memory;
            text.push_str(&format!("\n• [{}] {} (#{})", memory.kind.as_str(), m.escape(&memory.content), memory.id));
        }
        Ok(text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Lowercase, without the slash and without `@botname`.
    pub name: String,
    pub argument: String,
}

/// `/memory@loopgate_bot invoices` → `memory`, `invoices`.
pub fn parse_command(text: &str) -> Option<Command> {
    let rest = text.trim_start().strip_prefix('/')?;
    let (head, argument) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let name = head.split('@').next().unwrap_or_default().to_ascii_lowercase();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some(Command { name, argument: argument.trim().to_owned() })
}

/// How to answer what the owner said to loopgate in chat.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A reminder was set: acknowledge it with its time and buttons to move or cancel it.
    Acknowledge(Box<Suggestion>),
    /// Answer with this (plain text, to escape).
    Text(String),
    /// A conversation, not a request: the model answers, or a line without one.
    Chat,
    /// Nothing to say: the message already posted shows the change (an edited request).
    Nothing,
}

/// Carries out what the owner's message asks (a request is a command, taken at once) and
/// says how to answer it. `said.edits` marks an edit of an earlier message.
pub async fn owner_said(
    intelligence: &Intelligence,
    said: &loopgate_engine::request::Said<'_>,
) -> Result<Reply, StoreError> {
    use loopgate_engine::request::Handled;
    Ok(match intelligence.handle_request(said).await? {
        Handled::Reminder { moved: true, .. } | Handled::Cancelled { .. } => Reply::Nothing,
        Handled::Reminder { id, .. } => match intelligence.store().suggestion(id).await? {
            Some(s) => Reply::Acknowledge(Box::new(s)),
            None => Reply::Nothing,
        },
        Handled::AskWhen { task } => Reply::Text(format!("When should I remind you to {task}?")),
        Handled::Answer(text) => Reply::Text(text),
        Handled::NotARequest if said.edits.is_some() => Reply::Nothing,
        Handled::NotARequest => Reply::Chat,
    })
}

/// The owner's chat message to answer, from any platform.
pub struct ChatTurn {
    pub source: &'static str,
    pub conversation: String,
    pub owner: String,
    pub text: String,
    /// The outbox key of the answer (one per message: a redelivery answers nothing twice).
    pub key: String,
}

impl ChatTurn {
    /// Answers in its own task (a model may take seconds; the platform's updates keep
    /// flowing), through the outbox; `payload` turns the answer into the platform's sends
    /// (one, or ordered parts when it is longer than a message).
    pub fn answer_later(
        self,
        intelligence: Arc<Intelligence>,
        store: loopgate_engine::Store,
        wakes: crate::Wakes,
        payload: impl FnOnce(String) -> Vec<Value> + Send + 'static,
    ) {
        tokio::spawn(async move {
            if store.outbound_by_key(self.source, &self.key).await.ok().flatten().is_some() {
                return;
            }
            let answer = intelligence.converse(self.source, &self.conversation, &self.owner, &self.text).await;
            if let Some(why) = &answer.fallback {
                tracing::info!(channel = self.source, why, "chat answered without the model");
            }
            let parts = parts(self.source, &self.key, payload(answer.text));
            match store.enqueue_all(&parts).await {
                Ok(_) => wakes.outbox.notify_one(),
                Err(error) => tracing::error!(%error, "a chat answer could not be queued"),
            }
        });
    }
}

pub use loopgate_engine::request::kind_of_note;

/// The sends of one answer as outbox rows, in order: the first under `key`, the next under
/// `key:2`, `key:3`, … (queued together, so they go out together and in order).
pub fn parts(channel: &str, key: &str, payloads: Vec<Value>) -> Vec<loopgate_engine::outbox::NewOutbound> {
    payloads
        .into_iter()
        .enumerate()
        .map(|(n, payload)| loopgate_engine::outbox::NewOutbound {
            channel: channel.to_owned(),
            dedupe_key: if n == 0 { key.to_owned() } else { format!("{key}:{}", n + 1) },
            payload,
        })
        .collect()
}

/// Runs `work` in its own task and waits at most `limit` for it; it carries on either way.
pub async fn within<T: Send + 'static>(
    limit: StdDuration,
    work: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let handle = tokio::spawn(work);
    tokio::time::timeout(limit, handle).await.ok().and_then(Result::ok)
}

/// Sleeps, unless shutdown comes first; says whether it did.
pub async fn sleep_or_stop(wait: StdDuration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(wait) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_button_fits_both_platforms_and_reads_back() {
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
    fn actions_read_as_sentences() {
        let message =
            json!({"kind": "message", "target": {"channel": "telegram", "conversation": "42"}, "text": "On my way"});
        assert_eq!(describe_action(&message), "message to telegram:42: On my way");
        assert_eq!(describe_action(&json!({"kind": "webhook", "endpoint": "deploy"})), "webhook deploy");
        assert_eq!(describe_action(&json!({"kind": "note", "text": "x"})), "note: x");
        assert_eq!(describe_action(&json!("garbage")), "action");
    }

    #[test]
    fn markup_characters_render_literally() {
        assert_eq!(Markup::Html.escape("*_[`<b>&amp;"), "*_[`&lt;b&gt;&amp;amp;");
        assert_eq!(
            Markup::Markdown.escape("**hi** <@123> `x` ||spoiler|| [a](b) \\"),
            r"\*\*hi\*\* \<@123\> \`x\` \|\|spoiler\|\| \[a\]\(b\) \\"
        );
    }
}
