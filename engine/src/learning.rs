//! Learning from the owner's answers: what they act on and what they dismiss, along the
//! dimensions an owner decides by, how that ranks the next ideas, and the memory each answer
//! leaves.
//!
//! Evidence is kept per dimension and key — the person (`actor`, "email:ana@example.org"),
//! the conversation, the words an idea is about, its class, its source and the owner-local
//! hour it is shown at — as answer counts: how often the owner acted (an edit counts) and
//! how often they dismissed (an ignored suggestion counts half). Counts fade with a
//! [`HALF_LIFE`], and every answer on a key first weighs that key's earlier answers by
//! [`FORGET`], so the latest few answers count most and a changed owner is heard within a
//! few answers. The hour and the source say when and how something arrived, not what it
//! is: they learn only how far an answer differed from what the idea's person, place,
//! class and words predicted, so an owner who dismisses a kind of suggestion does not teach
//! that the hours it came at are bad. Pure: the store persists the counts.
//!
//! Ranking ([`Weights::rank`]): each dimension estimates the chance the owner acts on an
//! idea like this one, starting from their overall rate ([`PRIOR`] answers' worth) and moved
//! by that key's evidence. The dimension whose estimate stands out most from the overall
//! rate decides, weighted by how specific it is, so a person's own history beats shared
//! words, and a dimension that says nothing (the same class for everything) stays out of
//! the way. Learning never silences: a person or place the owner keeps acting on is not held
//! back by its words, class or source; one in [`EXPLORE_EVERY`] ideas a key holds back is
//! shown anyway, so a change of mind can be seen; and acting on such a one forgets the
//! dismissals that held it back.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::memory::{MemoryCandidate, MemoryKind, Origin};
use crate::signal::Trust;
use crate::suggestion::{Response, Suggestion};

/// How long it takes learned evidence to lose half its weight.
pub const HALF_LIFE: Duration = Duration::days(7);
/// Each answer on a key weighs that key's earlier answers by this: about the last seven
/// answers carry the estimate, so a reversal is followed within a few answers while one
/// inconsistent answer moves it only partway.
pub const FORGET: f64 = 0.85;
/// The overall rate weighs its earlier answers by this on every answer (about the last
/// twenty count): it follows a change in the owner's general mood, more slowly than a key.
pub const OVERALL_FORGET: f64 = 0.95;
/// Every key starts from this many answers at the owner's overall rate: one answer about a
/// new person moves the estimate, it does not settle it.
pub const PRIOR: f64 = 2.0;
/// One in this many ideas a key holds back is shown anyway (exploration), marked as such.
pub const EXPLORE_EVERY: u32 = 10;
/// How many of a key's latest answers are kept to explain it.
pub const RECENT: usize = 10;
/// Words an idea is about, at most: its longest content words.
pub const MAX_WORDS: usize = 4;
/// A person or place is protected from its words, class and source once its estimate is
/// this far above the overall rate, on at least [`PROTECT_EVIDENCE`] answers' worth.
const PROTECT_MARGIN: f64 = 0.1;
const PROTECT_EVIDENCE: f64 = 3.0;
/// A dimension stands out (and is named in the explanation) from this far off the overall
/// rate, after its specificity weight.
const STANDS_OUT: f64 = 0.02;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Who wrote it: "email:ana@example.org" (never the owner).
    Actor,
    /// Where: "telegram:-1001234" (only when it is not the person's direct chat).
    Conversation,
    /// What it is about: one content word per key.
    Words,
    Class,
    Source,
    /// The owner-local hour it is shown at, "9".
    Hour,
    /// Every answer, key "all": the owner's overall rate, what every estimate starts from.
    Overall,
}

impl Dimension {
    pub const ALL: [Dimension; 7] = [
        Dimension::Actor,
        Dimension::Conversation,
        Dimension::Words,
        Dimension::Class,
        Dimension::Source,
        Dimension::Hour,
        Dimension::Overall,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Actor => "actor",
            Dimension::Conversation => "conversation",
            Dimension::Words => "words",
            Dimension::Class => "class",
            Dimension::Source => "source",
            Dimension::Hour => "hour",
            Dimension::Overall => "overall",
        }
    }

    pub fn parse(value: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == value)
    }

    /// How much a dimension's evidence counts against another's: the more specific, the
    /// more. Time of day and class weigh alike; the source says least.
    fn specificity(self) -> f64 {
        match self {
            Dimension::Actor => 1.0,
            Dimension::Conversation => 0.9,
            Dimension::Class | Dimension::Hour => 0.8,
            Dimension::Words => 0.6,
            Dimension::Source => 0.5,
            Dimension::Overall => 0.0,
        }
    }

    /// Which dimension an idea is counted under when several hold it back: the most
    /// specific that is the same for ideas of a kind (the words differ from idea to idea).
    fn holding_order(self) -> u8 {
        match self {
            Dimension::Actor => 0,
            Dimension::Conversation => 1,
            Dimension::Class => 2,
            Dimension::Hour => 3,
            Dimension::Source => 4,
            Dimension::Words => 5,
            Dimension::Overall => 6,
        }
    }

    /// When and through what it arrives, rather than what it is: the hour and the source.
    /// They learn from surprise only (see [`RankingDetail::expected`]).
    fn is_context(self) -> bool {
        matches!(self, Dimension::Hour | Dimension::Source)
    }

    /// The person or the place: what protects an idea from its words, class and source.
    fn is_person_or_place(self) -> bool {
        matches!(self, Dimension::Actor | Dimension::Conversation)
    }
}

