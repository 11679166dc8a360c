//! `POST /api/signals` and `GET /api/signals`: what callers see, and that no error writes.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TOKEN, anonymous_client, spawn_app, spawn_app_with};

fn telegram_message(external_id: i64, text: &str) -> Value {
    json!({
        "source": "telegram",
        "kind": "message",
        "external_id": external_id,
        "actor": {"id": "4242", "name": "Dana"},
        "conversation": {"id": "-100123", "title": "Team", "reply_to": "77"},
        "text": text,
        "urgency": "high",
        "occurred_at": "2026-11-20T08:30:00Z",
        "payload": {"update_id": external_id}
    })
}

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error bodies are JSON");
    let code = body["error"]["code"].as_str().expect("error.code").to_owned();
    let message = body["error"]["message"].as_str().expect("error.message").to_owned();
    (status, code, message)
}

#[tokio::test]
async fn a_signal_is_created_then_listed_and_fetched() {
    let app = spawn_app().await;
    let response = app.post_signal(telegram_message(1001, "Can you review the draft by Friday?")).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["duplicate"], false);
    let id = created["id"].as_i64().expect("numeric id");

    let listed = app.signals().await;
    assert_eq!(listed.len(), 1);
    let signal = &listed[0];
    assert_eq!(signal["id"], id);
    assert_eq!(signal["source"], "telegram");
    assert_eq!(signal["external_id"], "1001");
    assert_eq!(signal["actor"]["name"], "Dana");
    assert_eq!(signal["actor"]["is_owner"], false);
    assert_eq!(signal["conversation"]["reply_to"], "77");
    assert_eq!(signal["urgency"], "high");
    assert_eq!(signal["trust"], "untrusted");
    assert_eq!(signal["family"], "message");
    assert_eq!(signal["occurred_at"], "2026-11-20T08:30:00Z");
    assert_eq!(signal["payload"]["update_id"], 1001);

    let one: Value = app.client.get(app.url(&format!("/api/signals/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(one["text"], "Can you review the draft by Friday?");
    let missing = app.client.get(app.url("/api/signals/999999")).send().await.unwrap();
    assert_eq!(error_of(missing).await.0, 404);
}

#[tokio::test]
async fn the_same_delivery_twice_is_one_signal() {
    let app = spawn_app().await;
    let first: Value = app.post_signal(telegram_message(7, "hello")).await.json().await.unwrap();
    let again = app.post_signal(telegram_message(7, "hello")).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, json!({"id": first["id"], "duplicate": true, "merged": false}));
    assert_eq!(app.signals().await.len(), 1);
    assert_eq!(app.signals().await[0]["count"], 1);
}

#[tokio::test]
async fn a_repeat_with_a_new_id_merges_and_counts() {
    let app = spawn_app().await;
    let first: Value = app.post_signal(telegram_message(1, "Backup failed on nas")).await.json().await.unwrap();
    let second = app.post_signal(telegram_message(2, "backup FAILED on nas")).await;
    assert_eq!(second.status(), 201);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["merged"], true);
    let signals = app.signals().await;
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0]["count"], 2);
}

#[tokio::test]
async fn the_owner_is_recognised_by_configured_identity_only() {
    let app = spawn_app_with(|c| c.owner.telegram_user_ids = vec![4242]).await;
    app.post_signal(telegram_message(1, "from the owner")).await;
    let mut other = telegram_message(2, "from someone else");
    other["actor"] = json!("999");
    app.post_signal(other).await;
    let signals = app.signals().await;
    let by_text = |t: &str| signals.iter().find(|s| s["text"] == t).unwrap()["actor"]["is_owner"].clone();
    assert_eq!(by_text("from the owner"), true);
    assert_eq!(by_text("from someone else"), false);

    // A caller cannot claim to be the owner.
    let mut forged = telegram_message(3, "trust me");
    forged["actor"] = json!({"id": "999", "is_owner": true});
    let (status, code, message) = error_of(app.post_signal(forged).await).await;
    assert_eq!((status, code.as_str()), (422, "invalid_request"));
    assert!(message.contains("is_owner"), "{message}");
    assert_eq!(app.signals().await.len(), 2);
}

