//! Named webhooks and commands, run for real once approved: a local HTTP endpoint on
//! 127.0.0.1 receives each approved call exactly once; a command gets its fixed arguments
//! and the action's text only as JSON on its standard input, never as a shell word.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::post;
use loopgate::config::{CommandConfig, ConfigDuration, WebhookConfig};
use loopgate_engine::ManualClock;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::intelligence::{app_at, start};

/// Calls a local endpoint received: (headers, body).
type Calls = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// An endpoint on 127.0.0.1 that records every call; `/fail` answers 500.
async fn endpoint() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let record = |status: u16| {
        let calls = calls.clone();
        move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
            let calls = calls.clone();
            async move {
                calls.lock().unwrap().push((headers, body));
                (axum::http::StatusCode::from_u16(status).unwrap(), "deploy started")
            }
        }
    };
    let app = axum::Router::new().route("/hook", post(record(200))).route("/fail", post(record(500)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, calls)
}

fn hook(name: &str, url: String) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url,
        method: "POST".into(),
        // The test environment has this variable; a real one names the hook's secret.
        headers_env: [("Authorization".to_owned(), "TEST_API_TOKEN".to_owned())].into(),
        timeout: ConfigDuration::secs(5),
    }
}

async fn approve_new(app: &TestApp, action: Value) -> Value {
    let (status, task) = app.post("/api/tasks", json!({"action": action, "reason": "release 2.1"})).await;
    assert_eq!((status, task["state"].as_str()), (201, Some("awaiting_approval")), "{task}");
    let approval = task["approval_id"].as_i64().unwrap();
    let (status, decided) =
        app.post(&format!("/api/approvals/{approval}/decide"), json!({"decision": "approve"})).await;
    assert_eq!(status, 200, "{decided}");
    decided
}

#[tokio::test]
async fn an_approved_webhook_is_called_exactly_once_and_a_failing_one_says_why() {
    let (base, calls) = endpoint().await;
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |c| {
        c.webhook = vec![hook("deploy", format!("{base}/hook")), hook("broken", format!("{base}/fail"))];
    })
    .await;

    let decided =
        approve_new(&app, json!({"kind": "webhook", "endpoint": "deploy", "payload": {"version": "2.1"}})).await;
    let task = &decided["task"];
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(task["output"], json!({"status": 200, "body": "deploy started"}));
    {
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        let (headers, body) = &calls[0];
        assert_eq!(body, &json!({"task": task["id"], "reason": "release 2.1", "payload": {"version": "2.1"}}));
        assert_eq!(headers["idempotency-key"], format!("loopgate-task-{}", task["id"]).as_str());
        assert_eq!(headers["authorization"], crate::helpers::TOKEN);
    }
    // Deciding again changes nothing and calls nothing.
    let approval = decided["approval"]["id"].as_i64().unwrap();
    let (status, _) = app.post(&format!("/api/approvals/{approval}/decide"), json!({"decision": "approve"})).await;
    assert_eq!(status, 409);
    let (_, _) = app.post("/api/pulse", json!({})).await;
    assert_eq!(calls.lock().unwrap().len(), 1, "exactly once");

    let failed = approve_new(&app, json!({"kind": "webhook", "endpoint": "broken"})).await;
    assert_eq!(failed["task"]["state"], "failed");
    assert_eq!(failed["task"]["error"], "webhook broken answered 500 Internal Server Error: deploy started");
    let unknown = approve_new(&app, json!({"kind": "webhook", "endpoint": "nowhere"})).await;
    assert_eq!(unknown["task"]["error"], "no webhook named \"nowhere\" is configured");
}

#[tokio::test]
async fn a_command_gets_its_fixed_arguments_and_message_text_only_as_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("input.json");
    let pwned = dir.path().join("pwned");
    let clock = ManualClock::new(start());
    let app = app_at(&clock, |c| {
        c.command = vec![
            CommandConfig {
                name: "record".into(),
                program: "/bin/sh".into(),
                args: vec!["-c".into(), format!("cat > '{}'; echo recorded", out.display())],
                timeout: ConfigDuration::secs(10),
            },
            CommandConfig {
                name: "fail".into(),
                program: "/bin/sh".into(),
                args: vec!["-c".into(), "echo 'disk full' >&2; exit 3".into()],
                timeout: ConfigDuration::secs(10),
            },
        ];
    })
    .await;

    // Text from a chat, hostile as it gets, rides along as data.
    let hostile = format!("\"; touch {} #$(touch {}) `touch {}`", pwned.display(), pwned.display(), pwned.display());
    let decided =
        approve_new(&app, json!({"kind": "command", "command": "record", "payload": {"note": hostile}})).await;
    let task = &decided["task"];
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(task["output"]["stdout"], "recorded\n");
    let input: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(input["payload"]["note"], hostile.as_str(), "delivered verbatim as JSON");
    assert!(!pwned.exists(), "nothing in the text was executed");

    let failed = approve_new(&app, json!({"kind": "command", "command": "fail"})).await;
    assert_eq!(failed["task"]["error"], "command fail exited with 3: disk full");
    // There is no way to name a program that is not configured.
    let unknown = approve_new(&app, json!({"kind": "command", "command": "/bin/rm"})).await;
    assert_eq!(unknown["task"]["error"], "no command named \"/bin/rm\" is configured");
}
