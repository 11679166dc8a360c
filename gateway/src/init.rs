//! `loopgate init`: from nothing to a configuration that starts, in one command.
//!
//! Asks a few questions (or takes flags and environment variables with
//! `--non-interactive`), writes the configuration, generates the secrets loopgate needs
//! (the API token; the reply secret when email is set up) into files of mode 0600 in a
//! folder of mode 0700 that the configuration names by `*_file`, checks every token it was
//! given against its platform, and prints a pairing code and the command to start.
//! Platform tokens are read from the environment or typed at a prompt, never from flags
//! (flags show in `ps` and shell history).

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use loopgate_engine::pairing::PairChannel;
use loopgate_engine::{Store, SystemClock};

use crate::config::{Config, ConfigError};

/// The environment variables `init` reads platform secrets from.
pub const TELEGRAM_TOKEN_VAR: &str = "TELEGRAM_BOT_TOKEN";
pub const DISCORD_TOKEN_VAR: &str = "DISCORD_BOT_TOKEN";
pub const EMAIL_PASSWORD_VAR: &str = "LOOPGATE_EMAIL_PASSWORD";

const DEFAULT_CONFIG: &str = "config/loopgate.toml";

#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Ask nothing: take answers from the flags, and tokens from $TELEGRAM_BOT_TOKEN,
    /// $DISCORD_BOT_TOKEN and $LOOPGATE_EMAIL_PASSWORD
    #[arg(long)]
    pub non_interactive: bool,
    /// Replace an existing configuration (its secrets files are replaced too)
    #[arg(long)]
    pub force: bool,
    /// Where the secrets files go [default: `secrets` beside the configuration]
    #[arg(long)]
    pub secrets_dir: Option<PathBuf>,
    /// Your timezone, e.g. Europe/Berlin [default: this machine's]
    #[arg(long)]
    pub timezone: Option<String>,
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: String,
    #[arg(long, default_value = "sqlite://data/loopgate.db")]
    pub storage_url: String,
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Set up Telegram (a bot made with @BotFather)
    #[arg(long)]
    pub telegram: bool,
    /// A self-hosted Bot API server (or a test fake) instead of api.telegram.org
    #[arg(long)]
    pub telegram_api_url: Option<String>,
    /// Set up Discord (an application with a bot, Message Content intent on)
    #[arg(long)]
    pub discord: bool,
    /// A REST proxy (or a test fake) instead of discord.com
    #[arg(long)]
    pub discord_api_base: Option<String>,
    /// Set up email: loopgate's own address (it reads this mailbox and sends from it)
    #[arg(long, value_name = "ADDRESS")]
    pub email: Option<String>,
    /// Your address: where the digest goes and whose replies count
    #[arg(long, value_name = "ADDRESS")]
    pub owner_email: Option<String>,
    #[arg(long)]
    pub imap_host: Option<String>,
    /// [default: 993 with tls, 143 with starttls or none]
    #[arg(long)]
    pub imap_port: Option<u16>,
    #[arg(long)]
    pub smtp_host: Option<String>,
    /// [default: 465 with tls, 587 with starttls or none]
    #[arg(long)]
    pub smtp_port: Option<u16>,
    /// tls, starttls or none (none only for a server on this machine)
    #[arg(long, default_value = "tls")]
    pub mail_security: String,
    /// The mail login [default: the --email address]
    #[arg(long)]
    pub mail_username: Option<String>,
    /// The SMTP server takes mail without a login (a relay on this machine or network)
    #[arg(long)]
    pub smtp_no_login: bool,
    /// Do not call the platforms to check the tokens (setting up offline)
    #[arg(long)]
    pub no_check: bool,
}

/// Everything decided, before a byte is written.
#[derive(Debug, Clone)]
struct Plan {
    config: PathBuf,
    secrets: PathBuf,
    timezone: String,
    listen: String,
    storage_url: String,
    data_dir: PathBuf,
    telegram: Option<Platform>,
    discord: Option<Platform>,
    email: Option<MailPlan>,
}

#[derive(Debug, Clone)]
struct Platform {
    token: String,
    api: Option<String>,
}

