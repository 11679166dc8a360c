//! The model reflector, beside the deterministic one: the owner's model reads the same
//! evidence (channel text only inside untrusted blocks), proposes ideas and checks them
//! itself; what it returns is parsed into the same [`Idea`]s, validated, and judged like
//! every other idea (critique, policy, room left). Anything malformed is dropped with the
//! reason, and the run goes on.

use serde::Deserialize;
use serde_json::Value;
use sha2::Digest as _;

use super::detect::{Idea, IdeaKind, Reflector};
use super::run::Evidence;
use crate::intelligence::Intelligence;
use crate::model::{Purpose, Request, Role, Turn, UNTRUSTED_RULE, untrusted};

/// Ideas kept from one answer at most.
const MAX_IDEAS: usize = 5;
/// Signals shown to the model at most (the newest).
const MAX_SIGNALS: usize = 60;

/// What the model reflector came to in one run, for the run's record.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ModelReflection {
    pub ideas: usize,
    pub rejected: Vec<String>,
    /// Why it did not run or answered nothing usable.
    pub skipped: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    ideas: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Proposed {
    kind: String,
    title: String,
    why_now: String,
    evidence: Vec<i64>,
    action: Value,
    confidence: f64,
    /// The model's own critique: would the owner want this now?
    keep: bool,
    #[serde(default)]
    critique: String,
}

/// The model's answer as ideas, and why each dropped one was dropped.
pub fn parse_ideas(text: &str, evidence: &Evidence) -> (Vec<Idea>, Vec<String>) {
    let mut rejected = Vec::new();
    let body = text.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
    let answer: Answer = match serde_json::from_str(body) {
        Ok(answer) => answer,
        Err(e) => return (Vec::new(), vec![format!("the answer is not the JSON asked for: {e}")]),
    };
    let mut ideas = Vec::new();
    for (n, raw) in answer.ideas.into_iter().enumerate() {
        let proposed: Proposed = match serde_json::from_value(raw) {
            Ok(p) => p,
            Err(e) => {
                rejected.push(format!("idea {n}: malformed: {e}"));
                continue;
            }
        };
        match validate(&proposed, evidence) {
            Err(why) => {
                rejected.push(format!("idea {n} ({:?}): {why}", proposed.title.chars().take(60).collect::<String>()))
            }
            Ok(_) if !proposed.keep => {
                rejected.push(format!("idea {n}: the model's own critique dropped it: {}", proposed.critique))
            }
            Ok(idea) if ideas.len() < MAX_IDEAS => ideas.push(idea),
            Ok(_) => rejected.push(format!("idea {n}: more than {MAX_IDEAS} ideas")),
        }
    }
    (ideas, rejected)
}

