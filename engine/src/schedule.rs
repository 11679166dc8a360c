//! Cron schedules kept in the store: which occurrence is due on the owner's wall clock, and
//! the loop that runs each occurrence at most once, across restarts and clock changes.
//! Workflows (`gateway/src/workflows.rs`) and the email digest run on it.
//!
//! A pattern is read on the wall clock of a time zone, which on two nights a year does not
//! move like real time. In real (UTC) instants:
//!
//! - **Clocks go back** (a local time happens twice): a pattern anchored to some hours
//!   (`30 1 * * *`, `0 7,19 * * *`) runs at the first of the two instants only, so a daily
//!   job runs once that night. A pattern that matches every hour (`0 * * * *`,
//!   `*/15 * * * *`) runs in both passes: it follows elapsed time, and the repeated hour is
//!   a real hour.
//! - **Clocks go forward** (a local time never happens): an anchored pattern runs once, at
//!   the first instant after the gap (`30 1 * * *` in Europe/London on 2026-03-29 runs at
//!   02:00 BST, 01:00 UTC); an every-hour pattern has no occurrence in the gap.
//! - An occurrence runs only if it lies strictly after the saved one, and it is saved before
//!   the job starts: each occurrence runs at most once, even if a crash interrupts the job.
//! - After downtime only the newest missed occurrence runs, once (a catch-up), not one run
//!   per missed occurrence.
//!
//! croner 3 handles DST itself, but it resolves a repeated local time to its earlier instant
//! even when that lies before the start of the search (see the tests): a loop that saved
//! "now" found the same occurrence again and again (issue 16). So croner only finds
//! wall-clock times here (on UTC, where it does no DST handling) and this module maps them
//! to instants.

use std::future::Future;
use std::time::Duration;

use chrono::{
    DateTime, FixedOffset, LocalResult, NaiveDateTime, Offset as _, TimeDelta, TimeZone as _, Timelike as _, Utc,
};
use chrono_tz::Tz;
use croner::Cron;
use tokio::sync::watch;

use crate::Store;

/// The furthest a wall clock jumps at once (DST shifts are 30 minutes to 2 hours). Near a
/// jump, wall-clock order and real order differ by at most this much.
const SHIFT: TimeDelta = TimeDelta::hours(3);
/// How finely the offset is probed for a jump near an instant; jumps are months apart.
const PROBE: TimeDelta = TimeDelta::minutes(15);
/// Bounds one search (an every-second pattern near a jump looks at about 22,000).
const MAX_CANDIDATES: u32 = 100_000;
/// A zone that changes sides of the date line skips a whole day.
const LONGEST_GAP_MINUTES: u32 = 48 * 60;
/// [`Due::Run`] counts at most this many missed occurrences.
pub const MISSED_COUNTED: u32 = 1_000;
/// The longest sleep between looks, so that a changed clock (or a test's) is seen.
const MAX_WAIT: Duration = Duration::from_secs(30);
const MIN_WAIT: Duration = Duration::from_millis(100);
/// The wait after the store failed.
const RETRY: Duration = Duration::from_secs(5);

/// What a schedule should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Run `occurrence`, the newest one not after now; `missed` older ones since the last
    /// run are not run (counted up to [`MISSED_COUNTED`]).
    Run { occurrence: DateTime<Utc>, missed: u32 },
    /// Nothing is due before `until`, the next occurrence.
    Wait { until: DateTime<Utc> },
    /// The pattern never matches again.
    Never,
}

/// The first occurrence strictly after `after`, as an instant; `None` when there is none.
pub fn next_after(cron: &Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    nearest(cron, tz, after, Towards::Later)
}

/// The newest occurrence at or before `at`.
pub fn latest_at_or_before(cron: &Cron, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    nearest(cron, tz, at, Towards::Earlier)
}

