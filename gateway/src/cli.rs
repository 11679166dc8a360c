//! The command line: `init`, `serve`, `migrate`, `doctor`, `signal`, `memory`, `pulse`,
//! `suggestions`, `approvals`, `learning`, `pair`, `owner`, `backup`, `restore`, `stop`,
//! `resume`.
//!
//! Output for people and scripts goes to stdout; logs go to stderr.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use loopgate_engine::actions::{ApprovalState, Verdict};
use loopgate_engine::heartbeat::Outcome;
use loopgate_engine::intelligence::Intelligence;
use loopgate_engine::learning::Dimension;
use loopgate_engine::suggestion::{Responder, SuggestionState};
use loopgate_engine::{
    Actor, Conversation, MemoryCandidate, MemoryKind, MemoryQuery, NewSignal, RememberOutcome, SignalKind, Source,
    Store, SystemClock, Trust, Urgency,
};
use loopgate_policies::Effect;

use crate::answer::{self, AnswerParts};
use crate::app::{Application, redact_url, shutdown_signal};
use crate::config::{Config, ConfigSource, LogFormat, Settings};
use crate::{doctor, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "loopgate",
    version = crate::VERSION.as_str(),
    about = "A self-hosted personal execution layer that lives in your chat apps"
)]
pub struct Cli {
    /// Configuration file [default: config/loopgate.toml if present, else built-in defaults]
    #[arg(long, global = true, env = "LOOPGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format, overriding `[log] format`
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up: write the configuration and its secrets, check each token against its
    /// platform, and say how to start
    Init(crate::init::InitArgs),
    /// Run the service: HTTP API, channels and background work
    Serve,
    /// Apply database migrations and exit
    Migrate,
    /// Check configuration, database and channels; print what is wrong and how to fix it
    Doctor,
    /// Record one signal from the shell
    Signal(SignalArgs),
    /// Search, add or forget what loopgate remembers about you
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// Run the heartbeat now: read what is new and, if there is reason to, reflect
    Pulse {
        /// Pulse as the timer does: cooldown, daily budget and quiet hours apply
        #[arg(long)]
        scheduled: bool,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Mail the email digest now (open suggestions and pending approvals); nothing is sent
    /// when nothing waits
    Digest {
        /// Print the outcome as JSON
        #[arg(long)]
        json: bool,
    },
    /// List suggestions or answer one
    #[command(subcommand)]
    Suggestions(SuggestionsCommand),
    /// List approvals or decide one
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// What your answers taught loopgate, per dimension, with the evidence; `reset` forgets
    /// one key
    Learning(LearningArgs),
    /// Print a one-time code that makes whoever sends it to the bot its owner on that
    /// channel (`/start CODE` on Telegram, `/pair CODE` on Discord); valid for an hour
    Pair {
        /// telegram or discord
        channel: String,
        #[arg(long)]
        json: bool,
    },
    /// The owners bound by pairing (configured ids are listed by `doctor`)
    #[command(subcommand)]
    Owner(OwnerCommand),
    /// Take a consistent backup while the service runs (`backup PATH`), or check one
    /// (`backup verify PATH`)
    Backup(BackupArgs),
    /// Replace the database with a backup; refused for a database holding anything unless
    /// --force, and while `serve` uses it
    Restore {
        /// The backup folder
        path: PathBuf,
        /// Say what would be replaced and by what; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Replace a database that holds data (SQLite keeps the old file beside it)
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Kill switch: pause the heartbeat; nothing new is thought about or dispatched
    Stop,
    /// Release the kill switch
    Resume,
}

#[derive(Debug, clap::Args)]
pub struct LearningArgs {
    #[command(subcommand)]
    pub command: Option<LearningCommand>,
    /// Only this dimension: actor, conversation, words, class, source or hour
    #[arg(long)]
    pub dimension: Option<String>,
    /// Most keys shown per dimension, strongest first
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print the overview as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum LearningCommand {
    /// Forget what one key learned and what it held back (audited), e.g.
    /// `loopgate learning reset actor email:ana@example.org`
    Reset { dimension: String, key: String },
}

#[derive(Debug, Subcommand)]
pub enum OwnerCommand {
    /// Owners bound by pairing, oldest first
    List {
        #[arg(long)]
        json: bool,
    },
    /// Unbind a paired owner; a running service stops taking their answers within seconds
    Remove {
        /// telegram or discord
        channel: String,
        /// Their user id, as `owner list` shows it
        account: String,
    },
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// A new or empty folder for the backup
    pub path: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Check a backup's checksum and contents; changes nothing
    Verify {
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Newest first
    List {
        /// pending (default), all, approved, denied or expired
        #[arg(long, default_value = "pending")]
        state: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON lines instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Approve or deny one; approving runs its task now
    Decide {
        id: i64,
        /// approve or deny
        decision: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SuggestionsCommand {
    /// Best first
    List {
        /// open (default), all, or a state: scheduled, active, acted, edited, snoozed,
        /// dismissed, ignored, expired, superseded
        #[arg(long, default_value = "open")]
        state: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON lines instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Answer a suggestion: act, edit, snooze or dismiss
    Respond {
        id: i64,
        /// act, edit, snooze or dismiss
        response: String,
        /// For edit: the new text, or a whole action as JSON ({"kind": …})
        #[arg(long)]
        action: Option<String>,
        /// For snooze: how long ("3h", "2d")
        #[arg(long = "for")]
        snooze_for: Option<String>,
        /// For snooze: until when (RFC 3339)
        #[arg(long)]
        until: Option<DateTime<Utc>>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Full-text search (all words must match); without words, the most recent
    Search {
        /// Words to look for
        #[arg(default_value = "")]
        query: Vec<String>,
        /// Only this kind (preference, workflow_pattern, open_loop, correction,
        /// recurring_task, ignored_noise, watch_item, constraint)
        #[arg(long, value_parser = parse_kind)]
        kind: Option<MemoryKind>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON lines instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Remember something, in your own words
    Add {
        #[arg(long, value_parser = parse_kind, default_value = "preference")]
        kind: MemoryKind,
        /// What it is about; a later memory on the same subject replaces this one
        #[arg(long, default_value = "")]
        subject: String,
        /// The text; `-` reads it from standard input
        text: Vec<String>,
    },
    /// Forget a memory for good (it will not be learned again from the same evidence)
    Forget { id: i64 },
    /// Write every memory to standard output (or --output): JSON to move or keep,
    /// Markdown to read
    Export {
        #[arg(long, value_enum, default_value = "json")]
        format: crate::memory_file::Format,
        /// A file to write instead of standard output
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Remember every memory of a JSON export (`-` reads standard input); a repeat
    /// confirms, a forgotten memory stays forgotten, origin and trust are kept
    Import {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn parse_kind(text: &str) -> Result<MemoryKind, String> {
    MemoryKind::parse(text).map_err(|e| e.to_string())
}

#[derive(Debug, clap::Args)]
pub struct SignalArgs {
    /// The text; `-` reads it from standard input
    pub text: String,
    #[arg(long, default_value = "cli")]
    pub source: String,
    #[arg(long, default_value = "message")]
    pub kind: String,
    /// The sender's platform id; a repeat with the same source and id is a duplicate
    #[arg(long)]
    pub external_id: Option<String>,
    #[arg(long)]
    pub actor: Option<String>,
    #[arg(long)]
    pub actor_name: Option<String>,
    #[arg(long)]
    pub conversation: Option<String>,
    #[arg(long, value_parser = parse_urgency, default_value = "normal")]
    pub urgency: Urgency,
    /// When it happened (RFC 3339); default now
    #[arg(long)]
    pub occurred_at: Option<DateTime<Utc>>,
    /// Raw payload as JSON
    #[arg(long)]
    pub payload: Option<String>,
    /// Mark the text as untrusted (it came from someone else, not from you)
    #[arg(long)]
    pub untrusted: bool,
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

fn parse_urgency(text: &str) -> Result<Urgency, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("{text:?} is not one of low, normal, high, critical"))
}

pub fn run(cli: Cli) -> ExitCode {
    if let Command::Doctor = cli.command {
        return doctor::run(cli.config.as_deref());
    }
    if let Command::Init(args) = cli.command {
        return crate::init::run(cli.config.as_deref(), args);
    }
    let settings = match load_settings(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loopgate: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loopgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve(settings).await,
            Command::Migrate => migrate(settings).await,
            Command::Signal(args) => signal(settings, args).await,
            Command::Memory(command) => memory(settings, command).await,
            Command::Pulse { scheduled, json } => pulse(settings, scheduled, json).await,
            Command::Digest { json } => digest(settings, json).await,
            Command::Suggestions(command) => suggestions(settings, command).await,
            Command::Approvals(command) => approvals(settings, command).await,
            Command::Learning(args) => learning(settings, args).await,
            Command::Stop => kill_switch(settings, true).await,
            Command::Resume => kill_switch(settings, false).await,
            Command::Pair { channel, json } => pair(settings, &channel, json).await,
            Command::Owner(command) => owner(settings, command).await,
            Command::Backup(args) => backup(settings, args).await,
            Command::Restore { path, dry_run, force, json } => restore(settings, &path, dry_run, force, json).await,
            Command::Doctor | Command::Init(_) => unreachable!("handled above"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Said once, to the person at the terminal; the log line would repeat it.
            eprintln!("loopgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_settings(cli: &Cli) -> anyhow::Result<Settings> {
    let (config, source) = Config::load(cli.config.as_deref(), std::env::vars())?;
    let format = cli.log_format.unwrap_or(config.log.format);
    telemetry::init_logging(format, &config.log.level);
    let settings = config.resolve(&|name| std::env::var(name).ok())?;
    if let ConfigSource::File(path) = &source {
        tracing::debug!(config = %path.display(), "configuration loaded");
    }
    Ok(settings)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Listening for signals starts before anything else, so no moment of start-up is
    // left where SIGTERM would kill the process without a clean shutdown.
    let shutdown = shutdown_signal();
    let app = Application::build(settings).await?;
    app.run_until(shutdown).await
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let store = Store::connect(&settings.store, Arc::new(SystemClock))
        .await
        .with_context(|| format!("connecting to {}", redact_url(&settings.store.url)))?;
    let pending = store.pending_migrations().await?;
    store.migrate().await.context("applying migrations")?;
    store.close().await;
    if pending.is_empty() {
        println!("database is up to date");
    } else {
        for (version, description) in pending {
            println!("applied migration {version}: {description}");
        }
    }
    Ok(())
}

/// The text argument, or standard input for `-`.
fn text_or_stdin(text: String) -> anyhow::Result<String> {
    if text == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading the text from standard input")?;
        Ok(text)
    } else {
        Ok(text)
    }
}

pub(crate) async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    Store::open(&settings.store, Arc::new(SystemClock))
        .await
        .with_context(|| format!("opening the database {}", redact_url(&settings.store.url)))
}

async fn memory(settings: Settings, command: MemoryCommand) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let result = run_memory(&store, command).await;
    store.close().await;
    result
}

async fn run_memory(store: &Store, command: MemoryCommand) -> anyhow::Result<()> {
    match command {
        MemoryCommand::Search { query, kind, limit, json } => {
            let hits = store.search_memories(&MemoryQuery { text: query.join(" "), kind, limit }).await?;
            for hit in &hits {
                if json {
                    println!("{}", serde_json::to_string(hit)?);
                } else {
                    let m = &hit.memory;
                    println!("{:>6}  {:<16}  {:.2}  {}", m.id, m.kind.as_str(), m.confidence, m.content);
                }
            }
            if hits.is_empty() && !json {
                println!("no memories found");
            }
        }
        MemoryCommand::Add { kind, subject, text } => {
            let text = text_or_stdin(text.join(" "))?;
            let mut candidate = MemoryCandidate::from_owner(kind, text);
            candidate.subject = subject;
            match store.remember(candidate).await? {
                RememberOutcome::Created { memory } => println!("memory {} added", memory.id),
                RememberOutcome::Reinforced { memory } => println!("memory {} confirmed (already known)", memory.id),
                RememberOutcome::Superseded { memory } => println!("memory {} updated", memory.id),
                RememberOutcome::Rejected { reason } => anyhow::bail!("not remembered: {reason}"),
            }
        }
        MemoryCommand::Forget { id } => {
            if store.forget_memory(id).await? {
                println!("memory {id} forgotten");
            } else {
                anyhow::bail!("there is no memory {id}");
            }
        }
        MemoryCommand::Export { format, output } => {
            let memories = crate::memory_file::all(store).await?;
            let text = crate::memory_file::render(&memories, format, Utc::now())?;
            match output {
                Some(path) => {
                    use std::io::Write as _;
                    use std::os::unix::fs::OpenOptionsExt;
                    // Private, and never over another file.
                    let mut file =
                        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).with_context(
                            || format!("writing {} (an existing file is not replaced)", path.display()),
                        )?;
                    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("{} memories written to {}", memories.len(), path.display());
                }
                None => print!("{text}"),
            }
        }
        MemoryCommand::Import { file, json } => {
            let text = match file.as_os_str() == "-" {
                true => text_or_stdin("-".into())?,
                false => std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?,
            };
            let report = crate::memory_file::import(store, &text).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "imported: {} added, {} confirmed (already known), {} replaced an older statement, {} refused",
                    report.added,
                    report.confirmed,
                    report.replaced,
                    report.rejected.len()
                );
                for (n, why) in &report.rejected {
                    println!("  entry {n}: {why}");
                }
            }
        }
    }
    Ok(())
}

async fn pair(settings: Settings, channel: &str, json: bool) -> anyhow::Result<()> {
    use loopgate_engine::pairing::PairChannel;
    let Some(channel) = PairChannel::parse(channel) else {
        anyhow::bail!("{channel:?} is not a channel to pair on: telegram or discord (email owners are [owner] emails)");
    };
    let configured = match channel {
        PairChannel::Telegram => settings.telegram.is_some(),
        PairChannel::Discord => settings.discord.is_some(),
    };
    if !configured {
        anyhow::bail!(
            "{0} is not configured: add a [{0}] section with its bot token (see config/loopgate.example.toml), \
             then pair",
            channel.as_str()
        );
    }
    let store = open_store(&settings).await?;
    let issued = store.issue_pairing_code(channel, ("owner", "cli")).await;
    store.close().await;
    let issued = issued?;
    if json {
        println!("{}", serde_json::to_string(&issued)?);
        return Ok(());
    }
    let local = issued.expires_at.with_timezone(&settings.timezone).format("%H:%M");
    println!("Send this to the bot within the hour (until {local}); it works once:\n");
    println!("    {}\n", channel.instruction(&issued.code));
    match channel {
        PairChannel::Telegram => println!("In Telegram: open a private chat with your bot and send the line above."),
        PairChannel::Discord => println!("In Discord: send the line above to the bot in a direct message."),
    }
    println!("Whoever sends it first becomes an owner; a newer code replaces this one.");
    Ok(())
}

async fn owner(settings: Settings, command: OwnerCommand) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let result = async {
        match command {
            OwnerCommand::List { json } => {
                let owners = store.paired_owners().await?;
                for o in &owners {
                    if json {
                        println!("{}", serde_json::to_string(o)?);
                    } else {
                        let when = o.paired_at.with_timezone(&settings.timezone).format("%Y-%m-%d %H:%M");
                        println!(
                            "{:<9} {:<20} {:<20} paired {when}",
                            o.channel,
                            o.account,
                            o.name.as_deref().unwrap_or("-")
                        );
                    }
                }
                if owners.is_empty() && !json {
                    println!("nobody paired (run `loopgate pair telegram` or `loopgate pair discord`)");
                }
                Ok(())
            }
            OwnerCommand::Remove { channel, account } => {
                let Some(channel) = loopgate_engine::pairing::PairChannel::parse(&channel) else {
                    anyhow::bail!("{channel:?} is not a channel owners pair on: telegram or discord");
                };
                let channel = channel.as_str();
                if store.remove_owner(channel, account.trim(), ("owner", "cli")).await? {
                    println!(
                        "{channel} owner {account} removed; a running service stops taking their answers within seconds"
                    );
                    Ok(())
                } else {
                    anyhow::bail!("no paired owner {account} on {channel} (see `loopgate owner list`)")
                }
            }
        }
    }
    .await;
    store.close().await;
    result
}

async fn backup(settings: Settings, args: BackupArgs) -> anyhow::Result<()> {
    let (path, json, verify) = match (args.command, args.path) {
        (Some(BackupCommand::Verify { path, json }), _) => (path, json, true),
        (None, Some(path)) => (path, args.json, false),
        (None, None) => anyhow::bail!("say where: `loopgate backup PATH` or `loopgate backup verify PATH`"),
    };
    let manifest = match verify {
        true => crate::backup::verify(&path).await?.manifest,
        false => crate::backup::create(&settings, &path).await?,
    };
    if json {
        println!("{}", serde_json::to_string(&manifest)?);
        return Ok(());
    }
    let rows: Vec<String> = manifest.counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    let verb = if verify { "verified" } else { "written" };
    println!(
        "backup {verb}: {} ({} bytes, sha256 {})",
        path.join(&manifest.file).display(),
        manifest.bytes,
        manifest.sha256
    );
    println!(
        "taken {} · schema {} · {}",
        manifest.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        manifest.schema_version,
        rows.join(", ")
    );
    Ok(())
}

async fn restore(
    settings: Settings,
    path: &std::path::Path,
    dry_run: bool,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    let restored = crate::backup::restore(&settings, path, dry_run, force).await?;
    if json {
        println!("{}", serde_json::to_string(&restored)?);
        return Ok(());
    }
    let rows = |counts: &std::collections::BTreeMap<String, i64>| {
        counts.iter().map(|(t, n)| format!("{n} {t}")).collect::<Vec<_>>().join(", ")
    };
    if dry_run {
        println!("dry run: nothing was changed");
        let now = match (&restored.replaced, &restored.unreadable) {
            (Some(counts), _) => rows(counts),
            (None, Some(why)) => format!("cannot be read: {why}"),
            (None, None) => "no database yet".into(),
        };
        println!("would replace {} ({now})", restored.database);
        println!("with the backup ({})", rows(&restored.restored));
        if restored.needs_force {
            println!("the real run needs --force: what is there now would be replaced (and kept beside it)");
        }
    } else {
        println!("restored {} ({})", restored.database, rows(&restored.restored));
        if let Some(kept) = &restored.kept {
            println!("the replaced database is kept as {}", kept.display());
        }
    }
    Ok(())
}

async fn intelligence(settings: &Settings) -> anyhow::Result<Arc<Intelligence>> {
    let store = open_store(settings).await?;
    // An approval decided at the shell runs its task here, with the same endpoints.
    let executor = crate::executor::Actions::new(&settings.webhooks, &settings.commands);
    let intelligence = Intelligence::with_executor(store.clone(), settings.intelligence.clone(), executor.clone());
    if let Some(model) = &settings.model {
        intelligence.use_model(Arc::new(crate::model::Provider::new(model.clone())?));
    }
    // Owners bound by pairing decide where a chat channel posts.
    intelligence.refresh_owners().await?;
    // A message approved here is queued in its channel's outbox; the server sends it.
    crate::app::build_channels(settings, &store, &intelligence, &executor)?;
    executor.route_workflows(&intelligence, settings.workflows.clone());
    Ok(intelligence)
}

async fn pulse(settings: Settings, scheduled: bool, json: bool) -> anyhow::Result<()> {
    let intel = intelligence(&settings).await?;
    let report = intel.pulse(!scheduled).await;
    intel.store().close().await;
    let report = report?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let (name, reason) = match &report.outcome {
        Outcome::Idle { reason } => ("idle", reason.clone()),
        Outcome::Deferred { reason, until: Some(until) } => ("deferred", format!("{reason} (until {until})")),
        Outcome::Deferred { reason, until: None } => ("deferred", reason.clone()),
        Outcome::Reflect { reason } => ("reflect", reason.clone()),
        Outcome::Dispatch { reason } => ("dispatch", reason.clone()),
    };
    println!("{name}: {reason}");
    println!("read {} new signal(s)", report.read);
    if let Some(run_id) = &report.run_id {
        println!("reflection {run_id}: {} new suggestion(s)", report.created.len());
    }
    let u = &report.upkeep;
    if !u.is_empty() {
        println!(
            "came due {}, expired {}, ignored {}, approvals expired {}, tasks run {}",
            u.came_due.len(),
            u.expired.len(),
            u.ignored.len(),
            u.approvals_expired.len(),
            u.tasks_run.len()
        );
    }
    Ok(())
}

/// Builds the digest and sends it from here over SMTP; a send that fails for now stays in
/// the outbox for the server to retry.
async fn digest(settings: Settings, json: bool) -> anyhow::Result<()> {
    use loopgate_channels::email::{DigestOutcome, Email};
    let Some(config) = settings.email.clone() else {
        anyhow::bail!("email is not configured: add [email] (see config/loopgate.example.toml)");
    };
    let intel = intelligence(&settings).await?;
    let store = intel.store().clone();
    let email = Email::new(config, store.clone(), intel, loopgate_channels::Wakes::default())?;
    let outcome = email.send_digest().await?;
    if let DigestOutcome::Queued { outbound_id, .. } = &outcome {
        let policy = loopgate_engine::outbox::RetryPolicy::default();
        loopgate_channels::outbox::drain_once(&store, email.as_ref(), &policy).await?;
        let sent = store.outbound(*outbound_id).await?;
        if let Some(sent) = sent.filter(|o| o.state != loopgate_engine::outbox::OutboundState::Sent) {
            store.close().await;
            anyhow::bail!(
                "the digest is queued but not sent yet ({}): the server retries it",
                sent.last_error.unwrap_or_else(|| sent.state.to_string())
            );
        }
    }
    store.close().await;
    if json {
        println!("{}", serde_json::to_string(&outcome)?);
        return Ok(());
    }
    match outcome {
        DigestOutcome::Queued { suggestions, approvals, message_id, .. } => {
            println!("digest sent: {suggestions} suggestion(s), {approvals} approval(s) <{message_id}>")
        }
        DigestOutcome::Empty => println!("nothing waits for you: no digest sent"),
        DigestOutcome::NoRecipient => println!("no digest_to and no owner emails: no digest sent"),
    }
    Ok(())
}

fn states(text: &str) -> anyhow::Result<Vec<SuggestionState>> {
    if text == "all" {
        return Ok(Vec::new());
    }
    answer::state_filter(text).map_err(|e| anyhow::anyhow!("--state: {e}"))
}

async fn suggestions(settings: Settings, command: SuggestionsCommand) -> anyhow::Result<()> {
    let intel = intelligence(&settings).await?;
    let result = run_suggestions(&intel, command).await;
    intel.store().close().await;
    result
}

async fn run_suggestions(intel: &Intelligence, command: SuggestionsCommand) -> anyhow::Result<()> {
    match command {
        SuggestionsCommand::List { state, limit, json } => {
            let list = intel.store().suggestions(&states(&state)?, limit).await?;
            for s in &list {
                if json {
                    println!("{}", serde_json::to_string(s)?);
                } else {
                    println!("{:>6}  {:<10}  {:.2}  {}", s.id, s.state.as_str(), s.score, s.title);
                    println!("        {}", s.why_now);
                    let runs = match s.policy {
                        Effect::Allow => "runs when you act",
                        Effect::Ask => "waits for your approval before it runs",
                        Effect::Deny => "denied by policy",
                    };
                    println!("        {} risk, {runs}", s.risk.as_str());
                }
            }
            if list.is_empty() && !json {
                println!("no suggestions");
            }
        }
        SuggestionsCommand::Respond { id, response, action, snooze_for, until, json } => {
            // Text that parses as a JSON object is a whole action; anything else is new text.
            let edited = action.map(|text| match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(value @ serde_json::Value::Object(_)) => value,
                _ => serde_json::Value::String(text),
            });
            let current =
                intel.store().suggestion(id).await?.ok_or_else(|| anyhow::anyhow!("there is no suggestion {id}"))?;
            let parts = AnswerParts {
                response: &response,
                edited_action: edited.as_ref(),
                snooze_until: until,
                snooze_for: snooze_for.as_deref(),
            };
            let answer = answer::response(&parts, &current.action, intel.store().clock().now()).map_err(|e| {
                anyhow::anyhow!(
                    e.replace("snooze_for", "--for")
                        .replace("snooze_until", "--until")
                        .replace("edited_action", "--action")
                )
            })?;
            // Typed at the owner's own shell.
            let responder = Responder { by: "owner".into(), via: "cli".into() };
            let responded = intel.respond(id, &answer, &responder).await?;
            if json {
                println!("{}", serde_json::to_string(&responded)?);
            } else {
                println!("suggestion {id}: {}", responded.suggestion.state);
            }
        }
    }
    Ok(())
}

async fn approvals(settings: Settings, command: ApprovalsCommand) -> anyhow::Result<()> {
    let intel = intelligence(&settings).await?;
    let result = run_approvals(&intel, command).await;
    intel.store().close().await;
    result
}

async fn run_approvals(intel: &Intelligence, command: ApprovalsCommand) -> anyhow::Result<()> {
    match command {
        ApprovalsCommand::List { state, limit, json } => {
            let states: Vec<ApprovalState> =
                match state.as_str() {
                    "all" => Vec::new(),
                    one => vec![ApprovalState::parse(one).with_context(|| {
                        format!("state {one:?} is not one of pending, approved, denied, expired, all")
                    })?],
                };
            let list = intel.store().approvals(&states, limit).await?;
            for a in &list {
                if json {
                    println!("{}", serde_json::to_string(a)?);
                } else {
                    let kind = a.action.get("kind").and_then(|k| k.as_str()).unwrap_or("action");
                    println!("{:>6}  {:<8}  {} risk  {kind}: {}", a.id, a.state.as_str(), a.risk.as_str(), a.reason);
                    println!("        {}", a.action);
                    match &a.decision {
                        Some(d) => println!("        {} via {} by {} at {}", a.state, d.via, d.by, d.at.to_rfc3339()),
                        None => println!("        expires {}", a.expires_at.to_rfc3339()),
                    }
                }
            }
            if list.is_empty() && !json {
                println!("no approvals");
            }
        }
        ApprovalsCommand::Decide { id, decision, json } => {
            let verdict = Verdict::parse(decision.trim())
                .with_context(|| format!("decision must be approve or deny, not {decision:?}"))?;
            // Typed at the owner's own shell.
            let responder = Responder { by: "owner".into(), via: "cli".into() };
            let (approval, task) = intel.decide(id, verdict, &responder).await?;
            if json {
                println!("{}", serde_json::json!({"approval": approval, "task": task}));
            } else {
                println!("approval {id}: {}; task {}: {}", approval.state, task.id, task.state);
                if let Some(error) = &task.error {
                    println!("        {error}");
                }
            }
        }
    }
    Ok(())
}

async fn learning(settings: Settings, args: LearningArgs) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let result = run_learning(&store, args).await;
    store.close().await;
    result
}

fn parse_dimension(name: &str) -> anyhow::Result<Dimension> {
    Dimension::parse(name).with_context(|| {
        let names: Vec<_> = Dimension::ALL.iter().map(|d| d.as_str()).collect();
        format!("dimension {name:?} is not one of {}", names.join(", "))
    })
}

async fn run_learning(store: &Store, args: LearningArgs) -> anyhow::Result<()> {
    if let Some(LearningCommand::Reset { dimension, key }) = args.command {
        let dimension = parse_dimension(&dimension)?;
        // Typed at the owner's own shell.
        let by = Responder { by: "owner".into(), via: "cli".into() };
        if !store.reset_learning(dimension.as_str(), &key, &by).await? {
            anyhow::bail!("nothing is learned about {} {key:?}", dimension.as_str());
        }
        println!("forgot what {} {key:?} learned", dimension.as_str());
        return Ok(());
    }
    let only = args.dimension.as_deref().map(parse_dimension).transpose()?;
    let overview = store.learning(only, args.limit.max(1) as usize).await?;
    if args.json {
        println!("{}", serde_json::to_string(&overview)?);
        return Ok(());
    }
    println!(
        "you act on {:.0}% of suggestions ({} answers); evidence halves every {} days; one in {} held back is shown anyway",
        overview.overall * 100.0,
        overview.answers,
        overview.half_life_days,
        overview.explore_every
    );
    for (dimension, keys) in &overview.dimensions {
        println!("{dimension}");
        for k in keys {
            println!(
                "  {:<32} {:+.2}  acted {:.1}  dismissed {:.1}  {}{}",
                k.key,
                k.lean,
                k.acted,
                k.dismissed,
                k.says,
                if k.held_back > 0 {
                    format!(" (held back {} since one was shown)", k.held_back)
                } else {
                    String::new()
                }
            );
        }
    }
    if overview.dimensions.is_empty() {
        println!("nothing learned yet");
    }
    Ok(())
}

async fn kill_switch(settings: Settings, paused: bool) -> anyhow::Result<()> {
    let intel = intelligence(&settings).await?;
    let result = intel.set_paused(paused).await;
    intel.store().close().await;
    result?;
    println!("{}", if paused { "stopped: the heartbeat is paused until `loopgate resume`" } else { "resumed" });
    Ok(())
}

async fn signal(settings: Settings, args: SignalArgs) -> anyhow::Result<()> {
    let text = text_or_stdin(args.text)?;
    let source = Source::parse(&args.source)?;
    let actor = args.actor.map(|id| Actor {
        is_owner: settings.identities.is_owner(source.as_str(), &id),
        id,
        name: args.actor_name,
    });
    let signal = NewSignal {
        kind: SignalKind::parse(&args.kind)?,
        external_id: args.external_id,
        actor,
        conversation: args.conversation.map(|id| Conversation { id, title: None, thread_id: None, reply_to: None }),
        text,
        urgency: args.urgency,
        occurred_at: args.occurred_at,
        attachments: Vec::new(),
        payload: args
            .payload
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .context("--payload is not valid JSON")?,
        // Typed by the owner at their own shell, unless they say it is someone else's text.
        trust: if args.untrusted { Trust::Untrusted } else { Trust::Trusted },
        source,
    };
    let store = open_store(&settings).await?;
    let outcome = store.ingest(signal.clone()).await;
    // The owner's own request is a command, taken now; the server's due timer posts a
    // reminder at its time.
    let reply = match &outcome {
        // A signal recorded before (the same external id) is not carried out twice.
        Ok(outcome) if outcome.duplicate => Ok(None),
        Ok(outcome) => {
            let intelligence =
                loopgate_engine::intelligence::Intelligence::new(store.clone(), settings.intelligence.clone());
            intelligence.handle_owner_signal(outcome.id, &signal).await
        }
        Err(_) => Ok(None),
    };
    store.close().await;
    let (outcome, reply) = (outcome?, reply?);
    if args.json {
        let mut body = serde_json::to_value(outcome)?;
        if let Some(reply) = &reply {
            body["reply"] = reply.clone().into();
        }
        println!("{body}");
        return Ok(());
    }
    if let Some(reply) = &reply {
        println!("{reply}");
    }
    if outcome.duplicate {
        println!("signal {} was already recorded (duplicate)", outcome.id);
    } else if outcome.merged {
        println!("signal {} recorded (merged with an earlier identical signal)", outcome.id);
    } else {
        println!("signal {} recorded", outcome.id);
    }
    Ok(())
}
