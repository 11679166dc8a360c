//! Workflows: a named outcome, a trigger, and steps — gather signals, compose, an approval
//! checkpoint, deliver (SPEC §8). Every run is a task (kind `workflow`) with a timeline
//! and its outputs; what it delivers is a task of its own (a `message`, through policy,
//! held for approval at the checkpoint), so the approval, the kill switch and the outbox
//! apply to it like to any other action.
//!
//! Gathering and composing touch nothing outside: they run at once. The only side effect
//! is the delivery, and it never happens without the policy's consent — and, past an
//! approval checkpoint, never without the owner's.

use chrono::{DateTime, Duration, Utc};
use loopgate_policies::{ActionView, Effect};
use serde::{Deserialize, Serialize};

use crate::actions::{NewTask, Task, TaskState};
use crate::intelligence::Intelligence;
use crate::signal::{Signal, Source};
use crate::store::{SignalQuery, StoreError};
use crate::suggestion::Responder;

/// Most signals a gather step reads.
const MAX_GATHERED: u32 = 500;
/// Lines a composed summary lists.
const MAX_LINES: usize = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    pub name: String,
    /// What it is for, in the owner's words.
    pub outcome: String,
    pub trigger: Trigger,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A cron schedule in the owner's timezone.
    Schedule(String),
    /// New signals that match.
    Signal(SignalMatch),
    /// Only when asked (a `workflow` action, the API).
    Manual,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalMatch {
    pub source: Option<String>,
    pub kind: Option<String>,
    pub conversation: Option<String>,
    /// Only senders who had never written on that source before (and are not the owner).
    pub unknown_sender: bool,
}

impl SignalMatch {
    /// Whether `signal` matches on its own; `unknown_sender` needs the store.
    pub fn matches_fields(&self, signal: &Signal) -> bool {
        self.source.as_deref().is_none_or(|s| s == signal.source.as_str())
            && self.kind.as_deref().is_none_or(|k| k == signal.kind.as_str())
            && self
                .conversation
                .as_deref()
                .is_none_or(|c| signal.conversation.as_ref().is_some_and(|conv| conv.id == c))
            && (!self.unknown_sender || signal.actor.as_ref().is_some_and(|a| !a.is_owner))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Signals from the last `since`, from `source` (and `conversation`), or, without a
    /// source, the signals that triggered the run.
    Gather { source: Option<String>, conversation: Option<String>, since_secs: i64 },
    /// A summary of what was gathered, under `title`.
    Compose { title: String },
    /// The owner approves the delivery (on every channel the approval is posted to).
    Approve { reason: String },
    /// Sends the summary: a `message` to `to` on `channel`, or into the next email digest
    /// (`channel = "digest"`).
    Deliver { channel: String, to: String, subject: Option<String> },
}

/// What a run produced, kept as its task's output.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunOutput {
    pub gathered: usize,
    pub summary: Option<String>,
    /// Who wrote the summary: `model`, or `template` and why the model did not.
    pub composed_by: Option<String>,
    /// The task that delivers it (waiting for approval, or run).
    pub delivery_task: Option<i64>,
    /// Delivered into the next digest instead.
    pub into_digest: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("the kill switch is on: nothing new is dispatched until resume")]
    Stopped,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key in `channel_state("email", …)` where summaries wait for the next digest.
pub const DIGEST_NOTES_KEY: &str = "digest:notes";

impl Intelligence {
    /// Runs `workflow` now as a task, with the signals that triggered it (if any). The
    /// delivery, when there is one, is its own task: held for approval at a checkpoint,
    /// otherwise put to the policy like any action.
    pub async fn run_workflow(
        &self,
        workflow: &Workflow,
        triggered_by: &[Signal],
        responder: &Responder,
    ) -> Result<Task, WorkflowError> {
        if self.store().heartbeat_state().await?.paused {
            return Err(WorkflowError::Stopped);
        }
        let action = serde_json::json!({"kind": "workflow", "workflow": workflow.name});
        let view = ActionView::of(&action).expect("a workflow action is well formed");
        let new = NewTask {
            action: action.clone(),
            kind: "workflow".into(),
            target: view.target,
            reason: format!("workflow {}: {}", workflow.name, workflow.outcome).chars().take(500).collect(),
            origin: format!("workflow:{}", workflow.name),
            requested_by: responder.by.clone(),
            requested_via: responder.via.clone(),
            risk: view.kind.risk(),
            // The owner configured it to run; what it delivers is what policy judges.
            policy: Effect::Allow,
            policy_reason: "a configured workflow; its delivery goes through policy".into(),
            approval_expires_at: self.store().clock().now(),
        };
        let task = self.store().record_task(&new).await?;
        let Some(task) = self.store().start_task(task.id).await? else {
            return Ok(task);
        };
        let span = tracing::info_span!("workflow", name = %workflow.name, task = task.id);
        let result =
            tracing::Instrument::instrument(self.steps(workflow, triggered_by, task.id, responder), span).await;
        let result = match result {
            Ok(output) => Ok(serde_json::to_value(output).expect("a run output serializes")),
            Err(WorkflowError::Stopped) => Err("stopped by the kill switch before its next step".to_owned()),
            Err(WorkflowError::Invalid(why)) => Err(why),
            Err(WorkflowError::Store(e)) => return Err(e.into()),
        };
        self.store().finish_task(task.id, &result).await?;
        Ok(self.store().task(task.id).await?.expect("a task, once recorded, stays"))
    }