/// The key of the owner's overall rate.
pub const OVERALL_KEY: &str = "all";

/// A key's evidence as it was last written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredWeight {
    pub dimension: Dimension,
    pub key: String,
    /// Answers acting on it (edits count), fading with [`HALF_LIFE`] from `updated_at`.
    pub acted: f64,
    /// Answers dismissing it (ignored ones count half), fading alike.
    pub dismissed: f64,
    /// The latest answers, oldest first: `a` act, `e` edit, `s` snooze, `d` dismiss,
    /// `i` ignored.
    pub recent: String,
    /// Every answer ever counted on it.
    pub answers: i64,
    pub updated_at: DateTime<Utc>,
}

impl StoredWeight {
    /// `(acted, dismissed)` at `now`, faded since the last answer.
    pub fn evidence(&self, now: DateTime<Utc>) -> (f64, f64) {
        let fade = fade(self.updated_at, now);
        (self.acted * fade, self.dismissed * fade)
    }

    /// The weight as log-odds of acting from the evidence alone, at `now`: positive when
    /// the owner acts on it more often than not.
    pub fn value(&self, now: DateTime<Utc>) -> f64 {
        let (acted, dismissed) = self.evidence(now);
        ((acted + 1.0) / (dismissed + 1.0)).ln()
    }
}

/// What is left of evidence written at `then`, at `now`; nothing grows when a clock goes back.
pub fn fade(then: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    let elapsed = (now - then).num_seconds().max(0) as f64;
    0.5f64.powf(elapsed / HALF_LIFE.num_seconds() as f64)
}

/// What a suggestion is ranked by, and what an answer to it teaches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Features {
    pub class: String,
    pub source: String,
    /// The owner-local hour it is (to be) shown at.
    pub hour: u32,
    /// "email:ana@example.org"; none for the owner's own words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// "telegram:-1001234"; none when it is the person's direct chat (the actor says it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
    #[serde(default)]
    pub words: Vec<String>,
}

impl Features {
    pub fn keys(&self) -> Vec<(Dimension, String)> {
        let mut keys = Vec::with_capacity(5 + self.words.len());
        keys.extend(self.actor.iter().map(|a| (Dimension::Actor, a.clone())));
        keys.extend(self.conversation.iter().map(|c| (Dimension::Conversation, c.clone())));
        keys.extend(self.words.iter().map(|w| (Dimension::Words, w.clone())));
        keys.push((Dimension::Class, self.class.clone()));
        keys.push((Dimension::Source, self.source.clone()));
        keys.push((Dimension::Hour, self.hour.to_string()));
        keys
    }

    /// Its person and place, as "actor:email:ana@example.org": what an ignored-noise
    /// memory must share with it to count.
    pub fn places(&self) -> Vec<String> {
        let actor = self.actor.iter().map(|a| format!("actor:{a}"));
        actor.chain(self.conversation.iter().map(|c| format!("conversation:{c}"))).collect()
    }
}

/// Words too common to say what something is about.
const STOP_WORDS: &[&str] = &[
    "about", "after", "again", "also", "and", "any", "are", "back", "been", "before", "being", "but", "can", "could",
    "did", "does", "doing", "done", "for", "from", "get", "got", "had", "has", "have", "hello", "her", "here", "him",
    "his", "how", "into", "its", "just", "let", "like", "may", "maybe", "more", "most", "much", "need", "not", "now",
    "off", "once", "only", "other", "our", "out", "over", "please", "should", "some", "soon", "still", "than", "thank",
    "thanks", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "too", "very", "want",
    "was", "were", "what", "when", "where", "which", "who", "why", "will", "with", "would", "yes", "yet", "you",
    "your", "yours",
];

/// What an idea is about: up to [`MAX_WORDS`] content words of its title without the class
/// prefix ("Reply to Dana: “Could you review the proposal draft?”" → proposal, review,
/// draft), longest first.
pub fn topic_words(title: &str) -> Vec<String> {
    let text = noise_content(title);
    let mut words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()) && !w.chars().all(|c| c.is_ascii_digit()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    words.sort_by(|a, b| b.chars().count().cmp(&a.chars().count()).then_with(|| a.cmp(b)));
    words.truncate(MAX_WORDS);
    words
}

#[derive(Debug, Clone, Default, PartialEq)]
struct KeyEvidence {
    acted: f64,
    dismissed: f64,
    recent: String,
}

/// The evidence in force at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    keys: HashMap<(Dimension, String), KeyEvidence>,
}

