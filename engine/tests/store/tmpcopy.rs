//! TEMPORARY copy of the existing simulated-owner test with edits for replies.
use chrono::Duration;
use loopgate_engine::intelligence::Intelligence;
use loopgate_engine::suggestion::{Response, Suggestion, SuggestionState, Responder};
use loopgate_engine::{Clock, Retention};
use crate::{Db, Harness, conformance, harness};
use crate::intelligence::{question, said, settings};
conformance!(a_simulated_owner_teaches_the_ranking_and_a_changed_owner_is_heard);
fn owner() -> Responder { Responder { by: "owner".into(), via: "test".into() } }
async fn active(intel: &Intelligence) -> Vec<Suggestion> { intel.store().suggestions(&[SuggestionState::Active], 200).await.unwrap() }
fn intelligence(h: &Harness, data_dir: &std::path::Path) -> std::sync::Arc<Intelligence> { Intelligence::new(h.store.clone(), settings(data_dir)) }
/// The class a suggestion belongs to, for the simulation's owner.
fn is_reminder(s: &Suggestion) -> bool {
    s.class == "reminder"
}

/// Every round, two reminders and two unanswered questions arrive; the owner answers
/// everything shown. Returns (reminders shown, questions shown, answers, class ranked first).
async fn round(
    h: &Harness,
    intel: &Intelligence,
    n: usize,
    answer: impl Fn(&Suggestion) -> Response,
) -> (usize, usize, usize, Option<String>) {
    let now = h.clock.now();
    for k in 0..2 {
        let text = format!("remind me to water plant number {n}-{k}");
        h.store.ingest(said(&format!("r{n}-{k}"), "me", true, "notes", now, &text)).await.unwrap();
        h.store.ingest(question(&format!("q{n}-{k}"), &format!("p{n}-{k}"), now)).await.unwrap();
    }
    let rep = intel.pulse(true).await.unwrap();
    let run = intel.store().run(rep.run_id.as_deref().unwrap()).await.unwrap().unwrap();
    for c in run.body["critique"].as_array().unwrap() { if c["verdict"] != "duplicate" && c["verdict"] != "keep" { eprintln!("    drop {} {} {}", c["key"], c["verdict"], c["ranked"]); } }
    let shown = active(intel).await;
    let first = shown.first().map(|s| s.class.clone());
    let reminders = shown.iter().filter(|s| is_reminder(s)).count();
    for s in &shown {
        let r = answer(s);
        eprintln!("  [r{n}] {} -> {:?} score={:.2} {} | {}", s.title, r, s.score, s.ranking.ranked, s.key);
        intel.respond(s.id, &r, &owner()).await.unwrap();
    }
    (reminders, shown.len() - reminders, shown.len(), first)
}

async fn a_simulated_owner_teaches_the_ranking_and_a_changed_owner_is_heard(db: Db) {
    let h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let intel = intelligence(&h, dir.path());
    let dismiss_reminders = |s: &Suggestion| if is_reminder(s) { Response::Dismiss } else { Response::Act };
    let dismiss_questions = |s: &Suggestion| if is_reminder(s) { Response::Act } else { Response::Dismiss };

    // An owner who never wants reminders and always answers questions.
    let (mut answers, mut n, mut history) = (0, 0, Vec::new());
    while answers < 50 {
        let result = round(&h, &intel, n, dismiss_reminders).await;
        answers += result.2;
        history.push(result);
        n += 1;
        h.clock.advance(Duration::hours(4));
    }
    let share = |rounds: &[(usize, usize, usize, Option<String>)], reminders: bool| {
        let of_class: usize = rounds.iter().map(|r| if reminders { r.0 } else { r.1 }).sum();
        let all: usize = rounds.iter().map(|r| r.2).sum();
        of_class as f64 / all.max(1) as f64
    };
    let start = share(&history[..1], true);
    let late = share(&history[history.len() / 2..], true);
    assert!((start - 0.5).abs() < 1e-9, "both classes start even: {history:?}");
    assert!(late < start / 5.0, "dismissed reminders should fade: {start} → {late}, {history:?}");
    for r in &history[history.len() / 2..] {
        assert_eq!(r.3.as_deref(), Some("unanswered_question"), "{history:?}");
    }

    // The owner changes their mind. Old habits decay, reminders come back, questions fade.
    let (mut answers, mut history) = (0, Vec::new());
    let mut days = 0;
    while answers < 50 && days < 60 {
        let result = round(&h, &intel, n, dismiss_questions).await;
        answers += result.2;
        history.push(result);
        n += 1;
        days += 1;
        h.clock.advance(Duration::days(1));
    }
    assert!(answers >= 50, "the reversed owner got too few suggestions to answer: {history:?}");
    // Dismissed questions still come back now and then as their weight decays (that is
    // how the system would notice a third change of mind), so the share is measured over
    // the second half of the reversed owner's answers.
    let questions_before = 1.0 - late;
    let questions_after = share(&history[history.len() / 2..], false);
    assert!(questions_after < questions_before / 5.0, "{questions_before} → {questions_after}: {history:?}");
    for r in &history[history.len() - 5..] {
        assert_eq!(r.3.as_deref(), Some("reminder"), "{history:?}");
    }
}
