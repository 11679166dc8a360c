//! The deterministic reflector's detectors: open loops found in recent signals without a
//! model. Each is a pure function from signals to ideas, tested on varied phrasing.
//!
//! - [`reminders`]: the owner asked to be reminded ("remind me to … tomorrow at 9").
//! - [`promises`]: the owner promised something with a deadline ("I'll send it by Friday").
//! - [`unanswered_questions`]: someone asked the owner something and got no reply.
//! - [`unreplied_mail`]: mail from someone the owner usually answers, still unanswered.
//! - [`watched`]: a message about something the owner asked to watch for.
//! - [`super::habits::recurring`]: the owner's weekly habit is due (its own module).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::when;
use crate::signal::{Signal, SignalId, Trust};

#[derive(Debug, Clone)]
pub struct Context {
    pub now: DateTime<Utc>,
    pub timezone: Tz,
    /// How long a question may wait before it counts as unanswered.
    pub answer_grace: Duration,
    /// How long an approval may wait before it is worth a reminder.
    pub approval_ageing: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdeaKind {
    Reminder,
    Promise,
    UnansweredQuestion,
    UnrepliedMail,
    WatchItem,
    RecurringTask,
    AgeingApproval,
}

/// Which reflector thought of an idea.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reflector {
    #[default]
    Deterministic,
    /// The owner's model; its ideas are only proposals, judged like every other.
    Model,
}

impl Reflector {
    pub fn as_str(self) -> &'static str {
        match self {
            Reflector::Deterministic => "deterministic",
            Reflector::Model => "model",
        }
    }
}

/// A candidate next action, before critique.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Idea {
    pub reflector: Reflector,
    pub kind: IdeaKind,
    pub title: String,
    pub why_now: String,
    /// When it is due, if the words said.
    pub due: Option<DateTime<Utc>>,
    pub evidence: Vec<SignalId>,
    pub confidence: f64,
    /// The same loop found in two runs has the same key.
    pub key: String,
    /// What it is about beyond this one loop (a conversation): a newer idea on the same
    /// topic replaces an older one still open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// What acting on it would do, `{kind, …}`, for the owner to accept or edit; policy
    /// decides whether and how it may run.
    pub action: serde_json::Value,
}

/// Acting means noting it in memory ("done: call the plumber").
pub(crate) fn note(text: String) -> serde_json::Value {
    serde_json::json!({"kind": "note", "text": text})
}

/// Acting means answering where the signal came from; the words are the owner's to write.
fn reply_to(signal: &Signal) -> serde_json::Value {
    serde_json::json!({
        "kind": "message",
        "target": {
            "channel": signal.source.as_str(),
            "conversation": signal.conversation.as_ref().map(|c| c.id.clone()),
            // An edit's own id ("chat:message:edit:…") is no message to answer: the
            // message it edited is.
            "reply_to": signal.external_id.as_deref().map(|id| id.split(":edit:").next().unwrap_or(id).to_owned()),
        },
        "text": "",
    })
}

const REMINDER_TRIGGERS: &[&[&str]] = &[
    &["remind", "me"],
    &["remind", "us"],
    &["reminder"],
    &["don't", "let", "me", "forget"],
    &["dont", "let", "me", "forget"],
    &["do", "not", "let", "me", "forget"],
    &["note", "to", "self"],
];

const COMMITMENTS: &[&[&str]] = &[
    &["i'll"],
    &["ill"],
    &["i", "will"],
    &["i'm", "going", "to"],
    &["im", "going", "to"],
    &["i", "am", "going", "to"],
    &["let", "me"],
    &["i", "can"],
    &["will"],
];

/// Sent from one of the owner's own accounts.
fn by_owner_account(signal: &Signal) -> bool {
    signal.actor.as_ref().is_some_and(|a| a.is_owner)
}

/// The owner's own words: their account on a channel, or typed at their own shell.
pub(crate) fn from_owner(signal: &Signal) -> bool {
    by_owner_account(signal) || (signal.actor.is_none() && signal.trust == Trust::Trusted)
}

/// Words with their original spelling, split as [`when::words`] splits them, so indexes
/// agree.
fn original_words(text: &str) -> Vec<&str> {
    text.split(|c: char| c.is_whitespace() || ",;!?()\"".contains(c))
        .map(|w| w.trim_matches(|c: char| c == '.' || c == '\'' || c == ':'))
        .filter(|w| !w.is_empty())
        .collect()
}

