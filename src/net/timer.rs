//! Deadlines: a min-heap of (when, connection) with lazy invalidation.
//!
//! A connection stores its one current deadline; a heap entry fires only if
//! it still matches that deadline and the connection's generation, so
//! changing or clearing a deadline never needs a heap search.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u32)>>,
}

impl Timers {
    pub(crate) fn push(&mut self, when: Instant, key: usize, generation: u32) {
        self.heap.push(Reverse((when, key, generation)));
    }

    /// How long the poll may sleep.
    pub(crate) fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((when, _, _))| when.saturating_duration_since(now))
    }

    /// The next entry due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize, u32)> {
        match self.heap.peek() {
            Some(Reverse((when, _, _))) if *when <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}
