//! The owner's day in chat, as they meet it: requests taken as commands and acknowledged
//! with their time, reminders posted when due on the shipped heartbeat settings, edits
//! that move or cancel, small talk answered in a line, every kind of message recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use loopgate::config::Config;
use loopgate_engine::ManualClock;
use serde_json::{Value, json};

use crate::fake_telegram::{FakeTelegram, message_json};
use crate::helpers::{TestApp, spawn_app_in};
use crate::telegram::telegram_section;

pub const OWNER: i64 = 1001;

/// The owner as configured by a new user: their id and zone, nothing else changed (the
/// heartbeat at its shipped 5-minute interval, threshold 3).
pub fn owner_only(config: &mut Config) {
    config.owner.telegram_user_ids = vec![OWNER];
    config.owner.timezone = "Europe/Berlin".into();
}

pub async fn telegram_app(dir: tempfile::TempDir, fake: &FakeTelegram, clock: &ManualClock) -> TestApp {
    let section = telegram_section(fake);
    spawn_app_in(dir, Arc::new(clock.clone()), move |c| {
        owner_only(c);
        c.telegram = Some(section);
    })
    .await
}

/// A clock at a known moment: Monday 30 November 2026, 10:00 in Berlin.
pub fn monday_morning() -> ManualClock {
    ManualClock::new(chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 30, 9, 0, 0).unwrap())
}

/// What the bot sent to the owner's chat, in order: (text, buttons' data).
pub fn sent_to_owner(fake: &FakeTelegram) -> Vec<(String, Vec<String>)> {
    fake.ok_calls("sendMessage")
        .into_iter()
        .filter(|m| m["chat_id"] == OWNER)
        .map(|m| {
            let buttons = m["reply_markup"]["inline_keyboard"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|row| row.as_array().cloned().unwrap_or_default())
                .filter_map(|b| b["callback_data"].as_str().map(str::to_owned))
                .collect();
            (m["text"].as_str().unwrap_or_default().to_owned(), buttons)
        })
        .collect()
}

pub async fn wait_sent(fake: &FakeTelegram, count: usize) -> Vec<(String, Vec<String>)> {
    fake.wait_for(&format!("{count} message(s) to the owner"), |f| {
        let sent = sent_to_owner(f);
        (sent.len() >= count).then_some(sent)
    })
    .await
}

/// The owner writes `text` now (by the app's clock: Telegram dates each message).
fn say(fake: &FakeTelegram, clock: &ManualClock, message_id: i64, text: &str) {
    let mut message = message_json(OWNER, "Ana", OWNER, message_id, text);
    message["date"] = json!(loopgate_engine::Clock::now(clock).timestamp());
    fake.push("message", message);
}

/// The owner edits message `message_id` (sent at `sent`) to `text`, now.
fn edit(fake: &FakeTelegram, clock: &ManualClock, message_id: i64, sent: i64, text: &str) {
    let mut message = message_json(OWNER, "Ana", OWNER, message_id, text);
    message["date"] = json!(sent);
    message["edit_date"] = json!(loopgate_engine::Clock::now(clock).timestamp());
    fake.push("edited_message", message);
}