fn find_phrase(words: &[String], phrase: &[&str]) -> Option<usize> {
    (0..words.len()).find(|&i| phrase.iter().enumerate().all(|(k, p)| words.get(i + k).is_some_and(|w| w == p)))
}

/// The words from `from` on, without the time expression and without filler at the
/// start, in their original spelling.
fn task_words(original: &[&str], lower: &[String], from: usize, time: Option<(usize, usize)>) -> String {
    const FILLER: &[&str] =
        &["to", "about", "that", "of", "please", "pls", "plz", "me", "i", "need", "should", "must", "-", ":"];
    let mut kept: Vec<&str> = Vec::new();
    for (i, word) in original.iter().enumerate().skip(from) {
        if time.is_some_and(|(start, end)| (start..end).contains(&i)) {
            continue;
        }
        if kept.is_empty() && FILLER.contains(&lower[i].as_str()) {
            continue;
        }
        kept.push(word);
    }
    // A trailing connective left behind by the cut: "call mom at" → "call mom".
    while kept.last().is_some_and(|w| ["at", "on", "by", "in", "and", "the"].contains(&w.to_lowercase().as_str())) {
        kept.pop();
    }
    kept.join(" ")
}

/// A time as the owner reads it, in their zone: "Mon 30 Nov 09:00".
pub fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%a %-d %b %H:%M").to_string()
}

pub fn excerpt(text: &str) -> String {
    bounded(text, 80)
}

/// The longest title an idea gets, in characters: a title is a line on a phone, and the
/// whole request stays in the action.
pub const MAX_TITLE: usize = 160;

/// `text` on one line, in at most `max` characters (an ellipsis marks a cut).
pub fn bounded(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        format!("{}…", one_line.chars().take(max - 1).collect::<String>())
    }
}

/// Where a request to be reminded starts, and how many words its trigger has.
fn reminder_trigger(lower: &[String]) -> Option<(usize, usize)> {
    REMINDER_TRIGGERS.iter().find_map(|t| find_phrase(lower, t).map(|i| (i, t.len())))
}

/// A request to be reminded, read from `text` said at `said_at`: what (the task, in the
/// owner's spelling, without the trigger and the time) and when, if a time was given.
/// `None` when the text asks for no reminder, or for one without a task.
pub fn reminder_request(text: &str, said_at: DateTime<Utc>, timezone: Tz) -> Option<(String, Option<DateTime<Utc>>)> {
    let lower = when::words(text);
    let original = original_words(text);
    let (at, trigger) = reminder_trigger(&lower)?;
    let found = when::find(text, said_at, timezone);
    let time = found.as_ref().map(|w| w.words);
    let task = task_words(&original, &lower, at + trigger, time);
    (!task.is_empty()).then(|| (task, found.map(|w| w.at)))
}

/// Whether the text asks loopgate for a reminder (a request to loopgate, not a task done).
pub(crate) fn asks_for_reminder(text: &str) -> bool {
    // Every trigger has one of these words; most messages have none, and splitting them
    // into words is what costs when weeks of them are looked at.
    let lower = text.to_lowercase();
    ["remind", "forget", "self"].iter().any(|w| lower.contains(w)) && reminder_trigger(&when::words(text)).is_some()
}

/// "remind me to call the plumber tomorrow at 9", "can you remind me about the dentist on
/// Friday", "don't let me forget to water the plants tonight", "note to self: renew passport".
pub fn reminders(signals: &[Signal], ctx: &Context) -> Vec<Idea> {
    let mut ideas = Vec::new();
    // An edit is the owner's request changed: handled as a command when it arrived (it
    // updates or cancels the reminder of the message it edits), never a second reminder.
    for signal in signals.iter().filter(|s| from_owner(s) && s.kind.as_str() != "message_edit") {
        // "remind me in 2 hours" means two hours after it was said, not after now.
        let Some((task, due)) = reminder_request(&signal.text, signal.occurred_at, ctx.timezone) else { continue };
        let why_now = match due {
            Some(due) if due <= ctx.now => format!("you asked to be reminded at {}", local(due, ctx.timezone)),
            Some(due) => {
                format!("you asked to be reminded at {} (in {})", local(due, ctx.timezone), humanize(due - ctx.now))
            }
            None => format!("you asked to be reminded on {}, without a time", local(signal.occurred_at, ctx.timezone)),
        };
        ideas.push(Idea {
            reflector: crate::reflect::detect::Reflector::Deterministic,
            kind: IdeaKind::Reminder,
            title: bounded(&format!("Reminder: {task}"), MAX_TITLE),
            why_now,
            due,
            evidence: vec![signal.id],
            confidence: if due.is_some() { 0.9 } else { 0.6 },
            key: format!("reminder:{}", signal.id),
            topic: None,
            action: note(format!("Done: {task}")),
        });
    }
    ideas
}

