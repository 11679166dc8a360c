//! The outbox's SQL, written once and compiled per backend like `intel_sql.rs`.

use crate::clock::from_millis;
use crate::outbox::{Outbound, OutboundState};

pub(crate) const OUTBOX_COLUMNS: &str = "id, channel, dedupe_key, payload, state, attempts, next_attempt_at, \
     created_at, started_at, finished_at, platform_ref, last_error";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OutboundRow {
    pub(crate) id: i64,
    channel: String,
    pub(crate) dedupe_key: String,
    payload: String,
    pub(crate) state: String,
    attempts: i64,
    next_attempt_at: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    platform_ref: Option<String>,
    pub(crate) last_error: Option<String>,
}

impl OutboundRow {
    pub(crate) fn into_outbound(self) -> Result<Outbound, sqlx::Error> {
        let corrupt = |what: &str| sqlx::Error::Protocol(format!("outbox row {} has a bad {what}", self.id));
        Ok(Outbound {
            payload: serde_json::from_str(&self.payload).map_err(|_| corrupt("payload"))?,
            state: OutboundState::parse(&self.state).ok_or_else(|| corrupt("state"))?,
            attempts: u32::try_from(self.attempts).map_err(|_| corrupt("attempt count"))?,
            id: self.id,
            channel: self.channel,
            dedupe_key: self.dedupe_key,
            next_attempt_at: from_millis(self.next_attempt_at),
            created_at: from_millis(self.created_at),
            started_at: self.started_at.map(from_millis),
            finished_at: self.finished_at.map(from_millis),
            platform_ref: self.platform_ref,
            last_error: self.last_error,
        })
    }
}

