//! Actions running as tasks, through policy, behind approvals.
//!
//! ```text
//! task:      queued ──▶ running ──▶ succeeded | failed
//!              │  ▲
//!   (policy ask)  └── approved
//!              ▼
//!        awaiting_approval ──denied / expired──▶ cancelled
//!   (policy deny) ─────────────────────────────▶ failed
//! approval:  pending ──▶ approved | denied | expired
//! ```
//!
//! A task is created in the same commit as what asked for it (the owner acting on a
//! suggestion), so an acknowledged "act" is never lost; a task found `queued` after a
//! restart runs then. A task that was `running` when the process died is not run again:
//! its side effect may have happened, so it is failed with that said. Approvals are
//! decided once (compare-and-swap on their revision); one that expires never runs.

use std::fmt;

use chrono::{DateTime, Utc};
use loopgate_policies::{Effect, Risk};
use serde::Serialize;

use crate::suggestion::Decision;

pub type TaskId = i64;
pub type ApprovalId = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Queued,
    AwaitingApproval,
    Running,
    /// Its effect is queued in a channel's durable outbox: it succeeds once every part is
    /// sent, and fails with the platform's words if one is given up. Survives restarts.
    Delivering,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::AwaitingApproval,
        TaskState::Running,
        TaskState::Delivering,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::AwaitingApproval => "awaiting_approval",
            TaskState::Running => "running",
            TaskState::Delivering => "delivering",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl ApprovalState {
    pub const ALL: [ApprovalState; 4] =
        [ApprovalState::Pending, ApprovalState::Approved, ApprovalState::Denied, ApprovalState::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
        }
    }

    pub fn parse(value: &str) -> Option<ApprovalState> {
        ApprovalState::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a task's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskEvent {
    pub at: DateTime<Utc>,
    pub state: TaskState,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    pub id: TaskId,
    pub action: serde_json::Value,
    pub kind: String,
    pub target: String,
    pub reason: String,
    pub origin: String,
    pub requested_by: String,
    pub requested_via: String,
    pub state: TaskState,
    pub risk: Risk,
    /// What policy said when it was asked.
    pub policy: Effect,
    pub policy_reason: String,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub timeline: Vec<TaskEvent>,
    /// The approval it waits or waited for, if policy asked.
    pub approval_id: Option<ApprovalId>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub id: ApprovalId,
    pub task_id: TaskId,
    pub state: ApprovalState,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decision: Option<Decision>,
    pub revision: i64,
    /// What would run, and why it was asked for.
    pub action: serde_json::Value,
    pub reason: String,
    pub risk: Risk,
}

/// One approval event for channels, with the approval as it is now: `Show` when it is
/// requested, `Decided` when someone approved or denied it, `Update` when it expired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalDelivery {
    pub id: i64,
    pub kind: crate::suggestion::DeliveryKind,
    pub created_at: DateTime<Utc>,
    pub approval: Approval,
}

/// A task about to be recorded, with policy's answer already in it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub action: serde_json::Value,
    pub kind: String,
    pub target: String,
    pub reason: String,
    pub origin: String,
    pub requested_by: String,
    pub requested_via: String,
    pub risk: Risk,
    pub policy: Effect,
    pub policy_reason: String,
    /// When its approval expires, if policy asks.
    pub approval_expires_at: DateTime<Utc>,
}

/// The owner's word on an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Deny,
}

impl Verdict {
    pub fn parse(value: &str) -> Option<Verdict> {
        match value {
            "approve" => Some(Verdict::Approve),
            "deny" => Some(Verdict::Deny),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no approval {0}")]
    NotFound(ApprovalId),
    #[error("already decided: {}", describe(.state, .decision.as_ref()))]
    AlreadyDecided { state: ApprovalState, decision: Option<Decision> },
    #[error("{user_id} on {channel} may not decide approvals")]
    Unauthorized { channel: String, user_id: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<sqlx::Error> for DecideError {
    fn from(error: sqlx::Error) -> DecideError {
        DecideError::Store(error.into())
    }
}

fn describe(state: &ApprovalState, decision: Option<&Decision>) -> String {
    match decision {
        Some(d) => format!("{state} via {} by {} at {}", d.via, d.by, d.at.format("%Y-%m-%d %H:%M UTC")),
        None => state.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<sqlx::Error> for SubmitError {
    fn from(error: sqlx::Error) -> SubmitError {
        SubmitError::Store(error.into())
    }
}

/// How an action with an outside effect went, as far as the executor can tell at once.
#[derive(Debug, Clone, PartialEq)]
pub enum Executed {
    /// Done: the effect happened (a webhook answered, a command exited). The output is kept.
    Done(serde_json::Value),
    /// Queued in a channel's durable outbox under `task:{id}:message[:n]`: the task is
    /// `delivering` until the outbox has sent every part (or given one up).
    Queued(serde_json::Value),
}

/// What runs an action with an effect outside loopgate (a message, a webhook, a
/// command, a workflow). The gateway provides it; the engine knows no platform or HTTP.
pub trait Executor: Send + Sync + 'static {
    /// Runs it once; the output is kept on the task, the error too.
    fn execute<'a>(
        &'a self,
        task: &'a Task,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Executed, String>> + Send + 'a>>;
}

/// An executor for a loopgate with no channel, endpoint or command configured: it says so.
#[derive(Debug, Default, Clone, Copy)]
pub struct NothingConfigured;

impl Executor for NothingConfigured {
    fn execute<'a>(
        &'a self,
        task: &'a Task,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Executed, String>> + Send + 'a>> {
        let error = format!("no {} target {:?} is configured on this loopgate", task.kind, task.target);
        Box::pin(async move { Err(error) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in TaskState::ALL {
            assert_eq!(TaskState::parse(state.as_str()), Some(state));
        }
        for state in ApprovalState::ALL {
            assert_eq!(ApprovalState::parse(state.as_str()), Some(state));
        }
        assert_eq!(Verdict::parse("approve"), Some(Verdict::Approve));
        assert_eq!(Verdict::parse("yes"), None);
    }
}
