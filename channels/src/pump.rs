//! The delivery pump: one per channel, turning the engine's delivery events (suggestions
//! and approvals shown, decided, expired) into sends in the channel's outbox.
//!
//! Rendering and queueing happen before the channel's cursor moves past an event, and a
//! send is queued under a key derived from the event, so a crash in between renders the
//! event again and queues nothing twice.

use std::sync::Arc;
use std::time::Duration;

use loopgate_engine::{Store, StoreError};
use tokio::sync::watch;

use crate::channel::{Channel, Wakes};

/// Longest wait between two looks at the events: another process (the CLI, a pulse) does
/// not wake this one.
const POLL: Duration = Duration::from_secs(1);
const BATCH: u32 = 100;

pub async fn pump(store: Store, channel: Arc<dyn Channel>, wakes: Wakes, mut shutdown: watch::Receiver<bool>) {
    let name = channel.name();
    loop {
        if *shutdown.borrow() {
            return;
        }
        match pump_once(&store, channel.as_ref()).await {
            Ok(0) => {}
            Ok(queued) => {
                tracing::debug!(channel = name, queued, "delivery events rendered");
                wakes.outbox.notify_one();
            }
            Err(error) => tracing::warn!(channel = name, %error, "delivery pump cannot reach the store; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = wakes.deliveries.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Renders and queues every event the channel has not handled; returns how many sends
/// were queued.
pub async fn pump_once(store: &Store, channel: &dyn Channel) -> Result<usize, StoreError> {
    let name = channel.name();
    let mut queued = 0;
    loop {
        let events = store.deliveries(name, BATCH).await?;
        let Some(last) = events.last().map(|d| d.id) else { break };
        for delivery in &events {
            for outbound in channel.render(delivery) {
                queued += usize::from(store.enqueue(&outbound).await?.1);
            }
        }
        store.ack_deliveries(name, last).await?;
        if events.len() < BATCH as usize {
            break;
        }
    }
    loop {
        let events = store.approval_deliveries(name, BATCH).await?;
        let Some(last) = events.last().map(|d| d.id) else { break };
        for delivery in &events {
            for outbound in channel.render_approval(delivery) {
                queued += usize::from(store.enqueue(&outbound).await?.1);
            }
        }
        store.ack_approval_deliveries(name, last).await?;
        if events.len() < BATCH as usize {
            break;
        }
    }
    Ok(queued)
}
