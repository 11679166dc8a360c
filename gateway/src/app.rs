//! Startup shared by `main` and the tests: open the store, bind the port, serve until told
//! to stop, then drain and close.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use loopgate_engine::intelligence::Intelligence;
use loopgate_engine::{Clock, Store, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::watch;

use loopgate_channels::discord::Discord;
use loopgate_channels::email::Email;
use loopgate_channels::outbox::deliver;

use crate::supervise::Workers;
use loopgate_channels::pump::pump;
use loopgate_channels::telegram::Telegram;
use loopgate_channels::{Channel, ChannelContext, Wakes};
use loopgate_engine::outbox::RetryPolicy;

use crate::config::Settings;
use crate::http::{self, ApiToken, AppState};
use crate::telemetry;

/// A bound, ready-to-serve loopgate. `build` does all fallible setup, so `main` can report
/// a bad database or a taken port before claiming to be up.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    state: AppState,
    settings: Settings,
    channels: Vec<(Arc<dyn Channel>, Wakes)>,
    /// Held while serving: a second `serve` (or a `restore`) on the same SQLite file is
    /// refused instead of racing this one.
    _lock: Option<DatabaseLock>,
}

/// SQLite's words for a file that is not (or no longer) a sound database.
fn is_damaged(error: &loopgate_engine::StoreError) -> bool {
    let text = error.to_string();
    ["file is not a database", "database disk image is malformed", "file is encrypted"]
        .iter()
        .any(|damage| text.contains(damage))
}

/// An exclusive lock on `<database>.lock` beside a SQLite file, released when dropped
/// (or when the process dies, however it dies).
pub struct DatabaseLock {
    _file: std::fs::File,
    pub path: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{database} is in use by another loopgate (`serve` holds {lock}); stop it first, or point storage.url at another file"
    )]
    Busy { database: String, lock: String },
    #[error("cannot open {lock}: {source}")]
    Io { lock: String, source: std::io::Error },
}

/// Takes the lock of the SQLite database behind `url`; `Ok(None)` for PostgreSQL, where
/// several services on one database are a deployment to coordinate, not an accident.
pub fn lock_database(url: &str) -> Result<Option<DatabaseLock>, LockError> {
    let Some(database) = Store::sqlite_file(url) else { return Ok(None) };
    let mut name = database.clone().into_os_string();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    let lock = path.display().to_string();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| LockError::Io { lock: lock.clone(), source })?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| LockError::Io { lock: lock.clone(), source })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(DatabaseLock { _file: file, path })),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(LockError::Busy { database: database.display().to_string(), lock })
        }
        Err(std::fs::TryLockError::Error(source)) => Err(LockError::Io { lock, source }),
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Application::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Application> {
        let lock = lock_database(&settings.store.url)?;
        {
            use std::os::unix::fs::DirBuilderExt;
            // Private when new: it holds what loopgate learns about its owner.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&settings.data_dir)
                .with_context(|| format!("creating the data directory {}", settings.data_dir.display()))?;
        }
        let store = match Store::open(&settings.store, clock).await {
            Ok(store) => store,
            Err(error) if is_damaged(&error) => anyhow::bail!(
                "the database {} is damaged ({error}): nothing was changed. Restore a backup with `loopgate restore \
                 PATH --force` (the damaged file is kept beside it), or move the file away to start afresh",
                redact_url(&settings.store.url)
            ),
            Err(error) => {
                return Err(error).with_context(|| format!("opening the database {}", redact_url(&settings.store.url)));
            }
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("listening on {} (is another loopgate running?)", settings.listen))?;
        let address = listener.local_addr()?;
        let executor = crate::executor::Actions::new(&settings.webhooks, &settings.commands);
        let intelligence = Intelligence::with_executor(store.clone(), settings.intelligence.clone(), executor.clone());
        if let Some(model) = &settings.model {
            intelligence
                .use_model(Arc::new(crate::model::Provider::new(model.clone()).context("setting up the model")?));
        }
        // Before serving: a task a crash left running may have had its effect, so it is
        // failed here rather than run again by the next pulse.
        intelligence.recover_tasks().await.context("recovering tasks interrupted by a restart")?;
        intelligence.refresh_owners().await.context("reading the paired owners")?;
        let Channels { list: channels, telegram, discord, email } =
            build_channels(&settings, &store, &intelligence, &executor)?;
        executor.route_workflows(&intelligence, settings.workflows.clone());
        let state = AppState {
            store,
            intelligence,
            token: settings.api_token.as_deref().map(ApiToken::new),
            identities: Arc::new(settings.identities.clone()),
            metrics: telemetry::metrics_handle(),
            channels: Arc::new(channels.iter().map(|(c, _)| c.liveness().clone()).collect()),
            telegram,
            discord,
            email,
            workflows: Arc::new(settings.workflows.clone()),
            workers: Workers::default(),
        };
        Ok(Application { listener, address, state, settings, channels, _lock: lock })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn store(&self) -> Store {
        self.state.store.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets requests in flight
    /// finish (at most the configured grace), commits queued writes and closes the store.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application { listener, address, state, settings, channels, _lock } = self;
        let store = state.store.clone();
        let (stop_tx, stop_rx) = watch::channel(false);

        let supervised = state.workers.clone();
        let (sweep_store, every, stop) = (store.clone(), settings.sweep_interval, stop_rx.clone());
        let sweeper = supervised
            .spawn("sweeper", stop_rx.clone(), move || sweep_expired(sweep_store.clone(), every, stop.clone()));
        let (intelligence, every, stop) = (state.intelligence.clone(), settings.heartbeat_interval, stop_rx.clone());
        let deliveries: Vec<_> = channels.iter().map(|(_, wakes)| wakes.deliveries.clone()).collect();
        let heartbeat = supervised.spawn("heartbeat", stop_rx.clone(), move || {
            beat(intelligence.clone(), every, deliveries.clone(), stop.clone())
        });
        let (intelligence, stop) = (state.intelligence.clone(), stop_rx.clone());
        let owners =
            supervised.spawn("owners", stop_rx.clone(), move || follow_owners(intelligence.clone(), stop.clone()));
        let mut workers =
            crate::workflows::start(&state.intelligence, &settings.workflows, settings.timezone, &stop_rx);
        workers.push(owners);
        for (channel, wakes) in channels {
            workers.extend(start_channel(&supervised, &store, channel, wakes, &stop_rx));
        }
        let app = http::router(state, settings.max_body_bytes);
        let mut stop_server = stop_rx.clone();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move { stopped(&mut stop_server).await });
        tracing::info!(%address, backend = ?store.backend(), "loopgate is serving");

        let mut server = std::pin::pin!(server.into_future());
        let outcome = tokio::select! {
            result = &mut server => result.context("the HTTP server failed"),
            () = shutdown => {
                tracing::info!("shutting down: no new connections, finishing requests in flight");
                let _ = stop_tx.send(true);
                match tokio::time::timeout(settings.shutdown_grace, &mut server).await {
                    Ok(result) => result.context("the HTTP server failed"),
                    Err(_) => {
                        tracing::warn!(grace = ?settings.shutdown_grace, "requests still in flight after the grace period; closing anyway");
                        Ok(())
                    }
                }
            }
        };
        let _ = stop_tx.send(true);
        let _ = sweeper.await;
        let _ = heartbeat.await;
        for worker in workers {
            let _ = worker.await;
        }
        store.close().await;
        tracing::info!("loopgate stopped");
        outcome
    }
}

