//! `/api/memory` and `loopgate memory`: the owner adds, finds and forgets memories.

use serde_json::{Value, json};

use crate::helpers::{run_cli, spawn_app, spawn_app_with, write_config};

#[tokio::test]
async fn add_search_get_and_forget() {
    let app = spawn_app().await;
    let add = |body: Value| {
        let (client, url) = (app.client.clone(), app.url("/api/memory"));
        async move { client.post(url).json(&body).send().await.unwrap() }
    };
    let created = add(json!({"kind": "constraint", "content": "Never book meetings before 10:00"})).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["outcome"], "created");
    assert_eq!(created["memory"]["origin"], "owner");
    assert_eq!(created["memory"]["trust"], "trusted");
    let id = created["memory"]["id"].as_i64().unwrap();

    let again = add(json!({"kind": "constraint", "content": "never book MEETINGS before 10:00"})).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!((again["outcome"].as_str(), again["memory"]["id"].as_i64()), (Some("reinforced"), Some(id)));
    assert_eq!(again["memory"]["stability"], 2);

    add(json!({"kind": "preference", "content": "Likes meetings on Tuesdays", "subject": "meeting-day"})).await;
    let found: Value = app.client.get(app.url("/api/memory?q=meetings")).send().await.unwrap().json().await.unwrap();
    assert_eq!(found["memories"].as_array().unwrap().len(), 2);
    let found: Value =
        app.client.get(app.url("/api/memory?q=meetings&kind=constraint")).send().await.unwrap().json().await.unwrap();
    assert_eq!(found["memories"].as_array().unwrap().len(), 1);
    assert_eq!(found["memories"][0]["id"], id);
    assert!(found["memories"][0]["score"].as_f64().unwrap() > 0.0);

    let one: Value = app.client.get(app.url(&format!("/api/memory/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(one["content"], "Never book meetings before 10:00");

    assert_eq!(app.client.delete(app.url(&format!("/api/memory/{id}"))).send().await.unwrap().status(), 204);
    assert_eq!(app.client.delete(app.url(&format!("/api/memory/{id}"))).send().await.unwrap().status(), 404);
    assert_eq!(app.client.get(app.url(&format!("/api/memory/{id}"))).send().await.unwrap().status(), 404);
    let found: Value =
        app.client.get(app.url("/api/memory?q=meetings&kind=constraint")).send().await.unwrap().json().await.unwrap();
    assert!(found["memories"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn bad_memory_requests_are_refused_and_change_nothing() {
    let app = spawn_app_with(|c| c.server.api_token_env = Some("TEST_API_TOKEN".into())).await;
    let cases = [
        (json!({"kind": "hobby", "content": "x"}), 422, "hobby"),
        (json!({"kind": "preference"}), 422, "content"),
        (json!({"kind": "preference", "content": "   "}), 422, "content"),
        (json!({"kind": "preference", "content": "x", "confidence": 0.1}), 422, "confidence"),
        (json!({"kind": "preference", "content": "x".repeat(5000)}), 422, "content"),
    ];
    for (body, status, needle) in cases {
        let response = app.client.post(app.url("/api/memory")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains(needle), "{error}");
    }
    for query in ["kind=hobby", "limit=0", "limit=1000", "colour=red"] {
        let response = app.client.get(app.url(&format!("/api/memory?{query}"))).send().await.unwrap();
        assert_eq!(response.status(), 422, "{query}");
    }
    assert_eq!(app.client.delete(app.url("/api/memory/abc")).send().await.unwrap().status(), 404);
    let anonymous = crate::helpers::anonymous_client();
    let response = anonymous
        .post(app.url("/api/memory"))
        .json(&json!({"kind": "preference", "content": "sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(anonymous.delete(app.url("/api/memory/1")).send().await.unwrap().status(), 401);

    let all: Value = app.client.get(app.url("/api/memory")).send().await.unwrap().json().await.unwrap();
    assert!(all["memories"].as_array().unwrap().is_empty());
}

#[test]
fn memory_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let (code, stdout, stderr) =
        run_cli(&config, &["memory", "add", "--kind", "watch_item", "Flight", "LH400", "status"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "memory 1 added");
    let (code, stdout, _) = run_cli(&config, &["memory", "search", "lh400"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("watch_item") && stdout.contains("Flight LH400 status"), "{stdout}");
    let (code, stdout, _) = run_cli(&config, &["memory", "search", "--json"], &[]);
    assert_eq!(code, 0);
    let hit: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(hit["kind"], "watch_item");
    let (code, stdout, _) = run_cli(&config, &["memory", "forget", "1"], &[]);
    assert_eq!((code, stdout.trim()), (0, "memory 1 forgotten"));
    let (code, _, stderr) = run_cli(&config, &["memory", "forget", "1"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("there is no memory 1"), "{stderr}");
    let (code, stdout, _) = run_cli(&config, &["memory", "search", "lh400"], &[]);
    assert_eq!((code, stdout.trim()), (0, "no memories found"));
    let (code, _, stderr) = run_cli(&config, &["memory", "add", "--kind", "hobby", "x"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("hobby"), "{stderr}");
}