/// "I'll send you the report by Friday", "will get back to you tomorrow", "let me check and
/// come back to you next week", "I can have the draft ready by EOD". Only with a deadline,
/// only the owner's, and not once the owner wrote in the same conversation that it is done.
pub fn promises(signals: &[Signal], ctx: &Context) -> Vec<Idea> {
    const DONE: &[&str] = &["done", "sent", "attached", "here's", "here", "finished", "delivered", "shared"];
    let mut ideas = Vec::new();
    for signal in signals.iter().filter(|s| by_owner_account(s)) {
        let lower = when::words(&signal.text);
        let Some((at, len)) = COMMITMENTS.iter().find_map(|c| find_phrase(&lower, c).map(|i| (i, c.len()))) else {
            continue;
        };
        let Some(found) = when::find(&signal.text, signal.occurred_at, ctx.timezone) else { continue };
        if found.words.0 < at {
            continue;
        }
        let original = original_words(&signal.text);
        let what = task_words(&original, &lower, at + len, Some(found.words));
        if what.split_whitespace().count() < 2 {
            continue;
        }
        let conversation = signal.conversation.as_ref().map(|c| c.id.as_str());
        let closed = signals.iter().any(|later| {
            later.occurred_at > signal.occurred_at
                && by_owner_account(later)
                && later.conversation.as_ref().map(|c| c.id.as_str()) == conversation
                && when::words(&later.text).iter().any(|w| DONE.contains(&w.as_str()))
        });
        if closed {
            continue;
        }
        let to = signal
            .conversation
            .as_ref()
            .and_then(|c| c.title.clone())
            .unwrap_or_else(|| conversation.unwrap_or("someone").to_owned());
        let overdue = found.at <= ctx.now;
        let full = format!("You promised {to}: {what}");
        ideas.push(Idea {
            reflector: crate::reflect::detect::Reflector::Deterministic,
            kind: IdeaKind::Promise,
            title: bounded(&full, MAX_TITLE),
            action: serde_json::json!({"kind": "reminder", "text": full, "at": found.at}),
            why_now: if overdue {
                format!("it was due {} and nothing says it was done", local(found.at, ctx.timezone))
            } else {
                format!("due {} (in {})", local(found.at, ctx.timezone), humanize(found.at - ctx.now))
            },
            due: Some(found.at),
            evidence: vec![signal.id],
            confidence: if lower.get(found.words.0).is_some_and(|w| w == "by" || w == "before") { 0.8 } else { 0.65 },
            key: format!("promise:{}", signal.id),
            topic: None,
        });
    }
    ideas
}

/// Phrases that ask the reader for something.
const ASKING: &[&[&str]] = &[
    &["can", "you"],
    &["could", "you"],
    &["would", "you"],
    &["will", "you"],
    &["do", "you"],
    &["did", "you"],
    &["are", "you"],
    &["have", "you"],
    &["any", "update"],
    &["any", "news"],
    &["let", "me", "know"],
    &["please", "confirm"],
];

/// Someone asked the owner something — a question mark, or "can you…", "could you…",
/// "any update…" — in a conversation the owner takes part in (or a direct one), and the
/// owner has not written there since, for longer than the grace period.
pub fn unanswered_questions(signals: &[Signal], ctx: &Context) -> Vec<Idea> {
    open_questions(signals, ctx).0
}

/// When the earliest question still inside its grace period becomes unanswered, if the
/// owner does not reply first: the heartbeat's next follow-up.
pub fn next_question_ripens(signals: &[Signal], ctx: &Context) -> Option<DateTime<Utc>> {
    open_questions(signals, ctx).1
}

fn asks(signal: &Signal, lower: &[String]) -> bool {
    signal.text.contains('?') || ASKING.iter().any(|p| find_phrase(lower, p).is_some())
}

