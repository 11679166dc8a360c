//! Workflow intelligence on both backends: suggestions through their lifecycle, racing
//! answers, and a simulated owner whose answers must visibly change what is suggested.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use loopgate_engine::heartbeat::Rules;
use loopgate_engine::intelligence::{Intelligence, Settings};
use loopgate_engine::suggestion::{Claimant, RespondError, Responder, Response, Suggestion, SuggestionState};
use loopgate_engine::{Actor, Clock, Conversation, NewSignal, Retention, SignalKind, Source};

use crate::{Db, Harness, conformance, harness};

conformance!(
    suggestions_live_through_answers_upkeep_and_restarts,
    of_many_simultaneous_answers_exactly_one_wins,
    a_simulated_owner_teaches_the_ranking_and_a_changed_owner_is_heard,
    only_the_owner_and_allowed_accounts_answer_from_a_channel,
    a_flood_from_one_source_does_not_hide_a_trickle_of_questions,
);

pub fn settings(data_dir: &std::path::Path) -> Settings {
    let rules = Rules {
        cooldown: Duration::minutes(30),
        cooldown_after_failure: Duration::minutes(5),
        daily_budget: 100,
        actionable_threshold: 3,
        timezone: chrono_tz::UTC,
        quiet_hours: None,
    };
    Settings::new(rules, data_dir.to_path_buf())
}

fn intelligence(h: &Harness, data_dir: &std::path::Path) -> Arc<Intelligence> {
    Intelligence::new(h.store.clone(), settings(data_dir))
}

pub fn said(id: &str, who: &str, is_owner: bool, chat: &str, at: DateTime<Utc>, text: &str) -> NewSignal {
    let mut signal = NewSignal::new(Source::parse("telegram").unwrap(), SignalKind::parse("message").unwrap(), text);
    signal.external_id = Some(id.into());
    signal.actor = Some(Actor { id: who.into(), name: Some(who.into()), is_owner });
    signal.conversation = Some(Conversation { id: chat.into(), title: None, thread_id: None, reply_to: None });
    signal.occurred_at = Some(at);
    signal
}

pub fn question(id: &str, who: &str, at: DateTime<Utc>) -> NewSignal {
    said(id, who, false, who, at - Duration::hours(3), "could you check the numbers?")
}

fn owner() -> Responder {
    Responder { by: "owner".into(), via: "test".into() }
}

async fn active(intel: &Intelligence) -> Vec<Suggestion> {
    intel.store().suggestions(&[SuggestionState::Active], 200).await.unwrap()
}

