//! The ledger's SQL, written once and compiled for each backend.
//!
//! The statements are the same on SQLite and PostgreSQL but for a few words (how to take
//! the larger of two values, where `seq` comes from, how a boolean is tested), so a macro instantiates this
//! module per backend instead of a generic function whose trait bounds would be longer
//! than the code.

use std::collections::HashMap;

use crate::signal::SignalId;

/// Columns read back into a [`crate::Signal`], in one place so every SELECT agrees.
pub(crate) const SIGNAL_COLUMNS: &str = "id, seq, fingerprint, source, kind, family, external_id, actor_id, \
     actor_name, actor_is_owner, conversation_id, conversation_title, thread_id, reply_to, text, urgency, \
     trust, attachments, payload, occurred_at, first_seen, last_seen, expires_at, count";

/// Rows a SELECT of receipts answered, keyed for the planner.
pub(crate) type KnownReceipts = HashMap<(String, String), SignalId>;

macro_rules! backend_sql {
    (
        mod $module:ident;
        db = $db:ty;
        greatest = $greatest:literal;
        // Where a written row's `seq` comes from, given its position in the batch
        // (bound after the expression). SQLite's write transactions are exclusive, so the
        // table's maximum plus the position is unique even with a second process writing;
        // PostgreSQL has a sequence. Either way no extra statement is needed.
        seq_expr = $seq_expr:literal;
        // "Sent from one of the owner's accounts", as the partial index spells it.
        owner_signal = $owner_signal:literal;
    ) => {
        pub(crate) mod $module {
            use sqlx::{QueryBuilder, Row as _};

            use super::{KnownReceipts, SIGNAL_COLUMNS};
            use crate::clock::to_millis;
            use crate::signal::SignalId;
            use crate::store::plan::{Plan, Prepared};
            use crate::store::{IngestOutcome, SignalQuery, SignalRow, SweepReport};

            type Conn = <$db as sqlx::Database>::Connection;

            pub(crate) async fn known_receipts(
                conn: &mut Conn,
                items: &[Prepared],
            ) -> Result<KnownReceipts, sqlx::Error> {
                let keys: Vec<(&str, &str)> = items.iter().filter_map(Prepared::receipt_key).collect();
                if keys.is_empty() {
                    return Ok(KnownReceipts::new());
                }
                let mut query = QueryBuilder::<$db>::new(
                    "SELECT source, external_id, signal_id FROM signal_receipts WHERE (source, external_id) IN (",
                );
                query.push_values(keys, |mut row, (source, id)| {
                    row.push_bind(source.to_owned()).push_bind(id.to_owned());
                });
                query.push(")");
                let rows = query.build().fetch_all(&mut *conn).await?;
                rows.iter()
                    .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
                    .collect()
            }

            /// Writes one batch inside the caller's transaction and answers every delivery.
            pub(crate) async fn write_batch(
                conn: &mut Conn,
                items: &[Prepared],
            ) -> Result<Vec<IngestOutcome>, sqlx::Error> {
                let known = known_receipts(conn, items).await?;
                let plan = Plan::new(items, &known);
                if plan.rows.is_empty() {
                    return Ok(plan.outcomes(&[]));
                }

                let mut upsert = QueryBuilder::<$db>::new(
                    "INSERT INTO signals (seq, fingerprint, source, kind, family, external_id, actor_id, actor_name, \
                     actor_is_owner, conversation_id, conversation_title, thread_id, reply_to, text, urgency, trust, \
                     attachments, payload, occurred_at, first_seen, last_seen, expires_at, count) ",
                );
                upsert.push_values(plan.rows.iter().enumerate(), |mut b, (index, row)| {
                    let item = row.first;
                    let s = &item.signal;
                    b.push(concat!("(", $seq_expr)).push_bind_unseparated(1 + index as i64).push_unseparated(")");
                    let conversation = s.conversation.as_ref();
                    b.push_bind(item.fingerprint.clone())
                        .push_bind(s.source.as_str().to_owned())
                        .push_bind(s.kind.as_str().to_owned())
                        .push_bind(item.family.as_str())
                        .push_bind(s.external_id.clone())
                        .push_bind(s.actor.as_ref().map(|a| a.id.clone()))
                        .push_bind(s.actor.as_ref().and_then(|a| a.name.clone()))
                        .push_bind(s.actor.as_ref().is_some_and(|a| a.is_owner))
                        .push_bind(conversation.map(|c| c.id.clone()))
                        .push_bind(conversation.and_then(|c| c.title.clone()))
                        .push_bind(conversation.and_then(|c| c.thread_id.clone()))
                        .push_bind(conversation.and_then(|c| c.reply_to.clone()))
                        .push_bind(s.text.clone())
                        .push_bind(row.urgency.rank())
                        .push_bind(s.trust.as_str())
                        .push_bind(item.attachments_json.clone())
                        .push_bind(item.payload_json.clone())
                        .push_bind(item.occurred_at)
                        .push_bind(item.received_at)
                        .push_bind(row.last_seen)
                        .push_bind(row.expires_at)
                        .push_bind(row.count);
                });
                upsert.push(concat!(
                    " ON CONFLICT (fingerprint) DO UPDATE SET count = signals.count + excluded.count, ",
                    "last_seen = ", $greatest, "(signals.last_seen, excluded.last_seen), ",
                    "urgency = ", $greatest, "(signals.urgency, excluded.urgency), ",
                    "expires_at = ", $greatest, "(signals.expires_at, excluded.expires_at), ",
                    "seq = excluded.seq ",
                    "RETURNING id, fingerprint, count"
                ));
                let returned = upsert.build().fetch_all(&mut *conn).await?;
                // RETURNING promises no order, so rows are matched back by fingerprint.
                let mut by_fingerprint = std::collections::HashMap::with_capacity(returned.len());
                for r in &returned {
                    let fingerprint: String = r.try_get(1)?;
                    by_fingerprint.insert(fingerprint, (r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(2)?));
                }
                let written: Vec<(SignalId, i64)> = plan
                    .rows
                    .iter()
                    .map(|row| {
                        by_fingerprint.get(row.first.fingerprint.as_str()).copied().ok_or_else(|| {
                            sqlx::Error::Protocol(format!("upsert returned no row for {}", row.first.fingerprint))
                        })
                    })
                    .collect::<Result<_, _>>()?;

                let receipts = plan.new_receipts(items);
                if !receipts.is_empty() {
                    let mut insert = QueryBuilder::<$db>::new(
                        "INSERT INTO signal_receipts (source, external_id, signal_id, received_at) ",
                    );
                    insert.push_values(receipts, |mut b, (item, row)| {
                        let (source, external_id) = item.receipt_key().expect("receipts have keys");
                        b.push_bind(source.to_owned())
                            .push_bind(external_id.to_owned())
                            .push_bind(written[row].0)
                            .push_bind(item.received_at);
                    });
                    insert.push(" ON CONFLICT (source, external_id) DO NOTHING");
                    insert.build().execute(&mut *conn).await?;
                }
                Ok(plan.outcomes(&written))
            }

            pub(crate) async fn sweep(
                conn: &mut Conn,
                now: chrono::DateTime<chrono::Utc>,
                receipt_retention: chrono::Duration,
            ) -> Result<SweepReport, sqlx::Error> {
                let now = to_millis(now);
                let signals = sqlx::query("DELETE FROM signals WHERE expires_at < $1")
                    .bind(now)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                let receipts = sqlx::query("DELETE FROM signal_receipts WHERE received_at < $1")
                    .bind(now - receipt_retention.num_milliseconds())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                Ok(SweepReport { signals, receipts })
            }

            /// Whether `actor` wrote on `source` before the signal at `seq`.
            pub(crate) async fn actor_seen_before(
                conn: &mut Conn,
                source: &str,
                actor: &str,
                seq: i64,
            ) -> Result<bool, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("SELECT 1 FROM signals WHERE source = ");
                q.push_bind(source.to_owned()).push(" AND actor_id = ").push_bind(actor.to_owned());
                q.push(" AND seq < ").push_bind(seq).push(" LIMIT 1");
                Ok(q.build_query_scalar::<i32>().fetch_optional(&mut *conn).await?.is_some())
            }

            pub(crate) async fn list(
                conn: &mut Conn,
                query: &SignalQuery,
            ) -> Result<Vec<SignalRow>, sqlx::Error> {
                let mut sql = QueryBuilder::<$db>::new(format!("SELECT {SIGNAL_COLUMNS} FROM signals WHERE 1 = 1"));
                if let Some(since) = query.since {
                    sql.push(" AND last_seen >= ").push_bind(to_millis(since));
                }
                if let Some(source) = &query.source {
                    sql.push(" AND source = ").push_bind(source.as_str().to_owned());
                }
                if let Some(after) = query.after_seq {
                    sql.push(" AND seq > ").push_bind(after);
                }
                if query.owner_only {
                    // Spelled as the partial index `signals_owner_seq` is, so it is used.
                    sql.push(concat!(" AND ", $owner_signal));
                }
                // seq rises with every write, so descending seq is newest last-seen first.
                if query.after_seq.is_some() {
                    sql.push(" ORDER BY seq ASC");
                } else {
                    sql.push(" ORDER BY seq DESC");
                }
                sql.push(" LIMIT ").push_bind(i64::from(query.limit));
                sql.build_query_as::<SignalRow>().fetch_all(&mut *conn).await
            }

            pub(crate) async fn get(conn: &mut Conn, id: SignalId) -> Result<Option<SignalRow>, sqlx::Error> {
                let mut sql = QueryBuilder::<$db>::new(format!("SELECT {SIGNAL_COLUMNS} FROM signals WHERE id = "));
                sql.push_bind(id);
                sql.build_query_as::<SignalRow>().fetch_optional(&mut *conn).await
            }
        }
    };
}

backend_sql! {
    mod sqlite;
    db = sqlx::Sqlite;
    greatest = "max";
    seq_expr = "(SELECT COALESCE(MAX(seq), 0) FROM signals) + ";
    owner_signal = "actor_is_owner = 1";
}

backend_sql! {
    mod postgres;
    db = sqlx::Postgres;
    greatest = "GREATEST";
    seq_expr = "nextval('signal_seq') + 0 * ";
    owner_signal = "actor_is_owner";
}