/// What is due at `now` when the last occurrence run (or the moment the schedule started)
/// is `last`: only occurrences strictly after `last` count, and of those not after `now`
/// only the newest runs.
pub fn due(cron: &Cron, tz: Tz, last: DateTime<Utc>, now: DateTime<Utc>) -> Due {
    let Some(first) = next_after(cron, tz, last) else { return Due::Never };
    if first > now {
        return Due::Wait { until: first };
    }
    let occurrence = latest_at_or_before(cron, tz, now).map_or(first, |newest| newest.max(first));
    let (mut missed, mut older) = (0, first);
    while older < occurrence && missed < MISSED_COUNTED {
        missed += 1;
        match next_after(cron, tz, older) {
            Some(next) => older = next,
            None => break,
        }
    }
    Due::Run { occurrence, missed }
}

/// A cron schedule whose position (the last occurrence run) is kept in the store.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Names the schedule in logs: a workflow's name, `digest`.
    pub name: String,
    pub cron: Cron,
    /// The pattern is read on this zone's wall clock.
    pub timezone: Tz,
    /// Where the position is kept, RFC 3339: `channel_state(channel, key)`.
    pub channel: String,
    pub key: String,
}

impl Schedule {
    /// Runs `job` with each due occurrence until `stop` turns true, or for ever (until the
    /// pattern has no next occurrence). The job's outcome is its own business: an
    /// occurrence counts as run once the job started.
    pub async fn run<F, Fut>(&self, store: &Store, mut stop: watch::Receiver<bool>, mut job: F)
    where
        F: FnMut(DateTime<Utc>) -> Fut,
        Fut: Future<Output = ()>,
    {
        while let Some(wait) = self.poll(store, &mut job).await {
            if sleep_or_stop(wait.max(MIN_WAIT), &mut stop).await {
                return;
            }
        }
    }

    /// One look at the store's clock: runs `job` if an occurrence is due, and says how long
    /// to wait before the next look (`None`: never again).
    pub async fn poll<F, Fut>(&self, store: &Store, job: &mut F) -> Option<Duration>
    where
        F: FnMut(DateTime<Utc>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let now = store.clock().now();
        let saved = match store.channel_state(&self.channel, &self.key).await {
            Ok(saved) => saved,
            Err(error) => {
                tracing::warn!(schedule = %self.name, %error, "cannot read the schedule's position; retrying");
                return Some(RETRY);
            }
        };
        let last = match saved.as_deref().map(DateTime::parse_from_rfc3339) {
            Some(Ok(last)) => last.to_utc(),
            unreadable_or_absent => {
                if let Some(Err(error)) = unreadable_or_absent {
                    tracing::warn!(schedule = %self.name, %error, "the schedule's position is unreadable; starting from now");
                }
                // From now on: occurrences before the schedule existed are history, not due.
                if let Err(error) = store.set_channel_state(&self.channel, &self.key, &now.to_rfc3339()).await {
                    tracing::warn!(schedule = %self.name, %error, "cannot save the schedule's start; retrying");
                    return Some(RETRY);
                }
                now
            }
        };
        match due(&self.cron, self.timezone, last, now) {
            Due::Wait { until } => Some((until - now).to_std().unwrap_or_default().min(MAX_WAIT)),
            Due::Never => {
                tracing::error!(schedule = %self.name, "the schedule has no next occurrence; stopped");
                None
            }
            Due::Run { occurrence, missed } => {
                // Saved before the job starts: a crash during the job does not run it again.
                if let Err(error) = store.set_channel_state(&self.channel, &self.key, &occurrence.to_rfc3339()).await {
                    tracing::warn!(schedule = %self.name, %error, "cannot save the occurrence; not run yet");
                    return Some(RETRY);
                }
                if missed > 0 {
                    tracing::info!(schedule = %self.name, %occurrence, missed, "occurrences missed while down; the newest runs once");
                } else {
                    tracing::debug!(schedule = %self.name, %occurrence, "occurrence due");
                }
                job(occurrence).await;
                Some(Duration::ZERO)
            }
        }
    }
}