fn open_questions(signals: &[Signal], ctx: &Context) -> (Vec<Idea>, Option<DateTime<Utc>>) {
    let conversation_of =
        |s: &Signal| s.conversation.as_ref().map(|c| c.thread_id.clone().unwrap_or_else(|| c.id.clone()));
    // The owner's latest message per conversation.
    let mut owner_last: HashMap<String, DateTime<Utc>> = HashMap::new();
    for s in signals.iter().filter(|s| by_owner_account(s)) {
        if let Some(c) = conversation_of(s) {
            let last = owner_last.entry(c).or_insert(s.occurred_at);
            *last = (*last).max(s.occurred_at);
        }
    }
    let mut ideas = Vec::new();
    let mut next = None;
    for signal in signals {
        let Some(actor) = signal.actor.as_ref().filter(|a| !a.is_owner) else { continue };
        let Some(conversation) = conversation_of(signal) else { continue };
        let lower = when::words(&signal.text);
        if !asks(signal, &lower) {
            continue;
        }
        let direct =
            signal.conversation.as_ref().is_some_and(|c| c.id == actor.id) || signal.family == crate::Family::Email;
        let owner_there = owner_last.get(&conversation);
        if !direct && owner_there.is_none() {
            continue;
        }
        if owner_there.is_some_and(|last| *last > signal.occurred_at) {
            continue;
        }
        let waiting = ctx.now - signal.occurred_at;
        if waiting < ctx.answer_grace {
            let ripens = signal.occurred_at + ctx.answer_grace;
            next = Some(next.map_or(ripens, |n: DateTime<Utc>| n.min(ripens)));
            continue;
        }
        let who = actor.name.clone().unwrap_or_else(|| actor.id.clone());
        ideas.push(Idea {
            reflector: crate::reflect::detect::Reflector::Deterministic,
            kind: IdeaKind::UnansweredQuestion,
            title: format!("Reply to {who}: “{}”", excerpt(&signal.text)),
            why_now: format!("{who} asked {} ago and you have not replied there since", humanize(waiting)),
            due: None,
            evidence: vec![signal.id],
            confidence: if signal.text.contains('?') { 0.75 } else { 0.6 },
            key: format!("question:{}", signal.id),
            topic: Some(format!("conversation:{}:{conversation}", signal.source)),
            action: reply_to(signal),
        });
    }
    (ideas, next)
}

/// Whether a new signal may need the owner: someone asking them something, something
/// urgent, or the owner asking to be reminded or promising something. Cheap, so the
/// heartbeat can judge every new signal.
pub fn actionable(signal: &Signal) -> bool {
    let lower = when::words(&signal.text);
    if from_owner(signal) {
        REMINDER_TRIGGERS.iter().any(|t| find_phrase(&lower, t).is_some())
            || (by_owner_account(signal) && COMMITMENTS.iter().any(|c| find_phrase(&lower, c).is_some()))
    } else {
        signal.urgency >= crate::signal::Urgency::High || asks(signal, &lower)
    }
}

/// Mail from someone the owner usually answers (they replied after this person in at
/// least two threads of the evidence), left without a reply past the grace period. Mail
/// that asks a question is already an unanswered question and is left to that detector.
pub fn unreplied_mail(signals: &[Signal], ctx: &Context) -> Vec<Idea> {
    let thread = |s: &Signal| s.conversation.as_ref().map(|c| c.thread_id.clone().unwrap_or_else(|| c.id.clone()));
    let mail = |s: &&Signal| s.family == crate::Family::Email;
    // Threads where the owner wrote after each sender.
    let mut answered: HashMap<&str, HashSet<String>> = HashMap::new();
    for s in signals.iter().filter(mail) {
        let (Some(actor), Some(t)) = (s.actor.as_ref().filter(|a| !a.is_owner), thread(s)) else { continue };
        let replied = signals.iter().filter(mail).any(|later| {
            by_owner_account(later) && later.occurred_at > s.occurred_at && thread(later).as_deref() == Some(&t)
        });
        if replied {
            answered.entry(actor.id.as_str()).or_default().insert(t);
        }
    }
    let mut ideas = Vec::new();
    for s in signals.iter().filter(mail) {
        let (Some(actor), Some(t)) = (s.actor.as_ref().filter(|a| !a.is_owner), thread(s)) else { continue };
        if answered.get(actor.id.as_str()).is_none_or(|threads| threads.len() < 2) {
            continue;
        }
        if asks(s, &when::words(&s.text)) {
            continue;
        }
        let replied = signals.iter().any(|later| {
            by_owner_account(later) && later.occurred_at > s.occurred_at && thread(later).as_deref() == Some(&t)
        });
        // Only the latest unanswered mail of a thread.
        let newer = signals.iter().filter(mail).any(|later| {
            later.occurred_at > s.occurred_at && thread(later).as_deref() == Some(&t) && !by_owner_account(later)
        });
        let waiting = ctx.now - s.occurred_at;
        if replied || newer || waiting < ctx.answer_grace {
            continue;
        }
        let who = actor.name.clone().unwrap_or_else(|| actor.id.clone());
        ideas.push(Idea {
            reflector: crate::reflect::detect::Reflector::Deterministic,
            kind: IdeaKind::UnrepliedMail,
            title: format!("Reply to {who}: “{}”", excerpt(&s.text)),
            why_now: format!("{who} wrote {} ago; you usually answer them and have not yet", humanize(waiting)),
            due: None,
            evidence: vec![s.id],
            confidence: 0.7,
            key: format!("mail:{}", s.id),
            topic: Some(format!("conversation:{}:{t}", s.source)),
            action: reply_to(s),
        });
    }
    ideas
}

