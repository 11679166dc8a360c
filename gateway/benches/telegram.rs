//! Benchmark of the Telegram channel against the real release binary on loopback, with a
//! fake Bot API in this process:
//!
//! - webhook updates per second into durable signals, next to `POST /api/signals` in the
//!   same run (same clients, same machine)
//! - the time from a button press reaching `/webhooks/telegram` to `answerCallbackQuery`
//!   reaching the Bot API, at low load (one press at a time)
//!
//! Run: `cargo bench -p loopgate --bench telegram` (options: `-- --clients 32 --seconds 5`).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use serde_json::{Value, json};

mod support;
use support::{Connection, arg, free_port, percentile, spawn_loopgate, wait_until_up};

const TOKEN: &str = "123456:BENCH-token";
const SECRET: &str = "bench-secret-0123456789";
const OWNER: i64 = 1001;

/// When each `answerCallbackQuery` arrived, by callback id.
type Answers = Arc<Mutex<HashMap<String, Instant>>>;

async fn fake_bot_api(
    State(answers): State<Answers>,
    UrlPath((_, method)): UrlPath<(String, String)>,
    body: String,
) -> Json<Value> {
    let arrived = Instant::now();
    let params: Value = serde_json::from_str(&body).unwrap_or(json!({}));
    let result = match method.to_ascii_lowercase().as_str() {
        "answercallbackquery" => {
            answers
                .lock()
                .unwrap()
                .insert(params["callback_query_id"].as_str().unwrap_or_default().to_owned(), arrived);
            json!(true)
        }
        "getwebhookinfo" => json!({"url": "", "pending_update_count": 0}),
        "sendmessage" | "editmessagetext" | "editmessagereplymarkup" => json!({
            "message_id": 1, "date": 0, "chat": {"id": OWNER, "type": "private", "first_name": "Owner"}, "text": "ok"
        }),
        _ => json!(true),
    };
    Json(json!({"ok": true, "result": result}))
}

fn secret_header() -> String {
    format!("X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\n")
}

fn spawn(dir: &Path, port: u16, api_url: &str) -> Child {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://bench.example.org\"\n\
         [storage]\nurl = \"sqlite://{d}/loopgate.db\"\ndata_dir = \"{d}/data\"\n[log]\nlevel = \"warn\"\n\
         [owner]\ntelegram_user_ids = [{OWNER}]\n[heartbeat]\ninterval = \"1h\"\n\
         [telegram]\ntoken_env = \"BENCH_TELEGRAM_TOKEN\"\napi_url = \"{api_url}\"\nmode = \"webhook\"\n\
         webhook_secret_env = \"BENCH_TELEGRAM_SECRET\"\n",
        d = dir.display()
    );
    spawn_loopgate(dir, &config, &[("BENCH_TELEGRAM_TOKEN", TOKEN), ("BENCH_TELEGRAM_SECRET", SECRET)])
}

fn main() {
    let clients = arg("--clients", 32) as usize;
    let seconds = arg("--seconds", 5);
    let presses = arg("--presses", 2000) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let answers: Answers = Arc::default();
    let api_url = runtime.block_on(async {
        let app = axum::Router::new().route("/{bot}/{method}", post(fake_bot_api)).with_state(answers.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn(dir.path(), port, &api_url);

    runtime.block_on(async {
        let (client, base) = wait_until_up(port).await;

        let webhook = throughput(port, clients, seconds, true).await;
        let api = throughput(port, clients, seconds, false).await;

        // One active suggestion to press buttons on.
        let asked = chrono::Utc::now() - chrono::Duration::hours(5);
        let question = json!({"source": "telegram", "kind": "message", "external_id": "q1",
            "actor": {"id": "77", "name": "Dana"}, "conversation": {"id": "77"},
            "text": "Could you send me the contract by Friday?", "occurred_at": asked});
        client.post(format!("{base}/api/signals")).json(&question).send().await.unwrap();
        client.post(format!("{base}/api/pulse")).json(&json!({})).send().await.unwrap();
        let listed: Value = client.get(format!("{base}/api/suggestions?state=active")).send().await.unwrap().json().await.unwrap();
        let id = listed["suggestions"][0]["id"].as_i64().expect("a suggestion to press on");

        let mut connection = Connection::open(port).await;
        let mut latencies = Vec::with_capacity(presses);
        for n in 0..presses + 100 {
            let callback_id = format!("bench-{n}");
            let update = json!({"update_id": 10_000_000 + n, "callback_query": {
                "id": callback_id, "from": {"id": OWNER, "is_bot": false, "first_name": "Owner"},
                "message": {"message_id": 1, "date": 0, "chat": {"id": OWNER, "type": "private", "first_name": "Owner"}, "text": "s"},
                "chat_instance": "1", "data": format!("s:{id}:snooze")}});
            let sent = Instant::now();
            assert_eq!(connection.post_json("/webhooks/telegram", &secret_header(), &update.to_string()).await, 200);
            let answered = answers.lock().unwrap().get(&callback_id).copied().expect("answered before the webhook returned");
            if n >= 100 {
                latencies.push((answered - sent).as_nanos() as u64);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.sort_unstable();
        println!("loopgate Telegram benchmark ({} cores, release build)", std::thread::available_parallelism().map_or(0, |n| n.get()));
        println!("POST /webhooks/telegram, {clients} clients, {seconds} s: {webhook:.0} updates/s into signals");
        println!("POST /api/signals,       {clients} clients, {seconds} s: {api:.0} signals/s");
        println!("webhook / API: {:.0} %", webhook / api * 100.0);
        println!(
            "button press to answerCallbackQuery, {presses} presses one at a time: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.9),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
        );
    });
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// Distinct messages from `clients` connections for `seconds` (after a one-second
/// warm-up); returns acknowledged per second.
async fn throughput(port: u16, clients: usize, seconds: u64, webhook: bool) -> f64 {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (measuring, stop, acknowledged) = (measuring.clone(), stop.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(port).await;
            let mut n: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let text = format!("benchmark message {n} from client {client}: please review the quarterly report draft before the meeting on Friday and reply with comments");
                let (path, body) = if webhook {
                    let id = (client as i64) * 100_000_000 + n;
                    let update = json!({"update_id": id, "message": {"message_id": n, "date": 1_763_800_000,
                        "from": {"id": 5000 + client, "is_bot": false, "first_name": "Bench"},
                        "chat": {"id": 5000 + client, "type": "private", "first_name": "Bench"}, "text": text}});
                    ("/webhooks/telegram", update.to_string())
                } else {
                    let signal = json!({"source": "bench", "kind": "message", "external_id": format!("c{client}-{n}"),
                        "actor": {"id": format!("user-{client}"), "name": "Bench"}, "conversation": format!("chat-{client}"), "text": text});
                    ("/api/signals", signal.to_string())
                };
                let headers = if webhook { secret_header() } else { String::new() };
                let status = connection.post_json(path, &headers, &body).await;
                assert!(status == 200 || status == 201, "{path}: {status}");
                if measuring.load(Ordering::Relaxed) {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    acknowledged.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}
