//! Learning that follows its owner, on both backends: simulated owners (by person, by
//! class, by time of day, inconsistent) must see what they want and little else within 50
//! answers, and again within 50 answers after they change their mind; a dismissal teaches
//! about that person, not about everyone using the same words; a decided suggestion never
//! blocks a new question; every ranking says why, and a learned key can be reset.

use chrono::Duration;
use loopgate_engine::intelligence::Intelligence;
use loopgate_engine::learning::Dimension;
use loopgate_engine::suggestion::{Responder, Response, Suggestion, SuggestionState, edited_action};
use loopgate_engine::{Actor, Clock, Conversation, NewSignal, Retention, SignalKind, Source};

use crate::owner_sim::{self, Persona};
use crate::{Db, conformance, harness};

conformance!(
    an_owner_who_decides_by_person_is_followed_and_heard_when_they_change_their_mind,
    an_owner_who_decides_by_class_is_followed_and_heard_when_they_change_their_mind,
    an_owner_who_decides_by_time_of_day_is_followed_and_heard_when_they_change_their_mind,
    an_inconsistent_owner_is_followed_all_the_same,
    a_dismissed_sender_does_not_silence_others_in_the_same_words_and_the_ranking_says_why,
    a_decided_suggestion_never_blocks_a_new_question,
    learned_keys_show_their_evidence_and_a_reset_is_audited,
);

/// The targets of issue 17: precision and recall of at least 0.8 over the last rounds,
/// within 50 answers, and again within 50 answers after a reversal.
const TARGET: f64 = 0.8;

async fn persona(db: Db, persona: Persona) {
    let h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let report = owner_sim::run(persona, &h.store, &h.clock, dir.path()).await;
    for (phase, p) in report.phases.iter().enumerate() {
        assert!(p.answers >= owner_sim::ANSWERS_PER_PHASE, "{}: phase {phase} ran dry: {report:?}", persona.name());
        assert!(
            p.precision >= TARGET && p.recall >= TARGET,
            "{} phase {phase}: precision {:.2}, recall {:.2}: {report:#?}",
            persona.name(),
            p.precision,
            p.recall
        );
    }
    // Never learned into silence: what a key held back was still shown now and then.
    assert!(report.phases.iter().map(|p| p.explored).sum::<usize>() > 0, "{report:#?}");
    assert!(report.explanations.iter().all(|line| line.contains(" — ") && !line.ends_with(" — ")), "{report:#?}");
}

async fn an_owner_who_decides_by_person_is_followed_and_heard_when_they_change_their_mind(db: Db) {
    persona(db, Persona::ByPerson).await
}

async fn an_owner_who_decides_by_class_is_followed_and_heard_when_they_change_their_mind(db: Db) {
    persona(db, Persona::ByClass).await
}

async fn an_owner_who_decides_by_time_of_day_is_followed_and_heard_when_they_change_their_mind(db: Db) {
    persona(db, Persona::ByHour).await
}

async fn an_inconsistent_owner_is_followed_all_the_same(db: Db) {
    persona(db, Persona::Noisy).await
}

fn mail(id: &str, from: &str, at: chrono::DateTime<chrono::Utc>, text: &str) -> NewSignal {
    let mut signal = NewSignal::new(Source::parse("email").unwrap(), SignalKind::parse("email").unwrap(), text);
    signal.external_id = Some(id.into());
    signal.actor = Some(Actor { id: from.into(), name: Some(from.into()), is_owner: false });
    signal.conversation = Some(Conversation { id: from.into(), title: None, thread_id: None, reply_to: None });
    signal.occurred_at = Some(at);
    signal
}

fn owner() -> Responder {
    Responder { by: "owner".into(), via: "test".into() }
}

async fn active(intel: &Intelligence) -> Vec<Suggestion> {
    intel.store().suggestions(&[SuggestionState::Active], 200).await.unwrap()
}

fn reply() -> impl Fn(&Suggestion) -> Response {
    |s: &Suggestion| Response::Edit { action: edited_action(&s.action, &"Will do.".into()).unwrap() }
}

