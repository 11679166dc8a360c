//! A kill -9 at any moment loses nothing that was acknowledged (SPEC §9).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ServeProcess, write_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_keeps_every_acknowledged_signal() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = ServeProcess::start(&config);
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();

    // (external_id, id) of every 201 the server sent.
    let acknowledged: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..16 {
        let (client, base, acknowledged) = (client.clone(), server.base.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let external_id = format!("w{writer}-{n}");
                let body = json!({"source": "api", "kind": "event", "external_id": external_id, "text": format!("event {writer} {n}")});
                let Ok(response) = client.post(format!("{base}/api/signals")).json(&body).send().await else { return };
                if response.status() != 201 {
                    return;
                }
                let Ok(answer) = response.json::<Value>().await else { return };
                acknowledged.lock().unwrap().push((external_id, answer["id"].as_i64().unwrap()));
            }
        }));
    }
    // Let writes flow, then kill the server while requests are in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().unwrap().len() < 400 {
        assert!(tokio::time::Instant::now() < deadline, "the server acknowledged too little before the kill");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let server = ServeProcess::start(&config);
    for (external_id, id) in &acknowledged {
        let body = json!({"source": "api", "kind": "event", "external_id": external_id, "text": "resent"});
        let response = client.post(format!("{}/api/signals", server.base)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200, "{external_id} was acknowledged but is not in the ledger");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["id"], *id, "{external_id} maps to the id acknowledged before the crash");
        assert_eq!(answer["duplicate"], true);
    }
    assert_eq!(server.terminate(), 0, "SIGTERM is a clean exit");
}
