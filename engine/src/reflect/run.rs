//! One reflection: evidence → ideas → critique → decision, and the artifacts it leaves.
//!
//! [`think`] is pure. [`write_artifacts`] lays the run out under the data directory as
//! `reflection/runs/<run_id>/{evidence.json, ideas.jsonl, critique.jsonl, decision.json,
//! recommendation.md, dispatch.json}` plus a line in `reflection/journal/YYYY-MM-DD.jsonl`.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use loopgate_policies::{ActionView, Effect, Policy, Risk};

use super::detect::{self, Context, Idea};
use super::habits;
use crate::learning::{Features, Held, HeldIdea, HeldKey, Holding, Rank, fade};
use crate::memory::{Memory, MemoryKind, Origin};
use crate::signal::Signal;
use crate::suggestion::SuggestionState;

/// Ideas below this are not worth the owner's attention on their own.
pub const THIN_EVIDENCE: f64 = 0.5;
/// At most this many recommendations per run: a pulse should not flood a chat.
pub const MAX_RECOMMENDATIONS: usize = 5;
/// An idea learning held back comes back only once its score clears [`THIN_EVIDENCE`] by
/// this much: evidence fading by a day should not bring back a week of what was held back.
pub const HELD_MARGIN: f64 = 0.1;

/// What a reflection looked at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    pub signals: Vec<Signal>,
    /// Memories that can change the verdict (ignored noise, constraints, open loops).
    pub memories: Vec<Memory>,
    /// Keys of ideas live as suggestions (scheduled, active, snoozed): a duplicate of one
    /// is not raised again.
    pub live_keys: HashSet<String>,
    /// Keys of ideas raised before and decided since, with how: an idea is raised once,
    /// but a decided one never makes another idea a duplicate.
    pub decided: HashMap<String, SuggestionState>,
    /// Where each ignored-noise memory came from, as "actor:email:ana@example.org": a
    /// dismissal teaches about that person or place, not about everyone using the same
    /// words. Memories without a known place (the owner's own) count everywhere.
    #[serde(skip)]
    pub noise_places: HashMap<i64, Vec<String>>,
    /// The owner's own signals of the past weeks, where weekly habits show. Written out by
    /// id: they are thousands, and each is in the ledger.
    #[serde(serialize_with = "signal_ids")]
    pub history: Vec<Signal>,
    /// Keys of ideas about habits the owner told loopgate to forget.
    pub forgotten_keys: HashSet<String>,
    /// Approvals waiting for the owner.
    pub approvals: Vec<crate::actions::Approval>,
}

fn signal_ids<S: serde::Serializer>(signals: &[Signal], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(signals.iter().map(|s| s.id))
}

impl Evidence {
    /// Whether an idea became a suggestion before, live or decided.
    pub fn raised(&self, key: &str) -> bool {
        self.live_keys.contains(key) || self.decided.contains_key(key)
    }

