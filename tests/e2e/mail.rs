//! The real mail servers `scripts/test` starts (Dovecot for IMAP, OpenSMTPD for SMTP, on
//! loopback), used the way a person's mail client would: sending over SMTP, reading over
//! IMAP. Every test works in folders of its own (`user+folder@test.local` is delivered to
//! `folder` of `user`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use lettre::AsyncTransport;

pub const PASSWORD: &str = "secret";

/// One test at a time talks to the mail servers (one of them restarts Dovecot); nextest
/// runs the email tests as one group, and this keeps `cargo test` threads in line too.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn port(var: &str) -> u16 {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run the tests with scripts/test, which starts the mail servers"))
        .parse()
        .expect("a port")
}

pub fn imap_port() -> u16 {
    port("LOOPGATE_TEST_IMAP_PORT")
}

pub fn smtp_port() -> u16 {
    port("LOOPGATE_TEST_SMTP_PORT")
}

/// A folder name no other test (or earlier run) uses.
pub fn folder(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{name}{}x{n}x{}", std::process::id(), chrono::Utc::now().timestamp_micros() % 1_000_000_000)
}

async fn session(user: &str) -> async_imap::Session<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", imap_port())).await.expect("connect to Dovecot");
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap().expect("a greeting");
    client.login(user, PASSWORD).await.map_err(|(e, _)| e).expect("log in to Dovecot")
}

pub async fn create_folder(user: &str, folder: &str) {
    let mut s = session(user).await;
    s.create(folder).await.expect("create the folder");
    s.logout().await.ok();
}

/// Every message in `folder` of `user`, oldest first (empty when the folder does not exist).
pub async fn messages(user: &str, folder: &str) -> Vec<Vec<u8>> {
    let mut s = session(user).await;
    let Ok(selected) = s.select(folder).await else { return Vec::new() };
    if selected.exists == 0 {
        return Vec::new();
    }
    let fetched: Vec<_> = s.fetch("1:*", "(UID BODY.PEEK[])").await.unwrap().try_collect().await.unwrap();
    let mut all: Vec<(u32, Vec<u8>)> =
        fetched.iter().map(|m| (m.uid.unwrap_or(0), m.body().unwrap_or_default().to_vec())).collect();
    all.sort_by_key(|(uid, _)| *uid);
    s.logout().await.ok();
    all.into_iter().map(|(_, body)| body).collect()
}

/// Waits until `folder` of `user` holds at least `count` messages.
pub async fn wait_for_messages(user: &str, folder: &str, count: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = messages(user, folder).await;
        if found.len() >= count {
            return found;
        }
        assert!(Instant::now() < deadline, "only {} of {count} messages in {user}/{folder}", found.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `raw` (a whole RFC 5322 message) over SMTP from `from` to `to`.
pub async fn send_raw(from: &str, to: &str, raw: &str) {
    let transport =
        lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1").port(smtp_port()).build();
    let envelope = lettre::address::Envelope::new(Some(from.parse().unwrap()), vec![to.parse().unwrap()]).unwrap();
    transport.send_raw(&envelope, raw.replace('\n', "\r\n").as_bytes()).await.expect("OpenSMTPD takes the mail");
}

/// A plain-text mail.
pub fn plain(from: &str, to: &str, subject: &str, message_id: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "From: {from}\nTo: {to}\nSubject: {subject}\nDate: Mon, 23 Nov 2026 09:00:00 +0000\nMessage-ID: <{message_id}>\n{extra_headers}MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
    )
}

/// Stops and starts Dovecot (every IMAP connection drops; the mail stays).
pub fn restart_dovecot() {
    stop_dovecot();
    start_dovecot();
}

fn dovecot(args: &[&str]) -> bool {
    run("dovecot", args)
}

fn run(program: &str, args: &[&str]) -> bool {
    let conf = std::env::var("LOOPGATE_TEST_DOVECOT_CONF").expect("LOOPGATE_TEST_DOVECOT_CONF from scripts/test");
    std::process::Command::new(program)
        .args(["-c", &conf])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run dovecot")
        .success()
}

pub fn start_dovecot() {
    assert!(dovecot(&[]), "dovecot start");
}

pub fn stop_dovecot() {
    // Stopping the master leaves open IMAP sessions running: they are cut first, as a
    // server going down would.
    assert!(run("doveadm", &["kick", "*"]), "doveadm kick");
    assert!(dovecot(&["stop"]), "dovecot stop");
    // The master exits a moment after `stop` returns.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", imap_port())).is_ok() {
        assert!(Instant::now() < deadline, "Dovecot did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}
