//! End-to-end tests of the `loopgate` service: the real application on port 0 with a
//! fresh database each, and the real binary where a process boundary matters (kill -9,
//! signals, CLI exit codes).

mod actions_api;
mod backup;
mod cli;
mod discord;
mod email;
mod executor;
mod fake_discord;
mod fake_model;
mod fake_telegram;
mod habits_and_policy;
mod helpers;
mod intelligence;
mod learning;
mod mail;
mod memory_api;
mod model;
mod owner_day;
mod restart;
mod server;
mod setup;
mod signals_api;
mod telegram;
mod workflows;