#[derive(Debug, Clone)]
struct MailPlan {
    address: String,
    owner: String,
    imap_host: String,
    imap_port: u16,
    smtp_host: String,
    smtp_port: u16,
    security: String,
    username: String,
    password: String,
    smtp_login: bool,
}

pub fn run(config: Option<&Path>, args: InitArgs) -> ExitCode {
    let config = config.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let stdin = std::io::stdin();
    let mut answers = stdin.lock();
    let plan = match plan(&config, &args, &mut answers, &|name| std::env::var(name).ok()) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("loopgate init: {e:#}\nnothing was written");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = write(&plan) {
        eprintln!("loopgate init: {e:#}");
        return ExitCode::FAILURE;
    }
    println!("wrote {} and its secrets in {} (mode 0600)", plan.config.display(), plan.secrets.display());
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loopgate init: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(finish(&plan, args.no_check)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loopgate init: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One question at a prompt; the default when the answer is empty or input has ended.
fn ask(input: &mut dyn BufRead, question: &str, default: &str) -> anyhow::Result<String> {
    match default.is_empty() {
        true => print!("{question}: "),
        false => print!("{question} [{default}]: "),
    }
    std::io::stdout().flush()?;
    let mut line = String::new();
    input.read_line(&mut line).context("reading the answer")?;
    let answer = line.trim();
    Ok(if answer.is_empty() { default.to_owned() } else { answer.to_owned() })
}

/// A secret at a prompt: not echoed on a terminal; read as a line from a pipe.
fn ask_secret(input: &mut dyn BufRead, question: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let answer = rpassword::prompt_password(format!("{question} (not shown): ")).context("reading the answer")?;
        return Ok(answer.trim().to_owned());
    }
    ask(input, question, "")
}

fn ask_yes(input: &mut dyn BufRead, question: &str, default: bool) -> anyhow::Result<bool> {
    // A stray answer is asked again (input that ended takes the default).
    for _ in 0..5 {
        let answer = ask(input, &format!("{question} (y/n)"), if default { "y" } else { "n" })?;
        match answer.to_ascii_lowercase().as_str() {
            "y" | "yes" => return Ok(true),
            "n" | "no" => return Ok(false),
            _ => println!("please answer y or n"),
        }
    }
    bail!("no y or n after five tries")
}

/// `path` from the folder init runs in: the configuration must work from anywhere (a
/// service manager, a cron job), not only from this folder.
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    match path.is_absolute() {
        true => Ok(path.to_owned()),
        false => Ok(std::env::current_dir().context("reading the current folder")?.join(path)),
    }
}

/// A secrets folder that exists must be private already: init never loosens or tightens
/// the mode of a folder it did not make (it may be a home or a shared folder).
fn check_secrets_folder(dir: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => bail!("{} is not a folder", dir.display()),
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => bail!(
            "{} can be read by others (mode {:o}): choose a private folder for the secrets, or a new one",
            dir.display(),
            meta.permissions().mode() & 0o7777
        ),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// The storage URL as the configuration should hold it: a SQLite path made absolute; a
/// PostgreSQL URL without a password (that goes in `PGPASSWORD` or `~/.pgpass`).
fn storage_url(url: &str) -> anyhow::Result<String> {
    if url.starts_with("sqlite:") {
        let file = Store::sqlite_file(url).with_context(|| format!("--storage-url {url:?} names no database file"))?;
        return Ok(format!("sqlite://{}", absolute(&file)?.display()));
    }
    let Some(rest) = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")) else {
        bail!("--storage-url {url:?}: write sqlite://PATH or postgres://USER@HOST/DB");
    };
    if rest.split_once('@').is_some_and(|(credentials, _)| credentials.contains(':')) {
        bail!(
            "--storage-url carries a password, and the configuration is no place for secrets: leave it out and \
             export PGPASSWORD (or write it in ~/.pgpass)"
        );
    }
    Ok(url.to_owned())
}

