//! Acting: how an action becomes a task through policy, how a task runs, and how an
//! approval is decided. The types are in [`crate::actions`]; this is the wiring.
//!
//! Notes and reminders run here (they only touch loopgate's own memory and suggestions);
//! everything with an outside effect goes to the [`crate::actions::Executor`] the
//! gateway provides. The kill switch is checked before every side effect.

use chrono::{DateTime, Utc};
use loopgate_policies::ActionView;

use crate::actions::{
    Approval, ApprovalId, ApprovalState, DecideError, Executed, NewTask, SubmitError, Task, TaskId, TaskState, Verdict,
};
use crate::intelligence::Intelligence;
use crate::memory::{MemoryCandidate, MemoryKind, Origin, RememberOutcome};
use crate::signal::Trust;
use crate::store::{NewSuggestion, StoreError};
use crate::suggestion::{Claimant, RespondError, Responder, Response, SuggestionId, SuggestionState};

/// Longest task reason kept.
const MAX_REASON_CHARS: usize = 500;
/// Most queued tasks one pulse runs (the rest wait for the next).
const MAX_QUEUED_PER_PULSE: u32 = 50;

impl Intelligence {
    /// Policy's verdict on an action, as a task ready to record.
    fn new_task(
        &self,
        action: &serde_json::Value,
        reason: &str,
        origin: &str,
        responder: &Responder,
    ) -> Result<NewTask, String> {
        let view = ActionView::of(action).map_err(|e| e.to_string())?;
        if action.to_string().len() > 16 * 1024 {
            return Err("the action is longer than 16384 bytes".into());
        }
        let assessment = self.settings.policy.assess(&view);
        Ok(NewTask {
            action: action.clone(),
            kind: view.kind.as_str().into(),
            target: view.target,
            reason: reason.chars().take(MAX_REASON_CHARS).collect(),
            origin: origin.into(),
            requested_by: responder.by.clone(),
            requested_via: responder.via.clone(),
            risk: assessment.risk,
            policy: assessment.effect,
            policy_reason: assessment.reason,
            approval_expires_at: self.store.clock().now() + self.settings.approvals_expire,
        })
    }

    /// The task acting or editing creates, recorded in the same commit as the answer.
    pub(crate) async fn task_for_answer(
        &self,
        id: SuggestionId,
        response: &Response,
        responder: &Responder,
    ) -> Result<Option<NewTask>, RespondError> {
        let (verb, edited) = match response {
            Response::Act => ("acted on", None),
            Response::Edit { action } => ("edited", Some(action)),
            Response::Snooze { .. } | Response::Dismiss => return Ok(None),
        };
        let suggestion = self.store.suggestion(id).await?.ok_or(RespondError::NotFound(id))?;
        // A reply raised without words (the owner's to write) never queues an empty
        // message. Chat buttons ask for the words (or show the model's draft) before
        // acting; an act that still has none (the API, the CLI) is taken as "I'll reply
        // myself": acted on, learned from, nothing sent. An edit must bring words.
        let wordless = |a: &serde_json::Value| {
            a.get("kind").and_then(|k| k.as_str()) == Some("message")
                && a.get("text").and_then(|t| t.as_str()).is_none_or(|t| t.trim().is_empty())
        };
        let action = edited.cloned().unwrap_or_else(|| suggestion.action.clone());
        if wordless(&action) {
            return match edited {
                Some(_) => Err(RespondError::Invalid("text: an edited message needs the words to send".into())),
                None => Ok(None),
            };
        }
        let reason = format!("{verb} suggestion {id}: {}", suggestion.title);
        self.new_task(&action, &reason, &format!("suggestion:{id}"), responder).map(Some).map_err(RespondError::Invalid)
    }

    /// Runs an action through policy now (a script asking for a human's go-ahead): it runs
    /// at once if policy allows, waits for an approval if it asks, fails if it denies.
    pub async fn submit(
        &self,
        action: &serde_json::Value,
        reason: &str,
        responder: &Responder,
    ) -> Result<Task, SubmitError> {
        // A message with nothing to say would only be refused by the platform later.
        if action.get("kind").and_then(|k| k.as_str()) == Some("message")
            && action.get("text").and_then(|t| t.as_str()).is_none_or(|t| t.trim().is_empty())
        {
            return Err(SubmitError::Invalid("text: a message needs the words to send".into()));
        }
        let new = self.new_task(action, reason, &responder.via, responder).map_err(SubmitError::Invalid)?;
        let task = self.store.record_task(&new).await?;
        tracing::info!(task = task.id, kind = %task.kind, state = %task.state, "task submitted");
        if task.state == TaskState::Queued {
            return Ok(self.run_task(task.id).await?);
        }
        Ok(task)
    }

