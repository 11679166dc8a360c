//! A channel's "am I still receiving?" signal.
//!
//! A connection that silently stopped delivering must not look healthy. Each adapter owns
//! a [`Liveness`], marks it whenever it hears from its platform (an update, a heartbeat
//! ack, an IMAP IDLE response), and `/readyz` reports it stale after a quiet spell.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Milliseconds since the epoch, by the machine's clock.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[derive(Debug, Clone)]
pub struct Liveness {
    name: &'static str,
    /// Milliseconds since the epoch of the last sign of life; 0 before the first.
    last_alive_ms: Arc<AtomicI64>,
    /// How long without a sign of life counts as dead. Adapters that long-poll set it
    /// above their poll timeout.
    stale_after: Duration,
    /// Why the owner's delivery place refuses messages for good (a chat the bot was
    /// removed from), until a send there goes through again.
    delivery_error: Arc<std::sync::Mutex<Option<String>>>,
    /// Workers of this channel that panicked and were restarted, and the last panic.
    restarts: Arc<std::sync::Mutex<(u64, Option<String>)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LivenessReport {
    pub channel: &'static str,
    pub live: bool,
    /// Milliseconds since the last sign of life, if there was one.
    pub quiet_for_ms: Option<i64>,
    /// Why the owner's delivery place refuses messages; the channel is not ready then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_error: Option<String>,
    /// How often one of its workers panicked and was restarted, and the last panic.
    #[serde(skip_serializing_if = "is_zero")]
    pub restarts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_panic: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Liveness {
    pub fn new(name: &'static str, stale_after: Duration) -> Liveness {
        Liveness {
            name,
            last_alive_ms: Arc::new(AtomicI64::new(0)),
            stale_after,
            delivery_error: Arc::default(),
            restarts: Arc::default(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Sets (or, with `None`, clears) why the owner's delivery place refuses messages.
    pub fn set_delivery_error(&self, error: Option<String>) {
        *self.delivery_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }

    /// Records that a worker of this channel panicked (and is being restarted).
    pub fn record_panic(&self, message: String) {
        let mut restarts = self.restarts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        restarts.0 += 1;
        restarts.1 = Some(message);
    }

    /// Records a sign of life at `now_ms`.
    pub fn mark(&self, now_ms: i64) {
        self.last_alive_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub fn report(&self, now_ms: i64) -> LivenessReport {
        let last = self.last_alive_ms.load(Ordering::Relaxed);
        let quiet_for_ms = (last > 0).then(|| now_ms.saturating_sub(last));
        let delivery_error = self.delivery_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let (restarts, last_panic) = self.restarts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let live =
            quiet_for_ms.is_some_and(|quiet| quiet <= self.stale_after.as_millis() as i64) && delivery_error.is_none();
        LivenessReport { channel: self.name, live, quiet_for_ms, delivery_error, restarts, last_panic }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_only_between_a_sign_of_life_and_the_stale_limit() {
        let l = Liveness::new("telegram", Duration::from_secs(90));
        assert!(!l.report(1_000).live, "never heard from is not live");
        l.mark(10_000);
        assert!(l.report(10_000 + 90_000).live);
        assert!(!l.report(10_000 + 90_001).live);
        // A late, older mark does not move the clock backwards.
        l.mark(5_000);
        assert_eq!(l.report(20_000).quiet_for_ms, Some(10_000));
    }
}
