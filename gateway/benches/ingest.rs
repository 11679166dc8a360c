//! Benchmark of the ingest path and the service's footprint, against the real release
//! binary on loopback:
//!
//! - start to ready: process spawn until `/readyz` answers 200 (fresh and existing database)
//! - idle resident memory of `loopgate serve`
//! - `POST /api/signals` throughput and latency with N concurrent clients, SQLite, durable
//!   commits (every 201 is sent after its commit)
//!
//! Run: `cargo bench -p loopgate --bench ingest` (options: `-- --clients 32 --seconds 10`).

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::Connection;

struct Options {
    clients: usize,
    seconds: u64,
    warmup_seconds: u64,
}

fn options() -> Options {
    let mut options = Options { clients: 32, seconds: 10, warmup_seconds: 2 };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = || args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match args[i].as_str() {
            "--clients" => options.clients = value().expect("--clients N") as usize,
            "--seconds" => options.seconds = value().expect("--seconds N"),
            "--warmup" => options.warmup_seconds = value().expect("--warmup N"),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    options
}

fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("bench.toml");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(
        file,
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nurl = \"sqlite://{d}/loopgate.db\"\ndata_dir = \"{d}/data\"\n[log]\nlevel = \"warn\"",
        d = dir.display()
    )
    .unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_loopgate"))
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start loopgate")
}

/// Polls `/readyz` over a raw socket (no client start-up cost in the figure) until 200.
fn wait_ready(port: u16, started: Instant) -> Duration {
    use std::io::Read;
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
            let mut answer = [0u8; 12];
            if stream.read_exact(&mut answer).is_ok() && &answer == b"HTTP/1.1 200" {
                return started.elapsed();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "loopgate did not become ready");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_nanos(sorted[index])
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

fn main() {
    let options = options();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);

    // Start to ready, first on an empty folder (creates and migrates the database), then
    // five restarts on the existing database.
    let started = Instant::now();
    let child = spawn(&config);
    let fresh = wait_ready(port, started);
    stop(child);
    let mut restarts = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let child = spawn(&config);
        restarts.push(wait_ready(port, started));
        stop(child);
    }
    restarts.sort();

    let started = Instant::now();
    let child = spawn(&config);
    wait_ready(port, started);
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = rss_kib(child.id());

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (latencies, acknowledged, elapsed) = runtime.block_on(load(port, &options));
    let loaded_rss = rss_kib(child.id());
    let wal_mib = std::fs::metadata(dir.path().join("loopgate.db-wal")).map_or(0.0, |m| m.len() as f64 / 1048576.0);
    let metrics = runtime.block_on(async {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    stop(child);

    let metric = |name: &str| -> f64 {
        metrics.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(f64::NAN)
    };
    let batches = metric("loopgate_store_batch_size_count");
    let mut sorted = latencies;
    sorted.sort_unstable();
    let throughput = acknowledged as f64 / elapsed.as_secs_f64();
    println!(
        "loopgate ingest benchmark ({} cores, release build)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("start to ready, new database:      {:>8.1} ms", fresh.as_secs_f64() * 1e3);
    println!("start to ready, existing database: {:>8.1} ms (median of 5)", restarts[2].as_secs_f64() * 1e3);
    println!("idle RSS:                          {:>8.1} MiB", idle_rss as f64 / 1024.0);
    println!("RSS after load:                    {:>8.1} MiB", loaded_rss as f64 / 1024.0);
    println!("WAL file after load:               {:>8.1} MiB", wal_mib);
    println!(
        "POST /api/signals, {} clients, {} s: {:.0} signals/s ({} acknowledged)",
        options.clients, options.seconds, throughput, acknowledged
    );
    println!(
        "group commit: {:.0} commits, {:.1} signals per commit on average, {:.2} ms per commit on average",
        batches,
        metric("loopgate_store_batch_size_sum") / batches,
        metric("loopgate_store_commit_seconds_sum") / metric("loopgate_store_commit_seconds_count") * 1e3,
    );
    for by in ["background", "writer"] {
        let count = metric(&format!("loopgate_store_checkpoint_seconds_count{{by=\"{by}\"}}"));
        let sum = metric(&format!("loopgate_store_checkpoint_seconds_sum{{by=\"{by}\"}}"));
        println!("wal checkpoints by the {by}: {count:.0}, {:.2} ms on average", sum / count * 1e3);
    }
    println!(
        "latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        percentile(&sorted, 0.50).as_secs_f64() * 1e3,
        percentile(&sorted, 0.90).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3,
        percentile(&sorted, 0.999).as_secs_f64() * 1e3,
        Duration::from_nanos(*sorted.last().unwrap()).as_secs_f64() * 1e3,
    );
}

/// Each client posts distinct signals back to back over one kept-alive connection. The
/// client is a minimal HTTP/1.1 writer and reader, so that (like wrk) it leaves the two
/// cores to the server as much as it can. Latency is sampled after the warm-up only.
async fn load(port: u16, options: &Options) -> (Vec<u64>, u64, Duration) {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client_id in 0..options.clients {
        let (measuring, stop, acknowledged) = (measuring.clone(), stop.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(port).await;
            let mut samples = Vec::with_capacity(64 * 1024);
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = format!(
                    r#"{{"source":"bench","kind":"message","external_id":"c{client_id}-{n}","actor":{{"id":"user-{client_id}","name":"Bench User"}},"conversation":"chat-{client_id}","text":"benchmark message {n} from client {client_id}: please review the quarterly report draft before the meeting on Friday and reply with comments","urgency":"normal"}}"#
                );
                let started = Instant::now();
                let status = connection.post_json("/api/signals", "", &body).await;
                assert_eq!(status, 201, "every signal is new");
                if measuring.load(Ordering::Relaxed) {
                    samples.push(started.elapsed().as_nanos() as u64);
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
            }
            samples
        }));
    }
    tokio::time::sleep(Duration::from_secs(options.warmup_seconds)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    (all, acknowledged.load(Ordering::Relaxed), elapsed)
}
