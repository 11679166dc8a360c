//! Pairing's contract: a code binds the first account that sends it, once, within its
//! hour, on its own channel; wrong, expired, reused and rate-limited attempts change only
//! the audit log; an owner can be removed; the backup's view of the database counts rows.

use chrono::Duration;
use loopgate_engine::pairing::{
    CODES_PER_HOUR, FAILURES_PER_ACCOUNT, PairChannel, PairingError, Redeemed, Refusal, generate_code,
};
use loopgate_engine::{Retention, Store};

use crate::{Db, conformance, harness};

conformance!(
    the_first_sender_of_a_live_code_becomes_the_owner,
    wrong_expired_and_reused_codes_change_nothing_but_the_audit_log,
    a_stranger_racing_the_owner_with_the_same_code_loses_cleanly,
    failures_are_rate_limited_per_account_and_codes_per_hour,
    a_newer_code_replaces_the_open_one_and_an_owner_can_be_removed,
    inspect_counts_rows_and_knows_the_schema,
    a_lock_ends_while_someone_keeps_knocking_and_a_new_code_lifts_the_channel_lock,
    a_code_shown_in_a_shared_chat_is_revoked,
);

const BY: (&str, &str) = ("owner", "cli");

async fn owners(store: &Store) -> Vec<(String, String)> {
    store.paired_owners().await.unwrap().into_iter().map(|o| (o.channel, o.account)).collect()
}

async fn audit_events(store: &Store) -> Vec<String> {
    store.audit_log(100).await.unwrap().into_iter().map(|e| e.event).collect()
}

async fn the_first_sender_of_a_live_code_becomes_the_owner(db: Db) {
    let h = harness(db, Retention::default()).await;
    let issued = h.store.issue_pairing_code(PairChannel::Telegram, BY).await.unwrap();
    assert_eq!(issued.expires_at, h.clock_now() + Duration::hours(1));
    // Typed in lower case with a dash, as a person might.
    let typed = format!("{}-{}", &issued.code[..4].to_lowercase(), &issued.code[4..]);
    let redeemed = h.store.redeem_pairing_code(PairChannel::Telegram, "4242", Some("Dana"), &typed).await.unwrap();
    assert_eq!(redeemed, Redeemed::Paired);
    let paired = h.store.paired_owners().await.unwrap();
    assert_eq!(paired.len(), 1);
    assert_eq!((paired[0].channel.as_str(), paired[0].account.as_str()), ("telegram", "4242"));
    assert_eq!(paired[0].name.as_deref(), Some("Dana"));
    assert_eq!(paired[0].paired_at, h.clock_now());
    // Sending it again as the owner is no refusal and no failure.
    let again = h.store.redeem_pairing_code(PairChannel::Telegram, "4242", None, &issued.code).await.unwrap();
    assert_eq!(again, Redeemed::AlreadyOwner);
    let events = audit_events(&h.store).await;
    assert!(events.contains(&"pairing.issued".to_owned()) && events.contains(&"owner.paired".to_owned()), "{events:?}");
}

