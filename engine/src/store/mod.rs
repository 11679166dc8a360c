//! Durable storage behind one [`Store`] type with a SQLite and a PostgreSQL backend.
//!
//! Writes to the ledger go through a single writer task that commits whatever requests
//! are waiting in one transaction (group commit) and answers each caller only after the
//! commit: an acknowledged signal is on disk, and many concurrent writers cost one
//! transaction instead of many. Reads go straight to a connection pool.

#[macro_use]
mod actions_sql;
#[macro_use]
mod intel;
mod actions;
mod intel_sql;
mod memories;
mod memory_sql;
mod model;
mod outbox;
mod outbox_sql;
mod owners;
mod plan;
mod requests;
pub mod snapshot;
mod sql;
mod writer;

pub use intel::{HeartbeatRecord, NewSuggestion, RunDetail, RunRecord, Upkeep};
pub use memories::{MemoryHit, MemoryQuery};
pub use model::{DayUsage, ModelCall};

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::clock::{Clock, from_millis};
use crate::signal::{
    Actor, Attachment, Conversation, Family, NewSignal, Signal, SignalError, SignalId, SignalKind, Source, Trust,
    Urgency,
};
use plan::Prepared;
use writer::Job;

/// Largest number of deliveries committed in one transaction. Bounded so one commit
/// stays short (and under SQLite's bound-variable limit) even when a burst is waiting.
pub const MAX_BATCH: usize = 256;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Invalid(#[from] SignalError),
    #[error(transparent)]
    InvalidMemory(#[from] crate::memory::MemoryError),
    /// An adapter built a message the outbox cannot keep (a bug, not the owner's input).
    #[error("invalid outbound message: {0}")]
    InvalidOutbound(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("database error: {0}")]
    Database(Arc<sqlx::Error>),
    #[error("unsupported storage url {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("migration failed: {0}")]
    Migrate(Arc<sqlx::migrate::MigrateError>),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        StoreError::Database(Arc::new(error))
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> StoreError {
        StoreError::Migrate(Arc::new(error))
    }
}

/// How hard a commit tries to reach the disk before the caller hears back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// SQLite `synchronous=NORMAL` in WAL mode: survives a killed process, not a power cut.
    #[default]
    Process,
    /// SQLite `synchronous=FULL`: one fsync per commit, survives a power cut.
    PowerLoss,
}

/// How long each family of signals is kept, and how long delivery ids are remembered.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    pub message: Duration,
    pub email: Duration,
    pub interaction: Duration,
    pub schedule: Duration,
    pub event: Duration,
    /// Kept apart from the signals so a platform that redelivers an update after its
    /// signal expired still gets "duplicate", not a second signal.
    pub receipts: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            message: Duration::days(30),
            email: Duration::days(90),
            interaction: Duration::days(30),
            schedule: Duration::days(14),
            event: Duration::days(30),
            receipts: Duration::days(180),
        }
    }
}

