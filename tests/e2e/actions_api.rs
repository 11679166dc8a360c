//! Acting, tasks, approvals and the audit log through the API: an action that needs an
//! approval waits for one, runs once when approved, never when denied or expired, stays
//! decidable across a restart, and every decision and side effect is on record.

use std::sync::Arc;

use chrono::Duration;
use loopgate_engine::ManualClock;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_in};
use crate::intelligence::{app_at, ingest, message, owner_config, pulse, respond, start, suggestions};

async fn decide(app: &TestApp, id: i64, decision: &str) -> (u16, Value) {
    app.post(&format!("/api/approvals/{id}/decide"), json!({"decision": decision})).await
}

async fn submit(app: &TestApp, body: Value) -> (u16, Value) {
    app.post("/api/tasks", body).await
}

#[tokio::test]
async fn acting_on_a_reply_waits_for_approval_and_the_first_decision_wins() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |_| {}).await;
    ingest(&app, message("q1", "d1", "Dana", "d1", 180, start(), "Could you look at the budget draft?")).await;
    ingest(&app, message("r1", crate::intelligence::OWNER, "Me", "notes", 10, start(), "remind me to water the ferns"))
        .await;
    pulse(&app).await;
    let active = suggestions(&app, "active").await;
    let id_of = |class: &str| active.iter().find(|s| s["class"] == class).unwrap()["id"].as_i64().unwrap();

    // The reminder's action (a note) is allowed: it runs at once.
    let (status, body) = respond(&app, id_of("reminder"), json!({"response": "act"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["task"]["state"], "succeeded", "{body}");
    assert_eq!(body["task"]["timeline"].as_array().unwrap().len(), 3);

    // A reply to Dana leaves the machine: it waits for an approval.
    let (status, body) =
        respond(&app, id_of("unanswered_question"), json!({"response": "edit", "edited_action": "Looking now"})).await;
    assert_eq!(status, 200, "{body}");
    let task = &body["task"];
    assert_eq!((task["state"].as_str(), task["policy"].as_str()), (Some("awaiting_approval"), Some("ask")));
    assert_eq!(task["action"]["text"], "Looking now");
    let approval_id = task["approval_id"].as_i64().unwrap();
    let pending = app.get("/api/approvals?state=pending").await["approvals"].as_array().unwrap().clone();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0]["id"].as_i64(), pending[0]["risk"].as_str()), (Some(approval_id), Some("medium")));

    let (status, decided) = decide(&app, approval_id, "approve").await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["approval"]["state"], "approved");
    assert_eq!(decided["approval"]["decision"]["via"], "api");
    // No channel can deliver a Telegram message on this loopgate yet: the task says so.
    assert_eq!(decided["task"]["state"], "failed");
    assert_eq!(
        decided["task"]["error"],
        "no \"telegram\" channel is configured on this loopgate to deliver \"telegram:d1\""
    );

    let (status, again) = decide(&app, approval_id, "deny").await;
    assert_eq!(status, 409, "{again}");
    assert!(again["error"]["message"].as_str().unwrap().starts_with("already decided: approved via api by owner at"));

    let task_id = decided["task"]["id"].as_i64().unwrap();
    let timeline: Vec<String> = app.get(&format!("/api/tasks/{task_id}")).await["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(timeline, ["awaiting_approval", "queued", "running", "failed"]);

    let audit = app.get("/api/audit").await["audit"].as_array().unwrap().clone();
    let events: Vec<&str> = audit.iter().rev().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        [
            "suggestion.acted",
            "task.created",
            "task.succeeded",
            "suggestion.edited",
            "task.created",
            "approval.requested",
            "approval.approved",
            "task.failed"
        ]
    );
}

#[tokio::test]
async fn denied_and_expired_approvals_never_run_and_a_restart_keeps_pending_ones() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |c| c.approvals.expires = loopgate::config::ConfigDuration::secs(3600)).await;
    let deploy = json!({"action": {"kind": "webhook", "endpoint": "deploy", "payload": {"v": 2}}, "reason": "ship v2"});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, task) = submit(&app, deploy.clone()).await;
        assert_eq!(status, 201, "{task}");
        assert_eq!((task["state"].as_str(), task["risk"].as_str()), (Some("awaiting_approval"), Some("high")));
        ids.push((task["id"].as_i64().unwrap(), task["approval_id"].as_i64().unwrap()));
    }
    let (status, denied) = decide(&app, ids[0].1, "deny").await;
    assert_eq!(status, 200);
    assert_eq!(denied["task"]["state"], "cancelled");

    // A restart while two wait: both still pending.
    let dir = app.shutdown().await;
    let app = spawn_app_in(dir, Arc::new(clock.clone()), |c| {
        owner_config(c);
        c.approvals.expires = loopgate::config::ConfigDuration::secs(3600);
    })
    .await;
    assert_eq!(app.get("/api/approvals?state=pending").await["approvals"].as_array().unwrap().len(), 2);

    // An hour later, one is expired by the pulse and the other by the late decision.
    clock.advance(Duration::minutes(61));
    let (status, late) = decide(&app, ids[1].1, "approve").await;
    assert_eq!(status, 409, "{late}");
    assert!(late["error"]["message"].as_str().unwrap().starts_with("already decided: expired"), "{late}");
    let report = pulse(&app).await;
    assert_eq!(report["upkeep"]["approvals_expired"], json!([ids[2].1]));
    for (task, _) in &ids {
        let task = app.get(&format!("/api/tasks/{task}")).await;
        assert_eq!(task["state"], "cancelled", "{task}");
        assert!(task["timeline"].as_array().unwrap().iter().all(|e| e["state"] != "running"), "never ran: {task}");
    }
}