/// One dimension's say about an idea.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Telling {
    pub dimension: Dimension,
    /// The key it is about (for words, the one that says most).
    pub key: String,
    /// The learned chance the owner acts on something like it.
    pub estimate: f64,
    /// Answers' worth of evidence behind it.
    #[serde(skip)]
    pub evidence: f64,
    /// "you acted on 6 of this sender's last 7".
    pub says: String,
}

/// How an idea ranks by what the owner's answers taught.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rank {
    /// Its confidence scaled by how much likelier (or less likely) than usual the owner
    /// acts on something like it, within 0..1: what critique compares and ranks by.
    pub score: f64,
    /// The learned chance the owner acts on it, and on anything.
    pub estimate: f64,
    pub overall: f64,
    /// The chance by what it is alone (person, place, class, words; not when or where
    /// from): what an answer's surprise for the hour and the source is measured against.
    pub expected: f64,
    /// The dimension that stands out most, if any does.
    pub by: Option<Telling>,
    /// The most specific dimension that argues against it, if any does: what holds it back
    /// for exploration's count. Chosen by specificity, not strength, so the same kind of
    /// idea is counted under the same key from one reflection to the next.
    pub held_by: Option<Telling>,
    /// A person or place the owner keeps acting on, which words, class or source may not
    /// hold back.
    pub kept_by: Option<Telling>,
    /// Its person or place is acted on more than usual: older ignored noise about it is
    /// outdated by newer answers.
    pub welcome: bool,
    /// Whether anything at all was learned about its keys.
    pub learned: bool,
}

impl Rank {
    /// Confidence alone, for ranking without learning.
    pub fn plain(score: f64) -> Rank {
        Rank {
            score,
            estimate: 0.5,
            overall: 0.5,
            expected: 0.5,
            by: None,
            held_by: None,
            kept_by: None,
            welcome: false,
            learned: false,
        }
    }

    /// Why it ranks where it does, for a suggestion that is shown.
    pub fn why(&self) -> String {
        match &self.by {
            Some(t) if t.estimate >= self.overall => format!("ranked up: {}", t.says),
            Some(t) => format!("ranked down: {}", t.says),
            None if self.learned => "as found: nothing you taught stands out for it".to_owned(),
            None => "as found: nothing learned about it yet".to_owned(),
        }
    }

    /// A person or place the owner keeps acting on, when what holds the idea back is only
    /// its words, class or source: then it is kept. Time of day is not overruled: an owner
    /// who wants someone in the morning may still not want them at night.
    pub fn protected(&self) -> Option<&Telling> {
        let by = self.by.as_ref()?;
        matches!(by.dimension, Dimension::Words | Dimension::Class | Dimension::Source)
            .then_some(self.kept_by.as_ref())
            .flatten()
    }

    /// Why it was held back (or, explored, shown all the same).
    pub fn why_held(&self) -> String {
        match &self.by {
            Some(t) => format!("held back: {}", t.says),
            None => "held back: too unsure on its own".to_owned(),
        }
    }
}

impl Weights {
    pub fn at(stored: &[StoredWeight], now: DateTime<Utc>) -> Weights {
        let keys = stored
            .iter()
            .map(|w| {
                let (acted, dismissed) = w.evidence(now);
                ((w.dimension, w.key.clone()), KeyEvidence { acted, dismissed, recent: w.recent.clone() })
            })
            .collect();
        Weights { keys }
    }

    fn get(&self, dimension: Dimension, key: &str) -> Option<&KeyEvidence> {
        self.keys.get(&(dimension, key.to_owned()))
    }

    /// The chance the owner acts on any suggestion, from every answer (one of each to
    /// start: an even chance).
    pub fn overall(&self) -> f64 {
        let e = self.get(Dimension::Overall, OVERALL_KEY).cloned().unwrap_or_default();
        (e.acted + 1.0) / (e.acted + e.dismissed + 2.0)
    }

    /// The chance the owner acts on something with these keys of one dimension: their
    /// evidence (averaged, for several words) on top of [`PRIOR`] answers at `overall`.
    fn estimate(&self, dimension: Dimension, keys: &[String], overall: f64) -> Option<Telling> {
        let found: Vec<(&String, &KeyEvidence)> =
            keys.iter().filter_map(|k| self.get(dimension, k).map(|e| (k, e))).collect();
        if found.is_empty() {
            return None;
        }
        let n = keys.len() as f64;
        let acted = found.iter().map(|(_, e)| e.acted).sum::<f64>() / n;
        let dismissed = found.iter().map(|(_, e)| e.dismissed).sum::<f64>() / n;
        let estimate = (acted + PRIOR * overall) / (acted + dismissed + PRIOR);
        let one = |e: &KeyEvidence| (e.acted + PRIOR * overall) / (e.acted + e.dismissed + PRIOR);
        // The key to name: the one pulling hardest the way the estimate goes.
        let (key, evidence) = if estimate < overall {
            found.iter().min_by(|a, b| one(a.1).total_cmp(&one(b.1)))
        } else {
            found.iter().max_by(|a, b| one(a.1).total_cmp(&one(b.1)))
        }
        .map(|(k, e)| ((*k).clone(), *e))
        .expect("found is not empty");
        let says = says(dimension, &key, &evidence.recent, estimate >= overall);
        Some(Telling { dimension, key, estimate, evidence: acted + dismissed, says })
    }

