//! A token bucket on the caller's clock.

/// A rate and a burst: `rate_per_s` tokens per second refill a bucket of
/// `burst` tokens; each event takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second (0: nothing is ever allowed after the burst).
    pub rate_per_s: u32,
    /// Bucket size, and the tokens a new connection starts with.
    pub burst: u32,
}

/// One bucket. Counts in thousandths of a token so a millisecond clock
/// refills exactly (`rate_per_s` thousandths per ms).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    milli: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn new(rate: Rate, now_ms: u64) -> Self {
        TokenBucket {
            milli: u64::from(rate.burst) * 1000,
            last_ms: now_ms,
        }
    }

    /// Take one token at `now_ms`, if there is one. A clock that goes back
    /// refills nothing.
    pub fn take(&mut self, rate: Rate, now_ms: u64) -> bool {
        let cap = u64::from(rate.burst) * 1000;
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.milli = self
            .milli
            .saturating_add(elapsed.saturating_mul(u64::from(rate.rate_per_s)))
            .min(cap);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let r = Rate {
            rate_per_s: 20,
            burst: 40,
        };
        let mut b = TokenBucket::new(r, 1000);
        for _ in 0..40 {
            assert!(b.take(r, 1000));
        }
        assert!(!b.take(r, 1000));
        // 20/s: one token per 50 ms.
        assert!(!b.take(r, 1049));
        assert!(b.take(r, 1050));
        assert!(!b.take(r, 1050));
        // A long pause refills to the burst, not beyond.
        let mut n = 0;
        while b.take(r, 100_000) {
            n += 1;
        }
        assert_eq!(n, 40);
        // The clock going back refills nothing and breaks nothing.
        assert!(!b.take(r, 0));
    }
}
