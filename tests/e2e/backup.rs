//! Backups and moving what loopgate learned (issue 20): a backup taken while `serve`
//! ingests under load is one consistent moment; it verifies, a damaged one does not; a
//! restore replaces only what it is allowed to and keeps what it replaced; memories go out
//! as JSON or Markdown and come back with their provenance.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use loopgate_engine::{SignalQuery, Store, StoreConfig, SystemClock};
use serde_json::{Value, json};

use crate::helpers::{ServeProcess, run_cli, write_config};

async fn open(dir: &Path) -> Store {
    let url = format!("sqlite://{}/loopgate.db", dir.display());
    Store::open(&StoreConfig::new(url), Arc::new(SystemClock)).await.unwrap()
}

async fn signal_ids(store: &Store) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let query = SignalQuery { after_seq: Some(after), limit: 1000, ..SignalQuery::default() };
        let page = store.list_signals(&query).await.unwrap();
        if page.is_empty() {
            return ids;
        }
        after = page.last().unwrap().seq;
        ids.extend(page.iter().map(|s| s.id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_is_one_consistent_moment_and_restores_whole() {
    let live = tempfile::tempdir().unwrap();
    let config = write_config(live.path(), "");
    let serve = ServeProcess::start(&config);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // Ingest runs throughout: several writers, each signal acknowledged before the next.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicI64::new(0));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (client, base, stop, acknowledged) =
            (client.clone(), serve.base.clone(), stop.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let body = json!({"source": "api", "kind": "event", "external_id": format!("w{writer}-{n}"), "text": format!("event {n} from writer {writer}")});
                let response = client.post(format!("{base}/api/signals")).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 201);
                acknowledged.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        }));
    }
    while acknowledged.load(Ordering::SeqCst) < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = acknowledged.load(Ordering::SeqCst);
    let target = tempfile::tempdir().unwrap();
    let path = target.path().join("nightly");
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let (config, path) = (config.clone(), path.clone());
        move || run_cli(&config, &["backup", path.to_str().unwrap()], &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("backup written:"), "{stdout}");
    // Ingest went on during and after the backup.
    let during = acknowledged.load(Ordering::SeqCst);
    while acknowledged.load(Ordering::SeqCst) < during + 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(path.join("manifest.json")).unwrap()).unwrap();
    let in_backup = manifest["counts"]["signals"].as_i64().unwrap();
    assert!(in_backup >= before, "every signal acknowledged before the backup is in it: {in_backup} < {before}");
    let (code, stdout, stderr) = run_cli(&config, &["backup", "verify", path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("backup verified:"), "{stdout}");

    // While serve runs, restoring is refused and changes nothing.
    let (code, _, stderr) = run_cli(&config, &["restore", path.to_str().unwrap(), "--force"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("in use by another loopgate"), "{stderr}");
    assert_eq!(serve.terminate(), 0);
    let total = signal_ids(&open(live.path()).await).await.len() as i64;
    assert!(total > in_backup, "ingest went on after the backup: {total} vs {in_backup}");

    // Restored into a new place: the same rows, exactly, a prefix of the live ledger.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = write_config(elsewhere.path(), "");
    let (code, stdout, stderr) = run_cli(&other, &["restore", path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{in_backup} signals")), "{stdout}");
    let restored = signal_ids(&open(elsewhere.path()).await).await;
    let live_ids = signal_ids(&open(live.path()).await).await;
    assert_eq!(restored.len() as i64, in_backup);
    let restored_set: BTreeSet<i64> = restored.iter().copied().collect();
    let first_live: BTreeSet<i64> = live_ids.iter().copied().take(restored.len()).collect();
    assert_eq!(restored_set, first_live, "one moment: the first N signals in order, no gap, nothing from after");
    // The restored database starts: a signal goes in after the restored ones.
    let serve = ServeProcess::start(&other);
    let response = client
        .post(format!("{}/api/signals", serve.base))
        .json(&json!({"source": "api", "kind": "event", "text": "after the restore"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(serve.terminate(), 0);

    // Over a database that holds data: refused, then a dry run changes nothing, then --force
    // replaces it and keeps the old one beside it.
    let db = elsewhere.path().join("loopgate.db");
    let (code, _, stderr) = run_cli(&other, &["restore", path.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not empty") && stderr.contains("--force"), "{stderr}");
    let bytes = std::fs::read(&db).unwrap();
    let (code, stdout, stderr) = run_cli(&other, &["restore", path.to_str().unwrap(), "--dry-run", "--force"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("dry run: nothing was changed"), "{stdout}");
    assert!(stdout.contains(&format!("{} signals", in_backup + 1)), "{stdout}");
    assert_eq!(std::fs::read(&db).unwrap(), bytes, "a dry run writes nothing");
    let (code, stdout, stderr) = run_cli(&other, &["restore", path.to_str().unwrap(), "--force"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("the replaced database is kept as"), "{stdout}");
    assert_eq!(signal_ids(&open(elsewhere.path()).await).await.len() as i64, in_backup);
    let kept: Vec<_> = std::fs::read_dir(elsewhere.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("loopgate.db.before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
}

#[test]
fn a_damaged_backup_is_refused_and_restores_nothing() {
    let live = tempfile::tempdir().unwrap();
    let config = write_config(live.path(), "");
    let (code, _, stderr) = run_cli(&config, &["signal", "Call the plumber"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let target = tempfile::tempdir().unwrap();
    let path = target.path().join("b");
    let p = path.to_str().unwrap();
    assert_eq!(run_cli(&config, &["backup", p], &[]).0, 0);
    // A second backup into the same folder is refused: nothing is overwritten.
    let (code, _, stderr) = run_cli(&config, &["backup", p], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not empty"), "{stderr}");
    // One flipped byte.
    let file = path.join("loopgate.db");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let (code, _, stderr) = run_cli(&config, &["backup", "verify", p], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("does not match its manifest") && stderr.contains("damaged"), "{stderr}");
    let elsewhere = tempfile::tempdir().unwrap();
    let other = write_config(elsewhere.path(), "");
    let (code, _, stderr) = run_cli(&other, &["restore", p], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("did not verify; nothing was changed"), "{stderr}");
    assert!(!elsewhere.path().join("loopgate.db").exists());
    // Not a backup at all.
    let (code, _, stderr) = run_cli(&config, &["backup", "verify", target.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a loopgate backup"), "{stderr}");
}

#[test]
fn memories_go_out_as_json_and_markdown_and_come_back_with_their_provenance() {
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), "");
    for (kind, subject, text) in [
        ("preference", "coffee", "Ana drinks her coffee black"),
        ("constraint", "", "No meetings before 10:00"),
        ("watch_item", "invoices", "Invoices from Acme arrive on the 1st"),
    ] {
        let (code, _, stderr) = run_cli(&config, &["memory", "add", "--kind", kind, "--subject", subject, text], &[]);
        assert_eq!(code, 0, "{stderr}");
    }
    let (code, json, stderr) = run_cli(&config, &["memory", "export"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let export: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(export["format"], "loopgate-memory");
    assert_eq!(export["memories"].as_array().unwrap().len(), 3);
    // Someone else's words, learned from a channel, stay marked as such through the trip.
    let mut with_untrusted = export.clone();
    with_untrusted["memories"].as_array_mut().unwrap().push(json!({
        "kind": "watch_item", "subject": "", "content": "Bob says the deadline moved to Friday",
        "confidence": 0.8, "origin": "channel", "trust": "untrusted", "evidence": [987654]
    }));
    let file = home.path().join("memories.json");
    std::fs::write(&file, serde_json::to_string(&with_untrusted).unwrap()).unwrap();

    let elsewhere = tempfile::tempdir().unwrap();
    let other = write_config(elsewhere.path(), "");
    let (code, stdout, stderr) = run_cli(&other, &["memory", "import", file.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("imported: 4 added, 0 confirmed"), "{stdout}");
    let (_, again, _) = run_cli(&other, &["memory", "export"], &[]);
    let again: Value = serde_json::from_str(&again).unwrap();
    let shape = |v: &Value| -> BTreeSet<String> {
        v["memories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| format!("{}|{}|{}|{}|{}", m["kind"], m["subject"], m["content"], m["origin"], m["trust"]))
            .collect()
    };
    assert_eq!(shape(&again), shape(&with_untrusted), "kind, subject, words, origin and trust survive");
    let bob = again["memories"].as_array().unwrap().iter().find(|m| m["origin"] == "channel").unwrap();
    assert_eq!(bob["evidence"], json!([]), "evidence ids of another database are not carried over");
    // Importing the same file again confirms; it adds nothing.
    let (_, stdout, _) = run_cli(&other, &["memory", "import", file.to_str().unwrap()], &[]);
    assert!(stdout.starts_with("imported: 0 added, 4 confirmed"), "{stdout}");
    let (_, count, _) = run_cli(&other, &["memory", "export"], &[]);
    assert_eq!(serde_json::from_str::<Value>(&count).unwrap()["memories"].as_array().unwrap().len(), 4);

    // Markdown for reading: grouped by kind, untrusted marked.
    let (code, markdown, _) = run_cli(&other, &["memory", "export", "--format", "markdown"], &[]);
    assert_eq!(code, 0);
    assert!(markdown.starts_with("# What loopgate remembers"), "{markdown}");
    assert!(
        markdown.contains("## preference") && markdown.contains("- **coffee**: Ana drinks her coffee black"),
        "{markdown}"
    );
    assert!(markdown.contains("⚠ untrusted"), "{markdown}");

    // A bad file changes nothing, and says which entry.
    let mut bad = with_untrusted.clone();
    bad["memories"].as_array_mut().unwrap().insert(0, json!({"kind": "preference", "content": "Tea is fine"}));
    bad["memories"].as_array_mut().unwrap().push(json!({"kind": "preference", "content": "   "}));
    std::fs::write(&file, serde_json::to_string(&bad).unwrap()).unwrap();
    let (code, _, stderr) = run_cli(&other, &["memory", "import", file.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("entry 6: content is empty; nothing was imported"), "{stderr}");
    std::fs::write(&file, "{\"format\": \"something-else\", \"version\": 1, \"memories\": []}").unwrap();
    let (code, _, stderr) = run_cli(&other, &["memory", "import", file.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not a loopgate memory export"), "{stderr}");
    let (_, after, _) = run_cli(&other, &["memory", "export"], &[]);
    assert_eq!(serde_json::from_str::<Value>(&after).unwrap()["memories"].as_array().unwrap().len(), 4);
    assert!(!after.contains("Tea is fine"));
}

/// PostgreSQL: the backup is `pg_dump`'s, run by loopgate with a manifest around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_backup_is_a_verified_pg_dump_that_restores_into_an_empty_database() {
    let source = loopgate_engine::testing::fresh_postgres_database().await;
    let target = loopgate_engine::testing::fresh_postgres_database().await;
    let home = tempfile::tempdir().unwrap();
    let config_for = |name: &str, url: &str| {
        let path = home.path().join(name);
        let data = home.path().join(format!("{name}-data"));
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nurl = \"{url}\"\ndata_dir = \"{}\"\n",
                data.display()
            ),
        )
        .unwrap();
        path
    };
    let (from, to) = (config_for("from.toml", &source), config_for("to.toml", &target));
    for n in 0..5 {
        let (code, _, stderr) =
            run_cli(&from, &["signal", "--external-id", &format!("n{n}"), &format!("note {n}")], &[]);
        assert_eq!(code, 0, "{stderr}");
    }
    let (code, _, stderr) = run_cli(&from, &["memory", "add", "Ana drinks her coffee black"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let path = home.path().join("pg-backup");
    let p = path.to_str().unwrap();
    let (code, stdout, stderr) = run_cli(&from, &["backup", p], &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(path.join("loopgate.pgdump").exists());
    let (code, stdout, stderr) = run_cli(&from, &["backup", "verify", p, "--json"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let manifest: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(manifest["backend"], "postgres");
    assert_eq!(manifest["counts"]["signals"], 5);

    // Into an empty database: restored whole.
    let (code, stdout, stderr) = run_cli(&to, &["restore", p, "--json"], &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (_, exported, _) = run_cli(&to, &["memory", "export"], &[]);
    assert!(exported.contains("Ana drinks her coffee black"), "{exported}");
    let store = Store::open(&StoreConfig::new(target.clone()), Arc::new(SystemClock)).await.unwrap();
    assert_eq!(signal_ids(&store).await.len(), 5);
    store.close().await;
    // Over data: refused without --force, then replaced with it.
    let (code, _, stderr) = run_cli(&from, &["restore", p], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not empty"), "{stderr}");
    let (code, stdout, stderr) = run_cli(&from, &["signal", "one more"], &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, _, stderr) = run_cli(&from, &["restore", p, "--force"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let store = Store::open(&StoreConfig::new(source.clone()), Arc::new(SystemClock)).await.unwrap();
    assert_eq!(signal_ids(&store).await.len(), 5, "back to the backup's moment");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_replaces_a_damaged_database_only_with_force_and_keeps_it() {
    let live = tempfile::tempdir().unwrap();
    let config = write_config(live.path(), "");
    assert_eq!(run_cli(&config, &["signal", "Call the plumber"], &[]).0, 0);
    // `?` and `%` in a folder's name are only characters.
    let path = live.path().join("backups/nightly?1%20");
    let p = path.to_str().unwrap();
    let (code, _, stderr) = run_cli(&config, &["backup", p], &[]);
    assert_eq!(code, 0, "{stderr}");
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&path), 0o700, "a backup holds everything: private");
    assert_eq!(mode(&path.join("loopgate.db")), 0o600);
    assert_eq!(mode(&path.join("manifest.json")), 0o600);
    assert!(!path.join("loopgate.db.partial").exists());

    // The live database is destroyed.
    let db = live.path().join("loopgate.db");
    std::fs::write(&db, vec![0x5au8; 8192]).unwrap();
    let (code, stdout, stderr) = run_cli(&config, &["restore", p, "--dry-run"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("cannot be read") && stdout.contains("needs --force"), "{stdout}");
    let (code, _, stderr) = run_cli(&config, &["restore", p], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot be read") && stderr.contains("--force"), "{stderr}");
    let (code, stdout, stderr) = run_cli(&config, &["restore", p, "--force"], &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("1 signals") && stdout.contains("kept as"), "{stdout}");
    assert_eq!(signal_ids(&open(live.path()).await).await.len(), 1);
    // Twice in the same second: the second keeps its own copy, nothing half-done stays.
    let (code, _, stderr) = run_cli(&config, &["restore", p, "--force"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let names: Vec<String> =
        std::fs::read_dir(live.path()).unwrap().filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    let kept = names.iter().filter(|n| n.starts_with("loopgate.db.before-restore-") && !n.contains("-wal")).count();
    assert_eq!(kept, 2, "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".restoring")), "{names:?}");
}

#[test]
fn a_backup_neither_creates_nor_migrates_the_database() {
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), "");
    let target = home.path().join("b");
    let (code, _, stderr) = run_cli(&config, &["backup", target.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("there is no database at") && stderr.contains("nothing to back up"), "{stderr}");
    assert!(!home.path().join("loopgate.db").exists(), "no database was made");
    assert!(!target.exists());
    // An older schema stays as it is: the backup is restorable by the version that made it.
    assert_eq!(run_cli(&config, &["signal", "before the upgrade"], &[]).0, 0);
    let db = home.path().join("loopgate.db");
    let url = format!("sqlite://{}", db.display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)")
            .execute(&mut conn)
            .await
            .unwrap();
    });
    let (code, stdout, stderr) = run_cli(&config, &["backup", target.to_str().unwrap(), "--json"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let manifest: Value = serde_json::from_str(&stdout).unwrap();
    let latest = loopgate_engine::store::snapshot::latest_schema_version();
    assert_eq!(manifest["schema_version"], latest - 1, "the copy is of the database as it was");
    let still: i64 = rt.block_on(async {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&mut conn).await.unwrap()
    });
    assert_eq!(still, latest - 1, "the live database was not migrated");
}

#[test]
fn an_import_does_not_bring_back_what_was_forgotten_nor_take_a_misspelt_field() {
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), "");
    assert_eq!(run_cli(&config, &["memory", "add", "Watch the Q3 budget"], &[]).0, 0);
    let (_, exported, _) = run_cli(&config, &["memory", "export"], &[]);
    let file = home.path().join("m.json");
    std::fs::write(&file, &exported).unwrap();
    assert_eq!(run_cli(&config, &["memory", "forget", "1"], &[]).0, 0);
    let (code, stdout, stderr) = run_cli(&config, &["memory", "import", file.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("imported: 0 added") && stdout.contains("1 refused"), "{stdout}");
    assert!(stdout.contains("entry 1: forgotten here before; it stays forgotten"), "{stdout}");
    let (_, after, _) = run_cli(&config, &["memory", "export"], &[]);
    assert!(!after.contains("Q3 budget"), "{after}");

    let typo = json!({"format": "loopgate-memory", "version": 1, "memories": [
        {"kind": "preference", "subjet": "tea", "content": "Green tea after lunch"}
    ]});
    std::fs::write(&file, typo.to_string()).unwrap();
    let (code, _, stderr) = run_cli(&config, &["memory", "import", file.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown field `subjet`"), "{stderr}");
    // An export to a file is private and never replaces another file.
    let out = home.path().join("export.json");
    assert_eq!(run_cli(&config, &["memory", "export", "--output", out.to_str().unwrap()], &[]).0, 0);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let (code, _, stderr) = run_cli(&config, &["memory", "export", "--output", out.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("an existing file is not replaced"), "{stderr}");
}

/// A database file that is garbage or cut short is reported at start with how to restore,
/// and never recreated.
#[test]
fn a_damaged_database_at_start_is_reported_with_how_to_restore_and_left_alone() {
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), "");
    for n in 0..12 {
        let text = format!("note {n} {}", "words ".repeat(600));
        assert_eq!(run_cli(&config, &["signal", "--external-id", &format!("n{n}"), &text], &[]).0, 0);
    }
    let db = home.path().join("loopgate.db");
    let whole = std::fs::read(&db).unwrap();
    for (what, damaged) in [("garbage", vec![0x42u8; whole.len()]), ("cut short", whole[..whole.len() / 3].to_vec())] {
        std::fs::write(&db, &damaged).unwrap();
        let (code, _, stderr) = run_cli(&config, &["serve"], &[]);
        assert_eq!(code, 1, "{what}: {stderr}");
        assert!(stderr.contains("is damaged") && stderr.contains("loopgate restore PATH --force"), "{what}: {stderr}");
        assert_eq!(std::fs::read(&db).unwrap(), damaged, "{what}: the file is left as it was");
    }
}
