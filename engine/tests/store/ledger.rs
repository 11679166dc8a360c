//! The signal ledger's contract: exactly-once by delivery id, merging by fingerprint,
//! expiry by family, group commit under concurrency, durability across reopen.

use std::collections::HashSet;

use chrono::Duration;
use loopgate_engine::{
    Actor, Attachment, Clock, Conversation, Family, NewSignal, Retention, SignalKind, SignalQuery, Source, StoreError,
    Trust, Urgency,
};
use serde_json::json;

use crate::{Db, conformance, harness};

conformance!(
    a_new_signal_round_trips_every_field,
    a_redelivery_is_a_duplicate_and_writes_nothing,
    the_same_id_from_another_source_is_another_delivery,
    repeats_merge_into_one_signal_with_count_and_highest_urgency,
    concurrent_deliveries_all_commit_exactly_once,
    listing_filters_by_source_time_and_cursor,
    families_expire_on_their_own_schedule,
    invalid_signals_change_nothing,
    acknowledged_signals_survive_reopen_and_writes_after_close_fail,
    migrations_are_idempotent_and_reported,
    more_than_one_batch_is_committed_in_order,
);

fn message(external_id: &str, text: &str) -> NewSignal {
    let mut s = NewSignal::new(Source::parse("telegram").unwrap(), SignalKind::parse("message").unwrap(), text);
    s.external_id = Some(external_id.to_owned());
    s
}

async fn a_new_signal_round_trips_every_field(db: Db) {
    let h = harness(db, Retention::default()).await;
    let mut s = message("update-1", "Can you send me the Q3 numbers by Friday?");
    s.actor = Some(Actor { id: "4242".into(), name: Some("Dana".into()), is_owner: false });
    s.conversation = Some(Conversation {
        id: "-100200".into(),
        title: Some("Team".into()),
        thread_id: Some("7".into()),
        reply_to: Some("99".into()),
    });
    s.urgency = Urgency::High;
    s.trust = Trust::Untrusted;
    s.occurred_at = Some(h.clock.now() - Duration::minutes(3));
    s.attachments =
        vec![Attachment { name: "q3.xlsx".into(), mime: Some("application/vnd.ms-excel".into()), size: Some(2048) }];
    s.payload = Some(json!({"update_id": 1, "message": {"text": "Can you…"}}));

    let outcome = h.store.ingest(s.clone()).await.unwrap();
    assert!(!outcome.duplicate && !outcome.merged);

    let stored = h.store.get_signal(outcome.id).await.unwrap().expect("stored");
    assert_eq!(stored.source.as_str(), "telegram");
    assert_eq!(stored.kind.as_str(), "message");
    assert_eq!(stored.family, Family::Message);
    assert_eq!(stored.external_id.as_deref(), Some("update-1"));
    assert_eq!(stored.actor, s.actor);
    assert_eq!(stored.conversation, s.conversation);
    assert_eq!(stored.text, s.text);
    assert_eq!(stored.urgency, Urgency::High);
    assert_eq!(stored.trust, Trust::Untrusted);
    assert_eq!(stored.occurred_at, s.occurred_at.unwrap());
    assert_eq!(stored.attachments, s.attachments);
    assert_eq!(stored.payload, s.payload);
    assert_eq!(stored.count, 1);
    assert_eq!(stored.first_seen, h.clock.now());
    assert_eq!(stored.expires_at, h.clock.now() + Retention::default().message);
    assert_eq!(stored.fingerprint, s.fingerprint());
    assert!(h.store.get_signal(outcome.id + 1000).await.unwrap().is_none());
}