    /// How an idea of this confidence with these features ranks.
    pub fn rank(&self, features: &Features, confidence: f64) -> Rank {
        let overall = self.overall();
        let mut by_dimension: Vec<(Dimension, Vec<String>)> = Vec::new();
        for (dimension, key) in features.keys() {
            match by_dimension.iter_mut().find(|(d, _)| *d == dimension) {
                Some((_, keys)) => keys.push(key),
                None => by_dimension.push((dimension, vec![key])),
            }
        }
        let tellings: Vec<Telling> =
            by_dimension.iter().filter_map(|(d, keys)| self.estimate(*d, keys, overall)).collect();
        let weight = |t: &Telling| (t.estimate - overall) * t.dimension.specificity();
        let by = tellings
            .iter()
            .filter(|t| weight(t).abs() >= STANDS_OUT)
            .max_by(|a, b| weight(a).abs().total_cmp(&weight(b).abs()))
            .cloned();
        let kept_by = tellings
            .iter()
            .filter(|t| t.dimension.is_person_or_place())
            .filter(|t| t.estimate - overall >= PROTECT_MARGIN && t.evidence >= PROTECT_EVIDENCE)
            .max_by(|a, b| a.estimate.total_cmp(&b.estimate))
            .cloned();
        let welcome = tellings.iter().any(|t| t.dimension.is_person_or_place() && t.estimate > overall);
        let expected = tellings
            .iter()
            .filter(|t| !t.dimension.is_context())
            .max_by(|a, b| weight(a).abs().total_cmp(&weight(b).abs()))
            .map_or(overall, |t| t.estimate);
        let estimate = by.as_ref().map_or(overall, |t| t.estimate);
        let score = (confidence * estimate / overall).clamp(0.0, 1.0);
        let held_by =
            tellings.iter().filter(|t| weight(t) <= -STANDS_OUT).min_by_key(|t| t.dimension.holding_order()).cloned();
        Rank { score, estimate, overall, expected, by, held_by, kept_by, welcome, learned: !tellings.is_empty() }
    }
}

/// "you acted on 6 of this sender's last 7", from a key's latest answers.
fn says(dimension: Dimension, key: &str, recent: &str, up: bool) -> String {
    let n = recent.chars().count();
    let acted = recent.chars().filter(|c| matches!(c, 'a' | 'e')).count();
    let passed = recent.chars().filter(|c| matches!(c, 'd' | 'i')).count();
    let which = match dimension {
        Dimension::Actor => format!("this sender's last {n}"),
        Dimension::Conversation => format!("the last {n} in this conversation"),
        Dimension::Words => format!("the last {n} about “{key}”"),
        Dimension::Class => format!("the last {n} {} suggestions", key.replace('_', " ")),
        Dimension::Source => format!("the last {n} from {key}"),
        Dimension::Hour => format!("the last {n} shown at {key}:00"),
        Dimension::Overall => format!("your last {n}"),
    };
    if n == 0 {
        return format!("learned from your earlier answers ({})", dimension.as_str());
    }
    if up {
        format!("you acted on {acted} of {which}")
    } else if recent.contains('i') {
        format!("you dismissed or let go {passed} of {which}")
    } else {
        format!("you dismissed {passed} of {which}")
    }
}

/// The key an idea was held back by, and whether it was the one shown anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldKey {
    /// A [`Dimension`]'s name, or "memory" for an ignored-noise memory.
    pub dimension: String,
    pub key: String,
}

/// Ideas learning held back before, counted once each, and how many each key has held
/// back since one of its ideas was last shown anyway.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Held {
    ideas: HashSet<String>,
    since_shown: HashMap<(String, String), u32>,
}

/// One idea held back (or shown anyway, `explored`), to be remembered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldIdea {
    pub idea_key: String,
    #[serde(flatten)]
    pub by: HeldKey,
    pub explored: bool,
}

/// What happens to an idea learning would hold back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Held back before: it stays held and is not counted again.
    Already,
    /// Held back, the n-th since the key was last shown.
    Held,
    /// The [`EXPLORE_EVERY`]-th: shown anyway.
    Explored,
}

