//! The reply grammar: what the owner writes back to a digest, one command per line.
//!
//! ```text
//! 1 act            2 snooze 3d        3 dismiss        4 edit: <new text>
//! approve A2       deny A2
//! ```
//!
//! Case does not matter; `#1`, `1.` and `1)` read as `1`. The answer stops at the quoted
//! digest (`>` lines, "On … wrote:", Outlook's "-----Original Message-----" and `From:`
//! header block) and at a signature (`-- `); blank lines are skipped. Pure and total: any
//! input gives lines, never a panic (fuzzed with proptest).

use std::time::Duration;

/// An item of a digest: a numbered suggestion, or an approval by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Item {
    Suggestion(u32),
    Approval(i64),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Suggestion(n) => write!(f, "{n}"),
            Item::Approval(id) => write!(f, "A{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Act(u32),
    Snooze(u32, Duration),
    Dismiss(u32),
    Edit(u32, String),
    Approve(i64),
    Deny(i64),
}

impl Command {
    pub fn item(&self) -> Item {
        match self {
            Command::Act(n) | Command::Snooze(n, _) | Command::Dismiss(n) | Command::Edit(n, _) => Item::Suggestion(*n),
            Command::Approve(id) | Command::Deny(id) => Item::Approval(*id),
        }
    }
}

/// One line of the answer, as written, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    pub command: Result<Command, String>,
}

pub const GRAMMAR: &str = "Write one command per line: \"1 act\", \"2 snooze 3d\" (m, h, d or w), \"3 dismiss\", \
\"4 edit: new text\", \"approve A2\", \"deny A2\".";

/// The longest snooze a reply may ask for.
const MAX_SNOOZE: Duration = Duration::from_secs(90 * 24 * 3600);
/// More lines than this is not an answer to a digest.
const MAX_LINES: usize = 50;

/// The commands of a reply's plain text, up to the quoted part or the signature.
pub fn parse_reply(body: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let all: Vec<&str> = body.lines().collect();
    for (n, raw) in all.iter().enumerate() {
        let line = raw.trim_end_matches('\r');
        if ends_the_answer(line, all.get(n + 1).copied()) {
            break;
        }
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if lines.len() == MAX_LINES {
            break;
        }
        lines.push(Line { text: text.chars().take(500).collect(), command: parse_line(text) });
    }
    lines
}

fn ends_the_answer(line: &str, next: Option<&str>) -> bool {
    let trimmed = line.trim();
    let lower = trimmed.to_lowercase();
    line == "-- "
        || trimmed == "--"
        || trimmed.starts_with('>')
        || trimmed.starts_with("-----Original Message-----")
        || trimmed.starts_with("________________________________")
        // "On Mon, 23 Nov 2026 at 09:00, loopgate <…> wrote:", sometimes folded over two lines.
        || (lower.starts_with("on ") && (lower.ends_with("wrote:") || next.is_some_and(|n| n.trim().to_lowercase().ends_with("wrote:"))))
        || (lower.starts_with("from:") && next.is_some_and(|n| {
            let n = n.trim().to_lowercase();
            n.starts_with("sent:") || n.starts_with("date:") || n.starts_with("to:")
        }))
}

fn parse_line(text: &str) -> Result<Command, String> {
    let not_understood = || format!("not understood: {GRAMMAR}");
    let lower = text.to_lowercase();
    let mut words = lower.split_whitespace();
    let first = words.next().ok_or_else(not_understood)?;
    if first == "approve" || first == "deny" {
        let id = words.next().and_then(approval_id).ok_or_else(not_understood)?;
        if words.next().is_some() {
            return Err(not_understood());
        }
        return Ok(if first == "approve" { Command::Approve(id) } else { Command::Deny(id) });
    }
    // "4 edit: text": the text keeps its case, so it is cut from the original.
    let number = suggestion_number(first).ok_or_else(not_understood)?;
    let rest =
        text.trim_start()[text.trim_start().find(char::is_whitespace).unwrap_or(text.trim_start().len())..].trim();
    let rest_lower = rest.to_lowercase();
    if let Some(after) = rest_lower.strip_prefix("edit") {
        let after_original = &rest[rest.len() - after.len()..];
        let new_text = after_original.trim_start().strip_prefix(':').unwrap_or(after_original).trim();
        if !after.starts_with([':', ' ']) || new_text.is_empty() {
            return Err(format!("an edit needs the new text: \"{number} edit: new text\""));
        }
        return Ok(Command::Edit(number, new_text.to_owned()));
    }
    let verb: Vec<&str> = rest_lower.split_whitespace().collect();
    match verb.as_slice() {
        ["act"] => Ok(Command::Act(number)),
        ["dismiss"] => Ok(Command::Dismiss(number)),
        ["snooze"] => Ok(Command::Snooze(number, Duration::from_secs(24 * 3600))),
        ["snooze", span] => {
            let span = snooze_span(span).ok_or_else(|| format!("\"{span}\" is not a snooze like 30m, 4h, 3d or 2w"))?;
            Ok(Command::Snooze(number, span))
        }
        _ => Err(not_understood()),
    }
}

