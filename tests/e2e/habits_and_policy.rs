//! Critique by policy and the weekly-habit detector, through the API on a clock the tests
//! move: what policy denies is never suggested, every suggestion says its risk and whether
//! acting would wait for an approval, and a weekly habit is raised before its turn,
//! remembered, and stays quiet once the owner tells loopgate to forget it.

use chrono::{DateTime, Duration, TimeZone, Utc};
use loopgate_engine::ManualClock;
use loopgate_policies::{ActionKind, Effect, Rule};
use serde_json::{Value, json};

use crate::intelligence::{OWNER, app_at, ingest, message, pulse, respond, start, suggestions};

fn critique_of<'a>(run: &'a Value, key_prefix: &str) -> &'a Value {
    run["critique"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"].as_str().unwrap().starts_with(key_prefix))
        .unwrap_or_else(|| panic!("no critique for {key_prefix} in {run}"))
}

#[tokio::test]
async fn policy_classifies_every_suggestion_and_what_it_denies_is_never_suggested() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |c| {
        // The owner never wants loopgate to answer Dana on their behalf.
        c.policy.rules = vec![Rule {
            effect: Effect::Deny,
            kind: Some(ActionKind::Message),
            target: Some("telegram:d1".into()),
            min_risk: None,
        }];
    })
    .await;
    let now = start();
    ingest(&app, message("m1", OWNER, "Me", "team", 190, now, "I'll send you the signed contract by Friday")).await;
    let dana = ingest(&app, message("m2", "d1", "Dana", "d1", 180, now, "Could you look at the budget draft?")).await;
    ingest(&app, message("m3", "e1", "Eve", "e1", 170, now, "Can you confirm the venue for Thursday?")).await;

    let report = pulse(&app).await;
    let active = suggestions(&app, "open").await;
    let titles: Vec<&str> = active.iter().map(|s| s["title"].as_str().unwrap()).collect();
    assert_eq!(active.len(), 2, "{titles:?}");
    assert!(titles.iter().all(|t| !t.contains("budget draft")), "denied by policy: {titles:?}");

    let eve = active.iter().find(|s| s["class"] == "unanswered_question").unwrap();
    assert_eq!((eve["risk"].as_str(), eve["policy"].as_str()), (Some("medium"), Some("ask")), "{eve}");
    let promise = active.iter().find(|s| s["class"] == "promise").unwrap();
    assert_eq!((promise["risk"].as_str(), promise["policy"].as_str()), (Some("low"), Some("allow")), "{promise}");

    let run = app.get(&format!("/api/runs/{}", report["run_id"].as_str().unwrap())).await;
    let denied = critique_of(&run, &format!("question:{dana}"));
    assert_eq!(denied["verdict"], "denied");
    assert_eq!(denied["reason"], "rule 1 (deny, kind message, target telegram:d1)");
    assert_eq!((denied["risk"].as_str(), denied["policy"].as_str()), (Some("medium"), Some("deny")));
    // The artifacts say the same as the index.
    let folder = app.dir.path().join("data/reflection/runs").join(report["run_id"].as_str().unwrap());
    let critique = std::fs::read_to_string(folder.join("critique.jsonl")).unwrap();
    assert!(critique.lines().any(|l| l.contains("\"verdict\":\"denied\"")), "{critique}");
}

/// The owner's message at `hh:mm` Berlin time, `days` before Wednesday 2026-11-18.
fn own_at(id: &str, days: i64, hh: u32, mm: u32, text: &str) -> Value {
    let at = chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 11, 18, hh, mm, 0).unwrap().with_timezone(&Utc)
        - Duration::days(days);
    let mut signal = message(id, OWNER, "Me", "team", 0, at, text);
    signal["conversation"] = json!({"id": "team", "title": "Team"});
    signal
}

fn berlin(at: &Value) -> String {
    let at: DateTime<Utc> = serde_json::from_value(at.clone()).unwrap();
    at.with_timezone(&chrono_tz::Europe::Berlin).format("%a %d %b %H:%M").to_string()
}

