//! Helpers for tests: a fresh PostgreSQL database per test.
//!
//! The test command (`scripts/test`) starts a throwaway PostgreSQL server and exports
//! `LOOPGATE_TEST_POSTGRES_URL` pointing at its maintenance database.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

pub const POSTGRES_URL_VAR: &str = "LOOPGATE_TEST_POSTGRES_URL";

/// Creates an empty database on the test server and returns its URL.
///
/// Panics when no server is configured: a PostgreSQL test that quietly passes without
/// PostgreSQL would prove nothing.
pub async fn fresh_postgres_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let admin = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!("{POSTGRES_URL_VAR} is not set: run the tests with scripts/test, which starts PostgreSQL")
    });
    let name = format!(
        "lg_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros()
    );
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let (base, _) = admin.rsplit_once('/').expect("postgres url has a database path");
    format!("{base}/{name}")
}