/// Sleeps `wait`; true when `stop` is (or turns) true.
async fn sleep_or_stop(wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(wait) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Towards {
    Later,
    Earlier,
}

/// The nearest occurrence strictly after `t` (later) or at or before it (earlier). Walks
/// the pattern's wall-clock times in order from `t`'s own, maps each to its instants and
/// keeps the best; near a jump the two orders differ, so the walk starts [`SHIFT`] further
/// out and goes on [`SHIFT`] past the best.
fn nearest(cron: &Cron, tz: Tz, t: DateTime<Utc>, towards: Towards) -> Option<DateTime<Utc>> {
    let later = towards == Towards::Later;
    let every_hour = cron.pattern.hours.is_all_set();
    let wall = t.with_timezone(&tz).naive_local().with_nanosecond(0)?;
    let start = margin(tz, t);
    let mut cursor = if later { wall - start } else { wall + start };
    let mut inclusive = true;
    // The best instant so far, the wall-clock time it came from, and how far past that
    // time a wall-clock time can still be a better instant.
    let mut best: Option<(DateTime<Utc>, NaiveDateTime, TimeDelta)> = None;
    for _ in 0..MAX_CANDIDATES {
        let found = if later {
            cron.find_next_occurrence(&cursor.and_utc(), inclusive)
        } else {
            cron.find_previous_occurrence(&cursor.and_utc(), inclusive)
        };
        let Ok(found) = found else { break };
        let local = found.naive_utc();
        (cursor, inclusive) = (local, false);
        if let Some((_, from, slack)) = best
            && (if later { local > from + slack } else { local < from - slack })
        {
            break;
        }
        for instant in instants(tz, local, every_hour).into_iter().flatten() {
            let eligible = if later { instant > t } else { instant <= t };
            let better = best.is_none_or(|(b, ..)| if later { instant < b } else { instant > b });
            if eligible && better {
                best = Some((instant, local, margin(tz, instant)));
            }
        }
    }
    best.map(|(instant, ..)| instant)
}

/// [`SHIFT`] when the zone's offset changes within [`SHIFT`] of `t`, else nothing.
fn margin(tz: Tz, t: DateTime<Utc>) -> TimeDelta {
    let offset = offset_at(tz, t);
    let mut probe = t - SHIFT;
    while probe <= t + SHIFT {
        if offset_at(tz, probe) != offset {
            return SHIFT;
        }
        probe += PROBE;
    }
    TimeDelta::zero()
}

fn offset_at(tz: Tz, t: DateTime<Utc>) -> FixedOffset {
    tz.offset_from_utc_datetime(&t.naive_utc()).fix()
}

/// The instants at which the wall-clock time `local` is an occurrence, by the rules in the
/// module's documentation.
fn instants(tz: Tz, local: NaiveDateTime, every_hour: bool) -> [Option<DateTime<Utc>>; 2] {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => [Some(at.to_utc()), None],
        LocalResult::Ambiguous(first, repeat) => [Some(first.to_utc()), every_hour.then(|| repeat.to_utc())],
        LocalResult::None if every_hour => [None, None],
        LocalResult::None => [after_gap(tz, local), None],
    }
}

