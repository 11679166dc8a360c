//! The heartbeat's decision: on a tick, given what is new since the last pulse, whether to
//! stay idle, wait, reflect, or dispatch what is due.
//!
//! Pure: the caller gathers the counts and the state; [`decide`] applies the rules in one
//! documented order, so every outcome carries the reason that produced it.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// How the heartbeat is tuned (`[heartbeat]` and `[owner]` in the configuration).
#[derive(Debug, Clone)]
pub struct Rules {
    /// Minimum time between two reflections.
    pub cooldown: Duration,
    /// Shorter wait after a reflection that failed, so a passing fault heals quickly.
    pub cooldown_after_failure: Duration,
    /// Reflections per local day.
    pub daily_budget: u32,
    /// New actionable signals that justify thinking on their own.
    pub actionable_threshold: usize,
    pub timezone: Tz,
    pub quiet_hours: Option<QuietHours>,
}

/// What the heartbeat remembers between pulses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub last_reflection_at: Option<DateTime<Utc>>,
    pub last_reflection_failed: bool,
    /// Reflections so far on the local day of `now`.
    pub reflections_today: u32,
    /// The kill switch.
    pub paused: bool,
}

/// What is new since the last pulse, as counted by the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    /// New or merged signals since the cursor.
    pub new_signals: usize,
    /// Of those, ones that may need the owner (questions, requests, mail from people).
    pub actionable: usize,
    /// Assigned work (open loops, promises) whose follow-up time has come.
    pub followups_due: usize,
    /// Snoozed suggestions and scheduled items whose time has come.
    pub due_items: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing worth a thought.
    Idle { reason: String },
    /// Something may be worth it, but not now.
    Deferred { reason: String, until: Option<DateTime<Utc>> },
    /// Run a reflection.
    Reflect { reason: String },
    /// Nothing to think about, but due items to surface again.
    Dispatch { reason: String },
}

/// Decides one pulse. A manual pulse (`loopgate pulse`) skips the cooldown, the budget and
/// quiet hours, never the kill switch, and reflects even on a quiet ledger.
pub fn decide(rules: &Rules, state: &State, pending: Pending, now: DateTime<Utc>, manual: bool) -> Outcome {
    if state.paused {
        return Outcome::Deferred { reason: "paused by the kill switch; resume to continue".into(), until: None };
    }
    if manual {
        return Outcome::Reflect { reason: "run by hand".into() };
    }
    if let Some(end) = quiet_until(rules, now) {
        return Outcome::Deferred { reason: "quiet hours".into(), until: Some(end) };
    }
    let mut reasons = Vec::new();
    if pending.actionable >= rules.actionable_threshold {
        reasons.push(format!("{} new actionable signals", pending.actionable));
    }
    if pending.followups_due > 0 {
        reasons.push(format!("{} follow-up(s) due", pending.followups_due));
    }
    if reasons.is_empty() {
        return if pending.due_items > 0 {
            Outcome::Dispatch { reason: format!("{} snoozed or scheduled item(s) due", pending.due_items) }
        } else if pending.new_signals == 0 {
            Outcome::Idle { reason: "nothing new since the last pulse".into() }
        } else {
            Outcome::Idle {
                reason: format!(
                    "{} new signal(s), {} actionable: below the threshold of {}",
                    pending.new_signals, pending.actionable, rules.actionable_threshold
                ),
            }
        };
    }
    let reason = reasons.join(", ");
    if let Some(last) = state.last_reflection_at {
        let cooldown = if state.last_reflection_failed { rules.cooldown_after_failure } else { rules.cooldown };
        if now < last + cooldown {
            return Outcome::Deferred { reason: format!("{reason}; cooling down"), until: Some(last + cooldown) };
        }
    }
    if state.reflections_today >= rules.daily_budget {
        return Outcome::Deferred {
            reason: format!("{reason}; today's budget of {} reflections is spent", rules.daily_budget),
            until: Some(next_local_midnight(rules.timezone, now)),
        };
    }
    // Due items ride along: the reflection surfaces them too.
    Outcome::Reflect { reason }
}

/// The end of the quiet window `now` is in, if it is in one.
fn quiet_until(rules: &Rules, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let quiet = rules.quiet_hours?;
    let local = now.with_timezone(&rules.timezone);
    let time = local.time();
    if !quiet.contains(time) {
        return None;
    }
    let end_date = if time < quiet.end { local.date_naive() } else { local.date_naive() + Duration::days(1) };
    rules.timezone.from_local_datetime(&end_date.and_time(quiet.end)).earliest().map(|t| t.with_timezone(&Utc))
}

/// A daily window in the owner's time zone; may wrap past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: chrono::NaiveTime,
    pub end: chrono::NaiveTime,
}

impl QuietHours {
    pub fn parse(text: &str) -> Result<QuietHours, String> {
        let (start, end) = text.split_once('-').ok_or_else(|| format!("{text:?} is not a range of two times"))?;
        let time = |t: &str| {
            chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map_err(|_| format!("{:?} is not a time like 22:00", t.trim()))
        };
        let (start, end) = (time(start)?, time(end)?);
        if start == end {
            return Err(format!("{text:?} starts and ends at the same time"));
        }
        Ok(QuietHours { start, end })
    }

    pub fn contains(&self, time: chrono::NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }
}

