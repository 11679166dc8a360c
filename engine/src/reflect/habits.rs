//! Recurring tasks: the owner does the same thing at about the same time on the same
//! weekday, week after week ("weekly report attached" every Monday around nine). When this
//! week's turn is near and not done yet, it becomes an idea; the habit itself is worth
//! remembering as a `recurring_task` memory.
//!
//! Pure, over the owner's own signals of the past weeks (the reflection's lookback is
//! shorter than the pattern, so the caller reads them separately).

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc, Weekday};

use super::detect::{Context, Idea, IdeaKind, asks_for_reminder, content_words, excerpt, from_owner, humanize, note};
use crate::signal::{Signal, SignalId, Trust};

/// Weeks (of the ones looked at) the owner must have done it in.
pub const MIN_WEEKS: usize = 3;
/// How far from its usual time an occurrence may be and still count.
const TIME_WINDOW_MINUTES: i64 = 90;
/// How alike two messages' words must be to be the same task: the share of the shorter
/// one's words the other has too ("weekly report attached" and "here is the weekly
/// report, numbers attached" are alike; rewording around the same core words is normal).
const ALIKE: f64 = 0.6;
/// Words too common to say what a message is about.
const COMMON: &[&str] = &[
    "the", "and", "for", "you", "this", "that", "with", "are", "was", "have", "has", "here", "there", "from", "but",
    "not", "all", "its", "our", "your", "will", "just", "time",
];
/// An occurrence is raised from this long before its time...
const LEAD: i64 = 36;
/// ...until this long after it.
const GRACE_HOURS: i64 = 1;
/// A habit not seen for this long is over.
const STALE_DAYS: i64 = 15;
/// The suggestion shows this long before the usual time.
const SHOW_BEFORE_MINUTES: i64 = 30;

/// A habit found in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Habit {
    pub weekday: Weekday,
    /// Minutes after local midnight, the members' median rounded to a quarter hour.
    pub minute: u32,
    /// Words most of its occurrences share, in the order the oldest one uses them (which
    /// changes least from week to week, so the statement memory keeps stays the same).
    pub words: Vec<String>,
    /// Distinct weeks it was done in.
    pub weeks: usize,
    /// Its occurrences, newest first.
    pub evidence: Vec<SignalId>,
    pub latest_text: String,
    /// Whether all of its occurrences were the owner's trusted words (typed at the shell)
    /// rather than text that came through a channel.
    pub trust: Trust,
}

impl Habit {
    /// "Every Monday around 09:00: weekly report attached": what memory keeps.
    pub fn statement(&self) -> String {
        format!("Every {} around {}: {}", day_name(self.weekday), clock(self.minute), self.words.join(" "))
    }

    /// What two findings of the same habit share even when its words drift a little.
    pub fn subject(&self) -> String {
        format!("recurring:{}:{}", day_name(self.weekday).to_lowercase(), clock(self.minute))
    }
}