/// The first instant after the gap (clocks going forward) that `local` falls in.
fn after_gap(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let exists = |t: NaiveDateTime| tz.from_local_datetime(&t).earliest();
    let mut minute = local;
    for _ in 0..LONGEST_GAP_MINUTES {
        minute += TimeDelta::minutes(1);
        if exists(minute).is_some() {
            // The gap ended within the last minute; step back to its first second.
            let mut first = minute;
            while exists(first - TimeDelta::seconds(1)).is_some() {
                first -= TimeDelta::seconds(1);
            }
            return exists(first).map(|at| at.to_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::sync::Arc;

    use chrono::NaiveTime;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::London;
    use proptest::prelude::*;

    use super::*;
    use crate::{ManualClock, StoreConfig};

    fn cron(pattern: &str) -> Cron {
        pattern.parse().expect("a cron pattern")
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().expect("an RFC 3339 instant")
    }

    fn run(occurrence: &str, missed: u32) -> Due {
        Due::Run { occurrence: utc(occurrence), missed }
    }

    fn wait(until: &str) -> Due {
        Due::Wait { until: utc(until) }
    }

    /// The occurrences in `(from, to]`, one `next_after` at a time.
    fn between(cron: &Cron, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        std::iter::successors(next_after(cron, tz, from), |&t| next_after(cron, tz, t))
            .take_while(|&t| t <= to)
            .collect()
    }

    #[test]
    fn croner_alone_answers_an_instant_before_the_start_on_the_night_clocks_go_back() {
        // Why croner only finds wall-clock times here: from 01:10 GMT (the second pass
        // through 01:xx) it answers the first pass's 01:30 BST, 00:30 UTC, in the past.
        let daily = cron("30 1 * * *");
        let start = utc("2026-10-25T01:10:00Z").with_timezone(&London);
        assert_eq!(daily.find_next_occurrence(&start, false).unwrap().to_utc(), utc("2026-10-25T00:30:00Z"));
        // On the night clocks go forward it runs a fixed time right after the gap, as here.
        let start = utc("2026-03-28T12:00:00Z").with_timezone(&London);
        assert_eq!(daily.find_next_occurrence(&start, false).unwrap().to_utc(), utc("2026-03-29T01:00:00Z"));
    }

    #[test]
    fn london_clocks_back_runs_a_daily_time_once_that_night_and_once_the_next() {
        let daily = cron("30 1 * * *");
        // 01:30 BST on the 25th is 00:30 UTC; an hour later it is 01:30 again, in GMT.
        assert_eq!(
            due(&daily, London, utc("2026-10-24T00:30:00Z"), utc("2026-10-25T00:30:00Z")),
            run("2026-10-25T00:30:00Z", 0)
        );
        let last = utc("2026-10-25T00:30:00Z");
        for now in [
            "2026-10-25T00:45:00Z",
            "2026-10-25T01:10:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-25T01:45:00Z",
            "2026-10-26T01:29:59Z",
        ] {
            assert_eq!(due(&daily, London, last, utc(now)), wait("2026-10-26T01:30:00Z"), "at {now}");
        }
        assert_eq!(due(&daily, London, last, utc("2026-10-26T01:30:00Z")), run("2026-10-26T01:30:00Z", 0));
        assert_eq!(
            between(&daily, London, utc("2026-10-24T12:00:00Z"), utc("2026-10-26T12:00:00Z")),
            [utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]
        );
    }

    #[test]
    fn a_saved_now_from_the_old_loop_does_not_run_the_night_again() {
        // What the loop before this module saved: "now", 01:10 GMT, in the second pass.
        let saved = utc("2026-10-25T01:10:07.123Z");
        for now in ["2026-10-25T01:10:08Z", "2026-10-25T01:30:00Z", "2026-10-25T01:45:00Z"] {
            assert_eq!(due(&cron("30 1 * * *"), London, saved, utc(now)), wait("2026-10-26T01:30:00Z"), "at {now}");
        }
    }

    #[test]
    fn london_clocks_forward_runs_once_at_the_first_instant_after_the_gap() {
        // On 2026-03-29 01:00 GMT becomes 02:00 BST: 01:30 never happens; 02:00 BST is 01:00 UTC.
        let daily = cron("30 1 * * *");
        let last = utc("2026-03-28T01:30:00Z");
        assert_eq!(due(&daily, London, last, utc("2026-03-29T00:59:59Z")), wait("2026-03-29T01:00:00Z"));
        assert_eq!(due(&daily, London, last, utc("2026-03-29T01:00:00Z")), run("2026-03-29T01:00:00Z", 0));
        for now in ["2026-03-29T01:00:01Z", "2026-03-29T01:30:00Z", "2026-03-29T02:30:00Z"] {
            assert_eq!(
                due(&daily, London, utc("2026-03-29T01:00:00Z"), utc(now)),
                wait("2026-03-30T00:30:00Z"),
                "at {now}"
            );
        }
    }

    #[test]
    fn new_york_clocks_back_runs_a_daily_time_once_that_night_and_once_the_next() {
        // On 2026-11-01 02:00 EDT becomes 01:00 EST: 01:30 is 05:30 UTC, then 06:30 UTC.
        let daily = cron("30 1 * * *");
        assert_eq!(
            due(&daily, New_York, utc("2026-10-31T05:30:00Z"), utc("2026-11-01T05:30:00Z")),
            run("2026-11-01T05:30:00Z", 0)
        );
        let last = utc("2026-11-01T05:30:00Z");
        for now in ["2026-11-01T06:10:00Z", "2026-11-01T06:30:00Z", "2026-11-01T06:45:00Z"] {
            assert_eq!(due(&daily, New_York, last, utc(now)), wait("2026-11-02T06:30:00Z"), "at {now}");
        }
        assert_eq!(due(&daily, New_York, last, utc("2026-11-02T06:30:00Z")), run("2026-11-02T06:30:00Z", 0));
    }

    #[test]
    fn new_york_clocks_forward_runs_once_at_the_first_instant_after_the_gap() {
        // On 2026-03-08 02:00 EST becomes 03:00 EDT (07:00 UTC): 01:30 is unaffected, 02:30
        // never happens and runs at 03:00 EDT.
        let early = cron("30 1 * * *");
        assert_eq!(
            due(&early, New_York, utc("2026-03-07T06:30:00Z"), utc("2026-03-08T06:30:00Z")),
            run("2026-03-08T06:30:00Z", 0)
        );
        assert_eq!(
            due(&early, New_York, utc("2026-03-08T06:30:00Z"), utc("2026-03-08T08:00:00Z")),
            wait("2026-03-09T05:30:00Z")
        );
        let in_gap = cron("30 2 * * *");
        let last = utc("2026-03-07T07:30:00Z");
        assert_eq!(due(&in_gap, New_York, last, utc("2026-03-08T06:59:59Z")), wait("2026-03-08T07:00:00Z"));
        assert_eq!(due(&in_gap, New_York, last, utc("2026-03-08T07:00:00Z")), run("2026-03-08T07:00:00Z", 0));
        assert_eq!(
            due(&in_gap, New_York, utc("2026-03-08T07:00:00Z"), utc("2026-03-08T07:30:00Z")),
            wait("2026-03-09T06:30:00Z")
        );
    }

    #[test]
    fn a_catch_up_after_three_days_down_runs_the_newest_once() {
        let daily = cron("30 1 * * *");
        let (last, now) = (utc("2026-06-01T00:30:00Z"), utc("2026-06-04T12:00:00Z"));
        assert_eq!(due(&daily, London, last, now), run("2026-06-04T00:30:00Z", 2));
        assert_eq!(due(&daily, London, utc("2026-06-04T00:30:00Z"), now), wait("2026-06-05T00:30:00Z"));
    }

    #[test]
    fn every_hour_patterns_run_both_passes_of_the_repeated_hour_and_never_repeat() {
        let (from, to) = (utc("2026-10-24T22:00:00Z"), utc("2026-10-25T04:00:00Z"));
        // 00:00 UTC is 01:00 BST, 01:00 UTC is 01:00 GMT: both are real hours.
        let hourly = cron("0 * * * *");
        let hours: Vec<_> = (23..=28).map(|h| utc("2026-10-24T00:00:00Z") + TimeDelta::hours(h)).collect();
        assert_eq!(between(&hourly, London, from, to), hours);
        let quarterly = cron("*/15 * * * *");
        let quarters = between(&quarterly, London, from, to);
        assert_eq!(quarters.len(), 24);
        assert!(quarters.windows(2).all(|w| w[1] - w[0] == TimeDelta::minutes(15)), "{quarters:?}");
        // From any saved instant, in either pass, nothing at or before it is due.
        for (pattern, tz) in [(&hourly, London), (&quarterly, London), (&hourly, New_York), (&quarterly, New_York)] {
            let mut saved = utc("2026-10-24T22:00:07Z");
            while saved < utc("2026-11-01T09:00:00Z") {
                let next = next_after(pattern, tz, saved).unwrap();
                assert!(next > saved && next - saved <= TimeDelta::hours(1), "{saved} → {next}");
                for later in [1, 59, 61, 180] {
                    if let Due::Run { occurrence, .. } = due(pattern, tz, saved, saved + TimeDelta::minutes(later)) {
                        assert!(occurrence > saved, "{saved} + {later} min → {occurrence}");
                    }
                }
                saved += TimeDelta::minutes(7);
                if saved > utc("2026-10-25T06:00:00Z") && saved < utc("2026-11-01T03:00:00Z") {
                    saved = utc("2026-11-01T03:00:07Z");
                }
            }
        }
    }

    #[test]
    fn a_pattern_anchored_to_some_hours_runs_once_per_wall_clock_time() {
        // Twice a day at 01:00 and 13:00: once (the first pass) on the night clocks go back,
        // at 02:00 BST on the night they go forward.
        let twice = cron("0 1,13 * * *");
        assert_eq!(
            between(&twice, London, utc("2026-10-24T23:00:00Z"), utc("2026-10-25T14:00:00Z")),
            [utc("2026-10-25T00:00:00Z"), utc("2026-10-25T13:00:00Z")]
        );
        assert_eq!(
            between(&twice, London, utc("2026-03-28T23:00:00Z"), utc("2026-03-29T13:00:00Z")),
            [utc("2026-03-29T01:00:00Z"), utc("2026-03-29T12:00:00Z")]
        );
    }

    #[test]
    fn the_newest_at_or_before_agrees_with_walking_forward() {
        for (pattern, tz) in [("30 1 * * *", London), ("*/15 * * * *", London), ("30 2 * * *", New_York)] {
            let cron = cron(pattern);
            for night in
                ["2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z", "2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z"]
            {
                let walked = between(&cron, tz, utc(night) - TimeDelta::days(3), utc(night) + TimeDelta::hours(30));
                let mut at = utc(night) - TimeDelta::hours(30);
                while at < utc(night) + TimeDelta::hours(30) {
                    let newest = walked.iter().take_while(|&&t| t <= at).last().copied();
                    assert_eq!(latest_at_or_before(&cron, tz, at), newest, "{pattern} at {at}");
                    at += TimeDelta::minutes(11);
                }
            }
        }
    }

    #[tokio::test]
    async fn the_runner_saves_the_occurrence_before_the_job_and_runs_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(utc("2026-10-24T23:00:00Z"));
        let config = StoreConfig::new(format!("sqlite://{}/schedule.db", dir.path().display()));
        let store = Store::open(&config, Arc::new(clock.clone())).await.unwrap();
        let schedule = Schedule {
            name: "nightly".into(),
            cron: cron("30 1 * * *"),
            timezone: London,
            channel: "workflow".into(),
            key: "nightly:last_run".into(),
        };
        let runs = RefCell::new(Vec::new());
        let mut job = |occurrence| {
            let (store, runs) = (&store, &runs);
            async move {
                let saved = store.channel_state("workflow", "nightly:last_run").await.unwrap();
                runs.borrow_mut().push((occurrence, saved));
            }
        };
        // The first look saves where the schedule starts: nothing before it is due.
        let first = schedule.poll(&store, &mut job).await.unwrap();
        assert!(first <= MAX_WAIT, "{first:?}");
        assert_eq!(
            store.channel_state("workflow", "nightly:last_run").await.unwrap().as_deref(),
            Some("2026-10-24T23:00:00+00:00")
        );
        let times = [
            "2026-10-25T00:30:05Z",
            "2026-10-25T01:10:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-25T01:45:00Z",
            "2026-10-26T01:30:01Z",
        ];
        for now in times {
            clock.set(utc(now));
            let mut looks = 0;
            while schedule.poll(&store, &mut job).await == Some(Duration::ZERO) {
                looks += 1;
                assert!(looks < 3, "ran again and again at {now}");
            }
        }
        let runs = runs.into_inner();
        assert_eq!(
            runs,
            [
                (utc("2026-10-25T00:30:00Z"), Some("2026-10-25T00:30:00+00:00".to_owned())),
                (utc("2026-10-26T01:30:00Z"), Some("2026-10-26T01:30:00+00:00".to_owned())),
            ]
        );
        store.close().await;
    }

    const ZONES: [Tz; 12] = [
        chrono_tz::Europe::London,
        chrono_tz::America::New_York,
        chrono_tz::Australia::Adelaide,
        chrono_tz::Asia::Kolkata,
        chrono_tz::Australia::Lord_Howe,
        chrono_tz::America::Santiago,
        chrono_tz::Pacific::Auckland,
        chrono_tz::Asia::Kathmandu,
        chrono_tz::America::St_Johns,
        chrono_tz::America::Havana,
        chrono_tz::Europe::Berlin,
        chrono_tz::Asia::Tokyo,
    ];

    /// Daily patterns with their wall-clock time, then the rest.
    const DAILY: [(&str, u32, u32); 5] = [
        ("30 1 * * *", 1, 30),
        ("0 2 * * *", 2, 0),
        ("0 0 * * *", 0, 0),
        ("45 23 * * *", 23, 45),
        ("30 2 * * *", 2, 30),
    ];
    const OTHER: [&str; 3] = ["*/15 * * * *", "0 * * * *", "0 1,13 * * *"];

    /// Roughly (within 3 hours) when `tz`'s offset changes in 2026–2027.
    fn jumps(tz: Tz) -> Vec<DateTime<Utc>> {
        let mut at = utc("2026-01-01T00:00:00Z");
        let mut jumps = Vec::new();
        while at < utc("2028-01-01T00:00:00Z") {
            if offset_at(tz, at) != offset_at(tz, at + TimeDelta::hours(3)) {
                jumps.push(at);
            }
            at += TimeDelta::hours(3);
        }
        jumps
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// A loop polling every 1–10 minutes for three days, half the time across a jump of
        /// the clock: the saved occurrence only grows, each occurrence runs once, in the poll
        /// after it, and a daily pattern runs on every day exactly once.
        #[test]
        fn a_polling_loop_runs_each_occurrence_once(
            zone in 0..ZONES.len(),
            pattern in 0..DAILY.len() + OTHER.len(),
            near_jump in any::<bool>(),
            pick in 0usize..8,
            around in -2880i64..1440,
            anywhen in 0i64..2 * 365 * 24 * 60,
            steps in prop::collection::vec(1i64..=10, 1..30),
        ) {
            let tz = ZONES[zone];
            let daily = DAILY.get(pattern).copied();
            let cron = cron(daily.map_or_else(|| OTHER[pattern - DAILY.len()], |(p, ..)| p));
            let jumps = jumps(tz);
            let start = match near_jump && !jumps.is_empty() {
                true => jumps[pick % jumps.len()] + TimeDelta::minutes(around),
                false => utc("2026-01-01T00:00:00Z") + TimeDelta::minutes(anywhen),
            } + TimeDelta::seconds(17);
            let (mut last, mut now, mut runs) = (start, start, Vec::new());
            for step in steps.iter().cycle() {
                let before = now;
                now += TimeDelta::minutes(*step);
                match due(&cron, tz, last, now) {
                    Due::Run { occurrence, missed } => {
                        prop_assert!(occurrence > last && occurrence > before && occurrence <= now, "{occurrence} after {last}, polled {before}..{now}");
                        prop_assert_eq!(missed, 0);
                        runs.push(occurrence);
                        last = occurrence;
                        let again = due(&cron, tz, last, now);
                        prop_assert!(matches!(again, Due::Wait { until } if until > now), "{:?}", again);
                    }
                    Due::Wait { until } => prop_assert!(until > now),
                    Due::Never => prop_assert!(false, "never"),
                }
                if now >= start + TimeDelta::days(3) {
                    break;
                }
            }
            prop_assert!(runs.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(&runs, &between(&cron, tz, start, now));
            if let Some((_, hour, minute)) = daily {
                let time = NaiveTime::from_hms_opt(hour, minute, 0).unwrap();
                prop_assert!((2..=4).contains(&runs.len()), "{runs:?}");
                let dates: Vec<_> = runs.iter().map(|r| r.with_timezone(&tz).date_naive()).collect();
                prop_assert!(dates.windows(2).all(|d| d[0].succ_opt() == Some(d[1])), "{dates:?}");
                for (run, date) in runs.iter().zip(&dates) {
                    match tz.from_local_datetime(&date.and_time(time)) {
                        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => prop_assert_eq!(*run, at.to_utc()),
                        LocalResult::None => {
                            // The first instant after the gap: just before it, the wall clock was short of the time.
                            prop_assert!(run.with_timezone(&tz).time() > time);
                            prop_assert!((*run - TimeDelta::seconds(1)).with_timezone(&tz).naive_local() < date.and_time(time));
                        }
                    }
                }
            } else if pattern == DAILY.len() {
                // Every 15 minutes of real time: every zone's offset is a whole quarter-hour.
                let quarters = now.timestamp().div_euclid(900) - start.timestamp().div_euclid(900);
                prop_assert_eq!(runs.len() as i64, quarters);
            }
        }
    }
}
