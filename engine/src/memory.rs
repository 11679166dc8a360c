//! Memory: what loopgate knows about its owner, and how a new piece of knowledge is
//! distilled into it.
//!
//! Everything that learns (reflection, responses to suggestions, the owner's own
//! `/remember`) proposes a [`MemoryCandidate`]. [`distill`] decides, purely, whether it
//! becomes a new memory, strengthens or replaces an existing one, or is rejected.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::signal::{SignalId, Trust, normalize_text};

/// Longest memory content. Memories are statements, not documents.
pub const MAX_CONTENT_BYTES: usize = 4096;
const MAX_SUBJECT_BYTES: usize = 256;
/// Below this a candidate from anyone but the owner is noise, not knowledge.
pub const MIN_CONFIDENCE: f64 = 0.15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    Preference,
    WorkflowPattern,
    OpenLoop,
    Correction,
    RecurringTask,
    IgnoredNoise,
    WatchItem,
    Constraint,
}

impl MemoryKind {
    pub const ALL: [MemoryKind; 8] = [
        MemoryKind::Preference,
        MemoryKind::WorkflowPattern,
        MemoryKind::OpenLoop,
        MemoryKind::Correction,
        MemoryKind::RecurringTask,
        MemoryKind::IgnoredNoise,
        MemoryKind::WatchItem,
        MemoryKind::Constraint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MemoryKind::Preference => "preference",
            MemoryKind::WorkflowPattern => "workflow_pattern",
            MemoryKind::OpenLoop => "open_loop",
            MemoryKind::Correction => "correction",
            MemoryKind::RecurringTask => "recurring_task",
            MemoryKind::IgnoredNoise => "ignored_noise",
            MemoryKind::WatchItem => "watch_item",
            MemoryKind::Constraint => "constraint",
        }
    }

    pub fn parse(value: &str) -> Result<MemoryKind, MemoryError> {
        MemoryKind::ALL.into_iter().find(|k| k.as_str() == value).ok_or_else(|| {
            let names: Vec<_> = MemoryKind::ALL.iter().map(|k| k.as_str()).collect();
            MemoryError::Invalid(format!("kind {value:?} is not one of {}", names.join(", ")))
        })
    }
}

impl fmt::Display for MemoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a memory came from. Together with [`Trust`] it tells later readers (reflection,
/// a model) whether the words are the owner's or someone else's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Added by the owner (API, CLI, `/remember`).
    Owner,
    /// Learned from the owner's answer to a suggestion.
    Response,
    /// Found by reflection over signals.
    Reflection,
    /// Taken from channel text (other people's words).
    Channel,
    /// Proposed by a language model.
    Model,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Owner => "owner",
            Origin::Response => "response",
            Origin::Reflection => "reflection",
            Origin::Channel => "channel",
            Origin::Model => "model",
        }
    }

    pub fn parse(value: &str) -> Option<Origin> {
        [Origin::Owner, Origin::Response, Origin::Reflection, Origin::Channel, Origin::Model]
            .into_iter()
            .find(|o| o.as_str() == value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error("{0}")]
    Invalid(String),
}

/// A proposed memory, before distillation.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryCandidate {
    pub kind: MemoryKind,
    pub subject: String,
    pub content: String,
    /// 0..1: how sure the proposer is.
    pub confidence: f64,
    pub origin: Origin,
    pub trust: Trust,
    /// Signals it was learned from.
    pub evidence: Vec<SignalId>,
}

