//! Memory search over a large memory: N memories of varied wording, then timed searches of
//! one and two words (common and rare), some filtered by kind.
//!
//! Run: `cargo bench -p loopgate-engine --bench memory` (options: `-- --memories 100000 --searches 2000`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use loopgate_engine::{MemoryCandidate, MemoryKind, MemoryQuery, Origin, Store, StoreConfig, SystemClock, Trust};

const WORDS: &[&str] = &[
    "meeting",
    "email",
    "invoice",
    "report",
    "review",
    "call",
    "deploy",
    "release",
    "budget",
    "contract",
    "dentist",
    "flight",
    "hotel",
    "dinner",
    "lunch",
    "standup",
    "client",
    "project",
    "deadline",
    "draft",
    "slides",
    "design",
    "payment",
    "renewal",
    "insurance",
    "doctor",
    "school",
    "birthday",
    "gift",
    "weekend",
    "morning",
    "afternoon",
    "evening",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "quarterly",
    "numbers",
    "roadmap",
    "hiring",
    "interview",
    "offer",
    "backup",
    "server",
    "database",
    "migration",
    "security",
    "audit",
    "vendor",
    "shipping",
    "order",
    "refund",
    "subscription",
    "newsletter",
    "reminder",
    "groceries",
    "gym",
    "run",
    "book",
    "podcast",
];

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A deterministic pseudo-random sequence, so every run searches the same memory.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Skewed towards the first words, as real vocabularies are.
    fn word(&mut self) -> &'static str {
        let a = self.next() as usize % WORDS.len();
        let b = self.next() as usize % WORDS.len();
        WORDS[a.min(b)]
    }
}

fn main() {
    let memories = arg("--memories", 100_000) as usize;
    let searches = arg("--searches", 2_000) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(format!("sqlite://{}/memory.db", dir.path().display()));
        let store = Store::open(&config, Arc::new(SystemClock)).await.unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let started = Instant::now();
        for n in 0..memories {
            let words: Vec<&str> = (0..6 + rng.next() % 8).map(|_| rng.word()).collect();
            let candidate = MemoryCandidate {
                kind: MemoryKind::ALL[n % MemoryKind::ALL.len()],
                subject: String::new(),
                content: format!("{} with person{} ref {n}", words.join(" "), rng.next() % 5000),
                confidence: 0.2 + (rng.next() % 80) as f64 / 100.0,
                origin: Origin::Reflection,
                trust: Trust::Trusted,
                evidence: vec![],
            };
            store.remember(candidate).await.unwrap();
        }
        let load = started.elapsed();

        let mut samples = Vec::with_capacity(searches);
        let mut by_shape: Vec<Vec<Duration>> = vec![Vec::new(); 8];
        let mut results = 0usize;
        for i in 0..searches {
            let text = match i % 4 {
                0 => rng.word().to_owned(),
                1 => format!("{} {}", rng.word(), rng.word()),
                2 => format!("person{}", rng.next() % 5000),
                _ => format!("{} person{}", rng.word(), rng.next() % 5000),
            };
            let kind = (i % 3 == 0).then(|| MemoryKind::ALL[i % MemoryKind::ALL.len()]);
            let query = MemoryQuery { text, kind, limit: 10 };
            let query = query.clone();
            let t = Instant::now();
            results += store.search_memories(&query).await.unwrap().len();
            samples.push(t.elapsed());
            by_shape[(i % 4) * 2 + usize::from(query.kind.is_some())].push(t.elapsed());
        }
        samples.sort();
        let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("memory search over {memories} memories (SQLite FTS5), {searches} searches, limit 10");
        println!(
            "load: {:.1} s ({:.0} memories/s through remember())",
            load.as_secs_f64(),
            memories as f64 / load.as_secs_f64()
        );
        println!(
            "latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({:.1} results per search)",
            ms(pct(0.5)),
            ms(pct(0.9)),
            ms(pct(0.99)),
            ms(*samples.last().unwrap()),
            results as f64 / searches as f64
        );
        let shapes = ["one word", "two words", "a rare word", "a word and a rare word"];
        for (index, mut times) in by_shape.into_iter().enumerate() {
            times.sort();
            let p99 = times[((times.len() - 1) as f64 * 0.99).round() as usize];
            let p50 = times[times.len() / 2];
            let filter = if index % 2 == 1 { ", by kind" } else { "" };
            println!("  {}{filter}: p50 {:.2} ms, p99 {:.2} ms", shapes[index / 2], ms(p50), ms(p99));
        }
        store.close().await;
    });
}
