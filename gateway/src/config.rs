//! loopgate's one configuration file, its environment overrides and its validation.
//!
//! Loading is two steps. [`Config::load`] reads the TOML file and `LOOPGATE_<SECTION>__<KEY>`
//! variables into typed structs, refusing unknown keys by name. [`Config::resolve`] then
//! checks what types cannot (addresses, time zones, secrets that must exist) and collects
//! every problem with a fix, so `doctor` can list them all at once.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use loopgate_channels::discord::DiscordConfig;
use loopgate_channels::email::{EmailConfig, Security, ServerConfig as MailServer};
use loopgate_channels::telegram::{Mode as Transport, TelegramConfig};
use loopgate_engine::heartbeat::{QuietHours, Rules};
use loopgate_engine::intelligence::Settings as IntelSettings;
use loopgate_engine::{Durability, Retention, StoreConfig};
use loopgate_policies::{Identities, Policy, Rule};
use serde::{Deserialize, Deserializer, Serialize};

/// The file used when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "config/loopgate.toml";
pub const ENV_PREFIX: &str = "LOOPGATE_";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub owner: OwnerConfig,
    pub signals: SignalsConfig,
    pub heartbeat: HeartbeatConfig,
    pub suggestions: SuggestionsConfig,
    pub policy: PolicyConfig,
    pub approvals: ApprovalsConfig,
    /// Named endpoints the `webhook` action may call (`[[webhook]]`).
    pub webhook: Vec<WebhookConfig>,
    /// Named commands the `command` action may run (`[[command]]`).
    pub command: Vec<CommandConfig>,
    /// Workflows (`[[workflow]]`): a trigger and steps.
    pub workflow: Vec<WorkflowConfig>,
    pub telegram: Option<TelegramSection>,
    pub discord: Option<DiscordSection>,
    pub email: Option<EmailSection>,
    pub model: ModelSection,
    pub log: LogConfig,
}

/// `[model]`: the owner's own model, optional.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    pub provider: ModelProvider,
    /// Any OpenAI-compatible server (a hosted API, Ollama, llama.cpp, vLLM), or Anthropic's.
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub model: String,
    /// Tokens per day (UTC) across chat, reflection and compose; 0 is no limit.
    pub daily_token_budget: u64,
    pub timeout: ConfigDuration,
}