async fn a_redelivery_is_a_duplicate_and_writes_nothing(db: Db) {
    let h = harness(db, Retention::default()).await;
    let first = h.store.ingest(message("42", "hello")).await.unwrap();
    h.clock.advance(Duration::minutes(5));
    // Same delivery id, even with other text: the platform resent the same update.
    let again = h.store.ingest(message("42", "hello, edited")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    let stored = h.store.get_signal(first.id).await.unwrap().unwrap();
    assert_eq!(stored.count, 1);
    assert_eq!(stored.text, "hello");
    assert_eq!(h.store.list_signals(&SignalQuery::default()).await.unwrap().len(), 1);
}

async fn the_same_id_from_another_source_is_another_delivery(db: Db) {
    let h = harness(db, Retention::default()).await;
    let a = h.store.ingest(message("1", "hello")).await.unwrap();
    let mut other = message("1", "hello");
    other.source = Source::parse("discord").unwrap();
    let b = h.store.ingest(other).await.unwrap();
    assert!(!b.duplicate);
    assert_ne!(a.id, b.id);
}

async fn repeats_merge_into_one_signal_with_count_and_highest_urgency(db: Db) {
    let h = harness(db, Retention::default()).await;
    let first = h.store.ingest(message("a", "Disk almost full on nas")).await.unwrap();
    let before = h.store.get_signal(first.id).await.unwrap().unwrap();
    h.clock.advance(Duration::hours(1));
    let mut louder = message("b", "disk almost FULL on nas");
    louder.urgency = Urgency::Critical;
    let second = h.store.ingest(louder).await.unwrap();
    assert_eq!(second.id, first.id);
    assert!(second.merged && !second.duplicate);
    h.clock.advance(Duration::hours(1));
    let mut quieter = message("c", "Disk almost full on nas");
    quieter.urgency = Urgency::Low;
    h.store.ingest(quieter).await.unwrap();

    let merged = h.store.get_signal(first.id).await.unwrap().unwrap();
    assert_eq!(merged.count, 3);
    assert_eq!(merged.urgency, Urgency::Critical);
    assert_eq!(merged.first_seen, before.first_seen);
    assert_eq!(merged.last_seen, h.clock.now());
    assert_eq!(merged.expires_at, h.clock.now() + Retention::default().message);
    assert!(merged.seq > before.seq, "a merge moves the signal past the heartbeat's cursor");
    // Every merged delivery's id was recorded, so its redelivery is a duplicate.
    assert!(h.store.ingest(message("b", "disk almost full on nas")).await.unwrap().duplicate);
    assert_eq!(h.store.get_signal(first.id).await.unwrap().unwrap().count, 3);
}

async fn concurrent_deliveries_all_commit_exactly_once(db: Db) {
    let h = harness(db, Retention::default()).await;
    let mut tasks = Vec::new();
    for client in 0..32 {
        let store = h.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..20 {
                let distinct =
                    store.ingest(message(&format!("{client}-{n}"), &format!("note {client} {n}"))).await.unwrap();
                assert!(!distinct.duplicate && !distinct.merged);
                ids.push(distinct.id);
                // Every client also redelivers one shared update.
                store.ingest(message("shared", "the shared update")).await.unwrap();
            }
            ids
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    assert_eq!(ids.len(), 32 * 20);
    let all = h.store.list_signals(&SignalQuery { limit: 10_000, ..SignalQuery::default() }).await.unwrap();
    assert_eq!(all.len(), 32 * 20 + 1);
    let shared: Vec<_> = all.iter().filter(|s| s.text == "the shared update").collect();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].count, 1, "redeliveries of one id never count twice");
    let seqs: HashSet<i64> = all.iter().map(|s| s.seq).collect();
    assert_eq!(seqs.len(), all.len(), "seq is unique");
}

async fn listing_filters_by_source_time_and_cursor(db: Db) {
    let h = harness(db, Retention::default()).await;
    let old = h.store.ingest(message("1", "old news")).await.unwrap();
    h.clock.advance(Duration::hours(2));
    let cutoff = h.clock.now();
    let mut mail = NewSignal::new(Source::parse("email").unwrap(), SignalKind::parse("email").unwrap(), "Invoice due");
    mail.external_id = Some("<m1@example.org>".into());
    let mail = h.store.ingest(mail).await.unwrap();
    h.clock.advance(Duration::minutes(1));
    let fresh = h.store.ingest(message("2", "fresh news")).await.unwrap();

    let newest_first = h.store.list_signals(&SignalQuery::default()).await.unwrap();
    assert_eq!(newest_first.iter().map(|s| s.id).collect::<Vec<_>>(), [fresh.id, mail.id, old.id]);

    let since = h.store.list_signals(&SignalQuery { since: Some(cutoff), ..SignalQuery::default() }).await.unwrap();
    assert_eq!(since.iter().map(|s| s.id).collect::<Vec<_>>(), [fresh.id, mail.id]);

    let only_mail = SignalQuery { source: Some(Source::parse("email").unwrap()), ..SignalQuery::default() };
    let only_mail = h.store.list_signals(&only_mail).await.unwrap();
    assert_eq!(only_mail.iter().map(|s| s.id).collect::<Vec<_>>(), [mail.id]);
    assert_eq!(only_mail[0].family, Family::Email);

    let limited = h.store.list_signals(&SignalQuery { limit: 1, ..SignalQuery::default() }).await.unwrap();
    assert_eq!(limited.len(), 1);

    // A cursor reads forward; a merge brings an old signal past it again.
    let cursor = newest_first.iter().map(|s| s.seq).max().unwrap();
    let nothing_new = SignalQuery { after_seq: Some(cursor), ..SignalQuery::default() };
    assert!(h.store.list_signals(&nothing_new).await.unwrap().is_empty());
    h.store.ingest(message("3", "Old news")).await.unwrap();
    let after = h.store.list_signals(&nothing_new).await.unwrap();
    assert_eq!(after.iter().map(|s| (s.id, s.count)).collect::<Vec<_>>(), [(old.id, 2)]);
}

