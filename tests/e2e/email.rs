//! The email channel end to end, against real mail servers on loopback: Dovecot (IMAP,
//! with IDLE) and OpenSMTPD (SMTP, delivering into Dovecot), started by `scripts/test`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use loopgate::config::{Config, ConfigDuration, EmailSection, MailSecurity, MailServerSection};
use loopgate_engine::SystemClock;
use mail_parser::MessageParser;
use serde_json::{Value, json};

use crate::helpers::{TestApp, anonymous_client, spawn_app_in};
use crate::intelligence::owner_config;
use crate::mail::{self, ONE_AT_A_TIME, create_folder, folder, plain, send_raw, wait_for_messages};
use crate::telegram::four_suggestions;

pub fn email_section(inbox: &str, owner_folder: &str) -> EmailSection {
    let server = |port: u16| MailServerSection {
        host: "127.0.0.1".into(),
        port,
        security: MailSecurity::None,
        ..MailServerSection::default()
    };
    EmailSection {
        imap: MailServerSection {
            username: "loopgate".into(),
            password_env: Some("TEST_MAIL_PASSWORD".into()),
            mailbox: Some(inbox.into()),
            ..server(mail::imap_port())
        },
        smtp: server(mail::smtp_port()),
        from: Some("loopgate <loopgate@test.local>".into()),
        digest_to: vec![format!("owner+{owner_folder}@test.local")],
        allowed_senders: vec![format!("owner+{owner_folder}@test.local")],
        reply_secret_env: Some("TEST_REPLY_SECRET".into()),
        idle_timeout: ConfigDuration::secs(2),
        stale_after: Some(ConfigDuration::secs(8)),
        ..EmailSection::default()
    }
}

/// A test's own mailboxes: loopgate reads `inbox`; the owner's mail lands in `owner`.
struct Boxes {
    inbox: String,
    owner: String,
}

async fn boxes(name: &str) -> Boxes {
    let boxes = Boxes { inbox: folder(&format!("{name}in")), owner: folder(&format!("{name}own")) };
    create_folder("loopgate", &boxes.inbox).await;
    boxes
}

async fn app_in(dir: tempfile::TempDir, b: &Boxes, customize: impl FnOnce(&mut Config)) -> TestApp {
    let section = email_section(&b.inbox, &b.owner);
    let app = spawn_app_in(dir, Arc::new(SystemClock), move |c| {
        owner_config(c);
        c.owner.emails = vec!["owner@test.local".into()];
        c.email = Some(section);
        customize(c);
    })
    .await;
    wait_ready(&app).await;
    app
}

/// The IMAP side is connected and has looked at the mailbox.
pub async fn wait_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = anonymous_client().get(app.url("/readyz")).send().await.unwrap().status();
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "the email channel never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn email_signals(app: &TestApp) -> Vec<Value> {
    app.get("/api/signals?source=email&limit=100").await["signals"].as_array().unwrap().clone()
}

