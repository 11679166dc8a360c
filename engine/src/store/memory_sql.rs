//! Memory's SQL, written once for both backends (like `sql.rs`), except full-text search,
//! which is FTS5 on SQLite and a `tsvector` on PostgreSQL.

use crate::clock::from_millis;
use crate::memory::{Memory, MemoryKind, Origin};
use crate::signal::Trust;

pub(crate) const MEMORY_COLUMNS: &str =
    "id, kind, subject, content, confidence, stability, origin, trust, evidence, created_at, updated_at";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MemoryRow {
    id: i64,
    kind: String,
    subject: String,
    content: String,
    confidence: f64,
    stability: i64,
    origin: String,
    trust: String,
    evidence: String,
    created_at: i64,
    updated_at: i64,
}

impl MemoryRow {
    pub(crate) fn into_memory(self) -> Result<Memory, sqlx::Error> {
        let corrupt = |what: &str| sqlx::Error::Protocol(format!("memory {} has a bad {what}", self.id));
        Ok(Memory {
            id: self.id,
            kind: MemoryKind::parse(&self.kind).map_err(|_| corrupt("kind"))?,
            origin: Origin::parse(&self.origin).ok_or_else(|| corrupt("origin"))?,
            trust: Trust::parse(&self.trust),
            evidence: serde_json::from_str(&self.evidence).map_err(|_| corrupt("evidence"))?,
            subject: self.subject,
            content: self.content,
            confidence: self.confidence,
            stability: self.stability,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

/// Words of a search, lowercased, for prefix matching on both backends. Only letters and
/// digits survive, so nothing the owner types can change the query's syntax.
pub(crate) fn search_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let word = word.to_lowercase();
        if !terms.contains(&word) && terms.len() < 16 {
            terms.push(word);
        }
    }
    terms
}

macro_rules! memory_sql {
    (mod $module:ident; db = $db:ty;) => {
        pub(crate) mod $module {
            use sqlx::QueryBuilder;

            use super::{MEMORY_COLUMNS, MemoryRow};
            use crate::memory::{MemoryCandidate, MemoryId, MemoryKind};

            type Conn = <$db as sqlx::Database>::Connection;

            pub(crate) async fn by_id(conn: &mut Conn, id: MemoryId) -> Result<Option<MemoryRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!("SELECT {MEMORY_COLUMNS} FROM memories WHERE id = "));
                q.push_bind(id);
                q.build_query_as().fetch_optional(&mut *conn).await
            }

            pub(crate) async fn by_content(
                conn: &mut Conn,
                kind: MemoryKind,
                key: &str,
            ) -> Result<Option<MemoryRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!("SELECT {MEMORY_COLUMNS} FROM memories WHERE kind = "));
                q.push_bind(kind.as_str()).push(" AND content_key = ").push_bind(key.to_owned());
                q.build_query_as().fetch_optional(&mut *conn).await
            }

