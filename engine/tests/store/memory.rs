//! Memory's contract: distillation applied durably, provenance kept, full-text search
//! ranked by relevance and confidence, forgetting that sticks.

use chrono::Duration;
use loopgate_engine::memory::Rejection;
use loopgate_engine::{
    Clock, MemoryCandidate, MemoryKind, MemoryQuery, Origin, RememberOutcome, Retention, StoreError, Trust,
};

use crate::{Db, conformance, harness};

conformance!(
    the_owner_adds_and_finds_a_memory,
    the_same_statement_twice_is_one_stronger_memory,
    a_new_statement_on_a_subject_replaces_the_old_one,
    weak_and_forgotten_candidates_are_rejected,
    search_ranks_by_relevance_and_confidence,
    search_filters_by_kind_and_lists_recent_without_words,
    provenance_of_untrusted_text_is_kept,
    invalid_candidates_change_nothing,
);

fn learned(kind: MemoryKind, content: &str, confidence: f64) -> MemoryCandidate {
    MemoryCandidate {
        kind,
        subject: String::new(),
        content: content.into(),
        confidence,
        origin: Origin::Reflection,
        trust: Trust::Trusted,
        evidence: vec![],
    }
}

fn memory_of(outcome: RememberOutcome) -> loopgate_engine::Memory {
    match outcome {
        RememberOutcome::Created { memory }
        | RememberOutcome::Reinforced { memory }
        | RememberOutcome::Superseded { memory } => memory,
        RememberOutcome::Rejected { reason } => panic!("rejected: {reason}"),
    }
}

fn query(text: &str) -> MemoryQuery {
    MemoryQuery { text: text.into(), kind: None, limit: 10 }
}

async fn the_owner_adds_and_finds_a_memory(db: Db) {
    let h = harness(db, Retention::default()).await;
    let outcome = h
        .store
        .remember(MemoryCandidate::from_owner(MemoryKind::Preference, "  Dentist appointments only on Fridays "))
        .await
        .unwrap();
    let RememberOutcome::Created { memory } = outcome else { panic!("{outcome:?}") };
    assert_eq!(memory.content, "Dentist appointments only on Fridays");
    assert_eq!((memory.origin, memory.trust, memory.stability), (Origin::Owner, Trust::Trusted, 1));
    assert_eq!(memory.created_at, h.clock.now());

    for text in ["dentist", "DENTIST friday", "dent", "appointments, fridays!"] {
        let hits = h.store.search_memories(&query(text)).await.unwrap();
        assert_eq!(hits.iter().map(|m| m.memory.id).collect::<Vec<_>>(), [memory.id], "{text}");
    }
    assert!(h.store.search_memories(&query("dentist mondays")).await.unwrap().is_empty(), "all words must match");
    assert_eq!(h.store.get_memory(memory.id).await.unwrap(), Some(memory));
}

async fn the_same_statement_twice_is_one_stronger_memory(db: Db) {
    let h = harness(db, Retention::default()).await;
    let mut first = learned(MemoryKind::WorkflowPattern, "Reviews pull requests before standup", 0.6);
    first.evidence = vec![1, 2];
    let created = memory_of(h.store.remember(first).await.unwrap());
    h.clock.advance(Duration::days(1));
    let mut again = learned(MemoryKind::WorkflowPattern, "reviews pull requests  before STANDUP", 0.6);
    again.evidence = vec![2, 3];
    let outcome = h.store.remember(again).await.unwrap();
    let RememberOutcome::Reinforced { memory } = outcome else { panic!("{outcome:?}") };
    assert_eq!(memory.id, created.id);
    assert_eq!(memory.stability, 2);
    assert!((memory.confidence - 0.84).abs() < 1e-9, "{}", memory.confidence);
    assert_eq!(memory.evidence, [1, 2, 3]);
    assert_eq!(memory.updated_at, h.clock.now());
    assert_eq!(memory.created_at, created.created_at);
    assert_eq!(h.store.search_memories(&query("")).await.unwrap().len(), 1);
}

