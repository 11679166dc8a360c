//! The single writer task: group commit for the ledger.
//!
//! Every write job waits in one queue. The writer takes the first, then everything else
//! already waiting (up to [`MAX_BATCH`] deliveries), writes them in one transaction and
//! answers each job after the commit. Under load this turns N commits into one; idle, a
//! lone request is committed at once.

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use sqlx::{Acquire, Connection};
use tokio::sync::{mpsc, oneshot};

use super::plan::Prepared;
use super::{IngestOutcome, MAX_BATCH, Pools, StoreError, SweepReport, sql};

pub(crate) enum Job {
    Ingest { items: Vec<Prepared>, reply: oneshot::Sender<Result<Vec<IngestOutcome>, StoreError>> },
    Sweep { now: DateTime<Utc>, receipts: Duration, reply: oneshot::Sender<Result<SweepReport, StoreError>> },
    /// Answered once every job queued before it is done; the writer then stops.
    Shutdown { reply: oneshot::Sender<()> },
}

type IngestReply = oneshot::Sender<Result<Vec<IngestOutcome>, StoreError>>;

pub(crate) async fn run(pools: Pools, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut batch: Vec<(Vec<Prepared>, IngestReply)> = Vec::new();
        let mut size = 0;
        let mut next = Some(first);
        // A non-ingest job ends the batch and runs after it, keeping queue order.
        let mut after_batch = None;
        while let Some(job) = next.take() {
            match job {
                Job::Ingest { items, reply } => {
                    size += items.len();
                    batch.push((items, reply));
                }
                other => {
                    after_batch = Some(other);
                    break;
                }
            }
            if size >= MAX_BATCH {
                break;
            }
            next = jobs.try_recv().ok();
        }
        if !batch.is_empty() {
            commit_batch(&pools, batch, size).await;
        }
        match after_batch {
            None | Some(Job::Ingest { .. }) => {}
            Some(Job::Sweep { now, receipts, reply }) => {
                let _ = reply.send(sweep(&pools, now, receipts).await);
            }
            Some(Job::Shutdown { reply }) => {
                let _ = reply.send(());
                return;
            }
        }
    }
}

async fn commit_batch(pools: &Pools, batch: Vec<(Vec<Prepared>, IngestReply)>, size: usize) {
    let started = Instant::now();
    let mut items = Vec::with_capacity(size);
    let mut replies = Vec::with_capacity(batch.len());
    for (job_items, reply) in batch {
        replies.push((job_items.len(), reply));
        items.extend(job_items);
    }
    let result = write(pools, &items).await;
    metrics::histogram!("loopgate_store_batch_size").record(items.len() as f64);
    metrics::histogram!("loopgate_store_commit_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for (len, reply) in replies {
                let _ = reply.send(Ok(outcomes.by_ref().take(len).collect()));
            }
        }
        Err(error) => {
            tracing::error!(%error, deliveries = items.len(), "ledger commit failed");
            for (_, reply) in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

async fn write(pools: &Pools, items: &[Prepared]) -> Result<Vec<IngestOutcome>, StoreError> {
    match pools {
        Pools::Sqlite { write, .. } => {
            let mut conn = write.acquire().await?;
            // IMMEDIATE takes the write lock up front, so reading MAX(seq) and writing
            // happen under one lock even if another process (the CLI) writes too.
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            let outcomes = sql::sqlite::write_batch(&mut tx, items).await?;
            tx.commit().await?;
            Ok(outcomes)
        }
        Pools::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            let mut tx = conn.begin().await?;
            let outcomes = sql::postgres::write_batch(&mut tx, items).await?;
            tx.commit().await?;
            Ok(outcomes)
        }
    }
}

async fn sweep(pools: &Pools, now: DateTime<Utc>, receipts: Duration) -> Result<SweepReport, StoreError> {
    let report = match pools {
        Pools::Sqlite { write, .. } => {
            let mut conn = write.acquire().await?;
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            let report = sql::sqlite::sweep(&mut tx, now, receipts).await?;
            tx.commit().await?;
            report
        }
        Pools::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let report = sql::postgres::sweep(&mut tx, now, receipts).await?;
            tx.commit().await?;
            report
        }
    };
    if report.signals + report.receipts > 0 {
        tracing::info!(signals = report.signals, receipts = report.receipts, "swept expired ledger rows");
    }
    Ok(report)
}

/// Moves committed WAL pages into the database file from outside the commit path, so no
/// caller waits behind a checkpoint (auto-checkpointing is off on these connections).
pub(crate) async fn checkpoint_sqlite(read: sqlx::SqlitePool) {
    let mut tick = tokio::time::interval(StdDuration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&read).await {
            tracing::warn!(%error, "wal checkpoint failed");
        }
    }
}
