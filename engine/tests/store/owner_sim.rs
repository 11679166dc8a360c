//! A simulated owner who answers loopgate's suggestions as a person with clear wishes
//! would, driving the real engine (store, heartbeat, reflection, critique, answers) on a
//! clock the simulation moves: the measure of whether learning follows its owner.
//!
//! Shared by the suite (`learning.rs`, which enforces the targets) and the benchmark
//! (`engine/benches/learning.rs`, which prints the figures). Deterministic: the clock is a
//! [`ManualClock`] and the one random choice (the noisy owner's) comes from a seeded
//! generator.
//!
//! Every round, people write to the owner (and the owner makes promises), three hours
//! before the round so questions count as unanswered; a pulse reflects; the owner answers
//! every suggestion shown — acting (a reply with words: an edit) on what they want,
//! dismissing the rest. A phase lasts until the owner has given 50 answers; then their
//! wishes reverse. Each round's signals are its opportunities: what the owner wants among
//! them, and what loopgate surfaced.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Timelike, Utc};
use loopgate_engine::heartbeat::Rules;
use loopgate_engine::intelligence::{Intelligence, Settings};
use loopgate_engine::suggestion::{Responder, Response, Suggestion, SuggestionState, edited_action};
use loopgate_engine::{Actor, Clock, Conversation, ManualClock, NewSignal, SignalKind, Source, Store};

/// Answers per phase before the owner changes their mind (and before the phase is judged).
pub const ANSWERS_PER_PHASE: usize = 50;
/// Precision and recall are measured over a phase's last rounds.
pub const WINDOW_ROUNDS: usize = 10;
/// A phase that cannot reach its answers in this many rounds has failed anyway.
const MAX_ROUNDS: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persona {
    /// Three people mail the same everyday questions; the owner answers two colleagues and
    /// dismisses a vendor. Reversed: the vendor becomes a client, one colleague leaves.
    ByPerson,
    /// The owner promises things to people and people ask questions; the owner wants to
    /// be reminded of the questions, not of the promises. Reversed: the promises, not the
    /// questions.
    ByClass,
    /// Three people ask on Telegram in the morning and in the evening; the owner answers in
    /// the morning only. Reversed: in the evening only.
    ByHour,
    /// [`Persona::ByPerson`], but one answer in ten goes against the owner's own wishes.
    Noisy,
}

impl Persona {
    pub const ALL: [Persona; 4] = [Persona::ByPerson, Persona::ByClass, Persona::ByHour, Persona::Noisy];

    pub fn name(self) -> &'static str {
        match self {
            Persona::ByPerson => "by person",
            Persona::ByClass => "by class",
            Persona::ByHour => "by time of day",
            Persona::Noisy => "noisy (10 % inconsistent)",
        }
    }
}

/// How one phase went, over its last [`WINDOW_ROUNDS`] rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseReport {
    pub rounds: usize,
    pub answers: usize,
    /// Of the suggestions surfaced, the share the owner wants.
    pub precision: f64,
    /// Of what the owner wants, the share surfaced.
    pub recall: f64,
    /// Suggestions shown only to check for a change of mind, over the whole phase.
    pub explored: usize,
    /// Suggestions surfaced in the window and what the owner wants there.
    pub surfaced: usize,
    pub wanted: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub persona: Persona,
    /// Learning from scratch, then after the owner reversed.
    pub phases: [PhaseReport; 2],
    /// A few of the last suggestions' explanations, to show what the owner reads.
    pub explanations: Vec<String>,
}

/// A tiny seeded generator (SplitMix64): the noisy owner's coin, the same on every run.
struct Coin(u64);

impl Coin {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }
}

/// What a signal the simulation sent is, for the owner's judgement.
#[derive(Debug, Clone)]
struct Sent {
    who: &'static str,
    promise: bool,
    hour: u32,
}

const PHRASES: &[&str] = &[
    "Could you review the proposal draft by Thursday?",
    "Can you send me the updated numbers before the call?",
    "Could you check the contract terms this week?",
    "Can you confirm the meeting time for Monday?",
    "Would you look at the budget figures today?",
    "Can you share the slides before the review?",
];

const VERBS: &[&str] = &["send", "bring", "share", "finish", "sign"];
const THINGS: &[&str] = &["report", "slides", "invoice", "contract", "budget", "agenda", "minutes", "photos"];
const DAYS: &[&str] = &["Friday", "Monday", "Thursday"];