    /// A signal the reflection looked at, recent or from the owner's past weeks.
    pub fn signal(&self, id: crate::signal::SignalId) -> Option<&Signal> {
        self.signals.iter().chain(&self.history).find(|s| s.id == id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Keep,
    /// Already suggested and still live (scheduled, active or snoozed).
    Duplicate,
    /// Raised before and answered (or retired): an idea is raised once. Asked again after
    /// that, it is a new idea.
    Decided {
        state: SuggestionState,
    },
    /// About a habit the owner asked loopgate to forget.
    Forgotten,
    /// The owner's policy would never let its action run: suggesting it would only
    /// offer a button that cannot work.
    Denied {
        reason: String,
    },
    /// The owner dismissed things like this before.
    IgnoredNoise {
        memory_id: i64,
    },
    /// Too unsure to bother the owner with.
    ThinEvidence,
    /// Sure enough, but the owner's answers to things like it say they do not want it.
    Unwanted {
        score: f64,
    },
    /// Kept, but the owner already has as many open suggestions as they should; it will be
    /// raised again when there is room.
    NoRoom,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Critique {
    pub key: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Confidence weighted by learned weights and resembling noise; what ranks kept ideas.
    pub score: f64,
    /// Why it ranks where it does, or why learning held it back.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ranked: String,
    /// Held back by learning but shown anyway: one in ten is, so a change of mind is seen.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub explored: bool,
    /// The key that held it back (a dimension's, or an ignored-noise memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_by: Option<HeldKey>,
    /// The risk class of the idea's action, by policy.
    pub risk: Risk,
    /// What policy would say if the owner acted on it: `allow` runs at once, `ask` waits
    /// for an approval, `deny` never runs.
    pub policy: Effect,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thought {
    pub ideas: Vec<Idea>,
    pub critique: Vec<Critique>,
    /// The kept ideas, best first, at most [`MAX_RECOMMENDATIONS`].
    pub decision: Vec<Idea>,
    /// Ideas learning held back for the first time (or showed anyway), to remember.
    pub held: Vec<HeldIdea>,
    /// How each idea ranked, by key, for the suggestions made of them.
    #[serde(skip)]
    pub ranks: HashMap<String, Ranked>,
}

/// How an idea ranks, and what it was ranked by.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub rank: Rank,
    pub features: Features,
}

impl Ranked {
    /// Confidence alone: nothing learned.
    pub fn plain(score: f64) -> Ranked {
        Ranked { rank: Rank::plain(score), features: Features::default() }
    }
}

/// Every detector's ideas over the evidence.
pub fn ideas(evidence: &Evidence, ctx: &Context) -> Vec<Idea> {
    let mut ideas = detect::reminders(&evidence.signals, ctx);
    ideas.extend(detect::promises(&evidence.signals, ctx));
    ideas.extend(detect::unanswered_questions(&evidence.signals, ctx));
    ideas.extend(detect::unreplied_mail(&evidence.signals, ctx));
    ideas.extend(detect::watched(&evidence.signals, &evidence.memories, ctx));
    ideas.extend(habits::recurring(&evidence.history, ctx));
    ideas.extend(detect::ageing_approvals(&evidence.approvals, ctx));
    ideas
}

/// How a decision ranks ideas and how many it may keep.
pub struct Judging<'a> {
    /// The idea's confidence weighted by what the owner's answers taught, and why.
    pub rank: Box<dyn Fn(&Idea) -> Ranked + 'a>,
    /// Open suggestions the owner can still take.
    pub room: usize,
    /// For the age of ignored-noise memories, which fade like learned weights.
    pub now: DateTime<Utc>,
    /// The owner's action rules, which classify each idea's risk and drop what they deny.
    pub policy: &'a Policy,
    /// Ideas learning held back before, for exploration's one in ten.
    pub held: Held,
}

static NO_RULES: Policy = Policy::empty();

impl<'a> Judging<'a> {
    /// Confidence alone, the default policy, room for a full run.
    pub fn plain(now: DateTime<Utc>) -> Judging<'static> {
        Judging {
            rank: Box::new(|idea: &Idea| Ranked::plain(idea.confidence)),
            room: MAX_RECOMMENDATIONS,
            now,
            policy: &NO_RULES,
            held: Held::default(),
        }
    }

    /// Ranked by `score` alone, nothing learned to explain it.
    pub fn scored(score: &'a dyn Fn(&Idea) -> f64, now: DateTime<Utc>) -> Judging<'a> {
        Judging {
            rank: Box::new(move |idea| Ranked::plain(score(idea))),
            room: MAX_RECOMMENDATIONS,
            now,
            policy: &NO_RULES,
            held: Held::default(),
        }
    }
}

/// Policy's view of an idea's action; an action policy cannot read is denied, never
/// guessed at.
fn assess(policy: &Policy, action: &serde_json::Value) -> (Risk, Effect, String) {
    match ActionView::of(action) {
        Ok(view) => {
            let assessment = policy.assess(&view);
            (assessment.risk, assessment.effect, assessment.reason)
        }
        Err(error) => (Risk::High, Effect::Deny, error.to_string()),
    }
}

/// Runs every detector over the evidence, critiques each idea, and decides.
pub fn think(evidence: &Evidence, ctx: &Context, judging: &Judging) -> Thought {
    judge(ideas(evidence, ctx), evidence, judging)
}

/// Critique and decision over ideas from any reflector (the detectors, the owner's model).
///
/// An idea's score is its learned score lowered by every ignored-noise memory it resembles
/// from the same person or place (or the owner's own), each by its confidence faded with
/// age — unless newer answers say the owner wants that person or place. An idea learning
/// would hold back is kept when its person or place is one the owner keeps acting on and
/// only its words, class or source argue against it; otherwise one in ten of what a key
/// holds back is shown anyway (exploration), so a change of mind is seen.
pub fn judge(ideas: Vec<Idea>, evidence: &Evidence, judging: &Judging) -> Thought {
    let noise: Vec<Noise> = evidence
        .memories
        .iter()
        .filter(|m| m.kind == MemoryKind::IgnoredNoise)
        .map(|m| Noise {
            id: m.id,
            words: detect::content_words(&m.content),
            strength: m.confidence * fade(m.updated_at, judging.now),
            content: m.content.clone(),
            everywhere: m.origin == Origin::Owner,
            places: evidence.noise_places.get(&m.id).cloned().unwrap_or_default(),
        })
        .collect();
    let mut held = judging.held.clone();
    let mut remembered: Vec<HeldIdea> = Vec::new();
    let mut ranks = HashMap::new();
    let mut seen = HashSet::new();
    let mut critique: Vec<Critique> = ideas
        .iter()
        .map(|idea| {
            let ranked = (judging.rank)(idea);
            let rank = &ranked.rank;
            let learned = rank.score;
            let (factor, strongest) = noise_factor(&noise, &idea.title, &ranked.features.places(), rank);
            let score = round(learned * factor);
            let (risk, policy, reason) = assess(judging.policy, &idea.action);
            let mut c = Critique {
                key: idea.key.clone(),
                verdict: Verdict::Keep,
                score,
                ranked: String::new(),
                explored: false,
                held_by: None,
                risk,
                policy,
            };
            c.verdict = if evidence.live_keys.contains(&idea.key) || !seen.insert(idea.key.clone()) {
                Verdict::Duplicate
            } else if let Some(state) = evidence.decided.get(&idea.key) {
                Verdict::Decided { state: *state }
            } else if evidence.forgotten_keys.contains(&idea.key) {
                Verdict::Forgotten
            } else if policy == Effect::Deny {
                Verdict::Denied { reason }
            } else if idea.confidence < THIN_EVIDENCE {
                Verdict::ThinEvidence
            } else if score >= THIN_EVIDENCE
                && (score >= THIN_EVIDENCE + HELD_MARGIN || !judging.held.was_held(&idea.key))
            {
                c.ranked = rank.why();
                Verdict::Keep
            } else if let Some(keeper) = rank.protected().filter(|_| strongest.is_none() || learned < THIN_EVIDENCE) {
                let against = rank.by.as_ref().map_or("", |t| t.dimension.as_str());
                c.ranked = format!("kept: {}, whatever its {against} say", keeper.says);
                Verdict::Keep
            } else {
                let noisy = strongest.filter(|_| learned >= THIN_EVIDENCE);
                let (by, why, verdict) = match noisy {
                    Some(n) => (
                        Some(HeldKey { dimension: "memory".into(), key: n.id.to_string() }),
                        format!("held back: it is like “{}”, which you dismissed", n.content),
                        Verdict::IgnoredNoise { memory_id: n.id },
                    ),
                    None => (
                        rank.held_by
                            .as_ref()
                            .or(rank.by.as_ref())
                            .map(|t| HeldKey { dimension: t.dimension.as_str().into(), key: t.key.clone() }),
                        rank.why_held(),
                        Verdict::Unwanted { score },
                    ),
                };
                c.held_by = by.clone();
                match by.map(|by| (held.hold(&idea.key, &by), by)) {
                    Some((Holding::Explored, by)) => {
                        c.ranked = format!("shown to check for a change of mind (one in ten held back is); {why}");
                        c.explored = true;
                        remembered.push(HeldIdea { idea_key: idea.key.clone(), by, explored: true });
                        Verdict::Keep
                    }
                    Some((Holding::Held, by)) => {
                        c.ranked = why;
                        remembered.push(HeldIdea { idea_key: idea.key.clone(), by, explored: false });
                        verdict
                    }
                    Some((Holding::Already, _)) | None if score >= THIN_EVIDENCE => {
                        c.ranked =
                            format!("still held back: it was before, and only just clears the bar now; {}", rank.why());
                        verdict
                    }
                    Some((Holding::Already, _)) | None => {
                        c.ranked = why;
                        verdict
                    }
                }
            };
            ranks.insert(idea.key.clone(), ranked);
            c
        })
        .collect();

    let mut ranked: Vec<usize> = (0..ideas.len()).filter(|i| critique[*i].verdict == Verdict::Keep).collect();
    // Best score first; among equals, whatever is due soonest.
    ranked.sort_by(|a, b| {
        let (ia, ib) = (&ideas[*a], &ideas[*b]);
        critique[*b].score.total_cmp(&critique[*a].score).then_with(|| match (ia.due, ib.due) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => ia.key.cmp(&ib.key),
        })
    });
    let room = judging.room.min(MAX_RECOMMENDATIONS);
    for i in ranked.iter().skip(room) {
        critique[*i].verdict = Verdict::NoRoom;
        // Shown to check only if it is shown at all: without room it counts as held back.
        if let Some(h) = remembered.iter_mut().find(|h| h.idea_key == critique[*i].key) {
            h.explored = false;
        }
    }
    let decision = ranked.iter().take(room).map(|i| ideas[*i].clone()).collect();
    Thought { ideas, critique, decision, held: remembered, ranks }
}

/// An ignored-noise memory as critique weighs it.
struct Noise {
    id: i64,
    words: HashSet<String>,
    /// Its confidence, faded with age like learned evidence.
    strength: f64,
    content: String,
    /// The owner's own words: they count for everyone.
    everywhere: bool,
    /// The person and place it was learned from; empty when unknown.
    places: Vec<String>,
}

impl Thought {
    /// What critique said of an idea.
    pub fn critique_of(&self, key: &str) -> Option<&Critique> {
        self.critique.iter().find(|c| c.key == key)
    }
}

fn round(score: f64) -> f64 {
    (score * 1000.0).round() / 1000.0
}

/// How much the ignored-noise memories that apply to an idea lower it (a factor in 0..1),
/// and the strongest of them. A memory applies when most of its words appear in the title,
/// and it is the owner's own, or it was learned from the idea's person or place (or from
/// nobody known) and newer answers do not say the owner wants that person or place.
fn noise_factor<'n>(noise: &'n [Noise], title: &str, places: &[String], rank: &Rank) -> (f64, Option<&'n Noise>) {
    let words = detect::content_words(title);
    let mut factor = 1.0;
    let mut strongest: Option<&Noise> = None;
    for n in noise {
        let here = n.places.is_empty() || n.places.iter().any(|p| places.contains(p));
        if !(n.everywhere || (here && !rank.welcome)) || !detect::mostly_within(&n.words, &words) {
            continue;
        }
        factor *= 1.0 - n.strength.clamp(0.0, 1.0);
        if strongest.is_none_or(|s| n.strength > s.strength) {
            strongest = Some(n);
        }
    }
    (factor, strongest)
}

