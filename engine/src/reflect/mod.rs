//! Reflection: from evidence to ideas. So far, the deterministic reading of time
//! expressions the reminder and promise detectors need.

pub mod when;
