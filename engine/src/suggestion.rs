//! Suggestions: reviewable next actions, their lifecycle, and the owner's responses.
//!
//! ```text
//! scheduled ──due──▶ active ──▶ acted | edited | snoozed | dismissed | ignored | expired | superseded
//!                      ▲                              │
//!                      └──────────── due ─────────────┘
//! ```
//!
//! Only `scheduled` and `active` suggestions can be answered. Every answer is a
//! compare-and-swap on the state: the first wins, and every later one learns who decided,
//! where and when.

use std::fmt;

use chrono::{DateTime, Utc};
use loopgate_policies::{ActionKind, Effect, Risk};
use serde::{Deserialize, Serialize};

use crate::signal::SignalId;

pub type SuggestionId = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionState {
    /// Found, but not due yet (a reminder for tomorrow morning).
    Scheduled,
    Active,
    Acted,
    Edited,
    Snoozed,
    Dismissed,
    /// Shown, left unanswered until it went stale.
    Ignored,
    Expired,
    /// A newer suggestion on the same topic replaced it.
    Superseded,
}

impl SuggestionState {
    pub const ALL: [SuggestionState; 9] = [
        SuggestionState::Scheduled,
        SuggestionState::Active,
        SuggestionState::Acted,
        SuggestionState::Edited,
        SuggestionState::Snoozed,
        SuggestionState::Dismissed,
        SuggestionState::Ignored,
        SuggestionState::Expired,
        SuggestionState::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SuggestionState::Scheduled => "scheduled",
            SuggestionState::Active => "active",
            SuggestionState::Acted => "acted",
            SuggestionState::Edited => "edited",
            SuggestionState::Snoozed => "snoozed",
            SuggestionState::Dismissed => "dismissed",
            SuggestionState::Ignored => "ignored",
            SuggestionState::Expired => "expired",
            SuggestionState::Superseded => "superseded",
        }
    }

    pub fn parse(value: &str) -> Option<SuggestionState> {
        SuggestionState::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// States an answer may still change.
    pub fn is_answerable(self) -> bool {
        matches!(self, SuggestionState::Scheduled | SuggestionState::Active)
    }

    /// States that may still come back to the owner.
    pub fn is_open(self) -> bool {
        matches!(self, SuggestionState::Scheduled | SuggestionState::Active | SuggestionState::Snoozed)
    }
}

impl fmt::Display for SuggestionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One signal behind a suggestion, with a line a person can read without opening it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceLine {
    pub signal_id: SignalId,
    pub summary: String,
}

/// Who answered, through which channel ("api", "cli", "telegram", ...), and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub by: String,
    pub via: String,
    pub at: DateTime<Utc>,
}

/// One posted copy of a suggestion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Surface {
    pub channel: String,
    pub surface_ref: String,
    /// The suggestion's revision it shows.
    pub revision: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub id: SuggestionId,
    pub title: String,
    pub why_now: String,
    pub evidence: Vec<EvidenceLine>,
    /// The reflector's certainty, 0..1.
    pub confidence: f64,
    /// Confidence weighted by what the owner taught; suggestions are shown in this order.
    pub score: f64,
    pub action: serde_json::Value,
    /// The action's risk class, by policy.
    pub risk: Risk,
    /// What policy said of the action when it was raised: `allow` runs when the owner acts,
    /// `ask` waits for an explicit approval first.
    pub policy: Effect,
    pub class: String,
    pub source: String,
    /// Which reflector raised it: `deterministic`, or `model`.
    pub reflector: String,
    pub state: SuggestionState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub snoozed_until: Option<DateTime<Utc>>,
    pub due_at: Option<DateTime<Utc>>,
    pub surfaced_at: Option<DateTime<Utc>>,
    pub revision: i64,
    pub decision: Option<Decision>,
    pub edited_action: Option<serde_json::Value>,
    pub surfaces: Vec<Surface>,
    /// The reflection that raised it.
    pub run_id: String,
    /// The loop it is about; never raised twice.
    pub key: String,
    /// Why it ranks where it does (`"ranked": "ranked up: you acted on 6 of this sender's
    /// last 7"`) and what an answer to it teaches (`"ranking": {…}`).
    #[serde(flatten)]
    pub ranking: crate::learning::Ranking,
}

/// The owner's answer. Ignoring is inferred, never sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Act,
    Edit { action: serde_json::Value },
    Snooze { until: DateTime<Utc> },
    Dismiss,
}

impl Response {
    pub fn name(&self) -> &'static str {
        match self {
            Response::Act => "act",
            Response::Edit { .. } => "edit",
            Response::Snooze { .. } => "snooze",
            Response::Dismiss => "dismiss",
        }
    }

    pub fn resulting_state(&self) -> SuggestionState {
        match self {
            Response::Act => SuggestionState::Acted,
            Response::Edit { .. } => SuggestionState::Edited,
            Response::Snooze { .. } => SuggestionState::Snoozed,
            Response::Dismiss => SuggestionState::Dismissed,
        }
    }
}

/// Largest edited action accepted, as JSON.
const MAX_ACTION_BYTES: usize = 16 * 1024;