/// Signals matching something the owner asked to watch for (a `watch_item` memory): most
/// of its words appear in someone else's message that arrived after the owner asked.
pub fn watched(signals: &[Signal], memories: &[crate::memory::Memory], _ctx: &Context) -> Vec<Idea> {
    let mut ideas = Vec::new();
    for memory in memories.iter().filter(|m| m.kind == crate::memory::MemoryKind::WatchItem) {
        let wanted = content_words(&memory.content);
        for s in signals.iter().filter(|s| !from_owner(s) && s.occurred_at >= memory.created_at) {
            if !mostly_within(&wanted, &content_words(&s.text)) {
                continue;
            }
            let who = s.actor.as_ref().map_or("someone".to_owned(), |a| a.name.clone().unwrap_or_else(|| a.id.clone()));
            let full = format!("Watched: {} — {who}: “{}”", memory.content, excerpt(&s.text));
            ideas.push(Idea {
                reflector: crate::reflect::detect::Reflector::Deterministic,
                kind: IdeaKind::WatchItem,
                title: bounded(&full, MAX_TITLE),
                action: note(full),
                why_now: format!("you asked to watch for “{}”, and {who} just wrote about it", memory.content),
                due: None,
                evidence: vec![s.id],
                confidence: 0.8,
                key: format!("watch:{}:{}", memory.id, s.id),
                topic: None,
            });
        }
    }
    ideas
}

/// Approvals left pending longer than [`Context::approval_ageing`]: the owner should
/// decide before they expire (an expired approval never runs). The closer the expiry, the
/// surer the idea.
pub fn ageing_approvals(approvals: &[crate::actions::Approval], ctx: &Context) -> Vec<Idea> {
    let mut ideas = Vec::new();
    for approval in approvals.iter().filter(|a| a.state == crate::actions::ApprovalState::Pending) {
        let waited = ctx.now - approval.created_at;
        let left = approval.expires_at - ctx.now;
        if waited < ctx.approval_ageing || left <= Duration::zero() {
            continue;
        }
        let what = describe_action(&approval.action);
        let lifetime = (approval.expires_at - approval.created_at).num_seconds().max(1) as f64;
        let used = waited.num_seconds() as f64 / lifetime;
        ideas.push(Idea {
            reflector: crate::reflect::detect::Reflector::Deterministic,
            kind: IdeaKind::AgeingApproval,
            title: bounded(&format!("Waiting for your approval: {what}"), MAX_TITLE),
            why_now: format!(
                "asked {} ago ({}); it expires in {} and will not run unless you approve it",
                humanize(waited),
                approval.reason,
                humanize(left)
            ),
            due: Some(approval.expires_at),
            evidence: Vec::new(),
            confidence: (0.6 + 0.35 * used).min(0.95),
            key: format!("approval:{}", approval.id),
            // Deciding the approval retires this reminder of it.
            topic: Some(format!("approval:{}", approval.id)),
            action: note(format!("Looked at approval {}: {what}", approval.id)),
        });
    }
    ideas
}

