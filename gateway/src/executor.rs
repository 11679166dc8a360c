//! Runs actions with an outside effect for the engine: the owner's named webhooks and
//! named commands. Nothing here decides whether to run; policy and approvals did that.
//!
//! A command is its configured program and arguments, run directly — never through a
//! shell — and the action's parameters reach it only as JSON on its standard input, so no
//! text from a message can become an argument or a shell word.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, OnceLock, Weak};

use loopgate_channels::{Channel, Wakes};
use loopgate_engine::Store;
use loopgate_engine::actions::{Executed, Executor, Task};
use loopgate_engine::intelligence::Intelligence;
use loopgate_engine::suggestion::Responder;
use loopgate_engine::workflow::Workflow;
use tokio::io::AsyncWriteExt;

use crate::config::{NamedCommand, Webhook};

/// Most of a response body or a command's output kept on the task.
const MAX_OUTPUT_CHARS: usize = 4096;

pub struct Actions {
    webhooks: HashMap<String, Webhook>,
    commands: HashMap<String, NamedCommand>,
    http: reqwest::Client,
    /// Where `message` actions go: each configured channel's outbox. Set once the
    /// channels exist (they need the engine, which needs this executor).
    messages: OnceLock<Messages>,
    /// The configured workflows a `workflow` action runs (the engine holds this executor,
    /// so it is reached back weakly).
    workflows: OnceLock<(Weak<Intelligence>, Vec<Workflow>)>,
}

struct Messages {
    store: Store,
    channels: HashMap<&'static str, (Arc<dyn Channel>, Wakes)>,
}

type Running<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Executed, String>> + Send + 'a>>;

impl Actions {
    pub fn new(webhooks: &[Webhook], commands: &[NamedCommand]) -> Arc<Actions> {
        Arc::new(Actions {
            webhooks: webhooks.iter().map(|w| (w.name.clone(), w.clone())).collect(),
            commands: commands.iter().map(|c| (c.name.clone(), c.clone())).collect(),
            // Webhooks name their own hosts; a redirect elsewhere is not followed.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("loopgate/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("an HTTP client with default TLS roots"),
            messages: OnceLock::new(),
            workflows: OnceLock::new(),
        })
    }

    /// Lets `message` actions go out through these channels' outboxes.
    pub fn route_messages(&self, store: Store, channels: &[(Arc<dyn Channel>, Wakes)]) {
        let channels = channels.iter().map(|(c, w)| (c.name(), (c.clone(), w.clone()))).collect();
        let _ = self.messages.set(Messages { store, channels });
    }

    /// Lets `workflow` actions run these workflows.
    pub fn route_workflows(&self, intelligence: &Arc<Intelligence>, workflows: Vec<Workflow>) {
        let _ = self.workflows.set((Arc::downgrade(intelligence), workflows));
    }

    /// Runs the named workflow as a run of its own (a task with its timeline); this task
    /// records which.
    async fn workflow(&self, task: &Task) -> Result<serde_json::Value, String> {
        let Some((intelligence, workflows)) = self.workflows.get() else {
            return Err(format!("no workflow named {:?} is configured", task.target));
        };
        let workflow = workflows
            .iter()
            .find(|w| w.name == task.target)
            .ok_or_else(|| format!("no workflow named {:?} is configured", task.target))?;
        let intelligence = intelligence.upgrade().ok_or("loopgate is shutting down")?;
        let responder = Responder { by: task.requested_by.clone(), via: task.requested_via.clone() };
        let run = intelligence.run_workflow(workflow, &[], &responder).await.map_err(|e| e.to_string())?;
        Ok(serde_json::json!({"run_task": run.id, "state": run.state}))
    }

