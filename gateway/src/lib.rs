//! The `loopgate` binary's library half: CLI, configuration, HTTP server and the wiring of
//! channels to the engine. `main.rs` only parses arguments and calls in here, so tests
//! start the very same application.

pub mod answer;
pub mod app;
pub mod backup;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod executor;
pub mod http;
pub mod init;
pub mod memory_file;
pub mod model;
pub mod supervise;
pub mod telemetry;
pub mod workflows;

/// `loopgate --version`: the version and what this build can talk to.
pub static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (channels: {}; storage: sqlite, postgres; tls: rustls)",
        env!("CARGO_PKG_VERSION"),
        loopgate_channels::FEATURES.join(", ")
    )
});
