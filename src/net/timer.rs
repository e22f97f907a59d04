//! Deadlines: a min-heap with lazy invalidation.
//!
//! A connection stores its one current deadline; a heap entry fires only if
//! it still matches that deadline and the connection's generation, so
//! changing or clearing a deadline never needs a heap search. Application
//! timers carry the caller's token.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU64;
use std::ops::Add;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A point in time: milliseconds since the process's first use of the
/// clock, plus one. Eight bytes instead of `Instant`'s sixteen, and
/// `Option<Tick>` too (the zero niche), because every connection stores
/// several; millisecond resolution is plenty for timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Tick(NonZeroU64);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Tick {
    pub(crate) fn now() -> Self {
        Tick(NonZeroU64::MIN.saturating_add(epoch().elapsed().as_millis() as u64))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub(crate) fn since(self, earlier: Tick) -> Duration {
        Duration::from_millis(self.0.get().saturating_sub(earlier.0.get()))
    }
}

impl Add<Duration> for Tick {
    type Output = Tick;

    /// Never early: `now()` truncates the clock to the millisecond, so the
    /// real time may already be up to 1 ms past `self`; `d` is rounded up
    /// and that millisecond added. Deadlines fire 0-2 ms late.
    fn add(self, d: Duration) -> Tick {
        let ms = d.as_nanos().div_ceil(1_000_000) + 1;
        Tick(self.0.saturating_add(u64::try_from(ms).unwrap_or(u64::MAX)))
    }
}

/// What a due timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    /// A connection's deadline: slab key and generation.
    Conn(usize, u32),
    /// An application timer with its token.
    App(u64),
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Tick, Target)>>,
}

impl Timers {
    pub(crate) fn push(&mut self, when: Tick, target: Target) {
        self.heap.push(Reverse((when, target)));
    }

    /// How long the poll may sleep.
    pub(crate) fn timeout(&self, now: Tick) -> Option<Duration> {
        self.heap.peek().map(|Reverse((when, _))| when.since(now))
    }

    /// The next entry due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Tick) -> Option<(Tick, Target)> {
        match self.heap.peek() {
            Some(Reverse((when, _))) if *when <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_order_and_only_when_due() {
        let t0 = Tick::now();
        let mut t = Timers::default();
        t.push(t0 + Duration::from_millis(20), Target::App(2));
        t.push(t0 + Duration::from_millis(10), Target::Conn(1, 7));
        // 10 ms, plus the millisecond that keeps deadlines from firing early.
        assert_eq!(t.timeout(t0), Some(Duration::from_millis(11)));
        assert_eq!(t.pop_due(t0), None);
        let now = t0 + Duration::from_millis(25);
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(Target::Conn(1, 7)));
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(Target::App(2)));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.timeout(now), None);
    }

    #[test]
    fn a_deadline_is_never_early() {
        let start = Instant::now();
        let deadline = Tick::now() + Duration::from_millis(3);
        while Tick::now() < deadline {
            std::hint::spin_loop();
        }
        assert!(start.elapsed() >= Duration::from_millis(3));
    }
}
