//! The outbox worker: one per channel, draining its queue in order.
//!
//! It takes one send at a time (claimed, so marked started, in its own commit), performs it
//! through the channel and records what happened; a failure waits as the retry policy says,
//! and a rate limit pauses the whole channel until the platform's `retry_after`, since the
//! next message would only earn another 429. At start it first settles the sends a crash
//! left in doubt.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use loopgate_engine::outbox::{AfterFailure, Outbound, RetryPolicy};
use loopgate_engine::{Store, StoreError};
use tokio::sync::{Notify, watch};

use crate::channel::Channel;

/// Longest sleep without looking at the queue: a row queued by another process (the CLI)
/// does not wake this one.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// The dedupe-key prefix of what tasks queue (`task:{id}:message`).
const TASK_SENDS: &str = "task:";
/// While the kill switch is on, how often the worker looks for `resume`.
const PAUSED_LOOK: Duration = Duration::from_secs(1);

/// Drains `channel`'s outbox until `shutdown` turns true. A send in flight when it does is
/// finished and recorded first.
pub async fn deliver(
    store: Store,
    channel: Arc<dyn Channel>,
    policy: RetryPolicy,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = channel.name();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let wait = match settle_then_drain(&store, channel.as_ref(), &policy).await {
            Ok(wait) => wait,
            Err(error) => {
                tracing::error!(channel = name, %error, "outbox worker cannot reach the store; retrying");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Sends what is due in `channel`'s outbox now, once (for a command run outside the
/// server, like `loopgate digest`); a send to be retried stays queued for the server.
pub async fn drain_once(store: &Store, channel: &dyn Channel, policy: &RetryPolicy) -> Result<(), StoreError> {
    settle_then_drain(store, channel, policy).await.map(|_| ())
}

/// Settles sends in doubt, then sends whatever is due; returns how long to wait before
/// looking again.
async fn settle_then_drain(store: &Store, channel: &dyn Channel, policy: &RetryPolicy) -> Result<Duration, StoreError> {
    let name = channel.name();
    for outbound in store.outbound_in_doubt(name).await? {
        let verification = channel.verify(&outbound).await;
        tracing::warn!(channel = name, outbound = outbound.id, ?verification, "settling a send a crash left in doubt");
        store.settle_in_doubt(outbound.id, &verification).await?;
        if let Some(task) = Store::task_of(&outbound) {
            store.settle_task_delivery(task).await?;
        }
    }
    // The kill switch: what tasks queued (their messages) waits for resume; replies,
    // posts and edits of loopgate's own still go out.
    let paused = store.heartbeat_state().await?.paused;
    let hold = paused.then_some(TASK_SENDS);
    loop {
        let Some(outbound) = store.claim_outbound_holding(name, 1, hold).await?.pop() else { break };
        if let Some(pause) = send_one(store, channel, policy, &outbound).await? {
            return Ok(pause);
        }
    }
    let clock = store.clock();
    let wait = match store.next_outbound_due(name).await? {
        Some(at) => (at - clock.now()).to_std().unwrap_or(Duration::ZERO).min(MAX_IDLE),
        None => MAX_IDLE,
    };
    // Held sends are due but not taken: look again for `resume` without spinning.
    Ok(if paused { wait.max(PAUSED_LOOK) } else { wait })
}

/// Performs one claimed send and records it. Returns a pause when it is to be retried: the
/// channel waits for it rather than sending what was queued after it first (order matters
/// in a chat), and after a 429 the platform asked the whole channel to slow down anyway.
async fn send_one(
    store: &Store,
    channel: &dyn Channel,
    policy: &RetryPolicy,
    outbound: &Outbound,
) -> Result<Option<Duration>, StoreError> {
    let name = channel.name();
    let span = tracing::info_span!("send", channel = name, outbound = outbound.id, attempt = outbound.attempts);
    async move {
        let error = match channel.send(outbound).await {
            Ok(sent) => {
                store.outbound_sent(outbound.id, &sent.platform_ref).await?;
                if let Some(task) = Store::task_of(outbound) {
                    store.settle_task_delivery(task).await?;
                }
                metrics::counter!("loopgate_outbound_total", "channel" => name, "outcome" => "sent").increment(1);
                tracing::debug!(platform_ref = %sent.platform_ref, "sent");
                return Ok(None);
            }
            Err(error) => error,
        };
        let now = store.clock().now();
        match policy.after_failure(&error, outbound.attempts, now) {
            AfterFailure::RetryAt(at) => {
                store.outbound_retry(outbound.id, at, &error.to_string()).await?;
                metrics::counter!("loopgate_outbound_total", "channel" => name, "outcome" => "retry").increment(1);
                tracing::warn!(%error, retry_at = %at, "send failed; will retry");
                return Ok(Some((at - now).to_std().unwrap_or(Duration::ZERO)));
            }
            AfterFailure::GiveUp => {
                store.outbound_failed(outbound.id, &error.to_string()).await?;
                if let Some(task) = Store::task_of(outbound) {
                    store.settle_task_delivery(task).await?;
                }
                metrics::counter!("loopgate_outbound_total", "channel" => name, "outcome" => "failed").increment(1);
                tracing::error!(%error, "send given up");
            }
        }
        Ok(None)
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Instant;

    use loopgate_engine::outbox::{NewOutbound, OutboundState, SendError, Verification};
    use loopgate_engine::suggestion::Delivery;
    use loopgate_engine::{StoreConfig, SystemClock};

    use super::*;
    use crate::{BoxFuture, ChannelContext, Liveness, Sent};

    /// A platform whose answers are scripted per message, recording every attempt.
    struct Scripted {
        liveness: Liveness,
        answers: Mutex<HashMap<String, Vec<Result<Sent, SendError>>>>,
        verifications: HashMap<String, Verification>,
        attempts: Mutex<Vec<(String, Instant, bool)>>,
    }

    impl Scripted {
        fn new(answers: &[(&str, Vec<Result<Sent, SendError>>)], verifications: &[(&str, Verification)]) -> Scripted {
            Scripted {
                liveness: Liveness::new("fake", Duration::from_secs(60)),
                answers: Mutex::new(answers.iter().map(|(k, a)| ((*k).to_owned(), a.clone())).collect()),
                verifications: verifications.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
                attempts: Mutex::new(Vec::new()),
            }
        }

        fn delivered(&self) -> Vec<String> {
            self.attempts.lock().unwrap().iter().filter(|a| a.2).map(|a| a.0.clone()).collect()
        }

        fn tries_of(&self, key: &str) -> Vec<Instant> {
            self.attempts.lock().unwrap().iter().filter(|a| a.0 == key).map(|a| a.1).collect()
        }
    }

    impl Channel for Scripted {
        fn name(&self) -> &'static str {
            "fake"
        }

        fn liveness(&self) -> &Liveness {
            &self.liveness
        }

        fn run_inbound(self: Arc<Self>, _ctx: ChannelContext) -> BoxFuture<'static, anyhow::Result<()>> {
            Box::pin(async { Ok(()) })
        }

        fn render(&self, _delivery: &Delivery) -> Vec<NewOutbound> {
            Vec::new()
        }

        fn render_approval(&self, _delivery: &loopgate_engine::actions::ApprovalDelivery) -> Vec<NewOutbound> {
            Vec::new()
        }

        fn send<'a>(&'a self, outbound: &'a Outbound) -> BoxFuture<'a, Result<Sent, SendError>> {
            Box::pin(async move {
                let key = outbound.dedupe_key.clone();
                let answer = {
                    let mut answers = self.answers.lock().unwrap();
                    let queue = answers.entry(key.clone()).or_default();
                    if queue.is_empty() { Ok(Sent { platform_ref: format!("m-{key}") }) } else { queue.remove(0) }
                };
                self.attempts.lock().unwrap().push((key, Instant::now(), answer.is_ok()));
                answer
            })
        }

        fn verify<'a>(&'a self, outbound: &'a Outbound) -> BoxFuture<'a, Verification> {
            let answer = self.verifications.get(&outbound.dedupe_key).cloned().unwrap_or(Verification::Unknown);
            Box::pin(async move { answer })
        }
    }

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(format!("sqlite://{}/outbox.db", dir.path().display()));
        (Store::open(&config, Arc::new(SystemClock)).await.unwrap(), dir)
    }

    fn message(key: &str) -> NewOutbound {
        NewOutbound { channel: "fake".into(), dedupe_key: key.into(), payload: serde_json::json!({"text": key}) }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            first_backoff: chrono::Duration::milliseconds(50),
            max_backoff: chrono::Duration::milliseconds(200),
            ..RetryPolicy::default()
        }
    }

    /// Runs the worker until every row of the channel is settled (or 10 s pass).
    async fn run_until_settled(store: &Store, channel: Arc<Scripted>) {
        let (stop, shutdown) = watch::channel(false);
        let worker = tokio::spawn(deliver(store.clone(), channel, quick(), Arc::new(Notify::new()), shutdown));
        let started = Instant::now();
        loop {
            let rows = store.outbox("fake", &[], 100).await.unwrap();
            if rows.iter().all(|r| !matches!(r.state, OutboundState::Queued | OutboundState::Sending)) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "not settled: {rows:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), worker).await.expect("worker stops on shutdown").unwrap();
    }

    #[tokio::test]
    async fn every_send_arrives_once_in_order_through_rate_limits_and_server_errors() {
        let (store, _dir) = store().await;
        let limited = SendError::RateLimited { retry_after: Duration::from_millis(300) };
        let channel = Arc::new(Scripted::new(
            &[
                ("first", vec![Err(limited), Err(SendError::Transient("502 Bad Gateway".into()))]),
                ("third", vec![Err(SendError::Permanent("400 Bad Request: chat not found".into()))]),
            ],
            &[],
        ));
        for key in ["first", "second", "third"] {
            store.enqueue(&message(key)).await.unwrap();
        }
        run_until_settled(&store, channel.clone()).await;

        assert_eq!(channel.delivered(), ["first", "second"], "once each, in the order queued");
        let tries = channel.tries_of("first");
        assert_eq!(tries.len(), 3);
        assert!(tries[1] - tries[0] >= Duration::from_millis(300), "retry_after honoured");
        assert!(tries[2] - tries[1] >= Duration::from_millis(50), "backed off after the 502");
        assert!(channel.tries_of("second")[0] > tries[2], "nothing overtook the message being retried");
        assert_eq!(channel.tries_of("third").len(), 1, "a permanent error is not retried");

        let rows = store.outbox("fake", &[], 10).await.unwrap();
        let summary: Vec<_> = rows.iter().map(|r| (r.state, r.attempts, r.platform_ref.clone())).collect();
        assert_eq!(
            summary,
            [
                (OutboundState::Sent, 3, Some("m-first".to_owned())),
                (OutboundState::Sent, 1, Some("m-second".to_owned())),
                (OutboundState::Failed, 1, None),
            ]
        );
        assert_eq!(rows[2].last_error.as_deref(), Some("400 Bad Request: chat not found"));
    }

    #[tokio::test]
    async fn the_kill_switch_holds_what_tasks_queued_but_not_loopgates_own_replies() {
        let (store, _dir) = store().await;
        store.set_paused(true).await.unwrap();
        for key in ["task:7:message", "reply:1"] {
            store.enqueue(&message(key)).await.unwrap();
        }
        let channel = Scripted::new(&[], &[]);
        settle_then_drain(&store, &channel, &quick()).await.unwrap();
        assert_eq!(channel.delivered(), ["reply:1"], "the reply goes out; the task's message waits");
        store.set_paused(false).await.unwrap();
        settle_then_drain(&store, &channel, &quick()).await.unwrap();
        assert_eq!(channel.delivered(), ["reply:1", "task:7:message"]);
    }

    #[tokio::test]
    async fn sends_a_crash_left_in_doubt_are_repeated_only_when_that_cannot_duplicate() {
        let (store, _dir) = store().await;
        for key in ["arrived", "safe", "unknown"] {
            store.enqueue(&message(key)).await.unwrap();
        }
        // A previous run marked all three started and died before recording any.
        assert_eq!(store.claim_outbound("fake", 10).await.unwrap().len(), 3);
        let channel = Arc::new(Scripted::new(
            &[],
            &[
                ("arrived", Verification::Delivered { platform_ref: "m-earlier".into() }),
                ("safe", Verification::SafeToResend),
                ("unknown", Verification::Unknown),
            ],
        ));
        run_until_settled(&store, channel.clone()).await;

        assert_eq!(channel.delivered(), ["safe"]);
        let rows = store.outbox("fake", &[], 10).await.unwrap();
        let states: Vec<_> = rows.iter().map(|r| (r.dedupe_key.as_str(), r.state)).collect();
        assert_eq!(
            states,
            [("arrived", OutboundState::Sent), ("safe", OutboundState::Sent), ("unknown", OutboundState::Uncertain)]
        );
        assert_eq!(rows[0].platform_ref.as_deref(), Some("m-earlier"));
    }

    #[tokio::test]
    async fn a_queued_send_wakes_the_worker_and_shutdown_stops_it() {
        let (store, _dir) = store().await;
        let channel = Arc::new(Scripted::new(&[], &[]));
        let wake = Arc::new(Notify::new());
        let (stop, shutdown) = watch::channel(false);
        let worker = tokio::spawn(deliver(store.clone(), channel.clone(), quick(), wake.clone(), shutdown));
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.enqueue(&message("hello")).await.unwrap();
        let queued = Instant::now();
        wake.notify_one();
        while channel.delivered().is_empty() {
            assert!(queued.elapsed() < MAX_IDLE / 2, "the wake-up was not heard");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), worker).await.expect("stops on shutdown").unwrap();
    }
}