async fn suggestions_live_through_answers_upkeep_and_restarts(db: Db) {
    let mut h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let intel = intelligence(&h, dir.path());
    let now = h.clock.now();
    for (n, who) in ["ana", "ben", "cem"].iter().enumerate() {
        h.store.ingest(question(&format!("q{n}"), who, now)).await.unwrap();
    }
    h.store.ingest(said("r", "me", true, "notes", now, "remind me to stretch in 2 hours")).await.unwrap();
    let report = intel.pulse(false).await.unwrap();
    assert_eq!(report.created.len(), 4, "{report:?}");
    let list = active(&intel).await;
    assert_eq!(list.len(), 3);
    let scheduled = h.store.suggestions(&[SuggestionState::Scheduled], 10).await.unwrap();
    assert_eq!(scheduled[0].title, "Reminder: stretch");

    let [a, b, c] = [list[0].id, list[1].id, list[2].id];
    let acted = intel.respond(a, &Response::Act, &owner()).await.unwrap();
    assert_eq!(acted.suggestion.state, SuggestionState::Acted);
    assert!(acted.memory_id.is_some());
    match intel.respond(a, &Response::Dismiss, &owner()).await {
        Err(RespondError::AlreadyDecided { state: SuggestionState::Acted, decision: Some(d), .. }) => {
            assert_eq!((d.by.as_str(), d.via.as_str()), ("owner", "test"));
        }
        other => panic!("{other:?}"),
    }
    let until = now + Duration::hours(1);
    intel.respond(b, &Response::Snooze { until }, &owner()).await.unwrap();
    let edit = Response::Edit { action: serde_json::json!({"kind": "note", "text": "checked"}) };
    assert_eq!(intel.respond(c, &edit, &owner()).await.unwrap().suggestion.state, SuggestionState::Edited);
    h.store.record_surface(b, "discord", "m/1").await.unwrap();
    h.store.record_surface(b, "discord", "m/1").await.unwrap();

    // A restart keeps everything; the snoozed one and the reminder come back when due.
    h.reopen().await;
    let intel = intelligence(&h, dir.path());
    h.clock.advance(Duration::hours(2));
    let report = intel.pulse(false).await.unwrap();
    assert_eq!(report.upkeep.came_due.len(), 2, "{report:?}");
    let back = intel.store().suggestion(b).await.unwrap().unwrap();
    assert_eq!(back.state, SuggestionState::Active);
    assert_eq!(back.surfaces.len(), 1, "one surface, recorded twice");
    assert_eq!(back.revision, 3, "created, snoozed, back");

    // Channels see every change in order, each from its own cursor, which never moves back.
    let events = h.store.deliveries("discord", 100).await.unwrap();
    let kinds: Vec<_> = events.iter().filter(|e| e.suggestion.id == b).map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["show", "decided", "show"]);
    let last = events.last().unwrap().id;
    h.store.ack_deliveries("discord", last).await.unwrap();
    h.store.ack_deliveries("discord", 1).await.unwrap();
    assert!(h.store.deliveries("discord", 100).await.unwrap().is_empty());

    let status = intel.status().await.unwrap();
    assert_eq!(status.reflections_today, 1);
    assert!(!status.paused);
    let runs = h.store.runs(10).await.unwrap();
    assert_eq!(runs.len(), 1);
    let run = h.store.run(&runs[0].run_id).await.unwrap().unwrap();
    assert_eq!(run.body["decision"].as_array().unwrap().len(), 4);
    assert!(dir.path().join("reflection/runs").join(&runs[0].run_id).join("dispatch.json").exists());
}

async fn of_many_simultaneous_answers_exactly_one_wins(db: Db) {
    let h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let intel = intelligence(&h, dir.path());
    h.store.ingest(question("q", "ana", h.clock.now())).await.unwrap();
    intel.pulse(true).await.unwrap();
    let id = active(&intel).await[0].id;
    let mut racers = Vec::new();
    for n in 0..8 {
        let intel = intel.clone();
        racers.push(tokio::spawn(async move {
            let responder = Responder { by: format!("surface{n}"), via: "race".into() };
            let response = if n % 2 == 0 { Response::Act } else { Response::Dismiss };
            intel.respond(id, &response, &responder).await
        }));
    }
    let mut wins = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => wins += 1,
            Err(RespondError::AlreadyDecided { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(wins, 1);
    let events = h.store.deliveries("any", 100).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind.as_str() == "decided").count(), 1);
    let memories = h
        .store
        .search_memories(&loopgate_engine::MemoryQuery { text: String::new(), kind: None, limit: 10 })
        .await
        .unwrap();
    assert_eq!(memories.len(), 1, "one answer, one lesson");
}