async fn a_dismissed_sender_does_not_silence_others_in_the_same_words_and_the_ranking_says_why(db: Db) {
    let h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let intel = Intelligence::new(h.store.clone(), owner_sim::settings(dir.path()));
    let words = ["Could you review the proposal draft by Thursday?", "Can you send me the updated numbers?"];
    let mut last_run = String::new();
    for (round, text) in words.iter().cycle().take(4).enumerate() {
        let asked = h.clock.now() - Duration::hours(3);
        for who in ["ana@example.org", "vendor@example.com"] {
            h.store.ingest(mail(&format!("{round}-{who}"), who, asked, text)).await.unwrap();
        }
        let report = intel.pulse(true).await.unwrap();
        last_run = report.run_id.unwrap();
        for s in active(&intel).await {
            let from_vendor = s.evidence[0].summary.starts_with("vendor@");
            let answer = if from_vendor { Response::Dismiss } else { reply()(&s) };
            intel.respond(s.id, &answer, &owner()).await.unwrap();
        }
        h.clock.advance(Duration::hours(6));
    }
    // The same words again from both, and from someone new.
    let asked = h.clock.now() - Duration::hours(3);
    for who in ["ana@example.org", "vendor@example.com", "cem@example.org"] {
        h.store.ingest(mail(&format!("last-{who}"), who, asked, words[0])).await.unwrap();
    }
    let report = intel.pulse(true).await.unwrap();
    let shown = active(&intel).await;
    let from = |s: &Suggestion| s.evidence[0].summary.split(' ').next().unwrap().to_owned();
    let mut senders: Vec<String> = shown.iter().map(from).collect();
    senders.sort();
    assert_eq!(senders, ["ana@example.org", "cem@example.org"], "{shown:#?}");
    let ana = shown.iter().find(|s| from(s) == "ana@example.org").unwrap();
    assert!(ana.ranking.ranked.starts_with("ranked up: you acted on"), "{}", ana.ranking.ranked);
    let json = serde_json::to_value(ana).unwrap();
    assert_eq!(json["ranked"], ana.ranking.ranked.as_str(), "the suggestion carries its why");
    assert_eq!(json["ranking"]["features"]["actor"], "email:ana@example.org");
    assert!(ana.score > shown.iter().find(|s| from(s) == "cem@example.org").unwrap().score, "ana ranks first");

    // The critique explains the drop: held back by that sender, not by the words.
    let run = h.store.run(report.run_id.as_deref().unwrap()).await.unwrap().unwrap();
    let critique = run.body["critique"].as_array().unwrap();
    let held: Vec<_> = critique.iter().filter(|c| c["verdict"] == "unwanted").collect();
    assert_eq!(held.len(), 1, "{critique:#?}");
    assert_eq!(held[0]["held_by"]["dimension"], "actor");
    assert_eq!(held[0]["held_by"]["key"], "email:vendor@example.com");
    assert!(held[0]["ranked"].as_str().unwrap().starts_with("held back: you dismissed"), "{}", held[0]);
    assert_ne!(last_run, run.record.run_id);
}

async fn a_decided_suggestion_never_blocks_a_new_question(db: Db) {
    let h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let intel = Intelligence::new(h.store.clone(), owner_sim::settings(dir.path()));
    let asked = h.clock.now() - Duration::hours(3);
    h.store.ingest(mail("1", "ana@example.org", asked, "Can you send the slides?")).await.unwrap();
    intel.pulse(true).await.unwrap();
    let first = active(&intel).await.pop().unwrap();
    intel.respond(first.id, &reply()(&first), &owner()).await.unwrap();

    // Thought about again: the answered one is decided, not a duplicate, and not raised.
    h.clock.advance(Duration::minutes(30));
    let report = intel.pulse(true).await.unwrap();
    assert!(report.created.is_empty(), "{report:?}");
    let run = h.store.run(report.run_id.as_deref().unwrap()).await.unwrap().unwrap();
    assert_eq!(run.body["critique"][0]["verdict"], "decided", "{}", run.body["critique"]);
    assert_eq!(run.body["critique"][0]["state"], "edited");

    // Ana asks the same again: the ledger merges it into her first signal, and it is a new
    // question all the same.
    h.clock.advance(Duration::hours(1));
    let again = h.store.ingest(mail("2", "ana@example.org", h.clock.now(), "Can you send the slides?")).await.unwrap();
    assert!(again.merged, "{again:?}");
    let report = intel.pulse(true).await.unwrap();
    assert_eq!(report.created.len(), 1, "{report:?}");
    let second = h.store.suggestion(report.created[0]).await.unwrap().unwrap();
    assert_eq!(second.key, format!("{}@2", first.key));

    // A live one is a duplicate: snoozed, it still is.
    let until = h.clock.now() + Duration::hours(2);
    intel.respond(second.id, &Response::Snooze { until }, &owner()).await.unwrap();
    h.clock.advance(Duration::minutes(30));
    let report = intel.pulse(true).await.unwrap();
    let run = h.store.run(report.run_id.as_deref().unwrap()).await.unwrap().unwrap();
    assert_eq!(run.body["critique"][0]["verdict"], "duplicate", "{}", run.body["critique"]);
}

