//! Learning that follows its owner, measured: simulated owners (by person, by class, by
//! time of day, and one who answers against their own wishes one time in ten) answer
//! loopgate's suggestions through the real engine on SQLite, first while loopgate learns
//! them, then after they change their mind. For each phase: precision (of the suggestions
//! surfaced, the share the owner wants) and recall (of what the owner wants, the share
//! surfaced) over the last 10 rounds, once the phase has had 50 answers.
//!
//! Run: `cargo bench -p loopgate-engine --bench learning`. Deterministic: a manual clock and
//! a seeded coin, so every run prints the same figures.

#[path = "../tests/store/owner_sim.rs"]
mod owner_sim;

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use loopgate_engine::{ManualClock, Store, StoreConfig};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        println!("loopgate learning benchmark: simulated owners, real engine, SQLite, 50 answers per phase");
        let mut worst: f64 = 1.0;
        for persona in owner_sim::Persona::ALL {
            let dir = tempfile::tempdir().unwrap();
            let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap());
            let config = StoreConfig::new(format!("sqlite://{}/learning.db", dir.path().display()));
            let store = Store::open(&config, Arc::new(clock.clone())).await.unwrap();
            let started = Instant::now();
            let report = owner_sim::run(persona, &store, &clock, dir.path()).await;
            owner_sim::print(&report);
            for line in &report.explanations {
                println!("    {line}");
            }
            println!("    ({:.1} s)", started.elapsed().as_secs_f64());
            for p in &report.phases {
                worst = worst.min(p.precision).min(p.recall);
            }
            store.close().await;
        }
        println!("worst precision or recall over every persona and phase: {worst:.2} (target 0.80)");
    });
}
