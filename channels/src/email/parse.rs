//! Mail into what loopgate understands: a pure function of the raw message (parsed with
//! mail-parser) and who loopgate is, tested on recorded messages in `recorded/`.

use chrono::{DateTime, Utc};
use loopgate_engine::signal::{Actor, Attachment, Conversation, NewSignal, SignalKind, Source, Trust, Urgency};
use loopgate_policies::Identities;
use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders};

use super::CHANNEL;

/// Who loopgate is on email, to know its own mail and the answers to its digests.
#[derive(Debug, Clone)]
pub struct Me<'a> {
    /// loopgate's own address (`[email] from`).
    pub address: &'a str,
    /// The domain of the Message-IDs loopgate writes.
    pub id_domain: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A mail: a signal.
    Mail(Mail),
    /// An answer to a digest, by its token: applied line by line, never a signal of its
    /// own (its quoted part is the digest).
    Reply(Reply),
    /// Auto-replies, bounces, lists, loopgate's own mail, unreadable bytes.
    Ignored(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub signal: NewSignal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub token: String,
    /// The sender's bare address, lowercase.
    pub from: String,
    pub subject: String,
    pub message_id: Option<String>,
    pub references: Vec<String>,
    /// The plain text (HTML-only replies converted).
    pub text: String,
}

/// The longest text kept in a signal; a mail body can be megabytes.
const MAX_TEXT: usize = 20_000;

pub fn normalize(raw: &[u8], me: &Me<'_>, identities: &Identities, uid_key: &str) -> Inbound {
    let Some(message) = MessageParser::default().parse(raw) else { return Inbound::Ignored("not a mail message") };
    let Some((from, name)) = message
        .from()
        .and_then(|list| list.first())
        .and_then(|mailbox| Some((mailbox.address()?.trim().to_ascii_lowercase(), mailbox.name().map(str::to_owned))))
    else {
        return Inbound::Ignored("no sender");
    };
    if from == me.address.to_ascii_lowercase() || message.header("X-Loopgate").is_some() {
        return Inbound::Ignored("loopgate's own mail");
    }
    if let Some(reason) = automatic(&message, &from) {
        return Inbound::Ignored(reason);
    }
    let subject = message.subject().unwrap_or_default().trim().to_owned();
    let message_id = message.message_id().map(str::to_owned);
    let in_reply_to = ids(message.in_reply_to());
    let references = ids(message.references());
    let text = body_text(&message);

    if let Some(token) = digest_token(&subject, in_reply_to.iter().chain(&references), me.id_domain) {
        let mut references = references.clone();
        for id in in_reply_to {
            if !references.contains(&id) {
                references.push(id);
            }
        }
        return Inbound::Reply(Reply { token, from, subject, message_id, references, text });
    }

    let mut signal = NewSignal::new(source(), kind("email"), cut(format!("{subject}\n\n{}", text.trim())));
    // The sender's own id for the mail; without one, where it sits in the mailbox.
    signal.external_id = Some(message_id.clone().unwrap_or_else(|| uid_key.to_owned()));
    signal.actor = Some(Actor { is_owner: identities.is_owner(CHANNEL, &from), name, id: from.clone() });
    // The conversation is with the sender (so answering it means writing to them); the
    // thread is the mail thread, by its first Message-ID.
    let thread = references.first().or(in_reply_to.first()).or(message_id.as_ref()).cloned();
    signal.conversation = Some(Conversation {
        id: from.clone(),
        title: (!subject.is_empty()).then(|| subject.clone()),
        thread_id: thread,
        reply_to: in_reply_to.first().cloned(),
    });
    signal.occurred_at = message.date().and_then(|d| DateTime::<Utc>::from_timestamp(d.to_timestamp(), 0));
    signal.attachments = message
        .attachments()
        .map(|part| Attachment {
            name: part.attachment_name().unwrap_or("attachment").to_owned(),
            mime: part.content_type().map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{sub}", ct.ctype()),
                None => ct.ctype().to_owned(),
            }),
            size: Some(part.len() as u64),
        })
        .collect();
    let recipients: Vec<String> = message
        .to()
        .into_iter()
        .chain(message.cc())
        .flat_map(|list| list.iter().filter_map(|m| m.address().map(str::to_owned)).collect::<Vec<_>>())
        .collect();
    signal.payload = Some(serde_json::json!({
        "message_id": message_id,
        "subject": subject,
        "to": recipients,
        "in_reply_to": in_reply_to,
        "references": references,
    }));
    signal.urgency = Urgency::Normal;
    signal.trust = Trust::Untrusted;
    Inbound::Mail(Mail { signal })
}

