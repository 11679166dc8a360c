//! Logs (tracing) and metrics (Prometheus), set up once per process.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

/// Installs the global log subscriber. `RUST_LOG`, when set, wins over `level`.
/// Logs go to stderr so the CLI's own output on stdout stays clean for scripts.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colours only for a person at a terminal, not in files and journals.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A second call (tests starting several apps) keeps the first subscriber.
    let _ = result;
}

/// The process-wide Prometheus recorder. The `metrics` facade has one global recorder,
/// so every app in a process (several in tests) shares it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
            let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .expect("valid buckets")
                .set_buckets_for_metric(Matcher::Full("loopgate_store_batch_size".into()), &sizes)
                .expect("valid buckets")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            let upkeep = handle.clone();
            // Histograms keep raw samples until upkeep folds them into buckets.
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawn metrics upkeep thread");
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// A `span.enter()` guard held across an `.await` leaves the span entered on a thread
    /// the task has left; with the registry `main` installs, the span is later cloned
    /// after it closed and the task panics (a second Discord press killed its handler so).
    /// Async code attaches spans with `.instrument(span)`; sync code has no reason to
    /// enter one by hand either, so the whole tree is held to it.
    #[test]
    fn no_span_guard_is_entered_by_hand() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = Vec::new();
        for krate in ["policies", "engine", "channels", "gateway"] {
            visit(&root.join(krate).join("src"), &mut found);
        }
        assert!(found.is_empty(), "use `.instrument(span)` instead of entering a span guard: {found:#?}");
    }

    fn visit(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("a source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                visit(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or_default();
                    let needle = [".enter()", ".entered()"].iter().any(|p| code.contains(p));
                    if needle && !path.ends_with("telemetry.rs") {
                        found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
}
