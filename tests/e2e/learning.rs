//! Learning at the boundaries the owner sees: every suggestion says why it ranks where it
//! does, `GET /api/learning` shows what was learned with its evidence, a key can be reset
//! (`DELETE /api/learning/{dimension}/{key}`, `POST /api/learning/reset`, `loopgate
//! learning reset`), and every reset is in the audit log.

use chrono::Duration;
use loopgate_engine::ManualClock;
use serde_json::{Value, json};

use crate::helpers::{run_cli, write_config};
use crate::intelligence::{app_at, ingest, message, pulse, respond, start, suggestions};

fn from(s: &Value) -> String {
    s["ranking"]["features"]["actor"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn what_was_learned_is_shown_with_its_evidence_and_a_key_can_be_reset() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |_| {}).await;
    ingest(&app, message("a1", "a1", "Ana", "a1", 300, start(), "Could you send the signed lease?")).await;
    ingest(&app, message("v1", "v1", "Vendor", "v1", 300, start(), "Could you approve our new quote?")).await;
    pulse(&app).await;
    let shown = suggestions(&app, "active").await;
    assert_eq!(shown.len(), 2, "{shown:#?}");
    for s in &shown {
        assert_eq!(s["ranked"], "as found: nothing learned about it yet", "{s:#}");
        assert_eq!(s["ranking"]["features"]["class"], "unanswered_question");
        assert_eq!(s["ranking"]["explored"], false);
    }
    for s in &shown {
        let body = if from(s) == "telegram:v1" {
            json!({"response": "dismiss"})
        } else {
            json!({"response": "edit", "edited_action": "Sending it tonight"})
        };
        let (status, answer) = respond(&app, s["id"].as_i64().unwrap(), body).await;
        assert_eq!(status, 200, "{answer}");
    }

    // Both write again: Ana's question now ranks by what the owner did with hers.
    clock.advance(Duration::hours(6));
    let now = loopgate_engine::Clock::now(&clock);
    ingest(&app, message("a2", "a1", "Ana", "a1", 200, now, "Can you check the meter reading?")).await;
    pulse(&app).await;
    let ana = suggestions(&app, "active").await.into_iter().find(|s| from(s) == "telegram:a1").unwrap();
    assert_eq!(ana["ranked"], "ranked up: you acted on 1 of this sender's last 1", "{ana:#}");
    assert!(ana["ranking"]["estimate"].as_f64().unwrap() > ana["ranking"]["overall"].as_f64().unwrap());

    // What was learned, per dimension, with its evidence.
    let learned = app.get("/api/learning").await;
    assert_eq!(learned["answers"].as_i64(), Some(2), "{learned:#}");
    let overall = learned["overall"].as_f64().unwrap();
    assert!((overall - 0.5).abs() < 0.02, "one act, one dismissal: {learned:#}");
    assert_eq!((learned["half_life_days"].as_i64(), learned["explore_every"].as_i64()), (Some(7), Some(10)));
    let people = learned["dimensions"]["actor"].as_array().unwrap();
    assert_eq!(people.len(), 2, "{learned:#}");
    let vendor = people.iter().find(|p| p["key"] == "telegram:v1").unwrap();
    assert_eq!(vendor["says"], "you dismissed 1 of this sender's last 1");
    assert_eq!((vendor["recent"].as_str(), vendor["acted"].as_f64()), (Some("d"), Some(0.0)));
    // One dismissal, six hours ago: faded a little (half in a week).
    assert_eq!(vendor["dismissed"].as_f64(), Some(0.98));
    assert!(vendor["lean"].as_f64().unwrap() < 0.0, "{vendor:#}");
    for dimension in ["class", "source", "hour", "words"] {
        assert!(learned["dimensions"][dimension].as_array().is_some_and(|d| !d.is_empty()), "{dimension}: {learned:#}");
    }
    let one = app.get("/api/learning?dimension=actor&limit=1").await;
    assert_eq!(one["dimensions"].as_object().unwrap().len(), 1);
    assert_eq!(one["dimensions"]["actor"].as_array().unwrap().len(), 1);
    let bad = app.client.get(app.url("/api/learning?dimension=mood")).send().await.unwrap();
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("actor, conversation, words"), "{body}");

    // Reset one key: by path, then by body; a second reset finds nothing; bad input changes
    // nothing.
    let url = app.url("/api/learning/actor/telegram:v1");
    let reset = app.client.delete(&url).send().await.unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(
        reset.json::<Value>().await.unwrap(),
        json!({"reset": true, "dimension": "actor", "key": "telegram:v1"})
    );
    assert_eq!(app.client.delete(&url).send().await.unwrap().status(), 404);
    let (status, body) =
        app.post("/api/learning/reset", json!({"dimension": "class", "key": "unanswered_question"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app.post("/api/learning/reset", json!({"dimension": "class", "key": "x", "why": 1})).await;
    assert_eq!(status, 422);
    let (status, _) = app.post("/api/learning/reset", json!({"dimension": "mood", "key": "x"})).await;
    assert_eq!(status, 422);
    let learned = app.get("/api/learning").await;
    let keys: Vec<&str> =
        learned["dimensions"]["actor"].as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["telegram:a1"]);
    assert!(learned["dimensions"].get("class").is_none(), "{learned:#}");

    let audit = app.get("/api/audit").await;
    let resets: Vec<&Value> =
        audit["audit"].as_array().unwrap().iter().filter(|e| e["event"] == "learning.reset").collect();
    assert_eq!(resets.len(), 2, "{audit:#}");
    assert_eq!(resets[1]["subject"], "learning:actor:telegram:v1");
    assert_eq!((resets[1]["actor"].as_str(), resets[1]["via"].as_str()), (Some("owner"), Some("api")));
}

#[test]
fn the_cli_shows_what_was_learned_and_resets_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let (code, stdout, stderr) = run_cli(&config, &["learning"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("nothing learned yet"), "{stdout}");

    let asked = (chrono::Utc::now() - Duration::hours(3)).to_rfc3339();
    let signal = [
        "signal",
        "--source",
        "telegram",
        "--actor",
        "v1",
        "--conversation",
        "v1",
        "--external-id",
        "x1",
        "--untrusted",
        "--occurred-at",
        &asked,
        "Could you approve our quote?",
    ];
    let (code, _, stderr) = run_cli(&config, &signal, &[]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run_cli(&config, &["pulse"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let (_, stdout, _) = run_cli(&config, &["suggestions", "list", "--json"], &[]);
    let shown: Value = serde_json::from_str(stdout.lines().next().expect("a suggestion")).unwrap();
    assert_eq!(shown["ranked"], "as found: nothing learned about it yet");
    let id = shown["id"].to_string();
    let (code, _, stderr) = run_cli(&config, &["suggestions", "respond", &id, "dismiss"], &[]);
    assert_eq!(code, 0, "{stderr}");

    let (code, stdout, stderr) = run_cli(&config, &["learning", "--dimension", "actor"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("telegram:v1") && stdout.contains("you dismissed 1 of this sender's last 1"), "{stdout}");
    let (_, stdout, _) = run_cli(&config, &["learning", "--json"], &[]);
    let learned: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(learned["dimensions"]["actor"][0]["key"], "telegram:v1");

    let (code, stdout, stderr) = run_cli(&config, &["learning", "reset", "actor", "telegram:v1"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("forgot what actor \"telegram:v1\" learned"), "{stdout}");
    let (code, _, stderr) = run_cli(&config, &["learning", "reset", "actor", "telegram:v1"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("nothing is learned about actor"), "{stderr}");
    let (code, _, stderr) = run_cli(&config, &["learning", "--dimension", "mood"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not one of actor"), "{stderr}");
}
