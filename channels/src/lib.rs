//! Chat platform adapters (Telegram, Discord, email) behind one [`Channel`] trait.
//!
//! Adapters turn platform payloads into engine signals and render what the engine asks
//! to show. What every adapter shares lives here: the trait and the context a channel is
//! started with (`channel`), the outbox worker that performs and records every send
//! (`outbox`), and how an adapter reports that it is still receiving (`liveness`), which
//! `/readyz` turns into the service's readiness.

pub mod backoff;
mod channel;
pub mod chat;
#[cfg(feature = "discord")]
pub mod discord;
#[cfg(feature = "email")]
pub mod email;
mod liveness;
pub mod outbox;
pub mod pump;
#[cfg(feature = "telegram")]
pub mod telegram;
pub mod text;

pub use channel::{BoxFuture, Channel, ChannelContext, Sent, Wakes};
pub use liveness::{Liveness, LivenessReport, wall_clock_ms};

/// The adapters this build has (cargo features), for `loopgate --version`.
pub const FEATURES: &[&str] = &[
    #[cfg(feature = "telegram")]
    "telegram",
    #[cfg(feature = "discord")]
    "discord",
    #[cfg(feature = "email")]
    "email",
];
