//! The ledger's write path without HTTP: N concurrent callers of `Store::ingest` on a
//! fresh SQLite database, group commit doing the batching.
//!
//! Run: `cargo bench -p loopgate-engine --bench ledger` (options: `-- --callers 32 --seconds 5`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use loopgate_engine::{Actor, Conversation, NewSignal, SignalKind, Source, Store, StoreConfig, SystemClock};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let callers = arg("--callers", 32) as usize;
    let seconds = arg("--seconds", 5);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(format!("sqlite://{}/ledger.db", dir.path().display()));
        let store = Store::open(&config, Arc::new(SystemClock)).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for caller in 0..callers {
            let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let mut s = NewSignal::new(
                        Source::parse("bench").unwrap(),
                        SignalKind::parse("message").unwrap(),
                        format!("benchmark message {n} from caller {caller}: please review the quarterly report draft"),
                    );
                    s.external_id = Some(format!("c{caller}-{n}"));
                    s.actor = Some(Actor { id: format!("user-{caller}"), name: Some("Bench".into()), is_owner: false });
                    s.conversation = Some(Conversation {
                        id: format!("chat-{caller}"),
                        title: None,
                        thread_id: None,
                        reply_to: None,
                    });
                    store.ingest(s).await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (start_count, started) = (done.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let count = done.load(Ordering::Relaxed) - start_count;
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        println!(
            "ledger ingest, {callers} concurrent callers, SQLite: {:.0} signals/s",
            count as f64 / elapsed.as_secs_f64()
        );
        store.close().await;
    });
}