#[tokio::test]
async fn bad_task_and_approval_requests_get_clear_errors_and_change_nothing() {
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |c| c.server.api_token_env = Some("TEST_API_TOKEN".into())).await;
    let (status, task) = submit(&app, json!({"action": {"kind": "note", "text": "the boiler code is 4471"}})).await;
    assert_eq!((status, task["state"].as_str()), (201, Some("succeeded")), "{task}");
    let (status, waiting) = submit(&app, json!({"action": {"kind": "command", "command": "backup"}})).await;
    assert_eq!(status, 201);
    let approval = waiting["approval_id"].as_i64().unwrap();

    let cases = [
        (json!({"reason": "x"}), 422, "action"),
        (json!({"action": {"kind": "shell", "command": "rm -rf /"}}), 422, "shell"),
        (json!({"action": "deploy"}), 422, "kind"),
        (json!({"action": {"kind": "note"}, "extra": 1}), 422, "extra"),
    ];
    for (body, status, says) in cases {
        let (got, error) = submit(&app, body.clone()).await;
        assert_eq!(got, status, "{body}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(says), "{body}: {error}");
    }
    let (status, error) = decide(&app, approval, "maybe").await;
    assert_eq!(status, 422, "{error}");
    let (status, _) = decide(&app, 999, "approve").await;
    assert_eq!(status, 404);
    let bogus = app.client.get(app.url("/api/tasks?state=bogus")).send().await.unwrap();
    assert_eq!(bogus.status(), 422);
    let anonymous = crate::helpers::anonymous_client();
    let unauthorized =
        anonymous.post(app.url(&format!("/api/approvals/{approval}/decide"))).json(&json!({"decision": "approve"}));
    let unauthorized = unauthorized.send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);

    assert_eq!(app.get("/api/tasks?state=all").await["tasks"].as_array().unwrap().len(), 2, "nothing was written");
    assert_eq!(app.get(&format!("/api/approvals/{approval}")).await["state"], "pending");
}

#[tokio::test]
async fn auto_create_acts_only_on_what_passes_the_gate_and_only_when_turned_on() {
    for enabled in [false, true] {
        let clock = ManualClock::new(start());
        let app = app_at(&clock, |c| c.suggestions.auto_create = enabled).await;
        let now = loopgate_engine::Clock::now(&clock);
        // The owner promises something (a reminder to self: low risk), and a friend asks a
        // question (a message to someone else: medium risk, policy asks). (An owner's own
        // "remind me" is a command, set when said: it is not a suggestion to act on.)
        let owner = crate::intelligence::OWNER;
        ingest(&app, message("r1", owner, "Nelly", "88", 30, now, "I'll call the plumber tomorrow at 9")).await;
        ingest(&app, message("q1", "77", "Dana", "77", 300, now, "Could you send me the contract by Friday?")).await;
        pulse(&app).await;
        let all = suggestions(&app, "scheduled,active,acted").await;
        let reminder =
            all.iter().find(|s| s["class"] == "promise").unwrap_or_else(|| panic!("a promise suggestion in {all:#?}"));
        let reply = all.iter().find(|s| s["action"]["kind"] == "message").expect("a reply suggestion");
        assert_eq!(reply["state"], "active", "a message is never created on its own");
        if enabled {
            assert_eq!(reminder["state"], "acted", "{reminder}");
            assert_eq!(reminder["decision"]["by"], "auto-create");
            let tasks = app.get("/api/tasks").await["tasks"].as_array().unwrap().clone();
            let task = tasks
                .iter()
                .find(|t| t["origin"] == format!("suggestion:{}", reminder["id"]))
                .expect("the reminder's task");
            assert_eq!(task["state"], "succeeded", "{task}");
        } else {
            assert!(reminder["state"] == "active" || reminder["state"] == "scheduled", "off by default: {reminder}");
        }
    }
}
