//! The `loopgate` binary's library half: CLI, configuration, HTTP server and the wiring of
//! channels to the engine. `main.rs` only parses arguments and calls in here, so tests
//! start the very same application.

pub mod answer;
pub mod app;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod executor;
pub mod http;
pub mod model;
pub mod supervise;
pub mod telemetry;
pub mod workflows;