async fn learned_keys_show_their_evidence_and_a_reset_is_audited(db: Db) {
    let h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let intel = Intelligence::new(h.store.clone(), owner_sim::settings(dir.path()));
    let asked = h.clock.now() - Duration::hours(3);
    for who in ["vendor@example.com", "ana@example.org", "ben@example.org"] {
        h.store.ingest(mail(who, who, asked, "Can you check the invoice?")).await.unwrap();
    }
    intel.pulse(true).await.unwrap();
    let shown = active(&intel).await;
    assert_eq!(shown.len(), 3);
    assert!(shown.iter().all(|s| s.ranking.ranked == "as found: nothing learned about it yet"), "{shown:#?}");
    for s in shown {
        let answer = if s.evidence[0].summary.starts_with("vendor@") { Response::Dismiss } else { reply()(&s) };
        intel.respond(s.id, &answer, &owner()).await.unwrap();
    }

    let weights = h.store.weights().await.unwrap();
    let actor = |key: &str| weights.iter().find(|w| w.dimension == Dimension::Actor && w.key == key).unwrap();
    let vendor = actor("email:vendor@example.com");
    assert_eq!((vendor.recent.as_str(), vendor.answers, vendor.acted, vendor.dismissed), ("d", 1, 0.0, 1.0));
    assert!(vendor.value(h.clock.now()) < 0.0);
    assert_eq!(actor("email:ana@example.org").recent, "e", "an edit is an act with other words");
    for dimension in [Dimension::Class, Dimension::Source, Dimension::Hour, Dimension::Words, Dimension::Overall] {
        assert!(weights.iter().any(|w| w.dimension == dimension), "{dimension:?} learned: {weights:#?}");
    }
    let class = weights.iter().find(|w| w.dimension == Dimension::Class).unwrap();
    assert_eq!((class.key.as_str(), class.answers), ("unanswered_question", 3));

    // What the owner sees: per dimension, strongest first, each with its evidence.
    let overview = h.store.learning(None, 50).await.unwrap();
    assert_eq!(overview.answers, 3);
    // Two acts in three, the latest weighing a little more: about 0.6.
    assert!((overview.overall - 0.6).abs() < 0.02, "{overview:#?}");
    let people = &overview.dimensions["actor"];
    assert_eq!(people[0].key, "email:vendor@example.com");
    assert_eq!(people[0].says, "you dismissed 1 of this sender's last 1");
    assert!(people[0].lean < 0.0 && people[1].lean > 0.0, "{people:#?}");
    assert!(!overview.dimensions.contains_key("overall"), "the overall rate is shown once, on top");
    let only = h.store.learning(Some(Dimension::Actor), 1).await.unwrap();
    assert_eq!(only.dimensions.keys().copied().collect::<Vec<_>>(), ["actor"]);
    assert_eq!(only.dimensions["actor"].len(), 1);

    // The owner resets what was learned about the vendor: gone, and on record.
    let by = Responder { by: "owner".into(), via: "api".into() };
    assert!(h.store.reset_learning("actor", "email:vendor@example.com", &by).await.unwrap());
    assert!(!h.store.reset_learning("actor", "email:vendor@example.com", &by).await.unwrap(), "nothing left");
    let weights = h.store.weights().await.unwrap();
    assert!(!weights.iter().any(|w| w.key == "email:vendor@example.com"), "{weights:#?}");
    assert!(weights.iter().any(|w| w.key == "email:ana@example.org"), "only that key is forgotten");
    let audit = h.store.audit_log(10).await.unwrap();
    let entry = audit.iter().find(|e| e.event == "learning.reset").expect("the reset is audited");
    assert_eq!(entry.subject, "learning:actor:email:vendor@example.com");
    assert_eq!((entry.actor.as_str(), entry.via.as_str()), ("owner", "api"));
}