macro_rules! outbox_sql {
    (mod $module:ident; db = $db:ty;) => {
        pub(crate) mod $module {
            use sqlx::QueryBuilder;

            use super::{OUTBOX_COLUMNS, OutboundRow};
            use crate::outbox::{NewOutbound, OutboundState};

            type Conn = <$db as sqlx::Database>::Connection;

            /// Queues unless the same send is queued already; the new id, if it is new.
            pub(crate) async fn insert(
                conn: &mut Conn,
                new: &NewOutbound,
                now: i64,
            ) -> Result<Option<i64>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO outbox (channel, dedupe_key, payload, state, next_attempt_at, created_at) VALUES (",
                );
                q.separated(", ")
                    .push_bind(new.channel.clone())
                    .push_bind(new.dedupe_key.clone())
                    .push_bind(new.payload.to_string())
                    .push_bind(OutboundState::Queued.as_str())
                    .push_bind(now)
                    .push_bind(now);
                q.push(") ON CONFLICT (dedupe_key) DO NOTHING RETURNING id");
                q.build_query_scalar().fetch_optional(&mut *conn).await
            }

            pub(crate) async fn id_of(conn: &mut Conn, dedupe_key: &str) -> Result<i64, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("SELECT id FROM outbox WHERE dedupe_key = ");
                q.push_bind(dedupe_key.to_owned());
                q.build_query_scalar().fetch_one(&mut *conn).await
            }

            pub(crate) async fn get(conn: &mut Conn, id: i64) -> Result<Option<OutboundRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = "));
                q.push_bind(id);
                q.build_query_as().fetch_optional(&mut *conn).await
            }

            /// The send queued under a dedupe key, or the one a platform id belongs to.
            pub(crate) async fn find(
                conn: &mut Conn,
                channel: &str,
                column: &'static str,
                value: &str,
            ) -> Result<Option<OutboundRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE channel = "));
                q.push_bind(channel.to_owned());
                q.push(format!(" AND {column} = ")).push_bind(value.to_owned());
                q.push(" ORDER BY id DESC LIMIT 1");
                q.build_query_as().fetch_optional(&mut *conn).await
            }

            /// The parts a task's message was queued as (`task:{id}:message` and
            /// `task:{id}:message:{n}`), in order.
            pub(crate) async fn task_parts(conn: &mut Conn, task: i64) -> Result<Vec<OutboundRow>, sqlx::Error> {
                let key = format!("task:{task}:message");
                let mut q = QueryBuilder::<$db>::new(format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE dedupe_key = "));
                q.push_bind(key.clone());
                q.push(" OR dedupe_key LIKE ").push_bind(format!("{key}:%"));
                q.push(" ORDER BY id");
                q.build_query_as().fetch_all(&mut *conn).await
            }

            /// A small per-channel fact (an update offset), if set.
            pub(crate) async fn state_value(conn: &mut Conn, channel: &str, key: &str) -> Result<Option<String>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("SELECT value FROM channel_state WHERE channel = ");
                q.push_bind(channel.to_owned()).push(" AND key = ").push_bind(key.to_owned());
                q.build_query_scalar().fetch_optional(&mut *conn).await
            }

            pub(crate) async fn set_state_value(
                conn: &mut Conn,
                channel: &str,
                key: &str,
                value: &str,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("INSERT INTO channel_state (channel, key, value, updated_at) VALUES (");
                q.separated(", ").push_bind(channel.to_owned()).push_bind(key.to_owned()).push_bind(value.to_owned()).push_bind(now);
                q.push(") ON CONFLICT (channel, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at");
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            /// A channel's rows in some states, oldest first (`due_by`: only those due by then).
            pub(crate) async fn list(
                conn: &mut Conn,
                channel: &str,
                states: &[OutboundState],
                due_by: Option<i64>,
                limit: i64,
            ) -> Result<Vec<OutboundRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE channel = "));
                q.push_bind(channel.to_owned());
                if !states.is_empty() {
                    q.push(" AND state IN (");
                    let mut list = q.separated(", ");
                    for state in states {
                        list.push_bind(state.as_str());
                    }
                    q.push(")");
                }
                if let Some(due_by) = due_by {
                    q.push(" AND next_attempt_at <= ").push_bind(due_by);
                }
                q.push(" ORDER BY id LIMIT ").push_bind(limit);
                q.build_query_as().fetch_all(&mut *conn).await
            }

            pub(crate) async fn next_due(conn: &mut Conn, channel: &str) -> Result<Option<i64>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("SELECT MIN(next_attempt_at) FROM outbox WHERE channel = ");
                q.push_bind(channel.to_owned());
                q.push(" AND state = ").push_bind(OutboundState::Queued.as_str());
                q.build_query_scalar().fetch_one(&mut *conn).await
            }

            /// Marks a queued row started; false if it was not queued any more.
            pub(crate) async fn start(conn: &mut Conn, id: i64, now: i64) -> Result<bool, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("UPDATE outbox SET state = ");
                q.push_bind(OutboundState::Sending.as_str());
                q.push(", attempts = attempts + 1, started_at = ").push_bind(now);
                q.push(" WHERE id = ").push_bind(id);
                q.push(" AND state = ").push_bind(OutboundState::Queued.as_str());
                Ok(q.build().execute(&mut *conn).await?.rows_affected() == 1)
            }

            /// Moves a row from `from` to `to` with what is known now (compare-and-swap on
            /// the state, so a late or repeated record changes nothing).
            #[allow(clippy::too_many_arguments)]
            pub(crate) async fn finish(
                conn: &mut Conn,
                id: i64,
                from: OutboundState,
                to: OutboundState,
                now: i64,
                next_attempt_at: Option<i64>,
                platform_ref: Option<&str>,
                error: Option<&str>,
            ) -> Result<bool, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("UPDATE outbox SET state = ");
                q.push_bind(to.as_str());
                match next_attempt_at {
                    Some(at) => {
                        q.push(", next_attempt_at = ").push_bind(at);
                    }
                    None => {
                        q.push(", finished_at = ").push_bind(now);
                    }
                }
                if let Some(platform_ref) = platform_ref {
                    q.push(", platform_ref = ").push_bind(platform_ref.to_owned());
                }
                if let Some(error) = error {
                    q.push(", last_error = ").push_bind(error.to_owned());
                }
                q.push(" WHERE id = ").push_bind(id);
                q.push(" AND state = ").push_bind(from.as_str());
                Ok(q.build().execute(&mut *conn).await?.rows_affected() == 1)
            }
        }
    };
}

outbox_sql! { mod sqlite; db = sqlx::Sqlite; }
outbox_sql! { mod postgres; db = sqlx::Postgres; }
