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
    Ingest {
        items: Vec<Prepared>,
        reply: oneshot::Sender<Result<Vec<IngestOutcome>, StoreError>>,
    },
    Sweep {
        now: DateTime<Utc>,
        receipts: Duration,
        reply: oneshot::Sender<Result<SweepReport, StoreError>>,
    },
    /// Finish a checkpoint the background checkpointer began (SQLite only).
    Checkpoint,
    /// Answered once every job queued before it is done; the writer then stops.
    Shutdown {
        reply: oneshot::Sender<()>,
    },
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
            Some(Job::Checkpoint) => finish_checkpoint(&pools).await,
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

/// Keeps the WAL small without making commits wait for checkpoints.
///
/// SQLite restarts the WAL from its beginning only after a checkpoint has copied every
/// frame; a checkpoint running beside a writer that never pauses never gets there, and the
/// WAL (and the cost of extending it on every commit) grows without bound. Checkpointing
/// inside the writer instead stalls every caller for the fsync of everything written since
/// the last one (about 20 ms under load). So the work is split: this task, on its own
/// connection, syncs the WAL and copies the bulk of the pages while the writer goes on;
/// then it asks the writer to copy the few frames written meanwhile, which takes about a
/// millisecond and lets the next commit start the WAL afresh.
pub(crate) async fn checkpoint_sqlite(read: sqlx::SqlitePool, jobs: mpsc::Sender<Job>) {
    let mut tick = tokio::time::interval(StdDuration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut passes: u32 = 0;
    let mut last_frames = 0;
    loop {
        tick.tick().await;
        let frames = match converge(&read).await {
            Ok(frames) => frames,
            Err(error) => {
                tracing::warn!(%error, "wal checkpoint failed");
                continue;
            }
        };
        if frames == 0 {
            // Nothing written since the WAL last restarted.
        } else if frames == last_frames {
            // Quiet for a whole tick after writes: TRUNCATE briefly waits for the idle
            // writer, copies the rest and gives the burst's disk space back.
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&read).await {
                tracing::warn!(%error, "wal truncation failed");
            }
        } else {
            passes += 1;
            // The writer's share is a short stall for every caller waiting on it, so it
            // is asked for once a second; meanwhile the background keeps the bulk copied.
            if passes.is_multiple_of(4)
                && let Err(mpsc::error::TrySendError::Closed(_)) = jobs.try_send(Job::Checkpoint)
            {
                return;
            }
        }
        last_frames = frames;
    }
}

/// Checkpoints until a pass finds few new frames, so the writer's share stays small.
/// Returns the number of frames in the WAL.
async fn converge(read: &sqlx::SqlitePool) -> Result<i64, sqlx::Error> {
    /// Frames the writer may be left with; ~250 pages copy and sync in a few milliseconds.
    const SMALL_REMAINDER: i64 = 256;
    let mut previous = 0;
    let mut frames = 0;
    for _ in 0..6 {
        let started = Instant::now();
        // Columns: busy, frames in the WAL, frames copied so far.
        (_, frames, _) = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(read).await?;
        metrics::histogram!("loopgate_store_checkpoint_seconds", "by" => "background")
            .record(started.elapsed().as_secs_f64());
        // A pass copies what was there when it began; what came meanwhile is the next
        // pass's work. Stop once that is small.
        if frames - previous < SMALL_REMAINDER {
            break;
        }
        previous = frames;
    }
    Ok(frames)
}

async fn finish_checkpoint(pools: &Pools) {
    let Pools::Sqlite { write, .. } = pools else { return };
    let started = Instant::now();
    if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(write).await {
        tracing::warn!(%error, "wal checkpoint failed");
    }
    metrics::histogram!("loopgate_store_checkpoint_seconds", "by" => "writer").record(started.elapsed().as_secs_f64());
}
