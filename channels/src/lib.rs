//! Chat platform adapters (Telegram, Discord, email) behind one `Channel` trait.
//!
//! Adapters turn platform payloads into engine signals and render what the engine asks
//! to show. What every adapter shares starts here: how an adapter reports that it is
//! still receiving, which `/readyz` turns into the service's readiness.

mod liveness;

pub use liveness::{Liveness, LivenessReport};
