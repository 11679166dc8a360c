//! Pure decisions, called by the engine for every channel. Nothing here does IO.
//!
//! Today: who the owner is on each platform. Approval rules and the auto-create gate
//! join as the engine grows.

mod identity;

pub use identity::Identities;
