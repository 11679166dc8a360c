//! The owner's identities on each channel, and the questions "is this sender the owner?"
//! and "may this sender answer suggestions and approvals?".

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// The owner's accounts, from `[owner]` in the configuration. Platform ids are compared
/// as strings; email addresses case-insensitively (the domain part is case-insensitive,
/// and in practice mail providers treat the local part that way too).
#[derive(Debug, Clone, Default)]
pub struct Identities {
    telegram: HashSet<String>,
    discord: HashSet<String>,
    emails: HashSet<String>,
    /// Accounts besides the owner's that may answer on a channel (a partner, an
    /// assistant): `telegram.allowed_user_ids` and the like. Compared like the owner's.
    allowed: HashMap<String, HashSet<String>>,
    /// Owners bound by pairing (kept in the database), shared by every clone so one
    /// refresh reaches every place that asks.
    paired: Paired,
}

/// Accounts per channel, in the order they were paired.
#[derive(Debug, Clone, Default)]
struct Paired(Arc<RwLock<HashMap<String, Vec<String>>>>);

impl Paired {
    fn contains(&self, source: &str, actor_id: &str) -> bool {
        self.0.read().expect("paired owners lock").get(source).is_some_and(|a| a.iter().any(|x| x == actor_id))
    }
}

impl PartialEq for Identities {
    fn eq(&self, other: &Identities) -> bool {
        let paired = |i: &Identities| i.paired.0.read().expect("paired owners lock").clone();
        self.telegram == other.telegram
            && self.discord == other.discord
            && self.emails == other.emails
            && self.allowed == other.allowed
            && paired(self) == paired(other)
    }
}

impl Identities {
    pub fn new(
        telegram: impl IntoIterator<Item = String>,
        discord: impl IntoIterator<Item = String>,
        emails: impl IntoIterator<Item = String>,
    ) -> Identities {
        Identities {
            telegram: telegram.into_iter().collect(),
            discord: discord.into_iter().collect(),
            emails: emails.into_iter().map(|e| e.trim().to_ascii_lowercase()).collect(),
            allowed: HashMap::new(),
            paired: Paired::default(),
        }
    }

    /// Replaces the paired owners with `(channel, account)` pairs, oldest first (from the
    /// store's `owners` table). Every clone of these identities sees the change.
    pub fn set_paired(&self, owners: impl IntoIterator<Item = (String, String)>) {
        let mut by_channel: HashMap<String, Vec<String>> = HashMap::new();
        for (channel, account) in owners {
            by_channel.entry(channel).or_default().push(account);
        }
        *self.paired.0.write().expect("paired owners lock") = by_channel;
    }

    /// The accounts paired on `source`, oldest first: where a channel without a configured
    /// destination posts (a private chat, a DM).
    pub fn paired_on(&self, source: &str) -> Vec<String> {
        self.paired.0.read().expect("paired owners lock").get(source).cloned().unwrap_or_default()
    }

    /// Whether any owner is configured for `source` (by file or pairing).
    pub fn has_owner_on(&self, source: &str) -> bool {
        let configured = match source {
            "telegram" => !self.telegram.is_empty(),
            "discord" => !self.discord.is_empty(),
            "email" => !self.emails.is_empty(),
            _ => false,
        };
        configured || !self.paired_on(source).is_empty()
    }

    /// Lets these accounts on `source` answer too, without making them the owner (their
    /// messages are still someone else's words).
    pub fn allow(mut self, source: &str, accounts: impl IntoIterator<Item = String>) -> Identities {
        let normalize = |a: String| if source == "email" { bare_address(&a).to_ascii_lowercase() } else { a };
        self.allowed.entry(source.to_owned()).or_default().extend(accounts.into_iter().map(normalize));
        self
    }

    /// Whether `actor_id` on `source` may answer suggestions and approvals: the owner, or an
    /// account the configuration allows on that channel. Nobody on a channel without
    /// identities (a script's text is not proof of anything).
    pub fn may_answer(&self, source: &str, actor_id: &str) -> bool {
        if self.is_owner(source, actor_id) {
            return true;
        }
        let actor = if source == "email" { bare_address(actor_id).to_ascii_lowercase() } else { actor_id.to_owned() };
        self.allowed.get(source).is_some_and(|accounts| accounts.contains(&actor))
    }