async fn wait_for_signals(app: &TestApp, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let signals = email_signals(app).await;
        if signals.len() >= count {
            return signals;
        }
        assert!(Instant::now() < deadline, "only {} of {count} email signals: {signals:#?}", signals.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn to_inbox(b: &Boxes) -> String {
    format!("loopgate+{}@test.local", b.inbox)
}

/// The parts of a received mail a test looks at.
struct Received {
    subject: String,
    message_id: String,
    in_reply_to: Vec<String>,
    text: String,
    html: Option<String>,
    headers: String,
}

fn read(raw: &[u8]) -> Received {
    let m = MessageParser::default().parse(raw).expect("a mail");
    let ids = |v: &mail_parser::HeaderValue<'_>| match v {
        mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
        mail_parser::HeaderValue::TextList(l) => l.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    };
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    Received {
        subject: m.subject().unwrap_or_default().to_owned(),
        message_id: m.message_id().unwrap_or_default().to_owned(),
        in_reply_to: ids(m.in_reply_to()),
        text: m.body_text(0).unwrap_or_default().replace("\r\n", "\n"),
        html: m.body_html(0).map(|h| h.to_string()),
        headers: String::from_utf8_lossy(&raw[..head_end]).into_owned(),
    }
}

/// Replies to the digest as the owner would, as `owner+folder`.
async fn reply(b: &Boxes, digest: &Received, n: usize, content_type: &str, body: &str) -> String {
    let id = format!("reply-{n}-{}@test.local", b.owner);
    let from = format!("Owner <owner+{}@test.local>", b.owner);
    let raw = format!(
        "From: {from}\nTo: {}\nSubject: Re: {}\nDate: Mon, 23 Nov 2026 09:00:00 +0000\nMessage-ID: <{id}>\n\
         In-Reply-To: <{}>\nReferences: <{}>\nMIME-Version: 1.0\nContent-Type: {content_type}; charset=utf-8\n\n{body}\n",
        to_inbox(b),
        digest.subject,
        digest.message_id,
        digest.message_id
    );
    send_raw(&format!("owner+{}@test.local", b.owner), &to_inbox(b), &raw).await;
    id
}

/// The confirmation of reply `id`, from the owner's folder.
async fn confirmation_of(b: &Boxes, id: &str) -> Received {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = mail::messages("owner", &b.owner)
            .await
            .iter()
            .map(|raw| read(raw))
            .find(|m| m.in_reply_to.iter().any(|r| r == id));
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "no confirmation of {id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn suggestion(app: &TestApp, id: i64) -> Value {
    app.get(&format!("/api/suggestions/{id}")).await
}

#[tokio::test]
async fn incoming_mail_becomes_signals_and_automatic_mail_is_skipped() {
    let _one = ONE_AT_A_TIME.lock().await;
    let b = boxes("in").await;
    let app = app_in(tempfile::tempdir().unwrap(), &b, |_| {}).await;
    let to = to_inbox(&b);

    let multipart = "From: Ana Lima <ana@example.org>\nTo: loopgate@test.local, ben@example.org\nSubject: Q3 report\n\
        Date: Mon, 23 Nov 2026 09:15:00 +0100\nMessage-ID: <q3-{F}@example.org>\nIn-Reply-To: <prev-{F}@example.org>\n\
        References: <root-{F}@example.org> <prev-{F}@example.org>\nMIME-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain; charset=utf-8\n\n\
        Could you review the Q3 report by Friday?\n--b1\nContent-Type: application/pdf; name=\"q3.pdf\"\n\
        Content-Disposition: attachment; filename=\"q3.pdf\"\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--b1--\n"
        .replace("{F}", &b.inbox);
    send_raw("ana@example.org", &to, &multipart).await;
    let html = "From: Owner <owner@test.local>\nTo: loopgate@test.local\nSubject: Thursday\nMessage-ID: <html-{F}@test.local>\n\
        MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n<p>Can we move the call to <b>Thursday</b>?</p>\n"
        .replace("{F}", &b.inbox);
    send_raw("owner@test.local", &to, &html).await;
    let auto = plain(
        "Ben <ben@example.org>",
        &to,
        "Out of office",
        &format!("ooo-{}@example.org", b.inbox),
        "Auto-Submitted: auto-replied\n",
        "Away.",
    );
    send_raw("ben@example.org", &to, &auto).await;
    let bulk = plain(
        "News <news@lists.example.org>",
        &to,
        "Weekly",
        &format!("news-{}@example.org", b.inbox),
        "Precedence: bulk\nList-Id: <weekly.example.org>\n",
        "News.",
    );
    send_raw("news@lists.example.org", &to, &bulk).await;
    let last = plain(
        "Ben <ben@example.org>",
        &to,
        "Lunch?",
        &format!("lunch-{}@example.org", b.inbox),
        "",
        "Lunch on Friday?",
    );
    send_raw("ben@example.org", &to, &last).await;

    let signals = wait_for_signals(&app, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(email_signals(&app).await.len(), 3, "the auto-reply and the list mail are not signals");
    let by_id = |id: String| signals.iter().find(|s| s["external_id"] == id).unwrap_or_else(|| panic!("{id}")).clone();
    let q3 = by_id(format!("q3-{}@example.org", b.inbox));
    assert_eq!(q3["kind"], "email");
    assert_eq!(q3["actor"]["id"], "ana@example.org");
    assert_eq!(q3["actor"]["name"], "Ana Lima");
    assert_eq!(q3["actor"]["is_owner"], false);
    assert!(q3["text"].as_str().unwrap().starts_with("Q3 report\n\nCould you review the Q3 report by Friday?"), "{q3}");
    assert_eq!(q3["conversation"]["id"], "ana@example.org");
    assert_eq!(q3["conversation"]["thread_id"], format!("root-{}@example.org", b.inbox));
    assert_eq!(q3["attachments"][0]["name"], "q3.pdf");
    assert_eq!(q3["payload"]["to"], json!(["loopgate@test.local", "ben@example.org"]));
    let html = by_id(format!("html-{}@test.local", b.inbox));
    assert!(html["text"].as_str().unwrap().contains("Can we move the call to Thursday?"), "{html}");
    assert_eq!(html["actor"]["is_owner"], true);
}

#[tokio::test]
async fn the_digest_is_mailed_and_answered_by_reply_line_by_line() {
    let _one = ONE_AT_A_TIME.lock().await;
    let b = boxes("dg").await;
    let app = app_in(tempfile::tempdir().unwrap(), &b, |_| {}).await;
    let named = four_suggestions(&app).await;
    let id_of = |who: &str| named.iter().find(|(n, _)| n == who).unwrap().1;

    // Nothing asked yet: the digest lists the four suggestions, best first.
    let (status, queued) = app.post("/api/digest", json!({})).await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["outcome"], "queued");
    assert_eq!(queued["suggestions"], 4);
    let digest = read(&wait_for_messages("owner", &b.owner, 1).await[0]);
    let token = digest.subject.split("[lg-").nth(1).unwrap().trim_end_matches(']').to_owned();
    assert_eq!(token.len(), 20);
    assert_eq!(digest.message_id, format!("digest.{token}@test.local"));
    assert!(digest.headers.contains("Auto-Submitted: auto-generated"), "{}", digest.headers);
    assert!(digest.text.contains("4 suggestions wait for you"), "{}", digest.text);
    assert!(digest.text.contains("How to answer"), "{}", digest.text);
    assert!(digest.html.as_deref().unwrap_or_default().contains("<b>1. "), "an HTML part too");
    let listed = |n: usize| -> i64 {
        let line = digest.text.lines().find(|l| l.starts_with(&format!("{n}. "))).unwrap();
        let who = ["ANA", "BEN", "CEM", "DEV"].into_iter().find(|w| line.contains(w)).unwrap();
        id_of(who)
    };
    let (one, two, three, four) = (listed(1), listed(2), listed(3), listed(4));

    // Top-posted over the quoted digest: only the line above the quote counts.
    let first = reply(
        &b,
        &digest,
        1,
        "text/plain",
        "1 act\n1 edit: Checked, all fine.\n\nOn Mon, 23 Nov 2026 at 07:00, loopgate <loopgate@test.local> wrote:\n> 1. Reply\n> 2 dismiss\n",
    )
    .await;
    let confirmed = confirmation_of(&b, &first).await;
    assert!(confirmed.subject.starts_with("Re: "), "{}", confirmed.subject);
    // A reply's words are the owner's: "act" alone asks for them; "edit: …" gives them.
    assert!(
        confirmed.text.contains("1 act\n  → not applied: this reply needs your words — answer “1 edit: <the text>”"),
        "{}",
        confirmed.text
    );
    assert!(
        confirmed.text.contains("1 edit: Checked, all fine.\n  → applied: Edited. It waits for approval A"),
        "{}",
        confirmed.text
    );
    assert_eq!(suggestion(&app, one).await["state"], "edited");
    assert_eq!(suggestion(&app, two).await["state"], "active", "quoted lines are not commands");
    let approval = app.get("/api/approvals?state=pending").await["approvals"][0]["id"].as_i64().unwrap();

    // HTML only.
    let second = reply(&b, &digest, 2, "text/html", "<div>2 snooze 3d</div><blockquote>1 dismiss</blockquote>").await;
    assert!(confirmation_of(&b, &second).await.text.contains("applied: Snoozed until"));
    assert_eq!(suggestion(&app, two).await["state"], "snoozed");

    // With a signature, and mixed valid and invalid lines.
    let third = reply(
        &b,
        &digest,
        3,
        "text/plain",
        &format!("3 DISMISS\n4 edit: Paid on Friday, thanks!\nthanks a lot\n9 act\napprove A{approval}\n-- \nNelly\n1 dismiss\n"),
    )
    .await;
    let text = confirmation_of(&b, &third).await.text;
    assert!(text.contains("3 DISMISS\n  → applied: Dismissed."), "{text}");
    assert!(text.contains("4 edit: Paid on Friday, thanks!\n  → applied: Edited."), "{text}");
    assert!(text.contains("thanks a lot\n  → not understood"), "{text}");
    assert!(text.contains("9 act\n  → unknown item 9"), "{text}");
    // A1 was asked for after this digest went out: the digest's numbers are what it listed.
    assert!(text.contains(&format!("approve A{approval}\n  → unknown item A{approval}")), "{text}");
    assert!(!text.contains("1 dismiss"), "the signature ends the answer: {text}");
    assert_eq!(suggestion(&app, three).await["state"], "dismissed");
    let four_now = suggestion(&app, four).await;
    assert_eq!(four_now["state"], "edited");
    assert_eq!(four_now["edited_action"]["text"], "Paid on Friday, thanks!");
    assert_eq!(app.get(&format!("/api/approvals/{approval}")).await["state"], "pending");

    // The next digest lists the pending approvals; approving from it works.
    let (_, queued) = app.post("/api/digest", json!({})).await;
    assert_eq!(queued["approvals"], 2, "{queued}");
    let second_digest = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = mail::messages("owner", &b.owner)
                .await
                .iter()
                .map(|raw| read(raw))
                .find(|m| m.message_id == queued["message_id"]);
            if let Some(found) = found {
                break found;
            }
            assert!(Instant::now() < deadline, "the second digest never arrived");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(second_digest.text.contains(&format!("A{approval}. Approve?")), "{}", second_digest.text);
    let fifth = reply(&b, &second_digest, 5, "text/plain", &format!("Approve a{approval}")).await;
    let text = confirmation_of(&b, &fifth).await.text;
    assert!(text.contains(&format!("→ applied: Approved A{approval}")), "{text}");
    assert_eq!(app.get(&format!("/api/approvals/{approval}")).await["state"], "approved");
    let decided = &suggestion(&app, three).await["decision"];
    assert_eq!(decided["via"], "email");
    assert_eq!(decided["by"], format!("owner+{}@test.local", b.owner));

    // Answering something already decided says who decided it, where and when.
    let again = reply(&b, &digest, 4, "text/plain", "3 act").await;
    let text = confirmation_of(&b, &again).await.text;
    assert!(text.contains("not applied: Already decided: dismissed via email by owner+"), "{text}");

    // An empty digest is not sent.
    for s in crate::intelligence::suggestions(&app, "active").await {
        app.post(&format!("/api/suggestions/{}/respond", s["id"]), json!({"response": "dismiss"})).await;
    }
    for a in app.get("/api/approvals?state=pending").await["approvals"].as_array().unwrap() {
        app.post(&format!("/api/approvals/{}/decide", a["id"]), json!({"decision": "deny"})).await;
    }
    let (status, empty) = app.post("/api/digest", json!({})).await;
    assert_eq!((status, empty["outcome"].as_str()), (200, Some("empty")));
}

#[tokio::test]
async fn forged_senders_and_bad_tokens_change_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let b = boxes("fg").await;
    let app = app_in(tempfile::tempdir().unwrap(), &b, |c| {
        c.email.as_mut().unwrap().reply_ttl = ConfigDuration::secs(4);
    })
    .await;
    four_suggestions(&app).await;
    app.post("/api/digest", json!({})).await;
    let digest = read(&wait_for_messages("owner", &b.owner, 1).await[0]);
    let before = crate::intelligence::suggestions(&app, "active").await;
    let audit_before = app.get("/api/audit").await["audit"].as_array().unwrap().len();
    let to = to_inbox(&b);

    // A stranger answering the real digest (the token is right, the sender is not).
    let stranger_box = folder("stranger");
    let forged = format!(
        "From: Mallory <stranger+{stranger_box}@test.local>\nTo: {to}\nSubject: Re: {}\nMessage-ID: <forged-{}@test.local>\n\
         In-Reply-To: <{}>\nContent-Type: text/plain\n\n1 act\n2 dismiss\n",
        digest.subject, b.inbox, digest.message_id
    );
    send_raw(&format!("stranger+{stranger_box}@test.local"), &to, &forged).await;
    // The owner's address in From but a token that was never issued, and one altered.
    let unknown = plain(
        &format!("Owner <owner+{}@test.local>", b.owner),
        &to,
        "Re: loopgate [lg-aaaaaaaaaaaaaaaaaaaa]",
        &format!("unknown-{}@test.local", b.inbox),
        "",
        "1 act\n2 dismiss",
    );
    send_raw("owner@test.local", &to, &unknown).await;
    let token = digest.subject.split("[lg-").nth(1).unwrap().trim_end_matches(']').to_owned();
    let altered_token: String = token.chars().rev().collect();
    let altered = plain(
        &format!("Owner <owner+{}@test.local>", b.owner),
        &to,
        &format!("Re: loopgate [lg-{altered_token}]"),
        &format!("altered-{}@test.local", b.inbox),
        "",
        "3 dismiss",
    );
    send_raw("owner@test.local", &to, &altered).await;
    // No token at all: just a mail.
    let no_token = plain(
        &format!("Owner <owner+{}@test.local>", b.owner),
        &to,
        "Re: loopgate",
        &format!("plain-{}@test.local", b.inbox),
        "",
        "4 dismiss",
    );
    send_raw("owner@test.local", &to, &no_token).await;

    let unknown_answer = confirmation_of(&b, &format!("unknown-{}@test.local", b.inbox)).await;
    assert!(
        unknown_answer.text.contains("does not answer a digest I know of; nothing was applied"),
        "{}",
        unknown_answer.text
    );
    assert!(
        !unknown_answer.text.contains("ANA") && !unknown_answer.text.contains("invoice"),
        "nothing of a digest leaks"
    );
    confirmation_of(&b, &format!("altered-{}@test.local", b.inbox)).await;
    wait_for_signals(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(crate::intelligence::suggestions(&app, "active").await, before, "nothing was applied");
    assert_eq!(app.get("/api/audit").await["audit"].as_array().unwrap().len(), audit_before);
    assert!(mail::messages("stranger", &stranger_box).await.is_empty(), "the forger gets no answer");
    let signals = email_signals(&app).await;
    assert_eq!(signals.len(), 1, "only the token-less mail is a signal: {signals:#?}");
    assert_eq!(signals[0]["external_id"], format!("plain-{}@test.local", b.inbox));

    // The owner, the right token, but after the digest's answers expired.
    let issued = Instant::now();
    while issued.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late = reply(&b, &digest, 9, "text/plain", "1 act").await;
    let text = confirmation_of(&b, &late).await.text;
    assert!(text.contains("This digest's answers expired at"), "{text}");
    assert_eq!(crate::intelligence::suggestions(&app, "active").await, before, "nothing was applied");
}

#[tokio::test]
async fn imap_restarts_and_loopgate_restarts_lose_and_duplicate_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let b = boxes("rs").await;
    let dir = tempfile::tempdir().unwrap();
    let to = to_inbox(&b);
    let send = |n: u32| {
        let (to, inbox) = (to.clone(), b.inbox.clone());
        async move {
            let raw = plain(
                "Ana <ana@example.org>",
                &to,
                &format!("mail {n}"),
                &format!("m{n}-{inbox}@example.org"),
                "",
                "hello",
            );
            send_raw("ana@example.org", &to, &raw).await;
        }
    };
    let quick = |c: &mut Config| c.email.as_mut().unwrap().stale_after = Some(ConfigDuration::secs(4));
    let app = app_in(dir, &b, quick).await;
    send(1).await;
    send(2).await;
    wait_for_signals(&app, 2).await;

    // Dovecot goes away: /readyz says so; it comes back: loopgate reconnects, reads on
    // from where it was, and is ready again.
    tokio::task::spawn_blocking(mail::stop_dovecot).await.unwrap();
    let readyz = || async { anonymous_client().get(app.url("/readyz")).send().await.unwrap().status().as_u16() };
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz().await == 200 {
        assert!(Instant::now() < deadline, "/readyz never noticed IMAP was gone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::spawn_blocking(mail::start_dovecot).await.unwrap();
    wait_ready(&app).await;
    send(3).await;
    wait_for_signals(&app, 3).await;

    // A restart in passing.
    tokio::task::spawn_blocking(mail::restart_dovecot).await.unwrap();
    send(6).await;
    wait_for_signals(&app, 4).await;

    // loopgate restarts; mail arrives while it is down.
    let dir = app.shutdown().await;
    send(4).await;
    wait_for_messages("loopgate", &b.inbox, 5).await;
    let app = app_in(dir, &b, quick).await;
    send(5).await;
    let signals = wait_for_signals(&app, 6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids: Vec<String> =
        email_signals(&app).await.iter().map(|s| s["external_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    let expected: Vec<String> = (1..=6).map(|n| format!("m{n}-{}@example.org", b.inbox)).collect();
    assert_eq!(ids, expected, "{signals:#?}");
}

#[tokio::test]
async fn an_approved_message_to_an_email_address_goes_out_through_the_outbox() {
    let _one = ONE_AT_A_TIME.lock().await;
    let b = boxes("msg").await;
    let app = app_in(tempfile::tempdir().unwrap(), &b, |_| {}).await;
    let ana_box = folder("ana");
    let submit = |to: String| {
        json!({"action": {"kind": "message", "target": {"channel": "email", "conversation": to, "reply_to": "q1@example.org"},
               "text": "Yes, Friday works."}, "reason": "answer Ana"})
    };
    let (status, task) = app.post("/api/tasks", submit(format!("stranger+{ana_box}@test.local"))).await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["state"], "awaiting_approval", "a message leaving the machine asks first");
    let (_, decided) =
        app.post(&format!("/api/approvals/{}/decide", task["approval_id"]), json!({"decision": "approve"})).await;
    // Queued in the outbox: the task follows the delivery, and succeeds once it is sent.
    assert_eq!(decided["task"]["state"], "delivering", "{decided}");
    let settled = crate::telegram::settled_task(&app, task["id"].as_i64().unwrap()).await;
    assert_eq!(settled["state"], "succeeded", "{settled}");
    let sent = read(&wait_for_messages("stranger", &ana_box, 1).await[0]);
    assert!(sent.text.contains("Yes, Friday works."), "{}", sent.text);
    assert_eq!(sent.in_reply_to, ["q1@example.org"]);
    assert_eq!(sent.message_id, format!("task.{}@test.local", task["id"]));

    // An address the server refuses for good (5xx) fails permanently, once.
    let (_, task) = app.post("/api/tasks", submit("nobody@test.local".into())).await;
    app.post(&format!("/api/approvals/{}/decide", task["approval_id"]), json!({"decision": "approve"})).await;
    let store = app.store.clone();
    let key = format!("task:{}:message", task["id"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let row = store.outbound_by_key("email", &key).await.unwrap().expect("queued");
        if row.state == loopgate_engine::outbox::OutboundState::Failed {
            break row;
        }
        assert!(Instant::now() < deadline, "still {:?}: {:?}", row.state, row.last_error);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed.attempts, 1, "a 5xx is not retried");
    assert!(failed.last_error.unwrap().contains("SMTP refused"));
    // And the task says so, with the server's words: it did not succeed.
    let settled = crate::telegram::settled_task(&app, task["id"].as_i64().unwrap()).await;
    assert_eq!(settled["state"], "failed", "{settled}");
    assert!(settled["error"].as_str().unwrap().contains("SMTP refused"), "{settled}");
}

#[tokio::test]
async fn the_digest_goes_out_on_its_schedule_and_from_the_command_line() {
    let _one = ONE_AT_A_TIME.lock().await;
    let b = boxes("sch").await;
    let app = app_in(tempfile::tempdir().unwrap(), &b, |c| {
        c.email.as_mut().unwrap().digest_schedule = Some("*/2 * * * * *".into());
    })
    .await;
    four_suggestions(&app).await;
    let scheduled = read(&wait_for_messages("owner", &b.owner, 1).await[0]);
    assert!(scheduled.subject.contains("4 suggestions"), "{}", scheduled.subject);
    let dir = app.shutdown().await;

    // From the shell, against the same database, without the server.
    let cli_box = folder("cli");
    let extra = format!(
        "[owner]\nemails = [\"owner@test.local\"]\n[email]\nfrom = \"loopgate <loopgate@test.local>\"\n\
         digest_to = [\"owner+{cli_box}@test.local\"]\nreply_secret_env = \"TEST_REPLY_SECRET\"\n\
         [email.imap]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nusername = \"loopgate\"\n\
         password_env = \"TEST_MAIL_PASSWORD\"\nmailbox = \"{}\"\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
        mail::imap_port(),
        b.inbox,
        mail::smtp_port(),
    );
    let config = crate::helpers::write_config(dir.path(), &extra);
    let env = [("TEST_REPLY_SECRET", crate::helpers::REPLY_SECRET), ("TEST_MAIL_PASSWORD", mail::PASSWORD)];
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || crate::helpers::run_cli(&config, &["digest"], &env)).await.unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("digest sent: 4 suggestion(s), 0 approval(s)"), "{stdout}");
    let mailed = read(&wait_for_messages("owner", &cli_box, 1).await[0]);
    assert!(mailed.text.contains("1. "), "{}", mailed.text);
}

#[tokio::test]
async fn the_owner_mailing_a_request_to_loopgate_gets_a_threaded_answer() {
    let _one = ONE_AT_A_TIME.lock().await;
    let b = boxes("req").await;
    let owner = format!("owner+{}@test.local", b.owner);
    let configured = owner.clone();
    let app = app_in(tempfile::tempdir().unwrap(), &b, move |c| c.owner.emails = vec![configured]).await;
    let id = format!("ask-1-{}@test.local", b.owner);
    let raw = format!(
        "From: Owner <{owner}>\nTo: {}\nSubject: plumber\nDate: {}\nMessage-ID: <{id}>\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\nremind me tomorrow at 9 to call the plumber\n\n-- \nSent from my phone\n",
        to_inbox(&b),
        chrono::Utc::now().to_rfc2822(),
    );
    send_raw(&owner, &to_inbox(&b), &raw).await;
    let answer = read(&wait_for_messages("owner", &b.owner, 1).await[0]);
    assert_eq!(answer.subject, "Re: plumber");
    assert_eq!(answer.in_reply_to, std::slice::from_ref(&id));
    assert_eq!(answer.text.trim(), "⏰ Tomorrow 09:00 (Europe/Berlin): call the plumber");
    let scheduled = app.get("/api/suggestions?state=scheduled").await["suggestions"].as_array().unwrap().clone();
    assert_eq!(scheduled.len(), 1, "{scheduled:#?}");
    assert_eq!(scheduled[0]["title"], "Reminder: call the plumber");
    // Someone else's mail asking the same is only a signal: no reminder, no answer.
    let raw = plain(
        "Mallory <mallory@test.local>",
        &to_inbox(&b),
        "plumber",
        "ask-2@test.local",
        "",
        "remind me tomorrow at 9 to wire money",
    );
    send_raw("mallory@test.local", &to_inbox(&b), &raw).await;
    wait_for_signals(&app, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.get("/api/suggestions?state=scheduled").await["suggestions"].as_array().unwrap().len(), 1);
    assert_eq!(mail::messages("owner", &b.owner).await.len(), 1);
    // A From: header is only a claim: "stop" by mail changes nothing, and says why.
    let raw = format!(
        "From: Owner <{owner}>\nTo: {}\nSubject: stop\nDate: {}\nMessage-ID: <stop-1@test.local>\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\nstop\n",
        to_inbox(&b),
        chrono::Utc::now().to_rfc2822(),
    );
    send_raw(&owner, &to_inbox(&b), &raw).await;
    let answer = read(&wait_for_messages("owner", &b.owner, 2).await[1]);
    assert!(answer.text.contains("By mail I take reminders and questions only"), "{}", answer.text);
    assert_eq!(app.get("/api/heartbeat").await["paused"], false);
}

/// One ordinary day of the owner's, across Telegram, Discord and mail, on a controlled
/// clock with a restart in the middle: what they saw, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_day_across_three_channels_with_a_restart() {
    use crate::fake_discord::{DM_CHANNEL, FakeDiscord};
    use crate::fake_telegram::{FakeTelegram, message_json};
    use loopgate_engine::{Clock, ManualClock};

    let _one = ONE_AT_A_TIME.lock().await;
    let b = boxes("day").await;
    let telegram = FakeTelegram::start().await;
    let discord = FakeDiscord::start().await;
    // Monday 30 November 2026, 08:00 in Berlin.
    let clock = ManualClock::new(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 30, 7, 0, 0).unwrap());
    let owner_mail = format!("owner+{}@test.local", b.owner);
    let configure = {
        let (t, d, e) = (
            crate::telegram::telegram_section(&telegram),
            crate::discord::discord_section(&discord),
            email_section(&b.inbox, &b.owner),
        );
        let owner_mail = owner_mail.clone();
        move |c: &mut Config| {
            crate::owner_day::owner_only(c);
            crate::discord::discord_owner(c);
            c.owner.emails = vec![owner_mail.clone()];
            c.telegram = Some(t.clone());
            c.discord = Some(d.clone());
            c.email = Some(e.clone());
        }
    };
    let app = spawn_app_in(tempfile::tempdir().unwrap(), Arc::new(clock.clone()), configure.clone()).await;
    crate::discord::ready(&discord).await;
    let at = |clock: &ManualClock| clock.now().timestamp();

    // 08:00 — on Telegram: a reminder for 10:00.
    let mut asked = message_json(1001, "Ana", 1001, 1, "remind me at 10am to send the invoice");
    asked["date"] = at(&clock).into();
    let asked_at = at(&clock);
    telegram.push("message", asked);
    let seen = crate::owner_day::wait_sent(&telegram, 1).await;
    assert_eq!(seen[0].0, "⏰ <b>Today 10:00 (Europe/Berlin)</b>: send the invoice");

    // 08:05 — in a Discord DM: one for tomorrow.
    clock.advance(chrono::Duration::minutes(5));
    let mut dm = crate::fake_discord::message_json(
        5001,
        DM_CHANNEL,
        None,
        &crate::fake_discord::user_json(crate::discord::OWNER, "Ana"),
        "remind me tomorrow at 9 to water the plants",
    );
    dm["timestamp"] = clock.now().to_rfc3339().into();
    discord.message_create(dm);
    let ack = discord
        .wait_for("the Discord acknowledgement", |f| {
            f.ok_calls("POST /channels/*/messages")
                .into_iter()
                .find(|c| c.body["message_reference"]["message_id"] == "5001")
        })
        .await;
    assert!(ack.body["content"].as_str().unwrap().contains("Tomorrow 09\\:00"), "{:?}", ack.body);

    // 08:10 — a colleague's question, three hours old; a pulse by hand raises it on every chat.
    clock.advance(chrono::Duration::minutes(5));
    let question = crate::intelligence::message(
        "q-1",
        "2002",
        "Ben",
        "2002",
        300,
        clock.now(),
        "Could you review the proposal draft by Thursday?",
    );
    crate::intelligence::ingest(&app, question).await;
    let report = crate::intelligence::pulse(&app).await;
    let run = app.get(&format!("/api/runs/{}", report["run_id"].as_str().unwrap_or_default())).await;
    assert_eq!(report["created"].as_array().map(Vec::len), Some(1), "{}", run["critique"]);
    let seen = crate::owner_day::wait_sent(&telegram, 2).await;
    assert!(seen[1].0.contains("Reply to Ben"), "{seen:#?}");
    discord
        .wait_for("the question on Discord", |f| {
            f.ok_calls("POST /channels/*/messages")
                .into_iter()
                .find(|c| c.body["content"].as_str().unwrap_or_default().contains("Reply to Ben"))
        })
        .await;

    // 08:15 — the owner edits the Telegram request: 11:00 now. The acknowledgement follows.
    clock.advance(chrono::Duration::minutes(5));
    let mut edited = message_json(1001, "Ana", 1001, 1, "remind me at 11am to send the invoice");
    edited["date"] = asked_at.into();
    edited["edit_date"] = at(&clock).into();
    telegram.push("edited_message", edited);
    telegram
        .wait_for("the acknowledgement moved", |f| {
            f.ok_calls("editMessageText")
                .into_iter()
                .find(|e| e["text"] == "⏰ <b>Today 11:00 (Europe/Berlin)</b>: send the invoice")
        })
        .await;

    // A restart in the middle of the morning.
    let dir = app.shutdown().await;
    let app = spawn_app_in(dir, Arc::new(clock.clone()), configure.clone()).await;

    // 10:00 passes quietly; at 11:00 the invoice reminder is posted on both chats.
    clock.advance(chrono::Duration::minutes(105));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(crate::owner_day::sent_to_owner(&telegram).len(), 2, "nothing at 10:00: it was moved");
    clock.advance(chrono::Duration::minutes(60));
    let seen = crate::owner_day::wait_sent(&telegram, 3).await;
    assert!(seen[2].0.contains("Reminder: send the invoice"), "{seen:#?}");
    discord
        .wait_for("the reminder on Discord", |f| {
            f.ok_calls("POST /channels/*/messages")
                .into_iter()
                .find(|c| c.body["content"].as_str().unwrap_or_default().contains("Reminder\\: send the invoice"))
        })
        .await;

    // 11:05 — by mail: what's open? A threaded answer with both.
    clock.advance(chrono::Duration::minutes(5));
    let id = format!("open-1-{}@test.local", b.owner);
    let raw = format!(
        "From: Owner <{owner_mail}>\nTo: {}\nSubject: today\nDate: {}\nMessage-ID: <{id}>\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\nwhat's open?\n",
        to_inbox(&b),
        clock.now().to_rfc2822(),
    );
    send_raw(&owner_mail, &to_inbox(&b), &raw).await;
    let answer = read(&wait_for_messages("owner", &b.owner, 1).await[0]);
    assert_eq!(answer.in_reply_to, [id]);
    assert!(answer.text.contains("Open now:"), "{}", answer.text);
    assert!(answer.text.contains("Reply to Ben"), "{}", answer.text);
    assert!(answer.text.contains("Reminder: send the invoice"), "{}", answer.text);
    assert!(answer.text.contains("Coming up:") && answer.text.contains("water the plants"), "{}", answer.text);

    // What the owner saw on Telegram, in order: the acknowledgement (edited once), the
    // colleague's question, the reminder at its time — and nothing twice after the restart.
    let seen: Vec<String> = crate::owner_day::sent_to_owner(&telegram).into_iter().map(|(t, _)| t).collect();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    app.shutdown().await;
}

/// `loopgate init` with email logs in to the real IMAP server and greets the real SMTP
/// server before it says all is well; a wrong password is named with its fix.
#[tokio::test]
async fn init_checks_the_mail_login_against_the_real_servers() {
    let _one = mail::ONE_AT_A_TIME.lock().await;
    let home = tempfile::tempdir().unwrap();
    let (imap, smtp) = (mail::imap_port().to_string(), mail::smtp_port().to_string());
    let run = |password: &'static str, force: bool| {
        let mut args = vec![
            "init",
            "--non-interactive",
            "--timezone",
            "UTC",
            "--listen",
            "127.0.0.1:0",
            "--email",
            "loopgate@test.local",
            "--owner-email",
            "owner@test.local",
            "--imap-host",
            "127.0.0.1",
            "--imap-port",
            &imap,
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            &smtp,
            "--mail-security",
            "none",
            "--mail-username",
            "loopgate",
            "--smtp-no-login",
        ];
        if force {
            args.push("--force");
        }
        let output = std::process::Command::new(crate::helpers::binary())
            .current_dir(home.path())
            .args(&args)
            .env("LOOPGATE_EMAIL_PASSWORD", password)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (code, stdout) = run(mail::PASSWORD, false);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains(&format!("127.0.0.1:{imap} logged in as loopgate")), "{stdout}");
    assert!(stdout.contains(&format!("127.0.0.1:{smtp} accepts loopgate")), "{stdout}");
    let config = std::fs::read_to_string(home.path().join("config/loopgate.toml")).unwrap();
    let secrets = home.path().join("config/secrets");
    assert!(config.contains(&format!("password_file = \"{}/email_password\"", secrets.display())), "{config}");
    assert!(config.contains(&format!("reply_secret_file = \"{}/reply_secret\"", secrets.display())), "{config}");
    assert!(!config.contains(&format!("\"{}\"", mail::PASSWORD)), "no password in the config: {config}");
    let (code, stdout) = run("not-the-password", true);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  email.imap") && stdout.contains("fix: check email.imap"), "{stdout}");
}
