//! Signals and a context for the reflector's tests: Wednesday 2026-11-18, 10:15 in Berlin.

use chrono::{Duration, TimeZone, Utc};

use super::detect::Context;
use crate::signal::{Actor, Conversation, Family, Signal, SignalId, SignalKind, Source, Trust, Urgency};

/// Wednesday 2026-11-18, 10:15 in Berlin.
pub fn ctx() -> Context {
    Context {
        now: chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 11, 18, 10, 15, 0).unwrap().with_timezone(&Utc),
        timezone: chrono_tz::Europe::Berlin,
        answer_grace: Duration::hours(2),
        approval_ageing: Duration::hours(4),
    }
}

pub struct S<'a> {
    pub id: SignalId,
    pub who: Option<(&'a str, bool)>,
    pub chat: Option<(&'a str, Option<&'a str>)>,
    pub minutes_ago: i64,
    pub text: &'a str,
}

pub fn signal(s: S) -> Signal {
    let at = ctx().now - Duration::minutes(s.minutes_ago);
    Signal {
        id: s.id,
        source: Source::parse("telegram").unwrap(),
        kind: SignalKind::parse("message").unwrap(),
        family: Family::Message,
        external_id: None,
        actor: s.who.map(|(id, is_owner)| Actor { id: id.into(), name: Some(id.to_uppercase()), is_owner }),
        conversation: s.chat.map(|(id, title)| Conversation {
            id: id.into(),
            title: title.map(Into::into),
            thread_id: None,
            reply_to: None,
        }),
        text: s.text.into(),
        urgency: Urgency::Normal,
        trust: Trust::Untrusted,
        occurred_at: at,
        attachments: vec![],
        payload: None,
        fingerprint: String::new(),
        count: 1,
        first_seen: at,
        last_seen: at,
        expires_at: at,
        seq: s.id,
    }
}

/// Evidence holding one plain signal per id.
pub fn evidence_with_signal_ids(ids: &[SignalId]) -> super::run::Evidence {
    super::run::Evidence {
        signals: ids
            .iter()
            .map(|id| {
                signal(S { id: *id, who: Some(("dana", false)), chat: Some(("77", None)), minutes_ago: 60, text: "hi" })
            })
            .collect(),
        ..super::run::Evidence::default()
    }
}
