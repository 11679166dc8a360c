//! Reflection: evidence → ideas → critique → decision. The deterministic reflector's
//! detectors (`detect`, and `habits` for weekly recurring tasks), the reading of time expressions they rely on (`when`), and one
//! run's critique, decision and artifacts (`run`).

pub mod detect;
pub mod habits;
pub mod model;
pub mod run;
pub mod when;

#[cfg(test)]
mod fixtures;