async fn families_expire_on_their_own_schedule(db: Db) {
    let retention = Retention {
        message: Duration::days(1),
        email: Duration::days(10),
        receipts: Duration::days(5),
        ..Retention::default()
    };
    let h = harness(db, retention).await;
    let chat = h.store.ingest(message("1", "lunch?")).await.unwrap();
    let mut mail = NewSignal::new(Source::parse("email").unwrap(), SignalKind::parse("email").unwrap(), "Contract");
    mail.external_id = Some("<c@example.org>".into());
    let mail = h.store.ingest(mail).await.unwrap();

    h.clock.advance(Duration::hours(23));
    assert_eq!(h.store.sweep().await.unwrap().signals, 0);
    h.clock.advance(Duration::hours(2));
    let report = h.store.sweep().await.unwrap();
    assert_eq!((report.signals, report.receipts), (1, 0));
    assert!(h.store.get_signal(chat.id).await.unwrap().is_none());
    assert!(h.store.get_signal(mail.id).await.unwrap().is_some());
    // The chat signal is gone but its delivery id is remembered.
    assert!(h.store.ingest(message("1", "lunch?")).await.unwrap().duplicate);

    h.clock.advance(Duration::days(5));
    let report = h.store.sweep().await.unwrap();
    assert_eq!(report.receipts, 2, "delivery ids are forgotten after their own retention");
    assert!(h.store.get_signal(mail.id).await.unwrap().is_some());
    h.clock.advance(Duration::days(5));
    assert_eq!(h.store.sweep().await.unwrap().signals, 1);
}

async fn invalid_signals_change_nothing(db: Db) {
    let h = harness(db, Retention::default()).await;
    let good = message("1", "fine");
    let bad = message("2", "   ");
    let result = h.store.ingest_many(vec![good, bad]).await;
    assert!(matches!(result, Err(StoreError::Invalid(_))), "{result:?}");
    assert!(h.store.list_signals(&SignalQuery::default()).await.unwrap().is_empty());
}

async fn acknowledged_signals_survive_reopen_and_writes_after_close_fail(db: Db) {
    let mut h = harness(db, Retention::default()).await;
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(h.store.ingest(message(&n.to_string(), &format!("note {n}"))).await.unwrap().id);
    }
    let closed = h.store.clone();
    h.reopen().await;
    assert!(matches!(closed.ingest(message("late", "too late")).await, Err(StoreError::Closed)));
    for id in &ids {
        assert!(h.store.get_signal(*id).await.unwrap().is_some());
    }
    assert!(h.store.ingest(message("7", "note 7")).await.unwrap().duplicate);
    let next = h.store.ingest(message("new", "after restart")).await.unwrap();
    assert!(!ids.contains(&next.id));
}

async fn migrations_are_idempotent_and_reported(db: Db) {
    let h = harness(db, Retention::default()).await;
    assert!(h.store.pending_migrations().await.unwrap().is_empty());
    h.store.migrate().await.unwrap();
    h.store.ping().await.unwrap();

    let blank_url = match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/blank.db", dir.path().display());
            std::mem::forget(dir);
            url
        }
        Db::Postgres => loopgate_engine::testing::fresh_postgres_database().await,
    };
    let blank = loopgate_engine::Store::connect(
        &loopgate_engine::StoreConfig::new(blank_url),
        std::sync::Arc::new(h.clock.clone()),
    )
    .await
    .unwrap();
    let pending = blank.pending_migrations().await.unwrap();
    assert_eq!(pending.first().map(|(v, _)| *v), Some(1));
    blank.migrate().await.unwrap();
    assert!(blank.pending_migrations().await.unwrap().is_empty());
    blank.close().await;
}

async fn more_than_one_batch_is_committed_in_order(db: Db) {
    let h = harness(db, Retention::default()).await;
    let n = loopgate_engine::store::MAX_BATCH * 2 + 17;
    let signals: Vec<_> = (0..n).map(|i| message(&i.to_string(), &format!("item {i}"))).collect();
    let outcomes = h.store.ingest_many(signals).await.unwrap();
    assert_eq!(outcomes.len(), n);
    assert!(outcomes.windows(2).all(|w| w[0].id < w[1].id), "ids follow delivery order");
}

/// SQLite only: after a burst and a quiet moment, the WAL is folded back and truncated, so
/// a flood of signals does not leave a large file (or an ever-growing one) behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_truncated_once_writes_go_quiet() {
    let h = harness(Db::Sqlite, Retention::default()).await;
    let wal = std::path::PathBuf::from(h.config.url.trim_start_matches("sqlite://").to_owned() + "-wal");
    let signals: Vec<_> = (0..3000).map(|i| message(&i.to_string(), &format!("burst {i}"))).collect();
    h.store.ingest_many(signals).await.unwrap();
    assert!(std::fs::metadata(&wal).unwrap().len() > 0, "the burst went through the WAL");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::metadata(&wal).map_or(0, |m| m.len()) > 0 {
        assert!(std::time::Instant::now() < deadline, "the WAL was not truncated after the burst");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(h.store.list_signals(&SignalQuery { limit: 5000, ..SignalQuery::default() }).await.unwrap().len(), 3000);
}
