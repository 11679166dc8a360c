//! `Store` methods for memory: remember (distil and apply in one transaction), search,
//! get, forget.

use serde::Serialize;
use sqlx::{Acquire, Connection};

use super::memory_sql::{self, MemoryRow, search_terms};
use super::{Pools, Store, StoreError};
use crate::clock::to_millis;
use crate::memory::{Distilled, Memory, MemoryCandidate, MemoryId, MemoryKind, RememberOutcome, distill};

/// Evidence kept per memory: the latest signals, not its whole history.
const MAX_EVIDENCE: usize = 50;

#[derive(Debug, Clone)]
pub struct MemoryQuery {
    /// Words to look for; empty lists the most recently updated memories.
    pub text: String,
    pub kind: Option<MemoryKind>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryHit {
    #[serde(flatten)]
    pub memory: Memory,
    /// Text relevance weighted by confidence; higher is better. Only comparable within one
    /// search.
    pub score: f64,
}

/// Looks up what distillation needs, decides, applies, and reads the result back, all on
/// one connection inside the caller's transaction. A macro because the SQL module differs.
macro_rules! remember_in {
    ($sql:path, $conn:expr, $candidate:expr, $now:expr) => {{
        use $sql as sql;
        let c = $candidate;
        let key = c.content_key();
        let same_content = sql::by_content($conn, c.kind, &key).await?.map(MemoryRow::into_memory).transpose()?;
        let same_subject = if c.subject.is_empty() {
            None
        } else {
            sql::by_subject($conn, c.kind, &c.subject).await?.map(MemoryRow::into_memory).transpose()?
        };
        let forgotten = sql::is_forgotten($conn, c.kind, &key).await?;
        let decision = distill(c, same_content.as_ref(), same_subject.as_ref(), forgotten);
        let (id, made): (MemoryId, fn(Memory) -> RememberOutcome) = match decision {
            Distilled::Reject(reason) => return Ok(RememberOutcome::Rejected { reason }),
            Distilled::Accept => (sql::insert($conn, c, $now).await?, |memory| RememberOutcome::Created { memory }),
            Distilled::Reinforce { id, confidence } => {
                let existing = same_content.as_ref().expect("reinforce has a memory");
                let evidence = merge_evidence(&existing.evidence, &c.evidence);
                sql::reinforce($conn, id, confidence, &evidence, $now).await?;
                (id, |memory| RememberOutcome::Reinforced { memory })
            }
            Distilled::Supersede { id } => {
                sql::supersede($conn, id, c, $now).await?;
                (id, |memory| RememberOutcome::Superseded { memory })
            }
        };
        if c.origin == crate::memory::Origin::Owner && forgotten {
            sql::unforget($conn, c.kind, &key).await?;
        }
        let memory = sql::by_id($conn, id).await?.ok_or(sqlx::Error::RowNotFound)?.into_memory()?;
        made(memory)
    }};
}

/// Distils a candidate inside a transaction someone else owns (a response to a suggestion
/// writes its memory in the same commit as the decision).
pub(crate) async fn remember_sqlite(
    conn: &mut sqlx::SqliteConnection,
    candidate: &MemoryCandidate,
    now: i64,
) -> Result<RememberOutcome, StoreError> {
    candidate.validate().map_err(StoreError::InvalidMemory)?;
    Ok(remember_in!(memory_sql::sqlite, conn, candidate, now))
}

pub(crate) async fn remember_postgres(
    conn: &mut sqlx::PgConnection,
    candidate: &MemoryCandidate,
    now: i64,
) -> Result<RememberOutcome, StoreError> {
    candidate.validate().map_err(StoreError::InvalidMemory)?;
    Ok(remember_in!(memory_sql::postgres, conn, candidate, now))
}

impl Store {
    /// Distils a candidate into memory: new, reinforced, superseded or rejected.
    pub async fn remember(&self, candidate: MemoryCandidate) -> Result<RememberOutcome, StoreError> {
        candidate.validate().map_err(StoreError::InvalidMemory)?;
        let now = to_millis(self.clock().now());
        let outcome = match &self.inner.pools {
            Pools::Sqlite { write, .. } => {
                let mut conn = write.acquire().await?;
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                let outcome = remember_sqlite(&mut tx, &candidate, now).await?;
                tx.commit().await?;
                outcome
            }
            Pools::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                let mut tx = conn.begin().await?;
                let outcome = remember_postgres(&mut tx, &candidate, now).await?;
                tx.commit().await?;
                outcome
            }
        };
        Ok(outcome)
    }