/// The action an edit asks for: a whole action object `{kind, …}`, or just new text for
/// the suggested action (what a chat reply or an email line gives).
pub fn edited_action(original: &serde_json::Value, edit: &serde_json::Value) -> Result<serde_json::Value, String> {
    let action = match edit {
        serde_json::Value::String(text) => {
            let text = text.trim();
            if text.is_empty() {
                return Err("the edited text is empty".into());
            }
            let mut action = original.clone();
            action["text"] = text.into();
            action
        }
        serde_json::Value::Object(fields) => {
            match fields.get("kind").and_then(|k| k.as_str()) {
                Some(kind) if ActionKind::parse(kind).is_some() => {}
                Some(kind) => {
                    let kinds: Vec<_> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
                    return Err(format!("action kind {kind:?} is not one of {}", kinds.join(", ")));
                }
                None => return Err("the edited action has no \"kind\"".into()),
            }
            edit.clone()
        }
        _ => return Err("edited_action must be an action object {kind, …} or the new text".into()),
    };
    if action.to_string().len() > MAX_ACTION_BYTES {
        return Err(format!("the edited action is longer than {MAX_ACTION_BYTES} bytes"));
    }
    Ok(action)
}

/// Who is answering, once authorized, and through which channel ("api", "cli",
/// "telegram", ...). The API token and the shell are the owner's; a channel's users are
/// [`Claimant`]s until the engine has checked them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responder {
    pub by: String,
    pub via: String,
}

/// Someone on a chat channel pressing a button or replying: who the platform says they
/// are. Only the engine decides whether they may answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    pub channel: String,
    /// The platform's id for them (a Telegram user id, an email address).
    pub user_id: String,
    /// How to name them in "decided by …", if the platform gave a name.
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RespondError {
    #[error("no suggestion {0}")]
    NotFound(SuggestionId),
    /// Not the owner nor an account allowed to answer on that channel; nothing changed.
    #[error("{user_id} on {channel} may not answer suggestions")]
    Unauthorized { channel: String, user_id: String },
    /// Someone answered first (or it went stale); nothing changed.
    #[error("already decided: {}", describe_decided(.state, .decision.as_ref(), .snoozed_until.as_ref()))]
    AlreadyDecided { state: SuggestionState, decision: Option<Decision>, snoozed_until: Option<DateTime<Utc>> },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<sqlx::Error> for RespondError {
    fn from(error: sqlx::Error) -> RespondError {
        RespondError::Store(error.into())
    }
}

fn describe_decided(
    state: &SuggestionState,
    decision: Option<&Decision>,
    snoozed_until: Option<&DateTime<Utc>>,
) -> String {
    let mut text = state.to_string();
    if let Some(d) = decision {
        text.push_str(&format!(" via {} by {} at {}", d.via, d.by, d.at.format("%Y-%m-%d %H:%M UTC")));
    }
    if let (SuggestionState::Snoozed, Some(until)) = (state, snoozed_until) {
        text.push_str(&format!(", back at {}", until.format("%Y-%m-%d %H:%M UTC")));
    }
    text
}

/// What a response did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Responded {
    pub suggestion: Suggestion,
    /// Memory written because of it, if distillation kept it.
    pub memory_id: Option<i64>,
    /// The task acting (or editing) created: run at once, waiting for an approval, or
    /// refused by policy.
    pub task: Option<crate::actions::Task>,
}

/// Events channels consume to keep their surfaces true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// Post it: new, or back from snooze or schedule.
    Show,
    /// It changed without an answer (expired, ignored, superseded): update the surfaces.
    Update,
    /// Someone answered: update every surface to show who, where and when.
    Decided,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Show => "show",
            DeliveryKind::Update => "update",
            DeliveryKind::Decided => "decided",
        }
    }

    pub fn parse(value: &str) -> Option<DeliveryKind> {
        [DeliveryKind::Show, DeliveryKind::Update, DeliveryKind::Decided].into_iter().find(|k| k.as_str() == value)
    }
}

/// One event for channels, with the suggestion as it is now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub kind: DeliveryKind,
    /// The revision the event was raised at; older than the suggestion's when it changed
    /// again since (a channel may then skip straight to the latest).
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub suggestion: Suggestion,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_only_live_ones_take_answers() {
        for state in SuggestionState::ALL {
            assert_eq!(SuggestionState::parse(state.as_str()), Some(state));
        }
        assert!(SuggestionState::Active.is_answerable() && SuggestionState::Scheduled.is_answerable());
        assert!(!SuggestionState::Snoozed.is_answerable() && SuggestionState::Snoozed.is_open());
        assert!(!SuggestionState::Dismissed.is_open());
    }

    #[test]
    fn edits_replace_the_text_or_the_whole_action() {
        let original = serde_json::json!({"kind": "message", "target": {"channel": "telegram"}, "text": ""});
        let text = edited_action(&original, &"On my way".into()).unwrap();
        assert_eq!(
            text,
            serde_json::json!({"kind": "message", "target": {"channel": "telegram"}, "text": "On my way"})
        );
        let whole = serde_json::json!({"kind": "note", "text": "done"});
        assert_eq!(edited_action(&original, &whole).unwrap(), whole);
        assert!(edited_action(&original, &"  ".into()).is_err());
        assert!(edited_action(&original, &serde_json::json!({"kind": "shell"})).unwrap_err().contains("not one of"));
        assert!(edited_action(&original, &serde_json::json!({"text": "x"})).is_err());
        assert!(edited_action(&original, &serde_json::json!(42)).is_err());
        assert!(edited_action(&original, &"x".repeat(20_000).into()).is_err());
    }

    #[test]
    fn already_decided_says_who_where_and_when() {
        let at = DateTime::parse_from_rfc3339("2026-11-18T10:00:00Z").unwrap().with_timezone(&Utc);
        let error = RespondError::AlreadyDecided {
            state: SuggestionState::Acted,
            decision: Some(Decision { by: "ana".into(), via: "telegram".into(), at }),
            snoozed_until: None,
        };
        assert_eq!(error.to_string(), "already decided: acted via telegram by ana at 2026-11-18 10:00 UTC");
    }
}
