//! The SQL of tasks, approvals and the audit log, written once and compiled per backend.

use loopgate_policies::{Effect, Risk};

use crate::actions::{Approval, ApprovalState, Task, TaskEvent, TaskState};
use crate::clock::from_millis;
use crate::suggestion::Decision;

pub(crate) const TASK_COLUMNS: &str = "t.id, t.action, t.kind, t.target, t.reason, t.origin, t.requested_by, \
     t.requested_via, t.state, t.risk, t.policy, t.policy_reason, t.output, t.error, t.created_at, t.updated_at, \
     a.id AS approval_id";

pub(crate) const APPROVAL_COLUMNS: &str = "a.id, a.task_id, a.state, a.created_at, a.expires_at, a.decided_at, \
     a.decided_by, a.decided_via, a.revision, t.action, t.reason, t.risk";

fn corrupt(what: &str, id: i64) -> sqlx::Error {
    sqlx::Error::Protocol(format!("{what} of {id} is unreadable"))
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TaskRow {
    pub(crate) id: i64,
    action: String,
    kind: String,
    target: String,
    reason: String,
    origin: String,
    requested_by: String,
    requested_via: String,
    pub(crate) state: String,
    risk: String,
    policy: String,
    policy_reason: String,
    output: Option<String>,
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
    approval_id: Option<i64>,
}

impl TaskRow {
    pub(crate) fn into_task(self, timeline: Vec<TaskEvent>) -> Result<Task, sqlx::Error> {
        let id = self.id;
        Ok(Task {
            action: serde_json::from_str(&self.action).map_err(|_| corrupt("the action", id))?,
            state: TaskState::parse(&self.state).ok_or_else(|| corrupt("the state", id))?,
            risk: Risk::parse(&self.risk).ok_or_else(|| corrupt("the risk", id))?,
            policy: Effect::parse(&self.policy).ok_or_else(|| corrupt("the policy", id))?,
            output: self.output.as_deref().map(serde_json::from_str).transpose().map_err(|_| corrupt("output", id))?,
            id,
            kind: self.kind,
            target: self.target,
            reason: self.reason,
            origin: self.origin,
            requested_by: self.requested_by,
            requested_via: self.requested_via,
            policy_reason: self.policy_reason,
            error: self.error,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
            timeline,
            approval_id: self.approval_id,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    at: i64,
    state: String,
    note: String,
}

impl EventRow {
    pub(crate) fn into_event(self) -> Result<TaskEvent, sqlx::Error> {
        Ok(TaskEvent {
            at: from_millis(self.at),
            state: TaskState::parse(&self.state)
                .ok_or_else(|| sqlx::Error::Protocol(format!("a task event has a bad state {:?}", self.state)))?,
            note: self.note,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ApprovalRow {
    pub(crate) id: i64,
    pub(crate) task_id: i64,
    state: String,
    created_at: i64,
    pub(crate) expires_at: i64,
    decided_at: Option<i64>,
    decided_by: Option<String>,
    decided_via: Option<String>,
    pub(crate) revision: i64,
    action: String,
    reason: String,
    risk: String,
}

impl ApprovalRow {
    pub(crate) fn into_approval(self) -> Result<Approval, sqlx::Error> {
        let id = self.id;
        let decision = match (self.decided_at, self.decided_by, self.decided_via) {
            (Some(at), Some(by), Some(via)) => Some(Decision { by, via, at: from_millis(at) }),
            _ => None,
        };
        Ok(Approval {
            state: ApprovalState::parse(&self.state).ok_or_else(|| corrupt("the approval state", id))?,
            action: serde_json::from_str(&self.action).map_err(|_| corrupt("the approval's action", id))?,
            risk: Risk::parse(&self.risk).ok_or_else(|| corrupt("the approval's risk", id))?,
            id,
            task_id: self.task_id,
            created_at: from_millis(self.created_at),
            expires_at: from_millis(self.expires_at),
            decision,
            revision: self.revision,
            reason: self.reason,
        })
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(serialize_with = "as_time")]
    pub at: i64,
    pub actor: String,
    pub via: String,
    pub event: String,
    pub subject: String,
    #[serde(serialize_with = "as_json")]
    pub detail: String,
}

fn as_time<S: serde::Serializer>(at: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&from_millis(*at), serializer)
}

fn as_json<S: serde::Serializer>(detail: &str, serializer: S) -> Result<S::Ok, S::Error> {
    let value: serde_json::Value = serde_json::from_str(detail).unwrap_or_else(|_| detail.into());
    serde::Serialize::serialize(&value, serializer)
}

/// Records a new task inside an open transaction, as policy said: queued to run, waiting
/// for an approval, or failed because policy denies it. Evaluates to the task's id.
macro_rules! record_task {
    ($actions:path, $tx:expr, $new:expr, $now:expr) => {{
        use $actions as actions;
        let new: &crate::actions::NewTask = $new;
        let now: i64 = $now;
        let (state, error) = match new.policy {
            loopgate_policies::Effect::Allow => (crate::actions::TaskState::Queued, None),
            loopgate_policies::Effect::Ask => (crate::actions::TaskState::AwaitingApproval, None),
            loopgate_policies::Effect::Deny => {
                (crate::actions::TaskState::Failed, Some(format!("denied by policy: {}", new.policy_reason)))
            }
        };
        let id = actions::insert_task($tx, new, state, error.as_deref(), now).await?;
        let note = match (&error, state) {
            (Some(error), _) => error.clone(),
            (None, crate::actions::TaskState::AwaitingApproval) => format!("waiting for approval: {}", new.policy_reason),
            (None, _) => format!("queued: {}", new.policy_reason),
        };
        actions::add_event($tx, id, state, &note, now).await?;
        let subject = format!("task:{id}");
        let detail = serde_json::json!({
            "action": new.action, "reason": new.reason, "origin": new.origin,
            "risk": new.risk, "policy": new.policy, "policy_reason": new.policy_reason,
        });
        actions::audit($tx, now, (&new.requested_by, &new.requested_via), "task.created", &subject, &detail).await?;
        if state == crate::actions::TaskState::AwaitingApproval {
            let approval = actions::insert_approval($tx, id, now, crate::clock::to_millis(new.approval_expires_at)).await?;
            actions::add_approval_event($tx, approval, crate::suggestion::DeliveryKind::Show, now).await?;
            let detail = serde_json::json!({"task": id, "expires_at": new.approval_expires_at});
            actions::audit($tx, now, crate::store::actions::SELF, "approval.requested", &format!("approval:{approval}"), &detail)
                .await?;
        }
        id
    }};
}

macro_rules! actions_sql {
    (mod $module:ident; db = $db:ty;) => {
        pub(crate) mod $module {
            use sqlx::QueryBuilder;

            use super::{APPROVAL_COLUMNS, ApprovalRow, AuditEntry, EventRow, TASK_COLUMNS, TaskRow};
            use crate::actions::{ApprovalState, NewTask, TaskState};
            /// Suggestions, for retiring the reminder about an approval once it is decided.
            pub(crate) use crate::store::intel_sql::$module as intel;
            /// The outbox, for a `delivering` task's parts.
            pub(crate) use crate::store::outbox_sql::$module as outbox;

            type Conn = <$db as sqlx::Database>::Connection;

            pub(crate) async fn insert_task(
                conn: &mut Conn,
                t: &NewTask,
                state: TaskState,
                error: Option<&str>,
                now: i64,
            ) -> Result<i64, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO tasks (action, kind, target, reason, origin, requested_by, requested_via, state, \
                     risk, policy, policy_reason, error, created_at, updated_at) VALUES (",
                );
                q.separated(", ")
                    .push_bind(t.action.to_string())
                    .push_bind(t.kind.clone())
                    .push_bind(t.target.clone())
                    .push_bind(t.reason.clone())
                    .push_bind(t.origin.clone())
                    .push_bind(t.requested_by.clone())
                    .push_bind(t.requested_via.clone())
                    .push_bind(state.as_str())
                    .push_bind(t.risk.as_str())
                    .push_bind(t.policy.as_str())
                    .push_bind(t.policy_reason.clone())
                    .push_bind(error.map(str::to_owned))
                    .push_bind(now)
                    .push_bind(now);
                q.push(") RETURNING id");
                q.build_query_scalar().fetch_one(&mut *conn).await
            }

            pub(crate) async fn add_event(
                conn: &mut Conn,
                task_id: i64,
                state: TaskState,
                note: &str,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("INSERT INTO task_events (task_id, at, state, note) VALUES (");
                q.separated(", ")
                    .push_bind(task_id)
                    .push_bind(now)
                    .push_bind(state.as_str())
                    .push_bind(note.to_owned());
                q.push(")");
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            /// Moves a task from one of `from` to `to` (compare-and-swap on its state).
            pub(crate) async fn move_task(
                conn: &mut Conn,
                id: i64,
                from: &[TaskState],
                to: TaskState,
                now: i64,
                output: Option<&str>,
                error: Option<&str>,
            ) -> Result<bool, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("UPDATE tasks SET state = ");
                q.push_bind(to.as_str());
                q.push(", updated_at = ").push_bind(now);
                if let Some(output) = output {
                    q.push(", output = ").push_bind(output.to_owned());
                }
                if let Some(error) = error {
                    q.push(", error = ").push_bind(error.to_owned());
                }
                q.push(" WHERE id = ").push_bind(id);
                q.push(" AND state IN (");
                let mut list = q.separated(", ");
                for state in from {
                    list.push_bind(state.as_str());
                }
                q.push(")");
                Ok(q.build().execute(&mut *conn).await?.rows_affected() == 1)
            }

            pub(crate) async fn task(conn: &mut Conn, id: i64) -> Result<Option<TaskRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!(
                    "SELECT {TASK_COLUMNS} FROM tasks t LEFT JOIN approvals a ON a.task_id = t.id WHERE t.id = "
                ));
                q.push_bind(id);
                q.build_query_as().fetch_optional(&mut *conn).await
            }

            pub(crate) async fn tasks(
                conn: &mut Conn,
                states: &[TaskState],
                limit: i64,
            ) -> Result<Vec<TaskRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!(
                    "SELECT {TASK_COLUMNS} FROM tasks t LEFT JOIN approvals a ON a.task_id = t.id"
                ));
                if !states.is_empty() {
                    q.push(" WHERE t.state IN (");
                    let mut list = q.separated(", ");
                    for state in states {
                        list.push_bind(state.as_str());
                    }
                    q.push(")");
                }
                q.push(" ORDER BY t.id DESC LIMIT ").push_bind(limit);
                q.build_query_as().fetch_all(&mut *conn).await
            }

            pub(crate) async fn events(conn: &mut Conn, task_id: i64) -> Result<Vec<EventRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("SELECT at, state, note FROM task_events WHERE task_id = ");
                q.push_bind(task_id);
                q.push(" ORDER BY id");
                q.build_query_as().fetch_all(&mut *conn).await
            }

            pub(crate) async fn insert_approval(
                conn: &mut Conn,
                task_id: i64,
                now: i64,
                expires_at: i64,
            ) -> Result<i64, sqlx::Error> {
                let mut q =
                    QueryBuilder::<$db>::new("INSERT INTO approvals (task_id, state, created_at, expires_at) VALUES (");
                q.separated(", ")
                    .push_bind(task_id)
                    .push_bind(ApprovalState::Pending.as_str())
                    .push_bind(now)
                    .push_bind(expires_at);
                q.push(") RETURNING id");
                q.build_query_scalar().fetch_one(&mut *conn).await
            }

            /// Tells channels an approval was requested, decided or expired.
            pub(crate) async fn add_approval_event(
                conn: &mut Conn,
                approval_id: i64,
                kind: crate::suggestion::DeliveryKind,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                let mut q =
                    QueryBuilder::<$db>::new("INSERT INTO approval_events (approval_id, event, created_at) VALUES (");
                q.separated(", ").push_bind(approval_id).push_bind(kind.as_str()).push_bind(now);
                q.push(")");
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            /// Approval events after a channel's cursor (key `approvals:<channel>`), oldest first.
            pub(crate) async fn approval_events_after(
                conn: &mut Conn,
                cursor: &str,
                limit: i64,
            ) -> Result<Vec<(i64, i64, String, i64)>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "SELECT id, approval_id, event, created_at FROM approval_events WHERE id > \
                     COALESCE((SELECT last_id FROM delivery_cursors WHERE channel = ",
                );
                q.push_bind(cursor.to_owned());
                q.push("), 0) ORDER BY id LIMIT ").push_bind(limit);
                q.build_query_as().fetch_all(&mut *conn).await
            }

            pub(crate) async fn approval(conn: &mut Conn, id: i64) -> Result<Option<ApprovalRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals a JOIN tasks t ON t.id = a.task_id WHERE a.id = "
                ));
                q.push_bind(id);
                q.build_query_as().fetch_optional(&mut *conn).await
            }

            /// Approvals in some states (all when empty), newest first; `expired_by`: only
            /// those whose expiry is at or before it.
            pub(crate) async fn approvals(
                conn: &mut Conn,
                states: &[ApprovalState],
                expired_by: Option<i64>,
                limit: i64,
            ) -> Result<Vec<ApprovalRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals a JOIN tasks t ON t.id = a.task_id WHERE 1 = 1"
                ));
                if !states.is_empty() {
                    q.push(" AND a.state IN (");
                    let mut list = q.separated(", ");
                    for state in states {
                        list.push_bind(state.as_str());
                    }
                    q.push(")");
                }
                if let Some(at) = expired_by {
                    q.push(" AND a.expires_at <= ").push_bind(at);
                }
                q.push(" ORDER BY a.id DESC LIMIT ").push_bind(limit);
                q.build_query_as().fetch_all(&mut *conn).await
            }

            /// Decides a pending approval still at `revision` (compare-and-swap).
            pub(crate) async fn decide(
                conn: &mut Conn,
                id: i64,
                revision: i64,
                to: ApprovalState,
                now: i64,
                by: &str,
                via: &str,
            ) -> Result<bool, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("UPDATE approvals SET state = ");
                q.push_bind(to.as_str());
                q.push(", revision = revision + 1, decided_at = ").push_bind(now);
                q.push(", decided_by = ").push_bind(by.to_owned());
                q.push(", decided_via = ").push_bind(via.to_owned());
                q.push(" WHERE id = ").push_bind(id);
                q.push(" AND revision = ").push_bind(revision);
                q.push(" AND state = ").push_bind(ApprovalState::Pending.as_str());
                Ok(q.build().execute(&mut *conn).await?.rows_affected() == 1)
            }

            pub(crate) async fn audit(
                conn: &mut Conn,
                now: i64,
                (actor, via): (&str, &str),
                event: &str,
                subject: &str,
                detail: &serde_json::Value,
            ) -> Result<(), sqlx::Error> {
                let mut q =
                    QueryBuilder::<$db>::new("INSERT INTO audit_log (at, actor, via, event, subject, detail) VALUES (");
                q.separated(", ")
                    .push_bind(now)
                    .push_bind(actor.to_owned())
                    .push_bind(via.to_owned())
                    .push_bind(event.to_owned())
                    .push_bind(subject.to_owned())
                    .push_bind(detail.to_string());
                q.push(")");
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            pub(crate) async fn audit_log(conn: &mut Conn, limit: i64) -> Result<Vec<AuditEntry>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "SELECT id, at, actor, via, event, subject, detail FROM audit_log ORDER BY id DESC LIMIT ",
                );
                q.push_bind(limit);
                q.build_query_as().fetch_all(&mut *conn).await
            }
        }
    };
}

actions_sql! { mod sqlite; db = sqlx::Sqlite; }
actions_sql! { mod postgres; db = sqlx::Postgres; }
