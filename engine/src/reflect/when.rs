//! Finding "when" in a sentence: "tomorrow at 9", "in 2 hours", "next Monday", "by EOD".
//!
//! Times are read in the owner's time zone and returned in UTC. Only forms people
//! actually write in reminders and promises are understood; anything else is no time,
//! never a guess.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

/// A time found in text, and the words that said it (so a detector can cut them out of
/// the task: "call mom tomorrow at 9" → "call mom").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    pub at: DateTime<Utc>,
    /// Token range `[start, end)` in the words the text was split into.
    pub words: (usize, usize),
}

const MORNING: (u32, u32) = (9, 0);
const AFTERNOON: (u32, u32) = (14, 0);
const EVENING: (u32, u32) = (18, 0);
const NIGHT: (u32, u32) = (21, 0);
const END_OF_DAY: (u32, u32) = (17, 0);

/// Splits text into lowercase words, keeping `:`, `.` inside times ("9:30", "5.30pm").
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || ",;!?()\"".contains(c))
        .map(|w| w.trim_matches(|c: char| c == '.' || c == '\'' || c == ':').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The first time expression in `text` that lies in the future of `now`.
pub fn find(text: &str, now: DateTime<Utc>, tz: Tz) -> Option<When> {
    let words = words(text);
    let local_now = now.with_timezone(&tz);
    (0..words.len()).find_map(|start| {
        let (date_time, end) = parse_at(&words, start, local_now.date_naive(), local_now.time())?;
        let at = tz.from_local_datetime(&date_time).earliest()?.with_timezone(&Utc);
        (at > now).then_some(When { at, words: (start, end) })
    })
}

/// Parses a time expression starting exactly at `words[start]`; returns the local time
/// and the index after its last word.
fn parse_at(
    words: &[String],
    start: usize,
    today: NaiveDate,
    now: NaiveTime,
) -> Option<(chrono::NaiveDateTime, usize)> {
    let word = |i: usize| words.get(i).map(String::as_str);
    let mut i = start;
    // Leading words that only introduce a time.
    while matches!(word(i), Some("by" | "before" | "until" | "till" | "on" | "at" | "around" | "this" | "the")) {
        i += 1;
    }
    let introduced = i > start;
    match word(i)? {
        "in" => {
            let (amount, unit_at) = match (word(i + 1)?, word(i + 2)) {
                ("a" | "an" | "one", _) => (1, i + 2),
                ("half", Some("an")) if word(i + 3) == Some("hour") => {
                    return Some((today.and_time(now) + Duration::minutes(30), i + 4));
                }
                (n, _) => (n.parse::<i64>().ok().filter(|n| (1..=1000).contains(n))?, i + 2),
            };
            let step = match word(unit_at)?.trim_end_matches('s') {
                "min" | "minute" | "mins" => Duration::minutes(1),
                "hour" | "hr" | "h" => Duration::hours(1),
                "day" => Duration::days(1),
                "week" | "wk" => Duration::weeks(1),
                _ => return None,
            };
            Some((today.and_time(now) + step * amount as i32, unit_at + 1))
        }
        "tomorrow" | "tmrw" | "tmr" => with_part_of_day(words, i + 1, today + Duration::days(1), MORNING),
        "today" => with_part_of_day(words, i + 1, today, END_OF_DAY),
        "tonight" => with_clock(words, i + 1, today, NIGHT),
        "morning" | "afternoon" | "evening" if word(start) == Some("this") => {
            let part = part_of_day(word(i)?)?;
            with_clock(words, i + 1, today, part)
        }
        "eod" => Some((today.and_time(hm(END_OF_DAY)), i + 1)),
        "eow" => Some((next_weekday(today, Weekday::Fri, true).and_time(hm(END_OF_DAY)), i + 1)),
        "end" if word(i + 1) == Some("of") => {
            let date = match word(i + 2)? {
                "day" | "today" => today,
                "week" | "the" if word(i + 2) == Some("week") || word(i + 3) == Some("week") => {
                    next_weekday(today, Weekday::Fri, true)
                }
                "month" => day_of_next_month(today, 1)? - Duration::days(1),
                _ => return None,
            };
            let end = if word(i + 2) == Some("the") { i + 4 } else { i + 3 };
            Some((date.and_time(hm(END_OF_DAY)), end))
        }
        "next" => match word(i + 1)? {
            "week" => Some((next_weekday(today, Weekday::Mon, false).and_time(hm(MORNING)), i + 2)),
            "month" => Some((day_of_next_month(today, 1)?.and_time(hm(MORNING)), i + 2)),
            day => {
                let weekday = parse_weekday(day)?;
                with_part_of_day(words, i + 2, next_weekday(today, weekday, false), MORNING)
            }
        },
        other => {
            if let Some(weekday) = parse_weekday(other) {
                return with_part_of_day(words, i + 1, next_weekday(today, weekday, false), MORNING);
            }
            if let Some(date) = parse_date(words, i, today) {
                return with_part_of_day(words, date.1, date.0, MORNING);
            }
            // A bare clock time needs "at" or "by" before it: "9" alone is not a time.
            if introduced {
                let (time, end) = parse_clock(words, i)?;
                let date = if time > now { today } else { today + Duration::days(1) };
                return Some((date.and_time(time), end));
            }
            None
        }
    }
}

/// "tomorrow", then maybe "morning" and/or "at 10".
fn with_part_of_day(
    words: &[String],
    i: usize,
    date: NaiveDate,
    default: (u32, u32),
) -> Option<(chrono::NaiveDateTime, usize)> {
    match words.get(i).map(String::as_str).and_then(part_of_day) {
        Some(part) => with_clock(words, i + 1, date, part),
        None => with_clock(words, i, date, default),
    }
}

/// An optional "at 10:30" after a day; without it, `default`.
fn with_clock(
    words: &[String],
    i: usize,
    date: NaiveDate,
    default: (u32, u32),
) -> Option<(chrono::NaiveDateTime, usize)> {
    let at = matches!(words.get(i).map(String::as_str), Some("at" | "around" | "by"));
    let clock = if at { parse_clock(words, i + 1) } else { parse_clock_with_suffix(words, i) };
    match clock {
        Some((time, end)) => {
            // "tomorrow at 7" without am/pm in the evening part means 19:00.
            let time = if default.0 >= 12 && time.hour() < 12 && !has_meridiem(words, end) {
                time + Duration::hours(12)
            } else {
                time
            };
            Some((date.and_time(time), end))
        }
        None => Some((date.and_time(hm(default)), i)),
    }
}

fn has_meridiem(words: &[String], end: usize) -> bool {
    let last = words.get(end.saturating_sub(1)).map(String::as_str).unwrap_or("");
    last.ends_with("am") || last.ends_with("pm") || last == "noon" || last == "midnight"
}

fn part_of_day(word: &str) -> Option<(u32, u32)> {
    match word {
        "morning" => Some(MORNING),
        "afternoon" => Some(AFTERNOON),
        "evening" => Some(EVENING),
        "night" => Some(NIGHT),
        _ => None,
    }
}

/// A clock time only when it is unambiguous on its own ("5pm", "17:30", "noon").
fn parse_clock_with_suffix(words: &[String], i: usize) -> Option<(NaiveTime, usize)> {
    let (time, end) = parse_clock(words, i)?;
    let raw = words.get(i)?;
    (raw.contains(':') || has_meridiem(words, end) || raw.contains('.')).then_some((time, end))
}

/// "9", "9am", "9 am", "9:30", "9.30pm", "21:00", "noon", "midnight".
fn parse_clock(words: &[String], i: usize) -> Option<(NaiveTime, usize)> {
    let raw = words.get(i)?.as_str();
    match raw {
        "noon" | "midday" => return Some((hm((12, 0)), i + 1)),
        "midnight" => return Some((hm((23, 59)), i + 1)),
        _ => {}
    }
    let (digits, mut meridiem, mut end) = if let Some(d) = raw.strip_suffix("am") {
        (d, Some(false), i + 1)
    } else if let Some(d) = raw.strip_suffix("pm") {
        (d, Some(true), i + 1)
    } else {
        (raw, None, i + 1)
    };
    if meridiem.is_none() {
        match words.get(i + 1).map(String::as_str) {
            Some("am" | "a.m") => (meridiem, end) = (Some(false), i + 2),
            Some("pm" | "p.m") => (meridiem, end) = (Some(true), i + 2),
            _ => {}
        }
    }
    let (hour, minute) = match digits.split_once([':', '.']) {
        Some((h, m)) => (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?),
        None => (digits.parse::<u32>().ok()?, 0),
    };
    if minute > 59 || hour > 23 || (meridiem.is_some() && !(1..=12).contains(&hour)) {
        return None;
    }
    let hour = match meridiem {
        Some(true) if hour < 12 => hour + 12,
        Some(false) if hour == 12 => 0,
        _ => hour,
    };
    Some((NaiveTime::from_hms_opt(hour, minute, 0)?, end))
}

fn parse_weekday(word: &str) -> Option<Weekday> {
    Some(match word {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" | "tues" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" | "thurs" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    })
}

/// The next such weekday after today; with `or_today`, today counts too.
fn next_weekday(today: NaiveDate, weekday: Weekday, or_today: bool) -> NaiveDate {
    let ahead = (7 + weekday.num_days_from_monday() as i64 - today.weekday().num_days_from_monday() as i64) % 7;
    let ahead = if ahead == 0 && !or_today { 7 } else { ahead };
    today + Duration::days(ahead)
}

fn parse_month(word: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let prefix = word.get(..3)?;
    MONTHS.iter().position(|m| *m == prefix).map(|p| p as u32 + 1).filter(|_| word.len() <= 9)
}

fn parse_day_number(word: &str) -> Option<u32> {
    let digits = word.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &word[digits.len()..];
    if !matches!(suffix, "" | "st" | "nd" | "rd" | "th") {
        return None;
    }
    digits.parse().ok().filter(|d| (1..=31).contains(d))
}

/// "march 3", "3 march", "3rd of march", "the 3rd" (this month or next). Dates in the past
/// mean next year.
fn parse_date(words: &[String], i: usize, today: NaiveDate) -> Option<(NaiveDate, usize)> {
    let word = |i: usize| words.get(i).map(String::as_str);
    let (month, day, end) = if let Some(month) = parse_month(word(i)?) {
        (month, parse_day_number(word(i + 1)?)?, i + 2)
    } else {
        let day = parse_day_number(word(i)?)?;
        let of = usize::from(word(i + 1) == Some("of"));
        match word(i + 1 + of).and_then(parse_month) {
            Some(month) => (month, day, i + 2 + of),
            // "the 3rd" alone: needs an ordinal suffix to be a date.
            None if word(i)?.len() > day.to_string().len() => {
                let this_month = NaiveDate::from_ymd_opt(today.year(), today.month(), day);
                return match this_month.filter(|d| *d >= today) {
                    Some(date) => Some((date, i + 1)),
                    None => day_of_next_month(today, day).map(|d| (d, i + 1)),
                };
            }
            None => return None,
        }
    };
    let this_year = NaiveDate::from_ymd_opt(today.year(), month, day)?;
    let date = if this_year < today { NaiveDate::from_ymd_opt(today.year() + 1, month, day)? } else { this_year };
    Some((date, end))
}

/// That day of the month after `today`'s (None where it has no such day).
fn day_of_next_month(today: NaiveDate, day: u32) -> Option<NaiveDate> {
    let (year, month) = if today.month() == 12 { (today.year() + 1, 1) } else { (today.year(), today.month() + 1) };
    NaiveDate::from_ymd_opt(year, month, day)
}

fn hm((hour, minute): (u32, u32)) -> NaiveTime {
    NaiveTime::from_hms_opt(hour, minute, 0).expect("valid constant time")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wednesday 2026-11-18, 10:15 in Berlin.
    fn now() -> DateTime<Utc> {
        chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 11, 18, 10, 15, 0).unwrap().with_timezone(&Utc)
    }

    fn at(text: &str) -> Option<String> {
        find(text, now(), chrono_tz::Europe::Berlin)
            .map(|w| w.at.with_timezone(&chrono_tz::Europe::Berlin).format("%a %Y-%m-%d %H:%M").to_string())
    }

    #[test]
    fn relative_amounts() {
        assert_eq!(at("remind me in 2 hours to check the oven").as_deref(), Some("Wed 2026-11-18 12:15"));
        assert_eq!(at("in 30 minutes").as_deref(), Some("Wed 2026-11-18 10:45"));
        assert_eq!(at("ping me in an hour").as_deref(), Some("Wed 2026-11-18 11:15"));
        assert_eq!(at("in half an hour").as_deref(), Some("Wed 2026-11-18 10:45"));
        assert_eq!(at("in 3 days").as_deref(), Some("Sat 2026-11-21 10:15"));
        assert_eq!(at("in a week").as_deref(), Some("Wed 2026-11-25 10:15"));
    }

    #[test]
    fn days_and_parts_of_day() {
        assert_eq!(at("tomorrow").as_deref(), Some("Thu 2026-11-19 09:00"));
        assert_eq!(at("Tomorrow at 7:30am").as_deref(), Some("Thu 2026-11-19 07:30"));
        assert_eq!(at("tomorrow evening").as_deref(), Some("Thu 2026-11-19 18:00"));
        assert_eq!(at("tomorrow evening at 7").as_deref(), Some("Thu 2026-11-19 19:00"));
        assert_eq!(at("tmrw 3pm").as_deref(), Some("Thu 2026-11-19 15:00"));
        assert_eq!(at("tonight").as_deref(), Some("Wed 2026-11-18 21:00"));
        assert_eq!(at("this afternoon").as_deref(), Some("Wed 2026-11-18 14:00"));
        assert_eq!(at("today at 5 pm").as_deref(), Some("Wed 2026-11-18 17:00"));
    }

    #[test]
    fn clock_times_need_an_introduction_or_a_suffix() {
        assert_eq!(at("at 9").as_deref(), Some("Thu 2026-11-19 09:00"), "9 has passed today");
        assert_eq!(at("at 17:45").as_deref(), Some("Wed 2026-11-18 17:45"));
        assert_eq!(at("around noon").as_deref(), Some("Wed 2026-11-18 12:00"));
        assert_eq!(at("by 4.30pm").as_deref(), Some("Wed 2026-11-18 16:30"));
        assert_eq!(at("I have 3 cats"), None);
        assert_eq!(at("room 101 is free"), None);
    }

    #[test]
    fn weekdays_weeks_and_ends() {
        assert_eq!(at("on Friday").as_deref(), Some("Fri 2026-11-20 09:00"));
        assert_eq!(at("friday 8pm").as_deref(), Some("Fri 2026-11-20 20:00"));
        assert_eq!(at("next monday").as_deref(), Some("Mon 2026-11-23 09:00"));
        assert_eq!(at("wednesday").as_deref(), Some("Wed 2026-11-25 09:00"), "today's weekday means next week");
        assert_eq!(at("next week").as_deref(), Some("Mon 2026-11-23 09:00"));
        assert_eq!(at("by EOD").as_deref(), Some("Wed 2026-11-18 17:00"));
        assert_eq!(at("by end of day").as_deref(), Some("Wed 2026-11-18 17:00"));
        assert_eq!(at("by the end of the week").as_deref(), Some("Fri 2026-11-20 17:00"));
        assert_eq!(at("before end of month").as_deref(), Some("Mon 2026-11-30 17:00"));
        assert_eq!(at("next month").as_deref(), Some("Tue 2026-12-01 09:00"));
    }

    #[test]
    fn dates() {
        assert_eq!(at("on March 3").as_deref(), Some("Wed 2027-03-03 09:00"));
        assert_eq!(at("on 3rd of December at 10am").as_deref(), Some("Thu 2026-12-03 10:00"));
        assert_eq!(at("dec 24").as_deref(), Some("Thu 2026-12-24 09:00"));
        assert_eq!(at("on the 25th").as_deref(), Some("Wed 2026-11-25 09:00"));
        assert_eq!(at("on the 2nd").as_deref(), Some("Wed 2026-12-02 09:00"));
        assert_eq!(at("may I ask"), None);
    }

    #[test]
    fn the_matched_words_are_reported() {
        let w = find("call mom tomorrow at 9", now(), chrono_tz::Europe::Berlin).unwrap();
        assert_eq!(w.words, (2, 5));
    }

    #[test]
    fn daylight_saving_is_respected() {
        // 29 March 2026 is the switch to summer time in Berlin: 09:00 there is 07:00 UTC.
        let before = chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap().with_timezone(&Utc);
        let w = find("tomorrow", before, chrono_tz::Europe::Berlin).unwrap();
        assert_eq!(w.at, Utc.with_ymd_and_hms(2026, 3, 29, 7, 0, 0).unwrap());
    }
}
