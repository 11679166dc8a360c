//! Pure decisions, called by the engine for every channel. Nothing here does IO.
//!
//! - [`identity`]: who the owner is on each platform.
//! - [`action`]: each action's kind, target and risk class, and the owner's allow / ask /
//!   deny rules over them (deny wins; anything with an outside effect asks by default).

pub mod action;
pub mod auto_create;
mod identity;

pub use action::{ActionKind, ActionView, Assessment, Effect, Policy, Risk, Rule};
pub use auto_create::AutoCreate;
pub use identity::Identities;
