//! The shipped example workflows, end to end: the weekly status (signals from a Discord
//! channel, composed, approved on Telegram while posted on Discord and mailed too,
//! delivered by mail through a real SMTP server) and the inbox triage (mail from unknown
//! senders summarized into the digest); and the kill switch in the middle of a workflow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use loopgate::config::{Config, StepConfig, WorkflowConfig};
use loopgate_engine::SystemClock;
use serde_json::{Value, json};

use crate::discord::{discord_owner, discord_section};
use crate::email::email_section;
use crate::fake_discord::{FakeDiscord, GUILD, message_json, user_json};
use crate::fake_telegram::FakeTelegram;
use crate::helpers::{TestApp, spawn_app_in};
use crate::intelligence::owner_config;
use crate::mail::{self, ONE_AT_A_TIME, create_folder, folder, plain, send_raw, wait_for_messages};

const LISTENED: u64 = 1_100_000_000_000_000_000;

/// The `[[workflow]]` examples exactly as `config/loopgate.example.toml` ships them
/// (commented out there, since they name channels a fresh config does not have).
fn shipped_workflows() -> Vec<WorkflowConfig> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/loopgate.example.toml")).unwrap();
    let block: String = text
        .lines()
        .skip_while(|l| !l.contains("--- workflow examples ---"))
        .skip(1)
        .take_while(|l| !l.contains("--- end of workflow examples ---"))
        .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#'))))
        .collect();
    #[derive(serde::Deserialize)]
    struct Examples {
        workflow: Vec<WorkflowConfig>,
    }
    use figment::providers::Format as _;
    let examples: Examples = figment::Figment::from(figment::providers::Toml::string(&block))
        .extract()
        .unwrap_or_else(|e| panic!("the shipped workflow examples do not parse: {e}\n{block}"));
    examples.workflow
}

fn example(name: &str) -> WorkflowConfig {
    shipped_workflows().into_iter().find(|w| w.name == name).unwrap_or_else(|| panic!("no example {name}"))
}

/// The weekly status pointed at this test's Discord channel and mail list; run on request
/// (the schedule itself is tested apart).
fn weekly_status(list: &str) -> WorkflowConfig {
    let mut w = example("weekly-status");
    assert_eq!(w.schedule.as_deref(), Some("0 16 * * 5"));
    w.schedule = None;
    for step in &mut w.steps {
        match step {
            StepConfig::Gather { conversation, .. } => *conversation = Some(LISTENED.to_string()),
            StepConfig::Deliver { to, .. } => *to = list.to_owned(),
            _ => {}
        }
    }
    w
}

struct World {
    app: TestApp,
    discord: FakeDiscord,
    telegram: FakeTelegram,
    inbox: String,
    owner_box: String,
}

async fn world(customize: impl FnOnce(&mut Config, &str)) -> World {
    let discord = FakeDiscord::start().await;
    let telegram = FakeTelegram::start().await;
    let (inbox, owner_box) = (folder("wfin"), folder("wfown"));
    create_folder("loopgate", &inbox).await;
    let (d, t, e) =
        (discord_section(&discord), crate::telegram::telegram_section(&telegram), email_section(&inbox, &owner_box));
    let ob = owner_box.clone();
    let app = spawn_app_in(tempfile::tempdir().unwrap(), Arc::new(SystemClock), move |c| {
        owner_config(c);
        discord_owner(c);
        c.owner.emails = vec!["owner@test.local".into()];
        c.discord = Some(d);
        c.telegram = Some(t);
        c.email = Some(e);
        customize(c, &ob);
    })
    .await;
    crate::discord::ready(&discord).await;
    World { app, discord, telegram, inbox, owner_box }
}

async fn run(app: &TestApp, name: &str) -> Value {
    let (status, task) = app.post(&format!("/api/workflows/{name}/run"), json!({})).await;
    assert_eq!(status, 201, "{task}");
    task
}