/// The engine as the simulation configures it: a manual pulse per round, each round's
/// signals judged in that round (what loopgate did not raise, the owner dealt with
/// elsewhere), replies the owner acts on allowed to run.
pub fn settings(data_dir: &std::path::Path) -> Settings {
    let rules = Rules {
        cooldown: Duration::minutes(30),
        cooldown_after_failure: Duration::minutes(5),
        daily_budget: 100,
        actionable_threshold: 3,
        timezone: chrono_tz::UTC,
        quiet_hours: None,
    };
    let mut settings = Settings::new(rules, data_dir.to_path_buf());
    settings.lookback = Duration::hours(4);
    settings.policy = loopgate_policies::Policy::new(vec![loopgate_policies::Rule {
        effect: loopgate_policies::Effect::Allow,
        kind: Some(loopgate_policies::ActionKind::Message),
        target: None,
        min_risk: None,
    }]);
    settings
}

/// A message (or, from the email source, a mail) from `who` in `chat`.
fn signal(source: &str, id: String, who: &str, owner: bool, chat: &str, at: DateTime<Utc>, text: &str) -> NewSignal {
    let kind = if source == "email" { "email" } else { "message" };
    let mut signal = NewSignal::new(Source::parse(source).unwrap(), SignalKind::parse(kind).unwrap(), text);
    signal.external_id = Some(id);
    signal.actor = Some(Actor { id: who.into(), name: Some(who.into()), is_owner: owner });
    signal.conversation = Some(Conversation { id: chat.into(), title: None, thread_id: None, reply_to: None });
    signal.occurred_at = Some(at);
    signal
}

/// Round `n`'s hour of the day, and how long until the next round.
fn schedule(persona: Persona, n: usize) -> (u32, Duration) {
    match persona {
        // Morning and evening, every day.
        Persona::ByHour => {
            if n.is_multiple_of(2) {
                (9, Duration::hours(9))
            } else {
                (18, Duration::hours(15))
            }
        }
        _ => {
            if n.is_multiple_of(2) {
                (9, Duration::hours(6))
            } else {
                (15, Duration::hours(18))
            }
        }
    }
}

/// Round `n`'s signals, at `now`.
fn round_signals(persona: Persona, n: usize, now: DateTime<Utc>, hour: u32) -> Vec<(NewSignal, Sent)> {
    let asked = now - Duration::hours(3);
    let mut out = Vec::new();
    match persona {
        Persona::ByPerson | Persona::Noisy => {
            // The same words from everyone: only the sender tells them apart. A person's
            // repeat of the same words merges into their earlier signal in the ledger.
            let text = PHRASES[n % PHRASES.len()];
            for who in ["ana@example.org", "ben@example.org", "sales@vendor.example"] {
                let s = signal("email", format!("{n}-{who}"), who, false, who, asked, text);
                out.push((s, Sent { who, promise: false, hour }));
            }
        }
        Persona::ByClass => {
            for k in 0..2 {
                let who = ["p1", "p2", "p3", "p4", "p5", "p6", "p7"][(n * 2 + k) % 7];
                // A promise to someone (the owner's words in their chat), a question from
                // someone else.
                let i = n * 2 + k;
                let promise = format!(
                    "I'll {} the {} by {}",
                    VERBS[i % VERBS.len()],
                    THINGS[i % THINGS.len()],
                    DAYS[i % DAYS.len()]
                );
                let s = signal("telegram", format!("o{n}-{k}"), "me", true, who, asked, &promise);
                out.push((s, Sent { who, promise: true, hour }));
                let asker = ["p1", "p2", "p3", "p4", "p5", "p6", "p7"][(n * 2 + k + 3) % 7];
                let text = PHRASES[(n + k) % PHRASES.len()];
                let s = signal("telegram", format!("q{n}-{k}"), asker, false, asker, asked, text);
                out.push((s, Sent { who: asker, promise: false, hour }));
            }
        }
        Persona::ByHour => {
            for (k, who) in ["ana", "ben", "cem"].into_iter().enumerate() {
                let text = PHRASES[(n + k) % PHRASES.len()];
                let s = signal("telegram", format!("{n}-{who}"), who, false, who, asked, text);
                out.push((s, Sent { who, promise: false, hour }));
            }
        }
    }
    out
}

/// Whether the owner wants it, in `phase` (0 learning, 1 reversed).
fn wants(persona: Persona, phase: usize, sent: &Sent) -> bool {
    match (persona, phase) {
        (Persona::ByPerson | Persona::Noisy, 0) => sent.who != "sales@vendor.example",
        (Persona::ByPerson | Persona::Noisy, _) => sent.who != "ben@example.org",
        (Persona::ByClass, 0) => !sent.promise,
        (Persona::ByClass, _) => sent.promise,
        (Persona::ByHour, 0) => sent.hour == 9,
        (Persona::ByHour, _) => sent.hour == 18,
    }
}