    /// Whether `actor_id` on `source` is one of the owner's own accounts. Sources without
    /// identities (the API, scripts) never match: their callers say who they are in text,
    /// and text is not proof.
    pub fn is_owner(&self, source: &str, actor_id: &str) -> bool {
        let configured = match source {
            "telegram" => self.telegram.contains(actor_id),
            "discord" => self.discord.contains(actor_id),
            "email" => self.emails.contains(&bare_address(actor_id).to_ascii_lowercase()),
            _ => false,
        };
        configured || (matches!(source, "telegram" | "discord") && self.paired.contains(source, actor_id))
    }

    /// No owner nor answerer anywhere, configured or paired.
    pub fn is_empty(&self) -> bool {
        self.telegram.is_empty()
            && self.discord.is_empty()
            && self.emails.is_empty()
            && self.allowed.values().all(HashSet::is_empty)
            && self.paired.0.read().expect("paired owners lock").values().all(Vec::is_empty)
    }
}

/// `"Dana <dana@example.org>"` → `"dana@example.org"`.
fn bare_address(text: &str) -> &str {
    match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => text[open + 1..close].trim(),
        _ => text.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Identities {
        Identities::new(["111".to_owned()], ["222".to_owned()], ["Me@Example.org".to_owned()])
    }

    #[test]
    fn matches_only_the_owners_account_on_its_own_platform() {
        let o = owner();
        let cases = [
            ("telegram", "111", true),
            ("telegram", "222", false),
            ("discord", "222", true),
            ("discord", "111", false),
            ("email", "me@example.org", true),
            ("email", "ME@EXAMPLE.ORG", true),
            ("email", "Me <me@example.org>", true),
            ("email", "me@example.org.evil.test", false),
            ("email", "Mallory <mallory@evil.test> me@example.org", false),
            ("api", "111", false),
            ("cli", "me@example.org", false),
        ];
        for (source, actor, expected) in cases {
            assert_eq!(o.is_owner(source, actor), expected, "{source} {actor}");
        }
    }

    #[test]
    fn the_owner_and_allowed_accounts_may_answer_on_their_own_channel_only() {
        let o = owner().allow("telegram", ["333".to_owned()]).allow("email", ["Partner <Pa@Example.org>".to_owned()]);
        let cases = [
            ("telegram", "111", true),
            ("telegram", "333", true),
            ("discord", "333", false),
            ("telegram", "444", false),
            ("email", "pa@example.org", true),
            ("email", "PA <PA@EXAMPLE.ORG>", true),
            ("email", "pa@example.org.evil.test", false),
            ("discord", "222", true),
            ("api", "333", false),
        ];
        for (source, actor, expected) in cases {
            assert_eq!(o.may_answer(source, actor), expected, "{source} {actor}");
        }
        assert!(!o.is_owner("telegram", "333"), "allowed to answer is not the owner");
    }

    #[test]
    fn nobody_is_the_owner_without_identities() {
        let none = Identities::default();
        assert!(none.is_empty());
        assert!(!none.is_owner("telegram", "111"));
    }

    #[test]
    fn a_paired_account_is_an_owner_on_its_channel_in_every_clone() {
        let configured = owner();
        let shared = configured.clone();
        assert!(!shared.is_owner("telegram", "555"));
        configured.set_paired([("telegram".to_owned(), "555".to_owned()), ("discord".to_owned(), "777".to_owned())]);
        assert!(shared.is_owner("telegram", "555"), "a clone sees the pairing");
        assert!(shared.may_answer("discord", "777"));
        assert!(!shared.is_owner("discord", "555"), "paired on Telegram only");
        assert!(!shared.is_owner("email", "555"));
        assert_eq!(shared.paired_on("telegram"), ["555"]);
        configured.set_paired([]);
        assert!(!shared.is_owner("telegram", "555"), "a removal reaches every clone too");
        let none = Identities::default();
        none.set_paired([("telegram".to_owned(), "1".to_owned())]);
        assert!(!none.is_empty());
        assert!(none.has_owner_on("telegram") && !none.has_owner_on("discord"));
    }
}