fn next_local_midnight(tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = now.with_timezone(&tz).date_naive() + Duration::days(1);
    tz.from_local_datetime(&tomorrow.and_time(NaiveTime::MIN))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now + Duration::days(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            cooldown: Duration::minutes(30),
            cooldown_after_failure: Duration::minutes(5),
            daily_budget: 12,
            actionable_threshold: 3,
            timezone: chrono_tz::Europe::Berlin,
            quiet_hours: Some(QuietHours::parse("22:00-07:00").unwrap()),
        }
    }

    /// Berlin local time on Wednesday 2026-11-18.
    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 11, 18, hour, minute, 0).unwrap().with_timezone(&Utc)
    }

    fn busy() -> Pending {
        Pending { new_signals: 5, actionable: 3, followups_due: 0, due_items: 0 }
    }

    fn kind(outcome: &Outcome) -> &'static str {
        match outcome {
            Outcome::Idle { .. } => "idle",
            Outcome::Deferred { .. } => "deferred",
            Outcome::Reflect { .. } => "reflect",
            Outcome::Dispatch { .. } => "dispatch",
        }
    }

    #[test]
    fn nothing_new_is_idle_and_a_little_is_still_idle() {
        let outcome = decide(&rules(), &State::default(), Pending::default(), at(10, 0), false);
        assert_eq!(outcome, Outcome::Idle { reason: "nothing new since the last pulse".into() });
        let some = Pending { new_signals: 4, actionable: 2, ..Pending::default() };
        let Outcome::Idle { reason } = decide(&rules(), &State::default(), some, at(10, 0), false) else { panic!() };
        assert!(reason.contains("below the threshold of 3"), "{reason}");
    }

    #[test]
    fn enough_actionable_signals_or_a_due_follow_up_reflect() {
        assert_eq!(kind(&decide(&rules(), &State::default(), busy(), at(10, 0), false)), "reflect");
        let followup = Pending { new_signals: 0, actionable: 0, followups_due: 1, due_items: 0 };
        let outcome = decide(&rules(), &State::default(), followup, at(10, 0), false);
        assert_eq!(outcome, Outcome::Reflect { reason: "1 follow-up(s) due".into() });
    }

    #[test]
    fn due_items_alone_are_dispatched_without_thinking() {
        let due = Pending { due_items: 2, ..Pending::default() };
        assert_eq!(kind(&decide(&rules(), &State::default(), due, at(10, 0), false)), "dispatch");
    }

    #[test]
    fn cooldown_is_shorter_after_a_failure() {
        let recent = State { last_reflection_at: Some(at(9, 50)), ..State::default() };
        let Outcome::Deferred { until, .. } = decide(&rules(), &recent, busy(), at(10, 0), false) else { panic!() };
        assert_eq!(until, Some(at(10, 20)));
        let failed = State { last_reflection_failed: true, ..recent.clone() };
        assert_eq!(kind(&decide(&rules(), &failed, busy(), at(10, 0), false)), "reflect");
        assert_eq!(kind(&decide(&rules(), &recent, busy(), at(10, 20), false)), "reflect");
    }

    #[test]
    fn the_daily_budget_defers_to_local_midnight() {
        let spent = State { reflections_today: 12, ..State::default() };
        let Outcome::Deferred { reason, until } = decide(&rules(), &spent, busy(), at(15, 0), false) else { panic!() };
        assert!(reason.contains("budget"), "{reason}");
        let midnight = chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 11, 19, 0, 0, 0).unwrap().with_timezone(&Utc);
        assert_eq!(until, Some(midnight));
    }

    #[test]
    fn quiet_hours_defer_until_they_end() {
        let Outcome::Deferred { until, .. } = decide(&rules(), &State::default(), busy(), at(23, 30), false) else {
            panic!()
        };
        let seven = chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 11, 19, 7, 0, 0).unwrap().with_timezone(&Utc);
        assert_eq!(until, Some(seven));
        let Outcome::Deferred { until, .. } = decide(&rules(), &State::default(), busy(), at(6, 0), false) else {
            panic!()
        };
        assert_eq!(until, Some(at(7, 0)));
        assert_eq!(kind(&decide(&rules(), &State::default(), busy(), at(7, 0), false)), "reflect");
    }

    #[test]
    fn quiet_hours_wrap_midnight() {
        let q = QuietHours::parse("22:00-07:00").unwrap();
        let t = |h, m| chrono::NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(q.contains(t(23, 0)) && q.contains(t(6, 59)) && !q.contains(t(7, 0)) && !q.contains(t(12, 0)));
        let day = QuietHours::parse("12:00-13:30").unwrap();
        assert!(day.contains(t(12, 0)) && !day.contains(t(13, 30)));
        assert!(QuietHours::parse("07:00-07:00").is_err());
    }

    #[test]
    fn a_manual_pulse_skips_cooldown_budget_and_quiet_hours_but_not_the_kill_switch() {
        let constrained = State { last_reflection_at: Some(at(23, 50)), reflections_today: 99, ..State::default() };
        let outcome = decide(&rules(), &constrained, Pending::default(), at(23, 55), true);
        assert_eq!(outcome, Outcome::Reflect { reason: "run by hand".into() });
        let paused = State { paused: true, ..State::default() };
        assert_eq!(kind(&decide(&rules(), &paused, busy(), at(10, 0), true)), "deferred");
        assert_eq!(kind(&decide(&rules(), &paused, busy(), at(10, 0), false)), "deferred");
    }
}