/// "message to telegram:42: “On my way”", "webhook deploy".
fn describe_action(action: &serde_json::Value) -> String {
    let kind = action.get("kind").and_then(|k| k.as_str()).unwrap_or("action");
    let target = loopgate_policies::ActionView::of(action).map(|v| v.target).unwrap_or_default();
    let text = action.get("text").and_then(|t| t.as_str()).map(excerpt).filter(|t| !t.is_empty());
    match (target.is_empty() || target == "self", text) {
        (true, Some(text)) => format!("{kind}: “{text}”"),
        (true, None) => kind.to_owned(),
        (false, Some(text)) => format!("{kind} to {target}: “{text}”"),
        (false, None) if kind == "message" => format!("message to {target}"),
        (false, None) => format!("{kind} {target}"),
    }
}

/// Words of three letters or more, lowercased: what two texts must share to be "alike".
pub(crate) fn content_words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 3).map(str::to_lowercase).collect()
}

/// Whether most (60 %) of `wanted` appears in `have`; never for nothing wanted.
pub(crate) fn mostly_within(wanted: &HashSet<String>, have: &HashSet<String>) -> bool {
    let shared = wanted.iter().filter(|w| have.contains(*w)).count();
    !wanted.is_empty() && shared * 10 >= wanted.len() * 6
}