async fn only_the_owner_and_allowed_accounts_answer_from_a_channel(db: Db) {
    let h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.answerers =
        loopgate_policies::Identities::new(["100".to_owned()], [], []).allow("telegram", ["200".to_owned()]);
    let intel = Intelligence::new(h.store.clone(), settings);
    for n in 0..2 {
        h.store.ingest(question(&format!("q{n}"), &format!("p{n}"), h.clock.now())).await.unwrap();
    }
    intel.pulse(true).await.unwrap();
    let shown = active(&intel).await;
    assert_eq!(shown.len(), 2);
    let claimant = |channel: &str, user: &str, name: Option<&str>| Claimant {
        channel: channel.into(),
        user_id: user.into(),
        name: name.map(Into::into),
    };

    // Strangers, the right id on the wrong channel, and channels without identities.
    for stranger in
        [claimant("telegram", "999", Some("Mallory")), claimant("discord", "100", None), claimant("api", "100", None)]
    {
        let refused = intel.respond_from(shown[0].id, &Response::Act, &stranger).await.unwrap_err();
        assert!(matches!(refused, RespondError::Unauthorized { .. }), "{refused}");
    }
    let untouched = h.store.suggestion(shown[0].id).await.unwrap().unwrap();
    assert_eq!((untouched.state, untouched.revision), (SuggestionState::Active, shown[0].revision), "nothing changed");
    assert!(h.store.deliveries("t", 100).await.unwrap().iter().all(|d| d.kind.as_str() == "show"));

    // The owner, and an account the configuration allows, named as the platform names them.
    let by_owner =
        intel.respond_from(shown[0].id, &Response::Act, &claimant("telegram", "100", Some("Ana"))).await.unwrap();
    let decision = by_owner.suggestion.decision.unwrap();
    assert_eq!((decision.by.as_str(), decision.via.as_str()), ("Ana", "telegram"));
    let by_partner =
        intel.respond_from(shown[1].id, &Response::Dismiss, &claimant("telegram", "200", None)).await.unwrap();
    assert_eq!(by_partner.suggestion.decision.unwrap().by, "200");
}

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
    intel.pulse(true).await.unwrap();
    let shown = active(intel).await;
    let first = shown.first().map(|s| s.class.clone());
    let reminders = shown.iter().filter(|s| is_reminder(s)).count();
    for s in &shown {
        intel.respond(s.id, &answer(s), &owner()).await.unwrap();
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

/// A campaign saw 100,000 API events beside colleagues' questions: both reflections read
/// only "the 1,000 most recent signals", all API events, and raised nothing. The questions
/// read since the last reflection are always in its evidence, and the rest of the window
/// is shared between sources and conversations.
async fn a_flood_from_one_source_does_not_hide_a_trickle_of_questions(db: Db) {
    let h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let intel = intelligence(&h, dir.path());
    let now = h.clock.now();
    let colleagues: Vec<String> = (0..30).map(|n| format!("colleague{n}")).collect();
    for (n, who) in colleagues.iter().enumerate() {
        h.store.ingest(question(&format!("q{n}"), who, now)).await.unwrap();
    }
    // Then the flood: five times the evidence window, from one script.
    let flood: Vec<NewSignal> = (0..5_000)
        .map(|n| {
            let mut s = NewSignal::new(
                Source::parse("api").unwrap(),
                SignalKind::parse("event").unwrap(),
                format!("build {n} finished"),
            );
            s.external_id = Some(format!("build-{n}"));
            s.conversation = Some(Conversation { id: "ci".into(), title: None, thread_id: None, reply_to: None });
            s
        })
        .collect();
    h.store.ingest_many(flood).await.unwrap();

    let report = intel.pulse(true).await.unwrap();
    let run = h.store.run(report.run_id.as_deref().unwrap()).await.unwrap().unwrap();
    let evidence = run.body["evidence"]["signals"].as_array().unwrap();
    assert!(evidence.len() <= 1000, "the window stays bounded: {}", evidence.len());
    let questions = evidence.iter().filter(|s| s["source"] == "telegram").count();
    assert_eq!(questions, 30, "every question read since the last reflection is in its evidence");
    assert!(evidence.iter().any(|s| s["source"] == "api"), "the flood is seen too, in its share");
    assert!(!report.created.is_empty(), "the questions were suggested: {report:?}");
    for suggestion in intel.store().suggestions_by_id(&report.created).await.unwrap() {
        assert!(suggestion.title.contains("colleague"), "{}", suggestion.title);
    }

    // The next reflection starts after this one: old questions are not forced in again,
    // a new one is.
    h.clock.advance(Duration::hours(1));
    h.store.ingest(question("late", "latecomer", h.clock.now())).await.unwrap();
    let more: Vec<NewSignal> = (5_000..7_000)
        .map(|n| {
            let mut s = NewSignal::new(
                Source::parse("api").unwrap(),
                SignalKind::parse("event").unwrap(),
                format!("build {n} finished"),
            );
            s.external_id = Some(format!("build-{n}"));
            s
        })
        .collect();
    h.store.ingest_many(more).await.unwrap();
    let report = intel.pulse(true).await.unwrap();
    let run = h.store.run(report.run_id.as_deref().unwrap()).await.unwrap().unwrap();
    let evidence = run.body["evidence"]["signals"].as_array().unwrap();
    assert!(evidence.iter().any(|s| s["actor"] == "latecomer"), "the new question is in");
}