/// Runs one persona through both phases from `start` on an empty store.
pub async fn run(persona: Persona, store: &Store, clock: &ManualClock, data_dir: &std::path::Path) -> Report {
    let intel = Intelligence::new(store.clone(), settings(data_dir));
    let owner = Responder { by: "owner".into(), via: "simulation".into() };
    let mut coin = Coin(0x5EED_0017);
    let mut n = 0;
    let mut phases = Vec::new();
    let mut explanations = Vec::new();
    // The first round at nine in the morning.
    let day = clock.now().date_naive().and_hms_opt(9, 0, 0).unwrap().and_utc();
    clock.set(day + Duration::days(1));
    for phase in 0..2 {
        let mut answers = 0;
        let mut explored = 0;
        // Per round: (surfaced, surfaced and wanted, wanted).
        let mut rounds: Vec<(usize, usize, usize)> = Vec::new();
        while answers < ANSWERS_PER_PHASE && rounds.len() < MAX_ROUNDS {
            let now = clock.now();
            let (hour, next) = schedule(persona, n);
            assert_eq!(now.hour(), hour, "the simulation keeps its schedule");
            let mut sent: HashMap<i64, Sent> = HashMap::new();
            for (signal, what) in round_signals(persona, n, now, hour) {
                let outcome = store.ingest(signal).await.expect("ingest");
                sent.insert(outcome.id, what);
            }
            intel.pulse(true).await.expect("pulse");
            let shown: Vec<Suggestion> =
                intel.store().suggestions(&[SuggestionState::Active], 200).await.expect("suggestions");
            let (mut surfaced, mut good) = (0, 0);
            for s in &shown {
                if s.ranking.detail.is_none() {
                    // Not ranked by learning: a reminder the owner's own act set (acting on a
                    // promise), now due. Theirs, done, and no measure of learning.
                    intel.respond(s.id, &Response::Act, &owner).await.expect("answer");
                    continue;
                }
                let about = s.evidence.first().and_then(|e| sent.get(&e.signal_id));
                // Anything not made of this round's signals is nothing the owner asked for.
                let want = about.is_some_and(|what| wants(persona, phase, what));
                surfaced += 1;
                good += usize::from(want);
                explored += usize::from(s.ranking.detail.as_ref().is_some_and(|d| d.explored));
                let answer = if persona == Persona::Noisy && coin.next() < 0.1 { !want } else { want };
                let response = if !answer {
                    Response::Dismiss
                } else if s.action["kind"] == "message" {
                    // A reply is acted on with the owner's words.
                    Response::Edit { action: edited_action(&s.action, &"Yes, on it.".into()).unwrap() }
                } else if s.class == "promise" {
                    // Kept by the owner at once: noted, no reminder set for later (which
                    // would take up room the measure is not about).
                    Response::Edit { action: serde_json::json!({"kind": "note", "text": "On it."}) }
                } else {
                    Response::Act
                };
                intel.respond(s.id, &response, &owner).await.expect("answer");
                answers += 1;
                if explanations.len() < 6 && phase == 1 && answers > ANSWERS_PER_PHASE - 10 {
                    explanations.push(format!("{} — {}", s.title, s.ranking.ranked));
                }
            }
            let wanted = sent.values().filter(|what| wants(persona, phase, what)).count();
            rounds.push((surfaced, good, wanted));
            n += 1;
            clock.advance(next);
        }
        let window = &rounds[rounds.len().saturating_sub(WINDOW_ROUNDS)..];
        let surfaced: usize = window.iter().map(|r| r.0).sum();
        let good: usize = window.iter().map(|r| r.1).sum();
        let wanted: usize = window.iter().map(|r| r.2).sum();
        phases.push(PhaseReport {
            rounds: rounds.len(),
            answers,
            precision: if surfaced == 0 { 0.0 } else { good as f64 / surfaced as f64 },
            recall: if wanted == 0 { 1.0 } else { good as f64 / wanted as f64 },
            explored,
            surfaced,
            wanted,
        });
    }
    let phases: [PhaseReport; 2] = phases.try_into().expect("two phases");
    Report { persona, phases, explanations }
}

#[allow(dead_code)]
pub fn print(report: &Report) {
    for (phase, p) in report.phases.iter().enumerate() {
        println!(
            "{:<26} {:<9} {:>3} answers in {:>2} rounds  precision {:.2}  recall {:.2}  (last {} rounds: {} surfaced, {} wanted; {} shown to check)",
            report.persona.name(),
            if phase == 0 { "learning" } else { "reversed" },
            p.answers,
            p.rounds,
            p.precision,
            p.recall,
            WINDOW_ROUNDS,
            p.surfaced,
            p.wanted,
            p.explored,
        );
    }
}