/// The plain text of a mail: its text part, or its HTML (without the quoted part, which
/// HTML mail clients put in a `<blockquote>` or a marked `<div>`) converted to text.
fn body_text(message: &Message<'_>) -> String {
    let has_plain = message.parts.iter().any(|p| p.is_content_type("text", "plain"));
    let html = message.body_html(0);
    let text = match (has_plain, html) {
        (false, Some(html)) => {
            let lower = html.to_ascii_lowercase();
            let quote = [
                "<blockquote",
                "class=\"gmail_quote",
                "class=\"moz-cite-prefix",
                "id=\"divrplyfwdmsg",
                "id=\"appendonsend",
            ]
            .iter()
            .filter_map(|marker| lower.find(marker))
            .min();
            let answer = match quote {
                // The marker's own tag starts at the last '<' before it.
                Some(at) => &html[..html[..at + 1].rfind('<').unwrap_or(at)],
                None => &html[..],
            };
            mail_parser::decoders::html::html_to_text(&break_blocks(answer))
        }
        _ => message.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
    };
    text.replace("\r\n", "\n")
}

/// A line break before every block-level tag, so that `<div>1 act</div><div>2 dismiss</div>`
/// reads as two lines once converted to text.
fn break_blocks(html: &str) -> String {
    const BLOCKS: [&str; 8] = ["div", "p", "br", "li", "tr", "h1", "h2", "h3"];
    let mut out = String::with_capacity(html.len() + 64);
    for (i, c) in html.char_indices() {
        if c == '<' {
            let name: String = html[i + 1..]
                .trim_start_matches('/')
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase();
            // The converter breaks lines at <br> only (and </p>).
            if BLOCKS.contains(&name.as_str()) && name != "br" {
                out.push_str("<br>");
            }
        }
        out.push(c);
    }
    out
}

/// Message-IDs from In-Reply-To or References, without their angle brackets.
fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(id) => vec![id.to_string()],
        HeaderValue::TextList(list) => list.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Mail no person wrote to loopgate: auto-replies, bounces, lists and bulk mail.
fn automatic(message: &Message<'_>, from: &str) -> Option<&'static str> {
    let text_of = |name: &str| message.header(name).and_then(|v| v.as_text()).map(|t| t.trim().to_ascii_lowercase());
    if text_of("Auto-Submitted").is_some_and(|v| v != "no") {
        return Some("an automatic message (Auto-Submitted)");
    }
    if text_of("Precedence").is_some_and(|v| matches!(v.as_str(), "bulk" | "list" | "junk" | "auto_reply")) {
        return Some("bulk or list mail (Precedence)");
    }
    if ["X-Autoreply", "X-Autorespond", "List-Id"].iter().any(|h| message.header(*h).is_some()) {
        return Some("an auto-reply or list mail");
    }
    let local = from.split('@').next().unwrap_or_default();
    if matches!(local, "mailer-daemon" | "postmaster") {
        return Some("a bounce (from the mail system)");
    }
    if message.header_raw("Return-Path").is_some_and(|p| p.trim().trim_matches(['<', '>']).trim().is_empty()) {
        return Some("a bounce (empty Return-Path)");
    }
    if message.content_type().is_some_and(|ct| ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))) {
        return Some("a delivery report");
    }
    None
}

/// The token of the digest a mail answers: `[lg-TOKEN]` in the subject, or a reference
/// to the digest's Message-ID `<digest.TOKEN@id_domain>`.
pub fn digest_token<'a>(subject: &str, ids: impl Iterator<Item = &'a String>, id_domain: &str) -> Option<String> {
    let valid = |t: &str| (16..=64).contains(&t.len()) && t.chars().all(|c| c.is_ascii_alphanumeric());
    if let Some(start) = subject.find("[lg-") {
        let rest = &subject[start + 4..];
        if let Some(end) = rest.find(']')
            && valid(&rest[..end])
        {
            return Some(rest[..end].to_owned());
        }
    }
    let suffix = format!("@{id_domain}");
    ids.filter_map(|id| {
        id.trim_matches(['<', '>']).strip_prefix("digest.")?.strip_suffix(suffix.as_str()).map(str::to_owned)
    })
    .find(|t| valid(t))
}