async fn a_new_statement_on_a_subject_replaces_the_old_one(db: Db) {
    let h = harness(db, Retention::default()).await;
    let mut morning = learned(MemoryKind::Preference, "Prefers meetings in the morning", 0.7);
    morning.subject = "meeting-time".into();
    morning.origin = Origin::Response;
    let old = memory_of(h.store.remember(morning).await.unwrap());
    let mut afternoon = learned(MemoryKind::Preference, "Prefers meetings in the afternoon", 0.6);
    afternoon.subject = "meeting-time".into();
    afternoon.origin = Origin::Response;
    let outcome = h.store.remember(afternoon).await.unwrap();
    let RememberOutcome::Superseded { memory } = outcome else { panic!("{outcome:?}") };
    assert_eq!(memory.id, old.id);
    assert_eq!(memory.content, "Prefers meetings in the afternoon");
    assert!(h.store.search_memories(&query("morning")).await.unwrap().is_empty(), "the old wording is not found");
    assert_eq!(h.store.search_memories(&query("afternoon")).await.unwrap().len(), 1);

    // Once the owner has spoken on a subject, a guess does not overwrite it.
    let mut owner = MemoryCandidate::from_owner(MemoryKind::Preference, "Meetings only after 14:00");
    owner.subject = "meeting-time".into();
    memory_of(h.store.remember(owner).await.unwrap());
    let mut guess = learned(MemoryKind::Preference, "Prefers meetings at 9", 0.9);
    guess.subject = "meeting-time".into();
    let outcome = h.store.remember(guess).await.unwrap();
    assert_eq!(outcome, RememberOutcome::Rejected { reason: Rejection::OwnerKnowsBetter });
}

async fn weak_and_forgotten_candidates_are_rejected(db: Db) {
    let h = harness(db, Retention::default()).await;
    let outcome = h.store.remember(learned(MemoryKind::IgnoredNoise, "newsletter from shop", 0.05)).await.unwrap();
    assert_eq!(outcome, RememberOutcome::Rejected { reason: Rejection::LowConfidence });

    let memory = memory_of(h.store.remember(learned(MemoryKind::WatchItem, "Flight LH400 status", 0.8)).await.unwrap());
    assert!(h.store.forget_memory(memory.id).await.unwrap());
    assert!(!h.store.forget_memory(memory.id).await.unwrap(), "forgetting twice finds nothing");
    assert!(h.store.get_memory(memory.id).await.unwrap().is_none());
    assert!(h.store.search_memories(&query("LH400")).await.unwrap().is_empty(), "gone from the index too");

    // Reflection seeing the same evidence again does not bring it back…
    let outcome = h.store.remember(learned(MemoryKind::WatchItem, "flight lh400 status", 0.9)).await.unwrap();
    assert_eq!(outcome, RememberOutcome::Rejected { reason: Rejection::Forgotten });
    // …but the owner can.
    let back =
        h.store.remember(MemoryCandidate::from_owner(MemoryKind::WatchItem, "Flight LH400 status")).await.unwrap();
    assert!(matches!(back, RememberOutcome::Created { .. }), "{back:?}");
    let again = h.store.remember(learned(MemoryKind::WatchItem, "Flight LH400 status", 0.5)).await.unwrap();
    assert!(matches!(again, RememberOutcome::Reinforced { .. }), "{again:?}");
}

async fn search_ranks_by_relevance_and_confidence(db: Db) {
    let h = harness(db, Retention::default()).await;
    let weak =
        memory_of(h.store.remember(learned(MemoryKind::Preference, "Likes tea in the afternoon", 0.2)).await.unwrap());
    let strong =
        memory_of(h.store.remember(learned(MemoryKind::Preference, "Drinks tea every afternoon", 1.0)).await.unwrap());
    memory_of(h.store.remember(learned(MemoryKind::Preference, "Coffee before nine", 1.0)).await.unwrap());
    let hits = h.store.search_memories(&query("tea afternoon")).await.unwrap();
    assert_eq!(hits.iter().map(|m| m.memory.id).collect::<Vec<_>>(), [strong.id, weak.id]);
    assert!(hits[0].score > hits[1].score);
    let limited = h.store.search_memories(&MemoryQuery { limit: 1, ..query("tea") }).await.unwrap();
    assert_eq!(limited.len(), 1);
}