    pub async fn get_memory(&self, id: MemoryId) -> Result<Option<Memory>, StoreError> {
        let row = match &self.inner.pools {
            Pools::Sqlite { read, .. } => memory_sql::sqlite::by_id(&mut *read.acquire().await?, id).await?,
            Pools::Postgres(pool) => memory_sql::postgres::by_id(&mut *pool.acquire().await?, id).await?,
        };
        Ok(row.map(MemoryRow::into_memory).transpose()?)
    }

    /// Deletes a memory for good and remembers that it was forgotten, so reflection does
    /// not learn it again. Returns false when there was no such memory.
    pub async fn forget_memory(&self, id: MemoryId) -> Result<bool, StoreError> {
        let now = to_millis(self.clock().now());
        let forgotten = match &self.inner.pools {
            Pools::Sqlite { write, .. } => {
                let mut conn = write.acquire().await?;
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                let forgotten = memory_sql::sqlite::forget(&mut tx, id, now).await?;
                tx.commit().await?;
                forgotten
            }
            Pools::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let forgotten = memory_sql::postgres::forget(&mut tx, id, now).await?;
                tx.commit().await?;
                forgotten
            }
        };
        Ok(forgotten)
    }

    /// Whether the owner forgot this statement here before (an import must not bring it
    /// back, even in the owner's own words from another time).
    pub async fn was_forgotten(&self, candidate: &MemoryCandidate) -> Result<bool, StoreError> {
        let key = candidate.content_key();
        Ok(match &self.inner.pools {
            Pools::Sqlite { read, .. } => {
                memory_sql::sqlite::is_forgotten(&mut *read.acquire().await?, candidate.kind, &key).await?
            }
            Pools::Postgres(pool) => {
                memory_sql::postgres::is_forgotten(&mut *pool.acquire().await?, candidate.kind, &key).await?
            }
        })
    }

    /// Full-text search ranked by relevance and confidence, or the most recent memories
    /// when the query has no words.
    pub async fn search_memories(&self, query: &MemoryQuery) -> Result<Vec<MemoryHit>, StoreError> {
        let terms = search_terms(&query.text);
        let limit = query.limit.max(1);
        if terms.is_empty() {
            let rows = match &self.inner.pools {
                Pools::Sqlite { read, .. } => {
                    memory_sql::sqlite::recent(&mut *read.acquire().await?, query.kind, limit).await?
                }
                Pools::Postgres(pool) => {
                    memory_sql::postgres::recent(&mut *pool.acquire().await?, query.kind, limit).await?
                }
            };
            return rows
                .into_iter()
                .map(|row| {
                    let memory = row.into_memory()?;
                    Ok(MemoryHit { score: memory.confidence, memory })
                })
                .collect();
        }
        // Take more text matches than asked for, then let confidence reorder them: a
        // slightly weaker match the owner confirmed often beats a stray guess.
        let candidates = (limit * 4).max(32);
        let rows = match &self.inner.pools {
            Pools::Sqlite { read, .. } => {
                memory_sql::search_sqlite(&mut *read.acquire().await?, &terms, query.kind, candidates).await?
            }
            Pools::Postgres(pool) => {
                memory_sql::search_postgres(&mut *pool.acquire().await?, &terms, query.kind, candidates).await?
            }
        };
        let mut hits = rows
            .into_iter()
            .map(|(row, relevance)| {
                let memory = row.into_memory()?;
                Ok(MemoryHit { score: relevance * (0.5 + 0.5 * memory.confidence), memory })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.memory.id.cmp(&a.memory.id)));
        hits.truncate(limit as usize);
        Ok(hits)
    }
}

fn merge_evidence(existing: &[i64], new: &[i64]) -> String {
    let mut ids: Vec<i64> = existing.to_vec();
    for id in new {
        if !ids.contains(id) {
            ids.push(*id);
        }
    }
    let skip = ids.len().saturating_sub(MAX_EVIDENCE);
    serde_json::to_string(&ids[skip..]).expect("ids serialize")
}
