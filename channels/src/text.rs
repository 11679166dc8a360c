//! Fitting text into a platform's message: measuring it the way the platform measures,
//! shortening a field before markup is added, cutting marked-up text without breaking its
//! markup, and splitting long plain text into ordered parts.
//!
//! Telegram counts the text *after* entity parsing (`&amp;` is one character, tags are
//! none) and, being built on UTF-16, counts an emoji outside the BMP as two: the
//! measure here is UTF-16 code units, which is never less than what Telegram counts.
//! Discord counts the raw content, markdown and backslashes included.

use crate::chat::Markup;

/// How a platform counts a message's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// UTF-16 code units of the text as the reader sees it (Telegram after parsing).
    Utf16,
    /// Unicode scalar values of the raw text (Discord content).
    Chars,
}

impl Measure {
    pub fn of_char(self, c: char) -> usize {
        match self {
            Measure::Utf16 => c.len_utf16(),
            Measure::Chars => 1,
        }
    }

    pub fn of(self, text: &str) -> usize {
        text.chars().map(|c| self.of_char(c)).sum()
    }
}

/// `text` (plain, not yet escaped) in at most `max` characters, cut at a word boundary
/// when one is near, with an ellipsis. Titles and excerpts go through this before they are
/// escaped and marked up, so a card's parts stay in proportion.
pub fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max || max == 0 {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    let at_word = cut.rfind(char::is_whitespace).filter(|&i| i >= cut.len() * 2 / 3);
    let mut out = at_word.map_or(cut.as_str(), |i| &cut[..i]).trim_end().to_owned();
    out.push('…');
    out
}

/// One piece of marked-up text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// Text the reader sees: one character, or an HTML entity standing for one.
    Visible(&'a str),
    /// An HTML start tag (`<b>`, `<a href="…">`), with its name.
    Open(&'a str, &'a str),
    /// An HTML end tag, with its name.
    Close(&'a str, &'a str),
    /// A markdown `**` (bold on or off) or a backtick (code on or off).
    Toggle(&'a str),
}

fn tokens(markup: Markup, text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let (token, len) = match (markup, c) {
            (Markup::Html, '<') => match rest.find('>') {
                Some(end) => {
                    let tag = &rest[..=end];
                    let inner = tag[1..tag.len() - 1].trim();
                    if let Some(name) = inner.strip_prefix('/') {
                        (Token::Close(tag, name.trim()), end + 1)
                    } else {
                        let name = inner.split_whitespace().next().unwrap_or("");
                        (Token::Open(tag, name), end + 1)
                    }
                }
                None => (Token::Visible(&rest[..1]), 1),
            },
            (Markup::Html, '&') => match rest.find(';').filter(|&end| end <= 10) {
                Some(end) => (Token::Visible(&rest[..=end]), end + 1),
                None => (Token::Visible(&rest[..1]), 1),
            },
            (Markup::Markdown, '\\') => {
                let next = rest[1..].chars().next().map_or(0, char::len_utf8);
                (Token::Visible(&rest[..1 + next]), 1 + next)
            }
            (Markup::Markdown, '*') if rest.starts_with("**") => (Token::Toggle(&rest[..2]), 2),
            (Markup::Markdown, '`') => (Token::Toggle(&rest[..1]), 1),
            (_, c) => (Token::Visible(&rest[..c.len_utf8()]), c.len_utf8()),
        };
        out.push(token);
        rest = &rest[len..];
    }
    out
}

/// What a token costs against the limit.
fn cost(markup: Markup, measure: Measure, token: Token<'_>) -> usize {
    match (markup, token) {
        // An entity is the one character it stands for.
        (Markup::Html, Token::Visible(s)) if s.starts_with('&') && s.len() > 1 => 1,
        (Markup::Html, Token::Open(..) | Token::Close(..)) => 0,
        (_, Token::Visible(s) | Token::Open(s, _) | Token::Close(s, _) | Token::Toggle(s)) => measure.of(s),
    }
}

/// The length of marked-up `text` as the platform counts it.
pub fn length(markup: Markup, measure: Measure, text: &str) -> usize {
    tokens(markup, text).into_iter().map(|t| cost(markup, measure, t)).sum()
}