            pub(crate) async fn by_subject(
                conn: &mut Conn,
                kind: MemoryKind,
                subject: &str,
            ) -> Result<Option<MemoryRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!("SELECT {MEMORY_COLUMNS} FROM memories WHERE kind = "));
                q.push_bind(kind.as_str()).push(" AND subject = ").push_bind(subject.to_owned());
                q.push(" ORDER BY updated_at DESC LIMIT 1");
                q.build_query_as().fetch_optional(&mut *conn).await
            }

            pub(crate) async fn is_forgotten(
                conn: &mut Conn,
                kind: MemoryKind,
                key: &str,
            ) -> Result<bool, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("SELECT COUNT(*) FROM memory_tombstones WHERE kind = ");
                q.push_bind(kind.as_str()).push(" AND content_key = ").push_bind(key.to_owned());
                let count: i64 = q.build_query_scalar().fetch_one(&mut *conn).await?;
                Ok(count > 0)
            }

            pub(crate) async fn insert(
                conn: &mut Conn,
                c: &MemoryCandidate,
                now: i64,
            ) -> Result<MemoryId, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO memories (kind, subject, content, content_key, confidence, stability, origin, trust, \
                     evidence, created_at, updated_at) VALUES (",
                );
                let mut values = q.separated(", ");
                values
                    .push_bind(c.kind.as_str())
                    .push_bind(c.subject.clone())
                    .push_bind(c.content.trim().to_owned())
                    .push_bind(c.content_key())
                    .push_bind(c.confidence)
                    .push_bind(1_i64)
                    .push_bind(c.origin.as_str())
                    .push_bind(c.trust.as_str())
                    .push_bind(serde_json::to_string(&c.evidence).expect("ids serialize"))
                    .push_bind(now)
                    .push_bind(now);
                q.push(") RETURNING id");
                q.build_query_scalar().fetch_one(&mut *conn).await
            }

            pub(crate) async fn reinforce(
                conn: &mut Conn,
                id: MemoryId,
                confidence: f64,
                evidence: &str,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("UPDATE memories SET stability = stability + 1, confidence = ");
                q.push_bind(confidence).push(", evidence = ").push_bind(evidence.to_owned());
                q.push(", updated_at = ").push_bind(now).push(" WHERE id = ").push_bind(id);
                q.build().execute(&mut *conn).await.map(drop)
            }

            pub(crate) async fn supersede(
                conn: &mut Conn,
                id: MemoryId,
                c: &MemoryCandidate,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("UPDATE memories SET content = ");
                q.push_bind(c.content.trim().to_owned())
                    .push(", content_key = ")
                    .push_bind(c.content_key())
                    .push(", confidence = ")
                    .push_bind(c.confidence)
                    .push(", stability = 1, origin = ")
                    .push_bind(c.origin.as_str())
                    .push(", trust = ")
                    .push_bind(c.trust.as_str())
                    .push(", evidence = ")
                    .push_bind(serde_json::to_string(&c.evidence).expect("ids serialize"))
                    .push(", updated_at = ")
                    .push_bind(now)
                    .push(" WHERE id = ")
                    .push_bind(id);
                q.build().execute(&mut *conn).await.map(drop)
            }

            pub(crate) async fn unforget(conn: &mut Conn, kind: MemoryKind, key: &str) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("DELETE FROM memory_tombstones WHERE kind = ");
                q.push_bind(kind.as_str()).push(" AND content_key = ").push_bind(key.to_owned());
                q.build().execute(&mut *conn).await.map(drop)
            }

            /// Deletes the memory and leaves a tombstone; false when there was none.
            pub(crate) async fn forget(conn: &mut Conn, id: MemoryId, now: i64) -> Result<bool, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("DELETE FROM memories WHERE id = ");
                q.push_bind(id).push(" RETURNING kind, content_key");
                let gone: Option<(String, String)> = q.build_query_as().fetch_optional(&mut *conn).await?;
                let Some((kind, key)) = gone else { return Ok(false) };
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO memory_tombstones (kind, content_key, forgotten_at) VALUES (",
                );
                q.separated(", ").push_bind(kind).push_bind(key).push_bind(now);
                q.push(") ON CONFLICT (kind, content_key) DO UPDATE SET forgotten_at = excluded.forgotten_at");
                q.build().execute(&mut *conn).await?;
                Ok(true)
            }

            /// Most recently updated first, when there is no text to rank by.
            pub(crate) async fn recent(
                conn: &mut Conn,
                kind: Option<MemoryKind>,
                limit: u32,
            ) -> Result<Vec<MemoryRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!("SELECT {MEMORY_COLUMNS} FROM memories"));
                if let Some(kind) = kind {
                    q.push(" WHERE kind = ").push_bind(kind.as_str());
                }
                q.push(" ORDER BY updated_at DESC, id DESC LIMIT ").push_bind(i64::from(limit));
                q.build_query_as().fetch_all(&mut *conn).await
            }
        }
    };
}

memory_sql! { mod sqlite; db = sqlx::Sqlite; }
memory_sql! { mod postgres; db = sqlx::Postgres; }