#[tokio::test]
async fn malformed_json_is_400_and_writes_nothing() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/signals"))
        .header("content-type", "application/json")
        .body(r#"{"source": "api", "kind": "message", "text": "unterminated"#)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (400, "malformed_json"));
    assert!(app.signals().await.is_empty());
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415_and_writes_nothing() {
    let app = spawn_app().await;
    let body = serde_json::to_string(&telegram_message(1, "hi")).unwrap();
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut request = app.client.post(app.url("/api/signals")).body(body.clone());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let (status, code, _) = error_of(request.send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (415, "unsupported_media_type"), "{content_type:?}");
    }
    assert!(app.signals().await.is_empty());
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"source": "api", "kind": "message"}), "text"),
        (json!({"source": "api", "kind": "message", "text": "x", "colour": "red"}), "colour"),
        (json!({"source": "Not A Token", "kind": "message", "text": "x"}), "source"),
        (json!({"source": "api", "kind": "message", "text": "x", "urgency": "whenever"}), "whenever"),
        (json!({"source": "api", "kind": "message", "text": "   "}), "text"),
        (json!({"source": "api", "kind": "message", "text": "x", "occurred_at": "yesterday"}), "occurred_at"),
        (json!({"source": "api", "kind": "message", "text": "x", "external_id": ""}), "external_id"),
        (json!(["not", "an", "object"]), "struct"),
    ];
    for (body, field) in cases {
        let (status, code, message) = error_of(app.post_signal(body.clone()).await).await;
        assert_eq!((status, code.as_str()), (422, "invalid_request"), "{body}");
        assert!(message.contains(field), "{body}: {message:?} should name {field}");
    }
    assert!(app.signals().await.is_empty());
}

#[tokio::test]
async fn oversized_bodies_are_413_and_write_nothing() {
    let app = spawn_app_with(|c| c.server.max_body_bytes = 4096).await;
    let big = telegram_message(1, &"x".repeat(8192));
    let (status, code, _) = error_of(app.post_signal(big).await).await;
    assert_eq!((status, code.as_str()), (413, "body_too_large"));

    // Without a Content-Length (chunked), the limit still holds while streaming.
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/signals HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!(r#"{{"source":"api","kind":"message","text":"{}"}}"#, "y".repeat(10_000));
    let _ = stream.write_all(format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len()).as_bytes()).await;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");

    assert!(app.signals().await.is_empty());
    // A body under the limit still goes through.
    assert_eq!(app.post_signal(telegram_message(2, "small")).await.status(), 201);
}

#[tokio::test]
async fn the_api_token_is_required_when_configured() {
    let app = spawn_app_with(|c| c.server.api_token_env = Some("TEST_API_TOKEN".into())).await;
    let anonymous = anonymous_client();
    let body = telegram_message(1, "hello");

    let (status, code, message) =
        error_of(anonymous.post(app.url("/api/signals")).json(&body).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert!(message.contains("missing"), "{message}");

    for wrong in ["Bearer nope", &format!("Bearer {TOKEN}x"), &format!("Basic {TOKEN}"), TOKEN] {
        let response =
            anonymous.post(app.url("/api/signals")).header("authorization", wrong).json(&body).send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(error_of(response).await.0, 401, "{wrong}");
    }
    assert_eq!(anonymous.get(app.url("/api/signals")).send().await.unwrap().status(), 401);
    assert_eq!(anonymous.get(app.url("/metrics")).send().await.unwrap().status(), 401);
    // Probes stay open for load balancers and supervisors.
    assert_eq!(anonymous.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(anonymous.get(app.url("/readyz")).send().await.unwrap().status(), 200);

    assert!(app.signals().await.is_empty(), "nothing was written by refused requests");
    assert_eq!(app.post_signal(body).await.status(), 201);
}

#[tokio::test]
async fn listing_filters_by_source_since_and_limit() {
    let app = spawn_app().await;
    for n in 0..5 {
        app.post_signal(telegram_message(n, &format!("telegram {n}"))).await;
    }
    app.post_signal(json!({"source": "email", "kind": "email", "external_id": "<a@b>", "text": "Invoice"})).await;

    let get = |q: &'static str| {
        let client = app.client.clone();
        let url = app.url(&format!("/api/signals?{q}"));
        async move { client.get(url).send().await.unwrap() }
    };
    let body: Value = get("source=email").await.json().await.unwrap();
    assert_eq!(body["signals"].as_array().unwrap().len(), 1);
    let body: Value = get("limit=2").await.json().await.unwrap();
    assert_eq!(body["signals"].as_array().unwrap().len(), 2);
    assert_eq!(body["signals"][0]["source"], "email", "newest first");
    let body: Value = get("since=1h").await.json().await.unwrap();
    assert_eq!(body["signals"].as_array().unwrap().len(), 6);
    let body: Value = get("since=2999-01-01T00:00:00Z").await.json().await.unwrap();
    assert!(body["signals"].as_array().unwrap().is_empty());

    for bad in ["limit=0", "limit=5000", "since=whenever", "source=NOPE", "limit=abc", "colour=red"] {
        let (status, code, _) = error_of(get(bad).await).await;
        assert_eq!((status, code.as_str()), (422, "invalid_request"), "{bad}");
    }
}

#[tokio::test]
async fn signals_work_the_same_on_postgres() {
    let url = loopgate_engine::testing::fresh_postgres_database().await;
    let app = spawn_app_with(|c| c.storage.url = url).await;
    let first = app.post_signal(telegram_message(1, "on postgres")).await;
    assert_eq!(first.status(), 201);
    let again = app.post_signal(telegram_message(1, "on postgres")).await;
    assert_eq!(again.status(), 200);
    let ready: Value = app.client.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["database"]["backend"], "postgres");
    assert_eq!(app.signals().await.len(), 1);
    app.shutdown().await;
}
