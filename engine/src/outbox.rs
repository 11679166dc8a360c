//! The durable outbox: what channels send, how a send is recorded, and when a failed one
//! is tried again.
//!
//! ```text
//! queued ──claim──▶ sending ──▶ sent
//!   ▲                  │ ├────▶ failed     (permanent error, or out of attempts)
//!   └── retry at ──────┘ └────▶ uncertain  (found `sending` after a crash, and the
//!                                           platform cannot tell whether it arrived)
//! ```
//!
//! A claim commits `sending` (with the attempt counted) before the message leaves, so a
//! crash between the send and its record leaves a row that says so. At the next start the
//! channel is asked whether the platform can tell; only a platform that can — or one that
//! drops a repeated send itself — gets it again. Everything else becomes `uncertain` and is
//! never repeated by itself: a duplicate message is worse than a visible doubt.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

pub type OutboundId = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundState {
    Queued,
    Sending,
    Sent,
    Failed,
    Uncertain,
}

impl OutboundState {
    pub const ALL: [OutboundState; 5] = [
        OutboundState::Queued,
        OutboundState::Sending,
        OutboundState::Sent,
        OutboundState::Failed,
        OutboundState::Uncertain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutboundState::Queued => "queued",
            OutboundState::Sending => "sending",
            OutboundState::Sent => "sent",
            OutboundState::Failed => "failed",
            OutboundState::Uncertain => "uncertain",
        }
    }

    pub fn parse(value: &str) -> Option<OutboundState> {
        OutboundState::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for OutboundState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message for a channel to send, before it is queued.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbound {
    pub channel: String,
    /// What the send is ("suggestion:12:r3:show"); queueing the same key again is a no-op,
    /// so a delivery event handled twice (after a crash) is still sent once.
    pub dedupe_key: String,
    /// The rendered message in the channel's own terms.
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outbound {
    pub id: OutboundId,
    pub channel: String,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    pub state: OutboundState,
    /// Sends started, this one included while `sending`.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// When the latest attempt was marked started.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The platform's id for what was sent.
    pub platform_ref: Option<String>,
    pub last_error: Option<String>,
}

/// Why a send did not go through, as the channel judged the platform's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The platform asked to wait (HTTP 429 with `retry_after`).
    #[error("rate limited, retry after {}", humantime_ms(.retry_after))]
    RateLimited { retry_after: std::time::Duration },
    /// Worth trying again: a 5xx, a dropped connection, a timeout.
    #[error("{0}")]
    Transient(String),
    /// Trying again cannot help: a 4xx such as a chat that no longer exists.
    #[error("{0}")]
    Permanent(String),
}

fn humantime_ms(duration: &std::time::Duration) -> String {
    format!("{} ms", duration.as_millis())
}

/// What the platform says about a send that was started but never recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// It arrived; this is its id.
    Delivered { platform_ref: String },
    /// It did not arrive, or the platform drops a repeat of it by itself: sending again
    /// cannot make a duplicate.
    SafeToResend,
    /// No way to tell.
    Unknown,
}

/// How long failed sends wait and when they stop.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The wait after the first transient failure; each further one doubles it.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts after which a send failing transiently is given up and recorded `failed`.
    pub max_attempts: u32,
    /// Attempts after which even a rate-limited send is given up: a platform that answers
    /// 429 this often is not going to take it.
    pub max_rate_limited_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        // 1 s, 2 s, 4 s … capped at 10 minutes: about two and a half hours of a platform
        // being down before a message is given up.
        RetryPolicy {
            first_backoff: Duration::seconds(1),
            max_backoff: Duration::minutes(10),
            max_attempts: 20,
            max_rate_limited_attempts: 100,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(DateTime<Utc>),
    GiveUp,
}

impl RetryPolicy {
    /// After attempt number `attempts` (1 for the first) failed with `error` at `now`.
    pub fn after_failure(&self, error: &SendError, attempts: u32, now: DateTime<Utc>) -> AfterFailure {
        match error {
            SendError::Permanent(_) => AfterFailure::GiveUp,
            SendError::RateLimited { .. } if attempts >= self.max_rate_limited_attempts => AfterFailure::GiveUp,
            SendError::RateLimited { retry_after } => {
                // The platform's own number, never less: asking sooner only earns another 429.
                let wait = Duration::from_std(*retry_after).unwrap_or(self.max_backoff);
                AfterFailure::RetryAt(now + wait.max(Duration::milliseconds(1)))
            }
            SendError::Transient(_) if attempts >= self.max_attempts => AfterFailure::GiveUp,
            SendError::Transient(_) => {
                let doublings = attempts.saturating_sub(1).min(30);
                let wait = self.first_backoff.checked_mul(1 << doublings).unwrap_or(self.max_backoff);
                AfterFailure::RetryAt(now + wait.min(self.max_backoff))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + Duration::seconds(seconds)
    }

    #[test]
    fn transient_failures_back_off_doubling_up_to_the_cap_then_give_up() {
        let policy = RetryPolicy::default();
        let waits: Vec<i64> = (1..=12)
            .map(|n| match policy.after_failure(&SendError::Transient("502".into()), n, at(0)) {
                AfterFailure::RetryAt(t) => (t - at(0)).num_seconds(),
                AfterFailure::GiveUp => -1,
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        let last = policy.after_failure(&SendError::Transient("timeout".into()), 20, at(0));
        assert_eq!(last, AfterFailure::GiveUp);
    }

    #[test]
    fn rate_limits_wait_exactly_as_long_as_the_platform_says() {
        let policy = RetryPolicy::default();
        let limited = SendError::RateLimited { retry_after: std::time::Duration::from_secs(7) };
        assert_eq!(policy.after_failure(&limited, 1, at(100)), AfterFailure::RetryAt(at(107)));
        // Rate limits do not use up the transient budget...
        assert_eq!(policy.after_failure(&limited, 25, at(100)), AfterFailure::RetryAt(at(107)));
        // ...but a platform that never takes it is not asked forever.
        assert_eq!(policy.after_failure(&limited, 100, at(100)), AfterFailure::GiveUp);
        let now = SendError::RateLimited { retry_after: std::time::Duration::ZERO };
        assert!(matches!(policy.after_failure(&now, 1, at(0)), AfterFailure::RetryAt(t) if t > at(0)));
    }

    #[test]
    fn permanent_errors_stop_at_once() {
        let policy = RetryPolicy::default();
        let gone = SendError::Permanent("400 Bad Request: chat not found".into());
        assert_eq!(policy.after_failure(&gone, 1, at(0)), AfterFailure::GiveUp);
        assert_eq!(gone.to_string(), "400 Bad Request: chat not found");
    }

    #[test]
    fn states_round_trip() {
        for state in OutboundState::ALL {
            assert_eq!(OutboundState::parse(state.as_str()), Some(state));
        }
        assert_eq!(OutboundState::parse("lost"), None);
    }
}