    /// Runs a queued task, unless the kill switch is on (then it stays queued until
    /// `resume`). Returns the task as it is afterwards.
    pub async fn run_task(&self, id: TaskId) -> Result<Task, StoreError> {
        if self.store.heartbeat_state().await?.paused {
            tracing::warn!(task = id, "kill switch is on: the task waits for resume");
        } else if let Some(task) = self.store.start_task(id).await? {
            let span = tracing::info_span!("task", task = id, kind = %task.kind);
            let result = tracing::Instrument::instrument(self.execute(&task), span).await;
            let outcome = match &result {
                Ok(Executed::Done(_)) => "succeeded",
                Ok(Executed::Queued(_)) => "delivering",
                Err(_) => "failed",
            };
            metrics::counter!("loopgate_tasks_total", "kind" => task.kind.clone(), "outcome" => outcome).increment(1);
            match result {
                Ok(Executed::Queued(output)) => {
                    self.store.task_delivering(id, &output).await?;
                    // The outbox may have been quicker than this record.
                    self.store.settle_task_delivery(id).await?;
                }
                Ok(Executed::Done(output)) => self.store.finish_task(id, &Ok(output)).await?,
                Err(error) => self.store.finish_task(id, &Err(error)).await?,
            }
        }
        Ok(self.store.task(id).await?.expect("a task, once recorded, stays"))
    }

    async fn execute(&self, task: &Task) -> Result<Executed, String> {
        let text = task.action.get("text").and_then(|t| t.as_str()).unwrap_or("").trim().to_owned();
        match task.kind.as_str() {
            "note" => {
                if text.is_empty() {
                    return Err("a note needs \"text\"".into());
                }
                let kind = match task.action.get("memory_kind").and_then(|k| k.as_str()) {
                    Some(kind) => MemoryKind::parse(kind).map_err(|e| e.to_string())?,
                    None => MemoryKind::WorkflowPattern,
                };
                let candidate = MemoryCandidate {
                    kind,
                    subject: String::new(),
                    content: text,
                    confidence: 0.9,
                    origin: Origin::Response,
                    trust: Trust::Trusted,
                    evidence: Vec::new(),
                };
                match self.store.remember(candidate).await.map_err(|e| e.to_string())? {
                    RememberOutcome::Rejected { reason } => Err(format!("memory did not keep it: {reason}")),
                    RememberOutcome::Created { memory }
                    | RememberOutcome::Reinforced { memory }
                    | RememberOutcome::Superseded { memory } => {
                        Ok(Executed::Done(serde_json::json!({"memory_id": memory.id})))
                    }
                }
            }
            "reminder" => self.schedule_reminder(task, &text).await.map(Executed::Done),
            _ => self.executor.execute(task).await,
        }
    }

    /// A reminder is a suggestion that waits for its time (`at`, else now).
    async fn schedule_reminder(&self, task: &Task, text: &str) -> Result<serde_json::Value, String> {
        if text.is_empty() {
            return Err("a reminder needs \"text\"".into());
        }
        let now = self.store.clock().now();
        let at: Option<DateTime<Utc>> = match task.action.get("at") {
            None | Some(serde_json::Value::Null) => None,
            Some(value) => Some(
                serde_json::from_value(value.clone()).map_err(|_| "a reminder's \"at\" must be an RFC 3339 time")?,
            ),
        };
        let due = at.unwrap_or(now);
        let suggestion = NewSuggestion {
            key: format!("task:{}", task.id),
            topic: None,
            title: crate::reflect::detect::bounded(
                &format!("Reminder: {}", text.trim_start_matches("Reminder: ")),
                crate::reflect::detect::MAX_TITLE,
            ),
            why_now: format!("you asked to be reminded ({})", task.reason),
            evidence: Vec::new(),
            confidence: 0.9,
            score: 0.9,
            action: serde_json::json!({"kind": "note", "text": format!("Done: {text}")}),
            class: "reminder".into(),
            source: task.requested_via.clone(),
            reflector: "deterministic".into(),
            state: if due > now { SuggestionState::Scheduled } else { SuggestionState::Active },
            due_at: Some(crate::clock::to_millis(due)),
            expires_at: crate::clock::to_millis(due.max(now) + self.settings.expires_after),
            risk: loopgate_policies::Risk::Low,
            policy: loopgate_policies::Effect::Allow,
        };
        let created = self
            .store
            .create_suggestions(&format!("task-{}", task.id), &[suggestion])
            .await
            .map_err(|e| e.to_string())?;
        Ok(serde_json::json!({"suggestion_id": created.first(), "due_at": due}))
    }

