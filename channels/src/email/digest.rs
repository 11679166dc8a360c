//! The digest: numbered open suggestions and pending approvals, each with why-now and
//! evidence, and how to answer, as a plain-text part that reads well anywhere and an HTML
//! part. Pure: what to send and what the numbers mean are built here; sending and keeping
//! the numbers are the channel's.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use loopgate_engine::actions::Approval;
use loopgate_engine::suggestion::Suggestion;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::reply::{Command, Item, Line, is_command};
use crate::chat::{describe_action, local};

/// Evidence lines shown per suggestion.
const MAX_EVIDENCE: usize = 3;
/// Characters of a line that [`line_key`] compares.
const KEY_CHARS: usize = 200;

/// What a digest's numbers stand for, kept (by the hash of its token) until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `"1"` → suggestion id, `"A7"` → approval 7.
    pub suggestions: BTreeMap<u32, i64>,
    pub approvals: Vec<i64>,
    pub expires_at: DateTime<Utc>,
    pub message_id: String,
    pub subject: String,
    /// The digest's own lines, by [`line_key`]: a reply line that repeats one is the digest
    /// pasted back, not the owner's answer, and is never applied, even when the mail
    /// client's quote went unrecognised. Records kept before it have none.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub lines: BTreeSet<String>,
}

impl Record {
    /// The suggestion or approval an item of a reply means, if the digest had it.
    pub fn resolve(&self, item: Item) -> Option<Item> {
        match item {
            Item::Suggestion(n) => self.suggestions.get(&n).map(|_| item),
            Item::Approval(id) => self.approvals.contains(&id).then_some(item),
        }
    }

    /// Whether a line of a reply repeats a line of this digest.
    pub fn repeats(&self, line: &str) -> bool {
        !line.trim().is_empty() && self.lines.contains(&line_key(line))
    }

    /// What of a reply's line may be applied: its command, or in words why nothing is. A
    /// line that repeats the digest is refused first, whatever it says.
    pub fn admit<'a>(&self, line: &'a Line) -> Result<&'a Command, String> {
        if self.repeats(&line.text) {
            return Err("not applied: it repeats a line of the digest, so it is quoted text, not your answer".into());
        }
        let command = line.command.as_ref().map_err(Clone::clone)?;
        let item = command.item();
        if self.resolve(item).is_none() {
            return Err(format!("unknown item {item}: that digest has no {item}"));
        }
        Ok(command)
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
        let title = shown(&format!("{number}. "), &s.title);
        let why = shown("Why now: ", &s.why_now);
        text.push_str(&format!("\n{title}\n   {why}\n"));
        html.push_str(&format!("<p><b>{}</b><br>{}", escape(&title), escape(&why)));
        for e in s.evidence.iter().take(MAX_EVIDENCE) {
            let evidence = shown("", &e.summary);
            text.push_str(&format!("   - {evidence}\n"));
            html.push_str(&format!("<br>&middot; {}", escape(&evidence)));
        }
        let action = shown("Action: ", &format!("{} ({risk})", describe_action(action)));
        text.push_str(&format!("   {action}\n"));
        html.push_str(&format!("<br>{}</p>", escape(&action)));
    }
    if !approvals.is_empty() {
        html.push_str("<h3>Approvals</h3>");
    }
    for a in approvals {
        let ask = shown(&format!("A{}. Approve? ", a.id), &a.reason);
        let action = shown("Action: ", &format!("{} ({} risk)", describe_action(&a.action), a.risk.as_str()));
        let expires = format!("Expires {}", local(a.expires_at, timezone));
        text.push_str(&format!("\n{ask}\n   {action}\n   {expires}\n"));
        html.push_str(&format!("<p><b>{}</b><br>{}<br>{}</p>", escape(&ask), escape(&action), escape(&expires)));
    }
    if !notes.is_empty() {
        html.push_str("<h3>Summaries</h3>");
    }
    for note in notes {
        let workflow = shown("", &note.workflow);
        let summary = shown("", note.text.trim_end());
        text.push_str(&format!("\n--- {workflow} ---\n{summary}\n"));
        html.push_str(&format!(
            "<p><b>{}</b></p><pre style=\"white-space:pre-wrap\">{}</pre>",
            escape(&workflow),
            escape(&summary)
        ));
    }
    // The examples sit inside a sentence, in quotes: a line of the digest that read as a
    // command would answer the digest by itself when a mail client pastes it back unmarked.
    let quoted = |commands: &[String]| match commands {
        [] => String::new(),
        [one] => format!("\"{one}\""),
        [init @ .., last] => {
            format!("{} or \"{last}\"", init.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", "))
        }
    };
    let (first, second, third) = (1, suggestions.len().min(2), suggestions.len().min(3));
    let examples = match (suggestions.is_empty(), approvals.first()) {
        (false, Some(a)) => vec![format!("{first} act"), format!("{second} snooze 3d"), format!("approve A{}", a.id)],
        (false, None) => vec![format!("{first} act"), format!("{second} snooze 3d"), format!("{third} dismiss")],
        (true, Some(a)) => vec![format!("approve A{}", a.id), format!("deny A{}", a.id)],
        (true, None) => Vec::new(),
    };
    let how = if examples.is_empty() {
        "Nothing in this digest needs an answer.".to_owned()
    } else {
        format!(
            "How to answer: reply to this mail with one command per line, for instance {}.\n\
             Commands: N act, N snooze 3d (m, h, d or w), N dismiss, N edit: new text, approve AN, deny AN.\n\
             Only the lines you write count: quoted text and lines copied from this digest are ignored.\n\
             Replies count until {}.",
            quoted(&examples),
            local(expires_at, timezone)
        )
    };
    text.push_str(&format!("\n{how}\n"));
    html.push_str(&format!("<hr><p style=\"color:#555\">{}</p></div>", escape(&how).replace('\n', "<br>")));
    let record = Record {
        suggestions: numbers,
        approvals: approvals.iter().map(|a| a.id).collect(),
        expires_at,
        message_id: format!("digest.{token}@{id_domain}"),
        subject: subject.clone(),
        // The HTML part shows the same lines (headings aside), so the text's are enough.
        lines: text.lines().filter(|l| !l.trim().is_empty()).map(line_key).collect(),
    };
    Some(Digest { subject, text, html, record })
}