impl Retention {
    pub fn of(&self, family: Family) -> Duration {
        match family {
            Family::Message => self.message,
            Family::Email => self.email,
            Family::Interaction => self.interaction,
            Family::Schedule => self.schedule,
            Family::Event => self.event,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://data/loopgate.db`, `sqlite::memory:` or `postgres://…`.
    pub url: String,
    pub durability: Durability,
    pub retention: Retention,
    /// Connections for readers (SQLite) or for everything (PostgreSQL).
    pub max_connections: u32,
}

impl StoreConfig {
    pub fn new(url: impl Into<String>) -> StoreConfig {
        StoreConfig {
            url: url.into(),
            durability: Durability::default(),
            retention: Retention::default(),
            max_connections: 4,
        }
    }
}

/// The answer to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub id: SignalId,
    /// This `(source, external_id)` was seen before; nothing was written.
    pub duplicate: bool,
    /// The delivery was new but the same thing was already in the ledger, whose count grew.
    pub merged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub signals: u64,
    pub receipts: u64,
}

/// Which signals to list. Newest first, unless reading forward from a `seq` cursor.
#[derive(Debug, Clone)]
pub struct SignalQuery {
    pub since: Option<DateTime<Utc>>,
    pub source: Option<Source>,
    /// Only signals written or merged after this cursor, oldest first.
    pub after_seq: Option<i64>,
    /// Only signals from one of the owner's own accounts.
    pub owner_only: bool,
    pub limit: u32,
}

impl Default for SignalQuery {
    fn default() -> SignalQuery {
        SignalQuery { since: None, source: None, after_seq: None, owner_only: false, limit: 100 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub(crate) enum Pools {
    Sqlite { read: SqlitePool, write: SqlitePool },
    Postgres(PgPool),
}

/// The database behind the engine. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pools: Pools,
    jobs: mpsc::Sender<Job>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    /// The writer and, on SQLite, the checkpointer; awaited by [`Store::close`].
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Store {
    /// Connects without touching the schema; call [`Store::migrate`] before use.
    pub async fn connect(config: &StoreConfig, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        let pools = if config.url.starts_with("sqlite:") {
            connect_sqlite(config).await?
        } else if config.url.starts_with("postgres://") || config.url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(&config.url)?;
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections.max(2))
                .acquire_timeout(StdDuration::from_secs(5))
                .connect_with(options)
                .await?;
            Pools::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(config.url.clone()));
        };
        let (jobs, receiver) = mpsc::channel(4 * MAX_BATCH);
        let mut tasks = vec![tokio::spawn(writer::run(pools.clone(), receiver))];
        if let Pools::Sqlite { read, .. } = &pools {
            tasks.push(tokio::spawn(writer::checkpoint_sqlite(read.clone(), jobs.clone())));
        }
        Ok(Store {
            inner: Arc::new(Inner {
                pools,
                jobs,
                clock,
                retention: config.retention.clone(),
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// Connects and brings the schema up to date.
    pub async fn open(config: &StoreConfig, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        let store = Store::connect(config, clock).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// The database file behind a `sqlite:` URL; `None` for PostgreSQL and in-memory
    /// databases.
    pub fn sqlite_file(url: &str) -> Option<PathBuf> {
        if !url.starts_with("sqlite:") {
            return None;
        }
        let options = SqliteConnectOptions::from_str(url).ok()?;
        let path = options.get_filename();
        (!path.as_os_str().is_empty() && path != std::path::Path::new(":memory:")).then(|| path.to_owned())
    }

    pub fn backend(&self) -> Backend {
        match self.inner.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Applies every migration not yet applied. Safe to run on every start.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.inner.pools {
            Pools::Sqlite { write, .. } => sqlite_migrator().run(write).await?,
            Pools::Postgres(pool) => postgres_migrator().run(pool).await?,
        }
        Ok(())
    }

    /// Versions and descriptions of the migrations this build has that the database lacks.
    pub async fn pending_migrations(&self) -> Result<Vec<(i64, String)>, StoreError> {
        let (migrator, applied): (Migrator, Vec<i64>) = match &self.inner.pools {
            Pools::Sqlite { read, .. } => (sqlite_migrator(), applied_versions(read).await?),
            Pools::Postgres(pool) => (postgres_migrator(), applied_versions(pool).await?),
        };
        Ok(migrator
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| (m.version, m.description.to_string()))
            .collect())
    }

    /// Is the database answering? Used by `/readyz` and `doctor`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.inner.pools {
            Pools::Sqlite { read, .. } => {
                sqlx::query("SELECT 1").execute(read).await?;
            }
            Pools::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        if self.inner.jobs.is_closed() {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    /// Records one delivery. Returns once it is committed.
    pub async fn ingest(&self, signal: NewSignal) -> Result<IngestOutcome, StoreError> {
        let mut outcomes = self.ingest_many(vec![signal]).await?;
        Ok(outcomes.pop().expect("one outcome per delivery"))
    }

    /// Records several deliveries in order, in one commit. Returns once it is committed.
    pub async fn ingest_many(&self, signals: Vec<NewSignal>) -> Result<Vec<IngestOutcome>, StoreError> {
        let now = self.inner.clock.now();
        let mut prepared = Vec::with_capacity(signals.len());
        for signal in signals {
            signal.validate()?;
            let retention = self.inner.retention.of(signal.family());
            prepared.push(Prepared::new(signal, now, retention));
        }
        let mut outcomes = Vec::with_capacity(prepared.len());
        // A caller with more than one batch's worth gets several commits, in order.
        let mut rest = prepared;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(MAX_BATCH));
            let (reply, answer) = oneshot::channel();
            self.inner.jobs.send(Job::Ingest { items: rest, reply }).await.map_err(|_| StoreError::Closed)?;
            outcomes.extend(answer.await.map_err(|_| StoreError::Closed)??);
            rest = tail;
        }
        for outcome in &outcomes {
            let label = match (outcome.duplicate, outcome.merged) {
                (true, _) => "duplicate",
                (false, true) => "merged",
                (false, false) => "new",
            };
            metrics::counter!("loopgate_signals_ingested_total", "outcome" => label).increment(1);
        }
        Ok(outcomes)
    }

    /// Deletes expired signals and delivery ids older than their retention.
    pub async fn sweep(&self) -> Result<SweepReport, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Sweep { now: self.inner.clock.now(), receipts: self.inner.retention.receipts, reply };
        self.inner.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn list_signals(&self, query: &SignalQuery) -> Result<Vec<Signal>, StoreError> {
        let rows = match &self.inner.pools {
            Pools::Sqlite { read, .. } => sql::sqlite::list(&mut *read.acquire().await?, query).await?,
            Pools::Postgres(pool) => sql::postgres::list(&mut *pool.acquire().await?, query).await?,
        };
        rows.into_iter().map(SignalRow::into_signal).collect()
    }

    /// Whether `actor` had written on `source` before the signal numbered `seq`: a first
    /// contact is a sender not seen before.
    pub async fn actor_seen_before(&self, source: &str, actor: &str, seq: i64) -> Result<bool, StoreError> {
        Ok(match &self.inner.pools {
            Pools::Sqlite { read, .. } => {
                sql::sqlite::actor_seen_before(&mut *read.acquire().await?, source, actor, seq).await?
            }
            Pools::Postgres(pool) => {
                sql::postgres::actor_seen_before(&mut *pool.acquire().await?, source, actor, seq).await?
            }
        })
    }

    pub async fn get_signal(&self, id: SignalId) -> Result<Option<Signal>, StoreError> {
        let row = match &self.inner.pools {
            Pools::Sqlite { read, .. } => sql::sqlite::get(&mut *read.acquire().await?, id).await?,
            Pools::Postgres(pool) => sql::postgres::get(&mut *pool.acquire().await?, id).await?,
        };
        row.map(SignalRow::into_signal).transpose()
    }

    /// Finishes every write already queued, then closes the database. Later writes fail
    /// with [`StoreError::Closed`].
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.inner.jobs.send(Job::Shutdown { reply }).await.is_ok() {
            let _ = done.await;
        }
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks lock"));
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        match &self.inner.pools {
            Pools::Sqlite { read, write } => {
                // A final checkpoint leaves a small WAL for the next start.
                let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(write).await;
                write.close().await;
                read.close().await;
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }
}

async fn connect_sqlite(config: &StoreConfig) -> Result<Pools, StoreError> {
    let base = SqliteConnectOptions::from_str(&config.url)?;
    let path: PathBuf = base.get_filename().to_owned();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Database(Arc::new(sqlx::Error::Io(e))))?;
    }
    if path != std::path::Path::new(":memory:") && !path.as_os_str().is_empty() && !path.exists() {
        // Made here so only its owner can read it; SQLite gives its WAL and shared-memory
        // files the database file's mode.
        use std::os::unix::fs::OpenOptionsExt;
        let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
        match created {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::Database(Arc::new(sqlx::Error::Io(e)))),
        }
    }
    let synchronous = match config.durability {
        Durability::Process => SqliteSynchronous::Normal,
        Durability::PowerLoss => SqliteSynchronous::Full,
    };
    let options = base
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .foreign_keys(true)
        .busy_timeout(StdDuration::from_secs(10))
        // Checkpoints run from their own task, outside the commits callers wait on.
        .pragma("wal_autocheckpoint", "0")
        .pragma("journal_size_limit", (256 * 1024 * 1024).to_string());
    // One writer connection: SQLite serialises writers anyway, and a second connection
    // would only wait on the first. Each batch size is its own statement text, so the
    // cache holds every shape a batch can take instead of re-preparing under load.
    let write_options = options.clone().statement_cache_capacity(4 * MAX_BATCH + 64);
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(write_options)
        .await?;
    let read = SqlitePoolOptions::new()
        .max_connections(config.max_connections.max(1))
        .min_connections(0)
        .idle_timeout(StdDuration::from_secs(60))
        .connect_with(options)
        .await?;
    Ok(Pools::Sqlite { read, write })
}

/// Migrations are compiled into the binary so a lone `loopgate` executable can set up
/// its database anywhere.
macro_rules! embedded_migrator {
    ($dir:literal, [$(($version:literal, $description:literal, $file:literal)),* $(,)?]) => {
        Migrator::with_migrations(vec![$(
            Migration::new(
                $version,
                Cow::Borrowed($description),
                MigrationType::Simple,
                include_str!(concat!("../../../migrations/", $dir, "/", $file)).into_sql_str(),
                false,
            ),
        )*])
    };
}

use sqlx::SqlSafeStr as _;

fn sqlite_migrator() -> Migrator {
    embedded_migrator!(
        "sqlite",
        [
            (1, "signal ledger", "0001_signal_ledger.sql"),
            (2, "memory", "0002_memory.sql"),
            (3, "intelligence", "0003_intelligence.sql"),
            (4, "policy and habits", "0004_policy_and_habits.sql"),
            (5, "outbox", "0005_outbox.sql"),
            (6, "tasks and approvals", "0006_tasks_and_approvals.sql"),
            (7, "channel state", "0007_channel_state.sql"),
            (8, "signal senders", "0008_signal_senders.sql"),
            (9, "model usage", "0009_model_usage.sql"),
            (10, "suggestion reflector", "0010_suggestion_reflector.sql"),
            (11, "learning evidence", "0011_learning_evidence.sql"),
            (12, "owners and pairing", "0012_owners_and_pairing.sql")
        ]
    )
}

fn postgres_migrator() -> Migrator {
    embedded_migrator!(
        "postgres",
        [
            (1, "signal ledger", "0001_signal_ledger.sql"),
            (2, "memory", "0002_memory.sql"),
            (3, "intelligence", "0003_intelligence.sql"),
            (4, "policy and habits", "0004_policy_and_habits.sql"),
            (5, "outbox", "0005_outbox.sql"),
            (6, "tasks and approvals", "0006_tasks_and_approvals.sql"),
            (7, "channel state", "0007_channel_state.sql"),
            (8, "signal senders", "0008_signal_senders.sql"),
            (9, "model usage", "0009_model_usage.sql"),
            (10, "suggestion reflector", "0010_suggestion_reflector.sql"),
            (11, "learning evidence", "0011_learning_evidence.sql"),
            (12, "owners and pairing", "0012_owners_and_pairing.sql")
        ]
    )
}

async fn applied_versions<'a, E>(executor: E) -> Result<Vec<i64>, StoreError>
where
    E: sqlx::Executor<'a>,
    i64: sqlx::Type<E::Database> + for<'r> sqlx::Decode<'r, E::Database>,
    for<'q> <E::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<E::Database>,
    (i64,): for<'r> sqlx::FromRow<'r, <E::Database as sqlx::Database>::Row>,
{
    // A database that was never migrated has no bookkeeping table: everything is pending.
    match sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
        .fetch_all(executor)
        .await
    {
        Ok(versions) => Ok(versions),
        Err(sqlx::Error::Database(e)) if e.message().contains("_sqlx_migrations") => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// A `signals` row as both backends return it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SignalRow {
    id: i64,
    seq: i64,
    fingerprint: String,
    source: String,
    kind: String,
    family: String,
    external_id: Option<String>,
    actor_id: Option<String>,
    actor_name: Option<String>,
    actor_is_owner: bool,
    conversation_id: Option<String>,
    conversation_title: Option<String>,
    thread_id: Option<String>,
    reply_to: Option<String>,
    text: String,
    urgency: i16,
    trust: String,
    attachments: String,
    payload: Option<String>,
    occurred_at: i64,
    first_seen: i64,
    last_seen: i64,
    expires_at: i64,
    count: i64,
}

impl SignalRow {
    fn into_signal(self) -> Result<Signal, StoreError> {
        let corrupt = |what: &str| {
            StoreError::Database(Arc::new(sqlx::Error::Protocol(format!("signal {} has a bad {what}", self.id))))
        };
        let attachments: Vec<Attachment> =
            serde_json::from_str(&self.attachments).map_err(|_| corrupt("attachments column"))?;
        let payload = match &self.payload {
            Some(text) => Some(serde_json::from_str(text).map_err(|_| corrupt("payload column"))?),
            None => None,
        };
        Ok(Signal {
            id: self.id,
            source: Source::parse(&self.source).map_err(|_| corrupt("source"))?,
            kind: SignalKind::parse(&self.kind).map_err(|_| corrupt("kind"))?,
            family: Family::parse(&self.family).ok_or_else(|| corrupt("family"))?,
            external_id: self.external_id,
            actor: self.actor_id.map(|id| Actor { id, name: self.actor_name, is_owner: self.actor_is_owner }),
            conversation: self.conversation_id.map(|id| Conversation {
                id,
                title: self.conversation_title,
                thread_id: self.thread_id,
                reply_to: self.reply_to,
            }),
            text: self.text,
            urgency: Urgency::from_rank(self.urgency),
            trust: Trust::parse(&self.trust),
            occurred_at: from_millis(self.occurred_at),
            attachments,
            payload,
            fingerprint: self.fingerprint,
            count: self.count,
            first_seen: from_millis(self.first_seen),
            last_seen: from_millis(self.last_seen),
            expires_at: from_millis(self.expires_at),
            seq: self.seq,
        })
    }
}
