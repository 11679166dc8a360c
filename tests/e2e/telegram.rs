//! The Telegram channel end to end: the real application against a fake Bot API on
//! 127.0.0.1 that speaks Telegram's wire protocol.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use loopgate::config::{Config, ConfigDuration, TelegramMode, TelegramSection};
use loopgate_channels::chat::Preset;
use loopgate_engine::SystemClock;
use serde_json::{Value, json};

use crate::fake_telegram::{FakeTelegram, Fault, message_json};
use crate::helpers::{TELEGRAM_SECRET, TestApp, anonymous_client, spawn_app_in};
use crate::intelligence::{ingest, message, owner_config, pulse, suggestions};

const OWNER_ID: i64 = 1001;
const STRANGER_ID: i64 = 4242;

pub fn telegram_section(fake: &FakeTelegram) -> TelegramSection {
    TelegramSection {
        token_env: Some("TEST_TELEGRAM_TOKEN".into()),
        api_url: fake.url.clone(),
        poll_timeout: ConfigDuration::secs(1),
        stale_after: Some(ConfigDuration::secs(3)),
        ..TelegramSection::default()
    }
}

/// On the system clock: the outbox's retries and the channel's liveness are real time.
async fn app_in(dir: tempfile::TempDir, fake: &FakeTelegram, customize: impl FnOnce(&mut Config)) -> TestApp {
    let section = telegram_section(fake);
    spawn_app_in(dir, Arc::new(SystemClock), move |c| {
        owner_config(c);
        c.telegram = Some(section);
        customize(c);
    })
    .await
}

async fn telegram_signals(app: &TestApp) -> Vec<Value> {
    app.get("/api/signals?source=telegram&limit=100").await["signals"].as_array().unwrap().clone()
}