fn validate(p: &Proposed, evidence: &Evidence) -> Result<Idea, String> {
    let kind = match p.kind.as_str() {
        "reminder" => IdeaKind::Reminder,
        "promise" => IdeaKind::Promise,
        "unanswered_question" => IdeaKind::UnansweredQuestion,
        "unreplied_mail" => IdeaKind::UnrepliedMail,
        "watch_item" => IdeaKind::WatchItem,
        "recurring_task" => IdeaKind::RecurringTask,
        other => return Err(format!("unknown kind {other:?}")),
    };
    let title = p.title.trim();
    if !(3..=200).contains(&title.chars().count()) {
        return Err("a title of 3 to 200 characters is needed".into());
    }
    let why_now = p.why_now.trim();
    if why_now.is_empty() || why_now.chars().count() > 500 {
        return Err("a why-now of 1 to 500 characters is needed".into());
    }
    if p.evidence.is_empty() {
        return Err("no evidence".into());
    }
    if let Some(unknown) = p.evidence.iter().find(|id| evidence.signal(**id).is_none()) {
        return Err(format!("evidence {unknown} is not a signal of this run"));
    }
    if !(0.0..=1.0).contains(&p.confidence) || p.confidence.is_nan() {
        return Err("confidence outside 0..1".into());
    }
    loopgate_policies::ActionView::of(&p.action).map_err(|e| format!("the action is not one loopgate knows: {e}"))?;
    let mut ids = p.evidence.clone();
    ids.sort_unstable();
    ids.dedup();
    let digest = sha2::Sha256::digest(format!("{}|{title}|{ids:?}", p.kind).as_bytes());
    let key = format!("model:{}", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
    Ok(Idea {
        reflector: Reflector::Model,
        kind,
        title: title.to_owned(),
        why_now: why_now.to_owned(),
        due: None,
        evidence: ids,
        confidence: p.confidence,
        key,
        topic: None,
        action: p.action.clone(),
    })
}

impl Intelligence {
    /// The model's ideas from the run's evidence; none (and why) without a model, over
    /// budget, or when the answer is unusable.
    pub(crate) async fn model_ideas(&self, evidence: &Evidence) -> (Vec<Idea>, ModelReflection) {
        let mut record = ModelReflection::default();
        if self.model().is_none() {
            record.skipped = Some("no model configured".into());
            return (Vec::new(), record);
        }
        let mut data = String::new();
        for s in evidence.signals.iter().rev().take(MAX_SIGNALS).collect::<Vec<_>>().into_iter().rev() {
            let who = s.actor.as_ref().map_or("someone".to_owned(), |a| {
                let name = a.name.clone().unwrap_or_else(|| a.id.clone());
                if a.is_owner { format!("{name} (the owner)") } else { name }
            });
            data.push_str(&format!("signal {} at {}:\n", s.id, s.occurred_at.to_rfc3339()));
            data.push_str(&untrusted(s.source.as_str(), &who, &s.text));
            data.push('\n');
        }
        let request = Request {
            purpose: Purpose::Reflect,
            system: format!(
                "You help the owner close open loops: questions left unanswered, promises with deadlines, things to \
                 be reminded of, mail to reply to. {UNTRUSTED_RULE} Propose at most {MAX_IDEAS} ideas and critique \
                 each yourself. Answer with one JSON object and nothing else: {{\"ideas\": [{{\"kind\": \
                 \"unanswered_question|promise|reminder|unreplied_mail|watch_item|recurring_task\", \"title\": \
                 \"...\", \"why_now\": \"...\", \"evidence\": [signal ids], \"action\": {{\"kind\": \"message|note|\
                 reminder\", ...}}, \"confidence\": 0.0-1.0, \"keep\": true|false, \"critique\": \"...\"}}]}}. \
                 An action is only a proposal: the owner and the policy decide."
            ),
            turns: vec![Turn { role: Role::User, content: format!("The evidence, oldest first:\n{data}") }],
            max_tokens: 1500,
            json: true,
        };
        match self.ask(&request).await {
            Ok(completion) => {
                let (ideas, rejected) = parse_ideas(&completion.text, evidence);
                for why in &rejected {
                    tracing::warn!(why = %why, "model reflector: an idea was dropped");
                }
                record.ideas = ideas.len();
                record.rejected = rejected;
                (ideas, record)
            }
            Err(error) => {
                tracing::warn!(%error, "model reflector skipped; the deterministic reflector carries on");
                record.skipped = Some(error.to_string());
                (Vec::new(), record)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reflect::fixtures;

    #[test]
    fn valid_ideas_are_kept_and_garbage_is_dropped_with_a_reason() {
        let evidence = fixtures::evidence_with_signal_ids(&[41, 42]);
        let answer = r#"{"ideas": [
            {"kind": "unanswered_question", "title": "Reply to Dana", "why_now": "She asked two days ago",
             "evidence": [42], "action": {"kind": "message", "target": {"channel": "telegram", "conversation": "77"}, "text": ""},
             "confidence": 0.7, "keep": true, "critique": "clearly open"},
            {"kind": "unanswered_question", "title": "Invented", "why_now": "x", "evidence": [999],
             "action": {"kind": "note", "text": "x"}, "confidence": 0.5, "keep": true},
            {"kind": "approve_everything", "title": "Approve all", "why_now": "the message said so", "evidence": [41],
             "action": {"kind": "note", "text": "x"}, "confidence": 0.9, "keep": true},
            {"kind": "promise", "title": "Weak", "why_now": "maybe", "evidence": [41],
             "action": {"kind": "note", "text": "x"}, "confidence": 0.2, "keep": false, "critique": "too thin"},
            {"kind": "promise", "title": "Bad confidence", "why_now": "y", "evidence": [41],
             "action": {"kind": "note", "text": "x"}, "confidence": 7, "keep": true},
            {"kind": "promise", "title": "No action", "why_now": "y", "evidence": [41], "action": {"kind": "launch"},
             "confidence": 0.5, "keep": true},
            "not even an object"
        ]}"#;
        let (ideas, rejected) = parse_ideas(answer, &evidence);
        assert_eq!(ideas.len(), 1, "{rejected:#?}");
        assert_eq!(ideas[0].reflector, Reflector::Model);
        assert_eq!(ideas[0].evidence, [42]);
        assert!(ideas[0].key.starts_with("model:"));
        assert_eq!(rejected.len(), 6, "{rejected:#?}");
        assert!(rejected.iter().any(|r| r.contains("evidence 999 is not a signal")));
        assert!(rejected.iter().any(|r| r.contains("unknown kind \"approve_everything\"")));
        assert!(rejected.iter().any(|r| r.contains("own critique dropped it: too thin")));
        let (none, why) = parse_ideas("Sure! Here are some ideas: ...", &evidence);
        assert!(none.is_empty());
        assert!(why[0].contains("not the JSON asked for"));
        let (fenced, _) = parse_ideas(&format!("```json\n{answer}\n```"), &evidence);
        assert_eq!(fenced.len(), 1, "a fenced answer reads too");
    }
}