/// What the run's index in the database keeps of its evidence: every signal and memory by
/// id with a line about it, not whole payloads (those are in `evidence.json`).
pub fn evidence_summary(evidence: &Evidence) -> serde_json::Value {
    let signals: Vec<_> = evidence
        .signals
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id,
                "source": s.source.as_str(),
                "actor": s.actor.as_ref().map(|a| a.name.clone().unwrap_or_else(|| a.id.clone())),
                "is_owner": s.actor.as_ref().is_some_and(|a| a.is_owner),
                "occurred_at": s.occurred_at,
                "text": detect::excerpt(&s.text),
            })
        })
        .collect();
    let memories: Vec<_> = evidence
        .memories
        .iter()
        .map(|m| serde_json::json!({"id": m.id, "kind": m.kind, "content": m.content}))
        .collect();
    let mut live: Vec<_> = evidence.live_keys.iter().collect();
    live.sort();
    let mut decided: Vec<_> = evidence.decided.iter().map(|(k, s)| serde_json::json!({"key": k, "state": s})).collect();
    decided.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    serde_json::json!({
        "signals": signals,
        "memories": memories,
        "known_suggestions": live,
        "decided_suggestions": decided,
        "owner_history_signals": evidence.history.len(),
        "pending_approvals": evidence.approvals.iter().map(|a| a.id).collect::<Vec<_>>(),
    })
}