impl Held {
    /// From remembered rows, oldest first: `(idea_key, dimension, key, explored)`.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, String, String, bool)>) -> Held {
        let mut held = Held::default();
        for (idea, dimension, key, explored) in rows {
            held.ideas.insert(idea);
            let count = held.since_shown.entry((dimension, key)).or_default();
            *count = if explored { 0 } else { *count + 1 };
        }
        held
    }

    /// Whether learning held this idea back before.
    pub fn was_held(&self, idea_key: &str) -> bool {
        self.ideas.contains(idea_key)
    }

    /// Ideas a key has held back since one of them was last shown.
    pub fn since_shown(&self, dimension: &str, key: &str) -> u32 {
        self.since_shown.get(&(dimension.to_owned(), key.to_owned())).copied().unwrap_or(0)
    }

    /// Counts an idea `by` would hold back; every [`EXPLORE_EVERY`]-th new one is shown.
    pub fn hold(&mut self, idea_key: &str, by: &HeldKey) -> Holding {
        if !self.ideas.insert(idea_key.to_owned()) {
            return Holding::Already;
        }
        let count = self.since_shown.entry((by.dimension.clone(), by.key.clone())).or_default();
        *count += 1;
        if *count >= EXPLORE_EVERY {
            *count = 0;
            Holding::Explored
        } else {
            Holding::Held
        }
    }
}

/// One learned key as the owner sees it (`GET /api/learning`, `loopgate learning`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnedKey {
    pub dimension: Dimension,
    pub key: String,
    /// Its evidence now: answers acting on it and dismissing it, faded.
    pub acted: f64,
    pub dismissed: f64,
    /// The chance the owner acts on something with this key, and how far that is from their
    /// overall rate: what ranking weighs (more for a person than for words).
    pub estimate: f64,
    pub lean: f64,
    /// "you acted on 6 of this sender's last 7".
    pub says: String,
    /// The latest answers, oldest first (a act, e edit, s snooze, d dismiss, i ignored).
    pub recent: String,
    pub answers: i64,
    /// Ideas it has held back since one of them was shown to check; the
    /// [`EXPLORE_EVERY`]-th is shown.
    pub held_back: u32,
    pub updated_at: DateTime<Utc>,
}

/// Everything learning knows, per dimension, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    /// The chance the owner acts on any suggestion: where every key's estimate starts.
    pub overall: f64,
    pub answers: i64,
    pub half_life_days: i64,
    /// Each answer on a key weighs its earlier ones by this; the overall rate's, by
    /// `overall_forget`.
    pub forget: f64,
    pub overall_forget: f64,
    pub explore_every: u32,
    /// Strongest lean first within each dimension.
    pub dimensions: std::collections::BTreeMap<&'static str, Vec<LearnedKey>>,
}

/// What learning knows at `now`, optionally of one dimension, at most `limit` keys each.
pub fn overview(
    stored: &[StoredWeight],
    held: &Held,
    now: DateTime<Utc>,
    only: Option<Dimension>,
    limit: usize,
) -> Overview {
    let weights = Weights::at(stored, now);
    let overall = weights.overall();
    let mut dimensions: std::collections::BTreeMap<&'static str, Vec<LearnedKey>> = Default::default();
    for w in stored.iter().filter(|w| w.dimension != Dimension::Overall && only.is_none_or(|d| d == w.dimension)) {
        let (acted, dismissed) = w.evidence(now);
        let estimate = (acted + PRIOR * overall) / (acted + dismissed + PRIOR);
        dimensions.entry(w.dimension.as_str()).or_default().push(LearnedKey {
            dimension: w.dimension,
            key: w.key.clone(),
            acted: round2(acted),
            dismissed: round2(dismissed),
            estimate: round2(estimate),
            lean: round2(estimate - overall),
            says: says(w.dimension, &w.key, &w.recent, estimate >= overall),
            recent: w.recent.clone(),
            answers: w.answers,
            held_back: held.since_shown(w.dimension.as_str(), &w.key),
            updated_at: w.updated_at,
        });
    }
    for keys in dimensions.values_mut() {
        keys.sort_by(|a, b| b.lean.abs().total_cmp(&a.lean.abs()).then_with(|| a.key.cmp(&b.key)));
        keys.truncate(limit);
    }
    let all = stored.iter().find(|w| w.dimension == Dimension::Overall);
    Overview {
        overall: round2(overall),
        answers: all.map_or(0, |w| w.answers),
        half_life_days: HALF_LIFE.num_days(),
        forget: FORGET,
        overall_forget: OVERALL_FORGET,
        explore_every: EXPLORE_EVERY,
        dimensions,
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Why a suggestion ranks where it does, and what an answer to it teaches. Shown in the
/// suggestion as `"ranked": "…"` and `"ranking": {…}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    /// "ranked up: you acted on 6 of this sender's last 7".
    pub ranked: String,
    #[serde(rename = "ranking", default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<RankingDetail>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RankingDetail {
    pub features: Features,
    /// Shown although learning held it back: one in [`EXPLORE_EVERY`] is, so a change of
    /// mind can be seen.
    #[serde(default)]
    pub explored: bool,
    /// What held it back (explored) or what it was ranked by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<HeldKey>,
    /// The learned chance the owner acts on it, and on anything, when it was raised.
    pub estimate: f64,
    pub overall: f64,
    /// The chance the owner acts on it by what it is (person, place, class, words) alone,
    /// when it was raised: the hour and the source learn only how far an answer differs
    /// from this, so they are not blamed for what the class already explains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<f64>,
}

/// One key's share of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Lesson {
    pub dimension: Dimension,
    pub key: String,
    pub acted: f64,
    pub dismissed: f64,
    pub letter: char,
    /// The owner acted on one shown to check a change of mind: the dismissals that held it
    /// back (wherever they outweigh the acts) are forgotten.
    pub forget_dismissals: bool,
}

