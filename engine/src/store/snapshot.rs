//! Consistent copies of the database for backups, and reading a copy without changing it.
//!
//! On SQLite a copy is `VACUUM INTO` from a read transaction: one snapshot of the whole
//! database, taken while the service keeps writing (WAL readers never block the writer).
//! PostgreSQL copies are `pg_dump`'s business; the gateway runs it.

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::{Pools, Store, StoreError};

/// The tables a backup's manifest counts rows of: what an owner would miss.
pub const COUNTED_TABLES: [&str; 8] =
    ["signals", "memories", "suggestions", "tasks", "approvals", "audit_log", "owners", "outbox"];

/// What is in a database file, read without writing to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// `PRAGMA integrity_check`'s answer: `"ok"` for a sound file.
    pub integrity: String,
    /// The newest migration applied; 0 for a file loopgate never set up.
    pub schema_version: i64,
    /// Rows per table of [`COUNTED_TABLES`]; a table the file lacks counts 0.
    pub counts: BTreeMap<String, i64>,
}

impl Inspection {
    /// Whether the database holds anything an owner would lose if it were replaced.
    pub fn is_empty(&self) -> bool {
        self.counts.values().all(|n| *n == 0)
    }
}

/// The newest migration this build knows.
pub fn latest_schema_version() -> i64 {
    super::sqlite_migrator().iter().map(|m| m.version).max().unwrap_or(0)
}

impl Store {
    /// Writes a consistent copy of a SQLite database to `target`, which must not exist.
    /// Errors on PostgreSQL (use `pg_dump`).
    pub async fn copy_sqlite_into(&self, target: &Path) -> Result<(), StoreError> {
        let Pools::Sqlite { read, .. } = &self.inner.pools else {
            return Err(StoreError::UnsupportedUrl("a PostgreSQL database is copied with pg_dump".into()));
        };
        let target = target.to_str().ok_or_else(|| StoreError::UnsupportedUrl(format!("{target:?} is not UTF-8")))?;
        sqlx::query("VACUUM INTO ?").bind(target).execute(read).await?;
        Ok(())
    }

    /// Rows per counted table and the schema version of the live database.
    pub async fn inspect(&self) -> Result<Inspection, StoreError> {
        let mut counts = BTreeMap::new();
        let schema_version;
        match &self.inner.pools {
            Pools::Sqlite { read, .. } => {
                let mut conn = read.acquire().await?;
                for table in COUNTED_TABLES {
                    counts.insert(table.to_owned(), count_rows(&mut *conn, table).await?);
                }
                schema_version = max_version(&mut *conn).await?;
            }
            Pools::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                for table in COUNTED_TABLES {
                    counts.insert(table.to_owned(), count_rows(&mut *conn, table).await?);
                }
                schema_version = max_version(&mut *conn).await?;
            }
        }
        Ok(Inspection { integrity: "ok".into(), schema_version, counts })
    }
}

/// Reads a SQLite file (a backup, or a database about to be replaced) without creating a
/// WAL beside it or changing a byte of it.
pub async fn inspect_sqlite_file(path: &Path) -> Result<Inspection, StoreError> {
    // Built from the path, not a URL: a `?` or `%` in a folder name is just a character.
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true)
        .create_if_missing(false)
        .connect()
        .await?;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut conn).await?;
    let mut counts = BTreeMap::new();
    for table in COUNTED_TABLES {
        counts.insert(table.to_owned(), count_rows(&mut conn, table).await?);
    }
    let schema_version = max_version(&mut conn).await?;
    conn.close().await?;
    Ok(Inspection { integrity, schema_version, counts })
}

async fn count_rows<'c, E>(executor: E, table: &str) -> Result<i64, StoreError>
where
    E: sqlx::Executor<'c>,
    i64: sqlx::Type<E::Database> + for<'r> sqlx::Decode<'r, E::Database>,
    for<'q> <E::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<E::Database>,
    (i64,): for<'r> sqlx::FromRow<'r, <E::Database as sqlx::Database>::Row>,
{
    // Table names come from COUNTED_TABLES, never from input.
    let sql = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}");
    match sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(executor).await {
        Ok(n) => Ok(n),
        Err(sqlx::Error::Database(e)) if is_missing_table(e.message()) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

async fn max_version<'c, E>(executor: E) -> Result<i64, StoreError>
where
    E: sqlx::Executor<'c>,
    i64: sqlx::Type<E::Database> + for<'r> sqlx::Decode<'r, E::Database>,
    for<'q> <E::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<E::Database>,
    (i64,): for<'r> sqlx::FromRow<'r, <E::Database as sqlx::Database>::Row>,
{
    let sql = "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM _sqlx_migrations WHERE success = TRUE";
    match sqlx::query_scalar::<_, i64>(sql).fetch_one(executor).await {
        Ok(n) => Ok(n),
        Err(sqlx::Error::Database(e)) if is_missing_table(e.message()) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

fn is_missing_table(message: &str) -> bool {
    message.contains("no such table") || message.contains("does not exist")
}
