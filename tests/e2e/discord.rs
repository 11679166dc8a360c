//! The Discord channel end to end: the real application against a fake Discord on
//! 127.0.0.1 (REST and a gateway websocket) that speaks Discord's wire protocols.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use loopgate::config::{Config, ConfigDuration, DiscordSection};
use loopgate_engine::SystemClock;
use serde_json::{Value, json};

use crate::fake_discord::{DM_CHANNEL, FakeDiscord, Fault, GUILD, bot_user, message_json, user_json};
use crate::helpers::{TestApp, anonymous_client, spawn_app_in};
use crate::intelligence::owner_config;
use crate::telegram::four_suggestions;

pub const OWNER: u64 = 80_351_110_224_678_912;
const STRANGER: u64 = 90_351_110_224_678_999;
const LISTENED: u64 = 1_100_000_000_000_000_000;
const THREAD: u64 = 1_150_000_000_000_000_000;
const OTHER: u64 = 1_160_000_000_000_000_000;

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn public_key_hex() -> String {
    signing_key().verifying_key().to_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn discord_section(fake: &FakeDiscord) -> DiscordSection {
    DiscordSection {
        token_env: Some("TEST_DISCORD_TOKEN".into()),
        api_base: fake.url.clone(),
        public_key: Some(public_key_hex()),
        channel_ids: vec![LISTENED],
        stale_after: ConfigDuration::secs(3),
        ..DiscordSection::default()
    }
}

pub fn discord_owner(config: &mut Config) {
    config.owner.discord_user_ids = vec![OWNER];
}

async fn app_in(dir: tempfile::TempDir, fake: &FakeDiscord, customize: impl FnOnce(&mut Config)) -> TestApp {
    let section = discord_section(fake);
    let app = spawn_app_in(dir, Arc::new(SystemClock), move |c| {
        owner_config(c);
        discord_owner(c);
        c.discord = Some(section);
        customize(c);
    })
    .await;
    ready(fake).await;
    app
}

/// The gateway session is up and the slash commands are registered.
pub async fn ready(fake: &FakeDiscord) {
    fake.wait_for("the gateway session and slash commands", |f| {
        (f.identifies() >= 1 && !f.ok_calls("PUT /applications/*/commands").is_empty()).then_some(())
    })
    .await;
}

fn owner() -> Value {
    user_json(OWNER, "Nelly")
}

fn stranger() -> Value {
    user_json(STRANGER, "Mallory")
}

async fn discord_signals(app: &TestApp) -> Vec<Value> {
    app.get("/api/signals?source=discord&limit=100").await["signals"].as_array().unwrap().clone()
}

async fn wait_for_signals(app: &TestApp, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let signals = discord_signals(app).await;
        if signals.len() >= count {
            return signals;
        }
        assert!(Instant::now() < deadline, "only {} of {count} signals: {signals:#?}", signals.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn suggestion(app: &TestApp, id: i64) -> Value {
    app.get(&format!("/api/suggestions/{id}")).await
}

/// Presses `custom_id` on the message carrying `carrier` (a button it has) and returns
/// the interaction response.
async fn press(fake: &FakeDiscord, by: &Value, carrier: &str, custom_id: &str) -> Value {
    let message = fake.posted(carrier).await;
    let id = fake.press(by, &message, custom_id);
    fake.wait_for_callback(&id).await
}

fn content(response: &Value) -> &str {
    response["data"]["content"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn chat_messages_become_signals_and_the_bot_answers_in_chat() {
    let fake = FakeDiscord::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;

    let registered = &fake.ok_calls("PUT /applications/*/commands")[0];
    assert_eq!(registered.path, format!("/applications/{}/commands", crate::fake_discord::APPLICATION_ID));
    let names: Vec<&str> = registered.body.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["help", "suggestions", "memory", "remember", "pause", "stop", "resume", "pair"]);

    fake.add_thread(THREAD, LISTENED);
    fake.message_create(message_json(2001, DM_CHANNEL, None, &owner(), "Send the **draft** <@123> tomorrow"));
    let mut in_channel = message_json(2002, LISTENED, Some(GUILD), &stranger(), "Can you review the Q3 report?");
    in_channel["message_reference"] = json!({"message_id": "1999", "channel_id": LISTENED.to_string()});
    fake.message_create(in_channel);
    fake.message_create(message_json(2003, THREAD, Some(GUILD), &stranger(), "Adding notes in the thread"));
    fake.message_create(message_json(2004, OTHER, Some(GUILD), &stranger(), "a channel nobody listens to"));
    fake.message_create(message_json(2005, LISTENED, Some(GUILD), &bot_user(), "our own post"));
    fake.message_create(message_json(2006, DM_CHANNEL, None, &owner(), "/suggestions"));
    fake.message_create(message_json(2007, DM_CHANNEL, None, &stranger(), "/pause"));
    fake.message_create(message_json(2008, DM_CHANNEL, None, &owner(), "last one"));
    let signals = wait_for_signals(&app, 6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signals_now = discord_signals(&app).await;
    assert_eq!(signals_now.len(), 6, "{signals_now:#?}");
    let by_id = |id: &str| signals.iter().find(|s| s["external_id"] == id).unwrap_or_else(|| panic!("signal {id}"));

    let dm = by_id("2001");
    assert_eq!(dm["text"], "Send the **draft** <@123> tomorrow");
    assert_eq!(dm["actor"]["is_owner"], true);
    assert_eq!(dm["actor"]["name"], "Nelly");
    assert_eq!(dm["conversation"]["id"], DM_CHANNEL.to_string());
    let channel = by_id("2002");
    assert_eq!(channel["actor"]["is_owner"], false);
    assert_eq!(channel["conversation"]["id"], LISTENED.to_string());
    assert_eq!(channel["conversation"]["reply_to"], "1999");
    let thread = by_id("2003");
    assert_eq!(thread["conversation"]["id"], LISTENED.to_string());
    assert_eq!(thread["conversation"]["thread_id"], THREAD.to_string());
    assert_eq!(by_id("2006")["kind"], "command");

    // The owner's DM is answered (without a model: what loopgate can do); a typed command
    // is answered; a stranger's command is refused and changes nothing.
    let answers = fake
        .wait_for("the answers to the owner's two messages", |f| {
            let answers: Vec<String> = f
                .ok_calls("POST /channels/*/messages")
                .into_iter()
                .filter(|c| {
                    ["2001", "2008"].contains(&c.body["message_reference"]["message_id"].as_str().unwrap_or(""))
                })
                .map(|c| c.body["content"].as_str().unwrap_or_default().to_owned())
                .collect();
            (answers.len() == 2).then_some(answers)
        })
        .await;
    // Without a model: a line each, and what can be said once (the first time today).
    assert_eq!(answers.iter().filter(|a| a.contains("Things you can say")).count(), 1, "{answers:#?}");
    assert!(answers.iter().all(|a| a.starts_with("Noted.")), "{answers:#?}");
    let reply = fake
        .wait_for("the answer to /suggestions", |f| {
            f.ok_calls("POST /channels/*/messages")
                .into_iter()
                .find(|c| c.body["message_reference"]["message_id"] == "2006")
        })
        .await;
    assert_eq!(reply.body["content"], "Nothing waiting for you.");
    assert_eq!(reply.body["allowed_mentions"], json!({"parse": []}));
    let refusal = fake
        .wait_for("the refusal of a stranger's /pause", |f| {
            f.ok_calls("POST /channels/*/messages")
                .into_iter()
                .find(|c| c.body["message_reference"]["message_id"] == "2007")
        })
        .await;
    assert!(refusal.body["content"].as_str().unwrap().contains("only take commands from my owner"));
    assert_eq!(app.get("/api/heartbeat").await["paused"], false);
    let answered = |id: &'static str| {
        fake.ok_calls("POST /channels/*/messages")
            .iter()
            .filter(|c| c.body["message_reference"]["message_id"] == id)
            .count()
    };
    assert_eq!(answered("2006"), 1, "a command gets its answer only");
    assert_eq!(answered("2002"), 0, "messages in channels are not chatted with");

    // Slash commands: the owner's are answered only to them; a stranger's are refused.
    let remember = fake.slash(&owner(), "remember", Some(("text", "Never book meetings before 10")));
    let answer = fake.wait_for_callback(&remember).await;
    assert_eq!(answer["type"], 4);
    assert_eq!(answer["data"]["flags"], 64);
    assert_eq!(content(&answer), "Remembered (constraint): Never book meetings before 10");
    let memory = fake.slash(&owner(), "memory", Some(("query", "meetings")));
    assert!(content(&fake.wait_for_callback(&memory).await).contains("Never book meetings before 10"));
    let stop = fake.slash(&stranger(), "stop", None);
    assert!(content(&fake.wait_for_callback(&stop).await).contains("only take commands from my owner"));
    assert_eq!(app.get("/api/heartbeat").await["paused"], false);
    let pause = fake.slash(&owner(), "pause", None);
    assert!(content(&fake.wait_for_callback(&pause).await).contains("Paused"));
    assert_eq!(app.get("/api/heartbeat").await["paused"], true);
}

#[tokio::test]
async fn suggestions_are_posted_with_buttons_and_each_button_updates_the_message_in_place() {
    let fake = FakeDiscord::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    let named = four_suggestions(&app).await;
    let id_of = |who: &str| named.iter().find(|(n, _)| n == who).unwrap().1;
    let (ana, ben, cem, dev) = (id_of("ANA"), id_of("BEN"), id_of("CEM"), id_of("DEV"));

    // Posted to the owner's DM (opened once), escaped, with Act · Edit · Snooze · Dismiss.
    let post = fake.posted(&format!("s:{ana}:act")).await;
    assert_eq!(post["channel_id"], DM_CHANNEL.to_string());
    let labels: Vec<&str> =
        post["components"][0]["components"].as_array().unwrap().iter().map(|b| b["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["Act", "Edit", "Snooze", "Dismiss"]);
    fake.wait_for("all four posted", |f| (f.ok_calls("POST /channels/*/messages").len() == 4).then_some(())).await;
    assert_eq!(fake.ok_calls("POST /users/@me/channels").len(), 1);

    // Dismiss: the message shows who dismissed it, where and when, and loses its buttons.
    let dismissed = press(&fake, &owner(), &format!("s:{ana}:act"), &format!("s:{ana}:dismiss")).await;
    assert_eq!(dismissed["type"], 7);
    assert!(content(&dismissed).contains("Dismissed** via discord by Nelly"), "{}", content(&dismissed));
    assert_eq!(dismissed["data"]["components"], json!([]));
    assert_eq!(suggestion(&app, ana).await["state"], "dismissed");

    // Snooze opens the presets in place; "Tomorrow 09:00" snoozes to 09:00 Berlin time.
    let presets = press(&fake, &owner(), &format!("s:{ben}:act"), &format!("s:{ben}:snooze")).await;
    assert_eq!(presets["type"], 7);
    assert!(presets["data"]["components"].to_string().contains(&format!("s:{ben}:snooze:tm")));
    assert_eq!(suggestion(&app, ben).await["state"], "active", "opening the presets decides nothing");
    let snoozed = press(&fake, &owner(), &format!("s:{ben}:snooze:tm"), &format!("s:{ben}:snooze:tm")).await;
    assert!(content(&snoozed).contains("Snoozed"), "{}", content(&snoozed));
    let ben_now = suggestion(&app, ben).await;
    assert_eq!(ben_now["state"], "snoozed");
    let until = chrono::DateTime::parse_from_rfc3339(ben_now["snoozed_until"].as_str().unwrap()).unwrap();
    assert_eq!(until.with_timezone(&chrono_tz::Europe::Berlin).format("%H:%M").to_string(), "09:00");

    // Edit opens a form prefilled with the action; its submission is the edited action,
    // which asks for approval; Deny cancels it.
    let form = press(&fake, &owner(), &format!("s:{cem}:act"), &format!("s:{cem}:edit")).await;
    assert_eq!(form["type"], 9);
    assert_eq!(form["data"]["custom_id"], format!("s:{cem}:edit"));
    // A reply's words are the owner's to write: nothing prefilled, the placeholder says what it is.
    let input = &form["data"]["components"][0]["components"][0];
    assert_eq!(input["value"], Value::Null);
    assert!(input["placeholder"].as_str().unwrap().starts_with("message to telegram:"), "{input}");
    let message = fake.posted(&format!("s:{cem}:act")).await;
    let submit = fake.modal_submit(&owner(), &message, &format!("s:{cem}:edit"), "It is paid, thanks!");
    let edited = fake.wait_for_callback(&submit).await;
    assert_eq!(edited["type"], 7);
    assert!(content(&edited).contains("It is paid, thanks\\!") || content(&edited).contains("It is paid, thanks!"));
    let cem_now = suggestion(&app, cem).await;
    assert_eq!(cem_now["state"], "edited");
    assert_eq!(cem_now["edited_action"]["text"], "It is paid, thanks!");
    let approval = app.get("/api/approvals?state=pending").await["approvals"][0]["id"].as_i64().unwrap();
    let approval_post = fake.posted(&format!("a:{approval}:approve")).await;
    assert!(approval_post["content"].as_str().unwrap().contains(&format!("Approval A{approval}")));
    let denied = press(&fake, &owner(), &format!("a:{approval}:approve"), &format!("a:{approval}:deny")).await;
    assert!(content(&denied).contains("Denied** via discord by Nelly"), "{}", content(&denied));
    assert_eq!(denied["data"]["components"], json!([]));
    assert_eq!(app.get(&format!("/api/approvals/{approval}")).await["state"], "denied");

    // Act on a reply: the words are the owner's, so a form asks for them (no model here);
    // sent, the message needs an approval, approved from Discord.
    let card = fake.posted(&format!("s:{dev}:act")).await;
    let form = fake.wait_for_callback(&fake.press(&owner(), &card, &format!("s:{dev}:act"))).await;
    assert_eq!(form["type"], 9, "{form}");
    assert!(app.get("/api/approvals?state=pending").await["approvals"].as_array().unwrap().is_empty());
    let submitted =
        fake.wait_for_callback(&fake.modal_submit(&owner(), &card, &format!("s:{dev}:edit"), "On my way.")).await;
    assert!(content(&submitted).contains("Edited"), "{submitted}");
    let pending = app.get("/api/approvals?state=pending").await["approvals"].as_array().unwrap().clone();
    assert_eq!(pending.len(), 1, "{pending:#?}");
    let second_id = pending[0]["id"].as_i64().unwrap();
    assert_ne!(second_id, approval);
    let approved = press(&fake, &owner(), &format!("a:{second_id}:approve"), &format!("a:{second_id}:approve")).await;
    assert!(content(&approved).contains("Approved** via discord by Nelly"), "{}", content(&approved));
    assert_eq!(app.get(&format!("/api/approvals/{second_id}")).await["state"], "approved");
}

#[tokio::test]
async fn unauthorized_forged_and_replayed_interactions_change_nothing() {
    let fake = FakeDiscord::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    let named = four_suggestions(&app).await;
    let ana = named[0].1;
    let act = format!("s:{ana}:act");
    fake.posted(&act).await;
    let audit_before = app.get("/api/audit").await["audit"].as_array().map(Vec::len);

    for custom_id in [format!("s:{ana}:dismiss"), format!("s:{ana}:edit"), format!("s:{ana}:snooze")] {
        let refused = press(&fake, &stranger(), &act, &custom_id).await;
        assert_eq!(refused["type"], 4, "{custom_id}");
        assert_eq!(refused["data"]["flags"], 64);
        assert!(content(&refused).contains("only the owner"), "{}", content(&refused));
    }
    let forged = press(&fake, &owner(), &act, "s:999999:dismiss").await;
    assert_eq!(content(&forged), "This suggestion no longer exists.");
    let garbage = press(&fake, &owner(), &act, "s:1:rm -rf /").await;
    assert_eq!(content(&garbage), "This button is no longer valid.");
    assert_eq!(suggestion(&app, ana).await["state"], "active");
    assert_eq!(app.get("/api/audit").await["audit"].as_array().map(Vec::len), audit_before, "nothing decided");

    // The owner's press, then the same interaction delivered again.
    let message = fake.posted(&act).await;
    let interaction = fake.component_interaction(&owner(), &message, &format!("s:{ana}:dismiss"));
    let id = interaction["id"].as_str().unwrap().to_owned();
    fake.dispatch("INTERACTION_CREATE", interaction.clone());
    let first = fake.wait_for_callback(&id).await;
    assert_eq!(first["type"], 7);
    let decided = suggestion(&app, ana).await;
    fake.dispatch("INTERACTION_CREATE", interaction);
    fake.wait_for("the replay to be answered (and refused by Discord)", |f| {
        (f.calls().iter().filter(|c| c.path.starts_with(&format!("/interactions/{id}/"))).count() == 2).then_some(())
    })
    .await;
    assert_eq!(suggestion(&app, ana).await["decision"], decided["decision"]);
    let signals = discord_signals(&app).await;
    let recorded = signals.iter().filter(|s| s["external_id"] == format!("interaction:{id}")).count();
    assert_eq!(recorded, 1, "a replayed interaction is one signal");
    let audit = app.get("/api/audit").await["audit"].as_array().unwrap().clone();
    assert_eq!(audit.len(), audit_before.unwrap() + 1, "{audit:#?}");
}

#[tokio::test]
async fn rate_limits_server_errors_and_lost_answers_still_post_exactly_once() {
    let fake = FakeDiscord::start().await;
    fake.fail_next("POST /channels/*/messages", vec![Fault::RateLimited(0.4), Fault::ServerError, Fault::DropAfter]);
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    let named = four_suggestions(&app).await;
    for (_, id) in &named {
        fake.posted(&format!("s:{id}:act")).await;
    }
    let posts: Vec<Value> =
        fake.messages().into_iter().filter(|m| m["components"].to_string().contains(":act")).collect();
    assert_eq!(posts.len(), 4, "each suggestion posted exactly once: {posts:#?}");
    let calls = fake.calls();
    let limited = calls.iter().position(|c| c.status == 429).expect("a 429");
    let next = calls[limited + 1..].iter().find(|c| c.path.ends_with("/messages") && c.method == "POST").unwrap();
    assert!(next.at - calls[limited].at >= Duration::from_millis(380), "waited {:?}", next.at - calls[limited].at);
    // The post whose answer was lost was sent again with the same nonce and not doubled.
    let dropped = calls.iter().position(|c| c.status == 599).expect("a dropped answer");
    let nonce = calls[dropped].body["nonce"].as_str().unwrap();
    assert_eq!(calls[dropped].body["enforce_nonce"], true);
    let retried: Vec<_> = calls[dropped + 1..].iter().filter(|c| c.body["nonce"] == nonce).collect();
    assert_eq!(retried.len(), 1, "sent once more, with the same nonce");
    assert_eq!(retried[0].status, 200);
    drop(app);
}

#[tokio::test]
async fn a_dropped_gateway_resumes_and_a_redelivered_message_is_one_signal() {
    let fake = FakeDiscord::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    fake.message_create(message_json(3001, DM_CHANNEL, None, &owner(), "before the drop"));
    wait_for_signals(&app, 1).await;

    // Discord drops the connection; a message is sent while it is down; on the resume
    // Discord replays it and also the one before.
    fake.disconnect(1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.message_create(message_json(3002, DM_CHANNEL, None, &owner(), "while it was down"));
    fake.wait_for("a resume", |f| (f.resumes() >= 1).then_some(())).await;
    let signals = wait_for_signals(&app, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(discord_signals(&app).await.len(), 2, "{signals:#?}");
    assert_eq!(fake.identifies(), 1, "resumed, not identified again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answers = fake
        .ok_calls("POST /channels/*/messages")
        .into_iter()
        .filter(|c| c.body["message_reference"]["message_id"] == "3001")
        .count();
    assert_eq!(answers, 1, "answered once");
}

#[tokio::test]
async fn a_silent_gateway_makes_readyz_unready_until_it_talks_again() {
    let fake = FakeDiscord::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    let client = anonymous_client();
    let readyz =
        |client: reqwest::Client, url: String| async move { client.get(url).send().await.unwrap().status().as_u16() };
    assert_eq!(readyz(client.clone(), app.url("/readyz")).await, 200);

    fake.silence(true);
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz(client.clone(), app.url("/readyz")).await == 200 {
        assert!(Instant::now() < deadline, "/readyz never noticed the silent gateway");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body: Value = client.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert!(body.to_string().contains("discord"), "{body}");

    fake.silence(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz(client.clone(), app.url("/readyz")).await != 200 {
        assert!(Instant::now() < deadline, "/readyz never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signed(body: &str, key: &SigningKey) -> (String, String) {
    signed_at(body, key, chrono::Utc::now().timestamp())
}

fn signed_at(body: &str, key: &SigningKey, at: i64) -> (String, String) {
    let timestamp = at.to_string();
    let signature = key.sign(format!("{timestamp}{body}").as_bytes());
    (signature.to_bytes().iter().map(|b| format!("{b:02x}")).collect(), timestamp)
}

async fn post_interaction(app: &TestApp, body: &str, headers: Option<(String, String)>) -> (u16, Value) {
    let mut request = anonymous_client()
        .post(app.url("/webhooks/discord"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some((signature, timestamp)) = headers {
        request = request.header("X-Signature-Ed25519", signature).header("X-Signature-Timestamp", timestamp);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn http_interactions_are_verified_before_anything_happens() {
    let fake = FakeDiscord::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    let key = signing_key();
    let forger = SigningKey::from_bytes(&[9u8; 32]);

    let ping = json!({"id": "1", "application_id": "2", "type": 1, "token": "t", "version": 1}).to_string();
    assert_eq!(post_interaction(&app, &ping, Some(signed(&ping, &key))).await, (200, json!({"type": 1})));
    assert_eq!(post_interaction(&app, &ping, Some(signed(&ping, &forger))).await.0, 401);
    assert_eq!(post_interaction(&app, &ping, None).await.0, 401);
    let (signature, timestamp) = signed(&ping, &key);
    let other: i64 = timestamp.parse::<i64>().unwrap() + 1;
    assert_eq!(post_interaction(&app, &ping, Some((signature, other.to_string()))).await.0, 401, "another timestamp");
    let old = signed_at(&ping, &key, chrono::Utc::now().timestamp() - 3600);
    let (status, body) = post_interaction(&app, &ping, Some(old)).await;
    assert_eq!((status, body["error"]["message"].as_str()), (401, Some("the request was signed too long ago")));
    let garbage = "{not json";
    let (status, body) = post_interaction(&app, garbage, Some(signed(garbage, &key))).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "not_an_interaction");

    let named = four_suggestions(&app).await;
    let ana = named[0].1;
    let message = fake.posted(&format!("s:{ana}:act")).await;
    let press = fake.component_interaction(&owner(), &message, &format!("s:{ana}:dismiss")).to_string();
    // Forged and tampered presses are refused and change nothing.
    assert_eq!(post_interaction(&app, &press, Some(signed(&press, &forger))).await.0, 401);
    let tampered = press.replace("Nelly", "Nelly ");
    assert_eq!(post_interaction(&app, &tampered, Some(signed(&press, &key))).await.0, 401);
    assert_eq!(suggestion(&app, ana).await["state"], "active");
    let signals_before = discord_signals(&app).await.len();

    let (status, response) = post_interaction(&app, &press, Some(signed(&press, &key))).await;
    assert_eq!(status, 200);
    assert_eq!(response["type"], 7);
    assert!(content(&response).contains("Dismissed** via discord by Nelly"), "{response}");
    assert_eq!(suggestion(&app, ana).await["state"], "dismissed");
    assert_eq!(discord_signals(&app).await.len(), signals_before + 1);
}

#[tokio::test]
async fn a_suggestion_decided_on_telegram_is_updated_on_discord_and_the_other_way() {
    use crate::fake_telegram::FakeTelegram;
    let discord = FakeDiscord::start().await;
    let telegram = FakeTelegram::start().await;
    let section = crate::telegram::telegram_section(&telegram);
    let app = app_in(tempfile::tempdir().unwrap(), &discord, |c| c.telegram = Some(section)).await;
    let named = four_suggestions(&app).await;
    let (ana, ben) = (named[0].1, named[1].1);
    let telegram_owner = crate::intelligence::OWNER.parse::<i64>().unwrap();

    // Dismissed on Telegram: the Discord copy says so, without buttons.
    discord.posted(&format!("s:{ana}:act")).await;
    let telegram_message = crate::telegram::message_id_of(&telegram, &format!("s:{ana}:act")).await;
    telegram.press(telegram_owner, "Ana", telegram_owner, telegram_message, &format!("s:{ana}:dismiss"));
    let updated = discord
        .wait_for("the Discord copy edited", |f| {
            f.messages().into_iter().find(|m| m["content"].as_str().unwrap().contains("Dismissed** via telegram by"))
        })
        .await;
    assert_eq!(updated["components"], json!([]));

    // Dismissed on Discord: the Telegram copy says so.
    let telegram_ben = crate::telegram::message_id_of(&telegram, &format!("s:{ben}:act")).await;
    press(&discord, &owner(), &format!("s:{ben}:act"), &format!("s:{ben}:dismiss")).await;
    telegram
        .wait_for("the Telegram copy edited", |f| {
            f.message(telegram_owner, telegram_ben)
                .filter(|m| m["text"].as_str().unwrap_or_default().contains("via discord by Nelly"))
        })
        .await;
}

#[tokio::test]
async fn doctor_proves_the_token_against_discord() {
    let fake = FakeDiscord::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[owner]\ndiscord_user_ids = [{OWNER}]\n[discord]\ntoken_env = \"DOCTOR_DISCORD_TOKEN\"\napi_base = \"{}\"\n",
        fake.url
    );
    let config = crate::helpers::write_config(dir.path(), &extra);
    let run = |token: &'static str| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            crate::helpers::run_cli(&config, &["doctor"], &[("DOCTOR_DISCORD_TOKEN", token)])
        })
    };
    let (code, stdout, _) = run(crate::fake_discord::BOT_TOKEN).await.unwrap();
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("the token belongs to loopgate"), "{stdout}");
    let (code, stdout, _) = run("MTA1.wrong.token").await.unwrap();
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  discord.token_env") && stdout.contains("Developer Portal"), "{stdout}");
}

/// On several worker threads, as `main` runs: a span entered on one thread and left on
/// another is what closed spans under sqlx and killed the handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_press_on_a_decided_suggestion_is_answered_and_nothing_dies() {
    let fake = FakeDiscord::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    let named = four_suggestions(&app).await;
    let id_of = |who: &str| named.iter().find(|(n, _)| n == who).unwrap().1;
    let (ana, ben) = (id_of("ANA"), id_of("BEN"));
    let dismiss = format!("s:{ana}:dismiss");
    let message = fake.posted(&format!("s:{ana}:act")).await;
    let first = fake.wait_for_callback(&fake.press(&owner(), &message, &dismiss)).await;
    assert_eq!(first["type"], 7);
    // The same button again, as a double tap or a second device would send it.
    // Pressed again and again (a double tap, a second device, an impatient owner): each
    // press is answered, "already decided".
    for _ in 0..12 {
        let again = fake.wait_for_callback(&fake.press(&owner(), &message, &dismiss)).await;
        assert_eq!(again["type"], 4, "{again}");
        assert!(content(&again).contains("lready decided"), "{again}");
    }
    // Everything still works afterwards, and nothing had to be restarted.
    let other = press(&fake, &owner(), &format!("s:{ben}:act"), &format!("s:{ben}:dismiss")).await;
    assert_eq!(other["type"], 7);
    let ready = app.get("/readyz").await;
    let workers = ready["workers"].as_object().expect("workers are reported");
    assert!(workers.values().all(|w| w["running"] == true && w["restarts"] == 0), "{ready}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_long_message_is_posted_in_ordered_parts_and_nothing_is_dropped() {
    let fake = FakeDiscord::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    let sentences: Vec<String> =
        (1..=60).map(|n| format!("Item {n:02} of the handover: the keys are with Sam. ")).collect();
    let text: String = sentences.concat().chars().take(2561).collect();
    assert_eq!(text.chars().count(), 2561);
    let task = crate::telegram::approved_message(&app, "discord", &LISTENED.to_string(), &text).await;
    let task = crate::telegram::settled_task(&app, task).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    let posts: Vec<String> = fake
        .ok_calls("POST /channels/*/messages")
        .into_iter()
        .filter(|c| c.path == format!("/channels/{LISTENED}/messages"))
        .map(|c| c.body["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(posts.iter().all(|p| p.chars().count() <= 2000));
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    assert_eq!(squash(&posts.concat()), squash(&text));
    assert!(posts[0].ends_with("with Sam."), "cut at a sentence: {:?}", &posts[0][posts[0].len() - 20..]);
    app.shutdown().await;
}

#[tokio::test]
async fn a_rate_limited_channel_lookup_does_not_lose_the_message() {
    let fake = FakeDiscord::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    fake.add_thread(THREAD, LISTENED);
    // Discord rate-limits the lookup of the thread's parent, twice.
    fake.fail_next("GET /channels/*", vec![Fault::RateLimited(0.3), Fault::RateLimited(0.3)]);
    fake.message_create(message_json(3001, THREAD, Some(GUILD), &stranger(), "Notes for the thread"));
    let signals = wait_for_signals(&app, 1).await;
    let signal = &signals[0];
    assert_eq!(signal["external_id"], "3001");
    assert_eq!(signal["conversation"]["id"], LISTENED.to_string(), "the thread's place was found after waiting");
    assert_eq!(signal["conversation"]["thread_id"], THREAD.to_string());
    // Still failing after every retry: recorded with what is known.
    fake.add_thread(THREAD + 1, LISTENED);
    fake.fail_next("GET /channels/*", vec![Fault::ServerError; 5]);
    fake.message_create(message_json(3002, THREAD + 1, Some(GUILD), &stranger(), "Still here"));
    let signals = wait_for_signals(&app, 2).await;
    let late = signals.iter().find(|s| s["external_id"] == "3002").expect("recorded anyway");
    assert_eq!(late["conversation"]["id"], (THREAD + 1).to_string());
    app.shutdown().await;
}

#[tokio::test]
async fn a_reminder_asked_in_a_dm_is_acknowledged_with_its_time_and_can_be_cancelled() {
    let fake = FakeDiscord::start().await;
    let app = app_in(tempfile::tempdir().unwrap(), &fake, |_| {}).await;
    fake.message_create(message_json(4001, DM_CHANNEL, None, &owner(), "remind me tomorrow at 9 to water the plants"));
    let ack = fake
        .wait_for("the acknowledgement", |f| {
            f.ok_calls("POST /channels/*/messages")
                .into_iter()
                .find(|c| c.body["message_reference"]["message_id"] == "4001")
        })
        .await;
    let said = ack.body["content"].as_str().unwrap();
    assert_eq!(said, "⏰ **Tomorrow 09\\:00 \\(Europe/Berlin\\)**: water the plants");
    let ids: Vec<&str> = ack.body["components"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["custom_id"].as_str().unwrap())
        .collect();
    let reminder = app.get("/api/suggestions?state=scheduled").await["suggestions"][0].clone();
    let id = reminder["id"].as_i64().unwrap();
    assert_eq!(
        ids,
        [format!("s:{id}:at:1h"), format!("s:{id}:at:tm"), format!("s:{id}:at:nw"), format!("s:{id}:cancel")]
    );
    // The owner edits the request: the reminder and its acknowledgement follow.
    let mut update = message_json(4001, DM_CHANNEL, None, &owner(), "remind me tomorrow at 10 to water the plants");
    update["edited_timestamp"] = json!(chrono::Utc::now().to_rfc3339());
    fake.dispatch("MESSAGE_UPDATE", update);
    let edit = fake
        .wait_for("the acknowledgement edited", |f| {
            f.ok_calls("PATCH /channels/*/messages/*")
                .into_iter()
                .find(|c| c.body["content"].as_str().unwrap_or_default().contains("10\\:00"))
        })
        .await;
    assert_eq!(edit.body["content"], "⏰ **Tomorrow 10\\:00 \\(Europe/Berlin\\)**: water the plants");
    assert_eq!(app.get("/api/suggestions?state=scheduled").await["suggestions"].as_array().unwrap().len(), 1);
    // Cancel, in place: the message says so and loses its buttons.
    let cancelled = press(&fake, &owner(), &format!("s:{id}:cancel"), &format!("s:{id}:cancel")).await;
    assert_eq!(cancelled["type"], 7, "{cancelled}");
    assert!(content(&cancelled).contains("Cancelled"), "{cancelled}");
    assert_eq!(cancelled["data"]["components"], json!([]));
    assert_eq!(app.get(&format!("/api/suggestions/{id}")).await["state"], "superseded");
    app.shutdown().await;
}