fn cut(text: String) -> String {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn source() -> Source {
    Source::parse(CHANNEL).expect("a valid source")
}

fn kind(name: &str) -> SignalKind {
    SignalKind::parse(name).expect("a valid kind")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Me<'static> = Me { address: "loopgate@test.local", id_domain: "loopgate.test.local" };

    fn identities() -> Identities {
        Identities::new(Vec::<String>::new(), Vec::<String>::new(), ["owner@test.local".to_owned()])
    }

    fn recorded(name: &str) -> Vec<u8> {
        let path = format!("{}/src/email/recorded/{name}.eml", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn mail(name: &str) -> NewSignal {
        match normalize(&recorded(name), &ME, &identities(), "uid:1:1") {
            Inbound::Mail(mail) => mail.signal,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn a_multipart_mail_is_a_signal_with_sender_thread_text_and_attachments() {
        let s = mail("multipart_with_attachment");
        assert_eq!(s.external_id.as_deref(), Some("CAF=q3-report-1@mail.example.org"));
        let actor = s.actor.as_ref().unwrap();
        assert_eq!(
            (actor.id.as_str(), actor.name.as_deref(), actor.is_owner),
            ("ana@example.org", Some("Ana Lima"), false)
        );
        assert!(s.text.starts_with("Q3 report — please review\n\nHi,\nthe Q3 report is attached"), "{}", s.text);
        let conversation = s.conversation.as_ref().unwrap();
        assert_eq!(conversation.id, "ana@example.org");
        assert_eq!(conversation.thread_id.as_deref(), Some("thread-root@mail.example.org"));
        assert_eq!(conversation.reply_to.as_deref(), Some("previous@mail.example.org"));
        assert_eq!(s.attachments.len(), 1);
        assert_eq!(s.attachments[0].name, "q3-report.pdf");
        assert_eq!(s.attachments[0].mime.as_deref(), Some("application/pdf"));
        assert_eq!(s.payload.as_ref().unwrap()["to"], serde_json::json!(["loopgate@test.local", "ben@example.org"]));
        assert_eq!(s.occurred_at.unwrap().to_rfc3339(), "2026-11-23T08:15:00+00:00");
        assert_eq!(s.trust, Trust::Untrusted);
    }

    #[test]
    fn an_html_only_mail_reads_as_text() {
        let s = mail("html_only");
        assert!(s.text.contains("Can we move the call to Thursday?"), "{}", s.text);
        assert!(!s.text.contains("<p>"), "{}", s.text);
        assert!(s.actor.unwrap().is_owner);
    }

    #[test]
    fn auto_replies_bounces_lists_and_our_own_mail_are_ignored() {
        for name in ["auto_reply", "bounce", "list_mail", "own_digest"] {
            assert!(matches!(normalize(&recorded(name), &ME, &identities(), "uid:1:1"), Inbound::Ignored(_)), "{name}");
        }
        assert!(matches!(normalize(b"\x00\xff garbage", &ME, &identities(), "uid:1:1"), Inbound::Ignored(_)));
    }

    #[test]
    fn an_html_reply_loses_its_quoted_part() {
        let Inbound::Reply(reply) = normalize(&recorded("html_reply"), &ME, &identities(), "uid:1:1") else {
            panic!("not a reply")
        };
        let lines: Vec<&str> = reply.text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(lines, ["2 snooze 3d", "approve A4"], "{:?}", reply.text);
    }

    #[test]
    fn a_reply_to_a_digest_is_found_by_subject_or_references() {
        let Inbound::Reply(reply) = normalize(&recorded("digest_reply"), &ME, &identities(), "uid:1:1") else {
            panic!("not a reply")
        };
        assert_eq!(reply.token, "k3j9x2m4q8w7e5r1t6y0");
        assert_eq!(reply.from, "owner@test.local");
        assert!(reply.text.starts_with("1 act\n2 snooze 3d"), "{}", reply.text);
        assert_eq!(reply.message_id.as_deref(), Some("reply-1@test.local"));
        let by_reference = digest_token(
            "Re: your day",
            ["<digest.abcdefabcdefabcdef12@loopgate.test.local>".to_owned()].iter(),
            "loopgate.test.local",
        );
        assert_eq!(by_reference.as_deref(), Some("abcdefabcdefabcdef12"));
        assert_eq!(digest_token("Re: [lg-short]", std::iter::empty(), "x"), None);
        assert_eq!(
            digest_token(
                "Re: x",
                ["<digest.abcdefabcdefabcdef12@evil.example>".to_owned()].iter(),
                "loopgate.test.local"
            ),
            None
        );
    }
}
