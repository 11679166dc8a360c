//! Benchmark of the Discord channel against the real release binary on loopback, with the
//! fake Discord of the end-to-end tests (REST and gateway websocket) in this process:
//!
//! - the time from an `INTERACTION_CREATE` leaving the fake gateway to the interaction
//!   response arriving at the fake's callback endpoint, one press at a time (low load).
//!   It includes the websocket hop in and the REST hop out, so it bounds from above the
//!   time loopgate itself takes.
//!
//! The press is Snooze on an open suggestion: it is authorized, the suggestion is read
//! from the database and rendered with the preset buttons (a type 7 update), and nothing
//! is decided, so it can be pressed any number of times.
//!
//! - the resident memory of the process afterwards, with the gateway session open.
//!
//! Run: `cargo bench -p loopgate --bench discord` (options: `-- --presses 2000`).

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[allow(dead_code)]
#[path = "../../tests/e2e/fake_discord.rs"]
mod fake_discord;
mod support;

use fake_discord::{BOT_TOKEN, FakeDiscord, user_json};
use support::{arg, free_port, percentile, spawn_loopgate, wait_until_up};

const OWNER: u64 = 80_351_110_224_678_912;

fn spawn(dir: &Path, port: u16, api_base: &str) -> Child {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\
         [storage]\nurl = \"sqlite://{d}/loopgate.db\"\ndata_dir = \"{d}/data\"\n[log]\nlevel = \"warn\"\n\
         [owner]\ndiscord_user_ids = [{OWNER}]\n[heartbeat]\ninterval = \"1h\"\n\
         [discord]\ntoken_env = \"BENCH_DISCORD_TOKEN\"\napi_base = \"{api_base}\"\n",
        d = dir.display()
    );
    spawn_loopgate(dir, &config, &[("BENCH_DISCORD_TOKEN", BOT_TOKEN)])
}

fn main() {
    let presses = arg("--presses", 2000) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let fake = runtime.block_on(FakeDiscord::start());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn(dir.path(), port, &fake.url);

    runtime.block_on(async {
        let (client, base) = wait_until_up(port).await;
        fake.wait_for("the gateway session", |f| (f.identifies() >= 1).then_some(())).await;

        // One active suggestion, posted to the owner's DM, to press Snooze on.
        let asked = chrono::Utc::now() - chrono::Duration::hours(5);
        let question = json!({"source": "discord", "kind": "message", "external_id": "q1",
            "actor": {"id": "77", "name": "Dana"}, "conversation": {"id": "77"},
            "text": "Could you send me the contract by Friday?", "occurred_at": asked});
        client.post(format!("{base}/api/signals")).json(&question).send().await.unwrap();
        client.post(format!("{base}/api/pulse")).json(&json!({})).send().await.unwrap();
        let listed: Value =
            client.get(format!("{base}/api/suggestions?state=active")).send().await.unwrap().json().await.unwrap();
        let id = listed["suggestions"][0]["id"].as_i64().expect("a suggestion to press on");
        let message = fake.posted(&format!("s:{id}:act")).await;

        let owner = user_json(OWNER, "Owner");
        let mut latencies = Vec::with_capacity(presses);
        for n in 0..presses + 100 {
            let sent = Instant::now();
            let interaction = fake.press(&owner, &message, &format!("s:{id}:snooze"));
            let answered = tokio::time::timeout(Duration::from_secs(3), fake.callback_arrival(&interaction))
                .await
                .expect("a response within Discord's 3 s");
            let response = fake.callback(&interaction).unwrap();
            assert_eq!(response["type"], 7, "{response}");
            if n >= 100 {
                latencies.push((answered - sent).as_nanos() as u64);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.sort_unstable();
        println!(
            "loopgate Discord benchmark ({} cores, release build)",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "INTERACTION_CREATE out of the gateway to the interaction response in, {presses} presses one at a time: \
             p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.9),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
        );
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    if let Some(rss) = status.lines().find(|l| l.starts_with("VmRSS:")) {
        println!(
            "loopgate resident memory after the run, gateway session open: {}",
            rss.trim_start_matches("VmRSS:").trim()
        );
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}
