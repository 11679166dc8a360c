//! The durable outbox in the database: queue, claim (marking a send started before it
//! leaves), record the outcome, and settle sends a crash left in doubt.

use chrono::{DateTime, Utc};
use sqlx::{Acquire, Connection};

use super::outbox_sql::{self, OutboundRow};
use super::{Pools, Store, StoreError};
use crate::clock::{from_millis, to_millis};
use crate::outbox::{NewOutbound, Outbound, OutboundId, OutboundState, Verification};

/// Longest dedupe key and payload accepted: a key names a send, a payload is one message.
const MAX_KEY_BYTES: usize = 512;
const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// A send the outbox can take: a channel, a key of a sane length, a payload of one message.
fn validate(new: &NewOutbound) -> Result<(), StoreError> {
    if new.channel.trim().is_empty() {
        return Err(StoreError::InvalidOutbound("the channel is empty".into()));
    }
    if new.dedupe_key.trim().is_empty() || new.dedupe_key.len() > MAX_KEY_BYTES {
        return Err(StoreError::InvalidOutbound(format!("the dedupe key must be 1 to {MAX_KEY_BYTES} bytes")));
    }
    if new.payload.to_string().len() > MAX_PAYLOAD_BYTES {
        return Err(StoreError::InvalidOutbound(format!("the payload is over {MAX_PAYLOAD_BYTES} bytes")));
    }
    Ok(())
}

fn rows(rows: Vec<OutboundRow>) -> Result<Vec<Outbound>, StoreError> {
    Ok(rows.into_iter().map(OutboundRow::into_outbound).collect::<Result<_, _>>()?)
}

impl Store {
    /// Queues a send. Returns its id and whether it is new: the same `dedupe_key` again
    /// answers the first one's id and queues nothing.
    pub async fn enqueue(&self, new: &NewOutbound) -> Result<(OutboundId, bool), StoreError> {
        validate(new)?;
        let now = to_millis(self.clock().now());
        Ok(in_write_tx!(self, outbox_sql, |tx, sql| {
            match sql::insert(&mut tx, new, now).await? {
                Some(id) => (id, true),
                None => (sql::id_of(&mut tx, &new.dedupe_key).await?, false),
            }
        }))
    }

    /// Queues several sends in one commit, in order (the parts of one message): all of
    /// them or, on an error, none. Returns their ids; a key queued already answers its id.
    pub async fn enqueue_all(&self, all: &[NewOutbound]) -> Result<Vec<OutboundId>, StoreError> {
        all.iter().try_for_each(validate)?;
        let now = to_millis(self.clock().now());
        Ok(in_write_tx!(self, outbox_sql, |tx, sql| {
            let mut ids = Vec::with_capacity(all.len());
            for new in all {
                ids.push(match sql::insert(&mut tx, new, now).await? {
                    Some(id) => id,
                    None => sql::id_of(&mut tx, &new.dedupe_key).await?,
                });
            }
            ids
        }))
    }

    /// Takes up to `limit` of a channel's due sends, oldest first, and marks each started
    /// (`sending`, one more attempt) in the same commit, before any of them leaves.
    pub async fn claim_outbound(&self, channel: &str, limit: u32) -> Result<Vec<Outbound>, StoreError> {
        self.claim_outbound_holding(channel, limit, None).await
    }

    /// The same, leaving queued the sends whose key starts with `hold` (the kill switch
    /// holds what tasks queued, while replies and edits still go out).
    pub async fn claim_outbound_holding(
        &self,
        channel: &str,
        limit: u32,
        hold: Option<&str>,
    ) -> Result<Vec<Outbound>, StoreError> {
        let now = to_millis(self.clock().now());
        // Enough rows to look past the held ones at the head of the queue.
        let look = if hold.is_some() { 200 } else { i64::from(limit.max(1)) };
        let claimed = in_write_tx!(self, outbox_sql, |tx, sql| {
            let due = sql::list(&mut tx, channel, &[OutboundState::Queued], Some(now), look).await?;
            let mut claimed = Vec::with_capacity(due.len().min(limit as usize));
            for row in due {
                if claimed.len() >= limit.max(1) as usize {
                    break;
                }
                if hold.is_some_and(|prefix| row.dedupe_key.starts_with(prefix)) {
                    continue;
                }
                let mut outbound = row.into_outbound()?;
                if sql::start(&mut tx, outbound.id, now).await? {
                    outbound.state = OutboundState::Sending;
                    outbound.attempts += 1;
                    outbound.started_at = Some(from_millis(now));
                    claimed.push(outbound);
                }
            }
            claimed
        });
        Ok(claimed)
    }

    /// Records a send that went through. False if it was not `sending` (recorded already).
    pub async fn outbound_sent(&self, id: OutboundId, platform_ref: &str) -> Result<bool, StoreError> {
        self.finish_outbound(id, OutboundState::Sending, OutboundState::Sent, None, Some(platform_ref), None).await
    }