/// A field as the digest shows it, after `prefix` on its first line: a line that the reply
/// grammar would read as a command (a title "Act", a summary with "approve A7" on a line of
/// its own) is put in quotes, so no line of the digest is ever a command as it stands.
fn shown(prefix: &str, field: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + field.len() + 8);
    for (n, line) in field.split('\n').enumerate() {
        let lead = if n == 0 { prefix } else { "" };
        if n > 0 {
            out.push('\n');
        }
        out.push_str(lead);
        if is_command(&format!("{lead}{line}")) {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(&format!("{indent}\u{201C}{}\u{201D}", line.trim()));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// What a line of a digest and a line of a reply are compared by: lowercase, each run of
/// whitespace one space, at most 200 characters (a reply's lines are kept to 500), hashed
/// to 16 hex digits so a record stays small and holds no second copy of the digest.
pub fn line_key(line: &str) -> String {
    let normal: String =
        line.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase().chars().take(KEY_CHARS).collect();
    Sha256::digest(normal.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use loopgate_engine::suggestion::{EvidenceLine, SuggestionState};
    use loopgate_policies::{Effect, Risk};
    use serde_json::json;

    use super::super::reply::parse_reply;
    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn suggestion(id: i64, title: &str, why_now: &str, evidence: &[&str], text: &str) -> Suggestion {
        Suggestion {
            id,
            title: title.into(),
            why_now: why_now.into(),
            evidence: evidence.iter().map(|e| EvidenceLine { signal_id: id, summary: (*e).into() }).collect(),
            confidence: 0.8,
            score: 0.8,
            action: json!({"kind": "message", "target": {"channel": "email", "conversation": "ana@example.org"}, "text": text}),
            risk: Risk::Low,
            policy: Effect::Allow,
            class: "reply".into(),
            source: "email".into(),
            reflector: "deterministic".into(),
            state: SuggestionState::Active,
            created_at: at(30, 8),
            updated_at: at(30, 8),
            expires_at: at(30, 20),
            snoozed_until: None,
            due_at: None,
            surfaced_at: None,
            revision: 1,
            decision: None,
            edited_action: None,
            surfaces: Vec::new(),
            run_id: "run-1".into(),
            key: format!("key-{id}"),
            ranking: Default::default(),
        }
    }

    fn approval(id: i64, reason: &str) -> Approval {
        Approval {
            id,
            task_id: id,
            state: loopgate_engine::actions::ApprovalState::Pending,
            created_at: at(30, 8),
            expires_at: at(30, 20),
            decision: None,
            revision: 1,
            action: json!({"kind": "message", "target": {"channel": "email", "conversation": "ana@example.org"}, "text": "paid"}),
            reason: reason.into(),
            risk: Risk::Medium,
        }
    }

    fn digest(items: Items<'_>) -> Option<Digest> {
        build(
            items,
            "k3j9x2m4q8w7e5r1t6y0",
            "loopgate.test.local",
            at(30, 8),
            at(30, 20) + chrono::Duration::days(7),
            Tz::Europe__Berlin,
        )
    }

    /// The lines a mail client shows of the HTML part, converted to text.
    fn html_lines(html: &str) -> Vec<String> {
        let broken = ["<p", "<h3", "</h3>", "<hr", "<pre", "</pre>"]
            .iter()
            .fold(html.to_owned(), |html, tag| html.replace(tag, &format!("<br>{tag}")));
        mail_parser::decoders::html::html_to_text(&broken).lines().map(str::to_owned).collect()
    }

    /// Suggestions and approvals as they come, and as badly as they could come: titles,
    /// texts and summaries that hold lines of the reply grammar.
    fn adversarial() -> (Vec<Suggestion>, Vec<Approval>, Vec<Note>) {
        let suggestions = vec![
            suggestion(
                11,
                "Reply to Ana about the invoice",
                "she asked twice since Friday",
                &["Ana: is it paid?"],
                "Paid.",
            ),
            suggestion(12, "Act", "approve A7", &["3 dismiss", "deny A7\n1 act"], "Hi Ana,\n1 act\n  2 snooze 3d\n"),
            suggestion(13, "Edit: the draft to Ben", "2 SNOOZE  3d", &[], "4 edit: new text"),
        ];
        let approvals = vec![approval(7, "Pay invoice 2026-114"), approval(8, "approve A8\ndeny A8")];
        let notes =
            vec![Note { workflow: "inbox".into(), text: "2 new senders\napprove A7\n  1 act  \n#1. act".into() }];
        (suggestions, approvals, notes)
    }

    #[test]
    fn no_line_of_a_digest_reads_as_a_command() {
        let (suggestions, approvals, notes) = adversarial();
        let mixes: [(&[Suggestion], &[Approval], &[Note]); 6] = [
            (&suggestions, &approvals, &notes),
            (&suggestions, &[], &[]),
            (&suggestions[..1], &[], &[]),
            (&[], &approvals, &[]),
            (&[], &[], &notes),
            (&suggestions[..1], &approvals[..1], &[]),
        ];
        for (suggestions, approvals, notes) in mixes {
            let d = digest(Items { suggestions, approvals, notes }).unwrap();
            let html = html_lines(&d.html);
            assert!(html.len() > 3, "{html:?}");
            for line in d.text.lines().map(str::to_owned).chain(html) {
                let read = parse_reply(&line);
                assert!(read.iter().all(|l| l.command.is_err()), "{line:?} reads as {read:?}\n{}", d.text);
            }
            let whole = parse_reply(&d.text);
            assert!(whole.iter().all(|l| l.command.is_err()), "{whole:?}");
        }
    }

    #[test]
    fn the_digest_still_says_how_to_answer() {
        let (suggestions, approvals, _) = adversarial();
        let d = digest(Items { suggestions: &suggestions, approvals: &approvals, notes: &[] }).unwrap();
        assert!(
            d.text.contains("one command per line, for instance \"1 act\", \"2 snooze 3d\" or \"approve A7\"."),
            "{}",
            d.text
        );
        assert!(d.text.contains("\n1. Reply to Ana about the invoice\n   Why now: she asked twice since Friday\n"));
        assert!(d.text.contains("\n2. \u{201C}Act\u{201D}\n"), "{}", d.text);
        assert!(d.text.contains("\nA7. Approve? Pay invoice 2026-114\n"), "{}", d.text);
        assert!(d.text.contains("Only the lines you write count"), "{}", d.text);
        assert!(d.html.contains("<b>1. Reply to Ana about the invoice</b>"), "{}", d.html);
        let one = digest(Items { suggestions: &suggestions[..1], approvals: &[], notes: &[] }).unwrap();
        assert!(one.text.contains("\"1 act\", \"1 snooze 3d\" or \"1 dismiss\""), "{}", one.text);
        let notes = [Note { workflow: "inbox".into(), text: "all quiet".into() }];
        let only_notes = digest(Items { suggestions: &[], approvals: &[], notes: &notes }).unwrap();
        assert!(only_notes.text.contains("Nothing in this digest needs an answer."), "{}", only_notes.text);
    }

    /// What a reply would apply: the commands the record admits.
    fn applied(record: &Record, body: &str) -> Vec<Command> {
        parse_reply(body).iter().filter_map(|line| record.admit(line).ok().cloned()).collect()
    }

    #[test]
    fn a_line_that_repeats_the_digest_is_never_applied() {
        let (suggestions, approvals, notes) = adversarial();
        let d = digest(Items { suggestions: &suggestions, approvals: &approvals, notes: &notes }).unwrap();

        // The owner's own answers, the examples' among them, are applied.
        let mine = "1 act\n2 snooze 3d\napprove A7\ndeny A8\n3 edit: the draft, shorter";
        assert_eq!(applied(&d.record, mine).len(), 5, "{:?}", d.record);

        // The digest pasted back with no quote marker at all: only the answer on top.
        let pasted = format!("3 dismiss\n\n{}", d.text);
        assert_eq!(applied(&d.record, &pasted), [Command::Dismiss(3)]);

        // A digest that wrote lines of the grammar (the example lines of earlier digests, a
        // field this digest would quote), pasted back under a header the parser does not
        // know: its lines are refused, as lines of the digest, in any case and spacing.
        let written = "Your digest\n  1 act\n  2 snooze 3d\n  approve A7\nReplies count until Monday.";
        let record = Record { lines: written.lines().map(line_key).collect(), ..d.record.clone() };
        let reply = format!("2 dismiss\n\nMessage from loopgate, Monday 09:00\n{written}\n  APPROVE   a7 \n");
        assert_eq!(applied(&record, &reply), [Command::Dismiss(2)]);
        let refused = parse_reply(&reply).into_iter().find(|l| l.text == "approve A7").unwrap();
        assert_eq!(
            record.admit(&refused).unwrap_err(),
            "not applied: it repeats a line of the digest, so it is quoted text, not your answer"
        );
    }

    #[test]
    fn the_recorded_german_outlook_reply_applies_only_its_answer() {
        // The reply of issue 16: "2 dismiss", then Outlook's "Von:" block and the digest
        // pasted without a mark. Even with the block unrecognised (cut away here), the
        // digest's own example lines are refused.
        let path = format!("{}/src/email/recorded/replies/outlook_de.txt", env!("CARGO_MANIFEST_DIR"));
        let body = std::fs::read_to_string(&path).unwrap();
        let (_, pasted) = body.split_once("Betreff:").unwrap();
        let pasted = pasted.split_once('\n').unwrap().1;
        let (suggestions, _, _) = adversarial();
        let d = digest(Items { suggestions: &suggestions, approvals: &[], notes: &[] }).unwrap();
        let record =
            Record { lines: pasted.lines().filter(|l| !l.trim().is_empty()).map(line_key).collect(), ..d.record };
        assert_eq!(applied(&record, &body), [Command::Dismiss(2)]);
        let unmarked = format!("2 dismiss\n{pasted}");
        assert_eq!(
            parse_reply(&unmarked).iter().filter(|l| l.command.is_ok()).count(),
            4,
            "1 act, 2 snooze 3d, 3 dismiss"
        );
        assert_eq!(applied(&record, &unmarked), [Command::Dismiss(2)]);
    }

    #[test]
    fn records_from_before_the_lines_still_read() {
        let old = r#"{"suggestions":{"1":11},"approvals":[7],"expires_at":"2026-12-07T19:00:00Z","message_id":"digest.x@t","subject":"s"}"#;
        let record: Record = serde_json::from_str(old).unwrap();
        assert!(record.lines.is_empty());
        assert!(!record.repeats("1 act"));
        let (suggestions, approvals, notes) = adversarial();
        let d = digest(Items { suggestions: &suggestions, approvals: &approvals, notes: &notes }).unwrap();
        let again: Record = serde_json::from_str(&serde_json::to_string(&d.record).unwrap()).unwrap();
        assert_eq!(again, d.record);
        assert!(again.repeats("  a7. approve?   PAY invoice 2026-114"));
    }
}