/// `1`, `#1`, `1.`, `1)`.
fn suggestion_number(word: &str) -> Option<u32> {
    let digits = word.trim_start_matches('#').trim_end_matches(['.', ')', ':']);
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

/// `a2`, `A2`, `#a2`.
fn approval_id(word: &str) -> Option<i64> {
    let digits = word.trim_start_matches('#').strip_prefix('a')?.trim_end_matches(['.', ')']);
    if digits.is_empty() || digits.len() > 12 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

/// `30m`, `4h`, `3d`, `2w` (at most 90 days).
fn snooze_span(word: &str) -> Option<Duration> {
    let unit = word.chars().last()?;
    let count: u64 = word[..word.len() - unit.len_utf8()].parse().ok().filter(|n| *n > 0)?;
    let seconds = match unit {
        'm' => 60,
        'h' => 3600,
        'd' => 24 * 3600,
        'w' => 7 * 24 * 3600,
        _ => return None,
    };
    Some(Duration::from_secs(count.checked_mul(seconds)?)).filter(|d| *d <= MAX_SNOOZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn commands(body: &str) -> Vec<Result<Command, String>> {
        parse_reply(body).into_iter().map(|l| l.command).collect()
    }

    #[test]
    fn every_command_of_the_grammar_reads() {
        let body = "1 act\n2 Snooze 3d\n3 DISMISS\n4 edit: Tell Ana it's paid, Thanks!\napprove A2\nDeny a7\n#5. act\n6) snooze\n";
        assert_eq!(
            commands(body),
            [
                Ok(Command::Act(1)),
                Ok(Command::Snooze(2, Duration::from_secs(3 * 86400))),
                Ok(Command::Dismiss(3)),
                Ok(Command::Edit(4, "Tell Ana it's paid, Thanks!".into())),
                Ok(Command::Approve(2)),
                Ok(Command::Deny(7)),
                Ok(Command::Act(5)),
                Ok(Command::Snooze(6, Duration::from_secs(86400))),
            ]
        );
    }

    #[test]
    fn quoted_digest_and_signature_are_not_read() {
        let top_posted = "1 act\r\n\r\nOn Mon, 23 Nov 2026 at 09:00, loopgate <loopgate@test.local> wrote:\r\n> 1 act\r\n> 2 dismiss\r\n";
        assert_eq!(commands(top_posted), [Ok(Command::Act(1))]);
        let folded = "2 dismiss\nOn Mon, 23 Nov 2026 at 09:00, loopgate\n<loopgate@test.local> wrote:\n3 act\n";
        assert_eq!(commands(folded), [Ok(Command::Dismiss(2))]);
        let signed = "approve A3\n-- \nNelly Owner\n1 act\n";
        assert_eq!(commands(signed), [Ok(Command::Approve(3))]);
        let outlook = "deny A4\n\nFrom: loopgate <loopgate@test.local>\nSent: Monday\n1 act\n";
        assert_eq!(commands(outlook), [Ok(Command::Deny(4))]);
        assert_eq!(commands("> 1 act\n"), Vec::<Result<Command, String>>::new());
    }

    #[test]
    fn garbage_lines_say_why() {
        let lines = parse_reply("thanks!\n1 snooze forever\n9 edit:\n0 act\napprove B2\n1 act now\nrm -rf /\n");
        assert_eq!(lines.len(), 7);
        assert!(lines.iter().all(|l| l.command.is_err()), "{lines:#?}");
        assert!(lines[1].command.as_ref().unwrap_err().contains("\"forever\" is not a snooze"));
        assert!(lines[2].command.as_ref().unwrap_err().contains("needs the new text"));
        assert!(lines[0].command.as_ref().unwrap_err().contains("1 act"), "the grammar is shown");
    }

    #[test]
    fn snoozes_are_bounded() {
        assert_eq!(snooze_span("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(snooze_span("2w"), Some(Duration::from_secs(14 * 86400)));
        assert_eq!(snooze_span("91d"), None);
        assert_eq!(snooze_span("99999999999999999999d"), None);
        assert_eq!(snooze_span("0h"), None);
        assert_eq!(snooze_span("3ü"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        #[test]
        fn any_text_parses_without_panicking(body in "\\PC{0,400}") {
            let lines = parse_reply(&body);
            prop_assert!(lines.len() <= MAX_LINES);
        }

        #[test]
        fn grammar_like_text_parses_without_panicking(
            body in "([0-9#aA]{0,3}[ .):]{0,2}(act|snooze|dismiss|edit|approve|deny|ACT|Snooze)?[ :]{0,2}[0-9a-z:ü ]{0,12}\r?\n){0,12}"
        ) {
            for line in parse_reply(&body) {
                if let Ok(Command::Edit(_, text)) = &line.command {
                    prop_assert!(!text.is_empty());
                }
            }
        }
    }
}
