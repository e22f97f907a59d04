//! Deadlines: min-heaps with lazy invalidation.
//!
//! A connection stores the time of its one live heap entry
//! (`Conn::deadline`); an entry fires only if it still matches that time and
//! the connection's generation, so moving or clearing a deadline never needs
//! a heap search: the entry left behind is stale and dropped when it pops.
//! To keep the heap near one entry per connection, a heartbeat deadline that
//! moves later pushes nothing: the earlier entry fires and the connection
//! re-arms then (see `drive::arm`). Application timers carry the caller's
//! token, in a heap of their own.

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

    /// Milliseconds since the clock's epoch, plus one (never zero).
    pub(crate) fn millis(self) -> u64 {
        self.0.get()
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A connection's deadline: slab key and generation.
    Conn(usize, u32),
    /// An application timer with its token.
    App(u64),
}

/// A connection's heap entry: 16 bytes, because the heap holds one per
/// connection. Ordered by time first (field order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ConnEntry {
    when: Tick,
    key: u32,
    generation: u32,
}

/// Never a slab key: the reactor hands out keys below `u32::MAX` (its
/// `MAX_KEY`), so an entry for a wider key can match no connection.
const NO_KEY: u32 = u32::MAX;

/// Two min-heaps: connection deadlines, and application timers (rare, and
/// with a 64-bit token that would widen every connection's entry).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    conns: BinaryHeap<Reverse<ConnEntry>>,
    app: BinaryHeap<Reverse<(Tick, u64)>>,
}

impl Timers {
    /// Room for `connections` deadlines reserved up front: untouched pages
    /// cost nothing, and growing never copies the heap (a copy's old pages
    /// stay resident in the allocator).
    pub(crate) fn with_capacity(connections: usize) -> Self {
        Self {
            conns: BinaryHeap::with_capacity(connections),
            app: BinaryHeap::new(),
        }
    }

    /// Call connection `key` (of `generation`) at `when`.
    pub(crate) fn push_conn(&mut self, when: Tick, key: usize, generation: u32) {
        let key = u32::try_from(key).unwrap_or(NO_KEY);
        self.conns.push(Reverse(ConnEntry {
            when,
            key,
            generation,
        }));
    }

    /// Call the application with `token` at `when`.
    pub(crate) fn push_app(&mut self, when: Tick, token: u64) {
        self.app.push(Reverse((when, token)));
    }

    /// Connection entries in the heap, stale ones included.
    #[cfg(test)]
    pub(crate) fn conn_entries(&self) -> usize {
        self.conns.len()
    }

    fn next_conn(&self) -> Option<Tick> {
        self.conns.peek().map(|Reverse(e)| e.when)
    }

    fn next_app(&self) -> Option<Tick> {
        self.app.peek().map(|Reverse((when, _))| *when)
    }

    /// The earliest entry's time, stale entries included (one that pops
    /// early only wakes the loop once for nothing).
    pub(crate) fn next(&self) -> Option<Tick> {
        match (self.next_conn(), self.next_app()) {
            (Some(c), Some(a)) => Some(c.min(a)),
            (c, a) => c.or(a),
        }
    }

    /// How long the poll may sleep.
    #[cfg(test)]
    pub(crate) fn timeout(&self, now: Tick) -> Option<Duration> {
        self.next().map(|when| when.since(now))
    }

    /// The next entry due at `now`, if any; on a tie the connection's first.
    pub(crate) fn pop_due(&mut self, now: Tick) -> Option<(Tick, Target)> {
        let conn = self.next_conn().filter(|when| *when <= now);
        let app = self.next_app().filter(|when| *when <= now);
        let conn_first = match (conn, app) {
            (None, None) => return None,
            (Some(c), Some(a)) => c <= a,
            (c, _) => c.is_some(),
        };
        if conn_first {
            self.conns.pop().map(|Reverse(e)| {
                let key = usize::try_from(e.key).unwrap_or(usize::MAX);
                (e.when, Target::Conn(key, e.generation))
            })
        } else {
            self.app
                .pop()
                .map(|Reverse((when, token))| (when, Target::App(token)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pops_in_order_and_only_when_due() {
        let t0 = Tick::now();
        let mut t = Timers::default();
        t.push_app(t0 + ms(20), 2);
        t.push_conn(t0 + ms(10), 1, 7);
        t.push_conn(t0 + ms(30), 3, 9);
        // 10 ms, plus the millisecond that keeps deadlines from firing early.
        assert_eq!(t.timeout(t0), Some(ms(11)));
        assert_eq!(t.pop_due(t0), None);
        let now = t0 + ms(25);
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(Target::Conn(1, 7)));
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(Target::App(2)));
        assert_eq!(t.pop_due(now), None);
        // Both times carry the extra millisecond.
        assert_eq!(t.timeout(now), Some(ms(5)));
        let later = t0 + ms(40);
        assert_eq!(t.pop_due(later), Some((t0 + ms(30), Target::Conn(3, 9))));
        assert_eq!(t.timeout(later), None);
    }

    #[test]
    fn app_timers_alone_set_the_timeout() {
        let t0 = Tick::now();
        let mut t = Timers::default();
        t.push_app(t0 + ms(5), 1);
        assert_eq!(t.timeout(t0), Some(ms(6)));
        assert_eq!(t.conn_entries(), 0);
        assert_eq!(t.pop_due(t0 + ms(6)), Some((t0 + ms(5), Target::App(1))));
    }

    #[test]
    fn a_tie_goes_to_the_connection() {
        let t0 = Tick::now();
        let mut t = Timers::default();
        t.push_app(t0, 5);
        t.push_conn(t0, 4, 1);
        assert_eq!(t.pop_due(t0).map(|e| e.1), Some(Target::Conn(4, 1)));
        assert_eq!(t.pop_due(t0).map(|e| e.1), Some(Target::App(5)));
    }

    #[test]
    fn connection_entries_take_16_bytes() {
        assert_eq!(std::mem::size_of::<Reverse<ConnEntry>>(), 16);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_key_wider_than_32_bits_matches_no_connection() {
        let t0 = Tick::now();
        let mut t = Timers::default();
        let wide = usize::try_from(u64::from(u32::MAX) + 5).unwrap();
        t.push_conn(t0, wide, 3);
        let key = usize::try_from(NO_KEY).unwrap();
        assert_eq!(t.pop_due(t0), Some((t0, Target::Conn(key, 3))));
    }

    #[test]
    fn a_deadline_is_never_early() {
        let start = Instant::now();
        let deadline = Tick::now() + ms(3);
        while Tick::now() < deadline {
            std::hint::spin_loop();
        }
        assert!(start.elapsed() >= ms(3));
    }
}
