//! Workflow intelligence at the API boundary, on a clock the tests move: heartbeat rules,
//! reflection runs and their artifacts, suggestions' lifecycle, responses and what they
//! teach.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use loopgate::config::Config;
use loopgate_engine::ManualClock;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_in};

/// Wednesday 2026-11-18, 10:15 in Berlin.
pub fn start() -> DateTime<Utc> {
    chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 11, 18, 10, 15, 0).unwrap().with_timezone(&Utc)
}

pub const OWNER: &str = "1001";

pub fn owner_config(config: &mut Config) {
    config.owner.telegram_user_ids = vec![OWNER.parse().unwrap()];
    config.owner.timezone = "Europe/Berlin".into();
    // The timer stays out of the way; tests pulse by hand or "as scheduled".
    config.heartbeat.interval = loopgate::config::ConfigDuration::secs(3600);
}

pub async fn app_at(clock: &ManualClock, customize: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_in(tempfile::tempdir().unwrap(), Arc::new(clock.clone()), |c| {
        owner_config(c);
        customize(c);
    })
    .await
}

/// A Telegram message from `who` in a direct chat with them, `minutes_ago` before now.
pub fn message(id: &str, who: &str, name: &str, chat: &str, minutes_ago: i64, now: DateTime<Utc>, text: &str) -> Value {
    json!({
        "source": "telegram",
        "kind": "message",
        "external_id": id,
        "actor": {"id": who, "name": name},
        "conversation": {"id": chat},
        "text": text,
        "occurred_at": now - Duration::minutes(minutes_ago),
    })
}

pub async fn ingest(app: &TestApp, signal: Value) -> i64 {
    let response = app.post_signal(signal).await;
    assert!(response.status().is_success(), "{}", response.status());
    response.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

pub async fn pulse(app: &TestApp) -> Value {
    let (status, body) = app.post("/api/pulse", json!({})).await;
    assert_eq!(status, 200, "{body}");
    body
}

pub async fn scheduled_pulse(app: &TestApp) -> Value {
    let (status, body) = app.post("/api/pulse", json!({"scheduled": true})).await;
    assert_eq!(status, 200, "{body}");
    body
}

pub async fn suggestions(app: &TestApp, state: &str) -> Vec<Value> {
    app.get(&format!("/api/suggestions?state={state}&limit=200")).await["suggestions"].as_array().unwrap().clone()
}

pub async fn respond(app: &TestApp, id: i64, body: Value) -> (u16, Value) {
    app.post(&format!("/api/suggestions/{id}/respond"), body).await
}

fn titles(list: &[Value]) -> Vec<String> {
    let mut titles: Vec<String> = list.iter().map(|s| s["title"].as_str().unwrap().to_owned()).collect();
    titles.sort();
    titles
}

fn find<'a>(list: &'a [Value], title_part: &str) -> &'a Value {
    list.iter()
        .find(|s| s["title"].as_str().unwrap().contains(title_part))
        .unwrap_or_else(|| panic!("no suggestion with {title_part:?} in {:?}", titles(list)))
}

/// A morning's worth of chat: the owner asks for a reminder and promises something; Dana
/// asked a question three hours ago and got no answer; Sam's question is fresh.
async fn morning(app: &TestApp, now: DateTime<Utc>) -> Vec<i64> {
    let mut ids = Vec::new();
    for signal in [
        message("m1", OWNER, "Me", "dana", 200, now, "Sure. Remind me to call the plumber tomorrow at 9"),
        message("m2", OWNER, "Me", "dana", 190, now, "I'll send you the signed contract by Friday"),
        message("m3", "d1", "Dana", "d1", 180, now, "Could you look at the budget draft before the meeting?"),
        message("m4", "s1", "Sam", "s1", 10, now, "are you around for lunch?"),
    ] {
        ids.push(ingest(app, signal).await);
    }
    ids
}

