//! What the owner's model was asked and what it cost: one row per call, summed per (UTC)
//! day for the daily token budget.

use sqlx::{Acquire, Connection};

use super::{Pools, Store, StoreError};
use crate::clock::to_millis;

/// One call to the model, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCall<'a> {
    pub purpose: &'a str,
    pub model: &'a str,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// `ok`, `failed`, `over_budget`.
    pub outcome: &'a str,
    pub error: Option<&'a str>,
}

macro_rules! model_sql {
    (mod $module:ident; db = $db:ty;) => {
        pub(crate) mod $module {
            use sqlx::QueryBuilder;

            type Conn = <$db as sqlx::Database>::Connection;

            pub(crate) async fn insert(
                conn: &mut Conn,
                call: &super::ModelCall<'_>,
                at: i64,
                day: &str,
            ) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO model_calls (at, day, purpose, model, input_tokens, output_tokens, outcome, error) VALUES (",
                );
                let tokens = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                q.separated(", ")
                    .push_bind(at)
                    .push_bind(day.to_owned())
                    .push_bind(call.purpose.to_owned())
                    .push_bind(call.model.to_owned())
                    .push_bind(tokens(call.input_tokens))
                    .push_bind(tokens(call.output_tokens))
                    .push_bind(call.outcome.to_owned())
                    .push_bind(call.error.map(str::to_owned));
                q.push(")");
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            pub(crate) async fn tokens_on(conn: &mut Conn, day: &str) -> Result<(i64, i64), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "SELECT CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT), COUNT(*) FROM model_calls WHERE day = ",
                );
                q.push_bind(day.to_owned());
                q.build_query_as::<(i64, i64)>().fetch_one(&mut *conn).await
            }
        }
    };
}

model_sql! { mod sqlite; db = sqlx::Sqlite; }
model_sql! { mod postgres; db = sqlx::Postgres; }

/// Tokens used and calls made on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DayUsage {
    pub tokens: u64,
    pub calls: u64,
}

impl Store {
    /// Records a call; its day is today in UTC on the store's clock.
    pub async fn record_model_call(&self, call: &ModelCall<'_>) -> Result<(), StoreError> {
        let now = self.clock().now();
        let day = now.format("%Y-%m-%d").to_string();
        let at = to_millis(now);
        match &self.inner.pools {
            Pools::Sqlite { write, .. } => {
                let mut conn = write.acquire().await?;
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                sqlite::insert(&mut tx, call, at, &day).await?;
                tx.commit().await?;
            }
            Pools::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                let mut tx = conn.begin().await?;
                postgres::insert(&mut tx, call, at, &day).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// What today (UTC, on the store's clock) has used so far.
    pub async fn model_usage_today(&self) -> Result<DayUsage, StoreError> {
        let day = self.clock().now().format("%Y-%m-%d").to_string();
        let (tokens, calls) = match &self.inner.pools {
            Pools::Sqlite { read, .. } => sqlite::tokens_on(&mut *read.acquire().await?, &day).await?,
            Pools::Postgres(pool) => postgres::tokens_on(&mut *pool.acquire().await?, &day).await?,
        };
        Ok(DayUsage { tokens: u64::try_from(tokens).unwrap_or(0), calls: u64::try_from(calls).unwrap_or(0) })
    }
}
