//! How long an adapter waits before reconnecting: 1 s, doubling with each failure in a
//! row, at most a minute — or what the platform asked for (a 429's `retry_after`).

use std::time::Duration;

const LONGEST: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// One more failure: the wait before trying again (`asked`, when the platform said).
    pub fn next(&mut self, asked: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        asked.unwrap_or_else(|| Duration::from_secs(1 << (self.failures - 1).min(6)).min(LONGEST))
    }

    /// A success: the next failure waits a second again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_to_a_minute_and_honour_what_the_platform_asks() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..8).map(|_| b.next(None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.next(Some(Duration::from_secs(7))), Duration::from_secs(7));
        b.reset();
        assert_eq!(b.next(None), Duration::from_secs(1));
    }
}
