//! What the benchmarks share: a minimal keep-alive HTTP/1.1 client, so the load
//! generator leaves the cores to the server as much as it can (like wrk); reading options;
//! starting the release binary; percentiles.

// Each benchmark uses its own part of this.
#![allow(dead_code)]

/// One keep-alive HTTP/1.1 connection that sends a POST and reads the answer's status,
/// headers and Content-Length body.
pub struct Connection {
    stream: tokio::io::BufStream<tokio::net::TcpStream>,
    line: String,
}

impl Connection {
    pub async fn open(port: u16) -> Connection {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Connection { stream: tokio::io::BufStream::new(stream), line: String::new() }
    }

    /// POSTs `body` as JSON with `extra_headers` (each line ending in `\r\n`) and returns the status.
    pub async fn post_json(&mut self, path: &str, extra_headers: &str, body: &str) -> u16 {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n",
            body.len()
        );
        self.stream.write_all(head.as_bytes()).await.unwrap();
        self.stream.write_all(body.as_bytes()).await.unwrap();
        self.stream.flush().await.unwrap();
        self.line.clear();
        self.stream.read_line(&mut self.line).await.unwrap();
        let status: u16 = self.line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
        let mut length = 0usize;
        loop {
            self.line.clear();
            self.stream.read_line(&mut self.line).await.unwrap();
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).await.unwrap();
        status
    }
}

/// `--name value` from the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `p` quantile of sorted nanoseconds, in milliseconds.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1e6
}

/// Starts the release binary with `config` (TOML) written into `dir`, and `env`.
pub fn spawn_loopgate(dir: &std::path::Path, config: &str, env: &[(&str, &str)]) -> std::process::Child {
    let path = dir.join("bench.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_loopgate"));
    command.arg("--config").arg(&path).arg("serve").env_remove("RUST_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("start loopgate")
}

/// Waits (up to 10 s) until loopgate on `port` answers `/healthz`; a client and its base URL.
pub async fn wait_until_up(port: u16) -> (reqwest::Client, String) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "loopgate did not start");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (client, base)
}
