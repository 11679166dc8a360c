//! From download to first reminder (issue 20): `loopgate init` writes a configuration that
//! starts and secrets nobody else can read, checks tokens against the platforms, and the
//! owner becomes the owner by sending a one-time code to the bot; wrong, expired and reused
//! codes change nothing; a second `serve` on the same database is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use loopgate_engine::Clock;
use loopgate_engine::pairing::PairChannel;
use serde_json::{Value, json};

use crate::fake_telegram::{BOT_TOKEN, FakeTelegram, message_json};
use crate::helpers::{ServeProcess, binary, run_cli, spawn_app_in, write_config};
use crate::owner_day::monday_morning;
use crate::telegram::telegram_section;

/// Someone new: their Telegram id is nowhere in the configuration.
const NEWCOMER: i64 = 5555;
const STRANGER: i64 = 6666;

/// Runs the binary in `cwd` with `stdin`; (exit code, stdout, stderr).
fn run_in(cwd: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(binary())
        .current_dir(cwd)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TELEGRAM_BOT_TOKEN")
        .env_remove("DISCORD_BOT_TOKEN")
        .env_remove("LOOPGATE_EMAIL_PASSWORD")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loopgate");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The line after "send …" that init or pair printed: `/start CODE`.
fn code_in(stdout: &str, command: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{command} ")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {command} line in {stdout}"))
}

fn say(fake: &FakeTelegram, user: i64, name: &str, message_id: i64, text: &str) {
    fake.push_message(user, name, user, message_id, text);
}

