//! Starting loopgate for a test: in-process through `Application` (the path `main` takes),
//! or as a child process of the built binary.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use loopgate::app::Application;
use loopgate::config::Config;
use std::sync::Arc;

use loopgate_engine::{Clock, Store, SystemClock};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "test-token-0123456789abcdef";
/// The webhook secret `TEST_TELEGRAM_SECRET` resolves to.
pub const TELEGRAM_SECRET: &str = "webhook-secret_0123456789";
/// The reply-token secret `TEST_REPLY_SECRET` resolves to.
pub const REPLY_SECRET: &str = "reply-secret-0123456789abcdef";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    pub dir: tempfile::TempDir,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_signal(&self, body: serde_json::Value) -> reqwest::Response {
        self.client.post(self.url("/api/signals")).json(&body).send().await.expect("request")
    }

    pub async fn signals(&self) -> Vec<serde_json::Value> {
        let body: serde_json::Value =
            self.client.get(self.url("/api/signals?limit=1000")).send().await.unwrap().json().await.unwrap();
        body["signals"].as_array().cloned().expect("signals array")
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        let response = self.client.get(self.url(path)).send().await.expect("request");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.expect("json body")
    }

    /// POSTs JSON and returns the status and body.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = self.client.post(self.url(path)).json(&body).send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub fn store_url(&self) -> String {
        format!("sqlite://{}/loopgate.db", self.dir.path().display())
    }

    /// Stops the server the way SIGTERM does and waits for it to finish. Returns the
    /// folder holding its database, which lives as long as the caller keeps it.
    pub async fn shutdown(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap().unwrap();
        self.dir
    }
}

/// A fresh config: loopback, port 0, SQLite in a temporary folder.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.storage.url = format!("sqlite://{}/loopgate.db", dir.display());
    config.storage.data_dir = dir.join("data");
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the app with a modified config. `api_token_env = "TEST_API_TOKEN"` resolves to
/// [`TOKEN`], and a client built here then sends it.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_in(tempfile::tempdir().expect("temp dir"), Arc::new(SystemClock), customize).await
}

/// Starts the app in `dir` (a fresh one, or one a previous app left behind) on `clock`.
pub async fn spawn_app_in(
    dir: tempfile::TempDir,
    clock: Arc<dyn Clock>,
    customize: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = test_config(dir.path());
    customize(&mut config);
    // The subscriber `main` installs, on the shipped level: spans live in its registry,
    // which is what turns a span guard held across an await into a panic.
    loopgate::telemetry::init_logging(config.log.format, &config.log.level);
    let env: HashMap<&str, &str> = HashMap::from([
        ("TEST_API_TOKEN", TOKEN),
        ("TEST_TELEGRAM_TOKEN", crate::fake_telegram::BOT_TOKEN),
        ("TEST_TELEGRAM_SECRET", TELEGRAM_SECRET),
        ("TEST_DISCORD_TOKEN", crate::fake_discord::BOT_TOKEN),
        ("TEST_REPLY_SECRET", REPLY_SECRET),
        ("TEST_MAIL_PASSWORD", crate::mail::PASSWORD),
        ("TEST_MODEL_KEY", crate::model::MODEL_KEY),
    ]);
    let settings = config.resolve(&|name| env.get(name).map(|v| v.to_string())).expect("valid test config");
    let with_token = settings.api_token.is_some();
    let app = Application::build_with_clock(settings, clock).await.expect("build app");
    let base = format!("http://{}", app.address());
    let store = app.store();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let mut headers = reqwest::header::HeaderMap::new();
    if with_token {
        headers.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    }
    let client = reqwest::Client::builder().no_proxy().default_headers(headers).build().unwrap();
    TestApp { base, client, store, stop: Some(stop), server: Some(server), dir }
}

/// A plain client without the token, for probing authorization.
pub fn anonymous_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loopgate"))
}

/// Runs the binary to completion with a config file and returns (exit code, stdout, stderr).
pub fn run_cli(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .expect("run loopgate");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Writes a TOML config for a child process into `dir`.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("loopgate.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nurl = \"sqlite://{db}/loopgate.db\"\ndata_dir = \"{db}/data\"\n{extra}",
        db = dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `loopgate serve` as a child process, with the address it bound.
pub struct ServeProcess {
    pub child: Child,
    pub base: String,
}

impl ServeProcess {
    /// Starts `loopgate serve` and waits until it logs the address it listens on.
    pub fn start(config: &Path) -> ServeProcess {
        ServeProcess::start_in(None, Some(config))
    }

    /// Starts `loopgate serve` in `cwd` (relative paths in the config count from there),
    /// with `--config` when given (else the default `config/loopgate.toml`).
    pub fn start_in(cwd: Option<&Path>, config: Option<&Path>) -> ServeProcess {
        let mut command = Command::new(binary());
        command.args(["--log-format", "json"]);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .arg("serve")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start loopgate serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent
                    && let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(address) = event["address"].as_str()
                {
                    let _ = tx.send(address.to_owned());
                    sent = true;
                }
            }
        });
        let address = rx.recv_timeout(Duration::from_secs(20)).expect("loopgate serve logged its address");
        ServeProcess { child, base: format!("http://{address}") }
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn terminate(mut self) -> i32 {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "loopgate did not stop within 20s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