/// What one answer (or a stale suggestion, `None`) teaches, key by key. `features` are the
/// suggestion's (older suggestions have none: then its class, source and the hour of the
/// answer).
pub fn lessons(response: Option<&Response>, detail: Option<&RankingDetail>, fallback: &Features) -> Vec<Lesson> {
    let (acted, dismissed, letter) = match response {
        Some(Response::Act) => (1.0, 0.0, 'a'),
        // The owner wanted it, just not worded so.
        Some(Response::Edit { .. }) => (1.0, 0.0, 'e'),
        // Right thing, wrong moment: only the time (and a little the source) learns.
        Some(Response::Snooze { .. }) => (0.0, 0.5, 's'),
        Some(Response::Dismiss) => (0.0, 1.0, 'd'),
        // Left stale: a weaker no.
        None => (0.0, 0.5, 'i'),
    };
    let features = detail.map_or(fallback, |d| &d.features);
    let explored = detail.is_some_and(|d| d.explored);
    let changed_mind = explored && acted > 0.0;
    let mut keys = features.keys();
    if explored && acted == 0.0 {
        // Shown only to check: a no confirms what held it back, and says nothing new about
        // the rest of it.
        keys.retain(|(d, k)| {
            detail.and_then(|d| d.by.as_ref()).is_some_and(|by| by.dimension == d.as_str() && &by.key == k)
        });
    }
    if letter == 's' {
        keys.retain(|(d, _)| matches!(d, Dimension::Hour | Dimension::Source));
    }
    let mut lessons: Vec<Lesson> = keys
        .into_iter()
        .map(|(dimension, key)| {
            let share = if letter == 's' && dimension == Dimension::Source { 0.5 } else { 1.0 };
            let (acted, dismissed) = match detail.and_then(|d| d.expected) {
                // Only what the answer says beyond what the idea's kind already said.
                Some(expected) if dimension.is_context() && letter != 's' => {
                    let surprise = acted - expected * (acted + dismissed);
                    (surprise.max(0.0), (-surprise).max(0.0))
                }
                _ => (acted, dismissed * share),
            };
            Lesson { forget_dismissals: changed_mind, dimension, key, acted, dismissed, letter }
        })
        .collect();
    if letter != 's' {
        lessons.push(Lesson {
            dimension: Dimension::Overall,
            key: OVERALL_KEY.to_owned(),
            acted,
            dismissed,
            letter,
            forget_dismissals: false,
        });
    }
    lessons
}

/// A key's evidence after a lesson, from what was stored (if anything) and the time now.
pub fn learned(current: Option<&StoredWeight>, lesson: &Lesson, now: DateTime<Utc>) -> StoredWeight {
    let (mut acted, mut dismissed) = current.map_or((0.0, 0.0), |w| w.evidence(now));
    if lesson.forget_dismissals && dismissed > acted {
        dismissed = 0.0;
    }
    let forget = if lesson.dimension == Dimension::Overall { OVERALL_FORGET } else { FORGET };
    acted *= forget;
    dismissed *= forget;
    let mut recent: String = current.map(|w| w.recent.clone()).unwrap_or_default();
    recent.push(lesson.letter);
    let skip = recent.chars().count().saturating_sub(RECENT);
    StoredWeight {
        dimension: lesson.dimension,
        key: lesson.key.clone(),
        acted: acted + lesson.acted,
        dismissed: dismissed + lesson.dismissed,
        recent: recent.chars().skip(skip).collect(),
        answers: current.map_or(0, |w| w.answers) + 1,
        updated_at: now,
    }
}

/// What the owner's answer teaches memory (SPEC §7): acting confirms a workflow pattern,
/// editing records a correction, dismissing (or ignoring) marks noise. Snoozing teaches only
/// timing, which the weights hold.
pub fn memory_from(response: Option<&Response>, suggestion: &Suggestion) -> Option<MemoryCandidate> {
    let evidence = suggestion.evidence.iter().map(|e| e.signal_id).collect();
    // What the model wrote (a suggestion's title) keeps that provenance in memory.
    let by_model = suggestion.reflector == "model";
    let candidate = |kind, subject: String, content: String, confidence| MemoryCandidate {
        kind,
        subject,
        content,
        confidence,
        origin: if by_model { Origin::Model } else { Origin::Response },
        trust: if by_model { Trust::Untrusted } else { Trust::Trusted },
        evidence,
    };
    match response {
        Some(Response::Act) => Some(candidate(
            MemoryKind::WorkflowPattern,
            format!("suggestion-class:{}", suggestion.class),
            format!("Acts on {} suggestions from {}", suggestion.class.replace('_', " "), suggestion.source),
            0.6,
        )),
        Some(Response::Edit { action }) => Some(candidate(
            MemoryKind::Correction,
            String::new(),
            format!(
                "For “{}” the owner changed the action from {} to {}",
                suggestion.title,
                compact(&suggestion.action),
                compact(action)
            ),
            0.8,
        )),
        Some(Response::Snooze { .. }) => None,
        Some(Response::Dismiss) => {
            Some(candidate(MemoryKind::IgnoredNoise, String::new(), noise_content(&suggestion.title), 0.6))
        }
        None => Some(candidate(MemoryKind::IgnoredNoise, String::new(), noise_content(&suggestion.title), 0.3)),
    }
}