/// What the bot sent to `chat`, as Telegram shows it.
fn sent_to(fake: &FakeTelegram, chat: i64) -> Vec<String> {
    fake.ok_calls("sendMessage")
        .into_iter()
        .filter(|m| m["chat_id"] == chat)
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn wait_sent(fake: &FakeTelegram, chat: i64, count: usize) -> Vec<String> {
    fake.wait_for(&format!("{count} message(s) to {chat}"), |f| {
        let sent = sent_to(f, chat);
        (sent.len() >= count).then_some(sent)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_runs_init_serve_and_pairs_then_their_first_reminder_is_acknowledged() {
    let fake = FakeTelegram::start().await;
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let args = [
        "init",
        "--non-interactive",
        "--telegram",
        "--telegram-api-url",
        &fake.url,
        "--timezone",
        "Europe/Berlin",
        "--listen",
        "127.0.0.1:0",
    ];
    let (code, stdout, stderr) = run_in(dir, &args, &[("TELEGRAM_BOT_TOKEN", BOT_TOKEN)], "");
    assert_eq!(code, 0, "{stdout}{stderr}");
    // The token was checked against the platform, and the way on is printed.
    assert!(stdout.contains("the token belongs to @loopgate_bot"), "{stdout}");
    assert!(stdout.contains("loopgate serve"), "{stdout}");
    let code = code_in(&stdout, "/start");
    assert_eq!(code.len(), 8);
    assert!(fake.calls("getMe").len() == 1, "getMe once");

    // What was written: a config naming secrets by file, the secrets readable only by us.
    let config = std::fs::read_to_string(dir.join("config/loopgate.toml")).unwrap();
    assert!(!config.contains(BOT_TOKEN), "no secret in the config:\n{config}");
    // Absolute: the configuration works from any folder (a service manager, a cron job).
    let secrets = dir.join("config/secrets");
    assert!(config.contains(&format!("token_file = \"{}/telegram_token\"", secrets.display())), "{config}");
    assert!(config.contains(&format!("api_token_file = \"{}/api_token\"", secrets.display())), "{config}");
    assert!(config.contains(&format!("url = \"sqlite://{}/data/loopgate.db\"", dir.display())), "{config}");
    assert_eq!(mode(&dir.join("data")), 0o700, "the data folder is private");
    assert_eq!(mode(&dir.join("config/secrets")), 0o700);
    for secret in ["telegram_token", "api_token"] {
        assert_eq!(mode(&dir.join("config/secrets").join(secret)), 0o600, "{secret}");
    }
    let api_token = std::fs::read_to_string(dir.join("config/secrets/api_token")).unwrap();
    assert_eq!(api_token.trim().len(), 64, "32 random bytes, hex");

    // Two commands: init, then serve (in the same folder, default paths).
    let serve = ServeProcess::start_in(Some(dir), None);
    // A stranger guesses first; nothing changes for them.
    say(&fake, STRANGER, "Mallory", 1, "/start AAAAAAAA");
    let refused = wait_sent(&fake, STRANGER, 1).await;
    assert!(refused[0].starts_with("That code is not valid"), "{refused:?}");
    // The newcomer sends the code init printed.
    say(&fake, NEWCOMER, "Ana", 2, &format!("/start {code}"));
    let paired = wait_sent(&fake, NEWCOMER, 1).await;
    assert!(paired[0].starts_with("✅ Paired: you are now the owner of this loopgate on Telegram"), "{paired:?}");
    // Their first request, alone: acknowledged at once in their private chat.
    say(&fake, NEWCOMER, "Ana", 3, "remind me in 10 minutes to stretch");
    let sent = wait_sent(&fake, NEWCOMER, 2).await;
    assert!(sent[1].starts_with("⏰ <b>") && sent[1].ends_with("(Europe/Berlin)</b>: stretch"), "{sent:?}");
    // The code is not in the ledger: a credential is not a signal's text.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let signals: Value = client
        .get(format!("{}/api/signals?limit=50", serve.base))
        .bearer_auth(api_token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let texts: Vec<&str> = signals["signals"].as_array().unwrap().iter().filter_map(|s| s["text"].as_str()).collect();
    assert!(texts.contains(&"/start [pairing code]"), "{texts:?}");
    assert!(!texts.iter().any(|t| t.contains(&code)), "{texts:?}");
    // The API asks for the token init generated.
    let anonymous = client.get(format!("{}/api/signals", serve.base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // The owner is listed, shown by doctor, and the used code does not work again.
    assert_eq!(mode(&dir.join("data/loopgate.db")), 0o600, "the database is private");
    // From another folder, with --config, the same service is found.
    let elsewhere = tempfile::tempdir().unwrap();
    let config_path = dir.join("config/loopgate.toml");
    let (status, stdout, stderr) =
        run_in(elsewhere.path(), &["--config", config_path.to_str().unwrap(), "owner", "list"], &[], "");
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.contains("5555"), "{stdout}");
    let (status, stdout, _) = run_in(dir, &["owner", "list"], &[], "");
    assert_eq!(status, 0);
    assert!(stdout.contains("telegram") && stdout.contains("5555") && stdout.contains("Ana"), "{stdout}");
    let (_, doctor, _) = run_in(dir, &["doctor"], &[], "");
    assert!(doctor.contains("owner.telegram") && doctor.contains("5555 (Ana) paired"), "{doctor}");
    say(&fake, STRANGER, "Mallory", 4, &format!("/start {code}"));
    let refused = wait_sent(&fake, STRANGER, 2).await;
    assert!(refused[1].starts_with("That code is not valid"), "{refused:?}");
    let (_, stdout, _) = run_in(dir, &["owner", "list", "--json"], &[], "");
    assert_eq!(stdout.lines().count(), 1, "still one owner: {stdout}");
    assert_eq!(serve.terminate(), 0);
}

#[test]
fn init_refuses_what_it_cannot_use_and_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let nothing_written = || !dir.join("config").exists();
    // Telegram without a token to take.
    let (code, _, stderr) = run_in(dir, &["init", "--non-interactive", "--telegram"], &[], "");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("export TELEGRAM_BOT_TOKEN=") && stderr.contains("nothing was written"), "{stderr}");
    assert!(nothing_written());
    // A timezone that is none.
    let (code, _, stderr) = run_in(dir, &["init", "--non-interactive", "--timezone", "Mars/Olympus"], &[], "");
    assert_eq!(code, 2);
    assert!(stderr.contains("Mars/Olympus") && stderr.contains("Europe/Berlin"), "{stderr}");
    assert!(nothing_written());
    // Email with an address that is none.
    let args = ["init", "--non-interactive", "--email", "not-an-address", "--owner-email", "me@example.org"];
    let (code, _, stderr) = run_in(dir, &args, &[("LOOPGATE_EMAIL_PASSWORD", "x")], "");
    assert_eq!(code, 2);
    assert!(stderr.contains("not-an-address"), "{stderr}");
    assert!(nothing_written());

    // A listen address or storage URL that cannot work, a password in a PostgreSQL URL,
    // a secrets folder others can read: refused before anything is written.
    for (flag, value, says) in [
        ("--listen", "localhost", "is not an address"),
        ("--storage-url", "mysql://db/loopgate", "sqlite://PATH or postgres://"),
        ("--storage-url", "postgres://loop:hunter2@db/loopgate", "PGPASSWORD"),
    ] {
        let (code, _, stderr) = run_in(dir, &["init", "--non-interactive", flag, value], &[], "");
        assert_eq!(code, 2, "{flag} {value}: {stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(nothing_written());
    }
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (code, _, stderr) =
        run_in(dir, &["init", "--non-interactive", "--secrets-dir", shared.to_str().unwrap()], &[], "");
    assert_eq!(code, 2);
    assert!(stderr.contains("can be read by others"), "{stderr}");
    assert_eq!(mode(&shared), 0o777, "its mode is not touched (the sticky bit stays)");
    assert_eq!(std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777, 0o1777);
    assert!(nothing_written());

    // A plain init (no channel) works; a second one does not overwrite it.
    let (code, stdout, stderr) = run_in(dir, &["init", "--non-interactive", "--timezone", "UTC"], &[], "");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let written = std::fs::read(dir.join("config/loopgate.toml")).unwrap();
    let token = std::fs::read(dir.join("config/secrets/api_token")).unwrap();
    let (code, _, stderr) = run_in(dir, &["init", "--non-interactive"], &[], "");
    assert_eq!(code, 2);
    assert!(stderr.contains("exists already") && stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(dir.join("config/loopgate.toml")).unwrap(), written);
    assert_eq!(std::fs::read(dir.join("config/secrets/api_token")).unwrap(), token, "the secret is kept");
    // Replaced on purpose: the configuration is new, the API token scripts hold stays.
    let (code, _, stderr) = run_in(dir, &["init", "--non-interactive", "--force", "--timezone", "Asia/Tokyo"], &[], "");
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read_to_string(dir.join("config/loopgate.toml")).unwrap().contains("Asia/Tokyo"));
    assert_eq!(std::fs::read(dir.join("config/secrets/api_token")).unwrap(), token, "the API token survives --force");
    let (code, _, stderr) = run_in(dir, &["--config", "config", "init", "--non-interactive"], &[], "");
    assert_eq!(code, 2);
    assert!(stderr.contains("is a folder"), "{stderr}");
    // What it wrote starts as is: doctor passes.
    let _ = written;
    let (code, doctor, _) = run_in(dir, &["doctor"], &[], "");
    assert_eq!(code, 0, "{doctor}");
    assert!(doctor.contains("no owner yet") && doctor.contains("loopgate pair telegram"), "{doctor}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_says_which_token_a_platform_refused_and_asks_at_a_prompt() {
    let fake = FakeTelegram::start().await;
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    // Interactive: timezone, Telegram yes with a mistyped token, Discord no, email no.
    let answers = "Europe/Lisbon\ny\n123456:WRONG-token\nn\nn\n";
    let args = ["init", "--telegram-api-url", &fake.url, "--listen", "127.0.0.1:0"];
    let (code, stdout, stderr) = run_in(dir, &args, &[], answers);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("Your timezone") && stdout.contains("Telegram bot token"), "{stdout}");
    assert!(
        stdout.contains("FAIL  telegram.token_env") && stdout.contains("does not accept the bot token"),
        "{stdout}"
    );
    assert!(stdout.contains("fix what failed above"), "{stdout}");
    assert!(!stdout.contains("/start "), "no pairing code for a bot that cannot be reached: {stdout}");
    let config = std::fs::read_to_string(dir.join("config/loopgate.toml")).unwrap();
    assert!(config.contains("timezone = \"Europe/Lisbon\""), "{config}");
    // Correcting the secret file is all it takes.
    std::fs::write(dir.join("config/secrets/telegram_token"), format!("{BOT_TOKEN}\n")).unwrap();
    let (code, doctor, _) = run_in(dir, &["doctor"], &[], "");
    assert_eq!(code, 0, "{doctor}");
    let (code, stdout, _) = run_in(dir, &["pair", "telegram"], &[], "");
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(code_in(&stdout, "/start").len(), 8);
    let (code, _, stderr) = run_in(dir, &["pair", "discord"], &[], "");
    assert_eq!(code, 1);
    assert!(stderr.contains("discord is not configured"), "{stderr}");
    let (code, _, stderr) = run_in(dir, &["pair", "email"], &[], "");
    assert_eq!(code, 1);
    assert!(stderr.contains("telegram or discord"), "{stderr}");
}

/// In process on a controlled clock: a paired owner is an owner everywhere at once, their
/// reminder comes at its time to their chat, and removing them from the shell is felt
/// within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paired_owner_gets_their_reminder_and_removal_from_the_shell_takes_effect() {
    let fake = FakeTelegram::start().await;
    let clock = monday_morning();
    let section = telegram_section(&fake);
    let app = spawn_app_in(tempfile::tempdir().unwrap(), Arc::new(clock.clone()), move |c| {
        c.owner.timezone = "Europe/Berlin".into();
        c.telegram = Some(section);
    })
    .await;
    let at = |m: &mut Value| m["date"] = json!(clock.now().timestamp());
    let push = |user: i64, id: i64, text: &str| {
        let mut message = message_json(user, "Ana", user, id, text);
        at(&mut message);
        fake.push("message", message);
    };
    // Before pairing, the newcomer is a stranger: their commands are refused.
    push(NEWCOMER, 1, "/suggestions");
    assert_eq!(wait_sent(&fake, NEWCOMER, 1).await[0], "Sorry — I only take commands from my owner.");
    let issued = app.store.issue_pairing_code(PairChannel::Telegram, ("owner", "cli")).await.unwrap();
    // In a group the code is not taken: everyone there would see it.
    let mut in_group = message_json(NEWCOMER, "Ana", -100, 2, &format!("/start {}", issued.code));
    at(&mut in_group);
    fake.push("message", in_group);
    let group = wait_sent(&fake, -100, 1).await;
    assert!(group[0].starts_with("Pairing works only in a private chat"), "{group:?}");
    assert!(group[0].contains("no longer works"), "{group:?}");
    // Everyone in the group saw it: sent privately now, it does nothing.
    push(NEWCOMER, 3, &format!("/start {}", issued.code.to_lowercase()));
    assert!(wait_sent(&fake, NEWCOMER, 2).await[1].starts_with("That code is not valid"));
    clock.advance(chrono::Duration::seconds(1));
    let issued = app.store.issue_pairing_code(PairChannel::Telegram, ("owner", "cli")).await.unwrap();
    push(NEWCOMER, 6, &format!("/start {}", issued.code));
    assert!(wait_sent(&fake, NEWCOMER, 3).await[2].starts_with("✅ Paired"));
    push(NEWCOMER, 4, "remind me in 1 minute to take the cake out");
    let sent = wait_sent(&fake, NEWCOMER, 4).await;
    assert_eq!(sent[3], "⏰ <b>Today 10:01 (Europe/Berlin)</b>: take the cake out");
    clock.advance(chrono::Duration::seconds(61));
    let sent = wait_sent(&fake, NEWCOMER, 5).await;
    assert!(sent[4].contains("Reminder: take the cake out"), "{sent:?}");

    // Removed from the shell (another process's write): within seconds a stranger again.
    assert!(app.store.remove_owner("telegram", &NEWCOMER.to_string(), ("owner", "cli")).await.unwrap());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    push(NEWCOMER, 5, "/suggestions");
    let sent = wait_sent(&fake, NEWCOMER, 6).await;
    assert_eq!(sent[5], "Sorry — I only take commands from my owner.");
    app.shutdown().await;
}

#[test]
fn a_second_serve_on_the_same_database_is_refused_and_version_names_the_features() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let first = ServeProcess::start(&config);
    let (code, _, stderr) = run_cli(&config, &["serve"], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is in use by another loopgate") && stderr.contains("loopgate.db"), "{stderr}");
    assert_eq!(first.terminate(), 0);
    // Once it stopped, the next one starts.
    let second = ServeProcess::start(&config);
    assert_eq!(second.terminate(), 0);

    let (code, stdout, _) = run_cli(&config, &["--version"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with(&format!("loopgate {}", env!("CARGO_PKG_VERSION"))), "{stdout}");
    assert!(stdout.contains("telegram, discord, email") && stdout.contains("sqlite, postgres"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_discord_a_code_sent_in_a_dm_or_as_a_slash_command_pairs_its_sender() {
    use crate::fake_discord::{DM_CHANNEL, FakeDiscord, message_json as dm, user_json};
    const NEWCOMER: u64 = 70_351_110_224_678_001;
    const STRANGER: u64 = 70_351_110_224_678_002;
    let fake = FakeDiscord::start().await;
    let section = crate::discord::discord_section(&fake);
    // Nobody's Discord id is configured: the owner is whoever pairs.
    let app = spawn_app_in(tempfile::tempdir().unwrap(), Arc::new(loopgate_engine::SystemClock), move |c| {
        c.discord = Some(section);
    })
    .await;
    crate::discord::ready(&fake).await;
    let replies_to = |f: &FakeDiscord, message: &str| -> Vec<String> {
        f.ok_calls("POST /channels/*/messages")
            .iter()
            .filter(|c| c.body["message_reference"]["message_id"] == message)
            .map(|c| c.body["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let reply = |id: &'static str| {
        let fake = fake.clone();
        async move { fake.wait_for(&format!("the reply to {id}"), |f| replies_to(f, id).into_iter().next()).await }
    };
    let stranger = user_json(STRANGER, "Mallory");
    let newcomer = user_json(NEWCOMER, "Nelly");
    fake.message_create(dm(3001, DM_CHANNEL, None, &stranger, "/pair AAAAAAAA"));
    assert!(reply("3001").await.starts_with("That code is not valid"));

    let issued = app.store.issue_pairing_code(PairChannel::Discord, ("owner", "cli")).await.unwrap();
    let slash = fake.slash(&newcomer, "pair", Some(("code", &issued.code)));
    let answer = fake.wait_for_callback(&slash).await;
    assert_eq!(answer["data"]["flags"], 64, "only the sender sees it");
    assert!(answer["data"]["content"].as_str().unwrap().starts_with("✅ Paired"), "{answer}");
    // Now the newcomer is the owner: a request in the DM is carried out.
    fake.message_create(dm(3002, DM_CHANNEL, None, &newcomer, "remind me in 10 minutes to stretch"));
    let ack = reply("3002").await;
    assert!(ack.starts_with("⏰ ") && ack.ends_with("stretch"), "{ack}");
    // The stranger reusing the code gets the same refusal; the code is in no signal.
    fake.message_create(dm(3003, DM_CHANNEL, None, &stranger, &format!("/pair {}", issued.code)));
    assert!(reply("3003").await.starts_with("That code is not valid"));
    let signals = app.get("/api/signals?source=discord&limit=50").await["signals"].as_array().unwrap().clone();
    let texts: Vec<&str> = signals.iter().filter_map(|s| s["text"].as_str()).collect();
    assert!(!texts.iter().any(|t| t.contains(&issued.code)), "{texts:?}");
    assert!(texts.contains(&"/pair [pairing code]"), "{texts:?}");
    assert_eq!(app.store.paired_owners().await.unwrap().len(), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_for_discord_checks_the_bot_token_and_prints_a_pair_code() {
    let fake = crate::fake_discord::FakeDiscord::start().await;
    let home = tempfile::tempdir().unwrap();
    let args = ["init", "--non-interactive", "--discord", "--discord-api-base", &fake.url, "--timezone", "UTC"];
    let (code, stdout, stderr) =
        run_in(home.path(), &args, &[("DISCORD_BOT_TOKEN", crate::fake_discord::BOT_TOKEN)], "");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok    discord") && stdout.contains("the token belongs to"), "{stdout}");
    assert!(stdout.contains("to your Discord bot in a direct message"), "{stdout}");
    assert_eq!(code_in(&stdout, "/pair").len(), 8);
    assert_eq!(fake.ok_calls("GET /users/@me").len(), 1);
    let config = std::fs::read_to_string(home.path().join("config/loopgate.toml")).unwrap();
    let token = home.path().join("config/secrets/discord_token");
    assert!(config.contains(&format!("[discord]\ntoken_file = \"{}\"", token.display())), "{config}");
    assert_eq!(mode(&home.path().join("config/secrets/discord_token")), 0o600);
    // A wrong token: named, and no code for a bot nobody can reach.
    let (code, stdout, _) =
        run_in(home.path(), &[&args[..], &["--force"]].concat(), &[("DISCORD_BOT_TOKEN", "wrong.token.value")], "");
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  discord.token_env"), "{stdout}");
    assert!(!stdout.lines().any(|l| l.trim().starts_with("/pair ")), "{stdout}");
}
