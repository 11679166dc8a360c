//! Learning from the owner's answers: ranking weights and the memories an answer leaves.
//!
//! A weight exists per dimension and key: the suggestion's class ("reminder"), its source
//! ("telegram") and the owner-local hour it is shown at. Every answer nudges them; they are
//! bounded, so no habit becomes unshakeable, and they decay toward zero with a half-life,
//! so old habits fade and a changed owner is heard. Pure: the store persists the values.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::memory::{MemoryCandidate, MemoryKind, Origin};
use crate::signal::Trust;
use crate::suggestion::{Response, Suggestion};

/// How long it takes a learned weight to lose half its strength.
pub const HALF_LIFE: Duration = Duration::days(7);
/// Bounds of one weight. Dismissals may push a class further down than acts push it up:
/// being pestered costs the owner more than missing a nudge.
pub const MIN_WEIGHT: f64 = -2.0;
pub const MAX_WEIGHT: f64 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Class,
    Source,
    Hour,
}

impl Dimension {
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Class => "class",
            Dimension::Source => "source",
            Dimension::Hour => "hour",
        }
    }

    pub fn parse(value: &str) -> Option<Dimension> {
        [Dimension::Class, Dimension::Source, Dimension::Hour].into_iter().find(|d| d.as_str() == value)
    }
}

/// A stored weight as it was last written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWeight {
    pub dimension: Dimension,
    pub key: String,
    pub value: f64,
    pub updated_at: DateTime<Utc>,
}

impl StoredWeight {
    pub fn now(&self, now: DateTime<Utc>) -> f64 {
        decayed(self.value, self.updated_at, now)
    }
}

/// A weight's value at `now`, having decayed since `updated_at`.
pub fn decayed(value: f64, updated_at: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    let elapsed = (now - updated_at).num_seconds().max(0) as f64;
    value * 0.5f64.powf(elapsed / HALF_LIFE.num_seconds() as f64)
}

/// The weights in force at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Weights {
    values: HashMap<(Dimension, String), f64>,
}

impl Weights {
    pub fn at(stored: &[StoredWeight], now: DateTime<Utc>) -> Weights {
        Weights { values: stored.iter().map(|w| ((w.dimension, w.key.clone()), w.now(now))).collect() }
    }

    pub fn get(&self, dimension: Dimension, key: &str) -> f64 {
        self.values.get(&(dimension, key.to_owned())).copied().unwrap_or(0.0)
    }

    /// How much more (above 1) or less (below 1) the owner wants a suggestion of this
    /// class, from this source, at this hour. Time of day counts half: it is the weakest
    /// evidence of the three.
    pub fn factor(&self, class: &str, source: &str, hour: u32) -> f64 {
        let sum = self.get(Dimension::Class, class)
            + self.get(Dimension::Source, source)
            + 0.5 * self.get(Dimension::Hour, &hour.to_string());
        sum.exp()
    }

    /// The score a suggestion of this confidence gets: confidence scaled by the factor,
    /// kept within 0..1.
    pub fn score(&self, confidence: f64, class: &str, source: &str, hour: u32) -> f64 {
        (confidence * self.factor(class, source, hour)).clamp(0.0, 1.0)
    }
}

/// How one answer (or a stale suggestion, `None`) moves the weights.
pub fn nudges(response: Option<&Response>, class: &str, source: &str, hour: u32) -> Vec<(Dimension, String, f64)> {
    let hour = hour.to_string();
    let (class_delta, source_delta, hour_delta) = match response {
        Some(Response::Act) => (0.3, 0.1, 0.05),
        // The owner wanted this, just not worded so.
        Some(Response::Edit { .. }) => (0.2, 0.05, 0.05),
        // Right thing, wrong moment.
        Some(Response::Snooze { .. }) => (0.0, -0.05, -0.1),
        Some(Response::Dismiss) => (-0.3, -0.1, 0.0),
        None => (-0.1, -0.03, -0.03),
    };
    [(Dimension::Class, class.to_owned(), class_delta), (Dimension::Source, source.to_owned(), source_delta)]
        .into_iter()
        .chain(std::iter::once((Dimension::Hour, hour, hour_delta)))
        .filter(|(_, _, delta)| *delta != 0.0)
        .collect()
}

/// A weight after a nudge, from its decayed value, within bounds.
pub fn nudged(current: f64, delta: f64) -> f64 {
    (current + delta).clamp(MIN_WEIGHT, MAX_WEIGHT)
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

    #[test]
    fn weights_halve_every_half_life_and_stay_within_bounds() {
        assert!((decayed(1.0, t(0), t(7)) - 0.5).abs() < 1e-9);
        assert!((decayed(-2.0, t(0), t(14)) + 0.5).abs() < 1e-9);
        assert_eq!(decayed(1.0, t(3), t(0)), 1.0, "no growth from a clock that went back");
        let mut w = 0.0;
        for _ in 0..20 {
            w = nudged(w, -0.3);
        }
        assert_eq!(w, MIN_WEIGHT);
        for _ in 0..20 {
            w = nudged(w, 0.3);
        }
        assert_eq!(w, MAX_WEIGHT);
    }

    #[test]
    fn the_factor_combines_class_source_and_hour() {
        let stored = vec![
            StoredWeight { dimension: Dimension::Class, key: "reminder".into(), value: 0.5, updated_at: t(0) },
            StoredWeight { dimension: Dimension::Source, key: "email".into(), value: -1.0, updated_at: t(0) },
            StoredWeight { dimension: Dimension::Hour, key: "9".into(), value: 1.0, updated_at: t(0) },
        ];
        let now = Weights::at(&stored, t(0));
        assert!((now.factor("reminder", "telegram", 10) - 0.5f64.exp()).abs() < 1e-9);
        assert!((now.factor("reminder", "email", 9) - 0.0f64.exp()).abs() < 1e-9);
        assert_eq!(now.factor("promise", "api", 3), 1.0);
        assert_eq!(now.score(0.9, "reminder", "telegram", 10), 1.0, "capped at 1");
        let later = Weights::at(&stored, t(70));
        assert!((later.factor("reminder", "email", 10) - 1.0).abs() < 0.01, "ten half-lives later it is gone");
    }

    #[test]
    fn answers_push_the_right_way() {
        let sum = |r: Option<&Response>| -> f64 { nudges(r, "c", "s", 9).iter().map(|n| n.2).sum() };
        assert!(sum(Some(&Response::Act)) > 0.0);
        assert!(sum(Some(&Response::Dismiss)) < 0.0);
        assert!(sum(None) < 0.0 && sum(None) > sum(Some(&Response::Dismiss)), "ignoring is a weaker no");
        let snooze = nudges(Some(&Response::Snooze { until: t(1) }), "c", "s", 9);
        assert!(snooze.iter().all(|(d, _, _)| *d != Dimension::Class), "snooze says nothing about the class");
    }

    #[test]
    fn noise_is_what_the_suggestion_was_about() {
        assert_eq!(noise_content("Reminder: buy milk"), "buy milk");
        assert_eq!(noise_content("Reply to DANA: “Can you review the budget?”"), "Can you review the budget?");
        assert_eq!(noise_content("plain"), "plain");
    }
}
