//! Health, readiness, metrics, unknown routes and graceful shutdown.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health: Value = app.client.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let ready: Value = response.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"], json!({"ok": true, "backend": "sqlite"}));
    assert_eq!(ready["channels"], json!([]));
}

#[tokio::test]
async fn readiness_fails_once_the_database_is_gone() {
    let app = spawn_app().await;
    app.store.close().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let ready: Value = response.json().await.unwrap();
    assert_eq!(ready["status"], "unready");
    assert_eq!(ready["database"]["ok"], false);
    // And a write now is refused with a retryable answer, not lost silently.
    let response = app.post_signal(json!({"source": "api", "kind": "message", "text": "late"})).await;
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn metrics_count_requests_and_signals() {
    let app = spawn_app().await;
    app.post_signal(json!({"source": "api", "kind": "message", "text": "counted"})).await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("loopgate_http_requests_total"), "{text}");
    assert!(text.contains(r#"route="/api/signals""#), "{text}");
    assert!(text.contains("loopgate_signals_ingested_total"), "{text}");
    assert!(text.contains("loopgate_store_commit_seconds_bucket"), "{text}");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let response = app.client.delete(app.url("/api/signals")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn graceful_shutdown_keeps_every_acknowledged_signal() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..20 {
        let body: Value = app
            .post_signal(
                json!({"source": "api", "kind": "event", "external_id": n.to_string(), "text": format!("e{n}")}),
            )
            .await
            .json()
            .await
            .unwrap();
        ids.push(body["id"].as_i64().unwrap());
    }
    let url = app.store_url();
    let _dir = app.shutdown().await;
    let store = loopgate_engine::Store::open(
        &loopgate_engine::StoreConfig::new(url),
        std::sync::Arc::new(loopgate_engine::SystemClock),
    )
    .await
    .unwrap();
    for id in ids {
        assert!(store.get_signal(id).await.unwrap().is_some());
    }
    store.close().await;
}