    /// The task a send delivers a part of (`task:{id}:message[:n]`), if any.
    pub fn task_of(outbound: &Outbound) -> Option<crate::actions::TaskId> {
        let rest = outbound.dedupe_key.strip_prefix("task:")?;
        let (id, what) = rest.split_once(':')?;
        (what == "message" || what.starts_with("message:")).then(|| id.parse().ok()).flatten()
    }

    /// Puts a failed send back in the queue until `at`.
    pub async fn outbound_retry(&self, id: OutboundId, at: DateTime<Utc>, error: &str) -> Result<bool, StoreError> {
        let at = Some(to_millis(at));
        self.finish_outbound(id, OutboundState::Sending, OutboundState::Queued, at, None, Some(error)).await
    }

    /// Gives a send up for good, with the reason.
    pub async fn outbound_failed(&self, id: OutboundId, error: &str) -> Result<bool, StoreError> {
        self.finish_outbound(id, OutboundState::Sending, OutboundState::Failed, None, None, Some(error)).await
    }

    /// Sends a crash left between started and recorded: every `sending` row of a channel.
    /// Call it before the channel's worker claims anything.
    pub async fn outbound_in_doubt(&self, channel: &str) -> Result<Vec<Outbound>, StoreError> {
        let found = on_read!(self, outbox_sql, |conn, sql| {
            sql::list(&mut conn, channel, &[OutboundState::Sending], None, 10_000).await?
        });
        rows(found)
    }

    /// Settles a send found in doubt with what the platform could tell.
    pub async fn settle_in_doubt(&self, id: OutboundId, verification: &Verification) -> Result<bool, StoreError> {
        let now = Some(to_millis(self.clock().now()));
        let (from, sending) = (OutboundState::Sending, OutboundState::Queued);
        match verification {
            Verification::Delivered { platform_ref } => {
                self.finish_outbound(id, from, OutboundState::Sent, None, Some(platform_ref), None).await
            }
            Verification::SafeToResend => self.finish_outbound(id, from, sending, now, None, None).await,
            Verification::Unknown => {
                let why = "interrupted between sending and recording, and the platform cannot tell whether it \
                           arrived: not sent again";
                self.finish_outbound(id, from, OutboundState::Uncertain, None, None, Some(why)).await
            }
        }
    }

    async fn finish_outbound(
        &self,
        id: OutboundId,
        from: OutboundState,
        to: OutboundState,
        next_attempt_at: Option<i64>,
        platform_ref: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = to_millis(self.clock().now());
        Ok(in_write_tx!(self, outbox_sql, |tx, sql| {
            sql::finish(&mut tx, id, from, to, now, next_attempt_at, platform_ref, error).await?
        }))
    }

    pub async fn outbound(&self, id: OutboundId) -> Result<Option<Outbound>, StoreError> {
        let row = on_read!(self, outbox_sql, |conn, sql| { sql::get(&mut conn, id).await? });
        Ok(row.map(OutboundRow::into_outbound).transpose()?)
    }

    /// A channel's sends in the given states (all states when empty), oldest first.
    pub async fn outbox(
        &self,
        channel: &str,
        states: &[OutboundState],
        limit: u32,
    ) -> Result<Vec<Outbound>, StoreError> {
        let found = on_read!(self, outbox_sql, |conn, sql| {
            sql::list(&mut conn, channel, states, None, i64::from(limit.max(1))).await?
        });
        rows(found)
    }

    /// The send queued under `dedupe_key` on `channel`, in whatever state it is.
    pub async fn outbound_by_key(&self, channel: &str, dedupe_key: &str) -> Result<Option<Outbound>, StoreError> {
        let row =
            on_read!(self, outbox_sql, |conn, sql| { sql::find(&mut conn, channel, "dedupe_key", dedupe_key).await? });
        Ok(row.map(OutboundRow::into_outbound).transpose()?)
    }

    /// The send the platform knows as `platform_ref` (the message a reply answers).
    pub async fn outbound_by_ref(&self, channel: &str, platform_ref: &str) -> Result<Option<Outbound>, StoreError> {
        let row = on_read!(self, outbox_sql, |conn, sql| {
            sql::find(&mut conn, channel, "platform_ref", platform_ref).await?
        });
        Ok(row.map(OutboundRow::into_outbound).transpose()?)
    }

    /// A small fact a channel keeps across restarts (Telegram's update offset).
    pub async fn channel_state(&self, channel: &str, key: &str) -> Result<Option<String>, StoreError> {
        Ok(on_read!(self, outbox_sql, |conn, sql| { sql::state_value(&mut conn, channel, key).await? }))
    }

    pub async fn set_channel_state(&self, channel: &str, key: &str, value: &str) -> Result<(), StoreError> {
        let now = to_millis(self.clock().now());
        in_write_tx!(self, outbox_sql, |tx, sql| { sql::set_state_value(&mut tx, channel, key, value, now).await? });
        Ok(())
    }

    /// When the channel's next queued send is due, if it has one.
    pub async fn next_outbound_due(&self, channel: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at = on_read!(self, outbox_sql, |conn, sql| { sql::next_due(&mut conn, channel).await? });
        Ok(at.map(from_millis))
    }
}
