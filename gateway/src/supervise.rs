//! Background workers that never silently vanish: each runs in a task of its own, and a
//! panic is logged, counted (`loopgate_worker_panics_total{worker}`), shown by `/readyz`
//! and followed by a restart after a backoff (1 s, doubling to a minute).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use loopgate_channels::backoff::Backoff;
use loopgate_channels::chat::sleep_or_stop;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How one worker is doing, as `/readyz` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkerHealth {
    /// False between a panic and the restart.
    pub running: bool,
    /// Panics since the process started.
    pub restarts: u64,
    /// The last panic's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_panic: Option<String>,
}

/// Every supervised worker by name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Workers(Arc<Mutex<BTreeMap<String, WorkerHealth>>>);

impl Workers {
    pub fn report(&self) -> BTreeMap<String, WorkerHealth> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether every worker is running (none is waiting to be restarted).
    pub fn all_running(&self) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).values().all(|w| w.running)
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut WorkerHealth)) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        change(all.entry(name.to_owned()).or_default());
    }

    /// Runs the worker `make` builds until it returns or `stop` turns true; a panic
    /// restarts it (a fresh one from `make`) after a backoff.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, mut stop: watch::Receiver<bool>, make: F) -> JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let workers = self.clone();
        workers.update(&name, |w| w.running = true);
        tokio::spawn(async move {
            let mut backoff = Backoff::default();
            loop {
                workers.update(&name, |w| w.running = true);
                let outcome = tokio::spawn(make()).await;
                let Err(error) = outcome else { return };
                if !error.is_panic() {
                    return;
                }
                let message = panic_message(error.into_panic());
                workers.update(&name, |w| {
                    w.running = false;
                    w.restarts += 1;
                    w.last_panic = Some(message.clone());
                });
                metrics::counter!("loopgate_worker_panics_total", "worker" => name.clone()).increment(1);
                tracing::error!(worker = %name, panic = %message, "a worker panicked; restarting it");
                if *stop.borrow() || sleep_or_stop(backoff.next(None), &mut stop).await {
                    return;
                }
            }
        })
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_owned(),
            Err(_) => "a panic without a message".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_worker_is_counted_shown_and_restarted() {
        let workers = Workers::default();
        let (stop_tx, stop) = watch::channel(false);
        let starts = Arc::new(AtomicUsize::new(0));
        let counted = starts.clone();
        let handle = workers.spawn("pump:test", stop, move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("tried to clone a span that already closed");
                }
                std::future::pending::<()>().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let health = workers.report()["pump:test"].clone();
        assert_eq!((health.running, health.restarts), (false, 1));
        assert_eq!(health.last_panic.as_deref(), Some("tried to clone a span that already closed"));
        assert!(!workers.all_running());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 2, "restarted once");
        assert!(workers.all_running());
        stop_tx.send(true).unwrap();
        handle.abort();
    }

    #[tokio::test]
    async fn a_worker_that_returns_is_not_restarted() {
        let workers = Workers::default();
        let (_stop_tx, stop) = watch::channel(false);
        workers.spawn("sweeper", stop, || async {}).await.unwrap();
        assert_eq!(workers.report()["sweeper"].restarts, 0);
    }
}