impl Default for ModelSection {
    fn default() -> ModelSection {
        ModelSection {
            provider: ModelProvider::None,
            base_url: None,
            api_key_env: None,
            model: String::new(),
            daily_token_budget: 200_000,
            timeout: ConfigDuration::secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelProvider {
    Openai,
    Anthropic,
    #[default]
    None,
}

/// `[email]`: IMAP in, SMTP out, the digest and who may answer it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSection {
    pub imap: MailServerSection,
    pub smtp: MailServerSection,
    /// loopgate's own address, `"loopgate <me@example.org>"` or bare.
    pub from: Option<String>,
    /// Who gets the digest; the owner's `emails` when left out.
    pub digest_to: Vec<String>,
    /// Cron in the owner's timezone, e.g. `"0 7 * * *"`; no scheduled digest when left out.
    pub digest_schedule: Option<String>,
    /// Addresses besides the owner's whose replies count.
    pub allowed_senders: Vec<String>,
    /// The environment variable holding the secret mixed into stored reply tokens.
    pub reply_secret_env: Option<String>,
    /// Or a file holding it (first line).
    pub reply_secret_file: Option<PathBuf>,
    /// How long a digest can be answered.
    pub reply_ttl: ConfigDuration,
    /// Without IDLE: how often to look for mail.
    pub poll_interval: ConfigDuration,
    /// With IDLE: how long one IDLE lasts before it is renewed.
    pub idle_timeout: ConfigDuration,
    /// How long without a working IMAP connection makes `/readyz` unready (default: the
    /// IDLE or poll interval plus a minute).
    pub stale_after: Option<ConfigDuration>,
}

impl Default for EmailSection {
    fn default() -> EmailSection {
        EmailSection {
            imap: MailServerSection { port: 993, mailbox: Some("INBOX".into()), ..MailServerSection::default() },
            smtp: MailServerSection { port: 465, ..MailServerSection::default() },
            from: None,
            digest_to: Vec::new(),
            digest_schedule: None,
            allowed_senders: Vec::new(),
            reply_secret_env: None,
            reply_secret_file: None,
            reply_ttl: ConfigDuration::secs(7 * 24 * 3600),
            poll_interval: ConfigDuration::secs(60),
            idle_timeout: ConfigDuration::secs(300),
            stale_after: None,
        }
    }
}

/// `[email.imap]` / `[email.smtp]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailServerSection {
    pub host: String,
    pub port: u16,
    pub security: MailSecurity,
    pub username: String,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// Or a file holding it (first line), e.g. one `loopgate init` wrote with mode 0600.
    pub password_file: Option<PathBuf>,
    /// IMAP only: the folder read for new mail.
    pub mailbox: Option<String>,
}

impl Default for MailServerSection {
    fn default() -> MailServerSection {
        MailServerSection {
            host: String::new(),
            port: 0,
            security: MailSecurity::Tls,
            username: String::new(),
            password_env: None,
            password_file: None,
            mailbox: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailSecurity {
    #[default]
    Tls,
    Starttls,
    None,
}

/// `[discord]`: the bot's token (by reference), where it talks to, listens and posts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordSection {
    /// The environment variable holding the bot token (Developer Portal → Bot).
    pub token_env: Option<String>,
    /// Or a file holding it (first line).
    pub token_file: Option<PathBuf>,
    /// The REST base URL: the public API, a proxy, or a test fake. The gateway is whatever
    /// that API's `GET /gateway` returns.
    pub api_base: String,
    /// Learned from the gateway when left out. Snowflakes may be written as integers or,
    /// as Discord shows them, strings.
    #[serde(deserialize_with = "snowflake::option")]
    pub application_id: Option<u64>,
    /// The application's public key (hex), for the HTTP interactions endpoint
    /// `POST /webhooks/discord`. Without it that endpoint refuses everything.
    pub public_key: Option<String>,
    /// Channels listened in besides DMs (threads under them included).
    #[serde(deserialize_with = "snowflake::list")]
    pub channel_ids: Vec<u64>,
    /// Where suggestions and approvals are posted; a DM to the owner when left out.
    #[serde(deserialize_with = "snowflake::option")]
    pub delivery_channel_id: Option<u64>,
    /// Accounts besides the owner's that may answer suggestions and approvals.
    #[serde(deserialize_with = "snowflake::list")]
    pub allowed_user_ids: Vec<u64>,
    /// How long without a connected gateway makes `/readyz` unready.
    pub stale_after: ConfigDuration,
}

impl Default for DiscordSection {
    fn default() -> DiscordSection {
        DiscordSection {
            token_env: None,
            token_file: None,
            api_base: "https://discord.com".into(),
            application_id: None,
            public_key: None,
            channel_ids: Vec::new(),
            delivery_channel_id: None,
            allowed_user_ids: Vec::new(),
            stale_after: ConfigDuration::secs(90),
        }
    }
}

/// `[telegram]`: the bot's token (by reference), where it talks to and where it posts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramSection {
    /// The environment variable holding the bot token from @BotFather.
    pub token_env: Option<String>,
    /// Or a file holding it (first line).
    pub token_file: Option<PathBuf>,
    /// The Bot API server: the public one, a self-hosted one, or a test fake.
    pub api_url: String,
    pub mode: TelegramMode,
    /// Webhook mode: the environment variable holding the secret Telegram sends back in
    /// `X-Telegram-Bot-Api-Secret-Token`.
    pub webhook_secret_env: Option<String>,
    /// Where suggestions and approvals go; the owner's private chat when left out.
    pub chat_id: Option<i64>,
    /// Accounts besides the owner's that may answer suggestions and approvals.
    pub allowed_user_ids: Vec<i64>,
    /// How long one long poll waits for updates.
    pub poll_timeout: ConfigDuration,
    /// How long without hearing from Telegram makes `/readyz` unready (default: the poll
    /// timeout plus 30 s).
    pub stale_after: Option<ConfigDuration>,
    /// Webhook mode: how often to ask Telegram whether updates are piling up unread.
    pub webhook_check: ConfigDuration,
}

impl Default for TelegramSection {
    fn default() -> TelegramSection {
        TelegramSection {
            token_env: None,
            token_file: None,
            api_url: "https://api.telegram.org".into(),
            mode: TelegramMode::Polling,
            webhook_secret_env: None,
            chat_id: None,
            allowed_user_ids: Vec::new(),
            poll_timeout: ConfigDuration::secs(30),
            stale_after: None,
            webhook_check: ConfigDuration::secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TelegramMode {
    #[default]
    Polling,
    Webhook,
}

/// A secret named by `*_env` or `*_file`: its value, or what is wrong and how to fix it.
fn read_secret(
    env: &dyn Fn(&str) -> Option<String>,
    section: &str,
    by_env: Option<&str>,
    by_file: Option<&Path>,
) -> Result<String, Problem> {
    let problem = |key: &str, problem: String, fix: String| Problem { key: format!("{section}.{key}"), problem, fix };
    match (by_env, by_file) {
        (Some(_), Some(_)) => {
            Err(problem("token_env", "both token_env and token_file are set".into(), "keep one of them".into()))
        }
        (Some(name), None) => env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).ok_or_else(|| {
            problem(
                "token_env",
                format!("the environment variable {name} is not set or empty"),
                format!("export {name}=<the token>"),
            )
        }),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => Ok(text.lines().next().unwrap_or("").trim().to_owned()),
            Ok(_) => {
                Err(problem("token_file", format!("{} is empty", path.display()), "write the token into it".into()))
            }
            Err(e) => Err(problem(
                "token_file",
                format!("cannot read {}: {e}", path.display()),
                "point it at a readable file holding the token".into(),
            )),
        },
        (None, None) => Err(problem(
            "token_env",
            "no token is configured".into(),
            "set token_env = \"TELEGRAM_BOT_TOKEN\" and export that variable".into(),
        )),
    }
}

/// `[[workflow]]`: a named outcome, a trigger (`schedule` or `on_signal`, or neither:
/// run on request), and steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    pub name: String,
    #[serde(default)]
    pub outcome: String,
    /// Cron in the owner's timezone.
    pub schedule: Option<String>,
    pub on_signal: Option<SignalMatchConfig>,
    pub steps: Vec<StepConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalMatchConfig {
    pub source: Option<String>,
    pub kind: Option<String>,
    pub conversation: Option<String>,
    /// Only senders who never wrote on that source before.
    pub unknown_sender: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepConfig {
    Gather {
        source: Option<String>,
        conversation: Option<String>,
        #[serde(default = "a_week")]
        since: ConfigDuration,
    },
    Compose {
        title: String,
    },
    Approve {
        reason: String,
    },
    Deliver {
        channel: String,
        #[serde(default)]
        to: String,
        subject: Option<String>,
    },
}

fn a_week() -> ConfigDuration {
    ConfigDuration::secs(7 * 24 * 3600)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    /// POST (default), PUT or PATCH.
    #[serde(default = "default_method")]
    pub method: String,
    /// Header name → the environment variable holding its value (a secret never sits in
    /// the file).
    #[serde(default)]
    pub headers_env: std::collections::BTreeMap<String, String>,
    #[serde(default = "default_webhook_timeout")]
    pub timeout: ConfigDuration,
}

fn default_method() -> String {
    "POST".into()
}

fn default_webhook_timeout() -> ConfigDuration {
    ConfigDuration::secs(10)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    pub name: String,
    /// The program, run directly (never through a shell).
    pub program: PathBuf,
    /// Its arguments, fixed here: nothing from a message ever becomes one.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default = "default_command_timeout")]
    pub timeout: ConfigDuration,
}

fn default_command_timeout() -> ConfigDuration {
    ConfigDuration::secs(300)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// How long an approval waits for a decision; then it expires and its task is
    /// cancelled, never run.
    pub expires: ConfigDuration,
    /// How long a pending approval waits before reflection suggests deciding it.
    pub remind_after: ConfigDuration,
}

impl Default for ApprovalsConfig {
    fn default() -> ApprovalsConfig {
        ApprovalsConfig { expires: ConfigDuration::secs(24 * 3600), remind_after: ConfigDuration::secs(4 * 3600) }
    }
}

/// The owner's rules for actions (`[[policy.rules]]`): each `allow`, `ask` or `deny`s the
/// actions it matches; the strictest matching rule wins, so deny always does. Without a
/// matching rule, notes and reminders run and everything else asks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// How often the heartbeat looks at what is new.
    pub interval: ConfigDuration,
    /// Least time between two reflections.
    pub cooldown: ConfigDuration,
    /// Least time after a reflection that failed.
    pub cooldown_after_failure: ConfigDuration,
    /// Reflections per day (in the owner's time zone); 0 reflects only by hand.
    pub daily_budget: u32,
    /// New actionable signals that justify a reflection on their own.
    pub actionable_threshold: usize,
    /// How long a question to the owner may wait before it counts as unanswered.
    pub answer_grace: ConfigDuration,
    /// How far back a reflection looks.
    pub lookback: ConfigDuration,
}

impl Default for HeartbeatConfig {
    fn default() -> HeartbeatConfig {
        HeartbeatConfig {
            interval: ConfigDuration::secs(300),
            cooldown: ConfigDuration::secs(30 * 60),
            cooldown_after_failure: ConfigDuration::secs(5 * 60),
            daily_budget: 24,
            actionable_threshold: 3,
            answer_grace: ConfigDuration::secs(2 * 3600),
            lookback: ConfigDuration::secs(7 * 86400),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuggestionsConfig {
    /// Most suggestions open for the owner at once.
    pub max_active: usize,
    /// How long a suggestion stays up before it expires.
    pub expires_after: ConfigDuration,
    /// How long a posted suggestion may go unanswered before it counts as ignored.
    pub ignore_after: ConfigDuration,
    /// Let low-risk suggestions that policy allows, with a clear target, become tasks
    /// without asking — when the target is your own or you acted on similar ones
    /// `auto_create_after` times (SPEC §7). Off by default.
    pub auto_create: bool,
    pub auto_create_after: u32,
}

impl Default for SuggestionsConfig {
    fn default() -> SuggestionsConfig {
        SuggestionsConfig {
            max_active: 10,
            expires_after: ConfigDuration::secs(3 * 86400),
            ignore_after: ConfigDuration::secs(48 * 3600),
            auto_create: false,
            auto_create_after: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Name of the environment variable holding the API bearer token.
    pub api_token_env: Option<String>,
    /// Or a file holding it (first line).
    pub api_token_file: Option<PathBuf>,
    /// Where the owner reaches this server from outside, for links and webhooks.
    pub public_url: Option<String>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: ConfigDuration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: "127.0.0.1:8787".into(),
            api_token_env: None,
            api_token_file: None,
            public_url: None,
            max_body_bytes: 256 * 1024,
            shutdown_grace: ConfigDuration::secs(10),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub url: String,
    pub data_dir: PathBuf,
    /// `"process"`: a commit survives a killed process (SQLite synchronous=NORMAL);
    /// `"power_loss"`: it survives a power cut too, at one fsync per commit.
    pub durability: DurabilityConfig,
    pub max_connections: u32,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            url: "sqlite://data/loopgate.db".into(),
            data_dir: PathBuf::from("data"),
            durability: DurabilityConfig::Process,
            max_connections: 4,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityConfig {
    #[default]
    Process,
    PowerLoss,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnerConfig {
    pub telegram_user_ids: Vec<i64>,
    #[serde(deserialize_with = "snowflake::list")]
    pub discord_user_ids: Vec<u64>,
    pub emails: Vec<String>,
    /// IANA name, e.g. `"Europe/Berlin"`.
    pub timezone: String,
    /// `"22:00-07:00"` in the owner's time zone: no pulses, no pings.
    pub quiet_hours: Option<String>,
}

impl Default for OwnerConfig {
    fn default() -> OwnerConfig {
        OwnerConfig {
            telegram_user_ids: Vec::new(),
            discord_user_ids: Vec::new(),
            emails: Vec::new(),
            timezone: "UTC".into(),
            quiet_hours: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    pub retention: RetentionConfig,
    /// How often expired signals are deleted.
    pub sweep_interval: ConfigDuration,
}

impl Default for SignalsConfig {
    fn default() -> SignalsConfig {
        SignalsConfig { retention: RetentionConfig::default(), sweep_interval: ConfigDuration::secs(600) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub message: ConfigDuration,
    pub email: ConfigDuration,
    pub interaction: ConfigDuration,
    pub schedule: ConfigDuration,
    pub event: ConfigDuration,
    pub receipts: ConfigDuration,
}

impl Default for RetentionConfig {
    fn default() -> RetentionConfig {
        let r = Retention::default();
        let d = |d: chrono::Duration| ConfigDuration(d.to_std().expect("positive default"));
        RetentionConfig {
            message: d(r.message),
            email: d(r.email),
            interaction: d(r.interaction),
            schedule: d(r.schedule),
            event: d(r.event),
            receipts: d(r.receipts),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `"info"` or `"loopgate=debug,sqlx=warn"`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig { format: LogFormat::Human, level: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// A duration written as a string: `"90s"`, `"15m"`, `"2h"`, `"30d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    pub const fn secs(secs: u64) -> ConfigDuration {
        ConfigDuration(Duration::from_secs(secs))
    }

    /// As the engine's duration type; one too long for it saturates.
    pub fn to_chrono(self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ConfigDuration, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string such as \"90s\", \"15m\", \"2h\" or \"30d\"")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<ConfigDuration, E> {
                humantime::parse_duration(value.trim()).map(ConfigDuration).map_err(|e| {
                    E::custom(format!(
                        "invalid duration {value:?} ({e}); write it like \"90s\", \"15m\", \"2h\" or \"30d\""
                    ))
                })
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// Where the configuration came from, for messages.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    Defaults,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Defaults => f.write_str("built-in defaults (no config file)"),
        }
    }
}

/// One thing wrong with the configuration, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.key, self.problem, self.fix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("{0}")]
    Parse(Box<figment::Error>),
    #[error("the configuration has {} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl Config {
    /// Reads the file (the explicit one, else `config/loopgate.toml` if present, else
    /// nothing) and applies `LOOPGATE_<SECTION>__<KEY>` overrides from `env`.
    pub fn load(
        explicit: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, ConfigSource), ConfigError> {
        let source = match explicit {
            Some(path) if !path.exists() => return Err(ConfigError::Missing(path.to_owned())),
            Some(path) => ConfigSource::File(path.to_owned()),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => ConfigSource::File(DEFAULT_CONFIG_PATH.into()),
            None => ConfigSource::Defaults,
        };
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let ConfigSource::File(path) = &source {
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only variables with a section separator are overrides; others with the prefix
        // (LOOPGATE_CONFIG, test helpers) are not configuration keys.
        let overrides: Vec<(String, String)> = env
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix(ENV_PREFIX).filter(|k| k.contains("__")).map(|k| (k.to_owned(), v)))
            .collect();
        figment = figment.merge(EnvOverrides(overrides));
        let config: Config = figment.extract().map_err(|e| ConfigError::Parse(Box::new(e)))?;
        Ok((config, source))
    }

    /// Checks everything a type cannot and reads the secrets the config points at.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, problem: String, fix: &str| {
            problems.push(Problem { key: key.into(), problem, fix: fix.into() })
        };

        let listen: Option<SocketAddr> = match self.server.listen.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                problem(
                    "server.listen",
                    format!("{:?} is not an address with a port", self.server.listen),
                    "write it like \"127.0.0.1:8787\"",
                );
                None
            }
        };

        let api_token = match (&self.server.api_token_env, &self.server.api_token_file) {
            (Some(_), Some(_)) => {
                problem(
                    "server.api_token_env",
                    "both api_token_env and api_token_file are set".into(),
                    "keep one of them",
                );
                None
            }
            (Some(name), None) => match env(name).filter(|v| !v.trim().is_empty()) {
                Some(token) => Some(token.trim().to_owned()),
                None => {
                    problem(
                        "server.api_token_env",
                        format!("the environment variable {name} is not set or empty"),
                        &format!("export {name}=<a long random token>, or remove api_token_env"),
                    );
                    None
                }
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(text) if !text.trim().is_empty() => Some(text.lines().next().unwrap_or("").trim().to_owned()),
                Ok(_) => {
                    problem(
                        "server.api_token_file",
                        format!("{} is empty", path.display()),
                        "write a long random token into it",
                    );
                    None
                }
                Err(e) => {
                    problem(
                        "server.api_token_file",
                        format!("cannot read {}: {e}", path.display()),
                        "point it at a readable file holding the token",
                    );
                    None
                }
            },
            (None, None) => None,
        };
        if let Some(token) = &api_token
            && token.len() < 16
        {
            problem(
                "server.api_token_env",
                "the API token is shorter than 16 characters".into(),
                "use a long random token, e.g. from `openssl rand -hex 32`",
            );
        }
        let no_token_configured = self.server.api_token_env.is_none() && self.server.api_token_file.is_none();
        if let Some(addr) = listen
            && !addr.ip().is_loopback()
            && no_token_configured
        {
            problem(
                "server.api_token_env",
                format!("server.listen is {addr}, reachable from other machines, but no API token is configured"),
                "set api_token_env = \"LOOPGATE_API_TOKEN\" and export that variable, or listen on 127.0.0.1",
            );
        }
        if self.server.max_body_bytes < 1024 {
            problem("server.max_body_bytes", "is below 1024".into(), "use at least 1024 (the default is 262144)");
        }
        if let Some(url) = &self.server.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            problem(
                "server.public_url",
                format!("{url:?} is not an http(s) URL"),
                "write it like \"https://loopgate.example.org\"",
            );
        }

        let url = &self.storage.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            problem(
                "storage.url",
                format!("{url:?} is neither a SQLite nor a PostgreSQL URL"),
                "use \"sqlite://data/loopgate.db\" or \"postgres://user@host/dbname\"",
            );
        }
        if self.storage.max_connections == 0 {
            problem("storage.max_connections", "is 0".into(), "use at least 1 (the default is 4)");
        }

        let timezone: Option<chrono_tz::Tz> = match self.owner.timezone.parse() {
            Ok(tz) => Some(tz),
            Err(_) => {
                problem(
                    "owner.timezone",
                    format!("{:?} is not an IANA time zone", self.owner.timezone),
                    "use a name like \"Europe/Berlin\" or \"America/New_York\"",
                );
                None
            }
        };
        let quiet_hours = match self.owner.quiet_hours.as_deref().map(QuietHours::parse).transpose() {
            Ok(q) => q,
            Err(reason) => {
                problem("owner.quiet_hours", reason, "write it like \"22:00-07:00\"");
                None
            }
        };
        for email in &self.owner.emails {
            if !email.contains('@') || email.trim() != email {
                problem(
                    "owner.emails",
                    format!("{email:?} is not an email address"),
                    "list plain addresses like \"me@example.org\"",
                );
            }
        }

        let retention = &self.signals.retention;
        for (key, value) in [
            ("signals.retention.message", retention.message),
            ("signals.retention.email", retention.email),
            ("signals.retention.interaction", retention.interaction),
            ("signals.retention.schedule", retention.schedule),
            ("signals.retention.event", retention.event),
            ("signals.retention.receipts", retention.receipts),
            ("signals.sweep_interval", self.signals.sweep_interval),
        ] {
            if value.0 < Duration::from_secs(60) {
                problem(
                    key,
                    format!("{} is under a minute", humantime::format_duration(value.0)),
                    "use at least \"1m\"",
                );
            }
        }
        let h = &self.heartbeat;
        for (key, value, least, fix) in [
            ("heartbeat.interval", h.interval, 1, "use at least \"1s\""),
            ("heartbeat.answer_grace", h.answer_grace, 60, "use at least \"1m\""),
            ("heartbeat.lookback", h.lookback, 3600, "use at least \"1h\""),
            ("suggestions.expires_after", self.suggestions.expires_after, 60, "use at least \"1m\""),
            ("suggestions.ignore_after", self.suggestions.ignore_after, 60, "use at least \"1m\""),
            ("approvals.expires", self.approvals.expires, 60, "use at least \"1m\""),
            ("approvals.remind_after", self.approvals.remind_after, 60, "use at least \"1m\""),
        ] {
            if value.0 < Duration::from_secs(least) {
                problem(key, format!("{} is too short", humantime::format_duration(value.0)), fix);
            }
        }
        if h.actionable_threshold == 0 {
            problem("heartbeat.actionable_threshold", "0 would reflect on every pulse".into(), "use 1 or more");
        }
        for (n, rule) in self.policy.rules.iter().enumerate() {
            if rule.target.as_deref().is_some_and(|t| t.trim().is_empty()) {
                problem(
                    &format!("policy.rules[{n}].target"),
                    "an empty pattern matches only actions without a target".into(),
                    "write a pattern like \"telegram:*\" or \"deploy-*\", or leave target out to match every target",
                );
            }
        }
        let mut webhooks = Vec::new();
        for (n, hook) in self.webhook.iter().enumerate() {
            let key = |field: &str| format!("webhook[{n}].{field}");
            if hook.name.trim().is_empty() || self.webhook[..n].iter().any(|h| h.name == hook.name) {
                problem(
                    &key("name"),
                    format!("{:?} is empty or used twice", hook.name),
                    "give each webhook its own name",
                );
            }
            let scheme_ok = hook.url.starts_with("https://") || hook.url.starts_with("http://");
            if !scheme_ok || hook.url.parse::<axum::http::Uri>().is_err() {
                problem(
                    &key("url"),
                    format!("{:?} is not an http(s) URL", hook.url),
                    "write it like \"https://host/path\"",
                );
            }
            let method = hook.method.to_ascii_uppercase();
            if !["POST", "PUT", "PATCH"].contains(&method.as_str()) {
                problem(&key("method"), format!("{:?} is not POST, PUT or PATCH", hook.method), "use POST");
            }
            let mut headers = Vec::new();
            for (header, var) in &hook.headers_env {
                match env(var).filter(|v| !v.is_empty()) {
                    Some(value) => headers.push((header.clone(), value)),
                    None => problem(
                        &key("headers_env"),
                        format!("the environment variable {var} (for header {header}) is not set"),
                        &format!("export {var}=<the header's value>"),
                    ),
                }
            }
            webhooks.push(Webhook {
                name: hook.name.clone(),
                url: hook.url.clone(),
                method,
                headers,
                timeout: hook.timeout.0,
            });
        }
        for (n, command) in self.command.iter().enumerate() {
            let key = |field: &str| format!("command[{n}].{field}");
            if command.name.trim().is_empty() || self.command[..n].iter().any(|c| c.name == command.name) {
                problem(
                    &key("name"),
                    format!("{:?} is empty or used twice", command.name),
                    "give each command its own name",
                );
            }
            if !command.program.is_absolute() {
                problem(
                    &key("program"),
                    format!("{} is not an absolute path", command.program.display()),
                    "name the program by its full path, like \"/usr/local/bin/backup\"",
                );
            }
        }
        let workflows = self.workflows(&mut problem);
        let model = self.model_settings(env, &mut problem);
        let commands = self
            .command
            .iter()
            .map(|c| NamedCommand {
                name: c.name.clone(),
                program: c.program.clone(),
                args: c.args.clone(),
                timeout: c.timeout.0,
            })
            .collect();
        let telegram = match &self.telegram {
            None => None,
            Some(t) => match self.telegram_settings(t, env, timezone) {
                Ok(settings) => settings,
                Err(found) => {
                    for p in found {
                        problem(&p.key, p.problem, &p.fix);
                    }
                    None
                }
            },
        };
        let discord = match &self.discord {
            None => None,
            Some(d) => match self.discord_settings(d, env, timezone) {
                Ok(settings) => settings,
                Err(found) => {
                    for p in found {
                        problem(&p.key, p.problem, &p.fix);
                    }
                    None
                }
            },
        };
        let email = match &self.email {
            None => None,
            Some(e) => match self.email_settings(e, env, timezone) {
                Ok(settings) => settings,
                Err(found) => {
                    for p in found {
                        problem(&p.key, p.problem, &p.fix);
                    }
                    None
                }
            },
        };
        if self.suggestions.max_active == 0 {
            problem("suggestions.max_active", "0 would never suggest anything".into(), "use 1 or more");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            problem(
                "log.level",
                format!("{:?} is not a log filter", self.log.level),
                "use \"info\", \"debug\" or \"loopgate=debug,sqlx=warn\"",
            );
        }

        let identities = self.identities();
        match (listen, timezone, problems.is_empty()) {
            (Some(listen), Some(timezone), true) => Ok(Settings {
                telegram,
                discord,
                email,
                workflows,
                model,
                webhooks,
                commands,
                listen,
                api_token,
                max_body_bytes: self.server.max_body_bytes,
                shutdown_grace: self.server.shutdown_grace.0,
                store: self.store_config(),
                data_dir: self.storage.data_dir.clone(),
                identities: identities.clone(),
                timezone,
                quiet_hours,
                sweep_interval: self.signals.sweep_interval.0,
                heartbeat_interval: self.heartbeat.interval.0,
                intelligence: {
                    let mut intelligence = self.intelligence_settings(timezone, quiet_hours);
                    // One set of identities, so owners paired at run time reach the API too.
                    intelligence.answerers = identities;
                    intelligence
                },
            }),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }

    fn identities(&self) -> Identities {
        let owner = Identities::new(
            self.owner.telegram_user_ids.iter().map(ToString::to_string),
            self.owner.discord_user_ids.iter().map(ToString::to_string),
            self.owner.emails.iter().cloned(),
        );
        let telegram_allowed = self.telegram.iter().flat_map(|t| t.allowed_user_ids.iter().map(ToString::to_string));
        let discord_allowed = self.discord.iter().flat_map(|d| d.allowed_user_ids.iter().map(ToString::to_string));
        let email_allowed = self.email.iter().flat_map(|e| e.allowed_senders.iter().cloned());
        owner.allow("telegram", telegram_allowed).allow("discord", discord_allowed).allow("email", email_allowed)
    }

    /// `[email]` checked, with its passwords and secret read.
    fn email_settings(
        &self,
        e: &EmailSection,
        env: &dyn Fn(&str) -> Option<String>,
        timezone: Option<chrono_tz::Tz>,
    ) -> Result<Option<EmailConfig>, Vec<Problem>> {
        let mut problems = Vec::new();
        let server = |name: &str, s: &MailServerSection, problems: &mut Vec<Problem>| {
            let key = |k: &str| format!("email.{name}.{k}");
            if s.host.trim().is_empty() {
                problems.push(Problem {
                    key: key("host"),
                    problem: "no server".into(),
                    fix: format!("set email.{name}.host, e.g. \"{name}.example.org\""),
                });
            }
            if s.port == 0 {
                problems.push(Problem {
                    key: key("port"),
                    problem: "no port".into(),
                    fix: "set the server's port".into(),
                });
            }
            let password = match (s.password_env.as_deref(), s.password_file.as_deref()) {
                (None, None) => String::new(),
                (Some(_), Some(_)) => {
                    problems.push(Problem {
                        key: key("password_env"),
                        problem: "both password_env and password_file are set".into(),
                        fix: "keep one of them".into(),
                    });
                    String::new()
                }
                (Some(var), None) => {
                    env(var).map(|v| v.trim_end_matches(['\r', '\n']).to_owned()).unwrap_or_else(|| {
                        problems.push(Problem {
                            key: key("password_env"),
                            problem: format!("{var} is not set"),
                            fix: format!("export {var}=<the {name} password>"),
                        });
                        String::new()
                    })
                }
                (None, Some(path)) => match std::fs::read_to_string(path) {
                    Ok(text) => text.lines().next().unwrap_or("").to_owned(),
                    Err(e) => {
                        problems.push(Problem {
                            key: key("password_file"),
                            problem: format!("cannot read {}: {e}", path.display()),
                            fix: "point it at a readable file holding the password".into(),
                        });
                        String::new()
                    }
                },
            };
            if !s.username.is_empty() && s.password_env.is_none() && s.password_file.is_none() {
                problems.push(Problem {
                    key: key("password_env"),
                    problem: "a username without a password".into(),
                    fix: format!("set email.{name}.password_env = \"{}_PASSWORD\"", name.to_uppercase()),
                });
            }
            MailServer {
                host: s.host.trim().to_owned(),
                port: s.port,
                security: match s.security {
                    MailSecurity::Tls => Security::Tls,
                    MailSecurity::Starttls => Security::StartTls,
                    MailSecurity::None => Security::None,
                },
                username: s.username.clone(),
                password,
            }
        };
        let imap = server("imap", &e.imap, &mut problems);
        let smtp = server("smtp", &e.smtp, &mut problems);
        let from = e.from.clone().unwrap_or_default();
        if from.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(Problem {
                key: "email.from".into(),
                problem: format!("{from:?} is not an address"),
                fix: "set email.from = \"loopgate <loopgate@example.org>\"".into(),
            });
        }
        let digest_to = if e.digest_to.is_empty() { self.owner.emails.clone() } else { e.digest_to.clone() };
        for to in &digest_to {
            if to.parse::<lettre::message::Mailbox>().is_err() {
                problems.push(Problem {
                    key: "email.digest_to".into(),
                    problem: format!("{to:?} is not an address"),
                    fix: "write addresses like \"me@example.org\"".into(),
                });
            }
        }
        if let Some(pattern) = &e.digest_schedule
            && let Err(error) = loopgate_channels::email::parse_schedule(pattern)
        {
            problems.push(Problem {
                key: "email.digest_schedule".into(),
                problem: error.to_string(),
                fix: "write a cron schedule like \"0 7 * * *\" (07:00 every day, your time)".into(),
            });
        }
        let secret = match (e.reply_secret_env.as_deref(), e.reply_secret_file.as_deref()) {
            (Some(_), Some(_)) => {
                problems.push(Problem {
                    key: "email.reply_secret_env".into(),
                    problem: "both reply_secret_env and reply_secret_file are set".into(),
                    fix: "keep one of them".into(),
                });
                None
            }
            (None, Some(path)) => {
                match std::fs::read_to_string(path).map(|t| t.lines().next().unwrap_or("").trim().to_owned()) {
                    Ok(secret) if secret.len() >= 16 => Some(secret),
                    Ok(_) => {
                        problems.push(Problem {
                            key: "email.reply_secret_file".into(),
                            problem: format!("{} holds fewer than 16 characters", path.display()),
                            fix: format!("write a random value into it: openssl rand -hex 32 > {}", path.display()),
                        });
                        None
                    }
                    Err(error) => {
                        problems.push(Problem {
                            key: "email.reply_secret_file".into(),
                            problem: format!("cannot read {}: {error}", path.display()),
                            fix: "point it at a readable file holding the secret".into(),
                        });
                        None
                    }
                }
            }
            (None, None) => {
                problems.push(Problem {
                    key: "email.reply_secret_env".into(),
                    problem: "answers by reply need a secret".into(),
                    fix: "set reply_secret_env = \"LOOPGATE_REPLY_SECRET\" and export a random value".into(),
                });
                None
            }
            (Some(var), None) => match env(var).map(|v| v.trim().to_owned()).filter(|v| v.len() >= 16) {
                Some(secret) => Some(secret),
                None => {
                    problems.push(Problem {
                        key: "email.reply_secret_env".into(),
                        problem: format!("{var} is not set or shorter than 16 characters"),
                        fix: format!("export {var}=$(openssl rand -hex 32)"),
                    });
                    None
                }
            },
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let (Some(reply_secret), Some(timezone)) = (secret, timezone) else { return Ok(None) };
        let wait = e.idle_timeout.0.max(e.poll_interval.0);
        Ok(Some(EmailConfig {
            imap,
            mailbox: e.imap.mailbox.clone().unwrap_or_else(|| "INBOX".into()),
            smtp,
            from,
            digest_to,
            digest_schedule: e.digest_schedule.clone(),
            reply_secret,
            reply_ttl: e.reply_ttl.0,
            poll_interval: e.poll_interval.0,
            idle_timeout: e.idle_timeout.0,
            stale_after: e.stale_after.map_or(wait + Duration::from_secs(60), |d| d.0),
            timezone,
        }))
    }

    /// `[model]` checked, with its key read.
    fn model_settings(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        problem: &mut impl FnMut(&str, String, &str),
    ) -> Option<crate::model::ModelConfig> {
        use crate::model::{Kind, ModelConfig};
        let m = &self.model;
        let kind = match m.provider {
            ModelProvider::None => return None,
            ModelProvider::Openai => Kind::OpenAi,
            ModelProvider::Anthropic => Kind::Anthropic,
        };
        let base_url = m.base_url.clone().unwrap_or_else(|| match kind {
            Kind::OpenAi => "https://api.openai.com/v1".into(),
            Kind::Anthropic => "https://api.anthropic.com".into(),
        });
        let mut ok = true;
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            ok = false;
            problem(
                "model.base_url",
                format!("{base_url:?} is not an http(s) URL"),
                "e.g. \"http://127.0.0.1:11434/v1\" for Ollama",
            );
        }
        if m.model.trim().is_empty() {
            ok = false;
            problem(
                "model.model",
                "no model named".into(),
                "set model = \"gpt-4o-mini\", \"claude-3-5-haiku-latest\", \"llama3.1\", …",
            );
        }
        let api_key = match &m.api_key_env {
            None if kind == Kind::Anthropic => {
                ok = false;
                problem("model.api_key_env", "Anthropic needs a key".into(), "set api_key_env = \"ANTHROPIC_API_KEY\"");
                None
            }
            None => None,
            Some(var) => match env(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                Some(key) => Some(key),
                None => {
                    ok = false;
                    problem("model.api_key_env", format!("{var} is not set"), &format!("export {var}=<your API key>"));
                    None
                }
            },
        };
        if m.timeout.0 < Duration::from_secs(1) {
            ok = false;
            problem("model.timeout", "shorter than a second".into(), "use the default, 30s");
        }
        ok.then(|| ModelConfig { kind, base_url, api_key, model: m.model.trim().to_owned(), timeout: m.timeout.0 })
    }

    /// `[[workflow]]` checked and turned into the engine's workflows.
    fn workflows(&self, problem: &mut impl FnMut(&str, String, &str)) -> Vec<loopgate_engine::workflow::Workflow> {
        use loopgate_engine::workflow::{SignalMatch, Step, Trigger, Workflow};
        let mut found = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (n, w) in self.workflow.iter().enumerate() {
            let key = |k: &str| format!("workflow[{n}].{k}");
            let before = found.len();
            let mut ok = true;
            let mut bad = |k: &str, what: String, fix: &str| {
                ok = false;
                problem(&key(k), what, fix);
            };
            if w.name.is_empty() || !w.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                bad(
                    "name",
                    format!("{:?} is not a name", w.name),
                    "use letters, digits, - and _, like \"weekly-status\"",
                );
            } else if !names.insert(w.name.clone()) {
                bad("name", format!("{:?} is used twice", w.name), "give every workflow its own name");
            }
            let trigger = match (&w.schedule, &w.on_signal) {
                (Some(_), Some(_)) => {
                    bad("schedule", "both schedule and on_signal are set".into(), "keep one trigger per workflow");
                    Trigger::Manual
                }
                (Some(cron), None) => {
                    if cron.parse::<croner::Cron>().is_err() {
                        bad(
                            "schedule",
                            format!("{cron:?} is not a cron schedule"),
                            "write it like \"0 16 * * 5\" (Fridays 16:00, your time)",
                        );
                    }
                    Trigger::Schedule(cron.clone())
                }
                (None, Some(m)) => Trigger::Signal(SignalMatch {
                    source: m.source.clone(),
                    kind: m.kind.clone(),
                    conversation: m.conversation.clone(),
                    unknown_sender: m.unknown_sender,
                }),
                (None, None) => Trigger::Manual,
            };
            if w.steps.is_empty() {
                bad("steps", "no steps".into(), "add steps: gather, compose, approve, deliver");
            }
            let mut steps = Vec::new();
            let mut delivered = false;
            for (i, step) in w.steps.iter().enumerate() {
                steps.push(match step {
                    StepConfig::Gather { source, conversation, since } => Step::Gather {
                        source: source.clone(),
                        conversation: conversation.clone(),
                        since_secs: i64::try_from(since.0.as_secs()).unwrap_or(i64::MAX),
                    },
                    StepConfig::Compose { title } => Step::Compose { title: title.clone() },
                    StepConfig::Approve { reason } => {
                        if delivered {
                            bad(
                                &format!("steps[{i}]"),
                                "an approval after the delivery approves nothing".into(),
                                "put approve before deliver",
                            );
                        }
                        Step::Approve { reason: reason.clone() }
                    }
                    StepConfig::Deliver { channel, to, subject } => {
                        delivered = true;
                        let configured = match channel.as_str() {
                            "digest" | "email" => self.email.is_some(),
                            "telegram" => self.telegram.is_some(),
                            "discord" => self.discord.is_some(),
                            _ => false,
                        };
                        if !configured {
                            bad(
                                &format!("steps[{i}].deliver.channel"),
                                format!("{channel:?} is not a configured channel"),
                                "deliver to \"email\", \"telegram\", \"discord\" (when configured) or \"digest\"",
                            );
                        }
                        if channel != "digest" && to.trim().is_empty() {
                            bad(
                                &format!("steps[{i}].deliver.to"),
                                "no recipient".into(),
                                "set to = an address, chat id or channel id",
                            );
                        }
                        Step::Deliver { channel: channel.clone(), to: to.trim().to_owned(), subject: subject.clone() }
                    }
                });
            }
            if ok && found.len() == before {
                found.push(Workflow { name: w.name.clone(), outcome: w.outcome.clone(), trigger, steps });
            }
        }
        found
    }

    /// `[discord]` checked, with its token read.
    fn discord_settings(
        &self,
        d: &DiscordSection,
        env: &dyn Fn(&str) -> Option<String>,
        timezone: Option<chrono_tz::Tz>,
    ) -> Result<Option<DiscordConfig>, Vec<Problem>> {
        let mut problems = Vec::new();
        let token = read_secret(env, "discord", d.token_env.as_deref(), d.token_file.as_deref())
            .map_err(|p| problems.push(p))
            .ok();
        // "Bot xyz" pasted whole would be sent as "Bot Bot xyz".
        let token = token.map(|t| t.strip_prefix("Bot ").map(str::to_owned).unwrap_or(t));
        if let Some(token) = &token
            && (token.split('.').count() != 3 || token.chars().any(char::is_whitespace))
        {
            problems.push(Problem {
                key: "discord.token_env".into(),
                problem: "the bot token does not look like one (three parts separated by dots)".into(),
                fix: "copy the token from the Developer Portal (Bot → Reset Token)".into(),
            });
        }
        if !(d.api_base.starts_with("https://") || d.api_base.starts_with("http://")) {
            problems.push(Problem {
                key: "discord.api_base".into(),
                problem: format!("{:?} is not an http(s) URL", d.api_base),
                fix: "leave it out for the public API, or write it like \"http://127.0.0.1:8082\"".into(),
            });
        }
        if let Some(key) = &d.public_key
            && let Err(error) = loopgate_channels::discord::parse_public_key(key)
        {
            problems.push(Problem {
                key: "discord.public_key".into(),
                problem: error.to_string(),
                fix: "copy the Public Key from the Developer Portal (General Information)".into(),
            });
        }
        if d.stale_after.0 < Duration::from_secs(1) {
            problems.push(Problem {
                key: "discord.stale_after".into(),
                problem: "shorter than a second would flap".into(),
                fix: "use the default, 90s".into(),
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let (Some(token), Some(timezone)) = (token, timezone) else { return Ok(None) };
        Ok(Some(DiscordConfig {
            token,
            api_base: d.api_base.trim_end_matches('/').to_owned(),
            application_id: d.application_id,
            public_key: d.public_key.clone(),
            channel_ids: d.channel_ids.clone(),
            delivery_channel_id: d.delivery_channel_id,
            dm_user_id: self.owner.discord_user_ids.first().copied(),
            stale_after: d.stale_after.0,
            timezone,
        }))
    }

    /// `[telegram]` checked, with its secrets read. `None` when the time zone is already
    /// known to be wrong (reported elsewhere).
    fn telegram_settings(
        &self,
        t: &TelegramSection,
        env: &dyn Fn(&str) -> Option<String>,
        timezone: Option<chrono_tz::Tz>,
    ) -> Result<Option<TelegramConfig>, Vec<Problem>> {
        let mut problems = Vec::new();
        let token = read_secret(env, "telegram", t.token_env.as_deref(), t.token_file.as_deref())
            .map_err(|p| problems.push(p))
            .ok();
        if let Some(token) = &token
            && !token.contains(':')
        {
            problems.push(Problem {
                key: "telegram.token_env".into(),
                problem: "the bot token does not look like one (\"123456:ABC…\")".into(),
                fix: "copy the whole token @BotFather gave you".into(),
            });
        }
        if !(t.api_url.starts_with("https://") || t.api_url.starts_with("http://")) {
            problems.push(Problem {
                key: "telegram.api_url".into(),
                problem: format!("{:?} is not an http(s) URL", t.api_url),
                fix: "leave it out for the public Bot API, or write it like \"http://127.0.0.1:8081\"".into(),
            });
        }
        if t.poll_timeout.0 > Duration::from_secs(50) {
            problems.push(Problem {
                key: "telegram.poll_timeout".into(),
                problem: "Telegram holds a long poll for at most 50 s".into(),
                fix: "use 50s or less (the default is 30s)".into(),
            });
        }
        let mode = match t.mode {
            TelegramMode::Polling => Some(Transport::Polling),
            TelegramMode::Webhook => {
                let secret = match t.webhook_secret_env.as_deref() {
                    None => {
                        problems.push(Problem {
                            key: "telegram.webhook_secret_env".into(),
                            problem: "webhook mode needs a secret, or anyone could post updates".into(),
                            fix: "set webhook_secret_env = \"TELEGRAM_WEBHOOK_SECRET\" and export a random value"
                                .into(),
                        });
                        None
                    }
                    Some(name) => match env(name).map(|v| v.trim().to_owned()) {
                        Some(secret)
                            if (1..=256).contains(&secret.len())
                                && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
                        {
                            Some(secret)
                        }
                        _ => {
                            problems.push(Problem {
                                key: "telegram.webhook_secret_env".into(),
                                problem: format!(
                                    "{name} is not set, or not 1-256 characters of A-Z, a-z, 0-9, _ and -"
                                ),
                                fix: format!("export {name}=$(openssl rand -hex 32)"),
                            });
                            None
                        }
                    },
                };
                let url = match &self.server.public_url {
                    Some(base) => Some(format!("{}/webhooks/telegram", base.trim_end_matches('/'))),
                    None => {
                        problems.push(Problem {
                            key: "server.public_url".into(),
                            problem: "telegram.mode is \"webhook\" but Telegram has no URL to post to".into(),
                            fix: "set server.public_url to where this server is reachable over HTTPS, or use mode = \"polling\"".into(),
                        });
                        None
                    }
                };
                url.zip(secret).map(|(url, secret)| Transport::Webhook { url, secret })
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let (Some(token), Some(mode), Some(timezone)) = (token, mode, timezone) else { return Ok(None) };
        Ok(Some(TelegramConfig {
            token,
            api_url: t.api_url.clone(),
            mode,
            chat_id: t.chat_id.or_else(|| self.owner.telegram_user_ids.first().copied()),
            poll_timeout: t.poll_timeout.0,
            stale_after: t.stale_after.map_or(t.poll_timeout.0 + Duration::from_secs(30), |d| d.0),
            webhook_check: t.webhook_check.0,
            timezone,
        }))
    }

    fn intelligence_settings(&self, timezone: chrono_tz::Tz, quiet_hours: Option<QuietHours>) -> IntelSettings {
        let h = &self.heartbeat;
        let rules = Rules {
            cooldown: h.cooldown.to_chrono(),
            cooldown_after_failure: h.cooldown_after_failure.to_chrono(),
            daily_budget: h.daily_budget,
            actionable_threshold: h.actionable_threshold,
            timezone,
            quiet_hours,
        };
        let mut settings = IntelSettings::new(rules, self.storage.data_dir.clone());
        settings.answer_grace = h.answer_grace.to_chrono();
        settings.lookback = h.lookback.to_chrono();
        settings.max_active = self.suggestions.max_active;
        settings.expires_after = self.suggestions.expires_after.to_chrono();
        settings.ignore_after = self.suggestions.ignore_after.to_chrono();
        settings.policy = Policy::new(self.policy.rules.clone());
        settings.answerers = self.identities();
        settings.approvals_expire = self.approvals.expires.to_chrono();
        settings.approval_ageing = self.approvals.remind_after.to_chrono();
        settings.daily_token_budget = self.model.daily_token_budget;
        settings.auto_create = loopgate_policies::AutoCreate {
            enabled: self.suggestions.auto_create,
            after_acted: self.suggestions.auto_create_after,
        };
        settings
    }

    fn store_config(&self) -> StoreConfig {
        let r = &self.signals.retention;
        StoreConfig {
            url: self.storage.url.clone(),
            durability: match self.storage.durability {
                DurabilityConfig::Process => Durability::Process,
                DurabilityConfig::PowerLoss => Durability::PowerLoss,
            },
            retention: Retention {
                message: r.message.to_chrono(),
                email: r.email.to_chrono(),
                interaction: r.interaction.to_chrono(),
                schedule: r.schedule.to_chrono(),
                event: r.event.to_chrono(),
                receipts: r.receipts.to_chrono(),
            },
            max_connections: self.storage.max_connections,
        }
    }
}

/// `SECTION__KEY=value` pairs as a figment provider. The pairs are passed in rather than
/// read from the process, so tests can load configurations side by side.
struct EnvOverrides(Vec<(String, String)>);

impl figment::Provider for EnvOverrides {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment variable(s) LOOPGATE_<SECTION>__<KEY>")
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut dict = figment::value::Dict::new();
        for (key, value) in &self.0 {
            let key = key.to_ascii_lowercase();
            // Parsed as figment parses environment values: numbers, booleans, arrays.
            let mut nested: figment::value::Value = value.parse().expect("figment values parse infallibly");
            for part in key.split("__").collect::<Vec<_>>().into_iter().rev() {
                let mut map = figment::value::Dict::new();
                map.insert(part.to_owned(), nested);
                nested = figment::value::Value::from(map);
            }
            if let figment::value::Value::Dict(_, map) = nested {
                for (k, v) in map {
                    merge_into(&mut dict, k, v);
                }
            }
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

fn merge_into(dict: &mut figment::value::Dict, key: String, value: figment::value::Value) {
    use figment::value::Value;
    match (dict.get_mut(&key), value) {
        (Some(Value::Dict(_, existing)), Value::Dict(_, incoming)) => {
            for (k, v) in incoming {
                merge_into(existing, k, v);
            }
        }
        (_, value) => {
            dict.insert(key, value);
        }
    }
}

/// The configuration after validation, in the types the program uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[telegram]`, when configured.
    pub telegram: Option<TelegramConfig>,
    /// `[discord]`, when configured.
    pub discord: Option<DiscordConfig>,
    /// `[email]`, when configured.
    pub email: Option<EmailConfig>,
    pub webhooks: Vec<Webhook>,
    pub commands: Vec<NamedCommand>,
    pub workflows: Vec<loopgate_engine::workflow::Workflow>,
    /// `[model]`, unless the provider is `none`.
    pub model: Option<crate::model::ModelConfig>,
    pub listen: SocketAddr,
    pub api_token: Option<String>,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub store: StoreConfig,
    pub data_dir: PathBuf,
    pub identities: Identities,
    pub timezone: chrono_tz::Tz,
    pub quiet_hours: Option<QuietHours>,
    pub sweep_interval: Duration,
    /// How often the heartbeat pulses on its own.
    pub heartbeat_interval: Duration,
    pub intelligence: IntelSettings,
}

/// A `[[webhook]]` with its secrets read.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub name: String,
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// A `[[command]]`, ready to run.
#[derive(Debug, Clone)]
pub struct NamedCommand {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
}

/// Discord ids (snowflakes) as integers or strings: Discord's own UI and API write them
/// as strings (`"900000000000000001"`), TOML users as either.
mod snowflake {
    use serde::Deserialize;
    use serde::de::{self, Deserializer, Visitor};

    struct Snowflake;

    impl Visitor<'_> for Snowflake {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a Discord id: a positive integer, or a string of digits")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            if v == 0 { Err(E::custom("a Discord id is never 0")) } else { Ok(v) }
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{v} is not a Discord id")))?;
            self.visit_u64(v as u64)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            let digits = v.trim();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom(format!("{v:?} is not a Discord id (digits only)")));
            }
            let id = digits.parse().map_err(|_| E::custom(format!("{v:?} is too large for a Discord id")))?;
            self.visit_u64(id)
        }
    }

    #[derive(Debug)]
    struct Id(u64);

    impl<'de> Deserialize<'de> for Id {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
            d.deserialize_any(Snowflake).map(Id)
        }
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(Option::<Id>::deserialize(d)?.map(|id| id.0))
    }

    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        Ok(Vec::<Id>::deserialize(d)?.into_iter().map(|id| id.0).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopgate_policies::{ActionKind, Effect};

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("loopgate.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, text);
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(Some(&path), env).map(|(c, _)| c)
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn discord_ids_read_as_integers_or_strings() {
        let config = load(
            "[owner]\ndiscord_user_ids = [\"900000000000000042\", 43]\n\
             [discord]\ntoken_env = \"T\"\napplication_id = \"900000000000000001\"\n\
             channel_ids = [\"900000000000000007\"]\ndelivery_channel_id = 900000000000000008\n\
             allowed_user_ids = [\"900000000000000099\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.owner.discord_user_ids, [900000000000000042, 43]);
        let discord = config.discord.as_ref().unwrap();
        assert_eq!(discord.application_id, Some(900000000000000001));
        assert_eq!(discord.channel_ids, [900000000000000007]);
        assert_eq!(discord.delivery_channel_id, Some(900000000000000008));
        assert_eq!(discord.allowed_user_ids, [900000000000000099]);
        // From the environment, as a string too.
        let config =
            load("[discord]\ntoken_env = \"T\"\n", &[("LOOPGATE_DISCORD__APPLICATION_ID", "900000000000000002")])
                .unwrap();
        assert_eq!(config.discord.unwrap().application_id, Some(900000000000000002));
        // Not a snowflake: a clear error naming the key, nothing loaded.
        for bad in ["\"12a\"", "\"\"", "-5", "0"] {
            let error = load(&format!("[discord]\ntoken_env = \"T\"\napplication_id = {bad}\n"), &[]).unwrap_err();
            let text = error.to_string();
            assert!(text.contains("application_id"), "{bad}: {text}");
        }
    }

    #[test]
    fn defaults_start_without_any_file_or_token() {
        let settings = Config::default().resolve(&no_env).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(settings.store.url, "sqlite://data/loopgate.db");
        assert!(settings.api_token.is_none());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load("[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = load("[serverr]\n", &[]).unwrap_err().to_string();
        assert!(err.contains("serverr"), "{err}");
        let err = load("", &[("LOOPGATE_STORAGE__URLL", "x")]).unwrap_err().to_string();
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = load(
            "[server]\nlisten = \"127.0.0.1:1000\"\n[signals.retention]\nmessage = \"2d\"\n",
            &[
                ("LOOPGATE_SERVER__LISTEN", "127.0.0.1:2000"),
                ("LOOPGATE_SIGNALS__RETENTION__EMAIL", "5d"),
                ("LOOPGATE_OWNER__TELEGRAM_USER_IDS", "[1, 2]"),
                ("LOOPGATE_CONFIG", "ignored: not a section key"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:2000");
        assert_eq!(config.signals.retention.message.0, Duration::from_secs(2 * 86400));
        assert_eq!(config.signals.retention.email.0, Duration::from_secs(5 * 86400));
        assert_eq!(config.owner.telegram_user_ids, [1, 2]);
    }

    #[test]
    fn durations_are_strings_with_units() {
        let config = load("[server]\nshutdown_grace = \"90s\"\n", &[]).unwrap();
        assert_eq!(config.server.shutdown_grace.0, Duration::from_secs(90));
        let err = load("[server]\nshutdown_grace = \"soon\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("invalid duration \"soon\"") && err.contains("shutdown_grace"), "{err}");
        let err = load("[server]\nshutdown_grace = 90\n", &[]).unwrap_err().to_string();
        assert!(err.contains("duration string"), "{err}");
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/loopgate.toml")), Vec::new()).unwrap_err();
        assert!(matches!(err, ConfigError::Missing(_)));
    }

    #[test]
    fn public_listen_needs_a_token() {
        let mut config = Config::default();
        config.server.listen = "0.0.0.0:8787".into();
        let err = config.resolve(&no_env).unwrap_err().to_string();
        assert!(err.contains("server.api_token_env") && err.contains("0.0.0.0:8787"), "{err}");

        config.server.api_token_env = Some("MY_TOKEN".into());
        let err = config.resolve(&no_env).unwrap_err().to_string();
        assert!(err.contains("MY_TOKEN is not set"), "{err}");

        let token = |name: &str| (name == "MY_TOKEN").then(|| "0123456789abcdef0123".to_owned());
        let settings = config.resolve(&token).unwrap();
        assert_eq!(settings.api_token.as_deref(), Some("0123456789abcdef0123"));
    }

    #[test]
    fn tokens_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "fedcba9876543210fedcba\n").unwrap();
        let mut config = Config::default();
        config.server.api_token_file = Some(path);
        assert_eq!(config.resolve(&no_env).unwrap().api_token.as_deref(), Some("fedcba9876543210fedcba"));
    }

    #[test]
    fn every_problem_is_reported_with_a_fix() {
        let mut config = Config::default();
        config.server.listen = "localhost".into();
        config.owner.timezone = "Mars/Olympus".into();
        config.owner.quiet_hours = Some("late".into());
        config.storage.url = "mysql://x".into();
        config.signals.retention.message = ConfigDuration::secs(5);
        config.heartbeat.interval = ConfigDuration(Duration::from_millis(10));
        config.heartbeat.actionable_threshold = 0;
        config.suggestions.max_active = 0;
        config.policy.rules = vec![Rule { effect: Effect::Deny, kind: None, target: Some(" ".into()), min_risk: None }];
        let ConfigError::Invalid(problems) = config.resolve(&no_env).unwrap_err() else { panic!() };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "storage.url",
                "owner.timezone",
                "owner.quiet_hours",
                "signals.retention.message",
                "heartbeat.interval",
                "heartbeat.actionable_threshold",
                "policy.rules[0].target",
                "suggestions.max_active"
            ]
        );
        assert!(problems.iter().all(|p| !p.fix.is_empty()));
    }

    #[test]
    fn discord_is_checked_and_reads_its_token_from_the_environment() {
        let mut config = Config {
            discord: Some(DiscordSection {
                token_env: Some("DISCORD_TOKEN".into()),
                api_base: "discord.com".into(),
                public_key: Some("not-hex".into()),
                ..DiscordSection::default()
            }),
            ..Config::default()
        };
        let env = |name: &str| (name == "DISCORD_TOKEN").then(|| "no-dots".to_owned());
        let ConfigError::Invalid(problems) = config.resolve(&env).unwrap_err() else { panic!() };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        // Nowhere to post yet is no error: the owner may pair (`loopgate pair discord`);
        // doctor warns until someone has.
        assert_eq!(keys, ["discord.token_env", "discord.api_base", "discord.public_key"]);
        assert!(problems.iter().all(|p| !p.fix.is_empty()));

        config.owner.discord_user_ids = vec![42];
        config.discord = Some(DiscordSection {
            token_env: Some("DISCORD_TOKEN".into()),
            channel_ids: vec![7],
            allowed_user_ids: vec![99],
            public_key: Some("ab".repeat(32)),
            ..DiscordSection::default()
        });
        let env = |name: &str| (name == "DISCORD_TOKEN").then(|| "Bot MTA1.Gx.abc".to_owned());
        let settings = config.resolve(&env).unwrap();
        let discord = settings.discord.unwrap();
        assert_eq!(discord.token, "MTA1.Gx.abc", "a pasted \"Bot \" prefix is dropped");
        assert_eq!(discord.api_base, "https://discord.com");
        assert_eq!(discord.dm_user_id, Some(42));
        assert_eq!(discord.channel_ids, [7]);
        assert!(settings.identities.may_answer("discord", "99"));
        assert!(!settings.identities.is_owner("discord", "99"));
    }

    #[test]
    fn workflows_are_checked_step_by_step() {
        let text = "[[workflow]]\nname = \"bad name!\"\nsteps = [{ compose = { title = \"x\" } }]\n\
                    [[workflow]]\nname = \"both\"\nschedule = \"0 9 * * *\"\non_signal = { source = \"email\" }\nsteps = [{ compose = { title = \"x\" } }]\n\
                    [[workflow]]\nname = \"cron\"\nschedule = \"every friday\"\nsteps = [{ compose = { title = \"x\" } }]\n\
                    [[workflow]]\nname = \"order\"\nsteps = [{ deliver = { channel = \"telegram\", to = \"1\" } }, { approve = { reason = \"r\" } }]\n\
                    [[workflow]]\nname = \"empty\"\nsteps = []\n\
                    [[workflow]]\nname = \"ok\"\nschedule = \"0 16 * * 5\"\nsteps = [{ gather = { source = \"telegram\", since = \"3d\" } }, { compose = { title = \"T\" } }]\n";
        let config = load(text, &[]).unwrap();
        let ConfigError::Invalid(problems) = config.resolve(&no_env).unwrap_err() else { panic!() };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "workflow[0].name",
                "workflow[1].schedule",
                "workflow[2].schedule",
                "workflow[3].steps[0].deliver.channel",
                "workflow[3].steps[1]",
                "workflow[4].steps",
            ]
        );
        assert!(problems.iter().all(|p| !p.fix.is_empty()));
        let ok = load(&text[text.find("[[workflow]]\nname = \"ok\"").unwrap()..], &[]).unwrap();
        let settings = ok.resolve(&no_env).unwrap();
        use loopgate_engine::workflow::{Step, Trigger};
        assert_eq!(settings.workflows[0].trigger, Trigger::Schedule("0 16 * * 5".into()));
        assert_eq!(
            settings.workflows[0].steps[0],
            Step::Gather { source: Some("telegram".into()), conversation: None, since_secs: 3 * 86400 }
        );
    }

    #[test]
    fn policy_rules_are_read_checked_and_given_to_the_engine() {
        let text = "[[policy.rules]]\neffect = \"deny\"\nkind = \"command\"\n\n\
                    [[policy.rules]]\neffect = \"allow\"\nkind = \"message\"\ntarget = \"telegram:*\"\n";
        let config = load(text, &[]).unwrap();
        let settings = config.resolve(&no_env).unwrap();
        let rules = settings.intelligence.policy.rules();
        assert_eq!(rules.len(), 2);
        assert_eq!((rules[0].effect, rules[0].kind), (Effect::Deny, Some(ActionKind::Command)));
        assert_eq!(rules[1].target.as_deref(), Some("telegram:*"));

        for (bad, named) in [
            ("[[policy.rules]]\neffect = \"maybe\"\n", "maybe"),
            ("[[policy.rules]]\neffect = \"deny\"\nkind = \"shell\"\n", "shell"),
            ("[[policy.rules]]\neffect = \"deny\"\ntargets = \"x\"\n", "targets"),
            ("[[policy.rules]]\neffect = \"ask\"\nmin_risk = \"extreme\"\n", "extreme"),
        ] {
            let err = load(bad, &[]).unwrap_err().to_string();
            assert!(err.contains(named), "{bad}: {err}");
        }
    }

    #[test]
    fn webhooks_and_commands_are_named_checked_and_read_their_secrets_from_the_environment() {
        let text = "[[webhook]]\nname = \"deploy\"\nurl = \"https://ci.example.org/hook\"\n\
                    headers_env = { Authorization = \"HOOK_AUTH\" }\n\n\
                    [[command]]\nname = \"backup\"\nprogram = \"/usr/local/bin/backup\"\nargs = [\"--quick\"]\n";
        let config = load(text, &[]).unwrap();
        let env = |name: &str| (name == "HOOK_AUTH").then(|| "Bearer s3cret".to_owned());
        let settings = config.resolve(&env).unwrap();
        assert_eq!(settings.webhooks[0].headers, [("Authorization".to_owned(), "Bearer s3cret".to_owned())]);
        assert_eq!(
            (settings.webhooks[0].method.as_str(), settings.webhooks[0].timeout),
            ("POST", Duration::from_secs(10))
        );
        assert_eq!(settings.commands[0].args, ["--quick"]);

        let ConfigError::Invalid(problems) = config.resolve(&no_env).unwrap_err() else { panic!() };
        assert_eq!(problems[0].key, "webhook[0].headers_env");
        assert_eq!(problems[0].fix, "export HOOK_AUTH=<the header's value>");

        let bad = "[[webhook]]\nname = \"a\"\nurl = \"ftp://x\"\nmethod = \"DELETE\"\n\
                   [[webhook]]\nname = \"a\"\nurl = \"http://x/\"\n\
                   [[command]]\nname = \"rm\"\nprogram = \"rm\"\n";
        let ConfigError::Invalid(problems) = load(bad, &[]).unwrap().resolve(&no_env).unwrap_err() else { panic!() };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["webhook[0].url", "webhook[0].method", "webhook[1].name", "command[0].program"]);
        assert!(load("[[command]]\nname = \"x\"\nprogram = \"/bin/x\"\nshell = \"sh -c\"\n", &[]).is_err());
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/loopgate.example.toml");
        let (config, _) = Config::load(Some(&path), Vec::new()).unwrap();
        config.resolve(&no_env).unwrap();
    }
}