/// Habits in the owner's own signals: the same words on the same weekday within
/// [`TIME_WINDOW_MINUTES`] of the same time, in at least [`MIN_WEEKS`] distinct weeks, the
/// latest in the last [`STALE_DAYS`].
pub fn habits(history: &[Signal], ctx: &Context) -> Vec<Habit> {
    struct Cluster<'a> {
        weekday: Weekday,
        minutes: Vec<i64>,
        /// The median of `minutes`, kept so matching a signal does not sort them again.
        usual: i64,
        words: HashSet<String>,
        members: Vec<&'a Signal>,
    }
    // Asking loopgate for a reminder is not doing the task, however regularly it is asked.
    let mut own: Vec<&Signal> = history.iter().filter(|s| from_owner(s) && !asks_for_reminder(&s.text)).collect();
    own.sort_by_key(|s| s.occurred_at);
    let mut clusters: Vec<Cluster> = Vec::new();
    for signal in own {
        let words = topic_words(&signal.text);
        if words.len() < 2 {
            continue;
        }
        let local = signal.occurred_at.with_timezone(&ctx.timezone);
        let minute = i64::from(local.hour() * 60 + local.minute());
        let found = clusters.iter_mut().find(|c| {
            c.weekday == local.weekday() && (c.usual - minute).abs() <= TIME_WINDOW_MINUTES && alike(&c.words, &words)
        });
        match found {
            Some(cluster) => {
                cluster.minutes.push(minute);
                cluster.usual = median(&cluster.minutes);
                cluster.words = words;
                cluster.members.push(signal);
            }
            None => clusters.push(Cluster {
                weekday: local.weekday(),
                minutes: vec![minute],
                usual: minute,
                words,
                members: vec![signal],
            }),
        }
    }

    let mut found = Vec::new();
    for cluster in clusters {
        let weeks: BTreeSet<(i32, u32)> = cluster
            .members
            .iter()
            .map(|s| {
                let week = s.occurred_at.with_timezone(&ctx.timezone).iso_week();
                (week.year(), week.week())
            })
            .collect();
        let latest = cluster.members.last().expect("a cluster has a member");
        if weeks.len() < MIN_WEEKS || ctx.now - latest.occurred_at > Duration::days(STALE_DAYS) {
            continue;
        }
        let quarter = (cluster.usual + 7) / 15 * 15;
        found.push(Habit {
            weekday: cluster.weekday,
            minute: quarter.clamp(0, 24 * 60 - 15) as u32,
            words: shared_words(&cluster.members),
            weeks: weeks.len(),
            evidence: cluster.members.iter().rev().map(|s| s.id).collect(),
            latest_text: latest.text.clone(),
            trust: if cluster.members.iter().all(|s| s.trust == Trust::Trusted) {
                Trust::Trusted
            } else {
                Trust::Untrusted
            },
        });
    }
    found
}

/// An idea for each habit whose next turn is within [`LEAD`] hours (or started less than
/// [`GRACE_HOURS`] ago) and not done yet that day.
pub fn recurring(history: &[Signal], ctx: &Context) -> Vec<Idea> {
    habits(history, ctx).into_iter().filter_map(|habit| turn_due(&habit, history, ctx)).collect()
}

fn turn_due(habit: &Habit, history: &[Signal], ctx: &Context) -> Option<Idea> {
    let today = ctx.now.with_timezone(&ctx.timezone).date_naive();
    let (date, at) =
        [today, today.succ_opt()?].into_iter().filter(|d| d.weekday() == habit.weekday).find_map(|date| {
            let at = at_local(date, habit.minute, ctx)?;
            (at + Duration::hours(GRACE_HOURS) >= ctx.now && at - Duration::hours(LEAD) <= ctx.now)
                .then_some((date, at))
        })?;
    let signature: HashSet<String> = habit.words.iter().cloned().collect();
    let done = history.iter().filter(|s| from_owner(s)).any(|s| {
        s.occurred_at.with_timezone(&ctx.timezone).date_naive() == date && alike(&signature, &topic_words(&s.text))
    });
    if done {
        return None;
    }
    let task = excerpt(&habit.latest_text);
    let day = day_name(habit.weekday);
    let when = if at > ctx.now {
        format!(
            "; next is {} (in {})",
            at.with_timezone(&ctx.timezone).format("%a %-d %b %H:%M"),
            humanize(at - ctx.now)
        )
    } else {
        ", and not yet today".to_owned()
    };
    // Past already when the turn is late: then it is shown at once.
    let due = at - Duration::minutes(SHOW_BEFORE_MINUTES);
    Some(Idea {
        reflector: crate::reflect::detect::Reflector::Deterministic,
        kind: IdeaKind::RecurringTask,
        title: format!("Weekly: {task}"),
        why_now: format!(
            "you did this {} {day}s in the last weeks, around {}{when}",
            times(habit.weeks),
            clock(habit.minute),
        ),
        due: Some(due),
        evidence: habit.evidence.iter().take(4).copied().collect(),
        confidence: (0.55 + 0.07 * habit.weeks as f64).min(0.85),
        key: format!("recurring:{date}:{}:{}", clock(habit.minute), habit.words.join("-")),
        topic: Some(habit.subject()),
        action: note(format!("Done: {task}")),
    })
}

