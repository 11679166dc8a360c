//! What starts workflows: their cron schedules and the signals they match. Each workflow
//! with a trigger gets one worker; where it stands (the last scheduled run, the last signal
//! looked at) is kept in `channel_state("workflow", …)`, so a restart neither repeats nor
//! skips a run. While the kill switch is on nothing starts: a schedule's run is skipped, a
//! match waits (the cursor does not move) until `resume`.

use std::sync::Arc;
use std::time::Duration;

use loopgate_channels::chat::sleep_or_stop;
use loopgate_engine::intelligence::Intelligence;
use loopgate_engine::schedule::Schedule;
use loopgate_engine::store::SignalQuery;
use loopgate_engine::suggestion::Responder;
use loopgate_engine::workflow::{SignalMatch, Trigger, Workflow, WorkflowError};
use loopgate_engine::{Store, StoreError};
use tokio::sync::watch;

const STATE: &str = "workflow";
/// How often new signals are looked at for matches.
const MATCH_EVERY: Duration = Duration::from_secs(1);

pub fn start(
    intelligence: &Arc<Intelligence>,
    workflows: &[Workflow],
    timezone: chrono_tz::Tz,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut workers = Vec::new();
    for workflow in workflows {
        let (intelligence, workflow, stop) = (intelligence.clone(), workflow.clone(), stop.clone());
        match workflow.trigger.clone() {
            Trigger::Schedule(pattern) => match pattern.parse::<croner::Cron>() {
                Ok(cron) => workers.push(tokio::spawn(on_schedule(intelligence, workflow, cron, timezone, stop))),
                Err(error) => tracing::error!(workflow = %workflow.name, %error, "not a cron schedule; never started"),
            },
            Trigger::Signal(pattern) => workers.push(tokio::spawn(on_signals(intelligence, workflow, pattern, stop))),
            Trigger::Manual => {}
        }
    }
    workers
}

fn by_trigger() -> Responder {
    Responder { by: "trigger".into(), via: "workflow".into() }
}

async fn run(intelligence: &Intelligence, workflow: &Workflow, signals: &[loopgate_engine::signal::Signal]) -> bool {
    match intelligence.run_workflow(workflow, signals, &by_trigger()).await {
        Ok(task) => {
            tracing::info!(workflow = %workflow.name, task = task.id, state = %task.state, "workflow ran");
            true
        }
        Err(WorkflowError::Stopped) => {
            tracing::warn!(workflow = %workflow.name, "kill switch is on: workflow not started");
            false
        }
        Err(error) => {
            tracing::error!(workflow = %workflow.name, %error, "workflow failed to start");
            false
        }
    }
}

/// Runs the workflow on each occurrence of its schedule, at most once each (see
/// `loopgate_engine::schedule`); while the kill switch is on, an occurrence is skipped.
async fn on_schedule(
    intelligence: Arc<Intelligence>,
    workflow: Workflow,
    cron: croner::Cron,
    timezone: chrono_tz::Tz,
    stop: watch::Receiver<bool>,
) {
    let schedule = Schedule {
        name: workflow.name.clone(),
        cron,
        timezone,
        channel: STATE.into(),
        key: format!("{}:last_run", workflow.name),
    };
    let (intelligence, workflow) = (&intelligence, &workflow);
    schedule
        .run(intelligence.store(), stop, move |_occurrence| async move {
            run(intelligence, workflow, &[]).await;
        })
        .await;
}

async fn on_signals(
    intelligence: Arc<Intelligence>,
    workflow: Workflow,
    pattern: SignalMatch,
    mut stop: watch::Receiver<bool>,
) {
    let store = intelligence.store().clone();
    let key = format!("{}:seq", workflow.name);
    loop {
        if let Err(error) = match_once(&intelligence, &store, &workflow, &pattern, &key).await {
            tracing::warn!(workflow = %workflow.name, %error, "cannot look at new signals; retrying");
        }
        if sleep_or_stop(MATCH_EVERY, &mut stop).await {
            return;
        }
    }
}

/// Looks at the signals after the cursor, runs the workflow once with those that match,
/// and moves the cursor past them (not while the kill switch is on).
async fn match_once(
    intelligence: &Intelligence,
    store: &Store,
    workflow: &Workflow,
    pattern: &SignalMatch,
    key: &str,
) -> Result<(), StoreError> {
    let cursor: i64 = match store.channel_state(STATE, key).await? {
        Some(saved) => saved.parse().unwrap_or(0),
        None => {
            // From now on: what was there before the workflow existed is not news.
            let newest = store.list_signals(&SignalQuery { limit: 1, ..SignalQuery::default() }).await?;
            let start = newest.first().map_or(0, |s| s.seq);
            store.set_channel_state(STATE, key, &start.to_string()).await?;
            start
        }
    };
    let source = pattern.source.as_deref().and_then(|s| loopgate_engine::signal::Source::parse(s).ok());
    let query = SignalQuery { after_seq: Some(cursor), source, limit: 200, ..SignalQuery::default() };
    let signals = store.list_signals(&query).await?;
    let Some(last) = signals.iter().map(|s| s.seq).max() else { return Ok(()) };
    let mut matched = Vec::new();
    for signal in signals {
        if !pattern.matches_fields(&signal) {
            continue;
        }
        if pattern.unknown_sender {
            let Some(actor) = &signal.actor else { continue };
            let answerer = intelligence.settings().answerers.may_answer(signal.source.as_str(), &actor.id);
            if answerer || store.actor_seen_before(signal.source.as_str(), &actor.id, signal.seq).await? {
                continue;
            }
        }
        matched.push(signal);
    }
    if !matched.is_empty() && !run(intelligence, workflow, &matched).await && store.heartbeat_state().await?.paused {
        // Held for `resume`: the cursor stays, the same signals match again then.
        return Ok(());
    }
    store.set_channel_state(STATE, key, &last.to_string()).await
}