#[tokio::test]
async fn a_pulse_reflects_on_new_signals_and_raises_suggestions_with_their_evidence() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |_| {}).await;
    let ids = morning(&app, start()).await;

    let report = pulse(&app).await;
    assert_eq!(report["outcome"], "reflect", "{report}");
    assert_eq!(report["read"], 4);
    let run_id = report["run_id"].as_str().unwrap().to_owned();
    // The owner's "remind me" was set as a command when it was recorded; the pulse
    // raises the other two.
    assert_eq!(report["created"].as_array().unwrap().len(), 2, "{report}");

    let active = suggestions(&app, "active").await;
    assert_eq!(
        titles(&active),
        [
            "Reply to Dana: “Could you look at the budget draft before the meeting?”",
            "You promised dana: send you the signed contract",
        ]
    );
    let question = find(&active, "budget draft");
    assert_eq!(question["class"], "unanswered_question");
    assert_eq!(question["source"], "telegram");
    assert_eq!(question["why_now"], "Dana asked 3 hours ago and you have not replied there since");
    assert_eq!(question["evidence"][0]["signal_id"], ids[2]);
    assert_eq!(
        question["evidence"][0]["summary"],
        "Dana on telegram: “Could you look at the budget draft before the meeting?”"
    );
    assert_eq!(question["action"]["kind"], "message");
    assert_eq!(question["action"]["target"]["conversation"], "d1");
    assert_eq!(question["run_id"], run_id.as_str());
    assert!(question["confidence"].as_f64().unwrap() > 0.5);
    let expires: DateTime<Utc> = serde_json::from_value(question["expires_at"].clone()).unwrap();
    assert_eq!(expires, start() + Duration::days(3));

    // The reminder waits for its time, tomorrow at 9 in Berlin.
    let scheduled = suggestions(&app, "scheduled").await;
    assert_eq!(titles(&scheduled), ["Reminder: call the plumber"]);
    let nine = chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 11, 19, 9, 0, 0).unwrap().with_timezone(&Utc);
    assert_eq!(scheduled[0]["due_at"], json!(nine));

    // The run is indexed with its stages, and its files are where SPEC says.
    let run = app.get(&format!("/api/runs/{run_id}")).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["evidence"]["signals"].as_array().unwrap().len(), 4);
    // The reminder was the owner's command, set when said: the run still reads it (three
    // ideas, each critiqued) and creates only the other two.
    assert_eq!(run["ideas"].as_array().unwrap().len(), 3, "{}", run["ideas"]);
    assert_eq!(run["critique"].as_array().unwrap().len(), 3);
    assert_eq!(run["dispatch"]["created"].as_array().unwrap().len(), 2, "{}", run["decision"]);
    let runs = app.get("/api/runs").await;
    assert_eq!(runs["runs"][0]["run_id"], run_id.as_str());
    let folder = app.dir.path().join("data/reflection/runs").join(&run_id);
    for file in
        ["evidence.json", "ideas.jsonl", "critique.jsonl", "decision.json", "recommendation.md", "dispatch.json"]
    {
        assert!(folder.join(file).is_file(), "{file} missing in {}", folder.display());
    }
    assert!(app.dir.path().join("data/reflection/journal/2026-11-18.jsonl").is_file());

    // Thinking again about the same signals raises nothing twice.
    clock.advance(Duration::minutes(5));
    let again = pulse(&app).await;
    assert_eq!(again["created"], json!([]));
    let run = app.get(&format!("/api/runs/{}", again["run_id"].as_str().unwrap())).await;
    let verdicts: Vec<&str> =
        run["critique"].as_array().unwrap().iter().map(|c| c["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["duplicate", "duplicate", "duplicate"]);

    // Sam's question ripens two hours after it was asked; the heartbeat knows when.
    let status = app.get("/api/heartbeat").await;
    let ripens: DateTime<Utc> = serde_json::from_value(status["next_followup_at"].clone()).unwrap();
    assert_eq!(ripens, start() - Duration::minutes(10) + Duration::hours(2));
    assert_eq!(status["next_due_at"], json!(nine));
    let missing = app.client.get(app.url("/api/runs/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

async fn memories(app: &TestApp, kind: &str) -> Vec<Value> {
    app.get(&format!("/api/memory?kind={kind}&limit=50")).await["memories"].as_array().unwrap().clone()
}

#[tokio::test]
async fn each_response_has_its_effect_and_the_first_answer_wins() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |_| {}).await;
    for (n, who) in ["ana", "ben", "cem", "dev"].iter().enumerate() {
        let text = format!("Hi, can you check the invoice number {n}?");
        ingest(&app, message(&format!("q{n}"), who, &who.to_uppercase(), who, 300, start(), &text)).await;
    }
    pulse(&app).await;
    let active = suggestions(&app, "active").await;
    assert_eq!(active.len(), 4);
    let id = |name: &str| find(&active, name)["id"].as_i64().unwrap();

    // Act: decided via the API, learned as a workflow pattern, the class weighs more.
    let (status, body) = respond(&app, id("ANA"), json!({"response": "act"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["suggestion"]["state"], "acted");
    assert_eq!(body["suggestion"]["decision"]["via"], "api");
    assert_eq!(body["suggestion"]["decision"]["by"], "owner");
    let patterns = memories(&app, "workflow_pattern").await;
    assert_eq!(patterns.len(), 1);
    assert_eq!(patterns[0]["content"], "Acts on unanswered question suggestions from telegram");
    assert_eq!(patterns[0]["origin"], "response");
    assert_eq!(patterns[0]["id"], body["memory_id"]);

    // A second answer to the same suggestion is refused and says who decided.
    let (status, body) = respond(&app, id("ANA"), json!({"response": "dismiss"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "already_decided");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("already decided: acted via api by owner at 2026-11-18 09:15 UTC"), "{message}");
    assert!(memories(&app, "ignored_noise").await.is_empty(), "the refused answer taught nothing");

    // Edit: the correction keeps the original and the edited action.
    let (status, body) =
        respond(&app, id("BEN"), json!({"response": "edit", "edited_action": "Yes, it is INV-2291"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["suggestion"]["state"], "edited");
    assert_eq!(body["suggestion"]["edited_action"]["text"], "Yes, it is INV-2291");
    assert_eq!(body["suggestion"]["edited_action"]["kind"], "message");
    let corrections = memories(&app, "correction").await;
    assert_eq!(corrections.len(), 1);
    let content = corrections[0]["content"].as_str().unwrap();
    assert!(content.contains(r#""text":"""#) && content.contains("Yes, it is INV-2291"), "{content}");

    // Snooze: hidden until the time, then back as active.
    let (status, body) = respond(&app, id("CEM"), json!({"response": "snooze", "snooze_for": "3h"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["suggestion"]["state"], "snoozed");
    assert_eq!(body["suggestion"]["snoozed_until"], json!(start() + Duration::hours(3)));
    assert_eq!(body["memory_id"], Value::Null, "snoozing teaches timing, not memory");
    let (status, body) = respond(&app, id("CEM"), json!({"response": "act"})).await;
    assert_eq!(status, 409, "a snoozed suggestion waits for its time: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("back at 2026-11-18 12:15 UTC"), "{body}");

    // Dismiss: ignored noise about what the suggestion was about.
    let (status, body) = respond(&app, id("DEV"), json!({"response": "dismiss"})).await;
    assert_eq!(status, 200, "{body}");
    let noise = memories(&app, "ignored_noise").await;
    assert_eq!(noise.len(), 1);
    assert_eq!(noise[0]["content"], "Hi, can you check the invoice number 3?");

    // Three hours later the snoozed one is due: a scheduled pulse dispatches it.
    clock.advance(Duration::hours(3));
    let report = scheduled_pulse(&app).await;
    assert_eq!(report["outcome"], "dispatch", "{report}");
    assert_eq!(report["upkeep"]["came_due"], json!([id("CEM")]));
    let back = app.get(&format!("/api/suggestions/{}", id("CEM"))).await;
    assert_eq!(back["state"], "active");
    assert_eq!(back["decision"], Value::Null);
    assert_eq!(back["expires_at"], json!(clock_now(&clock) + Duration::days(3)));
    let (status, _) = respond(&app, id("CEM"), json!({"response": "act"})).await;
    assert_eq!(status, 200);

    // What the answers taught the ranking, as evidence: acted on (an edit counts), edited,
    // dismissed, acted on — in that order — so the class leans toward acting.
    let weights = app.store.weights().await.unwrap();
    let class = weights.iter().find(|w| w.key == "unanswered_question").unwrap();
    assert_eq!((class.recent.as_str(), class.answers), ("aeda", 4), "{class:?}");
    assert!(class.acted > 2.0 && class.dismissed < 1.0 && class.value(clock_now(&clock)) > 0.0, "{class:?}");
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    use loopgate_engine::Clock;
    clock.now()
}

#[tokio::test]
async fn bad_answers_get_clear_errors_and_change_nothing() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |_| {}).await;
    ingest(&app, message("q", "ana", "Ana", "ana", 300, start(), "can you send the slides?")).await;
    pulse(&app).await;
    let id = suggestions(&app, "active").await[0]["id"].as_i64().unwrap();

    let cases = [
        (json!({"response": "approve"}), 422, "not one of act, edit, snooze, dismiss"),
        (json!({"response": "edit"}), 422, "edit needs edited_action"),
        (json!({"response": "edit", "edited_action": {"kind": "shell", "cmd": "rm -rf /"}}), 422, "not one of"),
        (json!({"response": "edit", "edited_action": "  "}), 422, "empty"),
        (json!({"response": "snooze"}), 422, "snooze needs"),
        (json!({"response": "snooze", "snooze_for": "soonish"}), 422, "snooze_for"),
        (json!({"response": "snooze", "snooze_until": "2020-01-01T00:00:00Z"}), 422, "in the future"),
        (json!({"response": "snooze", "snooze_for": "1h", "snooze_until": "2030-01-01T00:00:00Z"}), 422, "not both"),
        (json!({"response": "act", "snooze_for": "1h"}), 422, "snooze response only"),
        (json!({"response": "act", "extra": 1}), 422, "unknown field"),
        (json!({}), 422, "missing field"),
    ];
    for (body, status, message) in cases {
        let (got, answer) = respond(&app, id, body.clone()).await;
        assert_eq!(got, status, "{body} → {answer}");
        let text = answer["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{body} → {text}");
    }
    let malformed = app
        .client
        .post(app.url(&format!("/api/suggestions/{id}/respond")))
        .header("content-type", "application/json")
        .body("{\"response\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let (status, _) = respond(&app, 999_999, json!({"response": "act"})).await;
    assert_eq!(status, 404);
    let (status, _) = respond(&app, -1, json!({"response": "act"})).await;
    assert_eq!(status, 404);

    let after = app.get(&format!("/api/suggestions/{id}")).await;
    assert_eq!(after["state"], "active");
    assert_eq!(after["revision"], 1);
    assert!(app.store.weights().await.unwrap().is_empty());
    for kind in ["workflow_pattern", "correction", "ignored_noise"] {
        assert!(memories(&app, kind).await.is_empty(), "{kind}");
    }
}

#[tokio::test]
async fn answers_need_the_api_token() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |c| c.server.api_token_env = Some("TEST_API_TOKEN".into())).await;
    ingest(&app, message("q", "ana", "Ana", "ana", 300, start(), "can you send the slides?")).await;
    pulse(&app).await;
    let id = suggestions(&app, "active").await[0]["id"].as_i64().unwrap();
    let anonymous = crate::helpers::anonymous_client();
    for (path, body) in [
        (format!("/api/suggestions/{id}/respond"), Some(json!({"response": "act"}))),
        ("/api/pulse".to_owned(), None),
        ("/api/stop".to_owned(), None),
    ] {
        let mut request = anonymous.post(app.url(&path)).bearer_auth("wrong-token");
        if let Some(body) = body {
            request = request.json(&body);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{path}");
    }
    assert_eq!(anonymous.get(app.url("/api/heartbeat")).send().await.unwrap().status(), 401);
    assert_eq!(app.get(&format!("/api/suggestions/{id}")).await["state"], "active");
    assert_eq!(app.get("/api/heartbeat").await["paused"], false);
}

fn outcome(report: &Value) -> &str {
    report["outcome"].as_str().unwrap()
}

#[tokio::test]
async fn the_heartbeat_follows_its_rules_and_remembers_them_across_a_restart() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |c| {
        c.heartbeat.daily_budget = 2;
        c.owner.quiet_hours = Some("22:00-07:00".into());
    })
    .await;
    let now = || clock_now(&clock);
    let mut n = 0;
    let mut question = |now: DateTime<Utc>| {
        n += 1;
        let who = format!("p{n}");
        message(&format!("h{n}"), &who, &who, &who, 180, now, "could you send me the file?")
    };

    let report = scheduled_pulse(&app).await;
    assert_eq!((outcome(&report), report["reason"].as_str().unwrap()), ("idle", "nothing new since the last pulse"));
    ingest(&app, message("chat", "kim", "Kim", "kim", 1, now(), "nice weather today")).await;
    ingest(&app, question(now())).await;
    ingest(&app, question(now())).await;
    let report = scheduled_pulse(&app).await;
    assert_eq!(outcome(&report), "idle");
    assert!(report["reason"].as_str().unwrap().contains("3 new signal(s), 2 actionable"), "{report}");
    // Only what is new is read, and what was read before still counts toward the threshold.
    ingest(&app, question(now())).await;
    let report = scheduled_pulse(&app).await;
    assert_eq!(report["read"], 1);
    assert_eq!((outcome(&report), report["reason"].as_str().unwrap()), ("reflect", "3 new actionable signals"));
    assert_eq!(report["created"].as_array().unwrap().len(), 3);

    // Cooling down: thirty minutes between reflections.
    for _ in 0..3 {
        ingest(&app, question(now())).await;
    }
    clock.advance(Duration::minutes(10));
    let report = scheduled_pulse(&app).await;
    assert_eq!(outcome(&report), "deferred");
    assert_eq!(report["until"], json!(start() + Duration::minutes(30)));
    clock.advance(Duration::minutes(20));
    assert_eq!(outcome(&scheduled_pulse(&app).await), "reflect");

    // The budget of two is spent; a pulse by hand still thinks.
    for _ in 0..3 {
        ingest(&app, question(now())).await;
    }
    clock.advance(Duration::hours(1));
    let report = scheduled_pulse(&app).await;
    assert_eq!(outcome(&report), "deferred");
    assert!(report["reason"].as_str().unwrap().contains("budget of 2"), "{report}");
    let status = app.get("/api/heartbeat").await;
    assert_eq!((status["reflections_today"].as_i64(), status["budget_left"].as_i64()), (Some(2), Some(0)));
    assert_eq!(outcome(&pulse(&app).await), "reflect");

    // Quiet hours at night in Berlin, until seven.
    let night = chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 11, 18, 23, 30, 0).unwrap().with_timezone(&Utc);
    clock.set(night);
    for _ in 0..3 {
        ingest(&app, question(now())).await;
    }
    let report = scheduled_pulse(&app).await;
    assert_eq!((outcome(&report), report["reason"].as_str().unwrap()), ("deferred", "quiet hours"));
    let seven = chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 11, 19, 7, 0, 0).unwrap().with_timezone(&Utc);
    assert_eq!(report["until"], json!(seven));

    // The kill switch holds even a pulse by hand.
    let (status, _) = app.post("/api/stop", json!({})).await;
    assert_eq!(status, 200);
    clock.set(seven + Duration::minutes(1));
    for report in [pulse(&app).await, scheduled_pulse(&app).await] {
        assert_eq!(outcome(&report), "deferred");
        assert!(report["reason"].as_str().unwrap().contains("kill switch"), "{report}");
    }
    let before = app.get("/api/heartbeat").await;
    assert_eq!(before["paused"], true);
    assert_eq!(before["carried_actionable"], 3, "paused pulses still read and count");

    // Everything the heartbeat knows survives a restart.
    let dir = app.shutdown().await;
    let app = spawn_app_in(dir, Arc::new(clock.clone()), owner_config).await;
    let after = app.get("/api/heartbeat").await;
    for key in ["paused", "last_run_id", "last_reflection_at", "carried_actionable", "signal_cursor", "last_outcome"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_eq!(outcome(&scheduled_pulse(&app).await), "deferred");
    let (status, _) = app.post("/api/resume", json!({})).await;
    assert_eq!(status, 200);
    // A new local day: the budget is fresh and the carried signals are thought about.
    let report = scheduled_pulse(&app).await;
    assert_eq!((outcome(&report), report["reason"].as_str().unwrap()), ("reflect", "3 new actionable signals"));
    assert_eq!(app.get("/api/heartbeat").await["budget_left"], 23);
}

#[tokio::test]
async fn a_question_ripening_is_a_follow_up_that_wakes_the_heartbeat() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |_| {}).await;
    for (n, who) in ["a", "b", "c"].iter().enumerate() {
        ingest(&app, message(&format!("f{n}"), who, who, who, 5, start(), "Can we move the call to Friday?")).await;
    }
    let report = scheduled_pulse(&app).await;
    assert_eq!(outcome(&report), "reflect");
    assert_eq!(report["created"], json!([]), "too fresh to be unanswered");
    clock.advance(Duration::hours(1));
    assert_eq!(outcome(&scheduled_pulse(&app).await), "idle");
    clock.advance(Duration::minutes(56));
    let report = scheduled_pulse(&app).await;
    assert_eq!((outcome(&report), report["reason"].as_str().unwrap()), ("reflect", "1 follow-up(s) due"));
    assert_eq!(report["created"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn suggestions_expire_go_stale_when_ignored_and_scheduled_ones_come_due() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |c| c.suggestions.ignore_after = loopgate::config::ConfigDuration::secs(24 * 3600)).await;
    ingest(&app, message("r", OWNER, "Me", "notes", 1, start(), "remind me to renew the passport tomorrow at 9")).await;
    ingest(&app, message("a", "ana", "Ana", "ana", 300, start(), "can you sign the lease?")).await;
    ingest(&app, message("b", "ben", "Ben", "ben", 300, start(), "did you get my parcel?")).await;
    pulse(&app).await;
    let active = suggestions(&app, "active").await;
    let (ana, ben) = (find(&active, "lease")["id"].as_i64().unwrap(), find(&active, "parcel")["id"].as_i64().unwrap());
    // A channel posted Ana's; nobody posted Ben's.
    app.store.record_surface(ana, "telegram", "chat:1/message:77").await.unwrap();
    let shown = app.get(&format!("/api/suggestions/{ana}")).await;
    assert_eq!(shown["surfaces"][0]["channel"], "telegram");
    assert_eq!(shown["surfaced_at"], json!(start()));

    // Tomorrow at 9 the reminder comes due and is dispatched without a reflection.
    let nine = chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 11, 19, 9, 0, 0).unwrap().with_timezone(&Utc);
    clock.set(nine);
    let report = scheduled_pulse(&app).await;
    assert_eq!(outcome(&report), "dispatch", "{report}");
    assert_eq!(report["run_id"], Value::Null);
    assert!(titles(&suggestions(&app, "active").await).contains(&"Reminder: renew the passport".to_owned()));

    // A day after it was shown, Ana's went stale: ignored, and weakly learned as noise.
    clock.set(start() + Duration::hours(25));
    let report = scheduled_pulse(&app).await;
    assert_eq!(report["upkeep"]["ignored"], json!([ana]));
    let noise = memories(&app, "ignored_noise").await;
    assert_eq!(noise.len(), 1);
    assert!(noise[0]["confidence"].as_f64().unwrap() < 0.5);
    assert_eq!(noise[0]["content"], "can you sign the lease?");

    // Three days after it was raised, unseen Ben's expires.
    clock.set(start() + Duration::days(3));
    let report = scheduled_pulse(&app).await;
    assert_eq!(report["upkeep"]["expired"], json!([ben]));
    assert_eq!(app.get(&format!("/api/suggestions/{ben}")).await["state"], "expired");
    let (status, body) = respond(&app, ben, json!({"response": "act"})).await;
    assert_eq!((status, body["error"]["message"].as_str().unwrap()), (409, "already decided: expired"));
}

#[tokio::test]
async fn a_newer_question_in_the_same_conversation_supersedes_the_older_one() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |_| {}).await;
    ingest(&app, message("1", "ana", "Ana", "ana", 400, start(), "can you send the slides?")).await;
    pulse(&app).await;
    let old = suggestions(&app, "active").await[0]["id"].as_i64().unwrap();
    ingest(&app, message("2", "ana", "Ana", "ana", 200, start(), "also, are we still on for Thursday?")).await;
    pulse(&app).await;
    assert_eq!(app.get(&format!("/api/suggestions/{old}")).await["state"], "superseded");
    assert_eq!(titles(&suggestions(&app, "active").await), ["Reply to Ana: “also, are we still on for Thursday?”"]);

    // Channels hear of both, in order.
    let events = app.store.deliveries("telegram", 100).await.unwrap();
    let seen: Vec<(i64, &str)> = events.iter().map(|d| (d.suggestion.id, d.kind.as_str())).collect();
    assert_eq!(seen, [(old, "show"), (old, "update"), (old + 1, "show")]);
    app.store.ack_deliveries("telegram", events[1].id).await.unwrap();
    assert_eq!(app.store.deliveries("telegram", 100).await.unwrap().len(), 1);
    assert_eq!(app.store.deliveries("discord", 100).await.unwrap().len(), 3, "each channel has its own cursor");
}

#[tokio::test]
async fn what_the_owner_asked_to_watch_for_is_raised_when_it_shows_up() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |_| {}).await;
    let (status, _) =
        app.post("/api/memory", json!({"kind": "watch_item", "content": "tickets for the Lisbon concert"})).await;
    assert_eq!(status, 201);
    clock.advance(Duration::minutes(1));
    let mut news =
        message("w1", "venue", "Venue", "venue", 0, clock_now(&clock), "Lisbon concert tickets are on sale now");
    news["conversation"] = json!({"id": "venue-news"});
    ingest(&app, news).await;
    let report = pulse(&app).await;
    assert_eq!(report["created"].as_array().unwrap().len(), 1, "{report}");
    let watch = &suggestions(&app, "active").await[0];
    assert_eq!(watch["class"], "watch_item");
    assert_eq!(
        watch["title"],
        "Watched: tickets for the Lisbon concert — Venue: “Lisbon concert tickets are on sale now”"
    );
    let run = app.get(&format!("/api/runs/{}", report["run_id"].as_str().unwrap())).await;
    assert_eq!(run["evidence"]["memories"][0]["kind"], "watch_item", "memories are part of the evidence");
}