    /// Queues the message in its channel's durable outbox, once per task (the key is the
    /// task's): the outbox sends it, retries it, and never sends it twice.
    /// Text longer than one message is queued as its parts, all in one commit, keyed
    /// `task:{id}:message` then `task:{id}:message:2`, …; the task is `delivering` until
    /// the outbox has sent them all.
    async fn message(&self, task: &Task) -> Result<Executed, String> {
        let name = task.action.pointer("/target/channel").and_then(serde_json::Value::as_str).unwrap_or_default();
        let Some((channel, wakes)) = self.messages.get().and_then(|m| m.channels.get(name)) else {
            return Err(format!("no {name:?} channel is configured on this loopgate to deliver {:?}", task.target));
        };
        let store = &self.messages.get().expect("checked above").store;
        let payloads = channel.message(task.id, &task.action)?;
        let parts = loopgate_channels::chat::parts(name, &format!("task:{}:message", task.id), payloads);
        let ids = store.enqueue_all(&parts).await.map_err(|e| format!("queueing the message: {e}"))?;
        wakes.outbox.notify_one();
        Ok(Executed::Queued(serde_json::json!({"queued": {"channel": name, "outbox": ids, "parts": ids.len()}})))
    }

    async fn call(&self, task: &Task) -> Result<serde_json::Value, String> {
        let hook = self
            .webhooks
            .get(&task.target)
            .ok_or_else(|| format!("no webhook named {:?} is configured", task.target))?;
        let body = serde_json::json!({
            "task": task.id,
            "reason": task.reason,
            "payload": task.action.get("payload").cloned().unwrap_or(serde_json::Value::Null),
        });
        let method = reqwest::Method::from_bytes(hook.method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = self
            .http
            .request(method, &hook.url)
            .timeout(hook.timeout)
            // Lets the receiver drop a repeat of the same task, should one ever come.
            .header("Idempotency-Key", format!("loopgate-task-{}", task.id))
            .json(&body);
        for (name, value) in &hook.headers {
            request = request.header(name, value);
        }
        let response =
            request.send().await.map_err(|e| format!("calling webhook {}: {}", hook.name, without_url(e)))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(MAX_OUTPUT_CHARS).collect();
        if status.is_success() {
            Ok(serde_json::json!({"status": status.as_u16(), "body": text}))
        } else {
            Err(format!("webhook {} answered {status}: {text}", hook.name))
        }
    }

    async fn run_command(&self, task: &Task) -> Result<serde_json::Value, String> {
        let command = self
            .commands
            .get(&task.target)
            .ok_or_else(|| format!("no command named {:?} is configured", task.target))?;
        let mut child = tokio::process::Command::new(&command.program)
            .args(&command.args)
            .env("LOOPGATE_TASK_ID", task.id.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", command.program.display()))?;
        let input = serde_json::json!({
            "task": task.id,
            "reason": task.reason,
            "payload": task.action.get("payload").cloned().unwrap_or(serde_json::Value::Null),
        });
        if let Some(mut stdin) = child.stdin.take() {
            // A program that does not read its input is fine; a closed pipe is not an error.
            let _ = stdin.write_all(input.to_string().as_bytes()).await;
        }
        let output = tokio::time::timeout(command.timeout, child.wait_with_output())
            .await
            .map_err(|_| format!("command {} took longer than {:?} and was stopped", command.name, command.timeout))?
            .map_err(|e| format!("running command {}: {e}", command.name))?;
        let clip = |bytes: &[u8]| String::from_utf8_lossy(bytes).chars().take(MAX_OUTPUT_CHARS).collect::<String>();
        let (stdout, stderr) = (clip(&output.stdout), clip(&output.stderr));
        match output.status.code() {
            Some(0) => Ok(serde_json::json!({"exit": 0, "stdout": stdout, "stderr": stderr})),
            Some(code) => Err(format!("command {} exited with {code}: {}", command.name, stderr.trim())),
            None => Err(format!("command {} was killed by a signal", command.name)),
        }
    }
}

/// reqwest's errors name the URL, which may carry a token in its query.
fn without_url(error: reqwest::Error) -> String {
    if error.is_timeout() { "timed out".into() } else { error.without_url().to_string() }
}

impl Executor for Actions {
    fn execute<'a>(&'a self, task: &'a Task) -> Running<'a> {
        Box::pin(async move {
            match task.kind.as_str() {
                "webhook" => self.call(task).await.map(Executed::Done),
                "command" => self.run_command(task).await.map(Executed::Done),
                "message" => self.message(task).await,
                "workflow" => self.workflow(task).await.map(Executed::Done),
                other => Err(format!("{other} actions do not run here")),
            }
        })
    }
}