fn plan(
    config: &Path,
    args: &InitArgs,
    input: &mut dyn BufRead,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Plan> {
    if config.is_dir() {
        bail!("{} is a folder: give the configuration file's path, e.g. config/loopgate.toml", config.display());
    }
    if config.exists() && !args.force {
        bail!("{} exists already: edit it, or run init again with --force to replace it", config.display());
    }
    let interactive = !args.non_interactive;
    let secrets = absolute(
        &args.secrets_dir.clone().unwrap_or_else(|| config.parent().unwrap_or(Path::new(".")).join("secrets")),
    )?;
    check_secrets_folder(&secrets)?;
    if args.listen.parse::<std::net::SocketAddr>().is_err() {
        bail!("--listen {:?} is not an address: write it like 127.0.0.1:8787", args.listen);
    }
    let storage_url = storage_url(&args.storage_url)?;
    let data_dir = absolute(&args.data_dir)?;
    let detected = args.timezone.clone().unwrap_or_else(|| detect_timezone(env));
    let timezone = match interactive && args.timezone.is_none() {
        true => ask(input, "Your timezone", &detected)?,
        false => detected,
    };
    if timezone.parse::<chrono_tz::Tz>().is_err() {
        bail!("{timezone:?} is not a timezone: write it like Europe/Berlin or America/New_York");
    }
    let token = |var: &str, what: &str, input: &mut dyn BufRead| -> anyhow::Result<String> {
        let from_env = env(var).map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        let token = match (from_env.clone(), interactive) {
            (Some(token), _) => token,
            (None, true) => ask_secret(input, what)?,
            (None, false) => String::new(),
        };
        match (token.is_empty(), from_env.is_some(), interactive) {
            (true, _, true) => bail!("no {what} given: type it at the prompt, or export {var}=<the token>"),
            (true, _, false) => bail!("no {what}: export {var}=<the token>, or run init without --non-interactive"),
            (false, true, _) if token.contains(char::is_whitespace) => {
                bail!("${var} holds a space: it is not a token; copy it again")
            }
            (false, false, _) if token.contains(char::is_whitespace) => {
                bail!("that {what} holds a space: it is not a token; copy it again")
            }
            _ => Ok(token),
        }
    };
    let telegram = match args.telegram || (interactive && ask_yes(input, "Set up Telegram?", false)?) {
        false => None,
        true => Some(Platform {
            token: token(TELEGRAM_TOKEN_VAR, "Telegram bot token (from @BotFather)", input)?,
            api: args.telegram_api_url.clone(),
        }),
    };
    let discord = match args.discord || (interactive && ask_yes(input, "Set up Discord?", false)?) {
        false => None,
        true => Some(Platform {
            token: token(DISCORD_TOKEN_VAR, "Discord bot token (Developer Portal → Bot)", input)?,
            api: args.discord_api_base.clone(),
        }),
    };
    let email = match args.email.is_some() || (interactive && ask_yes(input, "Set up email?", false)?) {
        false => None,
        true => Some(mail_plan(args, input, interactive, env)?),
    };
    for url in [telegram.as_ref().and_then(|t| t.api.as_ref()), discord.as_ref().and_then(|d| d.api.as_ref())]
        .into_iter()
        .flatten()
    {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("{url:?} is not an http(s) address");
        }
    }
    Ok(Plan {
        config: config.to_owned(),
        secrets,
        timezone,
        listen: args.listen.clone(),
        storage_url,
        data_dir,
        telegram,
        discord,
        email,
    })
}