async fn wait_for_signals(app: &TestApp, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let signals = telegram_signals(app).await;
        if signals.len() >= count {
            return signals;
        }
        assert!(Instant::now() < deadline, "only {} of {count} signals: {signals:#?}", signals.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The message the bot posted for suggestion `id`, found by its Act button.
async fn posted(fake: &FakeTelegram, data: &str) -> Value {
    fake.wait_for(&format!("a message with button {data}"), |f| {
        f.ok_calls("sendMessage")
            .into_iter()
            .find(|params| params["reply_markup"]["inline_keyboard"].to_string().contains(&format!("\"{data}\"")))
    })
    .await
}

/// The message id the fake gave the post carrying button `data`.
pub async fn message_id_of(fake: &FakeTelegram, data: &str) -> i64 {
    posted(fake, data).await;
    fake.wait_for("its message id", |f| {
        (5000..6000).find(|id| {
            f.message(OWNER_ID, *id).is_some_and(|m| m["reply_markup"].to_string().contains(&format!("\"{data}\"")))
        })
    })
    .await
}

/// Waits until the prompt posted as `message_id` is recorded as sent (with its id).
async fn prompt_recorded(app: &TestApp, message_id: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.store.outbound_by_ref("telegram", &format!("{OWNER_ID}:{message_id}")).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "the prompt {message_id} was never recorded as sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn answer_of(fake: &FakeTelegram, callback_id: &str) -> Value {
    fake.wait_for(&format!("answerCallbackQuery for {callback_id}"), |f| {
        f.ok_calls("answerCallbackQuery").into_iter().find(|a| a["callback_query_id"] == callback_id)
    })
    .await
}

async fn suggestion(app: &TestApp, id: i64) -> Value {
    app.get(&format!("/api/suggestions/{id}")).await
}

/// Four unanswered questions, reflected on: four active suggestions, posted to Telegram.
pub async fn four_suggestions(app: &TestApp) -> Vec<(String, i64)> {
    for (n, who) in ["ana", "ben", "cem", "dev"].iter().enumerate() {
        let text = format!("Hi, can you check the invoice number {n}?");
        ingest(app, message(&format!("q{n}"), who, &who.to_uppercase(), who, 300, Utc::now(), &text)).await;
    }
    pulse(app).await;
    let active = suggestions(app, "active").await;
    assert_eq!(active.len(), 4);
    let mut named: Vec<(String, i64)> = ["ANA", "BEN", "CEM", "DEV"]
        .iter()
        .map(|who| {
            let s = active.iter().find(|s| s["title"].as_str().unwrap().contains(who)).unwrap();
            ((*who).to_owned(), s["id"].as_i64().unwrap())
        })
        .collect();
    named.sort();
    named
}

#[tokio::test]
async fn chat_messages_become_signals_once_and_the_offset_survives_a_restart() {
    let fake = FakeTelegram::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;

    fake.push_message(OWNER_ID, "Ana", OWNER_ID, 1, "Send the *draft* <today> & check [notes]");
    fake.push_message(STRANGER_ID, "Bob", -100, 7, "Ana, can you send me the invoice?");
    let signals = wait_for_signals(&app, 2).await;
    let owner = signals.iter().find(|s| s["external_id"] == "1001:1").expect("the owner's message");
    assert_eq!(owner["text"], "Send the *draft* <today> & check [notes]");
    assert_eq!(owner["actor"]["is_owner"], true);
    assert_eq!(owner["kind"], "message");
    let stranger = signals.iter().find(|s| s["external_id"] == "-100:7").expect("the group message");
    assert_eq!(stranger["actor"]["is_owner"], false);
    assert_eq!(stranger["conversation"]["id"], "-100");

    // Telegram delivering the same message again (a new update id) is one signal.
    let again = fake.push_message(OWNER_ID, "Ana", OWNER_ID, 1, "Send the *draft* <today> & check [notes]");
    fake.wait_for("the redelivery to be confirmed", |f| {
        f.calls("getUpdates").iter().any(|c| c.params["offset"].as_i64() > Some(again)).then_some(())
    })
    .await;
    assert_eq!(telegram_signals(&app).await.len(), 2);

    // While loopgate is down, a message arrives; after the restart it is read, and only it.
    let dir = app.shutdown().await;
    let while_down = fake.push_message(OWNER_ID, "Ana", OWNER_ID, 2, "back soon");
    let polls_before = fake.calls("getUpdates").len();
    let app = app_in(dir, &fake, |_| {}).await;
    let signals = wait_for_signals(&app, 3).await;
    assert_eq!(signals.len(), 3, "{signals:#?}");
    let first_poll = fake.calls("getUpdates")[polls_before].params.clone();
    assert_eq!(first_poll["offset"], while_down, "polling resumes at the saved offset");
    assert_eq!(first_poll["allowed_updates"], json!(["message", "edited_message", "callback_query"]));
    app.shutdown().await;
}

#[tokio::test]
async fn suggestions_are_posted_with_four_buttons_and_each_button_does_what_it_says() {
    let fake = FakeTelegram::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    let ids = four_suggestions(&app).await;
    let id = |who: &str| ids.iter().find(|(w, _)| w == who).unwrap().1;

    // Posted to the owner's chat, escaped, with Act · Edit · Snooze · Dismiss.
    let post = posted(&fake, &format!("s:{}:act", id("ANA"))).await;
    assert_eq!(post["chat_id"], OWNER_ID);
    assert_eq!(post["parse_mode"], "HTML");
    let labels: Vec<&str> = post["reply_markup"]["inline_keyboard"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["Act", "Edit", "Snooze", "Dismiss"]);
    for (_, id) in &ids {
        posted(&fake, &format!("s:{id}:act")).await;
    }
    assert_eq!(fake.ok_calls("sendMessage").len(), 4, "one post per suggestion");

    // Dismiss: answered at once, decided as the owner via Telegram, message edited, keyboard gone.
    let ana_message = message_id_of(&fake, &format!("s:{}:act", id("ANA"))).await;
    let press = fake.press(OWNER_ID, "Ana", OWNER_ID, ana_message, &format!("s:{}:dismiss", id("ANA")));
    let answer = answer_of(&fake, &press).await;
    assert_eq!(answer["text"], "Dismissed.");
    let s = suggestion(&app, id("ANA")).await;
    assert_eq!(s["state"], "dismissed");
    assert_eq!((s["decision"]["via"].as_str(), s["decision"]["by"].as_str()), (Some("telegram"), Some("Ana")));
    let edited = fake
        .wait_for("the dismissed message edited", |f| {
            f.message(OWNER_ID, ana_message).filter(|m| m["text"].as_str().unwrap().contains("Dismissed"))
        })
        .await;
    assert!(edited.get("reply_markup").is_none(), "the keyboard is removed: {edited}");
    assert!(edited["text"].as_str().unwrap().contains("via telegram by Ana"), "{edited}");

    // A second press of the decided item says who decided, where and when.
    let again = fake.press(OWNER_ID, "Ana", OWNER_ID, ana_message, &format!("s:{}:act", id("ANA")));
    let answer = answer_of(&fake, &again).await;
    assert_eq!(answer["show_alert"], true);
    let text = answer["text"].as_str().unwrap();
    assert!(text.starts_with("Already decided: dismissed via telegram by Ana at "), "{text}");

    // Snooze opens presets; "Tomorrow 09:00" is 09:00 in the owner's time zone.
    let ben_message = message_id_of(&fake, &format!("s:{}:act", id("BEN"))).await;
    let press = fake.press(OWNER_ID, "Ana", OWNER_ID, ben_message, &format!("s:{}:snooze", id("BEN")));
    answer_of(&fake, &press).await;
    let menu = fake
        .wait_for("the snooze presets", |f| {
            f.message(OWNER_ID, ben_message).filter(|m| m["reply_markup"].to_string().contains("Tomorrow 09:00"))
        })
        .await;
    assert!(menu["reply_markup"].to_string().contains(&format!("s:{}:snooze:nw", id("BEN"))));
    let press = fake.press(OWNER_ID, "Ana", OWNER_ID, ben_message, &format!("s:{}:snooze:tm", id("BEN")));
    let until = Preset::TomorrowMorning.until(Utc::now(), chrono_tz::Europe::Berlin);
    let text = answer_of(&fake, &press).await["text"].as_str().unwrap().to_owned();
    assert!(text.ends_with("09:00."), "{text}");
    let s = suggestion(&app, id("BEN")).await;
    assert_eq!(s["state"], "snoozed");
    assert_eq!(s["snoozed_until"], json!(until));

    // Edit asks with a ForceReply prompt; the owner's reply to it is the edited action.
    let cem_message = message_id_of(&fake, &format!("s:{}:act", id("CEM"))).await;
    let press = fake.press(OWNER_ID, "Ana", OWNER_ID, cem_message, &format!("s:{}:edit", id("CEM")));
    answer_of(&fake, &press).await;
    let prompt = fake
        .wait_for("the edit prompt", |f| {
            f.ok_calls("sendMessage").into_iter().find(|m| m["reply_markup"]["force_reply"] == true)
        })
        .await;
    assert!(prompt["text"].as_str().unwrap().contains("Reply to this message"));
    let prompt_id = fake
        .wait_for("the prompt's id", |f| {
            (5000..6000).find(|id| f.message(OWNER_ID, *id).is_some_and(|m| m["text"] == prompt["text"]))
        })
        .await;
    // The owner sees the prompt once Telegram has answered, and loopgate records where
    // it went right after: a person is never quicker than that, a test can be.
    prompt_recorded(&app, prompt_id).await;
    let mut reply = message_json(OWNER_ID, "Ana", OWNER_ID, 50, "Checked it, all good <3");
    reply["reply_to_message"] = fake.message(OWNER_ID, prompt_id).unwrap();
    fake.push("message", reply);
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = suggestion(&app, id("CEM")).await;
        if s["state"] == "edited" {
            break s;
        }
        assert!(Instant::now() < deadline, "not edited: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(s["edited_action"]["text"], "Checked it, all good <3");
    assert_eq!(s["decision"]["via"], "telegram");

    // Act on a reply to someone: the words are the owner's, so they are asked for first
    // (no model here); the reply to that prompt is the message. Policy asks, so an
    // approval is posted with its buttons; Deny cancels the task and edits the approval.
    let dev_message = message_id_of(&fake, &format!("s:{}:act", id("DEV"))).await;
    let press = fake.press(OWNER_ID, "Ana", OWNER_ID, dev_message, &format!("s:{}:act", id("DEV")));
    let answer = answer_of(&fake, &press).await;
    assert_eq!(answer["text"], "Reply to my next message with the words to send.");
    assert!(app.get("/api/tasks").await["tasks"].as_array().unwrap().iter().all(|t| t["action"]["text"] != ""));
    let prompt = fake
        .wait_for("the words prompt", |f| {
            f.ok_calls("sendMessage")
                .into_iter()
                .find(|m| m["text"].as_str().unwrap_or_default().contains("What should I send?"))
        })
        .await;
    let prompt_id = fake
        .wait_for("the prompt's id", |f| {
            (5000..6000).find(|id| f.message(OWNER_ID, *id).is_some_and(|m| m["text"] == prompt["text"]))
        })
        .await;
    // The owner sees the prompt once Telegram has answered, and loopgate records where
    // it went right after: a person is never quicker than that, a test can be.
    prompt_recorded(&app, prompt_id).await;
    let mut words = message_json(OWNER_ID, "Ana", OWNER_ID, 51, "Yes, Friday works.");
    words["reply_to_message"] = fake.message(OWNER_ID, prompt_id).unwrap();
    fake.push("message", words);
    let answer = fake
        .wait_for("the answer to the words", |f| {
            f.ok_calls("sendMessage").into_iter().find(|m| m["reply_parameters"]["message_id"] == 51)
        })
        .await;
    let text = answer["text"].as_str().unwrap().to_owned();
    let approval: i64 = text.rsplit('A').next().unwrap().trim_end_matches('.').parse().unwrap();
    let task = app.get(&format!("/api/approvals/{approval}")).await;
    assert_eq!(task["action"]["text"], "Yes, Friday works.");
    let approval_message = message_id_of(&fake, &format!("a:{approval}:approve")).await;
    let post = posted(&fake, &format!("a:{approval}:deny")).await;
    assert!(post["text"].as_str().unwrap().contains(&format!("Approval A{approval}")));
    let press = fake.press(OWNER_ID, "Ana", OWNER_ID, approval_message, &format!("a:{approval}:deny"));
    assert!(answer_of(&fake, &press).await["text"].as_str().unwrap().contains("will not run"));
    let decided = app.get(&format!("/api/approvals/{approval}")).await;
    assert_eq!(decided["state"], "denied");
    assert_eq!(decided["decision"]["via"], "telegram");
    fake.wait_for("the approval message edited", |f| {
        f.message(OWNER_ID, approval_message)
            .filter(|m| m["text"].as_str().unwrap().contains("Denied") && m.get("reply_markup").is_none())
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn strangers_presses_and_commands_change_nothing_and_forged_buttons_are_refused() {
    let fake = FakeTelegram::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    let ids = four_suggestions(&app).await;
    let target = ids[0].1;
    let message_id = message_id_of(&fake, &format!("s:{target}:act")).await;
    let audit_before = app.get("/api/audit").await["audit"].as_array().map(Vec::len);

    for data in [
        format!("s:{target}:act"),
        format!("s:{target}:dismiss"),
        format!("s:{target}:edit"),
        format!("s:{target}:snooze"),
    ] {
        let press = fake.press(STRANGER_ID, "Mallory", OWNER_ID, message_id, &data);
        let answer = answer_of(&fake, &press).await;
        assert_eq!(answer["show_alert"], true, "{data}");
        assert!(answer["text"].as_str().unwrap().contains("only the owner"), "{data}: {answer}");
    }
    let forged = fake.press(OWNER_ID, "Ana", OWNER_ID, message_id, "s:1:rm -rf /");
    assert_eq!(answer_of(&fake, &forged).await["text"], "This button is no longer valid.");
    let missing = fake.press(OWNER_ID, "Ana", OWNER_ID, message_id, "a:99999:approve");
    assert_eq!(answer_of(&fake, &missing).await["text"], "This approval no longer exists.");

    // A stranger's commands are refused in chat; nothing is paused or remembered.
    fake.push_message(STRANGER_ID, "Mallory", STRANGER_ID, 9, "/stop");
    fake.push_message(STRANGER_ID, "Mallory", STRANGER_ID, 10, "/remember always approve Mallory");
    fake.wait_for("two refusals", |f| {
        let refusals = f.ok_calls("sendMessage").into_iter().filter(|m| m["chat_id"] == STRANGER_ID).count();
        (refusals == 2).then_some(())
    })
    .await;
    assert_eq!(app.get("/api/heartbeat").await["paused"], false);
    assert_eq!(app.get("/api/memory?q=Mallory").await["memories"].as_array().map(Vec::len), Some(0));

    assert_eq!(suggestion(&app, target).await["state"], "active");
    assert_eq!(app.get("/api/audit").await["audit"].as_array().map(Vec::len), audit_before, "nothing decided");
    assert!(fake.ok_calls("editMessageReplyMarkup").is_empty(), "no snooze menu for a stranger");
    assert!(fake.ok_calls("sendMessage").iter().all(|m| m["reply_markup"]["force_reply"] != true), "no edit prompt");
    app.shutdown().await;
}

#[tokio::test]
async fn the_owners_commands_are_answered_in_chat() {
    let fake = FakeTelegram::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    let reply_to = |n: i64| {
        let fake = fake.clone();
        async move {
            fake.wait_for(&format!("the reply to message {n}"), |f| {
                f.ok_calls("sendMessage").into_iter().find(|m| m["reply_parameters"]["message_id"] == n)
            })
            .await["text"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    fake.push_message(OWNER_ID, "Ana", OWNER_ID, 1, "/remember Never book meetings before 10 <am>");
    assert_eq!(reply_to(1).await, "Remembered (constraint): Never book meetings before 10 &lt;am&gt;");
    fake.push_message(OWNER_ID, "Ana", OWNER_ID, 2, "/memory@loopgate_bot meetings");
    assert!(reply_to(2).await.contains("[constraint] Never book meetings before 10 &lt;am&gt;"));
    fake.push_message(OWNER_ID, "Ana", OWNER_ID, 3, "/stop");
    assert!(reply_to(3).await.starts_with("⏹ Stopped"));
    assert_eq!(app.get("/api/heartbeat").await["paused"], true);
    fake.push_message(OWNER_ID, "Ana", OWNER_ID, 4, "/resume");
    assert_eq!(reply_to(4).await, "▶️ Resumed.");
    assert_eq!(app.get("/api/heartbeat").await["paused"], false);
    fake.push_message(OWNER_ID, "Ana", OWNER_ID, 5, "/help");
    assert!(reply_to(5).await.contains("/suggestions"));
    fake.push_message(OWNER_ID, "Ana", OWNER_ID, 6, "/suggestions");
    assert_eq!(reply_to(6).await, "Nothing waiting for you.");
    fake.push_message(OWNER_ID, "Ana", OWNER_ID, 7, "/frobnicate");
    assert_eq!(reply_to(7).await, "I don't know /frobnicate. Try /help.");
    // Commands are signals too.
    let signals = wait_for_signals(&app, 7).await;
    assert!(signals.iter().all(|s| s["kind"] == "command"), "{signals:#?}");
    app.shutdown().await;
}

#[tokio::test]
async fn rate_limits_server_errors_and_dropped_connections_still_post_exactly_once() {
    let fake = FakeTelegram::start().await;
    fake.fail_next("SendMessage", vec![Fault::RateLimited(1), Fault::ServerError, Fault::Drop]);
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    ingest(&app, message("q1", "ana", "ANA", "ana", 300, Utc::now(), "Hi, can you check the invoice?")).await;
    pulse(&app).await;
    let id = suggestions(&app, "active").await[0]["id"].as_i64().unwrap();
    posted(&fake, &format!("s:{id}:act")).await;
    let attempts = fake.calls("sendMessage");
    assert_eq!(attempts.len(), 4, "three failures, then the post");
    assert!(attempts[1].at - attempts[0].at >= Duration::from_secs(1), "retry_after honoured");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.ok_calls("sendMessage").len(), 1, "posted exactly once");
    let rows = app.store.outbox("telegram", &[], 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("sent", 4));
    app.shutdown().await;
}

#[tokio::test]
async fn a_restart_between_edit_and_reply_keeps_the_pending_edit() {
    let fake = FakeTelegram::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    ingest(&app, message("q1", "ana", "ANA", "ana", 300, Utc::now(), "Hi, can you check the invoice?")).await;
    pulse(&app).await;
    let id = suggestions(&app, "active").await[0]["id"].as_i64().unwrap();
    let posted_id = message_id_of(&fake, &format!("s:{id}:act")).await;
    let press = fake.press(OWNER_ID, "Ana", OWNER_ID, posted_id, &format!("s:{id}:edit"));
    answer_of(&fake, &press).await;
    let prompt_id = fake
        .wait_for("the edit prompt", |f| {
            (5000..6000).find(|m| {
                f.message(OWNER_ID, *m).is_some_and(|m| m["text"].as_str().unwrap().contains("Reply to this"))
            })
        })
        .await;
    let dir = app.shutdown().await;

    let app = app_in(dir, &fake, |_| {}).await;
    let mut reply = message_json(OWNER_ID, "Ana", OWNER_ID, 60, "Done, sent it");
    reply["reply_to_message"] = fake.message(OWNER_ID, prompt_id).unwrap();
    fake.push("message", reply);
    let confirmation = fake
        .wait_for("the confirmation", |f| {
            f.ok_calls("sendMessage").into_iter().find(|m| m["reply_parameters"]["message_id"] == 60)
        })
        .await;
    assert_eq!(confirmation["text"], "Edited. It waits for approval A1.");
    let s = suggestion(&app, id).await;
    assert_eq!((s["state"].as_str(), s["edited_action"]["text"].as_str()), (Some("edited"), Some("Done, sent it")));
    app.shutdown().await;
}

#[tokio::test]
async fn webhook_mode_registers_checks_the_secret_and_takes_each_update_once() {
    let fake = FakeTelegram::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |c| {
        c.server.public_url = Some("https://loopgate.example.org/".into());
        let t = c.telegram.as_mut().unwrap();
        t.mode = TelegramMode::Webhook;
        t.webhook_secret_env = Some("TEST_TELEGRAM_SECRET".into());
    })
    .await;
    let webhook = fake.wait_for("setWebhook", FakeTelegram::webhook).await;
    assert_eq!(webhook["url"], "https://loopgate.example.org/webhooks/telegram");
    assert_eq!(webhook["secret_token"], TELEGRAM_SECRET);
    assert!(fake.calls("getUpdates").is_empty(), "no polling in webhook mode");

    let client = anonymous_client();
    let update = json!({"update_id": 77, "message": message_json(OWNER_ID, "Ana", OWNER_ID, 3, "from the webhook")});
    let post = |secret: Option<&str>, body: String| {
        let mut request =
            client.post(app.url("/webhooks/telegram")).header("content-type", "application/json").body(body);
        if let Some(secret) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        request.send()
    };
    assert_eq!(post(None, update.to_string()).await.unwrap().status(), 401);
    assert_eq!(post(Some("webhook-secret_0123456780"), update.to_string()).await.unwrap().status(), 401);
    assert_eq!(post(Some(""), update.to_string()).await.unwrap().status(), 401);
    assert!(telegram_signals(&app).await.is_empty(), "a forged update changes nothing");
    assert_eq!(post(Some(TELEGRAM_SECRET), "{not json".into()).await.unwrap().status(), 400);
    assert_eq!(post(Some(TELEGRAM_SECRET), json!({"message": {}}).to_string()).await.unwrap().status(), 400);
    let big = json!({"update_id": 78, "message": message_json(OWNER_ID, "Ana", OWNER_ID, 4, &"x".repeat(300_000))});
    assert_eq!(post(Some(TELEGRAM_SECRET), big.to_string()).await.unwrap().status(), 413);
    assert!(telegram_signals(&app).await.is_empty(), "bad input changes nothing");

    for _ in 0..2 {
        assert_eq!(post(Some(TELEGRAM_SECRET), update.to_string()).await.unwrap().status(), 200);
    }
    let signals = telegram_signals(&app).await;
    assert_eq!(signals.len(), 1, "a redelivered update is one signal");
    assert_eq!(signals[0]["text"], "from the webhook");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn a_stalled_poll_makes_readyz_unready_until_polling_recovers() {
    let fake = FakeTelegram::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    let readiness = || async {
        let response = app.client.get(app.url("/readyz")).send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body)
    };
    let wait_ready = |want: u16| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = readiness().await;
            if status == want {
                return body;
            }
            assert!(Instant::now() < deadline, "never {want}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait_ready(200).await;
    fake.stall_polls(true);
    let body = wait_ready(503).await;
    assert_eq!(body["channels"][0]["channel"], "telegram");
    assert_eq!(body["channels"][0]["live"], false);
    fake.stall_polls(false);
    wait_ready(200).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_proves_the_token_against_the_bot_api() {
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[owner]\ntelegram_user_ids = [{OWNER_ID}]\n[telegram]\ntoken_env = \"DOCTOR_TELEGRAM_TOKEN\"\napi_url = \"{}\"\n",
        fake.url
    );
    let config = crate::helpers::write_config(dir.path(), &extra);
    let run = |token: &'static str| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            crate::helpers::run_cli(&config, &["doctor"], &[("DOCTOR_TELEGRAM_TOKEN", token)])
        })
    };
    let (code, stdout, _) = run(crate::fake_telegram::BOT_TOKEN).await.unwrap();
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("the token belongs to @loopgate_bot"), "{stdout}");
    let (code, stdout, _) = run("999:not-the-token").await.unwrap();
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  telegram.token_env") && stdout.contains("@BotFather"), "{stdout}");
}

/// Runs a `message` action through the API and approves it; returns the task id.
pub async fn approved_message(app: &TestApp, channel: &str, conversation: &str, text: &str) -> i64 {
    let action = json!({"kind": "message", "target": {"channel": channel, "conversation": conversation}, "text": text});
    let (status, task) = app.post("/api/tasks", json!({"action": action, "reason": "a long note"})).await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["state"], "awaiting_approval", "{task}");
    let approval = task["approval_id"].as_i64().unwrap();
    let (status, decided) =
        app.post(&format!("/api/approvals/{approval}/decide"), json!({"decision": "approve"})).await;
    assert_eq!(status, 200, "{decided}");
    task["id"].as_i64().unwrap()
}

/// Waits until task `id` leaves `running` and `delivering`, and returns it.
pub async fn settled_task(app: &TestApp, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let task = app.get(&format!("/api/tasks/{id}")).await;
        if !matches!(task["state"].as_str(), Some("running" | "delivering" | "queued")) {
            return task;
        }
        assert!(Instant::now() < deadline, "task {id} still {}: {task}", task["state"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_long_escaped_title_arrives_as_valid_html_within_the_limit() {
    let fake = FakeTelegram::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    // About 3,600 characters, each `&` five once escaped: the cut used to leave <b> open.
    let items: Vec<String> = (1..=450).map(|n| format!("R&D-{n:03}")).collect();
    let text = format!("remind me to check {} in 1 hour", items.join(" "));
    ingest(&app, message("rd-1", "1001", "Owner", "1001", 1, Utc::now(), &text)).await;
    pulse(&app).await;
    let all = app.get("/api/suggestions?limit=200").await["suggestions"].as_array().unwrap().clone();
    let reminder = all.into_iter().find(|s| s["class"] == "reminder").expect("a reminder");
    let title = reminder["title"].as_str().unwrap();
    assert!(title.chars().count() <= 160, "titles are bounded: {}", title.chars().count());
    assert!(title.starts_with("Reminder: check R&D-001 R&D-002"), "{title}");
    // The whole request is kept for when it is acted on.
    assert!(reminder["action"].to_string().contains("R&D-450"), "{}", reminder["action"]);

    // Due in an hour: shown now by asking for it to be posted as the owner sees it.
    let id = reminder["id"].as_i64().unwrap();
    let (status, _) =
        app.post(&format!("/api/suggestions/{id}/respond"), json!({"response": "snooze", "snooze_for": "1s"})).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    pulse(&app).await;
    let posted = posted(&fake, &format!("s:{id}:act")).await;
    let html = posted["text"].as_str().unwrap();
    let shown = crate::fake_telegram::parse_html(html).expect("Telegram can parse it");
    assert!(shown.encode_utf16().count() <= 4096);
    assert!(shown.contains("R&D-001"), "{shown}");
    assert!(fake.calls("sendMessage").iter().all(|c| c.ok), "nothing refused: {:?}", fake.calls("sendMessage"));
    app.shutdown().await;
}

#[tokio::test]
async fn a_message_longer_than_telegram_allows_arrives_whole_in_order_and_the_task_follows_delivery() {
    let fake = FakeTelegram::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    // 5,066 characters in paragraphs: one sendMessage would be refused as too long.
    let paragraphs: Vec<String> = (1..=40)
        .map(|n| format!("Paragraph {n:02}: {}", "the quarterly numbers look fine. ".repeat(3).trim()))
        .collect();
    let mut text = paragraphs.join("\n\n");
    while text.chars().count() < 5066 {
        text.push('!');
    }
    assert_eq!(text.chars().count(), 5066);
    let task = approved_message(&app, "telegram", "-100777", &text).await;
    let task = settled_task(&app, task).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    let sent: Vec<String> = fake
        .ok_calls("sendMessage")
        .into_iter()
        .filter(|m| m["chat_id"] == -100777)
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent.len(), 2, "two parts");
    assert!(sent.iter().all(|p| p.chars().count() <= 4096));
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    assert_eq!(squash(&sent.concat()), squash(&text), "nothing lost, in order");
    assert!(sent[0].ends_with("look fine."), "cut at a paragraph: {:?}", &sent[0][sent[0].len() - 20..]);
    let timeline = task["timeline"].to_string();
    assert!(timeline.contains("delivered in 2 parts"), "{timeline}");

    // A chat Telegram refuses: the task fails with Telegram's words, never "succeeded".
    let task = approved_message(&app, "telegram", "404", "hello?").await;
    let task = settled_task(&app, task).await;
    assert_eq!(task["state"], "failed", "{task}");
    assert!(task["error"].as_str().unwrap().contains("chat not found"), "{task}");
    // An empty text is refused before anything is queued.
    let action = json!({"kind": "message", "target": {"channel": "telegram", "conversation": "42"}, "text": "  "});
    let (status, body) = app.post("/api/tasks", json!({"action": action})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("text"), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_group_that_became_a_supergroup_is_followed_for_good() {
    let fake = FakeTelegram::start().await;
    let (old, new) = (-4_004_001_i64, -1_001_234_567_890_i64);
    let dir = tempfile::tempdir().unwrap();
    let app = app_in(dir, &fake, |c| c.telegram.as_mut().unwrap().chat_id = Some(old)).await;
    fake.migrate_chat(old, new);
    let named = four_suggestions(&app).await;
    // Every suggestion reaches the supergroup; the old id was refused once, then never used.
    fake.wait_for("four posts in the supergroup", |f| {
        (f.ok_calls("sendMessage").iter().filter(|m| m["chat_id"] == new).count() == 4).then_some(())
    })
    .await;
    let refused = fake.calls("sendMessage").into_iter().filter(|c| !c.ok).count();
    assert_eq!(refused, 1, "only the first send went to the old id");
    // The outcome's edit goes to the supergroup too.
    let (_, id) = &named[0];
    let (status, _) = app.post(&format!("/api/suggestions/{id}/respond"), json!({"response": "dismiss"})).await;
    assert_eq!(status, 200);
    fake.wait_for("the edit in the supergroup", |f| {
        f.ok_calls("editMessageText").into_iter().find(|e| e["chat_id"] == new)
    })
    .await;
    // Remembered across a restart: the first send after it goes straight to the new id.
    let dir = app.shutdown().await;
    let app = app_in(dir, &fake, |c| c.telegram.as_mut().unwrap().chat_id = Some(old)).await;
    let before = fake.calls("sendMessage").len();
    ingest(
        &app,
        message("late", "eve", "EVE", "eve", 300, Utc::now(), "Could you send me the signed lease by Friday?"),
    )
    .await;
    pulse(&app).await;
    fake.wait_for("a fifth post", |f| {
        (f.ok_calls("sendMessage").iter().filter(|m| m["chat_id"] == new).count() == 5).then_some(())
    })
    .await;
    assert!(fake.calls("sendMessage")[before..].iter().all(|c| c.ok && c.params["chat_id"] == new));
    // `doctor` says where the chat went, and how to say so in the configuration.
    let dir = app.shutdown().await;
    let extra = format!(
        "[owner]\ntelegram_user_ids = [{OWNER_ID}]\n[telegram]\ntoken_env = \"DOCTOR_TELEGRAM_TOKEN\"\napi_url = \"{}\"\nchat_id = {old}\n",
        fake.url
    );
    let config = crate::helpers::write_config(dir.path(), &extra);
    let (_, stdout, _) = tokio::task::spawn_blocking(move || {
        crate::helpers::run_cli(&config, &["doctor"], &[("DOCTOR_TELEGRAM_TOKEN", crate::fake_telegram::BOT_TOKEN)])
    })
    .await
    .unwrap();
    assert!(stdout.contains(&format!("chat {old} became a supergroup, now {new}")), "{stdout}");
    assert!(stdout.contains(&format!("telegram.chat_id = {new}")), "{stdout}");
}

#[tokio::test]
async fn a_delivery_chat_that_refuses_for_good_shows_in_readyz() {
    let fake = FakeTelegram::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |c| c.telegram.as_mut().unwrap().chat_id = Some(404)).await;
    ingest(&app, message("q", "ana", "ANA", "ana", 300, Utc::now(), "Can you check the invoice?")).await;
    pulse(&app).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let ready = loop {
        let response = app.client.get(app.url("/readyz")).send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if body["channels"][0]["delivery_error"].is_string() {
            break (status, body);
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert!(ready.1["channels"][0]["delivery_error"].as_str().unwrap().contains("chat not found"), "{}", ready.1);
    // The owner hears of it through every channel that posts suggestions.
    let alert = suggestions(&app, "active").await.into_iter().find(|s| s["class"] == "alert").expect("an alert");
    assert!(alert["title"].as_str().unwrap().contains("chat not found"), "{alert}");
    app.shutdown().await;
}