    /// Decides an approval. The first decision wins; approving runs the task at once.
    pub async fn decide(
        &self,
        id: ApprovalId,
        verdict: Verdict,
        responder: &Responder,
    ) -> Result<(Approval, Task), DecideError> {
        let (approval, mut task) = self.store.decide_approval(id, verdict, responder).await?;
        tracing::info!(approval = id, ?verdict, by = %responder.by, via = %responder.via, "approval decided");
        metrics::counter!("loopgate_approvals_total", "decision" => approval.state.as_str()).increment(1);
        if approval.state == ApprovalState::Approved && task.state == TaskState::Queued {
            task = self.run_task(task.id).await?;
        }
        Ok((approval, task))
    }

    /// A decision from a chat channel, authorized here like an answer to a suggestion.
    pub async fn decide_from(
        &self,
        id: ApprovalId,
        verdict: Verdict,
        claimant: &Claimant,
    ) -> Result<(Approval, Task), DecideError> {
        let responder = self.authorize(claimant, &format!("approval:{id}")).ok_or_else(|| {
            DecideError::Unauthorized { channel: claimant.channel.clone(), user_id: claimant.user_id.clone() }
        })?;
        self.decide(id, verdict, &responder).await
    }

    /// What every pulse does for tasks: expire approvals nobody gave, and (unless the kill
    /// switch is on) run tasks left queued — by a restart, or by `stop` until `resume`.
    pub(crate) async fn task_upkeep(&self, paused: bool) -> Result<(Vec<ApprovalId>, Vec<TaskId>), StoreError> {
        let expired = self.store.expire_approvals().await?;
        let mut ran = Vec::new();
        if !paused {
            for task in self.store.tasks(&[TaskState::Queued], MAX_QUEUED_PER_PULSE).await?.into_iter().rev() {
                self.run_task(task.id).await?;
                ran.push(task.id);
            }
        }
        Ok((expired, ran))
    }

    /// At start: tasks a crash left `running` are failed, never repeated.
    pub async fn recover_tasks(&self) -> Result<Vec<TaskId>, StoreError> {
        let failed = self.store.fail_interrupted_tasks().await?;
        if !failed.is_empty() {
            tracing::warn!(?failed, "tasks interrupted by a restart were failed, not run again");
        }
        // A crash between an outbox record and its task's: the parts say how it went.
        for task in self.store.tasks(&[TaskState::Delivering], 10_000).await? {
            self.store.settle_task_delivery(task.id).await?;
        }
        Ok(failed)
    }
}

impl Intelligence {
    /// Tells the owner, through every channel that posts suggestions, that something
    /// needs them (a delivery chat that refuses messages): a suggestion whose act notes
    /// it handled. `key` names the trouble; it is raised at most once a day per key.
    pub async fn alert_owner(&self, key: &str, why: &str) -> Result<Option<SuggestionId>, StoreError> {
        let now = self.store.clock().now();
        let title = crate::reflect::detect::bounded(&format!("Needs you: {why}"), crate::reflect::detect::MAX_TITLE);
        let suggestion = NewSuggestion {
            key: format!("alert:{key}:{}", now.format("%Y-%m-%d")),
            topic: None,
            title,
            why_now: why.to_owned(),
            evidence: Vec::new(),
            confidence: 1.0,
            score: 1.0,
            action: serde_json::json!({"kind": "note", "text": format!("Handled: {why}")}),
            class: "alert".into(),
            source: "loopgate".into(),
            reflector: "deterministic".into(),
            state: SuggestionState::Active,
            due_at: None,
            expires_at: crate::clock::to_millis(now + self.settings.expires_after),
            risk: loopgate_policies::Risk::Low,
            policy: loopgate_policies::Effect::Allow,
        };
        let created = self.store.create_suggestions("alert", &[suggestion]).await?;
        Ok(created.first().copied())
    }

    /// Whether a chat user may answer about `subject`, decided here for every channel;
    /// a refusal is counted and logged.
    pub fn authorize(&self, claimant: &Claimant, subject: &str) -> Option<Responder> {
        if self.settings.answerers.may_answer(&claimant.channel, &claimant.user_id) {
            return Some(claimant.responder());
        }
        metrics::counter!("loopgate_unauthorized_answers_total", "channel" => claimant.channel.clone()).increment(1);
        tracing::warn!(subject, channel = %claimant.channel, user = %claimant.user_id, "refused an answer");
        None
    }
}

impl Claimant {
    /// How an authorized claimant is named in decisions.
    pub fn responder(&self) -> Responder {
        let by = self.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| self.user_id.clone());
        Responder { by, via: self.channel.clone() }
    }
}