fn compact(value: &serde_json::Value) -> String {
    serde_json::to_string(value).expect("json serializes")
}

/// What an ignored-noise memory says: the title without its class prefix ("Reminder: buy
/// milk" → "buy milk"), so one dismissed reminder does not silence every reminder.
pub fn noise_content(title: &str) -> String {
    let rest = title.split_once(": ").map_or(title, |(_, rest)| rest);
    rest.trim_matches(|c: char| c == '“' || c == '”' || c == '"' || c.is_whitespace()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(days: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + Duration::days(20_000 + days)
    }

    fn features(actor: &str, words: &[&str], hour: u32) -> Features {
        Features {
            class: "unanswered_question".into(),
            source: "email".into(),
            hour,
            actor: Some(format!("email:{actor}")),
            conversation: None,
            words: words.iter().map(|w| (*w).to_owned()).collect(),
        }
    }

    /// Teaches `answers` about `f` at `at`, into `stored`.
    fn teach(
        stored: &mut Vec<StoredWeight>,
        f: &Features,
        response: Option<&Response>,
        explored: Option<HeldKey>,
        at: DateTime<Utc>,
    ) {
        // Ranked as a reflection would have, just before the answer.
        let rank = Weights::at(stored, at).rank(f, 0.75);
        let detail = RankingDetail {
            features: f.clone(),
            explored: explored.is_some(),
            by: explored,
            estimate: rank.estimate,
            overall: rank.overall,
            expected: Some(rank.expected),
        };
        for lesson in lessons(response, Some(&detail), f) {
            let index = stored.iter().position(|w| w.dimension == lesson.dimension && w.key == lesson.key);
            let next = learned(index.map(|i| &stored[i]), &lesson, at);
            match index {
                Some(i) => stored[i] = next,
                None => stored.push(next),
            }
        }
    }

    #[test]
    fn evidence_halves_every_half_life_and_the_latest_answers_weigh_most() {
        let lesson = |letter, acted, dismissed| Lesson {
            dimension: Dimension::Actor,
            key: "email:ana".into(),
            acted,
            dismissed,
            letter,
            forget_dismissals: false,
        };
        let mut w = learned(None, &lesson('a', 1.0, 0.0), t(0));
        assert_eq!(w.evidence(t(7)), (0.5, 0.0));
        assert_eq!(w.evidence(t(-3)), (1.0, 0.0), "no growth from a clock that went back");
        for _ in 0..40 {
            w = learned(Some(&w), &lesson('d', 0.0, 1.0), t(0));
        }
        // Bounded: however many answers, the evidence never exceeds 1 / (1 - FORGET).
        assert!(w.dismissed < 1.0 / (1.0 - FORGET) + 1e-9 && w.dismissed > 6.0, "{w:?}");
        assert!(w.acted < 0.01);
        assert_eq!(w.recent, "dddddddddd", "the last ten answers explain it");
        assert_eq!(w.answers, 41);
        assert!(w.value(t(0)) < -1.5 && w.value(t(70)) > -0.01, "ten half-lives later it is gone");
    }

    #[test]
    fn a_dismissed_sender_is_ranked_down_while_the_same_words_from_others_are_not() {
        let mut stored = Vec::new();
        let words = ["proposal", "review", "draft"];
        let (ana, ben, vendor) =
            (features("ana", &words, 9), features("ben", &words, 9), features("vendor", &words, 9));
        for day in 0..8 {
            teach(&mut stored, &ana, Some(&Response::Act), None, t(day));
            teach(&mut stored, &ben, Some(&Response::Act), None, t(day));
            teach(&mut stored, &vendor, Some(&Response::Dismiss), None, t(day));
        }
        let now = Weights::at(&stored, t(8));
        let colleague = now.rank(&features("ana", &words, 9), 0.75);
        let stranger = now.rank(&features("cem", &words, 9), 0.75);
        let seller = now.rank(&features("vendor", &words, 9), 0.75);
        assert!(colleague.score > 0.75 && stranger.score >= 0.5, "{colleague:?} {stranger:?}");
        assert!(seller.score < 0.4, "held back: {seller:?}");
        let by = seller.by.clone().unwrap();
        assert_eq!((by.dimension, by.key.as_str()), (Dimension::Actor, "email:vendor"));
        assert_eq!(seller.why_held(), "held back: you dismissed 8 of this sender's last 8");
        assert_eq!(colleague.why(), "ranked up: you acted on 8 of this sender's last 8");
        assert!(colleague.kept_by.is_some() && colleague.welcome && !seller.welcome);
    }

    #[test]
    fn the_hour_decides_when_only_the_hour_differs() {
        let mut stored = Vec::new();
        for day in 0..6 {
            for who in ["ana", "ben"] {
                teach(&mut stored, &features(who, &["numbers"], 9), Some(&Response::Act), None, t(day));
                teach(&mut stored, &features(who, &["numbers"], 18), Some(&Response::Dismiss), None, t(day));
            }
        }
        let now = Weights::at(&stored, t(6));
        let evening = now.rank(&features("ana", &["numbers"], 18), 0.75);
        let morning = now.rank(&features("ana", &["numbers"], 9), 0.75);
        assert_eq!(evening.by.as_ref().map(|t| t.dimension), Some(Dimension::Hour), "{evening:?}");
        assert!(evening.score < 0.5 && morning.score > 0.75, "{evening:?} {morning:?}");
        assert!(evening.kept_by.is_none(), "the sender is acted on as often as anyone: no protection");
    }

    #[test]
    fn one_shown_to_check_and_acted_on_forgets_what_held_it_back() {
        let mut stored = Vec::new();
        let vendor = features("vendor", &["invoice"], 9);
        for day in 0..4 {
            teach(&mut stored, &features("ana", &["invoice"], 9), Some(&Response::Act), None, t(day));
            teach(&mut stored, &vendor, Some(&Response::Dismiss), None, t(day));
        }
        assert!(Weights::at(&stored, t(4)).rank(&vendor, 0.75).score < 0.5);
        let by = HeldKey { dimension: "actor".into(), key: "email:vendor".into() };
        // Shown to check and dismissed again: only what held it back learns.
        let before: Vec<_> = stored.iter().filter(|w| w.dimension == Dimension::Words).cloned().collect();
        teach(&mut stored, &vendor, Some(&Response::Dismiss), Some(by.clone()), t(4));
        let after: Vec<_> = stored.iter().filter(|w| w.dimension == Dimension::Words).cloned().collect();
        assert_eq!(before, after);
        // Shown to check and acted on: the owner changed their mind, and the next one shows.
        teach(&mut stored, &vendor, Some(&Response::Act), Some(by), t(5));
        let rank = Weights::at(&stored, t(5)).rank(&vendor, 0.75);
        assert!(rank.score >= 0.5, "{rank:?}");
    }

    #[test]
    fn answers_push_the_right_way() {
        let f = features("ana", &["slides"], 9);
        let sum = |r: Option<&Response>| -> (f64, f64) {
            lessons(r, None, &f)
                .iter()
                .filter(|l| l.dimension != Dimension::Overall)
                .fold((0.0, 0.0), |s, l| (s.0 + l.acted, s.1 + l.dismissed))
        };
        assert!(sum(Some(&Response::Act)).0 > 0.0 && sum(Some(&Response::Act)).1 == 0.0);
        assert!(sum(Some(&Response::Dismiss)).1 > 0.0 && sum(Some(&Response::Dismiss)).0 == 0.0);
        assert!(sum(None).1 > 0.0 && sum(None).1 < sum(Some(&Response::Dismiss)).1, "ignoring is a weaker no");
        let snooze = lessons(Some(&Response::Snooze { until: t(1) }), None, &f);
        assert!(snooze.iter().all(|l| matches!(l.dimension, Dimension::Hour | Dimension::Source)), "{snooze:?}");
    }

    #[test]
    fn one_in_ten_held_back_by_a_key_is_shown_and_each_idea_counts_once() {
        let by = HeldKey { dimension: "actor".into(), key: "email:vendor".into() };
        let mut held = Held::default();
        let outcomes: Vec<Holding> = (0..20).map(|n| held.hold(&format!("question:{n}"), &by)).collect();
        assert_eq!(outcomes.iter().filter(|h| **h == Holding::Explored).count(), 2);
        assert_eq!(outcomes[9], Holding::Explored);
        assert_eq!(held.hold("question:3", &by), Holding::Already, "judged again, counted once");
        let rows = (0..12).map(|n| (format!("q{n}"), "actor".to_owned(), "email:vendor".to_owned(), n == 9));
        let mut again = Held::from_rows(rows);
        assert_eq!(again.since_shown[&("actor".to_owned(), "email:vendor".to_owned())], 2);
        assert_eq!(again.hold("q0", &by), Holding::Already);
    }

    #[test]
    fn topic_words_are_what_the_title_is_about() {
        assert_eq!(
            topic_words("Reply to Dana: “Could you review the proposal draft by Thursday?”"),
            ["proposal", "thursday", "review", "draft"]
        );
        assert_eq!(topic_words("Reminder: buy milk"), ["milk", "buy"]);
        assert!(topic_words("Reply to X: “Can you?”").is_empty());
    }

    #[test]
    fn noise_is_what_the_suggestion_was_about() {
        assert_eq!(noise_content("Reminder: buy milk"), "buy milk");
        assert_eq!(noise_content("Reply to DANA: “Can you review the budget?”"), "Can you review the budget?");
        assert_eq!(noise_content("plain"), "plain");
    }
}