/// Three messages in the team channel this week.
async fn team_talks(w: &World) {
    let ana = user_json(90_000_000_000_000_001, "Ana");
    let ben = user_json(90_000_000_000_000_002, "Ben");
    w.discord.message_create(message_json(5001, LISTENED, Some(GUILD), &ana, "Shipped the new login page"));
    w.discord.message_create(message_json(5002, LISTENED, Some(GUILD), &ben, "Billing migration is 80% done"));
    w.discord.message_create(message_json(5003, LISTENED, Some(GUILD), &ana, "Next: the onboarding emails"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while w.app.get("/api/signals?source=discord&limit=10").await["signals"].as_array().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "the team's messages never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_task(app: &TestApp, id: i64, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let task = app.get(&format!("/api/tasks/{id}")).await;
        if task["state"] == state {
            return task;
        }
        assert!(Instant::now() < deadline, "task {id} is {} not {state}: {task}", task["state"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_weekly_status_is_gathered_composed_approved_on_telegram_and_mailed_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let list_box = folder("list");
    let list = format!("stranger+{list_box}@test.local");
    let l = list.clone();
    let w = world(move |c, _| c.workflow = vec![weekly_status(&l)]).await;
    team_talks(&w).await;

    let workflows = w.app.get("/api/workflows").await;
    assert_eq!(workflows["workflows"][0]["name"], "weekly-status");
    let ran = run(&w.app, "weekly-status").await;
    assert_eq!(ran["kind"], "workflow");
    assert_eq!(ran["state"], "succeeded", "{ran}");
    assert_eq!(ran["output"]["gathered"], 3);
    let summary = ran["output"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("Weekly status — "), "{summary}");
    assert!(
        summary.contains("3 messages from 2 people (Ana, Ben)") && summary.contains("Billing migration is 80% done"),
        "{summary}"
    );
    let delivery = ran["output"]["delivery_task"].as_i64().unwrap();
    let waiting = w.app.get(&format!("/api/tasks/{delivery}")).await;
    assert_eq!(waiting["state"], "awaiting_approval", "the checkpoint holds the delivery: {waiting}");
    assert_eq!(waiting["policy"], "ask");
    let approval = waiting["approval_id"].as_i64().unwrap();

    // Posted at once on Telegram and Discord, and mailed.
    let telegram_message = crate::telegram::message_id_of(&w.telegram, &format!("a:{approval}:approve")).await;
    w.discord.posted(&format!("a:{approval}:approve")).await;
    let mailed = wait_for_messages("owner", &w.owner_box, 1).await;
    assert!(
        String::from_utf8_lossy(&mailed[0]).contains(&format!("A{approval}")),
        "the approval mail names A{approval}"
    );

    // Approved on Telegram: it runs once, the mail goes out, Discord shows who approved.
    let owner = crate::intelligence::OWNER.parse::<i64>().unwrap();
    w.telegram.press(owner, "Ana", owner, telegram_message, &format!("a:{approval}:approve"));
    wait_task(&w.app, delivery, "succeeded").await;
    let sent = wait_for_messages("stranger", &list_box, 1).await;
    let mail = String::from_utf8_lossy(&sent[0]).replace("=\r\n", "");
    assert!(mail.contains("Subject: Weekly status"), "{mail}");
    assert!(mail.contains("Shipped the new login page") && mail.contains("Next: the onboarding emails"), "{mail}");
    w.discord
        .wait_for("the Discord copy to show the approval", |f| {
            f.messages().into_iter().find(|m| m["content"].as_str().unwrap().contains("Approved** via telegram by"))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mail::messages("stranger", &list_box).await.len(), 1, "delivered exactly once");

    // Every decision and side effect is on record.
    let audit = w.app.get("/api/audit?limit=100").await["audit"].as_array().unwrap().clone();
    let events: Vec<&str> = audit.iter().map(|e| e["event"].as_str().unwrap()).collect();
    for expected in ["approval.requested", "approval.approved"] {
        assert!(events.contains(&expected), "{expected} in {events:?}");
    }
    assert!(
        audit
            .iter()
            .any(|e| e["event"].as_str().unwrap().starts_with("task.") && e["subject"] == format!("task:{delivery}")),
        "the delivery's run is on record: {events:?}"
    );
}

#[tokio::test]
async fn stop_in_the_middle_of_a_workflow_holds_its_next_side_effect_until_resume() {
    let _one = ONE_AT_A_TIME.lock().await;
    let list_box = folder("stoplist");
    let list = format!("stranger+{list_box}@test.local");
    let l = list.clone();
    let w = world(move |c, _| c.workflow = vec![weekly_status(&l)]).await;
    team_talks(&w).await;
    let ran = run(&w.app, "weekly-status").await;
    let delivery = ran["output"]["delivery_task"].as_i64().unwrap();
    let approval = w.app.get(&format!("/api/tasks/{delivery}")).await["approval_id"].as_i64().unwrap();

    let (status, _) = w.app.post("/api/stop", json!({})).await;
    assert_eq!(status, 200);
    let (status, decided) =
        w.app.post(&format!("/api/approvals/{approval}/decide"), json!({"decision": "approve"})).await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["task"]["state"], "queued", "approved, but held by the kill switch: {decided}");
    let (status, refused) = w.app.post("/api/workflows/weekly-status/run", json!({})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("stopped")));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(mail::messages("stranger", &list_box).await.is_empty(), "nothing went out while stopped");

    let (status, _) = w.app.post("/api/resume", json!({})).await;
    assert_eq!(status, 200);
    w.app.post("/api/pulse", json!({})).await;
    wait_task(&w.app, delivery, "succeeded").await;
    assert_eq!(wait_for_messages("stranger", &list_box, 1).await.len(), 1);
}

#[tokio::test]
async fn the_inbox_triage_summarizes_first_mail_from_unknown_senders_into_the_digest() {
    let _one = ONE_AT_A_TIME.lock().await;
    let w = world(|c, _| c.workflow = vec![example("inbox-triage")]).await;
    let to = format!("loopgate+{}@test.local", w.inbox);
    crate::email::wait_ready(&w.app).await;
    let mail_from = |who: &str, n: u32, subject: &str| {
        plain(
            &format!("{who} <{}@example.org>", who.to_lowercase()),
            &to,
            subject,
            &format!("{who}-{n}-{}@example.org", w.inbox),
            "",
            "Hello!",
        )
    };
    send_raw("dana@example.org", &to, &mail_from("Dana", 1, "Partnership proposal")).await;
    let runs = || async {
        let tasks = w.app.get("/api/tasks?limit=100").await;
        tasks["tasks"].as_array().unwrap().iter().filter(|t| t["kind"] == "workflow").cloned().collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs().await.is_empty() {
        assert!(Instant::now() < deadline, "the triage never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Dana again, and the owner: neither is an unknown sender.
    send_raw("dana@example.org", &to, &mail_from("Dana", 2, "Following up")).await;
    send_raw(
        "owner@test.local",
        &to,
        &plain("Owner <owner@test.local>", &to, "note to self", &format!("self-{}@test.local", w.inbox), "", "x"),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.app.get("/api/signals?source=email&limit=10").await["signals"].as_array().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "the mail never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = runs().await;
    assert_eq!(all.len(), 1, "one run, for the one unknown sender: {all:#?}");
    assert_eq!(all[0]["state"], "succeeded");
    assert_eq!(all[0]["output"]["into_digest"], true);

    let (status, digest) = w.app.post("/api/digest", json!({})).await;
    assert_eq!(status, 202, "{digest}");
    let raw = wait_for_messages("owner", &w.owner_box, 1).await;
    let text = String::from_utf8_lossy(raw.last().unwrap()).replace("=\r\n", "");
    assert!(text.contains("--- inbox-triage ---"), "{text}");
    assert!(text.contains("Partnership proposal"), "{text}");
    assert!(!text.contains("Following up"), "{text}");
}

#[tokio::test]
async fn a_scheduled_workflow_runs_on_its_schedule() {
    let _one = ONE_AT_A_TIME.lock().await;
    let w = world(|c, _| {
        let mut every_two_seconds = weekly_status("stranger@test.local");
        every_two_seconds.schedule = Some("*/2 * * * * *".into());
        c.workflow = vec![every_two_seconds];
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let run = loop {
        let tasks = w.app.get("/api/tasks?limit=50").await["tasks"].as_array().unwrap().clone();
        if let Some(run) = tasks.into_iter().find(|t| t["kind"] == "workflow") {
            break run;
        }
        assert!(Instant::now() < deadline, "the schedule never ran the workflow");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(run["requested_by"], "trigger");
    assert_eq!(run["origin"], "workflow:weekly-status");
    wait_task(&w.app, run["id"].as_i64().unwrap(), "succeeded").await;
}
