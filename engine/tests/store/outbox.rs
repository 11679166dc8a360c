//! The durable outbox: a send is queued once, marked started before it leaves, recorded
//! once, retried when due, and a send a crash left in doubt is settled, never blindly
//! repeated.

use chrono::Duration;
use loopgate_engine::outbox::{NewOutbound, OutboundState, Verification};
use loopgate_engine::{Clock, Retention, StoreError};
use serde_json::json;

use crate::{Db, harness};

crate::conformance!(
    a_send_is_queued_once_and_claimed_once,
    outcomes_are_recorded_once_and_retries_wait_their_turn,
    a_crash_between_send_and_record_is_settled_by_what_the_platform_can_tell,
    bad_sends_are_refused,
);

fn message(key: &str, text: &str) -> NewOutbound {
    NewOutbound { channel: "telegram".into(), dedupe_key: key.into(), payload: json!({"chat_id": 1, "text": text}) }
}

async fn a_send_is_queued_once_and_claimed_once(db: Db) {
    let h = harness(db, Retention::default()).await;
    let (first, new) = h.store.enqueue(&message("suggestion:1:r1:show", "hello")).await.unwrap();
    assert!(new);
    let (again, new) = h.store.enqueue(&message("suggestion:1:r1:show", "hello")).await.unwrap();
    assert_eq!((again, new), (first, false), "the same send queued twice is one send");
    h.store.enqueue(&message("suggestion:2:r1:show", "second")).await.unwrap();
    let other = NewOutbound { channel: "discord".into(), ..message("d:1", "elsewhere") };
    h.store.enqueue(&other).await.unwrap();

    let claimed = h.store.claim_outbound("telegram", 10).await.unwrap();
    assert_eq!(claimed.len(), 2, "only this channel's, oldest first");
    assert_eq!(claimed[0].id, first);
    assert_eq!((claimed[0].state, claimed[0].attempts), (OutboundState::Sending, 1));
    assert_eq!(claimed[0].started_at, Some(h.clock.now()));
    // Marked started in the database before anything was sent.
    assert_eq!(h.store.outbound(first).await.unwrap().unwrap().state, OutboundState::Sending);
    assert!(h.store.claim_outbound("telegram", 10).await.unwrap().is_empty(), "claimed once");
    assert_eq!(h.store.claim_outbound("discord", 10).await.unwrap().len(), 1);
}

async fn outcomes_are_recorded_once_and_retries_wait_their_turn(db: Db) {
    let h = harness(db, Retention::default()).await;
    let (id, _) = h.store.enqueue(&message("k1", "hi")).await.unwrap();
    let (failing, _) = h.store.enqueue(&message("k2", "later")).await.unwrap();
    let (doomed, _) = h.store.enqueue(&message("k3", "never")).await.unwrap();
    h.store.claim_outbound("telegram", 10).await.unwrap();

    assert!(h.store.outbound_sent(id, "msg-77").await.unwrap());
    assert!(!h.store.outbound_sent(id, "msg-78").await.unwrap(), "recorded once");
    let sent = h.store.outbound(id).await.unwrap().unwrap();
    assert_eq!((sent.state, sent.platform_ref.as_deref()), (OutboundState::Sent, Some("msg-77")));
    assert!(sent.finished_at.is_some());

    let at = h.clock.now() + Duration::seconds(30);
    assert!(h.store.outbound_retry(failing, at, "429: retry after 30 s").await.unwrap());
    assert!(h.store.outbound_failed(doomed, "400: chat not found").await.unwrap());
    assert!(!h.store.outbound_retry(doomed, at, "late").await.unwrap(), "failed stays failed");
    assert_eq!(h.store.outbound(doomed).await.unwrap().unwrap().last_error.as_deref(), Some("400: chat not found"));

    assert_eq!(h.store.next_outbound_due("telegram").await.unwrap(), Some(at));
    assert!(h.store.claim_outbound("telegram", 10).await.unwrap().is_empty(), "not due yet");
    h.clock.advance(Duration::seconds(30));
    let retried = h.store.claim_outbound("telegram", 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].id, retried[0].attempts), (failing, 2));
    assert_eq!(retried[0].last_error.as_deref(), Some("429: retry after 30 s"));
    let states: Vec<_> = h.store.outbox("telegram", &[], 10).await.unwrap().iter().map(|o| o.state).collect();
    assert_eq!(states, [OutboundState::Sent, OutboundState::Sending, OutboundState::Failed]);
    assert_eq!(h.store.next_outbound_due("telegram").await.unwrap(), None);
}

async fn a_crash_between_send_and_record_is_settled_by_what_the_platform_can_tell(db: Db) {
    let mut h = harness(db, Retention::default()).await;
    let mut ids = Vec::new();
    for key in ["a", "b", "c"] {
        ids.push(h.store.enqueue(&message(key, key)).await.unwrap().0);
    }
    h.store.claim_outbound("telegram", 10).await.unwrap();
    // The process dies with all three started and none recorded.
    h.reopen().await;

    let doubt = h.store.outbound_in_doubt("telegram").await.unwrap();
    assert_eq!(doubt.iter().map(|o| o.id).collect::<Vec<_>>(), ids);
    assert!(h.store.claim_outbound("telegram", 10).await.unwrap().is_empty(), "never claimed again by itself");

    let delivered = Verification::Delivered { platform_ref: "m-1".into() };
    assert!(h.store.settle_in_doubt(ids[0], &delivered).await.unwrap());
    assert!(h.store.settle_in_doubt(ids[1], &Verification::SafeToResend).await.unwrap());
    assert!(h.store.settle_in_doubt(ids[2], &Verification::Unknown).await.unwrap());
    assert!(!h.store.settle_in_doubt(ids[2], &Verification::SafeToResend).await.unwrap(), "settled once");

    let state = |n: usize| {
        let store = h.store.clone();
        let id = ids[n];
        async move { store.outbound(id).await.unwrap().unwrap() }
    };
    assert_eq!(state(0).await.platform_ref.as_deref(), Some("m-1"));
    assert_eq!(state(0).await.state, OutboundState::Sent);
    let uncertain = state(2).await;
    assert_eq!(uncertain.state, OutboundState::Uncertain);
    assert!(uncertain.last_error.unwrap().contains("not sent again"));
    let again = h.store.claim_outbound("telegram", 10).await.unwrap();
    assert_eq!(again.iter().map(|o| (o.id, o.attempts)).collect::<Vec<_>>(), [(ids[1], 2)], "only the safe one");
}

async fn bad_sends_are_refused(db: Db) {
    let h = harness(db, Retention::default()).await;
    for bad in [
        NewOutbound { channel: " ".into(), ..message("k", "x") },
        message("", "x"),
        message(&"k".repeat(600), "x"),
        message("k", &"x".repeat(300 * 1024)),
    ] {
        assert!(matches!(h.store.enqueue(&bad).await, Err(StoreError::InvalidOutbound(_))), "{:?}", bad.dedupe_key);
    }
    assert!(h.store.outbox("telegram", &[], 10).await.unwrap().is_empty(), "nothing was written");
}