/// Cuts marked-up `text` to at most `max` (as the platform counts) with an ellipsis: never
/// inside an escape or an entity, and every tag or markdown span open at the cut is closed.
pub fn fit(markup: Markup, measure: Measure, text: &str, max: usize) -> String {
    if length(markup, measure, text) <= max {
        return text.to_owned();
    }
    // What is kept, and the tags or markdown toggles open after each kept token.
    let mut kept: Vec<(Token<'_>, Vec<&str>)> = Vec::new();
    let mut open: Vec<&str> = Vec::new();
    let mut used = 0;
    let closers = |open: &[&str]| -> usize {
        match markup {
            Markup::Html => 0,
            Markup::Markdown => open.iter().map(|t| measure.of(t)).sum(),
        }
    };
    let ellipsis = measure.of_char('…');
    for token in tokens(markup, text) {
        let mut after = open.clone();
        match token {
            Token::Open(_, name) => after.push(name),
            Token::Close(_, name) => {
                if let Some(at) = after.iter().rposition(|t| *t == name) {
                    after.remove(at);
                }
            }
            Token::Toggle(t) => match after.last() {
                Some(last) if *last == t => {
                    after.pop();
                }
                _ => after.push(t),
            },
            Token::Visible(_) => {}
        }
        let next = used + cost(markup, measure, token);
        if next + ellipsis + closers(&after) > max {
            break;
        }
        used = next;
        open = after.clone();
        kept.push((token, after));
    }
    // A tag or toggle opened just before the cut, with nothing inside, reads as stray
    // markup: it goes.
    while let Some((Token::Open(..) | Token::Toggle(_), _)) = kept.last() {
        let popped = kept.pop();
        let reopened = popped.as_ref().is_some_and(|(_, after)| after.len() > kept.last().map_or(0, |(_, a)| a.len()));
        if !reopened {
            kept.push(popped.expect("just popped"));
            break;
        }
        open = kept.last().map(|(_, a)| a.clone()).unwrap_or_default();
    }
    let mut out = String::with_capacity(text.len().min(max * 4));
    for (token, _) in &kept {
        out.push_str(match *token {
            Token::Visible(s) | Token::Open(s, _) | Token::Close(s, _) | Token::Toggle(s) => s,
        });
    }
    out.push('…');
    for t in open.iter().rev() {
        match markup {
            Markup::Html => {
                out.push_str("</");
                out.push_str(t);
                out.push('>');
            }
            Markup::Markdown => out.push_str(t),
        }
    }
    out
}

/// Splits plain `text` into ordered parts, each at most `max` as `weight` counts a
/// character once rendered (1 for most; 2 for a character Discord markdown escapes). Parts
/// break at a blank line, else a line end, else a sentence or word end, else anywhere;
/// nothing is dropped but whitespace at the breaks. An empty text gives no parts.
pub fn split(text: &str, max: usize, weight: impl Fn(char) -> usize) -> Vec<String> {
    assert!(max >= 2, "a part holds at least two units");
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        // The longest prefix that fits, by byte index.
        let mut fits = 0;
        let mut used = 0;
        for (i, c) in rest.char_indices() {
            let w = weight(c);
            if used + w > max {
                break;
            }
            used += w;
            fits = i + c.len_utf8();
        }
        if fits == rest.len() {
            parts.push(rest.to_owned());
            break;
        }
        if fits == 0 {
            // One character heavier than a whole part: it goes alone rather than looping.
            fits = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let head = &rest[..fits];
        let floor = head.len() / 2;
        let at = [head.rfind("\n\n"), head.rfind('\n'), sentence_end(head), head.rfind(char::is_whitespace)]
            .into_iter()
            .flatten()
            .find(|&i| i > floor)
            .unwrap_or(fits);
        let (part, tail) = rest.split_at(at);
        let part = part.trim_end();
        if !part.is_empty() {
            parts.push(part.to_owned());
        }
        rest = tail.trim_start();
    }
    parts
}

/// The byte index just after the last ". ", "! " or "? " in `text`.
fn sentence_end(text: &str) -> Option<usize> {
    ["。", ". ", "! ", "? "].iter().filter_map(|p| text.rfind(p).map(|i| i + p.len())).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Telegram's parser, as far as balance goes: every end tag closes the innermost open tag.
    fn balanced(html: &str) -> bool {
        let mut stack = Vec::new();
        for t in tokens(Markup::Html, html) {
            match t {
                Token::Open(_, name) => stack.push(name),
                Token::Close(_, name) if stack.pop() != Some(name) => return false,
                Token::Visible(s) if s == "<" || s == ">" => return false,
                Token::Visible(s)
                    if s.starts_with('&') && s.len() > 1 && !matches!(s, "&amp;" | "&lt;" | "&gt;" | "&quot;") =>
                {
                    return false;
                }
                _ => {}
            }
        }
        stack.is_empty()
    }

    fn markdown_balanced(md: &str) -> bool {
        let toggles: Vec<_> =
            tokens(Markup::Markdown, md).into_iter().filter(|t| matches!(t, Token::Toggle(_))).collect();
        let bold = toggles.iter().filter(|t| **t == Token::Toggle("**")).count();
        let code = toggles.iter().filter(|t| **t == Token::Toggle("`")).count();
        let trailing = md.chars().rev().take_while(|c| *c == '\\').count();
        bold % 2 == 0 && code % 2 == 0 && trailing % 2 == 0
    }

    #[test]
    fn an_escaped_title_cut_keeps_its_tags_closed() {
        // The owner's 450 "R&D-nnn" items: every `&` escapes to five characters, so the
        // markup is over 4,096 characters while what Telegram counts is not: kept whole.
        let card = |items: usize| {
            let items: Vec<String> = (1..=items).map(|n| format!("R&D-{n:03}")).collect();
            let title = Markup::Html.escape(&format!("check {}", items.join(" ")));
            format!("💡 {}\nwhy", Markup::Html.bold(&title))
        };
        let html = card(450);
        assert!(html.chars().count() > 4096);
        assert_eq!(fit(Markup::Html, Measure::Utf16, &html, 4096), html);
        // 600 items are over the limit as Telegram counts: cut, the <b> closed.
        let html = card(600);
        let cut = fit(Markup::Html, Measure::Utf16, &html, 4096);
        assert!(balanced(&cut), "{}", &cut[cut.len() - 40..]);
        assert!(cut.ends_with("…</b>"));
        assert!(length(Markup::Html, Measure::Utf16, &cut) <= 4096);
        // Counted as Telegram counts: far more than 4,096 bytes of markup are kept.
        assert!(cut.chars().count() > 4096);
    }

    #[test]
    fn markdown_cut_closes_bold_and_keeps_escapes_whole() {
        let md = format!("**{}**", "a\\*".repeat(1000));
        let cut = fit(Markup::Markdown, Measure::Chars, &md, 2000);
        assert!(cut.chars().count() <= 2000);
        assert!(cut.ends_with("…**"), "{}", &cut[cut.len() - 10..]);
        assert!(markdown_balanced(&cut));
        let short = "**fine**".to_owned();
        assert_eq!(fit(Markup::Markdown, Measure::Chars, &short, 2000), short);
    }

    #[test]
    fn a_long_message_splits_at_paragraphs_and_loses_nothing() {
        let text = format!("{}\n\n{}\n{}", "a ".repeat(2000).trim(), "b".repeat(3000), "c".repeat(10));
        let parts = split(&text, 4096, |_| 1);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].ends_with('a'));
        assert!(parts[1].starts_with('b'));
        assert_eq!(parts.concat().replace(['\n', ' '], ""), text.replace(['\n', ' '], ""));
    }

    #[test]
    fn shorten_prefers_a_word_end() {
        assert_eq!(shorten("call the dentist about the crown", 20), "call the dentist…");
        assert_eq!(shorten("short", 20), "short");
        assert_eq!(shorten(&"x".repeat(30), 10).chars().count(), 10);
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("a".to_owned()),
                Just(" ".to_owned()),
                Just("\n".to_owned()),
                Just("\n\n".to_owned()),
                Just("&".to_owned()),
                Just("<".to_owned()),
                Just("*".to_owned()),
                Just("\\".to_owned()),
                Just("`".to_owned()),
                Just("é".to_owned()),
                Just("😀".to_owned()),
                Just(". ".to_owned()),
                "[a-z]{1,12}",
            ],
            0..600,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn any_cut_is_valid_markup_within_the_limit(title in any_text(), body in any_text(), max in 8usize..300) {
            for markup in [Markup::Html, Markup::Markdown] {
                let measure = if markup == Markup::Html { Measure::Utf16 } else { Measure::Chars };
                let text = format!("{}\n{}", markup.bold(&markup.escape(&title)), markup.escape(&body));
                let cut = fit(markup, measure, &text, max);
                prop_assert!(length(markup, measure, &cut) <= max, "{markup:?} {cut:?}");
                match markup {
                    Markup::Html => prop_assert!(balanced(&cut), "{cut:?}"),
                    Markup::Markdown => prop_assert!(markdown_balanced(&cut), "{cut:?}"),
                }
                if length(markup, measure, &text) <= max {
                    prop_assert_eq!(cut, text);
                }
            }
        }

        #[test]
        fn any_split_keeps_every_word_in_order(text in any_text(), max in 2usize..500) {
            let weight = |c: char| Markup::Markdown.escape(&c.to_string()).chars().count();
            let parts = split(&text, max, weight);
            for part in &parts {
                prop_assert!(!part.trim().is_empty());
                prop_assert!(part.chars().map(weight).sum::<usize>() <= max, "{part:?}");
            }
            let squash = |s: &str| s.split_whitespace().collect::<String>();
            prop_assert_eq!(squash(&parts.concat()), squash(&text));
        }
    }
}