/// A channel's three workers: its inbound side, the pump from delivery events to its
/// outbox, and the outbox worker that sends.
/// The configured channels, each with the nudges for its workers.
pub struct Channels {
    pub list: Vec<(Arc<dyn Channel>, Wakes)>,
    pub telegram: Option<Arc<Telegram>>,
    pub discord: Option<Arc<Discord>>,
    pub email: Option<Arc<Email>>,
}

/// Sets up the configured channels (nothing connects yet) and lets `message` actions go
/// out through them. The server starts their workers; the CLI only queues into them.
pub fn build_channels(
    settings: &Settings,
    store: &Store,
    intelligence: &Arc<Intelligence>,
    executor: &crate::executor::Actions,
) -> anyhow::Result<Channels> {
    let mut channels: Vec<(Arc<dyn Channel>, Wakes)> = Vec::new();
    let mut telegram = None;
    if let Some(config) = &settings.telegram {
        let wakes = Wakes::default();
        let channel = Telegram::new(config.clone(), store.clone(), intelligence.clone(), wakes.clone())
            .context("setting up the Telegram channel")?;
        telegram = Some(channel.clone());
        channels.push((channel, wakes));
    }
    let mut discord = None;
    if let Some(config) = &settings.discord {
        let wakes = Wakes::default();
        let channel = Discord::new(config.clone(), store.clone(), intelligence.clone(), wakes.clone())
            .context("setting up the Discord channel")?;
        discord = Some(channel.clone());
        channels.push((channel, wakes));
    }
    let mut email = None;
    if let Some(config) = &settings.email {
        let wakes = Wakes::default();
        let channel = Email::new(config.clone(), store.clone(), intelligence.clone(), wakes.clone())
            .context("setting up the email channel")?;
        email = Some(channel.clone());
        channels.push((channel, wakes));
    }
    executor.route_messages(store.clone(), &channels);
    Ok(Channels { list: channels, telegram, discord, email })
}