    async fn steps(
        &self,
        workflow: &Workflow,
        triggered_by: &[Signal],
        task: i64,
        responder: &Responder,
    ) -> Result<RunOutput, WorkflowError> {
        let mut output = RunOutput::default();
        let mut gathered: Vec<Signal> = triggered_by.to_vec();
        let mut checkpoint: Option<String> = None;
        for step in &workflow.steps {
            // The kill switch holds before every step.
            if self.store().heartbeat_state().await?.paused {
                return Err(WorkflowError::Stopped);
            }
            match step {
                Step::Gather { source, conversation, since_secs } => {
                    gathered =
                        self.gather(source.as_deref(), conversation.as_deref(), *since_secs, triggered_by).await?;
                    output.gathered = gathered.len();
                }
                Step::Compose { title } => {
                    let (summary, by) = self.compose_summary(workflow, title, &gathered).await;
                    output.summary = Some(summary);
                    output.composed_by = Some(by);
                }
                Step::Approve { reason } => checkpoint = Some(reason.clone()),
                Step::Deliver { channel, to, subject } => {
                    let text = output.summary.clone().unwrap_or_else(|| {
                        compose(&workflow.name, &gathered, self.store().clock().now(), self.settings().rules.timezone)
                    });
                    if channel == "digest" {
                        self.keep_for_digest(&workflow.name, &text).await?;
                        output.into_digest = true;
                        continue;
                    }
                    let action = serde_json::json!({
                        "kind": "message",
                        "target": {"channel": channel, "conversation": to},
                        "subject": subject.clone().unwrap_or_else(|| workflow.outcome.clone()),
                        "text": text,
                        "workflow": workflow.name,
                        "workflow_task": task,
                    });
                    let reason = checkpoint.clone().unwrap_or_else(|| format!("workflow {}: deliver", workflow.name));
                    let delivery =
                        self.delivery_task(&action, &reason, &workflow.name, checkpoint.is_some(), responder)?;
                    let delivery = self.store().record_task(&delivery).await?;
                    output.delivery_task = Some(delivery.id);
                    if delivery.state == TaskState::Queued {
                        self.run_task(delivery.id).await?;
                    }
                }
            }
        }
        Ok(output)
    }

    /// The summary: by the model when there is one and it answers within budget, else the
    /// template; says which, and why.
    async fn compose_summary(&self, workflow: &Workflow, title: &str, gathered: &[Signal]) -> (String, String) {
        let template = || compose(title, gathered, self.store().clock().now(), self.settings().rules.timezone);
        if self.model().is_none() {
            return (template(), "template (no model configured)".into());
        }
        let mut data = String::new();
        for s in gathered.iter().rev().take(200).collect::<Vec<_>>().into_iter().rev() {
            let who = s.actor.as_ref().map_or("someone".to_owned(), |a| a.name.clone().unwrap_or_else(|| a.id.clone()));
            data.push_str(&crate::model::untrusted(s.source.as_str(), &who, &s.text));
            data.push('\n');
        }
        let request = crate::model::Request {
            purpose: crate::model::Purpose::Compose,
            system: format!(
                "You write short, factual summaries for the owner. {} Write plain text: a first line \"{title}\", \
                 then the points that matter, one per line starting with \"- \". No greeting, no sign-off.",
                crate::model::UNTRUSTED_RULE
            ),
            turns: vec![crate::model::Turn {
                role: crate::model::Role::User,
                content: format!("Summarize for \"{}\" ({} messages):\n{data}", workflow.outcome, gathered.len()),
            }],
            max_tokens: 800,
            json: false,
        };
        match self.ask(&request).await {
            Ok(c) if !c.text.trim().is_empty() => (c.text.trim().to_owned(), "model".into()),
            Ok(_) => (template(), "template (the model answered nothing)".into()),
            Err(e) => (template(), format!("template ({e})")),
        }
    }