/// Local `date` at `minute` after midnight, in UTC; the earlier instant when a clock
/// change makes the time ambiguous, none when it skips it.
fn at_local(date: NaiveDate, minute: u32, ctx: &Context) -> Option<DateTime<Utc>> {
    let naive = date.and_hms_opt(minute / 60, minute % 60, 0)?;
    ctx.timezone.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&Utc))
}

/// A message's words that say what it is about.
fn topic_words(text: &str) -> HashSet<String> {
    let mut words = content_words(text);
    words.retain(|w| !COMMON.contains(&w.as_str()));
    words
}

/// At least two words shared, and most of the shorter message's.
fn alike(a: &HashSet<String>, b: &HashSet<String>) -> bool {
    let shared = a.intersection(b).count();
    let shorter = a.len().min(b.len());
    shared >= 2 && shared as f64 >= ALIKE * shorter as f64
}

fn median(values: &[i64]) -> i64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

/// Words at least half the occurrences use, in the order the oldest uses them.
fn shared_words(members: &[&Signal]) -> Vec<String> {
    let sets: Vec<HashSet<String>> = members.iter().map(|s| topic_words(&s.text)).collect();
    let oldest = members.first().expect("a cluster has a member");
    let mut seen = HashSet::new();
    oldest
        .text
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| w.chars().count() >= 3 && !COMMON.contains(&w.as_str()))
        .filter(|w| sets.iter().filter(|s| s.contains(w)).count() * 2 >= sets.len())
        .filter(|w| seen.insert(w.clone()))
        .collect()
}

fn day_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