async fn wrong_expired_and_reused_codes_change_nothing_but_the_audit_log(db: Db) {
    let h = harness(db, Retention::default()).await;
    let issued = h.store.issue_pairing_code(PairChannel::Telegram, BY).await.unwrap();
    let redeem = |account: &'static str, code: String| {
        let store = h.store.clone();
        async move { store.redeem_pairing_code(PairChannel::Telegram, account, None, &code).await.unwrap() }
    };
    // A guess, garbage, and the right code on the wrong channel.
    let mut wrong = generate_code();
    while wrong == issued.code {
        wrong = generate_code();
    }
    assert_eq!(redeem("1", wrong).await, Redeemed::Refused(Refusal::Unknown));
    assert_eq!(redeem("1", "not a code at all".into()).await, Redeemed::Refused(Refusal::Unknown));
    let other_channel = h.store.redeem_pairing_code(PairChannel::Discord, "1", None, &issued.code).await.unwrap();
    assert_eq!(other_channel, Redeemed::Refused(Refusal::Unknown), "a Telegram code does nothing on Discord");
    assert!(owners(&h.store).await.is_empty());

    // Past its hour.
    h.clock.advance(Duration::minutes(61));
    assert_eq!(redeem("2", issued.code.clone()).await, Redeemed::Refused(Refusal::Expired));
    assert!(owners(&h.store).await.is_empty());

    // Used once, then reused by someone else.
    let fresh = h.store.issue_pairing_code(PairChannel::Telegram, BY).await.unwrap();
    assert_eq!(redeem("3", fresh.code.clone()).await, Redeemed::Paired);
    assert_eq!(redeem("4", fresh.code.clone()).await, Redeemed::Refused(Refusal::Used));
    assert_eq!(owners(&h.store).await, [("telegram".to_owned(), "3".to_owned())]);

    let refusals: Vec<_> = h
        .store
        .audit_log(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "pairing.refused")
        .map(|e| {
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
            detail["reason"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(refusals, ["used", "expired", "unknown", "unknown", "unknown"], "newest first, each with its reason");
}

async fn a_stranger_racing_the_owner_with_the_same_code_loses_cleanly(db: Db) {
    let h = harness(db, Retention::default()).await;
    for round in 0..5 {
        let issued = h.store.issue_pairing_code(PairChannel::Discord, BY).await.unwrap();
        let (owner, stranger) = (format!("owner{round}"), format!("stranger{round}"));
        let (a, b) = tokio::join!(
            h.store.redeem_pairing_code(PairChannel::Discord, &owner, None, &issued.code),
            h.store.redeem_pairing_code(PairChannel::Discord, &stranger, None, &issued.code),
        );
        let outcomes = [a.unwrap(), b.unwrap()];
        assert_eq!(outcomes.iter().filter(|o| **o == Redeemed::Paired).count(), 1, "{outcomes:?}");
        assert!(outcomes.contains(&Redeemed::Refused(Refusal::Used)), "{outcomes:?}");
    }
    assert_eq!(owners(&h.store).await.len(), 5, "one owner per code");
}

async fn failures_are_rate_limited_per_account_and_codes_per_hour(db: Db) {
    let h = harness(db, Retention::default()).await;
    let issued = h.store.issue_pairing_code(PairChannel::Telegram, BY).await.unwrap();
    for _ in 0..FAILURES_PER_ACCOUNT {
        let outcome = h.store.redeem_pairing_code(PairChannel::Telegram, "guesser", None, "AAAAAAAA").await.unwrap();
        assert_eq!(outcome, Redeemed::Refused(Refusal::Unknown));
    }
    // Now even the right code is refused for this account, and stays unused.
    let blocked = h.store.redeem_pairing_code(PairChannel::Telegram, "guesser", None, &issued.code).await.unwrap();
    assert_eq!(blocked, Redeemed::Refused(Refusal::RateLimited));
    let owner = h.store.redeem_pairing_code(PairChannel::Telegram, "owner", None, &issued.code).await.unwrap();
    assert_eq!(owner, Redeemed::Paired, "the limit is the guesser's, not the owner's");
    // An hour later the guesser may try again.
    h.clock.advance(Duration::minutes(61));
    let later = h.store.redeem_pairing_code(PairChannel::Telegram, "guesser", None, "AAAAAAAA").await.unwrap();
    assert_eq!(later, Redeemed::Refused(Refusal::Unknown));

    // Codes per hour: CODES_PER_HOUR, then a refusal that says when.
    let h = harness(db, Retention::default()).await;
    for _ in 0..CODES_PER_HOUR {
        h.store.issue_pairing_code(PairChannel::Discord, BY).await.unwrap();
    }
    match h.store.issue_pairing_code(PairChannel::Discord, BY).await {
        Err(PairingError::TooManyCodes { retry_after, .. }) => {
            assert_eq!(retry_after, h.clock_now() + Duration::hours(1))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    h.store.issue_pairing_code(PairChannel::Telegram, BY).await.expect("the other channel has its own count");
}

async fn a_newer_code_replaces_the_open_one_and_an_owner_can_be_removed(db: Db) {
    let h = harness(db, Retention::default()).await;
    let first = h.store.issue_pairing_code(PairChannel::Telegram, BY).await.unwrap();
    let second = h.store.issue_pairing_code(PairChannel::Telegram, BY).await.unwrap();
    let stale = h.store.redeem_pairing_code(PairChannel::Telegram, "7", None, &first.code).await.unwrap();
    assert_eq!(stale, Redeemed::Refused(Refusal::Expired), "replaced by the newer code");
    assert_eq!(
        h.store.redeem_pairing_code(PairChannel::Telegram, "7", None, &second.code).await.unwrap(),
        Redeemed::Paired
    );
    assert!(!h.store.remove_owner("telegram", "8", BY).await.unwrap(), "no such owner");
    assert!(h.store.remove_owner("telegram", "7", BY).await.unwrap());
    assert!(owners(&h.store).await.is_empty());
    assert_eq!(audit_events(&h.store).await[0], "owner.removed");
}

async fn inspect_counts_rows_and_knows_the_schema(db: Db) {
    let h = harness(db, Retention::default()).await;
    let issued = h.store.issue_pairing_code(PairChannel::Telegram, BY).await.unwrap();
    h.store.redeem_pairing_code(PairChannel::Telegram, "9", None, &issued.code).await.unwrap();
    let inspection = h.store.inspect().await.unwrap();
    assert_eq!(inspection.schema_version, loopgate_engine::store::snapshot::latest_schema_version());
    assert_eq!(inspection.counts["owners"], 1);
    assert_eq!(inspection.counts["signals"], 0);
    assert!(inspection.counts["audit_log"] >= 2);
    assert!(!inspection.is_empty());
}

async fn a_lock_ends_while_someone_keeps_knocking_and_a_new_code_lifts_the_channel_lock(db: Db) {
    use loopgate_engine::pairing::FAILURES_PER_CHANNEL;
    let h = harness(db, Retention::default()).await;
    let issued = h.store.issue_pairing_code(PairChannel::Telegram, BY).await.unwrap();
    for _ in 0..FAILURES_PER_ACCOUNT {
        h.store.redeem_pairing_code(PairChannel::Telegram, "guesser", None, "AAAAAAAA").await.unwrap();
    }
    // Knocking on while locked (every ten minutes) does not keep the lock shut.
    for _ in 0..5 {
        h.clock.advance(Duration::minutes(10));
        let knock = h.store.redeem_pairing_code(PairChannel::Telegram, "guesser", None, "AAAAAAAA").await.unwrap();
        assert_eq!(knock, Redeemed::Refused(Refusal::RateLimited));
    }
    h.clock.advance(Duration::minutes(11));
    let after = h.store.redeem_pairing_code(PairChannel::Telegram, "guesser", None, "AAAAAAAA").await.unwrap();
    assert_eq!(after, Redeemed::Refused(Refusal::Unknown), "an hour after the last real guess, looked at again");
    drop(issued);

    // Many strangers lock the channel; the owner issuing a new code lifts it.
    let h = harness(db, Retention::default()).await;
    let first = h.store.issue_pairing_code(PairChannel::Telegram, BY).await.unwrap();
    for n in 0..FAILURES_PER_CHANNEL {
        h.store.redeem_pairing_code(PairChannel::Telegram, &format!("s{n}"), None, "AAAAAAAA").await.unwrap();
    }
    let locked = h.store.redeem_pairing_code(PairChannel::Telegram, "owner", None, &first.code).await.unwrap();
    assert_eq!(locked, Redeemed::Refused(Refusal::RateLimited));
    h.clock.advance(Duration::seconds(1));
    let fresh = h.store.issue_pairing_code(PairChannel::Telegram, BY).await.unwrap();
    let paired = h.store.redeem_pairing_code(PairChannel::Telegram, "owner", None, &fresh.code).await.unwrap();
    assert_eq!(paired, Redeemed::Paired);
}

async fn a_code_shown_in_a_shared_chat_is_revoked(db: Db) {
    let h = harness(db, Retention::default()).await;
    let issued = h.store.issue_pairing_code(PairChannel::Telegram, BY).await.unwrap();
    assert!(!h.store.revoke_pairing_code(PairChannel::Discord, &issued.code).await.unwrap(), "another channel's");
    assert!(h.store.revoke_pairing_code(PairChannel::Telegram, &issued.code).await.unwrap());
    assert!(!h.store.revoke_pairing_code(PairChannel::Telegram, &issued.code).await.unwrap(), "once");
    let late = h.store.redeem_pairing_code(PairChannel::Telegram, "1", None, &issued.code).await.unwrap();
    assert_eq!(late, Redeemed::Refused(Refusal::Expired));
    assert_eq!(audit_events(&h.store).await[1], "pairing.revoked");
}
