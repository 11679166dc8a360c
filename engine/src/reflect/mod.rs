//! Reflection: from evidence to ideas. So far the deterministic reflector's detectors
//! (`detect`) and the reading of time expressions they rely on (`when`).

pub mod detect;
pub mod when;