fn start_channel(
    workers: &Workers,
    store: &Store,
    channel: Arc<dyn Channel>,
    wakes: Wakes,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let name = channel.name();
    let context = ChannelContext { store: store.clone(), shutdown: stop.clone(), wakes: wakes.clone() };
    let inbound = {
        let channel = channel.clone();
        move || {
            let inbound = channel.clone().run_inbound(context.clone());
            async move {
                if let Err(error) = inbound.await {
                    tracing::error!(channel = name, error = format!("{error:#}"), "the channel's inbound side stopped");
                }
            }
        }
    };
    let pumping = {
        let (store, channel, wakes, stop) = (store.clone(), channel.clone(), wakes.clone(), stop.clone());
        move || pump(store.clone(), channel.clone(), wakes.clone(), stop.clone())
    };
    let sending = {
        let (store, stop) = (store.clone(), stop.clone());
        move || deliver(store.clone(), channel.clone(), RetryPolicy::default(), wakes.outbox.clone(), stop.clone())
    };
    vec![
        workers.spawn(format!("{name}:inbound"), stop.clone(), inbound),
        workers.spawn(format!("{name}:pump"), stop.clone(), pumping),
        workers.spawn(format!("{name}:outbox"), stop.clone(), sending),
    ]
}

/// How soon an owner paired or removed from another process (`loopgate owner remove`)
/// counts here.
const OWNERS_LOOK: Duration = Duration::from_secs(2);

async fn follow_owners(intelligence: Arc<Intelligence>, stop: watch::Receiver<bool>) {
    every(OWNERS_LOOK, stop, || async {
        if let Err(error) = intelligence.refresh_owners().await {
            tracing::warn!(%error, "reading the paired owners failed; keeping the last known");
        }
    })
    .await
}

async fn sweep_expired(store: Store, interval: Duration, stop: watch::Receiver<bool>) {
    every(interval, stop, || async {
        if let Err(error) = store.sweep().await {
            tracing::warn!(%error, "sweeping expired signals failed");
        }
    })
    .await
}

/// Runs `work` now and then every `interval` (a late round delays the next, none is
/// skipped into a burst) until `stop` says so.
async fn every<F, Fut>(interval: Duration, mut stop: watch::Receiver<bool>, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => work().await,
            () = stopped(&mut stop) => return,
        }
    }
}

/// How often the due timer looks again for something that got a time elsewhere (the CLI,
/// another process), besides being nudged by this one.
const DUE_LOOK: Duration = Duration::from_secs(2);

/// The heartbeat's timer. The first pulse comes one interval after start, so a restart
/// loop cannot turn into a reflection loop. Beside it, a timer armed for the next thing
/// with a time (a reminder, a snooze) brings it back at that time, not at the next pulse.
async fn beat(
    intelligence: Arc<Intelligence>,
    every: Duration,
    deliveries: Vec<Arc<tokio::sync::Notify>>,
    mut stop: watch::Receiver<bool>,
) {
    let start = tokio::time::Instant::now() + every;
    let mut tick = tokio::time::interval_at(start, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let next = |i: &Intelligence| chrono::Duration::from_std(every).ok().map(|d| i.store().clock().now() + d);
    intelligence.set_next_pulse(next(&intelligence));
    let wake_channels = || deliveries.iter().for_each(|d| d.notify_one());
    // Something due that could not be brought back (the kill switch is on) is looked at
    // again after a pause, not in a tight loop.
    let mut held = false;
    loop {
        let now = intelligence.store().clock().now();
        let due = match intelligence.store().next_due_at().await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "cannot read when the next item is due");
                None
            }
        };
        let until_due = match due {
            Some(at) if !(held && at <= now) => (at - now).to_std().unwrap_or(Duration::ZERO).min(DUE_LOOK),
            _ => DUE_LOOK,
        };
        tokio::select! {
            _ = tick.tick() => {
                match intelligence.pulse(false).await {
                    Ok(report) => tracing::debug!(outcome = ?report.outcome, read = report.read, "pulse"),
                    Err(error) => tracing::warn!(%error, "pulse failed"),
                }
                intelligence.set_next_pulse(next(&intelligence));
                wake_channels();
            }
            () = tokio::time::sleep(until_due) => {
                held = false;
                if due.is_some_and(|at| at <= intelligence.store().clock().now()) {
                    match intelligence.release_due().await {
                        Ok(came) if !came.is_empty() => wake_channels(),
                        Ok(_) => held = true,
                        Err(error) => {
                            held = true;
                            tracing::warn!(%error, "bringing back what is due failed");
                        }
                    }
                }
            }
            () = intelligence.due_changed_wait() => {}
            () = stopped(&mut stop) => return,
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Hides a password in a database URL before it reaches a log or an error message.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled, so a signal arriving the moment the server says it is
/// serving is already a graceful shutdown rather than the default, abrupt exit.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {},
                        _ = terminate.recv() => {},
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "cannot listen for shutdown signals; stop with SIGKILL");
                    std::future::pending::<()>().await
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/lg"), "postgres://app:***@db:5432/lg");
        assert_eq!(redact_url("postgres://app@db/lg"), "postgres://app@db/lg");
        assert_eq!(redact_url("sqlite://data/loopgate.db"), "sqlite://data/loopgate.db");
    }
}
