//! The heartbeat and reflection over a large ledger: 1,000,000 signals, then pulses that
//! each find 100 new ones, and reflections over the 1,000 most recent.
//!
//! Run: `cargo bench -p loopgate-engine --bench intelligence` (options: `-- --signals N
//! --pulses N --reflections N`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use loopgate_engine::heartbeat::Rules;
use loopgate_engine::intelligence::{Intelligence, Settings};
use loopgate_engine::{
    Actor, Conversation, NewSignal, SignalKind, SignalQuery, Source, Store, StoreConfig, SystemClock,
};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A day of chat in miniature: questions to the owner, the owner's reminders and promises,
/// and plenty of talk that needs nothing.
fn signal(n: u64) -> NewSignal {
    let person = format!("p{}", n % 500);
    let (who, owner, text) = match n % 10 {
        0 => (person.clone(), false, format!("could you review draft {n} before friday?")),
        1 => ("me".to_owned(), true, format!("remind me to send invoice {n} tomorrow at 9")),
        2 => ("me".to_owned(), true, format!("I'll send you the numbers for {n} by Monday")),
        3 => (person.clone(), false, format!("any update on ticket {n}")),
        _ => (person.clone(), false, format!("thanks, that works for me ({n}) see you later")),
    };
    let mut signal = NewSignal::new(Source::parse("telegram").unwrap(), SignalKind::parse("message").unwrap(), text);
    signal.external_id = Some(format!("u{n}"));
    signal.actor = Some(Actor { id: who, name: None, is_owner: owner });
    signal.conversation = Some(Conversation { id: person, title: None, thread_id: None, reply_to: None });
    signal
}

async fn load(store: &Store, from: u64, count: u64) {
    let mut tasks = Vec::new();
    let per_task = count.div_ceil(8);
    for t in 0..8 {
        let store = store.clone();
        let start = from + t * per_task;
        let end = (start + per_task).min(from + count);
        tasks.push(tokio::spawn(async move {
            let mut n = start;
            while n < end {
                let batch: Vec<NewSignal> = (n..(n + 256).min(end)).map(signal).collect();
                n += batch.len() as u64;
                store.ingest_many(batch).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    format!("p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms", pct(0.5), pct(0.9), pct(0.99), pct(1.0))
}

fn main() {
    let signals = arg("--signals", 1_000_000);
    let pulses = arg("--pulses", 100) as usize;
    let reflections = arg("--reflections", 50) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(format!("sqlite://{}/bench.db", dir.path().display()));
        let store = Store::open(&config, Arc::new(SystemClock)).await.unwrap();
        let started = Instant::now();
        load(&store, 0, signals).await;
        let loaded = started.elapsed();

        let rules = Rules {
            cooldown: chrono::Duration::hours(1),
            cooldown_after_failure: chrono::Duration::minutes(5),
            daily_budget: 1000,
            actionable_threshold: 3,
            timezone: chrono_tz::UTC,
            quiet_hours: None,
        };
        let mut settings = Settings::new(rules, dir.path().join("data"));
        settings.max_active = 1_000_000;
        let intel = Intelligence::new(store.clone(), settings);
        // The heartbeat has seen the ledger so far, as a running one would have.
        let newest = store.list_signals(&SignalQuery { limit: 1, ..SignalQuery::default() }).await.unwrap();
        let mut state = store.heartbeat_state().await.unwrap();
        state.cursor = newest[0].seq;
        store.save_heartbeat(&state).await.unwrap();

        // Reflections by hand, each after 100 new signals: evidence is the newest 1,000.
        let mut next = signals;
        let mut reflect_times = Vec::new();
        let mut created = 0;
        for _ in 0..reflections {
            load(&store, next, 100).await;
            next += 100;
            let t = Instant::now();
            let report = intel.pulse(true).await.unwrap();
            reflect_times.push(t.elapsed());
            created += report.created.len();
        }

        // Timed pulses, each finding 100 new signals; the last reflection's cooldown keeps
        // them from reflecting, so this is the heartbeat's own cost.
        let mut pulse_times = Vec::new();
        let mut settled_times = Vec::new();
        let mut outcomes = std::collections::BTreeMap::new();
        for i in 0..pulses * 2 {
            load(&store, next, 100).await;
            next += 100;
            // Half the pulses come right on the heels of the burst that wrote the 100
            // signals; the other half once the store has checkpointed and truncated its
            // WAL after the burst (two checkpoint ticks), as a timer's pulse minutes apart
            // would find it.
            let settled = i % 2 == 1;
            if settled {
                tokio::time::sleep(Duration::from_millis(750)).await;
            }
            let t = Instant::now();
            let report = intel.pulse(false).await.unwrap();
            if settled {
                settled_times.push(t.elapsed())
            } else {
                pulse_times.push(t.elapsed())
            }
            assert_eq!(report.read, 100);
            let name = serde_json::to_value(&report.outcome).unwrap()["outcome"].as_str().unwrap().to_owned();
            *outcomes.entry(name).or_insert(0) += 1;
        }

        println!("heartbeat and reflection over a ledger of {signals} signals (SQLite)");
        println!("load: {:.1} s ({:.0} signals/s)", loaded.as_secs_f64(), signals as f64 / loaded.as_secs_f64());
        println!("pulses reading 100 new signals, outcomes {outcomes:?}");
        println!("  {pulses} right after the 100 were written: {}", percentiles(pulse_times));
        println!("  {pulses} once the writes settled: {}", percentiles(settled_times));
        println!(
            "reflection over the 1,000 most recent signals, {reflections} runs ({created} suggestions created, \
             artifacts written): {}",
            percentiles(reflect_times)
        );
        store.close().await;
    });
}