impl MemoryCandidate {
    /// What the owner asks loopgate to remember: certain and trusted.
    pub fn from_owner(kind: MemoryKind, content: impl Into<String>) -> MemoryCandidate {
        MemoryCandidate {
            kind,
            subject: String::new(),
            content: content.into(),
            confidence: 1.0,
            origin: Origin::Owner,
            trust: Trust::Trusted,
            evidence: Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), MemoryError> {
        let content = self.content.trim();
        if content.is_empty() {
            return Err(MemoryError::Invalid("content is empty".into()));
        }
        if content.len() > MAX_CONTENT_BYTES {
            return Err(MemoryError::Invalid(format!("content is longer than {MAX_CONTENT_BYTES} bytes")));
        }
        if self.subject.len() > MAX_SUBJECT_BYTES {
            return Err(MemoryError::Invalid(format!("subject is longer than {MAX_SUBJECT_BYTES} bytes")));
        }
        if !(0.0..=1.0).contains(&self.confidence) || self.confidence.is_nan() {
            return Err(MemoryError::Invalid("confidence must be between 0 and 1".into()));
        }
        Ok(())
    }

    /// The same statement, however it is spaced or capitalised, has one key.
    pub fn content_key(&self) -> String {
        content_key(&self.content)
    }
}

pub fn content_key(content: &str) -> String {
    let digest = Sha256::digest(normalize_text(content).as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

pub type MemoryId = i64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub id: MemoryId,
    pub kind: MemoryKind,
    pub subject: String,
    pub content: String,
    pub confidence: f64,
    pub stability: i64,
    pub origin: Origin,
    pub trust: Trust,
    pub evidence: Vec<SignalId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What distillation decided for a candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Distilled {
    /// Becomes a new memory.
    Accept,
    /// Confirms `id`: same statement again. Confidence and stability grow.
    Reinforce {
        id: MemoryId,
        confidence: f64,
    },
    /// Replaces what `id` said about the same subject: the owner changed their mind.
    Supersede {
        id: MemoryId,
    },
    Reject(Rejection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// Too unsure to keep.
    LowConfidence,
    /// The owner told loopgate to forget exactly this.
    Forgotten,
    /// A guess would overwrite something the owner said themselves.
    OwnerKnowsBetter,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::LowConfidence => "confidence is too low to remember",
            Rejection::Forgotten => "the owner asked to forget this",
            Rejection::OwnerKnowsBetter => "it would overwrite what the owner said",
        })
    }
}

/// Decides a candidate's fate, given the memory of the same kind that says the same thing
/// (`same_content`), the one about the same subject (`same_subject`), and whether the owner
/// forgot this statement before.
///
/// The owner's own words are always accepted. Anything else needs some confidence, may not
/// resurrect what the owner forgot, and may not overwrite a statement of the owner's.
pub fn distill(
    candidate: &MemoryCandidate,
    same_content: Option<&Memory>,
    same_subject: Option<&Memory>,
    forgotten: bool,
) -> Distilled {
    let by_owner = candidate.origin == Origin::Owner;
    if !by_owner && candidate.confidence < MIN_CONFIDENCE {
        return Distilled::Reject(Rejection::LowConfidence);
    }
    if let Some(existing) = same_content {
        // Independent confirmations combine like probabilities: 0.6 and 0.6 make 0.84.
        let confidence = 1.0 - (1.0 - existing.confidence) * (1.0 - candidate.confidence);
        return Distilled::Reinforce { id: existing.id, confidence: confidence.min(1.0) };
    }
    if !by_owner && forgotten {
        return Distilled::Reject(Rejection::Forgotten);
    }
    if let Some(existing) = same_subject.filter(|_| !candidate.subject.is_empty()) {
        if existing.origin == Origin::Owner && !by_owner {
            return Distilled::Reject(Rejection::OwnerKnowsBetter);
        }
        return Distilled::Supersede { id: existing.id };
    }
    Distilled::Accept
}

/// The answer to "remember this".
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RememberOutcome {
    Created { memory: Memory },
    Reinforced { memory: Memory },
    Superseded { memory: Memory },
    Rejected { reason: Rejection },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(origin: Origin, confidence: f64, subject: &str, content: &str) -> MemoryCandidate {
        MemoryCandidate {
            kind: MemoryKind::Preference,
            subject: subject.into(),
            content: content.into(),
            confidence,
            origin,
            trust: Trust::Untrusted,
            evidence: vec![],
        }
    }

    fn memory(id: MemoryId, origin: Origin, confidence: f64, subject: &str) -> Memory {
        Memory {
            id,
            kind: MemoryKind::Preference,
            subject: subject.into(),
            content: "x".into(),
            confidence,
            stability: 1,
            origin,
            trust: Trust::Trusted,
            evidence: vec![],
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn kinds_round_trip_and_unknown_kinds_list_the_valid_ones() {
        for kind in MemoryKind::ALL {
            assert_eq!(MemoryKind::parse(kind.as_str()).unwrap(), kind);
        }
        let err = MemoryKind::parse("hobby").unwrap_err().to_string();
        assert!(err.contains("hobby") && err.contains("ignored_noise"), "{err}");
    }

    #[test]
    fn the_owner_is_always_heard() {
        let c = candidate(Origin::Owner, 0.01, "", "likes tea");
        assert_eq!(distill(&c, None, None, true), Distilled::Accept);
    }

    #[test]
    fn weak_guesses_are_rejected() {
        let c = candidate(Origin::Reflection, 0.1, "", "likes tea");
        assert_eq!(distill(&c, None, None, false), Distilled::Reject(Rejection::LowConfidence));
        let c = candidate(Origin::Reflection, MIN_CONFIDENCE, "", "likes tea");
        assert_eq!(distill(&c, None, None, false), Distilled::Accept);
    }

    #[test]
    fn the_same_statement_reinforces() {
        let c = candidate(Origin::Reflection, 0.6, "", "likes tea");
        let existing = memory(3, Origin::Reflection, 0.6, "");
        let Distilled::Reinforce { id, confidence } = distill(&c, Some(&existing), None, false) else { panic!() };
        assert_eq!(id, 3);
        assert!((confidence - 0.84).abs() < 1e-9);
    }

    #[test]
    fn forgotten_statements_stay_forgotten_unless_the_owner_repeats_them() {
        let c = candidate(Origin::Reflection, 0.9, "", "likes tea");
        assert_eq!(distill(&c, None, None, true), Distilled::Reject(Rejection::Forgotten));
        let c = candidate(Origin::Owner, 1.0, "", "likes tea");
        assert_eq!(distill(&c, None, None, true), Distilled::Accept);
    }

    #[test]
    fn a_new_statement_about_the_same_subject_supersedes_unless_the_owner_said_it() {
        let c = candidate(Origin::Response, 0.7, "meeting-time", "prefers afternoons");
        let learned = memory(5, Origin::Response, 0.5, "meeting-time");
        assert_eq!(distill(&c, None, Some(&learned), false), Distilled::Supersede { id: 5 });
        let said = memory(6, Origin::Owner, 1.0, "meeting-time");
        assert_eq!(distill(&c, None, Some(&said), false), Distilled::Reject(Rejection::OwnerKnowsBetter));
        let owner = candidate(Origin::Owner, 1.0, "meeting-time", "prefers mornings");
        assert_eq!(distill(&owner, None, Some(&said), false), Distilled::Supersede { id: 6 });
    }

    #[test]
    fn validation() {
        assert!(candidate(Origin::Owner, 1.0, "", "  ").validate().is_err());
        assert!(candidate(Origin::Owner, 1.5, "", "x").validate().is_err());
        assert!(candidate(Origin::Owner, f64::NAN, "", "x").validate().is_err());
        assert!(candidate(Origin::Owner, 1.0, "", &"x".repeat(MAX_CONTENT_BYTES + 1)).validate().is_err());
        assert_eq!(content_key("Likes  TEA"), content_key("likes tea"));
    }
}