/// Writes a run's artifacts and its journal line; returns the run's folder. `dispatch` is
/// what the run put in front of the owner.
pub fn write_artifacts<D: Serialize>(
    data_dir: &Path,
    run_id: &str,
    at: DateTime<Utc>,
    evidence: &Evidence,
    thought: &Thought,
    dispatch: &D,
) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("reflection").join("runs").join(run_id);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("evidence.json"), pretty(evidence))?;
    std::fs::write(dir.join("ideas.jsonl"), jsonl(&thought.ideas))?;
    std::fs::write(dir.join("critique.jsonl"), jsonl(&thought.critique))?;
    std::fs::write(dir.join("decision.json"), pretty(&thought.decision))?;
    std::fs::write(dir.join("recommendation.md"), recommendation(run_id, at, thought))?;
    std::fs::write(dir.join("dispatch.json"), pretty(dispatch))?;

    let journal_dir = data_dir.join("reflection").join("journal");
    std::fs::create_dir_all(&journal_dir)?;
    let line = serde_json::json!({
        "run_id": run_id,
        "at": at,
        "signals": evidence.signals.len(),
        "ideas": thought.ideas.len(),
        "kept": thought.decision.len(),
    });
    let mut journal = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal_dir.join(format!("{}.jsonl", at.format("%Y-%m-%d"))))?;
    writeln!(journal, "{line}")?;
    Ok(dir)
}