/// Full-text matches with their text relevance (higher is better), best first, at most
/// `candidates` of them.
pub(crate) async fn search_sqlite(
    conn: &mut sqlx::SqliteConnection,
    terms: &[String],
    kind: Option<MemoryKind>,
    candidates: u32,
) -> Result<Vec<(MemoryRow, f64)>, sqlx::Error> {
    // How many memories contain each word (as a prefix, and as itself), from FTS5's own
    // vocabulary: an upper bound on the matches.
    let mut counts = Vec::with_capacity(terms.len());
    for term in terms {
        counts.push(term_documents(conn, term).await?);
    }
    // Ranking means scoring every match; when even the rarest word is in more than a
    // thousand memories that costs milliseconds and tells little. Then the newest matches
    // are taken instead, which FTS5 finds by walking its index backwards and stopping.
    let rank_all = counts.iter().map(|c| c.with_prefix).min().unwrap_or(0) <= RANK_AT_MOST;
    // Each word is quoted (it is alphanumeric, so quoting keeps it literal) and matched as
    // a prefix ("dent"* finds "dentist") in subject and content. A prefix match merges
    // whole posting lists up front, so a common word that exists as itself is matched
    // exactly: FTS5 then steps through it lazily, stopping early or skipping ahead to the
    // rarer words' matches. Its other forms add little to a word that common.
    let words = terms
        .iter()
        .zip(&counts)
        .map(|(t, c)| if c.exact > RANK_AT_MOST { format!("\"{t}\"") } else { format!("\"{t}\"*") })
        .collect::<Vec<_>>()
        .join(" ");
    let fts_query = match kind {
        Some(kind) => format!("kind : \"{}\" AND {{subject content}} : ({words})", kind.as_str()),
        None => format!("{{subject content}} : ({words})"),
    };
    let columns = MEMORY_COLUMNS.split(", ").map(|c| format!("m.{c}")).collect::<Vec<_>>().join(", ");
    let (select, order) = if rank_all { ("-rank", "rank") } else { ("1.0", "rowid DESC") };
    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
        "SELECT {columns}, f.relevance AS relevance FROM \
         (SELECT rowid, {select} AS relevance FROM memories_fts WHERE memories_fts MATCH "
    ));
    q.push_bind(fts_query).push(format!(" ORDER BY {order} LIMIT ")).push_bind(i64::from(candidates));
    q.push(") f JOIN memories m ON m.id = f.rowid ORDER BY f.relevance DESC, m.id DESC");
    let rows = q.build().fetch_all(&mut *conn).await?;
    rows.into_iter().map(|row| with_relevance(&row)).collect()
}

/// Matches above which a search stops ranking by text relevance (about a millisecond of
/// bm25 on this machine kind).
const RANK_AT_MOST: i64 = 1000;

struct TermDocuments {
    /// Memories with a word starting with the term (a word counted once per form).
    with_prefix: i64,
    /// Memories with exactly this word.
    exact: i64,
}

async fn term_documents(conn: &mut sqlx::SqliteConnection, term: &str) -> Result<TermDocuments, sqlx::Error> {
    let (with_prefix, exact): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(doc), 0), COALESCE(SUM(CASE WHEN term = ?1 THEN doc ELSE 0 END), 0) \
         FROM memories_fts_terms WHERE term >= ?1 AND term <= ?1 || char(1114111)",
    )
    .bind(term)
    .fetch_one(&mut *conn)
    .await?;
    Ok(TermDocuments { with_prefix, exact })
}

pub(crate) async fn search_postgres(
    conn: &mut sqlx::PgConnection,
    terms: &[String],
    kind: Option<MemoryKind>,
    candidates: u32,
) -> Result<Vec<(MemoryRow, f64)>, sqlx::Error> {
    let ts_query = terms.iter().map(|t| format!("{t}:*")).collect::<Vec<_>>().join(" & ");
    let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
        "SELECT {MEMORY_COLUMNS}, ts_rank(search, query)::float8 AS relevance \
         FROM memories, to_tsquery('simple', "
    ));
    q.push_bind(ts_query).push(") query WHERE search @@ query");
    if let Some(kind) = kind {
        q.push(" AND kind = ").push_bind(kind.as_str());
    }
    q.push(" ORDER BY relevance DESC LIMIT ").push_bind(i64::from(candidates));
    let rows = q.build().fetch_all(&mut *conn).await?;
    rows.into_iter().map(|row| with_relevance(&row)).collect()
}

fn with_relevance<R: sqlx::Row>(row: &R) -> Result<(MemoryRow, f64), sqlx::Error>
where
    for<'r> MemoryRow: sqlx::FromRow<'r, R>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok((<MemoryRow as sqlx::FromRow<R>>::from_row(row)?, row.try_get("relevance")?))
}