async fn search_filters_by_kind_and_lists_recent_without_words(db: Db) {
    let h = harness(db, Retention::default()).await;
    let a = memory_of(h.store.remember(learned(MemoryKind::OpenLoop, "Send Dana the contract", 0.8)).await.unwrap());
    h.clock.advance(Duration::minutes(1));
    let b = memory_of(
        h.store.remember(learned(MemoryKind::Constraint, "Never email Dana after 20:00", 0.9)).await.unwrap(),
    );
    let dana = |kind| MemoryQuery { text: "dana".into(), kind: Some(kind), limit: 10 };
    let open = h.store.search_memories(&dana(MemoryKind::OpenLoop)).await.unwrap();
    assert_eq!(open.iter().map(|m| m.memory.id).collect::<Vec<_>>(), [a.id]);
    let recent = h.store.search_memories(&query("  ")).await.unwrap();
    assert_eq!(recent.iter().map(|m| m.memory.id).collect::<Vec<_>>(), [b.id, a.id], "newest first");
    let by_kind = MemoryQuery { text: String::new(), kind: Some(MemoryKind::Constraint), limit: 10 };
    assert_eq!(h.store.search_memories(&by_kind).await.unwrap().len(), 1);
    // The kind is a filter, not searchable text.
    assert!(h.store.search_memories(&query("constraint")).await.unwrap().is_empty());
    // Query syntax typed by a person is just words.
    for odd in ["\"dana", "dana OR 1=1", "dana*", "NEAR(dana)", "dana:* | x", "'; DROP TABLE memories; --"] {
        h.store.search_memories(&query(odd)).await.unwrap();
    }
}

async fn provenance_of_untrusted_text_is_kept(db: Db) {
    let h = harness(db, Retention::default()).await;
    let mut from_chat = learned(MemoryKind::OpenLoop, "Promised Alex the slides by Monday", 0.6);
    from_chat.origin = Origin::Channel;
    from_chat.trust = Trust::Untrusted;
    from_chat.evidence = vec![41, 42];
    let memory = memory_of(h.store.remember(from_chat).await.unwrap());
    let stored = h.store.get_memory(memory.id).await.unwrap().unwrap();
    assert_eq!((stored.origin, stored.trust, stored.evidence), (Origin::Channel, Trust::Untrusted, vec![41, 42]));
}

async fn invalid_candidates_change_nothing(db: Db) {
    let h = harness(db, Retention::default()).await;
    for bad in [learned(MemoryKind::Preference, "   ", 1.0), learned(MemoryKind::Preference, "x", 2.0)] {
        assert!(matches!(h.store.remember(bad).await, Err(StoreError::InvalidMemory(_))));
    }
    assert!(h.store.search_memories(&query("")).await.unwrap().is_empty());
}

/// SQLite only: a word found in thousands of memories is not ranked match by match; the
/// newest matches come back, weighted by confidence, and only matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_common_words_return_the_newest_matches() {
    let h = harness(Db::Sqlite, Retention::default()).await;
    for n in 0..1100 {
        let kind = if n % 2 == 0 { MemoryKind::RecurringTask } else { MemoryKind::WorkflowPattern };
        h.store.remember(learned(kind, &format!("weekly sync number {n}"), 0.5)).await.unwrap();
    }
    let rare =
        memory_of(h.store.remember(learned(MemoryKind::RecurringTask, "weekly plumbing check", 0.5)).await.unwrap());
    h.store.remember(learned(MemoryKind::RecurringTask, "monthly report", 0.5)).await.unwrap();

    let hits = h.store.search_memories(&query("weekly")).await.unwrap();
    assert_eq!(hits.len(), 10);
    assert_eq!(hits[0].memory.id, rare.id, "the newest match first");
    assert!(hits.iter().all(|h| h.memory.content.starts_with("weekly")));
    assert!(hits.windows(2).all(|w| w[0].memory.id > w[1].memory.id));

    let filtered = MemoryQuery { text: "weekly".into(), kind: Some(MemoryKind::WorkflowPattern), limit: 5 };
    let hits = h.store.search_memories(&filtered).await.unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.memory.kind == MemoryKind::WorkflowPattern));

    // A rare word next to the common one is ranked as usual.
    let hits = h.store.search_memories(&query("weekly plumbing")).await.unwrap();
    assert_eq!(hits.iter().map(|h| h.memory.id).collect::<Vec<_>>(), [rare.id]);
}