fn pretty<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("serializable") + "\n"
}

fn jsonl<T: Serialize>(items: &[T]) -> String {
    items.iter().map(|item| serde_json::to_string(item).expect("serializable") + "\n").collect()
}

/// A short note a person can read in the run folder.
fn recommendation(run_id: &str, at: DateTime<Utc>, thought: &Thought) -> String {
    let mut text = format!("# Reflection {run_id}\n\n{}\n\n", at.format("%Y-%m-%d %H:%M UTC"));
    if thought.decision.is_empty() {
        text.push_str("Nothing worth raising.\n");
    }
    for (n, idea) in thought.decision.iter().enumerate() {
        text.push_str(&format!(
            "{}. **{}** — {} (confidence {:.2}, evidence: {})\n",
            n + 1,
            idea.title,
            idea.why_now,
            idea.confidence,
            idea.evidence.iter().map(|id| format!("signal {id}")).collect::<Vec<_>>().join(", ")
        ));
    }
    let dropped = thought.critique.iter().filter(|c| c.verdict != Verdict::Keep).count();
    if dropped > 0 {
        text.push_str(&format!("\n{dropped} idea(s) dropped in critique; see critique.jsonl.\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Origin;
    use crate::reflect::fixtures::{self, S, ctx};
    use crate::signal::{Actor, Conversation, Trust};

    fn signal(id: i64, owner: bool, minutes_ago: i64, text: &str) -> Signal {
        let who = if owner { ("me", true) } else { ("dana", false) };
        fixtures::signal(S { id, who: Some(who), chat: Some(("dana", Some("Dana"))), minutes_ago, text })
    }

    fn noise(id: i64, content: &str) -> Memory {
        Memory {
            id,
            kind: MemoryKind::IgnoredNoise,
            subject: String::new(),
            content: content.into(),
            confidence: 0.6,
            stability: 1,
            origin: Origin::Response,
            trust: Trust::Trusted,
            evidence: vec![],
            created_at: ctx().now,
            updated_at: ctx().now,
        }
    }

    fn evidence() -> Evidence {
        // A direct chat with Alex, where the owner has not answered.
        let mut question = signal(2, false, 300, "Can you review the budget draft?");
        question.actor = Some(Actor { id: "alex".into(), name: Some("Alex".into()), is_owner: false });
        question.conversation = Some(Conversation { id: "alex".into(), title: None, thread_id: None, reply_to: None });
        Evidence {
            signals: vec![
                signal(1, true, 30, "remind me to call the plumber tomorrow at 9"),
                question,
                signal(3, true, 20, "I'll send you the contract by Friday"),
                signal(4, true, 10, "remind me to buy milk"),
                signal(5, true, 5, "remind me to check the newsletter digest tonight"),
            ],
            memories: vec![noise(9, "newsletter digest")],
            live_keys: HashSet::from(["promise:3".to_owned()]),
            ..Evidence::default()
        }
    }

    #[test]
    fn critique_drops_duplicates_noise_and_thin_ideas_and_decision_ranks_the_rest() {
        let thought = think(&evidence(), &ctx(), &Judging::plain(ctx().now));
        let verdict = |key: &str| thought.critique.iter().find(|c| c.key == key).map(|c| c.verdict.clone());
        assert_eq!(verdict("promise:3"), Some(Verdict::Duplicate));
        assert_eq!(verdict("reminder:5"), Some(Verdict::IgnoredNoise { memory_id: 9 }));
        assert_eq!(verdict("reminder:1"), Some(Verdict::Keep));
        assert_eq!(verdict("question:2"), Some(Verdict::Keep));
        // "buy milk" has no time: confidence 0.6, still kept, ranked after the timed one.
        assert_eq!(
            thought.decision.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            ["reminder:1", "question:2", "reminder:4"]
        );
    }

    #[test]
    fn thin_ideas_are_dropped_and_at_most_five_are_recommended() {
        let idea = |key: &str, confidence: f64| Idea {
            reflector: crate::reflect::detect::Reflector::Deterministic,
            kind: detect::IdeaKind::Reminder,
            title: format!("Reminder: {key}"),
            why_now: String::new(),
            due: None,
            evidence: vec![1],
            confidence,
            key: key.into(),
            topic: None,
            action: serde_json::json!({"kind": "note", "text": key}),
        };
        let mut ideas = vec![idea("thin", 0.3)];
        ideas.extend((0..7).map(|n| idea(&format!("k{n}"), 0.6 + n as f64 / 100.0)));
        let ev = Evidence::default();
        let thought = judge(ideas, &ev, &Judging::plain(ctx().now));
        assert_eq!(thought.critique[0].verdict, Verdict::ThinEvidence);
        assert_eq!(thought.decision.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["k6", "k5", "k4", "k3", "k2"]);
    }

    #[test]
    fn learned_scores_rank_drop_unwanted_ideas_and_respect_the_room_left() {
        let thought = think(&evidence(), &ctx(), &Judging::plain(ctx().now));
        let kept: Vec<_> = thought.decision.iter().map(|i| i.key.clone()).collect();
        assert_eq!(kept.len(), 3);
        // The owner keeps dismissing reminders and answers questions.
        let score = |idea: &Idea| match idea.kind {
            detect::IdeaKind::Reminder => idea.confidence * 0.4,
            _ => (idea.confidence * 1.3).min(1.0),
        };
        let judging = Judging { room: 5, ..Judging::scored(&score, ctx().now) };
        let thought = think(&evidence(), &ctx(), &judging);
        assert_eq!(thought.decision.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["question:2"]);
        let verdict = |key: &str| thought.critique.iter().find(|c| c.key == key).unwrap().verdict.clone();
        assert_eq!(verdict("reminder:1"), Verdict::Unwanted { score: 0.36 });
        // Room for one: the best is kept, the next waits.
        let one = Judging { room: 1, ..Judging::plain(ctx().now) };
        let thought = think(&evidence(), &ctx(), &one);
        assert_eq!(thought.decision.len(), 1);
        assert_eq!(thought.critique.iter().filter(|c| c.verdict == Verdict::NoRoom).count(), 2);
    }

    #[test]
    fn policy_classifies_each_ideas_risk_and_drops_what_it_denies() {
        let thought = think(&evidence(), &ctx(), &Judging::plain(ctx().now));
        let critique = |thought: &Thought, key: &str| thought.critique.iter().find(|c| c.key == key).unwrap().clone();
        // A reply to Dana leaves the machine: medium risk, and it would ask first.
        let question = critique(&thought, "question:2");
        assert_eq!((question.risk, question.policy, question.verdict), (Risk::Medium, Effect::Ask, Verdict::Keep));
        let reminder = critique(&thought, "reminder:1");
        assert_eq!((reminder.risk, reminder.policy), (Risk::Low, Effect::Allow));

        // The owner never wants loopgate to message anyone on Telegram.
        let rules = Policy::new(vec![loopgate_policies::Rule {
            effect: Effect::Deny,
            kind: Some(loopgate_policies::ActionKind::Message),
            target: Some("telegram:*".into()),
            min_risk: None,
        }]);
        let judging = Judging { policy: &rules, ..Judging::plain(ctx().now) };
        let thought = think(&evidence(), &ctx(), &judging);
        let question = critique(&thought, "question:2");
        assert_eq!(
            question.verdict,
            Verdict::Denied { reason: "rule 1 (deny, kind message, target telegram:*)".into() }
        );
        assert!(thought.decision.iter().all(|i| i.key != "question:2"));
        assert!(thought.decision.iter().any(|i| i.key == "reminder:1"), "the rest is still raised");
        let line = serde_json::to_value(&question).unwrap();
        assert_eq!(
            (line["verdict"].as_str(), line["risk"].as_str(), line["policy"].as_str()),
            (Some("denied"), Some("medium"), Some("deny"))
        );

        // An action nobody can read is never offered.
        let mut odd = thought.ideas[0].clone();
        odd.key = "odd".into();
        odd.action = serde_json::json!({"kind": "shell", "text": "rm -rf /"});
        let thought = judge(vec![odd], &evidence(), &Judging::plain(ctx().now));
        assert!(matches!(thought.critique[0].verdict, Verdict::Denied { .. }));
        assert_eq!(thought.critique[0].risk, Risk::High);
    }

    #[test]
    fn noise_counts_where_it_was_learned_a_decided_idea_is_not_a_duplicate_and_a_kept_person_is_kept() {
        use crate::learning::{Dimension, Telling};
        let ask = |id, who: &'static str| {
            fixtures::signal(S {
                id,
                who: Some((who, false)),
                chat: Some((who, None)),
                minutes_ago: 300,
                text: "Could you review the proposal draft?",
            })
        };
        let mut ev = Evidence { signals: vec![ask(1, "ana"), ask(2, "vendor"), ask(3, "ben")], ..Evidence::default() };
        let mut dismissed = noise(9, "Could you review the proposal draft?");
        dismissed.evidence = vec![2];
        ev.memories = vec![dismissed];
        ev.noise_places = HashMap::from([(9, vec!["actor:telegram:vendor".to_owned()])]);
        ev.decided = HashMap::from([("question:3".to_owned(), SuggestionState::Acted)]);
        // Signals 1, 2 and 3 are Ana's, the vendor's and Ben's.
        let features = |idea: &Idea| Features {
            actor: Some(format!("telegram:{}", ["", "ana", "vendor", "ben"][idea.evidence[0] as usize])),
            ..Features::default()
        };
        let plain = |idea: &Idea| Ranked { rank: Rank::plain(idea.confidence), features: features(idea) };
        let thought = judge(ideas(&ev, &ctx()), &ev, &Judging { rank: Box::new(plain), ..Judging::plain(ctx().now) });
        let verdict = |t: &Thought, key: &str| t.critique_of(key).unwrap().verdict.clone();
        // The vendor's dismissal holds back the vendor, not Ana asking in the same words.
        assert_eq!(verdict(&thought, "question:2"), Verdict::IgnoredNoise { memory_id: 9 });
        assert_eq!(verdict(&thought, "question:1"), Verdict::Keep);
        assert_eq!(verdict(&thought, "question:3"), Verdict::Decided { state: SuggestionState::Acted });
        let held = thought.critique_of("question:2").unwrap();
        assert_eq!(held.ranked, "held back: it is like “Could you review the proposal draft?”, which you dismissed");
        assert_eq!(thought.held.len(), 1, "remembered once, for exploration's count");
        let line = serde_json::to_value(thought.critique_of("question:3").unwrap()).unwrap();
        assert_eq!((line["verdict"].as_str(), line["state"].as_str()), (Some("decided"), Some("acted")));

        // The owner's own noise counts everywhere.
        ev.memories[0].origin = Origin::Owner;
        let thought = judge(ideas(&ev, &ctx()), &ev, &Judging { rank: Box::new(plain), ..Judging::plain(ctx().now) });
        assert_eq!(verdict(&thought, "question:1"), Verdict::IgnoredNoise { memory_id: 9 });

        // A person the owner keeps acting on is kept though their words rank it down.
        ev.memories.clear();
        let telling = |dimension, key: &str, estimate| Telling {
            dimension,
            key: key.into(),
            estimate,
            evidence: 5.0,
            says: format!("{dimension:?} says {estimate}"),
        };
        let kept = |idea: &Idea| {
            let mut rank = Rank::plain(0.3);
            rank.overall = 0.6;
            rank.by = Some(telling(Dimension::Words, "proposal", 0.2));
            rank.kept_by = Some(telling(Dimension::Actor, "telegram:ana", 0.9));
            rank.welcome = true;
            Ranked { rank, features: features(idea) }
        };
        let thought = judge(ideas(&ev, &ctx()), &ev, &Judging { rank: Box::new(kept), ..Judging::plain(ctx().now) });
        let c = thought.critique_of("question:1").unwrap();
        assert_eq!(
            (c.verdict.clone(), c.ranked.as_str()),
            (Verdict::Keep, "kept: Actor says 0.9, whatever its words say")
        );
    }

    #[test]
    fn artifacts_are_written_where_spec_says() {
        let dir = tempfile::tempdir().unwrap();
        let ev = evidence();
        let thought = think(&ev, &ctx(), &Judging::plain(ctx().now));
        let dispatch = serde_json::json!({"created": []});
        let run = write_artifacts(dir.path(), "r1", ctx().now, &ev, &thought, &dispatch).unwrap();
        assert_eq!(run, dir.path().join("reflection/runs/r1"));
        for file in
            ["evidence.json", "ideas.jsonl", "critique.jsonl", "decision.json", "recommendation.md", "dispatch.json"]
        {
            assert!(run.join(file).exists(), "{file}");
        }
        let ideas = std::fs::read_to_string(run.join("ideas.jsonl")).unwrap();
        assert_eq!(ideas.lines().count(), thought.ideas.len());
        let decision: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("decision.json")).unwrap()).unwrap();
        assert_eq!(decision[0]["key"], "reminder:1");
        let md = std::fs::read_to_string(run.join("recommendation.md")).unwrap();
        assert!(md.contains("1. **Reminder: call the plumber**"), "{md}");
        write_artifacts(dir.path(), "r2", ctx().now, &ev, &thought, &dispatch).unwrap();
        let journal = std::fs::read_to_string(dir.path().join("reflection/journal/2026-11-18.jsonl")).unwrap();
        assert_eq!(journal.lines().count(), 2);
        assert!(journal.contains("\"run_id\":\"r2\""));
    }
}