#[tokio::test]
async fn a_weekly_habit_is_raised_before_its_turn_remembered_and_forgotten_on_request() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |_| {}).await;
    for (id, days, hh, mm, text) in [
        ("w1", 21, 10, 50, "Weekly report attached, numbers look fine"),
        ("w2", 14, 11, 5, "weekly report attached - numbers a bit late this time"),
        ("w3", 7, 11, 20, "Here is the weekly report, numbers attached"),
        ("x1", 8, 11, 0, "lunch anyone?"),
    ] {
        ingest(&app, own_at(id, days, hh, mm, text)).await;
    }

    let report = pulse(&app).await;
    assert_eq!(report["created"].as_array().unwrap().len(), 1, "{report}");
    let run = app.get(&format!("/api/runs/{}", report["run_id"].as_str().unwrap())).await;
    assert_eq!(run["evidence"]["owner_history_signals"], 4, "the owner's past weeks are evidence");
    let habit = &suggestions(&app, "scheduled").await[0];
    assert_eq!(habit["class"], "recurring_task");
    assert_eq!(habit["title"], "Weekly: Here is the weekly report, numbers attached");
    assert_eq!(berlin(&habit["due_at"]), "Wed 18 Nov 10:30", "half an hour before its usual 11:00");
    assert_eq!(habit["evidence"].as_array().unwrap().len(), 3);
    assert_eq!(habit["evidence"][0]["summary"], "Me on telegram: “Here is the weekly report, numbers attached”");
    assert_eq!(habit["source"], "telegram");
    assert!(habit["why_now"].as_str().unwrap().contains("3 Wednesdays"), "{habit}");
    assert_eq!((habit["risk"].as_str(), habit["policy"].as_str()), (Some("low"), Some("allow")));

    // The habit is knowledge now, with where it came from.
    let learned = app.get("/api/memory?kind=recurring_task").await["memories"].as_array().unwrap().clone();
    assert_eq!(learned.len(), 1, "{learned:?}");
    assert_eq!(learned[0]["content"], "Every Wednesday around 11:00: weekly report attached numbers");
    assert_eq!(learned[0]["origin"], "reflection");
    assert_eq!(learned[0]["trust"], "untrusted", "learned from chat text");
    assert_eq!(learned[0]["evidence"].as_array().unwrap().len(), 3);

    // At 10:30 it comes due and the owner acts on it; thinking again raises nothing new
    // and does not learn the same habit twice over.
    clock.advance(Duration::minutes(16));
    pulse(&app).await;
    let due = suggestions(&app, "active").await;
    assert_eq!(due.len(), 1);
    let (status, body) = respond(&app, due[0]["id"].as_i64().unwrap(), json!({"response": "act"})).await;
    assert_eq!(status, 200, "{body}");
    let again = pulse(&app).await;
    assert_eq!(again["created"], json!([]));
    let learned_again = app.get("/api/memory?kind=recurring_task").await["memories"].as_array().unwrap().clone();
    assert_eq!(learned_again[0]["stability"], learned[0]["stability"], "{learned_again:?}");

    // The owner does it today, then asks loopgate to forget the habit: next Wednesday's
    // turn is found but not raised.
    clock.advance(Duration::minutes(30));
    ingest(&app, own_at("w4", 0, 11, 0, "weekly report attached with the numbers")).await;
    let id = learned[0]["id"].as_i64().unwrap();
    let forget = app.client.delete(app.url(&format!("/api/memory/{id}"))).send().await.unwrap();
    assert_eq!(forget.status(), 204);
    clock.advance(Duration::days(7) - Duration::hours(2));
    let next_week = pulse(&app).await;
    assert_eq!(next_week["created"], json!([]), "{next_week}");
    let run = app.get(&format!("/api/runs/{}", next_week["run_id"].as_str().unwrap())).await;
    assert_eq!(critique_of(&run, "recurring:2026-11-25")["verdict"], "forgotten", "{run}");
    assert!(app.get("/api/memory?kind=recurring_task").await["memories"].as_array().unwrap().is_empty());
}
