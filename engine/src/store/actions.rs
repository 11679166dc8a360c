//! Tasks, approvals and the audit log in the database. Every change of a task or approval
//! commits with its timeline entry and its audit line.

use sqlx::{Acquire, Connection};

use super::actions_sql::{self, AuditEntry};
use super::{Pools, Store, StoreError};
use crate::actions::{
    Approval, ApprovalDelivery, ApprovalId, ApprovalState, DecideError, NewTask, Task, TaskId, TaskState, Verdict,
};
use crate::clock::to_millis;
use crate::suggestion::{DeliveryKind, Responder, SuggestionState};

/// Who "does" what loopgate does by itself (expiry, recovery), in the audit log.
pub(crate) const SELF: (&str, &str) = ("loopgate", "engine");

/// Loads one task with its timeline.
macro_rules! load_task {
    ($sql:ident, $conn:expr, $id:expr) => {{
        match $sql::task($conn, $id).await? {
            None => None,
            Some(row) => Some(with_timeline!($sql, $conn, row)),
        }
    }};
}

/// A task row read, with its timeline read after it.
macro_rules! with_timeline {
    ($sql:ident, $conn:expr, $row:expr) => {{
        let row = $row;
        let events = $sql::events($conn, row.id).await?;
        row.into_task(events.into_iter().map(|e| e.into_event()).collect::<Result<Vec<_>, _>>()?)?
    }};
}

/// Supersedes the open suggestion reminding the owner of an approval (an
/// `ageing_approval`, topic `approval:<id>`) once it is decided or expired, so every
/// surface of that reminder is updated too.
macro_rules! retire_reminder {
    ($sql:ident, $tx:expr, $id:expr, $at:expr) => {{
        for old in $sql::intel::open_on_topic($tx, &format!("approval:{}", $id)).await? {
            let change = $sql::intel::Change::default();
            if $sql::intel::transition($tx, old.id, old.revision, SuggestionState::Superseded, $at, change).await? {
                $sql::intel::add_event($tx, old.id, DeliveryKind::Update, old.revision + 1, $at).await?;
            }
        }
    }};
}

/// Expires one pending approval and cancels its task, inside an open transaction.
macro_rules! expire_one {
    ($sql:ident, $tx:expr, $id:expr, $revision:expr, $task_id:expr, $at:expr) => {{
        let (by, via) = SELF;
        if $sql::decide($tx, $id, $revision, ApprovalState::Expired, $at, by, via).await? {
            let why = "the approval expired before anyone decided: not run";
            $sql::move_task($tx, $task_id, &[TaskState::AwaitingApproval], TaskState::Cancelled, $at, None, Some(why))
                .await?;
            $sql::add_event($tx, $task_id, TaskState::Cancelled, why, $at).await?;
            let detail = serde_json::json!({"task": $task_id});
            $sql::audit($tx, $at, SELF, "approval.expired", &format!("approval:{}", $id), &detail).await?;
            $sql::add_approval_event($tx, $id, DeliveryKind::Update, $at).await?;
            retire_reminder!($sql, $tx, $id, $at);
        }
    }};
}

impl Store {
    /// Records a task as policy decided it (see [`NewTask::policy`]).
    pub async fn record_task(&self, new: &NewTask) -> Result<Task, StoreError> {
        let now = to_millis(self.clock().now());
        let task = in_write_tx!(self, actions_sql, |tx, sql| {
            let id = record_task!(sql, &mut tx, new, now);
            load_task!(sql, &mut tx, id)
        });
        task.ok_or_else(|| StoreError::Database(std::sync::Arc::new(sqlx::Error::RowNotFound)))
    }

