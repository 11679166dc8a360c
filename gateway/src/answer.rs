//! Turning what the owner types (API body, command line) into engine values — an answer
//! into a [`Response`], a state filter into states — with one set of rules and messages
//! for every front end.

use chrono::{DateTime, Utc};
use loopgate_engine::suggestion::{Response, SuggestionState, edited_action};

/// The parts of an answer before they are checked.
#[derive(Debug, Default)]
pub struct AnswerParts<'a> {
    pub response: &'a str,
    /// The new action, or just its new text.
    pub edited_action: Option<&'a serde_json::Value>,
    pub snooze_until: Option<DateTime<Utc>>,
    /// "90m", "3h", "2d".
    pub snooze_for: Option<&'a str>,
}

/// Checks the parts and builds the response. `original_action` is the suggestion's action,
/// which an edit of only the text keeps the rest of.
pub fn response(
    parts: &AnswerParts,
    original_action: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<Response, String> {
    let snoozing = parts.snooze_until.is_some() || parts.snooze_for.is_some();
    if parts.response != "snooze" && snoozing {
        return Err("snooze_until and snooze_for go with the snooze response only".into());
    }
    if parts.response != "edit" && parts.edited_action.is_some() {
        return Err("edited_action goes with the edit response only".into());
    }
    match parts.response {
        "act" => Ok(Response::Act),
        "dismiss" => Ok(Response::Dismiss),
        "edit" => {
            let edit = parts.edited_action.ok_or("edit needs edited_action: the new action, or its new text")?;
            Ok(Response::Edit { action: edited_action(original_action, edit)? })
        }
        "snooze" => {
            let until = match (parts.snooze_until, parts.snooze_for) {
                (Some(until), None) => until,
                (None, Some(span)) => now + snooze_span(span)?,
                (Some(_), Some(_)) => return Err("give snooze_until or snooze_for, not both".into()),
                (None, None) => return Err("snooze needs snooze_until or snooze_for".into()),
            };
            if until <= now {
                return Err("snooze_until must be in the future".into());
            }
            Ok(Response::Snooze { until })
        }
        other => Err(format!("response {other:?} is not one of act, edit, snooze, dismiss")),
    }
}

/// Which suggestions to list: one state, several separated by commas, or `open` (scheduled,
/// active and snoozed). Empty means every state.
pub fn state_filter(text: &str) -> Result<Vec<SuggestionState>, String> {
    let mut states = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "open" {
            states.extend([SuggestionState::Scheduled, SuggestionState::Active, SuggestionState::Snoozed]);
            continue;
        }
        states.push(SuggestionState::parse(name).ok_or_else(|| {
            let names: Vec<_> = SuggestionState::ALL.iter().map(|s| s.as_str()).collect();
            format!("state {name:?} is not one of open, {}", names.join(", "))
        })?);
    }
    Ok(states)
}

fn snooze_span(text: &str) -> Result<chrono::Duration, String> {
    let span = humantime::parse_duration(text.trim()).map_err(|e| format!("snooze_for {text:?}: {e}"))?;
    chrono::Duration::from_std(span)
        .ok()
        .filter(|s| *s <= chrono::Duration::days(366))
        .ok_or_else(|| "snooze_for is longer than a year".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-18T09:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn snoozes_read_spans_and_refuse_the_past() {
        let parts = AnswerParts { response: "snooze", snooze_for: Some("2d"), ..AnswerParts::default() };
        let original = serde_json::json!({"kind": "note"});
        assert_eq!(
            response(&parts, &original, now()).unwrap(),
            Response::Snooze { until: now() + chrono::Duration::days(2) }
        );
        let past = AnswerParts { response: "snooze", snooze_until: Some(now()), ..AnswerParts::default() };
        assert!(response(&past, &original, now()).unwrap_err().contains("future"));
        let long = AnswerParts { response: "snooze", snooze_for: Some("400d"), ..AnswerParts::default() };
        assert!(response(&long, &original, now()).unwrap_err().contains("year"));
    }
}
