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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LivenessReport {
    pub channel: &'static str,
    pub live: bool,
    /// Milliseconds since the last sign of life, if there was one.
    pub quiet_for_ms: Option<i64>,
}

impl Liveness {
    pub fn new(name: &'static str, stale_after: Duration) -> Liveness {
        Liveness { name, last_alive_ms: Arc::new(AtomicI64::new(0)), stale_after }
    }

    /// Records a sign of life at `now_ms`.
    pub fn mark(&self, now_ms: i64) {
        self.last_alive_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub fn report(&self, now_ms: i64) -> LivenessReport {
        let last = self.last_alive_ms.load(Ordering::Relaxed);
        let quiet_for_ms = (last > 0).then(|| now_ms.saturating_sub(last));
        let live = quiet_for_ms.is_some_and(|quiet| quiet <= self.stale_after.as_millis() as i64);
        LivenessReport { channel: self.name, live, quiet_for_ms }
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
