//! Pairing: how a new owner proves who they are without looking up a numeric user id.
//!
//! `loopgate pair telegram` issues a one-time code; the first account that sends it to the
//! bot (`/start CODE` on Telegram, `/pair CODE` on Discord) becomes an owner on that
//! channel. Codes are [`CODE_LENGTH`] characters from an alphabet without look-alikes, live
//! [`CODE_VALID`], are used once, and only their hash is stored. Wrong, expired and reused
//! codes change nothing but the audit log and the rate limits.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Characters of a code: upper-case letters and digits without 0/O, 1/I/L.
pub const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Characters in a code (31^8 ≈ 8.5e11 codes).
pub const CODE_LENGTH: usize = 8;
/// How long a code is valid after `loopgate pair` printed it.
pub const CODE_VALID: Duration = Duration::hours(1);
/// Codes one channel may be issued per hour.
pub const CODES_PER_HOUR: i64 = 5;
/// Failed attempts one account may make per hour before it is refused without a look.
pub const FAILURES_PER_ACCOUNT: i64 = 5;
/// Failed attempts on one channel per hour (all accounts) before every attempt is refused:
/// many accounts guessing together get no further than one.
pub const FAILURES_PER_CHANNEL: i64 = 20;

/// The channels an owner can pair on: those whose users have numeric ids nobody knows by
/// heart. Email owners are configured by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PairChannel {
    Telegram,
    Discord,
}

impl PairChannel {
    pub const ALL: [PairChannel; 2] = [PairChannel::Telegram, PairChannel::Discord];

    pub fn as_str(self) -> &'static str {
        match self {
            PairChannel::Telegram => "telegram",
            PairChannel::Discord => "discord",
        }
    }

    pub fn parse(text: &str) -> Option<PairChannel> {
        PairChannel::ALL.into_iter().find(|c| c.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// What the new owner sends to the bot, code included.
    pub fn instruction(self, code: &str) -> String {
        match self {
            PairChannel::Telegram => format!("/start {code}"),
            PairChannel::Discord => format!("/pair {code}"),
        }
    }
}

/// A code just issued; the only time it exists in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedCode {
    pub channel: PairChannel,
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

/// What sending a code came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Redeemed {
    /// The sender is now an owner on the channel.
    Paired,
    /// The sender was an owner already; the code was not looked at (nor used up).
    AlreadyOwner,
    Refused(Refusal),
}

/// Why a code was not taken. The sender hears one wording for every reason (a guesser
/// learns nothing); the audit log keeps the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// No such code on this channel (a typo, a guess, a code for the other channel).
    Unknown,
    /// Past its hour, or replaced by a newer code.
    Expired,
    /// Someone sent it first.
    Used,
    /// Too many failed attempts in the last hour.
    RateLimited,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::Expired => "expired",
            Refusal::Used => "used",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    #[error("{CODES_PER_HOUR} codes were issued for {channel} in the last hour; try again after {retry_after}")]
    TooManyCodes { channel: &'static str, retry_after: DateTime<Utc> },
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

/// An account bound by pairing, from the `owners` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairedOwner {
    pub channel: String,
    /// The platform's user id (a Telegram or Discord snowflake), as text.
    pub account: String,
    pub name: Option<String>,
    pub paired_at: DateTime<Utc>,
}

/// A fresh code from the operating system's random source.
pub fn generate_code() -> String {
    let mut code = String::with_capacity(CODE_LENGTH);
    // Bytes at or above the largest multiple of the alphabet's size are skipped, so every
    // character is equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    while code.len() < CODE_LENGTH {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        for b in bytes {
            if usize::from(b) < limit && code.len() < CODE_LENGTH {
                code.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    code
}

/// A code as typed: case, spaces and dashes do not matter. `None` if it cannot be a code.
pub fn normalize_code(text: &str) -> Option<String> {
    let code: String =
        text.chars().filter(|c| !c.is_whitespace() && *c != '-').map(|c| c.to_ascii_uppercase()).collect();
    (code.len() == CODE_LENGTH && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// What is stored of a code: bound to its channel, so a Telegram code does nothing on
/// Discord.
pub fn hash_code(channel: PairChannel, code: &str) -> String {
    let digest = Sha256::digest(format!("loopgate-pairing\0{}\0{code}", channel.as_str()).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_only_the_unambiguous_alphabet() {
        let codes: std::collections::HashSet<String> = (0..200).map(|_| generate_code()).collect();
        assert_eq!(codes.len(), 200, "codes repeat");
        for code in &codes {
            assert_eq!(code.len(), CODE_LENGTH);
            assert!(code.bytes().all(|b| ALPHABET.contains(&b)), "{code}");
            assert!(!code.contains(['0', 'O', '1', 'I', 'L']), "{code}");
        }
    }

    #[test]
    fn a_code_is_read_however_it_is_typed() {
        assert_eq!(normalize_code("abcd-efgh").as_deref(), Some("ABCDEFGH"));
        assert_eq!(normalize_code(" AB CD EF GH ").as_deref(), Some("ABCDEFGH"));
        assert_eq!(normalize_code("ABCDEFG"), None, "too short");
        assert_eq!(normalize_code("ABCDEFGHJ"), None, "too long");
        assert_eq!(normalize_code("ABCDEFG0"), None, "a look-alike is never in a code");
        assert_eq!(normalize_code("ÄBCDEFGH"), None);
    }

    #[test]
    fn a_code_hashes_per_channel() {
        assert_ne!(hash_code(PairChannel::Telegram, "ABCDEFGH"), hash_code(PairChannel::Discord, "ABCDEFGH"));
        assert_eq!(hash_code(PairChannel::Telegram, "ABCDEFGH").len(), 64);
        assert_eq!(PairChannel::parse("Telegram"), Some(PairChannel::Telegram));
        assert_eq!(PairChannel::parse("email"), None);
    }
}