async fn reminders(app: &TestApp) -> Vec<Value> {
    let all = app.get("/api/suggestions?limit=200").await["suggestions"].as_array().unwrap().clone();
    all.into_iter().filter(|s| s["class"] == "reminder").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_reminder_is_acknowledged_at_once_and_posted_at_its_time() {
    let fake = FakeTelegram::start().await;
    let clock = monday_morning();
    let app = telegram_app(tempfile::tempdir().unwrap(), &fake, &clock).await;

    say(&fake, &clock, 1, "remind me in 1 minute to take the cake out of the oven");
    let sent = wait_sent(&fake, 1).await;
    let (ack, buttons) = &sent[0];
    assert_eq!(ack, "⏰ <b>Today 10:01 (Europe/Berlin)</b>: take the cake out of the oven");
    let id = reminders(&app).await[0]["id"].as_i64().unwrap();
    assert_eq!(
        buttons,
        &[format!("s:{id}:at:1h"), format!("s:{id}:at:tm"), format!("s:{id}:at:nw"), format!("s:{id}:cancel")]
    );
    // Nothing else happens before its time: no pulse needed, and none is due for minutes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sent_to_owner(&fake).len(), 1);

    // Its time comes: it is posted within seconds, on the default 5-minute heartbeat.
    clock.advance(chrono::Duration::seconds(60));
    let came = Instant::now();
    let sent = wait_sent(&fake, 2).await;
    assert!(came.elapsed() < Duration::from_secs(5), "posted {:?} after its time", came.elapsed());
    let (card, buttons) = &sent[1];
    assert!(card.contains("Reminder: take the cake out of the oven"), "{card}");
    assert_eq!(buttons[0], format!("s:{id}:act"));
    // The pulse log never ran a reflection for it.
    assert_eq!(app.get("/api/runs").await["runs"].as_array().map(Vec::len), Some(0));
    app.shutdown().await;
}

#[tokio::test]
async fn a_time_that_cannot_be_read_gets_a_question_and_the_answer_sets_it() {
    let fake = FakeTelegram::start().await;
    let clock = monday_morning();
    let app = telegram_app(tempfile::tempdir().unwrap(), &fake, &clock).await;
    say(&fake, &clock, 1, "remind me to call the plumber");
    let sent = wait_sent(&fake, 1).await;
    assert_eq!(sent[0].0, "When should I remind you to call the plumber?");
    assert!(reminders(&app).await.is_empty(), "nothing set without a time");
    say(&fake, &clock, 2, "tomorrow at 9");
    let sent = wait_sent(&fake, 2).await;
    assert_eq!(sent[1].0, "⏰ <b>Tomorrow 09:00 (Europe/Berlin)</b>: call the plumber");
    let reminder = &reminders(&app).await[0];
    assert_eq!(reminder["state"], "scheduled");
    assert_eq!(reminder["due_at"], "2026-12-01T08:00:00Z");
    app.shutdown().await;
}

#[tokio::test]
async fn an_edited_request_moves_its_reminder_and_an_edit_that_no_longer_asks_cancels_it() {
    let fake = FakeTelegram::start().await;
    let clock = monday_morning();
    let app = telegram_app(tempfile::tempdir().unwrap(), &fake, &clock).await;
    say(&fake, &clock, 1, "remind me tomorrow at 9am to call the dentist");
    wait_sent(&fake, 1).await;
    let sent_at = loopgate_engine::Clock::now(&clock).timestamp();
    clock.advance(chrono::Duration::minutes(2));
    edit(&fake, &clock, 1, sent_at, "remind me tomorrow at 10am to call the plumber");
    // The acknowledgement itself is edited to the new words and time.
    let edited = fake
        .wait_for("the acknowledgement edited", |f| {
            f.ok_calls("editMessageText")
                .into_iter()
                .find(|e| e["text"].as_str().unwrap_or_default().contains("plumber"))
        })
        .await;
    assert_eq!(edited["text"], "⏰ <b>Tomorrow 10:00 (Europe/Berlin)</b>: call the plumber");
    let all = reminders(&app).await;
    assert_eq!(all.len(), 1, "one reminder, moved: {all:#?}");
    assert_eq!(all[0]["title"], "Reminder: call the plumber");
    assert_eq!(all[0]["due_at"], "2026-12-01T09:00:00Z");
    // A pulse by hand sees the same message and raises nothing more.
    app.post("/api/pulse", json!({})).await;
    assert_eq!(reminders(&app).await.len(), 1);

    edit(&fake, &clock, 1, sent_at, "never mind, I called already");
    let cancelled = fake
        .wait_for("the acknowledgement shows it cancelled", |f| {
            f.ok_calls("editMessageText")
                .into_iter()
                .find(|e| e["text"].as_str().unwrap_or_default().contains("Cancelled"))
        })
        .await;
    assert!(cancelled.get("reply_markup").is_none(), "no buttons left: {cancelled}");
    assert_eq!(reminders(&app).await[0]["state"], "superseded");
    assert_eq!(sent_to_owner(&fake).len(), 1, "edits answer by editing, never by a new message");
    app.shutdown().await;
}

#[tokio::test]
async fn the_buttons_under_an_acknowledgement_move_or_cancel_it() {
    let fake = FakeTelegram::start().await;
    let clock = monday_morning();
    let app = telegram_app(tempfile::tempdir().unwrap(), &fake, &clock).await;
    say(&fake, &clock, 1, "remind me in 2 hours to stretch");
    wait_sent(&fake, 1).await;
    let id = reminders(&app).await[0]["id"].as_i64().unwrap();
    let ack = (5000..5010).find(|m| fake.message(OWNER, *m).is_some()).unwrap();
    let press = fake.press(OWNER, "Ana", OWNER, ack, &format!("s:{id}:at:tm"));
    let answer = fake
        .wait_for("the press answered", |f| {
            f.ok_calls("answerCallbackQuery").into_iter().find(|a| a["callback_query_id"] == press)
        })
        .await;
    assert_eq!(answer["text"], "⏰ Moved to Tomorrow 09:00 (Europe/Berlin)");
    fake.wait_for("the acknowledgement moved", |f| {
        f.message(OWNER, ack).filter(|m| m["text"].as_str().unwrap().contains("Tomorrow 09:00"))
    })
    .await;
    // A stranger cannot cancel it.
    let stranger = fake.press(4242, "Mallory", OWNER, ack, &format!("s:{id}:cancel"));
    let refused = fake
        .wait_for("the stranger refused", |f| {
            f.ok_calls("answerCallbackQuery").into_iter().find(|a| a["callback_query_id"] == stranger)
        })
        .await;
    assert!(refused["text"].as_str().unwrap().contains("only the owner"), "{refused}");
    let cancel = fake.press(OWNER, "Ana", OWNER, ack, &format!("s:{id}:cancel"));
    fake.wait_for("cancelled", |f| {
        f.ok_calls("answerCallbackQuery")
            .into_iter()
            .find(|a| a["callback_query_id"] == cancel && a["text"] == "Cancelled.")
    })
    .await;
    fake.wait_for("the acknowledgement shows it", |f| {
        f.message(OWNER, ack).filter(|m| m["text"].as_str().unwrap().contains("Cancelled"))
    })
    .await;
    // Cancelling taught nothing: no ignored-noise memory.
    let memories = app.get("/api/memory?kind=ignored_noise").await["memories"].as_array().unwrap().len();
    assert_eq!(memories, 0);
    app.shutdown().await;
}

#[tokio::test]
async fn small_talk_gets_a_line_and_requests_get_content_without_a_model() {
    let fake = FakeTelegram::start().await;
    let clock = monday_morning();
    let app = telegram_app(tempfile::tempdir().unwrap(), &fake, &clock).await;
    say(&fake, &clock, 1, "hello");
    let first = wait_sent(&fake, 1).await[0].0.clone();
    assert!(first.starts_with("Hi!"), "{first}");
    assert!(first.contains("Things you can say"), "the capabilities, once a day: {first}");
    for (n, text) in ["thanks!", "ok", "remember that Ana prefers calls", "what do you know about Ana?", "what's open"]
        .iter()
        .enumerate()
    {
        say(&fake, &clock, n as i64 + 2, text);
        wait_sent(&fake, n + 2).await;
    }
    let sent: Vec<String> = sent_to_owner(&fake).into_iter().map(|(t, _)| t).collect();
    assert_eq!(sent[1], "You're welcome.");
    assert_eq!(sent[2], "👍");
    assert_eq!(sent[3], "Remembered (preference): Ana prefers calls");
    assert!(sent[4].contains("Ana prefers calls"), "{}", sent[4]);
    assert_eq!(sent[5], "Nothing open, and no reminders to come.");
    assert!(sent[1..].iter().all(|t| !t.contains("Things you can say")), "once a day: {sent:#?}");
    // The next day, the first message brings the capabilities again.
    clock.advance(chrono::Duration::days(1));
    say(&fake, &clock, 20, "morning");
    let next = wait_sent(&fake, 7).await[6].0.clone();
    assert!(next.contains("Things you can say"), "{next}");
    app.shutdown().await;
}

#[tokio::test]
async fn voice_notes_and_other_media_are_signals() {
    let fake = FakeTelegram::start().await;
    let clock = monday_morning();
    let app = telegram_app(tempfile::tempdir().unwrap(), &fake, &clock).await;
    let mut voice = message_json(2002, "Ben", -100200, 7, "");
    voice.as_object_mut().unwrap().remove("text");
    voice["voice"] = json!({"duration": 7, "mime_type": "audio/ogg", "file_id": "AwACAgIAAx", "file_unique_id": "AgADvQ", "file_size": 20480});
    fake.push("message", voice);
    let deadline = Instant::now() + Duration::from_secs(15);
    let signal = loop {
        let signals = app.get("/api/signals?source=telegram").await["signals"].as_array().unwrap().clone();
        if let Some(found) = signals.into_iter().find(|s| s["external_id"] == "-100200:7") {
            break found;
        }
        assert!(Instant::now() < deadline, "the voice note was not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(signal["text"], "[voice note 0:07]");
    assert_eq!(signal["attachments"][0]["mime"], "audio/ogg");
    assert_eq!(signal["attachments"][0]["size"], 20480);
    app.shutdown().await;
}

#[tokio::test]
async fn an_owner_request_through_the_api_is_a_command_too() {
    let clock = monday_morning();
    let app = spawn_app_in(tempfile::tempdir().unwrap(), Arc::new(clock.clone()), owner_only).await;
    let (status, body) = app
        .post(
            "/api/signals",
            json!({"source": "telegram", "kind": "message", "external_id": "x1", "actor": {"id": "1001"},
                   "text": "remind me tomorrow at 9 to renew the passport"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["reply"], "⏰ Tomorrow 09:00 (Europe/Berlin): renew the passport");
    // Someone else's words are never a command.
    let (_, body) = app
        .post(
            "/api/signals",
            json!({"source": "telegram", "kind": "message", "external_id": "x2", "actor": {"id": "555"},
                   "text": "remind me tomorrow at 9 to transfer money to Mallory"}),
        )
        .await;
    assert!(body.get("reply").is_none(), "{body}");
    assert_eq!(reminders(&app).await.len(), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_asked_for_inside_quiet_hours_still_comes_at_its_time() {
    let fake = FakeTelegram::start().await;
    // Monday 30 November 2026, 22:30 in Berlin: quiet from 22:00 to 07:00.
    let clock = ManualClock::new(chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 30, 21, 30, 0).unwrap());
    let section = telegram_section(&fake);
    let app = spawn_app_in(tempfile::tempdir().unwrap(), Arc::new(clock.clone()), move |c| {
        owner_only(c);
        c.owner.quiet_hours = Some("22:00-07:00".into());
        c.telegram = Some(section);
    })
    .await;
    say(&fake, &clock, 1, "remind me at 23:00 to close the windows");
    let sent = wait_sent(&fake, 1).await;
    assert_eq!(sent[0].0, "⏰ <b>Today 23:00 (Europe/Berlin)</b>: close the windows");
    clock.advance(chrono::Duration::minutes(30));
    let sent = wait_sent(&fake, 2).await;
    assert!(sent[1].0.contains("Reminder: close the windows"), "{sent:#?}");
    // What loopgate infers waits for the morning: a pulse now is deferred.
    let report = app.post("/api/pulse", json!({"scheduled": true})).await.1;
    assert_eq!(report["outcome"], "deferred", "{report}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_due_while_stopped_waits_for_resume_then_comes() {
    let fake = FakeTelegram::start().await;
    let clock = monday_morning();
    let app = telegram_app(tempfile::tempdir().unwrap(), &fake, &clock).await;
    say(&fake, &clock, 1, "remind me in 5 minutes to check the oven");
    wait_sent(&fake, 1).await;
    say(&fake, &clock, 2, "stop");
    let sent = wait_sent(&fake, 2).await;
    assert!(sent[1].0.starts_with("⏹ Stopped"), "{sent:#?}");
    clock.advance(chrono::Duration::minutes(6));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(sent_to_owner(&fake).len(), 2, "nothing is dispatched while stopped");
    let (status, _) = app.post("/api/resume", json!({})).await;
    assert_eq!(status, 200);
    let came = Instant::now();
    let sent = wait_sent(&fake, 3).await;
    assert!(sent[2].0.contains("Reminder: check the oven"), "{sent:#?}");
    assert!(came.elapsed() < Duration::from_secs(5), "{:?} after resume", came.elapsed());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_answers_and_repeats_are_read_as_the_owner_meant_them() {
    let fake = FakeTelegram::start().await;
    let clock = monday_morning();
    let app = telegram_app(tempfile::tempdir().unwrap(), &fake, &clock).await;
    app.post("/api/memory", json!({"kind": "preference", "content": "Ana prefers calls"})).await;

    // A question back; news with a time in it is not the answer; "forget it" drops it and
    // deletes no memory.
    say(&fake, &clock, 1, "remind me to call the plumber");
    wait_sent(&fake, 1).await;
    say(&fake, &clock, 2, "the meeting moved to 3pm");
    let sent = wait_sent(&fake, 2).await;
    assert!(!sent[1].0.contains('⏰'), "not an answer: {sent:#?}");
    say(&fake, &clock, 3, "forget it");
    let sent = wait_sent(&fake, 3).await;
    assert_eq!(sent[2].0, "OK — no reminder to call the plumber.");
    assert_eq!(app.get("/api/memory?q=Ana").await["memories"].as_array().unwrap().len(), 1);
    say(&fake, &clock, 4, "tomorrow at 9");
    let sent = wait_sent(&fake, 4).await;
    assert!(!sent[3].0.contains('⏰'), "the question is gone: {sent:#?}");

    // The same request on another day, after the first was done: a new reminder.
    say(&fake, &clock, 5, "remind me in 1 minute to stretch");
    wait_sent(&fake, 5).await;
    clock.advance(chrono::Duration::seconds(61));
    let sent = wait_sent(&fake, 6).await;
    assert!(sent[5].0.contains("Reminder: stretch"), "{sent:#?}");
    let first = reminders(&app).await.into_iter().find(|r| r["title"] == "Reminder: stretch").unwrap();
    app.post(&format!("/api/suggestions/{}/respond", first["id"]), json!({"response": "act"})).await;
    clock.advance(chrono::Duration::days(1));
    say(&fake, &clock, 6, "remind me in 1 minute to stretch");
    let sent = wait_sent(&fake, 7).await;
    assert!(sent[6].0.starts_with("⏰ <b>Today"), "a new acknowledgement: {sent:#?}");
    let stretches: Vec<Value> =
        reminders(&app).await.into_iter().filter(|r| r["title"] == "Reminder: stretch").collect();
    assert_eq!(stretches.len(), 2, "{stretches:#?}");
    assert!(stretches.iter().any(|r| r["state"] == "scheduled"), "{stretches:#?}");

    // Someone else's "stop", forwarded by the owner, is their words, not a command.
    let mut forwarded = message_json(OWNER, "Ana", OWNER, 7, "stop");
    forwarded["date"] = json!(loopgate_engine::Clock::now(&clock).timestamp());
    forwarded["forward_origin"] = json!({"type": "user", "date": 1764403200, "sender_user": {"id": 77, "is_bot": false, "first_name": "Mallory"}});
    fake.push("message", forwarded);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.get("/api/heartbeat").await["paused"], false);
    app.shutdown().await;
}