/// "3 hours", "2 days", "40 minutes".
pub fn humanize(span: Duration) -> String {
    let minutes = span.num_minutes().max(0);
    let (n, unit) = match minutes {
        0..=89 => (minutes.max(1), "minute"),
        90..=1439 => ((minutes + 30) / 60, "hour"),
        _ => ((minutes + 720) / 1440, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reflect::fixtures::{S, ctx, signal};
    use crate::signal::Family;

    fn owner(id: SignalId, minutes_ago: i64, text: &str) -> Signal {
        signal(S { id, who: Some(("me", true)), chat: Some(("c1", Some("Dana"))), minutes_ago, text })
    }

    fn local_due(idea: &Idea) -> Option<String> {
        idea.due.map(|d| d.with_timezone(&chrono_tz::Europe::Berlin).format("%a %d %H:%M").to_string())
    }

    #[test]
    fn reminders_in_many_phrasings() {
        let cases = [
            ("remind me to call the plumber tomorrow at 9", "Reminder: call the plumber", Some("Thu 19 09:00")),
            (
                "Can you remind me about the dentist appointment on Friday?",
                "Reminder: the dentist appointment",
                Some("Fri 20 09:00"),
            ),
            ("pls remind me in 2 hours to check the oven", "Reminder: check the oven", Some("Wed 18 12:05")),
            ("Don't let me forget to water the plants tonight", "Reminder: water the plants", Some("Wed 18 21:00")),
            ("note to self: renew passport next week", "Reminder: renew passport", Some("Mon 23 09:00")),
            ("Reminder: pay rent on the 1st", "Reminder: pay rent", Some("Tue 01 09:00")),
            ("remind me to buy milk", "Reminder: buy milk", None),
        ];
        for (text, title, due) in cases {
            let ideas = reminders(&[owner(7, 10, text)], &ctx());
            assert_eq!(ideas.len(), 1, "{text}");
            assert_eq!(ideas[0].title, title, "{text}");
            assert_eq!(local_due(&ideas[0]).as_deref(), due, "{text}");
            assert_eq!(ideas[0].evidence, [7]);
            assert_eq!(ideas[0].kind, IdeaKind::Reminder);
        }
    }

    #[test]
    fn only_the_owners_own_requests_are_reminders() {
        let dana = signal(S {
            id: 1,
            who: Some(("dana", false)),
            chat: Some(("c1", None)),
            minutes_ago: 5,
            text: "remind me to send you the invoice",
        });
        let said = owner(2, 5, "I reminded him yesterday about the invoice");
        let empty = owner(3, 5, "remind me");
        let mut shell = owner(4, 5, "remind me to stretch in 30 minutes");
        shell.actor = None;
        shell.trust = Trust::Trusted;
        let ideas = reminders(&[dana, said, empty, shell], &ctx());
        assert_eq!(ideas.iter().map(|i| i.evidence[0]).collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn a_due_reminder_says_so() {
        let ideas = reminders(&[owner(1, 180, "remind me in 1 hour to move the car")], &ctx());
        assert!(ideas[0].due.unwrap() < ctx().now);
        assert!(ideas[0].why_now.starts_with("you asked to be reminded at Wed 18 Nov 08:15"), "{}", ideas[0].why_now);
    }

    #[test]
    fn promises_with_deadlines() {
        let cases = [
            ("I'll send you the report by Friday", "You promised Dana: send you the report", "Fri 20 09:00"),
            ("Will get back to you tomorrow", "You promised Dana: get back to you", "Thu 19 09:00"),
            (
                "let me check with finance and come back to you next week",
                "You promised Dana: check with finance and come back to you",
                "Mon 23 09:00",
            ),
            ("I'm going to finish the slides before EOD", "You promised Dana: finish the slides", "Wed 18 17:00"),
            ("ok, I will call you at 5pm", "You promised Dana: call you", "Wed 18 17:00"),
        ];
        for (text, title, due) in cases {
            let ideas = promises(&[owner(3, 20, text)], &ctx());
            assert_eq!(ideas.len(), 1, "{text}");
            assert_eq!(ideas[0].title, title, "{text}");
            assert_eq!(local_due(&ideas[0]).as_deref(), Some(due), "{text}");
        }
    }

    #[test]
    fn not_promises() {
        let dana = signal(S {
            id: 1,
            who: Some(("dana", false)),
            chat: Some(("c1", None)),
            minutes_ago: 5,
            text: "I'll send it tomorrow",
        });
        let no_deadline = owner(2, 5, "I'll be there");
        let kept = owner(3, 60, "I'll send you the contract by Friday");
        let done = owner(4, 10, "Sent! Here's the contract.");
        let ideas = promises(&[dana, no_deadline, kept, done], &ctx());
        assert!(ideas.is_empty(), "{ideas:?}");
    }

    #[test]
    fn a_question_edited_is_answered_on_the_message_it_edited() {
        let mut asked = signal(S {
            id: 2,
            who: Some(("dana", false)),
            chat: Some(("c1", Some("Team"))),
            minutes_ago: 300,
            text: "Can you review the budget draft?",
        });
        asked.external_id = Some("-100:57:edit:1764403200".into());
        let ideas = unanswered_questions(&[owner(1, 600, "Morning all"), asked], &ctx());
        assert_eq!(ideas[0].action["target"]["reply_to"], "-100:57");
    }

    #[test]
    fn questions_left_unanswered() {
        let me_earlier = owner(1, 600, "Morning all");
        let asked = signal(S {
            id: 2,
            who: Some(("dana", false)),
            chat: Some(("c1", Some("Team"))),
            minutes_ago: 300,
            text: "Can you review the budget draft?",
        });
        let recent = signal(S {
            id: 3,
            who: Some(("alex", false)),
            chat: Some(("c1", Some("Team"))),
            minutes_ago: 30,
            text: "thoughts on the logo?",
        });
        let ideas = unanswered_questions(&[me_earlier.clone(), asked.clone(), recent], &ctx());
        assert_eq!(ideas.len(), 1, "{ideas:?}");
        assert_eq!(ideas[0].title, "Reply to DANA: “Can you review the budget draft?”");
        assert_eq!(ideas[0].why_now, "DANA asked 5 hours ago and you have not replied there since");

        let replied = owner(4, 100, "on it");
        assert!(unanswered_questions(&[me_earlier, asked, replied], &ctx()).is_empty());
    }

    #[test]
    fn questions_count_in_direct_chats_and_mail_but_not_in_rooms_the_owner_ignores() {
        let dm = signal(S {
            id: 1,
            who: Some(("sam", false)),
            chat: Some(("sam", None)),
            minutes_ago: 240,
            text: "do you have time tomorrow",
        });
        let room = signal(S {
            id: 2,
            who: Some(("kim", false)),
            chat: Some(("random", None)),
            minutes_ago: 240,
            text: "anyone seen my charger?",
        });
        let mut mail = signal(S {
            id: 3,
            who: Some(("lee@example.org", false)),
            chat: Some(("<t1@example.org>", None)),
            minutes_ago: 1440,
            text: "Could you confirm the delivery address",
        });
        mail.family = Family::Email;
        let statement = signal(S {
            id: 4,
            who: Some(("sam", false)),
            chat: Some(("sam", None)),
            minutes_ago: 240,
            text: "Thanks, sounds good.",
        });
        let ideas = unanswered_questions(&[dm, room, mail, statement], &ctx());
        assert_eq!(ideas.iter().map(|i| i.evidence[0]).collect::<Vec<_>>(), [1, 3]);
        assert!(ideas[1].why_now.contains("1 day"), "{}", ideas[1].why_now);
    }

    fn mail(id: SignalId, from: &str, owner: bool, thread: &str, minutes_ago: i64, text: &str) -> Signal {
        let mut s = signal(S { id, who: Some((from, owner)), chat: Some((thread, None)), minutes_ago, text });
        s.family = Family::Email;
        s
    }

    #[test]
    fn mail_from_people_the_owner_answers_is_not_left_waiting() {
        let signals = [
            mail(1, "lee@example.org", false, "t1", 5000, "Here are the minutes."),
            mail(2, "me@example.org", true, "t1", 4900, "Thanks Lee!"),
            mail(3, "lee@example.org", false, "t2", 3000, "Updated the spreadsheet."),
            mail(4, "me@example.org", true, "t2", 2900, "Great, thank you."),
            mail(5, "lee@example.org", false, "t3", 1440, "Attached are the signed forms."),
            mail(6, "news@shop.example", false, "n1", 1440, "Our autumn sale starts now."),
            mail(7, "lee@example.org", false, "t4", 1440, "Could you sign page 2?"),
            mail(8, "lee@example.org", false, "t5", 30, "FYI the courier comes Monday."),
        ];
        let ideas = unreplied_mail(&signals, &ctx());
        assert_eq!(ideas.len(), 1, "{ideas:?}");
        assert_eq!(ideas[0].title, "Reply to LEE@EXAMPLE.ORG: “Attached are the signed forms.”");
        assert_eq!(ideas[0].why_now, "LEE@EXAMPLE.ORG wrote 1 day ago; you usually answer them and have not yet");
        assert_eq!(ideas[0].kind, IdeaKind::UnrepliedMail);
        // The question in t4 is the question detector's.
        assert_eq!(unanswered_questions(&signals, &ctx()).iter().map(|i| i.evidence[0]).collect::<Vec<_>>(), [7]);
        // A stranger the owner never answers is not nagged about.
        let strangers: Vec<Signal> = signals.iter().filter(|s| s.id >= 5).cloned().collect();
        assert!(unreplied_mail(&strangers, &ctx()).is_empty());
    }

    #[test]
    fn messages_about_watched_things_are_raised() {
        use crate::memory::{Memory, MemoryKind, Origin};
        let asked = ctx().now - Duration::days(2);
        let watch = Memory {
            id: 40,
            kind: MemoryKind::WatchItem,
            subject: String::new(),
            content: "ACME invoice".into(),
            confidence: 1.0,
            stability: 1,
            origin: Origin::Owner,
            trust: Trust::Trusted,
            evidence: vec![],
            created_at: asked,
            updated_at: asked,
        };
        let vendor = |id, minutes_ago, text| {
            signal(S { id, who: Some(("billing", false)), chat: Some(("billing", None)), minutes_ago, text })
        };
        let signals = [
            vendor(1, 60, "Your ACME invoice for October is ready"),
            vendor(2, 5000, "ACME invoice for September"),
            vendor(3, 60, "Your order has shipped"),
            owner(4, 30, "still waiting for the ACME invoice"),
        ];
        let ideas = watched(&signals, &[watch], &ctx());
        assert_eq!(ideas.len(), 1, "{ideas:?}");
        assert_eq!(ideas[0].title, "Watched: ACME invoice — BILLING: “Your ACME invoice for October is ready”");
        assert_eq!(ideas[0].key, "watch:40:1");
    }

    #[test]
    fn actionable_signals_are_the_ones_that_may_need_the_owner() {
        let other = |text| signal(S { id: 1, who: Some(("x", false)), chat: Some(("x", None)), minutes_ago: 1, text });
        assert!(actionable(&other("are you free tomorrow?")));
        assert!(actionable(&other("please confirm the booking")));
        assert!(!actionable(&other("thanks, all good")));
        let mut urgent = other("server down");
        urgent.urgency = crate::signal::Urgency::High;
        assert!(actionable(&urgent));
        assert!(actionable(&owner(2, 1, "remind me to stretch")));
        assert!(actionable(&owner(3, 1, "I'll send it tomorrow")));
        assert!(!actionable(&owner(4, 1, "sounds good")));
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(humanize(Duration::minutes(1)), "1 minute");
        assert_eq!(humanize(Duration::minutes(45)), "45 minutes");
        assert_eq!(humanize(Duration::minutes(150)), "3 hours");
        assert_eq!(humanize(Duration::hours(50)), "2 days");
    }
}