fn clock(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn times(n: usize) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reflect::fixtures::{S, ctx, signal};

    const DAY: i64 = 24 * 60;

    /// The owner's message `days` before today at `hh:mm` local (today is Wednesday
    /// 2026-11-18, 10:15 in Berlin).
    fn own(id: SignalId, days: i64, hh: i64, mm: i64, text: &str) -> Signal {
        let minutes_ago = days * DAY + (10 * 60 + 15) - (hh * 60 + mm);
        signal(S { id, who: Some(("me", true)), chat: Some(("team", Some("Team"))), minutes_ago, text })
    }

    fn weekly_report() -> Vec<Signal> {
        vec![
            own(1, 21, 10, 50, "Weekly report attached, numbers look fine"),
            own(2, 14, 11, 5, "weekly report attached - numbers a bit late this time"),
            own(3, 7, 11, 20, "Here is the weekly report, numbers attached"),
            // Noise around it: other days, other words.
            own(4, 13, 11, 0, "lunch at noon?"),
            own(5, 7, 16, 0, "weekly report attached"),
            // Asking for a reminder at the same time each week is not doing the task.
            own(6, 21, 11, 0, "remind me to water the office plants"),
            own(7, 14, 11, 0, "remind me to water the office plants"),
            own(8, 7, 11, 0, "remind me to water the office plants"),
        ]
    }

    fn local(at: DateTime<Utc>) -> String {
        at.with_timezone(&chrono_tz::Europe::Berlin).format("%a %d %H:%M").to_string()
    }

    #[test]
    fn a_weekly_habit_is_raised_before_its_turn_today() {
        let ideas = recurring(&weekly_report(), &ctx());
        assert_eq!(ideas.len(), 1, "{ideas:#?}");
        let idea = &ideas[0];
        assert_eq!(idea.kind, IdeaKind::RecurringTask);
        assert_eq!(idea.title, "Weekly: Here is the weekly report, numbers attached");
        assert_eq!(
            local(idea.due.unwrap()),
            "Wed 18 10:30",
            "shown half an hour before 11:00 (the median, 11:05, to the quarter)"
        );
        assert_eq!(idea.evidence, [3, 2, 1]);
        assert!(idea.why_now.contains("3 Wednesdays") && idea.why_now.contains("around 11:00"), "{}", idea.why_now);
        assert_eq!(idea.topic.as_deref(), Some("recurring:wednesday:11:00"));
        assert!(idea.key.starts_with("recurring:2026-11-18:11:00:"), "{}", idea.key);
        assert!((idea.confidence - 0.76).abs() < 1e-9);

        let habit = &habits(&weekly_report(), &ctx())[0];
        assert_eq!(habit.statement(), "Every Wednesday around 11:00: weekly report attached numbers");
        assert_eq!(habit.weeks, 3);
    }

    #[test]
    fn a_turn_already_done_today_is_not_raised() {
        let mut history = weekly_report();
        history.push(own(6, 0, 9, 40, "weekly report attached early today, numbers inside"));
        assert!(recurring(&history, &ctx()).is_empty());
    }

    #[test]
    fn tomorrows_turn_is_raised_ahead_and_a_late_one_still_today() {
        let history = vec![
            own(1, 20, 9, 0, "standup notes posted for the team"),
            own(2, 13, 9, 10, "posted the standup notes for the team"),
            own(3, 6, 8, 55, "standup notes for the team are posted"),
        ];
        let ideas = recurring(&history, &ctx());
        assert_eq!(ideas.len(), 1);
        assert_eq!(local(ideas[0].due.unwrap()), "Thu 19 08:30");
        assert!(ideas[0].why_now.contains("Thursdays"), "{}", ideas[0].why_now);

        // Today's 09:45 habit is 30 minutes late at 10:15: still worth a nudge, now.
        let late = vec![
            own(1, 21, 9, 45, "sent the invoices to accounting"),
            own(2, 14, 9, 40, "invoices sent to accounting"),
            own(3, 7, 9, 50, "accounting invoices sent"),
        ];
        let ideas = recurring(&late, &ctx());
        assert_eq!(ideas.len(), 1);
        assert_eq!(local(ideas[0].due.unwrap()), "Wed 18 09:15");
        assert!(ideas[0].why_now.ends_with("and not yet today"), "{}", ideas[0].why_now);
    }

    #[test]
    fn not_a_habit() {
        let cases: Vec<(&str, Vec<Signal>)> = vec![
            ("two weeks only", weekly_report().into_iter().skip(1).collect()),
            (
                "different weekdays",
                vec![
                    own(1, 21, 11, 0, "weekly report attached numbers"),
                    own(2, 15, 11, 0, "weekly report attached numbers"),
                    own(3, 9, 11, 0, "weekly report attached numbers"),
                ],
            ),
            (
                "different times",
                vec![
                    own(1, 21, 8, 0, "weekly report attached numbers"),
                    own(2, 14, 11, 0, "weekly report attached numbers"),
                    own(3, 7, 15, 0, "weekly report attached numbers"),
                ],
            ),
            (
                "different words",
                vec![
                    own(1, 21, 11, 0, "weekly report attached numbers"),
                    own(2, 14, 11, 0, "who wants pizza for lunch"),
                    own(3, 7, 11, 0, "the build is broken again"),
                ],
            ),
            (
                "over: last done a month ago",
                vec![
                    own(1, 49, 11, 0, "weekly report attached numbers"),
                    own(2, 42, 11, 0, "weekly report attached numbers"),
                    own(3, 35, 11, 0, "weekly report attached numbers"),
                    own(4, 28, 11, 0, "weekly report attached numbers"),
                ],
            ),
        ];
        for (why, history) in cases {
            assert!(recurring(&history, &ctx()).is_empty(), "{why}");
        }
        // Someone else's weekly message is not the owner's habit.
        let theirs: Vec<Signal> = weekly_report()
            .into_iter()
            .map(|mut s| {
                s.actor = Some(crate::signal::Actor { id: "dana".into(), name: None, is_owner: false });
                s
            })
            .collect();
        assert!(recurring(&theirs, &ctx()).is_empty());
    }
}