    /// The delivery as a task: what policy says of it, and at least "ask" past an approval
    /// checkpoint (a deny still wins).
    fn delivery_task(
        &self,
        action: &serde_json::Value,
        reason: &str,
        workflow: &str,
        checkpoint: bool,
        responder: &Responder,
    ) -> Result<NewTask, WorkflowError> {
        let view = ActionView::of(action)
            .map_err(|e| WorkflowError::Invalid(format!("workflow {workflow}: the delivery is not an action: {e}")))?;
        let assessment = self.settings().policy.assess(&view);
        let (policy, policy_reason) = if checkpoint && assessment.effect == Effect::Allow {
            (Effect::Ask, format!("the workflow's approval checkpoint ({})", assessment.reason))
        } else {
            (assessment.effect, assessment.reason)
        };
        Ok(NewTask {
            action: action.clone(),
            kind: view.kind.as_str().into(),
            target: view.target,
            reason: reason.chars().take(500).collect(),
            origin: format!("workflow:{workflow}"),
            requested_by: responder.by.clone(),
            requested_via: responder.via.clone(),
            risk: assessment.risk,
            policy,
            policy_reason,
            approval_expires_at: self.store().clock().now() + self.settings().approvals_expire,
        })
    }

    async fn gather(
        &self,
        source: Option<&str>,
        conversation: Option<&str>,
        since_secs: i64,
        triggered_by: &[Signal],
    ) -> Result<Vec<Signal>, WorkflowError> {
        let Some(source) = source else { return Ok(triggered_by.to_vec()) };
        let source = Source::parse(source).map_err(|e| WorkflowError::Invalid(e.to_string()))?;
        let since = self.store().clock().now() - Duration::seconds(since_secs.max(0));
        let query =
            SignalQuery { since: Some(since), source: Some(source), limit: MAX_GATHERED, ..SignalQuery::default() };
        let mut signals = self.store().list_signals(&query).await?;
        if let Some(conversation) = conversation {
            signals.retain(|s| {
                s.conversation
                    .as_ref()
                    .is_some_and(|c| c.id == conversation || c.thread_id.as_deref() == Some(conversation))
            });
        }
        signals.sort_by_key(|s| s.occurred_at);
        Ok(signals)
    }

    /// Keeps a summary for the next email digest.
    async fn keep_for_digest(&self, workflow: &str, text: &str) -> Result<(), StoreError> {
        let store = self.store();
        let mut notes: Vec<serde_json::Value> = store
            .channel_state("email", DIGEST_NOTES_KEY)
            .await?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        notes.push(serde_json::json!({"workflow": workflow, "text": text, "at": store.clock().now()}));
        // A digest nobody sends must not grow without end.
        let keep = notes.len().saturating_sub(20);
        let notes: Vec<_> = notes.into_iter().skip(keep).collect();
        store
            .set_channel_state("email", DIGEST_NOTES_KEY, &serde_json::to_string(&notes).expect("notes serialize"))
            .await
    }
}

/// A plain summary: how many, from whom, and one line per signal (newest last).
pub fn compose(title: &str, signals: &[Signal], now: DateTime<Utc>, timezone: chrono_tz::Tz) -> String {
    let mut people: Vec<String> = signals
        .iter()
        .filter_map(|s| s.actor.as_ref().map(|a| a.name.clone().unwrap_or_else(|| a.id.clone())))
        .collect();
    people.sort();
    people.dedup();
    let mut text = format!("{title} — {}\n", now.with_timezone(&timezone).format("%a %d %b %Y"));
    if signals.is_empty() {
        text.push_str("\nNothing came in.\n");
        return text;
    }
    text.push_str(&format!(
        "\n{} message{} from {} ({})\n\n",
        signals.len(),
        if signals.len() == 1 { "" } else { "s" },
        if people.len() == 1 { "one person".to_owned() } else { format!("{} people", people.len()) },
        people.join(", ")
    ));
    for s in signals.iter().rev().take(MAX_LINES).collect::<Vec<_>>().into_iter().rev() {
        let who = s.actor.as_ref().map_or("someone".to_owned(), |a| a.name.clone().unwrap_or_else(|| a.id.clone()));
        let line: String = s.text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(160).collect();
        text.push_str(&format!("- {} {who}: {line}\n", s.occurred_at.with_timezone(&timezone).format("%a %H:%M")));
    }
    if signals.len() > MAX_LINES {
        text.push_str(&format!("… and {} earlier\n", signals.len() - MAX_LINES));
    }
    text
}
