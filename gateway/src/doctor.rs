//! `loopgate doctor`: checks configuration, data directory, database and listen address,
//! and says for each problem how to fix it. Exit code 0 when nothing failed.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use loopgate_engine::{Store, SystemClock};

use crate::app::redact_url;
use crate::config::{Config, ConfigError, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Default)]
pub(crate) struct Report {
    lines: Vec<(Level, String, String, Option<String>)>,
}

impl Report {
    fn add(&mut self, level: Level, what: impl Into<String>, detail: impl Into<String>, fix: Option<String>) {
        self.lines.push((level, what.into(), detail.into(), fix));
    }

    pub(crate) fn failed(&self) -> bool {
        self.lines.iter().any(|(level, ..)| *level == Level::Fail)
    }

    fn render(&self) -> String {
        let mut out = String::from("loopgate doctor\n");
        out.push_str(&self.render_lines());
        let (fails, warns) = self.lines.iter().fold((0, 0), |(f, w), (level, ..)| match level {
            Level::Fail => (f + 1, w),
            Level::Warn => (f, w + 1),
            Level::Ok => (f, w),
        });
        let _ = writeln!(out, "{fails} problem(s), {warns} warning(s)");
        out
    }

    /// One line per check, with its fix.
    pub(crate) fn render_lines(&self) -> String {
        let width = self.lines.iter().map(|(_, what, ..)| what.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (level, what, detail, fix) in &self.lines {
            let tag = match level {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            let _ = writeln!(out, "  {tag}  {what:width$}  {detail}");
            if let Some(fix) = fix {
                let _ = writeln!(out, "        {:width$}  fix: {fix}", "");
            }
        }
        out
    }
}

pub fn run(config_path: Option<&Path>) -> ExitCode {
    let report = check(config_path);
    print!("{}", report.render());
    if report.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn check(config_path: Option<&Path>) -> Report {
    let mut report = Report::default();
    let (config, source) = match Config::load(config_path, std::env::vars()) {
        Ok(loaded) => loaded,
        Err(e) => {
            let fix = match &e {
                ConfigError::Missing(_) => "create it from config/loopgate.example.toml, or drop --config",
                _ => "correct the key named above in the file or in the LOOPGATE_* variable",
            };
            report.add(Level::Fail, "config", e.to_string(), Some(fix.into()));
            return report;
        }
    };
    report.add(Level::Ok, "config", format!("loaded {source}"), None);
    let settings = match config.resolve(&|name| std::env::var(name).ok()) {
        Ok(settings) => settings,
        Err(ConfigError::Invalid(problems)) => {
            for p in problems {
                report.add(Level::Fail, p.key, p.problem, Some(p.fix));
            }
            return report;
        }
        Err(e) => {
            report.add(Level::Fail, "config", e.to_string(), None);
            return report;
        }
    };
    check_data_dir(&settings, &mut report);
    check_commands(&settings, &mut report);
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(async {
            check_database(&settings, &mut report).await;
            check_owners(&settings, &mut report).await;
            check_listen(&settings, &mut report).await;
            check_telegram(&settings, &mut report).await;
            check_discord(&settings, &mut report).await;
            check_email(&settings, &mut report).await;
            check_model(&settings, &mut report).await;
        }),
        Err(e) => report.add(Level::Fail, "runtime", format!("cannot start the async runtime: {e}"), None),
    }
    report
}

/// The platform checks alone (tokens, logins), for `loopgate init`.
pub(crate) async fn platforms(settings: &Settings) -> Report {
    let mut report = Report::default();
    check_telegram(settings, &mut report).await;
    check_discord(settings, &mut report).await;
    check_email(settings, &mut report).await;
    // Where to post is init's to settle (it prints a pairing code): only the checks.
    report.lines.retain(|(level, ..)| *level != Level::Warn);
    report
}

/// Logs in to IMAP and greets SMTP with the configured credentials.
async fn check_email(settings: &Settings, report: &mut Report) {
    use loopgate_channels::email::{check_imap, check_smtp};
    let Some(config) = &settings.email else { return };
    let (imap, smtp) = (&config.imap, &config.smtp);
    let checks = [
        ("imap", imap, check_imap(imap).await, format!("logged in as {}", imap.username)),
        ("smtp", smtp, check_smtp(smtp).await, "accepts loopgate".to_owned()),
    ];
    for (what, server, outcome, fine) in checks {
        let (key, at) = (format!("email.{what}"), format!("{}:{}", server.host, server.port));
        match outcome {
            Ok(()) => report.add(Level::Ok, key, format!("{at} {fine}"), None),
            Err(e) => {
                let fix =
                    format!("check email.{what}: host, port, security, username and the password (file or variable)");
                report.add(Level::Fail, key, format!("{at}: {e:#}"), Some(fix))
            }
        }
    }
}

/// Who may answer: configured ids and owners bound by pairing (read from the database,
/// which also tells the chat channels where to post).
async fn check_owners(settings: &Settings, report: &mut Report) {
    let connect = Store::connect(&settings.store, Arc::new(SystemClock));
    if let Ok(Ok(store)) = tokio::time::timeout(Duration::from_secs(10), connect).await {
        match store.paired_owners().await {
            Ok(owners) => {
                for owner in &owners {
                    let name = owner.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
                    report.add(
                        Level::Ok,
                        format!("owner.{}", owner.channel),
                        format!("{}{name} paired {}", owner.account, owner.paired_at.format("%Y-%m-%d %H:%M UTC")),
                        None,
                    );
                }
                settings.identities.set_paired(owners.into_iter().map(|o| (o.channel, o.account)));
            }
            // Not migrated yet: the database check says so.
            Err(error) => tracing::debug!(%error, "doctor: paired owners not readable"),
        }
        store.close().await;
    }
    if settings.identities.is_empty() {
        report.add(
            Level::Warn,
            "owner",
            "no owner yet: nobody can answer suggestions from a chat",
            Some("run `loopgate pair telegram` (or discord) and send the code to the bot, or list your ids under [owner]".into()),
        );
    }
}

/// Asks the Bot API who the bot is: proves the token and the address in one call.
async fn check_telegram(settings: &Settings, report: &mut Report) {
    let Some(config) = &settings.telegram else { return };
    if config.chat_id.is_none() && settings.identities.paired_on("telegram").is_empty() {
        report.add(
            Level::Warn,
            "telegram.chat_id",
            "no chat to post suggestions to: no chat_id, no [owner] telegram_user_ids and nobody paired",
            Some("run `loopgate pair telegram` and send the code to the bot, or set telegram.chat_id".into()),
        );
    }
    if let Some(chat) = config.chat_id
        && let Ok(Ok(store)) =
            tokio::time::timeout(Duration::from_secs(10), Store::connect(&settings.store, Arc::new(SystemClock))).await
    {
        let key = format!("chat:{chat}:moved_to");
        if let Ok(Some(to)) = store.channel_state(loopgate_channels::telegram::CHANNEL, &key).await {
            report.add(
                Level::Warn,
                "telegram.chat_id",
                format!("chat {chat} became a supergroup, now {to}: loopgate sends there"),
                Some(format!("set telegram.chat_id = {to} to say so in the configuration too")),
            );
        }
        store.close().await;
    }
    let api = match loopgate_channels::telegram::BotApi::new(&config.api_url, &config.token) {
        Ok(api) => api,
        Err(e) => return report.add(Level::Fail, "telegram", format!("cannot build an HTTP client: {e}"), None),
    };
    let no_params = serde_json::json!({});
    match tokio::time::timeout(std::time::Duration::from_secs(10), api.call_json("getMe", &no_params)).await {
        Ok(Ok(me)) => {
            let name = me["username"].as_str().or(me["first_name"].as_str()).unwrap_or("?").to_owned();
            report.add(Level::Ok, "telegram", format!("the token belongs to @{name} at {}", config.api_url), None)
        }
        Ok(Err(loopgate_channels::telegram::CallError::Refused { code: 401 | 404, .. })) => report.add(
            Level::Fail,
            "telegram.token_env",
            format!("{} does not accept the bot token", config.api_url),
            Some("copy the token again from @BotFather (/mybots → API Token)".into()),
        ),
        Ok(Err(e)) => report.add(
            Level::Fail,
            "telegram.api_url",
            e.to_string(),
            Some("check the network, or api_url if you run your own Bot API server".into()),
        ),
        Err(_) => report.add(
            Level::Fail,
            "telegram.api_url",
            format!("{} did not answer within 10 s", config.api_url),
            Some("check the network, or api_url if you run your own Bot API server".into()),
        ),
    }
}

/// Asks Discord who the bot is (`GET /users/@me`): proves the token and the address.
async fn check_discord(settings: &Settings, report: &mut Report) {
    use loopgate_channels::discord::{CallError, RestApi};
    let Some(config) = &settings.discord else { return };
    if config.delivery_channel_id.is_none()
        && config.dm_user_id.is_none()
        && settings.identities.paired_on("discord").is_empty()
    {
        report.add(
            Level::Warn,
            "discord.delivery_channel_id",
            "nowhere to post suggestions: no delivery channel, no owner.discord_user_ids and nobody paired",
            Some(
                "run `loopgate pair discord` and send /pair CODE to the bot in a DM, or set delivery_channel_id".into(),
            ),
        );
    }
    let api = match RestApi::new(&config.api_base, &config.token) {
        Ok(api) => api,
        Err(e) => return report.add(Level::Fail, "discord", format!("cannot build an HTTP client: {e}"), None),
    };
    let fix = || Some("check the network, or api_base if you go through a proxy".to_owned());
    match tokio::time::timeout(std::time::Duration::from_secs(10), api.get("/users/@me")).await {
        Ok(Ok(me)) => {
            let name = me["username"].as_str().unwrap_or("?").to_owned();
            report.add(Level::Ok, "discord", format!("the token belongs to {name} at {}", config.api_base), None)
        }
        Ok(Err(CallError::Refused { status: 401, .. })) => report.add(
            Level::Fail,
            "discord.token_env",
            format!("{} does not accept the bot token", config.api_base),
            Some("copy the token again from the Developer Portal (Bot → Reset Token)".into()),
        ),
        Ok(Err(e)) => report.add(Level::Fail, "discord.api_base", e.to_string(), fix()),
        Err(_) => report.add(
            Level::Fail,
            "discord.api_base",
            format!("{} did not answer within 10 s", config.api_base),
            fix(),
        ),
    }
}

/// Asks the configured model for a two-token answer: proves the address, the key and
/// the model's name in one call.
async fn check_model(settings: &Settings, report: &mut Report) {
    use loopgate_engine::model::{Model, ModelError, Purpose, Request, Role, Turn};
    let Some(config) = &settings.model else { return };
    let provider = match crate::model::Provider::new(config.clone()) {
        Ok(provider) => provider,
        Err(e) => return report.add(Level::Fail, "model", format!("cannot build an HTTP client: {e}"), None),
    };
    let request = Request {
        purpose: Purpose::Chat,
        system: "Answer with the single word OK.".into(),
        turns: vec![Turn { role: Role::User, content: "Are you there?".into() }],
        max_tokens: 5,
        json: false,
    };
    match provider.complete(&request).await {
        Ok(_) => report.add(Level::Ok, "model", format!("{} answers at {}", provider.name(), config.base_url), None),
        Err(ModelError::Refused(why)) => report.add(
            Level::Fail,
            "model",
            format!("{} refused: {why}", config.base_url),
            Some("check model.api_key_env (the key) and model.model (the name the server knows)".into()),
        ),
        Err(e) => report.add(
            Level::Fail,
            "model.base_url",
            e.to_string(),
            Some("check the network and model.base_url (for Ollama: http://127.0.0.1:11434/v1)".into()),
        ),
    }
}

/// A configured command whose program is missing fails only when approved, long after
/// the owner configured it; say so now.
fn check_commands(settings: &Settings, report: &mut Report) {
    use std::os::unix::fs::PermissionsExt;
    for (n, command) in settings.commands.iter().enumerate() {
        let key = format!("command[{n}].program");
        match std::fs::metadata(&command.program) {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {
                report.add(Level::Ok, key, format!("{} runs {}", command.name, command.program.display()), None)
            }
            Ok(_) => report.add(
                Level::Fail,
                key,
                format!("{} is not an executable file", command.program.display()),
                Some("point program at an executable, or chmod +x it".into()),
            ),
            Err(e) => report.add(
                Level::Fail,
                key,
                format!("{}: {e}", command.program.display()),
                Some("install the program or correct its path".into()),
            ),
        }
    }
}

fn check_data_dir(settings: &Settings, report: &mut Report) {
    let dir = &settings.data_dir;
    let probe = dir.join(".doctor-probe");
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .and_then(|()| std::fs::remove_file(&probe));
    match result {
        Ok(()) => report.add(Level::Ok, "storage.data_dir", format!("{} is writable", dir.display()), None),
        Err(e) => report.add(
            Level::Fail,
            "storage.data_dir",
            format!("{} is not writable: {e}", dir.display()),
            Some("point data_dir at a directory this user can write, or fix its permissions".into()),
        ),
    }
}

async fn check_database(settings: &Settings, report: &mut Report) {
    let url = redact_url(&settings.store.url);
    let connect = Store::connect(&settings.store, Arc::new(SystemClock));
    let store = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => {
            report.add(
                Level::Fail,
                "storage.url",
                format!("cannot open {url}: {e}"),
                Some(
                    "check the URL, that the server runs and the credentials; for SQLite that the folder is writable"
                        .into(),
                ),
            );
            return;
        }
        Err(_) => {
            report.add(
                Level::Fail,
                "storage.url",
                format!("{url} did not answer within 10s"),
                Some("check that the database server is reachable".into()),
            );
            return;
        }
    };
    match store.pending_migrations().await {
        Ok(pending) if pending.is_empty() => {
            report.add(Level::Ok, "database", format!("{url} answers; schema up to date"), None)
        }
        Ok(pending) => report.add(
            Level::Warn,
            "database",
            format!("{url} answers; {} migration(s) not applied yet", pending.len()),
            Some("run `loopgate migrate` (serve also applies them at start)".into()),
        ),
        Err(e) => report.add(Level::Fail, "database", format!("{url}: {e}"), None),
    }
    store.close().await;
}

async fn check_listen(settings: &Settings, report: &mut Report) {
    match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(_) => report.add(Level::Ok, "server.listen", format!("{} is free", settings.listen), None),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => report.add(
            Level::Warn,
            "server.listen",
            format!("{} is in use (fine if loopgate is already running)", settings.listen),
            Some("otherwise stop what holds the port or choose another listen address".into()),
        ),
        Err(e) => report.add(
            Level::Fail,
            "server.listen",
            format!("cannot listen on {}: {e}", settings.listen),
            Some("choose an address of this machine".into()),
        ),
    }
}
