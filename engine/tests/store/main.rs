//! The store conformance suite: every test runs once on SQLite and once on PostgreSQL.

mod intelligence;
mod learning;
mod ledger;
mod memory;
mod outbox;
pub mod owner_sim;
mod pairing;
mod tasks;

use std::future::Future;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use loopgate_engine::{ManualClock, Retention, Store, StoreConfig};

/// A store on a fresh database plus the clock it reads, and what keeps the database alive.
pub struct Harness {
    pub store: Store,
    pub clock: ManualClock,
    pub config: StoreConfig,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    /// The time on the harness's clock.
    pub fn clock_now(&self) -> chrono::DateTime<Utc> {
        use loopgate_engine::Clock;
        self.clock.now()
    }

    /// Closes and reopens the same database, as a restart would.
    pub async fn reopen(&mut self) {
        self.store.close().await;
        self.store = Store::open(&self.config, Arc::new(self.clock.clone())).await.expect("reopen store");
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub async fn harness(db: Db, retention: Retention) -> Harness {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap());
    let (url, dir) = match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            (format!("sqlite://{}/ledger.db", dir.path().display()), Some(dir))
        }
        Db::Postgres => (loopgate_engine::testing::fresh_postgres_database().await, None),
    };
    let mut config = StoreConfig::new(url);
    config.retention = retention;
    let store = Store::open(&config, Arc::new(clock.clone())).await.expect("open store");
    Harness { store, clock, config, _dir: dir }
}

/// Declares one conformance test for both backends.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::run($crate::Db::Sqlite, super::$name).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::run($crate::Db::Postgres, super::$name).await
                }
            )*
        }
    };
}

pub async fn run<F, Fut>(db: Db, test: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    test(db).await
}