    pub async fn task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        Ok(on_read!(self, actions_sql, |conn, sql| { load_task!(sql, &mut conn, id) }))
    }

    /// Tasks in some states (all when empty), newest first, each with its timeline.
    pub async fn tasks(&self, states: &[TaskState], limit: u32) -> Result<Vec<Task>, StoreError> {
        Ok(on_read!(self, actions_sql, |conn, sql| {
            let rows = sql::tasks(&mut conn, states, i64::from(limit.max(1))).await?;
            let mut tasks = Vec::with_capacity(rows.len());
            for row in rows {
                tasks.push(with_timeline!(sql, &mut conn, row));
            }
            tasks
        }))
    }

    /// Marks a queued task running, in its own commit before its side effect starts. None
    /// if it was not queued (someone else took it, or it was cancelled).
    pub async fn start_task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        let now = to_millis(self.clock().now());
        Ok(in_write_tx!(self, actions_sql, |tx, sql| {
            if sql::move_task(&mut tx, id, &[TaskState::Queued], TaskState::Running, now, None, None).await? {
                sql::add_event(&mut tx, id, TaskState::Running, "running", now).await?;
                load_task!(sql, &mut tx, id)
            } else {
                None
            }
        }))
    }

    /// Records how a running task ended, with an audit line for its side effect.
    pub async fn finish_task(&self, id: TaskId, result: &Result<serde_json::Value, String>) -> Result<(), StoreError> {
        let now = to_millis(self.clock().now());
        let (to, output, error, note) = match result {
            Ok(output) => (TaskState::Succeeded, Some(output.to_string()), None, "succeeded".to_owned()),
            Err(error) => (TaskState::Failed, None, Some(error.clone()), format!("failed: {error}")),
        };
        in_write_tx!(self, actions_sql, |tx, sql| {
            if sql::move_task(&mut tx, id, &[TaskState::Running], to, now, output.as_deref(), error.as_deref()).await? {
                sql::add_event(&mut tx, id, to, &note, now).await?;
                let detail = match result {
                    Ok(output) => serde_json::json!({"output": output}),
                    Err(error) => serde_json::json!({"error": error}),
                };
                sql::audit(&mut tx, now, SELF, &format!("task.{}", to.as_str()), &format!("task:{id}"), &detail)
                    .await?;
            }
        });
        Ok(())
    }

    /// A running task whose effect is now queued in a channel's outbox: `delivering`, with
    /// what was queued as its output so far.
    pub async fn task_delivering(&self, id: TaskId, output: &serde_json::Value) -> Result<(), StoreError> {
        let now = to_millis(self.clock().now());
        let output = output.to_string();
        in_write_tx!(self, actions_sql, |tx, sql| {
            let to = TaskState::Delivering;
            if sql::move_task(&mut tx, id, &[TaskState::Running], to, now, Some(&output), None).await? {
                sql::add_event(&mut tx, id, to, "queued for delivery", now).await?;
            }
        });
        Ok(())
    }

    /// Moves a `delivering` task on once its outbox parts say how it went: `succeeded`
    /// when every part is sent, `failed` with the platform's words when one was given up
    /// or may not have arrived. Returns the task's state; nothing changes while parts wait.
    pub async fn settle_task_delivery(&self, id: TaskId) -> Result<Option<TaskState>, StoreError> {
        use crate::outbox::OutboundState;
        let now = to_millis(self.clock().now());
        Ok(in_write_tx!(self, actions_sql, |tx, sql| {
            let parts = sql::outbox::task_parts(&mut tx, id).await?;
            let total = parts.len();
            let sent = parts.iter().filter(|p| p.state == OutboundState::Sent.as_str()).count();
            let lost = parts.iter().enumerate().find(|(_, p)| {
                p.state == OutboundState::Failed.as_str() || p.state == OutboundState::Uncertain.as_str()
            });
            let (to, note, error) = match lost {
                Some((n, part)) => {
                    // The parts after a lost one would read as a message with a hole.
                    for later in parts.iter().skip(n + 1).filter(|p| p.state == OutboundState::Queued.as_str()) {
                        let why = format!("not sent: part {} of {total} was not delivered", n + 1);
                        let (queued, failed) = (OutboundState::Queued, OutboundState::Failed);
                        sql::outbox::finish(&mut tx, later.id, queued, failed, now, None, None, Some(&why)).await?;
                    }
                    let why = part.last_error.clone().unwrap_or_else(|| part.state.clone());
                    let error = if total > 1 {
                        format!("not delivered: part {} of {total} ({sent} sent): {why}", n + 1)
                    } else {
                        format!("not delivered: {why}")
                    };
                    (TaskState::Failed, format!("failed: {error}"), Some(error))
                }
                None if total > 0 && sent == total => {
                    let note = if total > 1 { format!("delivered in {total} parts") } else { "delivered".to_owned() };
                    (TaskState::Succeeded, note, None)
                }
                None => {
                    let state = sql::task(&mut tx, id).await?.map(|t| t.state);
                    return Ok(state.and_then(|s| TaskState::parse(&s)));
                }
            };
            if sql::move_task(&mut tx, id, &[TaskState::Delivering], to, now, None, error.as_deref()).await? {
                sql::add_event(&mut tx, id, to, &note, now).await?;
                let detail = serde_json::json!({"parts": total, "sent": sent, "error": error});
                sql::audit(&mut tx, now, SELF, &format!("task.{}", to.as_str()), &format!("task:{id}"), &detail)
                    .await?;
            }
            let state = sql::task(&mut tx, id).await?.map(|t| t.state);
            state.and_then(|s| TaskState::parse(&s))
        }))
    }

    /// After a restart: tasks left `running` may have had their effect, so they are failed
    /// (saying so), never run again. Returns their ids.
    pub async fn fail_interrupted_tasks(&self) -> Result<Vec<TaskId>, StoreError> {
        let now = to_millis(self.clock().now());
        let why = "interrupted by a restart while running; not run again, since its effect may already have happened";
        Ok(in_write_tx!(self, actions_sql, |tx, sql| {
            let mut failed = Vec::new();
            for row in sql::tasks(&mut tx, &[TaskState::Running], 10_000).await? {
                // Its message was queued before the crash: the outbox will deliver it, and
                // the parts settle the task.
                if !sql::outbox::task_parts(&mut tx, row.id).await?.is_empty() {
                    let to = TaskState::Delivering;
                    if sql::move_task(&mut tx, row.id, &[TaskState::Running], to, now, None, None).await? {
                        sql::add_event(&mut tx, row.id, to, "queued for delivery before a restart", now).await?;
                    }
                    continue;
                }
                if sql::move_task(&mut tx, row.id, &[TaskState::Running], TaskState::Failed, now, None, Some(why))
                    .await?
                {
                    sql::add_event(&mut tx, row.id, TaskState::Failed, why, now).await?;
                    sql::audit(
                        &mut tx,
                        now,
                        SELF,
                        "task.interrupted",
                        &format!("task:{}", row.id),
                        &serde_json::json!({}),
                    )
                    .await?;
                    failed.push(row.id);
                }
            }
            failed
        }))
    }

    pub async fn approval(&self, id: ApprovalId) -> Result<Option<Approval>, StoreError> {
        let row = on_read!(self, actions_sql, |conn, sql| { sql::approval(&mut conn, id).await? });
        Ok(row.map(|r| r.into_approval()).transpose()?)
    }

    /// Approvals in some states (all when empty), newest first.
    pub async fn approvals(&self, states: &[ApprovalState], limit: u32) -> Result<Vec<Approval>, StoreError> {
        let rows = on_read!(self, actions_sql, |conn, sql| {
            sql::approvals(&mut conn, states, None, i64::from(limit.max(1))).await?
        });
        Ok(rows.into_iter().map(|r| r.into_approval()).collect::<Result<_, _>>()?)
    }

    /// Decides a pending approval: the first decision wins (compare-and-swap), a second
    /// learns who decided, where and when. Approving queues the task; denying cancels it.
    /// An approval past its expiry is expired here and then, never approved.
    pub async fn decide_approval(
        &self,
        id: ApprovalId,
        verdict: Verdict,
        responder: &Responder,
    ) -> Result<(Approval, Task), DecideError> {
        let now = self.clock().now();
        let at = to_millis(now);
        let result: Result<(Approval, Task), DecideError> = in_write_tx!(self, actions_sql, |tx, sql| {
            let Some(row) = sql::approval(&mut tx, id).await? else { return Err(DecideError::NotFound(id)) };
            let (task_id, revision, expires_at) = (row.task_id, row.revision, row.expires_at);
            let current = row.into_approval()?;
            if current.state != ApprovalState::Pending {
                Err(DecideError::AlreadyDecided { state: current.state, decision: current.decision })
            } else if expires_at <= at {
                expire_one!(sql, &mut tx, id, revision, task_id, at);
                let now_row = sql::approval(&mut tx, id).await?.ok_or(DecideError::NotFound(id))?.into_approval()?;
                Err(DecideError::AlreadyDecided { state: now_row.state, decision: now_row.decision })
            } else {
                let (to, task_to, note) = match verdict {
                    Verdict::Approve => (ApprovalState::Approved, TaskState::Queued, "approved"),
                    Verdict::Deny => (ApprovalState::Denied, TaskState::Cancelled, "denied"),
                };
                if !sql::decide(&mut tx, id, revision, to, at, &responder.by, &responder.via).await? {
                    let now_row =
                        sql::approval(&mut tx, id).await?.ok_or(DecideError::NotFound(id))?.into_approval()?;
                    Err(DecideError::AlreadyDecided { state: now_row.state, decision: now_row.decision })
                } else {
                    let note = format!("{note} via {} by {}", responder.via, responder.by);
                    let from = [TaskState::AwaitingApproval];
                    sql::move_task(&mut tx, task_id, &from, task_to, at, None, None).await?;
                    sql::add_event(&mut tx, task_id, task_to, &note, at).await?;
                    let detail = serde_json::json!({"task": task_id});
                    let event = format!("approval.{}", to.as_str());
                    sql::audit(
                        &mut tx,
                        at,
                        (&responder.by, &responder.via),
                        &event,
                        &format!("approval:{id}"),
                        &detail,
                    )
                    .await?;
                    sql::add_approval_event(&mut tx, id, DeliveryKind::Decided, at).await?;
                    retire_reminder!(sql, &mut tx, id, at);
                    let approval =
                        sql::approval(&mut tx, id).await?.ok_or(DecideError::NotFound(id))?.into_approval()?;
                    let task = load_task!(sql, &mut tx, task_id).ok_or(DecideError::NotFound(id))?;
                    Ok((approval, task))
                }
            }
        });
        result
    }

    /// Expires every pending approval past its time and cancels its task: an approval
    /// nobody gave is never taken as given. Returns the expired ids.
    pub async fn expire_approvals(&self) -> Result<Vec<ApprovalId>, StoreError> {
        let at = to_millis(self.clock().now());
        // Every pulse asks; the write lock is taken only when something is due.
        let due = on_read!(self, actions_sql, |conn, sql| {
            sql::approvals(&mut conn, &[ApprovalState::Pending], Some(at), 1).await?
        });
        if due.is_empty() {
            return Ok(Vec::new());
        }
        Ok(in_write_tx!(self, actions_sql, |tx, sql| {
            let due = sql::approvals(&mut tx, &[ApprovalState::Pending], Some(at), 10_000).await?;
            let mut expired = Vec::with_capacity(due.len());
            for row in due {
                expire_one!(sql, &mut tx, row.id, row.revision, row.task_id, at);
                expired.push(row.id);
            }
            expired
        }))
    }

    /// Approval events `channel` has not acknowledged yet, oldest first, each with the
    /// approval as it is now.
    pub async fn approval_deliveries(&self, channel: &str, limit: u32) -> Result<Vec<ApprovalDelivery>, StoreError> {
        let cursor = format!("approvals:{channel}");
        Ok(on_read!(self, actions_sql, |conn, sql| {
            let events = sql::approval_events_after(&mut conn, &cursor, i64::from(limit.max(1))).await?;
            let mut deliveries = Vec::with_capacity(events.len());
            for (event_id, approval_id, kind, created_at) in events {
                let Some(row) = sql::approval(&mut conn, approval_id).await? else { continue };
                let kind = DeliveryKind::parse(&kind)
                    .ok_or_else(|| sqlx::Error::Protocol(format!("approval event {event_id} has a bad kind")))?;
                deliveries.push(ApprovalDelivery {
                    id: event_id,
                    kind,
                    created_at: crate::clock::from_millis(created_at),
                    approval: row.into_approval()?,
                });
            }
            deliveries
        }))
    }

    /// Marks `channel`'s approval events up to `up_to` handled; the cursor never moves back.
    pub async fn ack_approval_deliveries(&self, channel: &str, up_to: i64) -> Result<(), StoreError> {
        let cursor = format!("approvals:{channel}");
        in_write_tx!(self, actions_sql, |tx, sql| { sql::intel::ack_events(&mut tx, &cursor, up_to).await? });
        Ok(())
    }

    /// Every decision and side effect, newest first.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(on_read!(self, actions_sql, |conn, sql| { sql::audit_log(&mut conn, i64::from(limit.max(1))).await? }))
    }
}