fn mail_plan(
    args: &InitArgs,
    input: &mut dyn BufRead,
    interactive: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<MailPlan> {
    let mut value = |given: &Option<String>, question: &str, default: &str| -> anyhow::Result<String> {
        match (given, interactive) {
            (Some(value), _) => Ok(value.trim().to_owned()),
            (None, true) => ask(input, question, default),
            (None, false) => Ok(default.to_owned()),
        }
    };
    let address = value(&args.email, "loopgate's own email address", "")?;
    let domain = address.rsplit_once('@').map(|(_, d)| d.to_owned()).unwrap_or_default();
    let owner = value(&args.owner_email, "Your email address (the digest goes there)", "")?;
    if owner.is_empty() {
        bail!("say where the digest goes: --owner-email YOUR-ADDRESS (your own address, not loopgate's)");
    }
    let imap_host = value(&args.imap_host, "IMAP server", &format!("imap.{domain}"))?;
    let smtp_host = value(&args.smtp_host, "SMTP server", &format!("smtp.{domain}"))?;
    let username = value(&args.mail_username, "Mail login", &address)?;
    for (what, text) in [("--email", &address), ("--owner-email", &owner)] {
        if text.parse::<lettre::message::Mailbox>().is_err() {
            bail!("{what} {text:?} is not an email address");
        }
    }
    if !matches!(args.mail_security.as_str(), "tls" | "starttls" | "none") {
        bail!("--mail-security {:?}: write tls, starttls or none", args.mail_security);
    }
    let password = match env(EMAIL_PASSWORD_VAR).filter(|p| !p.is_empty()) {
        Some(password) => password,
        None if interactive => ask_secret(input, "Mail password")?,
        None => String::new(),
    };
    if password.is_empty() {
        bail!("no mail password: export {EMAIL_PASSWORD_VAR}=<the password>, or run init without --non-interactive");
    }
    Ok(MailPlan {
        address,
        owner,
        imap_host,
        imap_port: args.imap_port.unwrap_or(if args.mail_security == "tls" { 993 } else { 143 }),
        smtp_host,
        smtp_port: args.smtp_port.unwrap_or(if args.mail_security == "tls" { 465 } else { 587 }),
        security: args.mail_security.clone(),
        username,
        password,
        smtp_login: !args.smtp_no_login,
    })
}

/// `$TZ`, else `/etc/timezone`, else where `/etc/localtime` points, else UTC.
fn detect_timezone(env: &dyn Fn(&str) -> Option<String>) -> String {
    let candidates = [
        env("TZ").map(|tz| tz.trim_start_matches(':').to_owned()),
        std::fs::read_to_string("/etc/timezone").ok().map(|t| t.trim().to_owned()),
        std::fs::read_link("/etc/localtime")
            .ok()
            .and_then(|p| p.to_str().and_then(|p| p.split_once("zoneinfo/").map(|(_, tz)| tz.to_owned()))),
    ];
    candidates.into_iter().flatten().find(|tz| tz.parse::<chrono_tz::Tz>().is_ok()).unwrap_or_else(|| "UTC".into())
}

/// 32 random bytes from the operating system, as hex.
fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the operating system: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A TOML string (JSON's escapes are TOML's).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

fn path_text(path: &Path) -> String {
    quoted(&path.display().to_string())
}

fn write(plan: &Plan) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&plan.secrets)
        .with_context(|| format!("creating {}", plan.secrets.display()))?;
    let secret = |name: &str, value: &str| -> anyhow::Result<PathBuf> {
        let path = plan.secrets.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        // An existing file keeps its mode on open; a secret must not stay readable.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(format!("{value}\n").as_bytes())?;
        file.sync_all()?;
        Ok(path)
    };
    let mut toml = format!(
        "# Written by `loopgate init`. Every key is explained in config/loopgate.example.toml.\n\
         # Secrets live in {} (mode 0600), named here by *_file; never in this file.\n",
        plan.secrets.display()
    );
    // Generated secrets survive a `--force`: scripts and a running service hold them.
    let generated = |name: &str| -> anyhow::Result<String> {
        match std::fs::read_to_string(plan.secrets.join(name)) {
            Ok(text) if text.trim().len() >= 32 => Ok(text.trim().to_owned()),
            _ => random_secret(),
        }
    };
    let api_token = secret("api_token", &generated("api_token")?)?;
    let _ = write!(
        toml,
        "\n[server]\nlisten = {}\n# Every API call needs `Authorization: Bearer <this file's content>`.\napi_token_file = {}\n",
        quoted(&plan.listen),
        path_text(&api_token)
    );
    let _ =
        write!(toml, "\n[storage]\nurl = {}\ndata_dir = {}\n", quoted(&plan.storage_url), path_text(&plan.data_dir));
    let _ = write!(
        toml,
        "\n[owner]\n# Owners on Telegram and Discord are bound with `loopgate pair telegram|discord`.\ntimezone = {}\n",
        quoted(&plan.timezone)
    );
    if let Some(mail) = &plan.email {
        let _ = writeln!(toml, "emails = [{}]", quoted(&mail.owner));
    }
    if let Some(telegram) = &plan.telegram {
        let token = secret("telegram_token", &telegram.token)?;
        let _ = write!(toml, "\n[telegram]\ntoken_file = {}\n", path_text(&token));
        if let Some(api) = &telegram.api {
            let _ = writeln!(toml, "api_url = {}", quoted(api));
        }
    }
    if let Some(discord) = &plan.discord {
        let token = secret("discord_token", &discord.token)?;
        let _ = write!(toml, "\n[discord]\ntoken_file = {}\n", path_text(&token));
        if let Some(api) = &discord.api {
            let _ = writeln!(toml, "api_base = {}", quoted(api));
        }
    }
    if let Some(mail) = &plan.email {
        let password = secret("email_password", &mail.password)?;
        let reply = secret("reply_secret", &generated("reply_secret")?)?;
        let _ = write!(
            toml,
            "\n[email]\nfrom = {}\ndigest_schedule = \"0 7 * * *\"\nreply_secret_file = {}\n",
            quoted(&format!("loopgate <{}>", mail.address)),
            path_text(&reply)
        );
        let servers = [
            ("imap", &mail.imap_host, mail.imap_port, true),
            ("smtp", &mail.smtp_host, mail.smtp_port, mail.smtp_login),
        ];
        for (section, host, port, login) in servers {
            let _ = write!(
                toml,
                "\n[email.{section}]\nhost = {}\nport = {port}\nsecurity = {}\n",
                quoted(host),
                quoted(&mail.security)
            );
            if login {
                let _ =
                    write!(toml, "username = {}\npassword_file = {}\n", quoted(&mail.username), path_text(&password));
            }
        }
    }
    // What loopgate learns about its owner is theirs alone: a new data folder is private.
    if !plan.data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&plan.data_dir)
            .with_context(|| format!("creating {}", plan.data_dir.display()))?;
    }
    if let Some(parent) = plan.config.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let partial = plan.config.with_extension("toml.partial");
    std::fs::write(&partial, toml).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &plan.config).with_context(|| format!("writing {}", plan.config.display()))?;
    Ok(())
}

