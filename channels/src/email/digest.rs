//! The digest: numbered open suggestions and pending approvals, each with why-now and
//! evidence, and how to answer, as a plain-text part that reads well anywhere and an HTML
//! part. Pure: what to send and what the numbers mean are built here; sending and keeping
//! the numbers are the channel's.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use loopgate_engine::actions::Approval;
use loopgate_engine::suggestion::Suggestion;
use serde::{Deserialize, Serialize};

use super::reply::Item;
use crate::chat::{describe_action, local};

/// Evidence lines shown per suggestion.
const MAX_EVIDENCE: usize = 3;

/// What a digest's numbers stand for, kept (by the hash of its token) until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `"1"` → suggestion id, `"A7"` → approval 7.
    pub suggestions: BTreeMap<u32, i64>,
    pub approvals: Vec<i64>,
    pub expires_at: DateTime<Utc>,
    pub message_id: String,
    pub subject: String,
}

impl Record {
    /// The suggestion or approval an item of a reply means, if the digest had it.
    pub fn resolve(&self, item: Item) -> Option<Item> {
        match item {
            Item::Suggestion(n) => self.suggestions.get(&n).map(|_| item),
            Item::Approval(id) => self.approvals.contains(&id).then_some(item),
        }
    }
}

/// What a digest lists.
#[derive(Debug, Clone, Copy)]
pub struct Items<'a> {
    pub suggestions: &'a [Suggestion],
    pub approvals: &'a [Approval],
    pub notes: &'a [Note],
}

/// A summary a workflow delivered into the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub workflow: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub record: Record,
}

/// The digest of what waits for the owner, or `None` when nothing does (an empty digest
/// is not sent).
pub fn build(
    items: Items<'_>,
    token: &str,
    id_domain: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    timezone: Tz,
) -> Option<Digest> {
    let Items { suggestions, approvals, notes } = items;
    if suggestions.is_empty() && approvals.is_empty() && notes.is_empty() {
        return None;
    }
    let count = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut parts = Vec::new();
    if !suggestions.is_empty() {
        parts.push(count(suggestions.len(), "suggestion", "suggestions"));
    }
    if !approvals.is_empty() {
        parts.push(count(approvals.len(), "approval", "approvals"));
    }
    if !notes.is_empty() {
        parts.push(count(notes.len(), "summary", "summaries"));
    }
    let summary = parts.join(" and ");
    let subject = format!("loopgate: {summary} [lg-{token}]");
    let mut text = format!("{summary} wait for you ({}).\n", local(now, timezone));
    let mut html = format!(
        "<div style=\"font-family:sans-serif;max-width:40em\"><p>{} wait for you ({}).</p>",
        escape(&summary),
        escape(&local(now, timezone))
    );
    let mut numbers = BTreeMap::new();
    if !suggestions.is_empty() {
        html.push_str("<h3>Suggestions</h3>");
    }
    for (n, s) in suggestions.iter().enumerate() {
        let number = u32::try_from(n + 1).unwrap_or(u32::MAX);
        numbers.insert(number, s.id);
        let action = s.edited_action.as_ref().unwrap_or(&s.action);
        let mut risk = format!("{} risk", s.risk.as_str());
        if s.policy == loopgate_policies::Effect::Ask {
            risk.push_str(", asks for approval before it runs");
        }
        text.push_str(&format!("\n{number}. {}\n   Why now: {}\n", s.title, s.why_now));
        html.push_str(&format!("<p><b>{number}. {}</b><br>Why now: {}", escape(&s.title), escape(&s.why_now)));
        for e in s.evidence.iter().take(MAX_EVIDENCE) {
            text.push_str(&format!("   - {}\n", e.summary));
            html.push_str(&format!("<br>&middot; {}", escape(&e.summary)));
        }
        text.push_str(&format!("   Action: {} ({risk})\n", describe_action(action)));
        html.push_str(&format!("<br>Action: {} ({})</p>", escape(&describe_action(action)), escape(&risk)));
    }
    if !approvals.is_empty() {
        html.push_str("<h3>Approvals</h3>");
    }
    for a in approvals {
        text.push_str(&format!(
            "\nA{}. Approve? {}\n   Action: {} ({} risk)\n   Expires {}\n",
            a.id,
            a.reason,
            describe_action(&a.action),
            a.risk.as_str(),
            local(a.expires_at, timezone)
        ));
        html.push_str(&format!(
            "<p><b>A{}. Approve?</b> {}<br>Action: {} ({} risk)<br>Expires {}</p>",
            a.id,
            escape(&a.reason),
            escape(&describe_action(&a.action)),
            a.risk.as_str(),
            escape(&local(a.expires_at, timezone))
        ));
    }
    if !notes.is_empty() {
        html.push_str("<h3>Summaries</h3>");
    }
    for note in notes {
        text.push_str(&format!("\n--- {} ---\n{}\n", note.workflow, note.text.trim_end()));
        html.push_str(&format!(
            "<p><b>{}</b></p><pre style=\"white-space:pre-wrap\">{}</pre>",
            escape(&note.workflow),
            escape(note.text.trim_end())
        ));
    }
    let example = match (suggestions.is_empty(), approvals.first()) {
        (false, Some(a)) => format!("1 act\n  2 snooze 3d\n  approve A{}", a.id),
        (false, None) => "1 act\n  2 snooze 3d\n  3 dismiss".to_owned(),
        (true, Some(a)) => format!("approve A{}\n  deny A{}", a.id, a.id),
        (true, None) => "nothing to answer in this one".to_owned(),
    };
    let how = format!(
        "How to answer: reply to this mail with one command per line, for example\n  {example}\n\
         Commands: N act, N snooze 3d (m, h, d or w), N dismiss, N edit: new text, approve AN, deny AN.\n\
         Replies count until {}.",
        local(expires_at, timezone)
    );
    text.push_str(&format!("\n{how}\n"));
    html.push_str(&format!("<hr><p style=\"color:#555\">{}</p></div>", escape(&how).replace('\n', "<br>")));
    let record = Record {
        suggestions: numbers,
        approvals: approvals.iter().map(|a| a.id).collect(),
        expires_at,
        message_id: format!("digest.{token}@{id_domain}"),
        subject: subject.clone(),
    };
    Some(Digest { subject, text, html, record })
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}
