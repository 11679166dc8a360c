//! The one trait every chat platform adapter implements, and what it is started with.
//!
//! An adapter does four things: it runs its inbound side (turning platform updates into
//! signals) until shutdown; it renders the engine's delivery events into sends in its own
//! terms; it performs one send from the outbox; and, after a crash, it says whether the
//! platform can tell that a send which was started ever arrived. Everything between —
//! queueing, marking a send started, retrying, recording — is the outbox's
//! ([`crate::outbox::deliver`]), the same for every channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use loopgate_engine::actions::ApprovalDelivery;
use loopgate_engine::outbox::OutboundState;
use loopgate_engine::outbox::{NewOutbound, Outbound, SendError, Verification};
use loopgate_engine::suggestion::Delivery;
use loopgate_engine::{Store, StoreError};
use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::Liveness;

/// A boxed future, so `dyn Channel` works (channels are chosen by configuration at start).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a channel is started with.
#[derive(Clone)]
pub struct ChannelContext {
    /// Where inbound signals go and deliveries come from.
    pub store: Store,
    /// Becomes `true` when the service stops.
    pub shutdown: watch::Receiver<bool>,
    pub wakes: Wakes,
}

/// Nudges for a channel's background workers, so a button press shows its outcome at
/// once rather than at the next poll.
#[derive(Clone, Default)]
pub struct Wakes {
    /// Something was queued in the channel's outbox.
    pub outbox: Arc<Notify>,
    /// Something was decided: delivery events are waiting to be rendered.
    pub deliveries: Arc<Notify>,
}

/// A send that went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The platform's id for it (a message id), kept so it can later be edited.
    pub platform_ref: String,
}

/// The dedupe key of the send that posts approval `id` on `channel`: there is one per
/// approval and channel, and its later edits find the posted message by this key.
pub fn approval_post_key(channel: &str, id: i64) -> String {
    format!("{channel}:approval:{id}:post")
}

/// The copies on `channel` that an edit (`{"suggestion": id}` or `{"approval": id}`)
/// applies to, as the platform references their posts recorded.
pub async fn posted_copies(store: &Store, channel: &str, edit: &Value) -> Result<Vec<String>, StoreError> {
    if let Some(id) = edit.get("suggestion").and_then(Value::as_i64) {
        let Some(suggestion) = store.suggestion(id).await? else { return Ok(Vec::new()) };
        return Ok(suggestion.surfaces.into_iter().filter(|s| s.channel == channel).map(|s| s.surface_ref).collect());
    }
    if let Some(id) = edit.get("approval").and_then(Value::as_i64) {
        let post = store.outbound_by_key(channel, &approval_post_key(channel, id)).await?;
        return Ok(post.filter(|p| p.state == OutboundState::Sent).and_then(|p| p.platform_ref).into_iter().collect());
    }
    Ok(Vec::new())
}

pub trait Channel: Send + Sync + 'static {
    /// The channel's name: the `source` of its signals, the key of its outbox rows.
    fn name(&self) -> &'static str;

    /// Whether it still hears from its platform, for `/readyz`.
    fn liveness(&self) -> &Liveness;

    /// Runs the inbound side (long polling, a gateway connection, IMAP IDLE) until
    /// `ctx.shutdown` turns true. Returns an error only for what retrying cannot fix.
    fn run_inbound(self: Arc<Self>, ctx: ChannelContext) -> BoxFuture<'static, anyhow::Result<()>>;

    /// The sends that keep this channel's copies true after a delivery event: post a new
    /// suggestion, edit a posted one to show a decision, retract one that expired.
    fn render(&self, delivery: &Delivery) -> Vec<NewOutbound>;

    /// The same for an approval: post it with its two buttons, then show its outcome.
    fn render_approval(&self, delivery: &ApprovalDelivery) -> Vec<NewOutbound>;

    /// The outbox payloads that deliver a `message` action (`{"kind": "message", "target":
    /// {"channel", "conversation", "reply_to"}, "text"}`) run as task `task`, or why this
    /// channel cannot deliver it: text longer than one message is several parts, in
    /// order, each within the platform's limit. The executor queues them; the outbox sends
    /// them one after the other.
    fn message(&self, task: i64, action: &Value) -> Result<Vec<Value>, String> {
        let _ = (task, action);
        Err(format!("the {} channel does not deliver messages", self.name()))
    }

    /// Performs one send. The error says whether trying again can help.
    fn send<'a>(&'a self, outbound: &'a Outbound) -> BoxFuture<'a, Result<Sent, SendError>>;

    /// For a send found started but never recorded (the process died in between): did it
    /// arrive? A platform that cannot tell answers [`Verification::Unknown`], and the send
    /// is not repeated.
    fn verify<'a>(&'a self, outbound: &'a Outbound) -> BoxFuture<'a, Verification>;
}
