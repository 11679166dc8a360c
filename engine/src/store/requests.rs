//! What the owner's own requests change in place: a reminder found by the message that
//! asked for it, moved to a new text or time when that message is edited, or cancelled.
//! Every change is a new revision with its delivery event, so each posted copy (the
//! acknowledgement in chat) is edited to match.

use chrono::{DateTime, Utc};
use sqlx::{Acquire, Connection};

use super::{Pools, Store, StoreError};
use crate::clock::to_millis;
use crate::suggestion::{DeliveryKind, Suggestion, SuggestionId, SuggestionState};

macro_rules! requests_sql {
    (mod $module:ident; db = $db:ty;) => {
        pub(crate) mod $module {
            use sqlx::QueryBuilder;

            type Conn = <$db as sqlx::Database>::Connection;

            pub(crate) async fn signal_by_receipt(
                conn: &mut Conn,
                source: &str,
                external_id: &str,
            ) -> Result<Option<i64>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("SELECT signal_id FROM signal_receipts WHERE source = ");
                q.push_bind(source.to_owned()).push(" AND external_id = ").push_bind(external_id.to_owned());
                q.build_query_scalar().fetch_optional(&mut *conn).await
            }

            pub(crate) async fn id_by_key(conn: &mut Conn, key: &str) -> Result<Option<i64>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("SELECT id FROM suggestions WHERE idea_key = ");
                q.push_bind(key.to_owned());
                q.build_query_scalar().fetch_optional(&mut *conn).await
            }

            /// A new text, action and time for a reminder still open (scheduled, snoozed, or
            /// shown without a time); it waits for the new time. False if it was answered.
            #[allow(clippy::too_many_arguments)]
            pub(crate) async fn reschedule(
                conn: &mut Conn,
                id: i64,
                revision: i64,
                title: &str,
                why_now: &str,
                action: &str,
                due_at: i64,
                now: i64,
            ) -> Result<bool, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("UPDATE suggestions SET state = ");
                q.push_bind(crate::suggestion::SuggestionState::Scheduled.as_str());
                q.push(", title = ").push_bind(title.to_owned());
                q.push(", why_now = ").push_bind(why_now.to_owned());
                q.push(", action = ").push_bind(action.to_owned());
                q.push(", due_at = ").push_bind(due_at);
                q.push(", snoozed_until = NULL, revision = revision + 1, updated_at = ").push_bind(now);
                q.push(" WHERE id = ").push_bind(id).push(" AND revision = ").push_bind(revision);
                q.push(" AND state IN (");
                q.separated(", ")
                    .push_bind(crate::suggestion::SuggestionState::Scheduled.as_str())
                    .push_bind(crate::suggestion::SuggestionState::Snoozed.as_str())
                    .push_bind(crate::suggestion::SuggestionState::Active.as_str());
                q.push(")");
                Ok(q.build().execute(&mut *conn).await?.rows_affected() == 1)
            }
        }
    };
}

requests_sql! { mod sqlite; db = sqlx::Sqlite; }
requests_sql! { mod postgres; db = sqlx::Postgres; }

/// Runs `$body` in a write transaction with `$sql` the request SQL and `$intel` the
/// suggestion SQL of the store's backend.
macro_rules! in_request_tx {
    ($store:expr, |$tx:ident, $sql:ident, $intel:ident| $body:block) => {
        match &$store.inner.pools {
            Pools::Sqlite { write, .. } => {
                #[allow(unused_imports)]
                use self::sqlite as $sql;
                use super::intel_sql::sqlite as $intel;
                let mut conn = write.acquire().await?;
                let mut $tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                let value = $body;
                $tx.commit().await?;
                value
            }
            Pools::Postgres(pool) => {
                #[allow(unused_imports)]
                use self::postgres as $sql;
                use super::intel_sql::postgres as $intel;
                let mut conn = pool.acquire().await?;
                let mut $tx = conn.begin().await?;
                let value = $body;
                $tx.commit().await?;
                value
            }
        }
    };
}

impl Store {
    /// The suggestion raised for `key` (`"reminder:42"`), in whatever state.
    pub async fn suggestion_by_key(&self, key: &str) -> Result<Option<Suggestion>, StoreError> {
        let id = match &self.inner.pools {
            Pools::Sqlite { read, .. } => sqlite::id_by_key(&mut *read.acquire().await?, key).await?,
            Pools::Postgres(pool) => postgres::id_by_key(&mut *pool.acquire().await?, key).await?,
        };
        match id {
            Some(id) => self.suggestion(id).await,
            None => Ok(None),
        }
    }

    /// The signal a platform's message became (`source`, its `external_id`), while its
    /// receipt is kept.
    pub async fn signal_by_external_id(
        &self,
        source: &str,
        external_id: &str,
    ) -> Result<Option<crate::signal::SignalId>, StoreError> {
        Ok(match &self.inner.pools {
            Pools::Sqlite { read, .. } => {
                sqlite::signal_by_receipt(&mut *read.acquire().await?, source, external_id).await?
            }
            Pools::Postgres(pool) => {
                postgres::signal_by_receipt(&mut *pool.acquire().await?, source, external_id).await?
            }
        })
    }

    /// Moves an open reminder to a new text and time (its message was edited, or its time
    /// given). Returns false if it was answered meanwhile.
    pub async fn reschedule_reminder(
        &self,
        current: &Suggestion,
        title: &str,
        why_now: &str,
        action: &serde_json::Value,
        due_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = to_millis(self.clock().now());
        let action = action.to_string();
        let due = to_millis(due_at);
        Ok(in_request_tx!(self, |tx, sql, intel| {
            let moved =
                sql::reschedule(&mut tx, current.id, current.revision, title, why_now, &action, due, now).await?;
            if moved {
                intel::add_event(&mut tx, current.id, DeliveryKind::Update, current.revision + 1, now).await?;
            }
            moved
        }))
    }

    /// Cancels a suggestion nobody will answer now (the owner withdrew the request):
    /// `superseded`, decided by `by` via `via`, without teaching anything. False if it was
    /// answered or cancelled already.
    pub async fn cancel_suggestion(&self, id: SuggestionId, by: &str, via: &str) -> Result<bool, StoreError> {
        let Some(current) = self.suggestion(id).await? else { return Ok(false) };
        if !current.state.is_answerable() && current.state != SuggestionState::Snoozed {
            return Ok(false);
        }
        let now = to_millis(self.clock().now());
        Ok(in_request_tx!(self, |tx, _sql, intel| {
            let change = intel::Change { decided: Some((by, via)), ..intel::Change::default() };
            let cancelled =
                intel::transition(&mut tx, id, current.revision, SuggestionState::Superseded, now, change).await?;
            if cancelled {
                intel::add_event(&mut tx, id, DeliveryKind::Update, current.revision + 1, now).await?;
            }
            cancelled
        }))
    }
}
