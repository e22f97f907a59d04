//! Deadlines: a min-heap with lazy invalidation.
//!
//! A connection stores its one current deadline; a heap entry fires only if
//! it still matches that deadline and the connection's generation, so
//! changing or clearing a deadline never needs a heap search. Application
//! timers carry the caller's token.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

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
    heap: BinaryHeap<Reverse<(Instant, Target)>>,
}

impl Timers {
    pub(crate) fn push(&mut self, when: Instant, target: Target) {
        self.heap.push(Reverse((when, target)));
    }

    /// How long the poll may sleep.
    pub(crate) fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((when, _))| when.saturating_duration_since(now))
    }

    /// The next entry due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Target)> {
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
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.push(t0 + Duration::from_millis(20), Target::App(2));
        t.push(t0 + Duration::from_millis(10), Target::Conn(1, 7));
        assert_eq!(t.timeout(t0), Some(Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0), None);
        let now = t0 + Duration::from_millis(25);
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(Target::Conn(1, 7)));
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(Target::App(2)));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.timeout(now), None);
    }
}