/// Loads what was written as `serve` will, checks the tokens, issues pairing codes and
/// says how to start. False when a check failed (the files stay, to be corrected).
async fn finish(plan: &Plan, no_check: bool) -> anyhow::Result<bool> {
    let env = |name: &str| std::env::var(name).ok();
    let (config, _) = Config::load(Some(&plan.config), std::env::vars())?;
    let settings = match config.resolve(&env) {
        Ok(settings) => settings,
        Err(ConfigError::Invalid(problems)) => {
            for p in problems {
                println!("  FAIL  {}: {} (fix: {})", p.key, p.problem, p.fix);
            }
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    let mut ok = true;
    if !no_check {
        let report = crate::doctor::platforms(&settings).await;
        print!("{}", report.render_lines());
        ok = !report.failed();
    }
    let store = Store::open(&settings.store, Arc::new(SystemClock)).await.context("setting up the database")?;
    let mut pair = Vec::new();
    for (channel, configured) in
        [(PairChannel::Telegram, settings.telegram.is_some()), (PairChannel::Discord, settings.discord.is_some())]
    {
        if configured && ok {
            pair.push(store.issue_pairing_code(channel, ("owner", "init")).await?);
        }
    }
    store.close().await;
    let config_flag = match plan.config == Path::new(DEFAULT_CONFIG) {
        true => String::new(),
        false => format!(" --config {}", plan.config.display()),
    };
    if !ok {
        println!(
            "\nfix what failed above (the secrets are in {}), then run `loopgate{config_flag} doctor`",
            plan.secrets.display()
        );
        return Ok(false);
    }
    println!("\nstart loopgate:\n\n    loopgate{config_flag} serve\n");
    if config_flag.is_empty() {
        let anywhere = absolute(&plan.config)?;
        println!("(from this folder; from anywhere: loopgate --config {} serve)\n", anywhere.display());
    }
    for issued in &pair {
        let how = match issued.channel {
            PairChannel::Telegram => "in a private chat with your Telegram bot",
            PairChannel::Discord => "to your Discord bot in a direct message",
        };
        println!(
            "then become its owner: send {how}, within the hour:\n\n    {}\n",
            issued.channel.instruction(&issued.code)
        );
    }
    for issued in &pair {
        println!("(a new code any time: `loopgate{config_flag} pair {}`)", issued.channel.as_str());
    }
    Ok(true)
}
