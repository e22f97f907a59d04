//! The checks of `bench --gateway`: what every receiver got, against what
//! was published and what the room's `seq` says.
//!
//! Every client is a member of one room. Its `joined` event gives the
//! room's last `seq`; from then on it must receive every message of the
//! room exactly once, in `seq` order (the gateway numbers a room's messages
//! one by one). A `seq` that skips ahead leaves a hole: it is counted lost
//! at the end unless it arrives later (then it was out of order). A `seq`
//! already received is a duplicate. Each message's data carries its
//! publisher and that publisher's counter, which must grow on every
//! receiver; and every publish sent after a member's `joined` arrived must
//! reach it, whoever sequenced it: a publish the gateway never sequenced,
//! or one that another instance sequenced and never passed on, leaves no
//! `seq` hole but is missing from its publisher's counters. A member's
//! losses are the larger of the two counts.

use std::fmt;

/// How far back (in `seq`) a late message is still recognised: received
/// `seq`s are kept as a bitmap of this many below the highest.
const WINDOW: u64 = 64;

/// The publisher's stamp in a message's data: `{"p":P,"n":N,"t":T}`
/// (publisher index, its counter from 0, send time in ns since the run's
/// epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    pub p: u32,
    pub n: u64,
    pub t: u64,
}

impl Stamp {
    /// The JSON text of the stamp (the publish's `data`).
    pub fn write(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "{{\"p\":{},\"n\":{},\"t\":{}}}",
            self.p, self.n, self.t
        );
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Messages a member never got (room `seq` holes, and publishes the
    /// gateway accepted but never sent back to their publisher).
    pub lost: u64,
    /// A `seq` a member had already received.
    pub duplicates: u64,
    /// A `seq` below one already received, or a publisher counter that went
    /// backwards.
    pub out_of_order: u64,
    /// Not a message of the member's room, data that is not a stamp, a
    /// stamp naming a publisher of another room or a publish never sent.
    pub corrupt: u64,
}

impl Faults {
    pub fn total(&self) -> u64 {
        self.lost + self.duplicates + self.out_of_order + self.corrupt
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lost, {} duplicated, {} out of order, {} corrupt",
            self.lost, self.duplicates, self.out_of_order, self.corrupt
        )
    }
}

#[derive(Debug, Clone, Default)]
struct Member {
    room: u32,
    /// Joined (the `joined` event came) and not closed.
    active: bool,
    /// The room's seq at the join.
    base: u64,
    /// Highest seq received (`base` until the first message).
    top: u64,
    /// Bit k: seq `top - 1 - k` was received.
    window: u64,
    /// Distinct seqs above `base` received.
    received: u64,
}

#[derive(Debug, Clone, Default)]
struct Publisher {
    room: u32,
    /// Publishes sent (the next counter).
    sent: u64,
    /// Its own publishes it got back.
    echoed: u64,
    /// Publishes the gateway refused with an error event.
    refused: u64,
    /// Closed: only the publishes it got back are owed to the others (the
    /// rest may never have been read).
    owed: Option<u64>,
}

/// The result of one delivery, for the meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// A valid delivery, sent at this time (ns since the epoch).
    Ok { sent_ns: u64 },
    /// A fault (counted).
    Fault,
}

pub struct Tracker {
    members: Vec<Member>,
    pubs: Vec<Publisher>,
    /// Publishers per room: member `c`'s state for publisher slot `j` of its
    /// room is `last_n[c * per_room + j]` (the counter received plus one; 0:
    /// none yet).
    per_room: usize,
    rooms: usize,
    last_n: Vec<u64>,
    /// Per (member, publisher slot): the publisher's `sent` when the
    /// member's join was answered (later publishes must all arrive) ...
    floor: Vec<u64>,
    /// ... and how many of those arrived.
    got: Vec<u64>,
    /// Highest seq any member saw per room.
    room_top: Vec<u64>,
    pub faults: Faults,
    pub first_fault: Option<String>,
}

impl Tracker {
    /// `rooms` rooms with `per_room` publishers each: publisher `g` is
    /// client `g`, in room `g % rooms` (its slot there is `g / rooms`).
    pub fn new(rooms: usize, per_room: usize) -> Self {
        Self {
            members: Vec::new(),
            pubs: (0..rooms * per_room)
                .map(|g| Publisher {
                    room: (g % rooms) as u32,
                    ..Publisher::default()
                })
                .collect(),
            per_room,
            rooms,
            last_n: Vec::new(),
            floor: Vec::new(),
            got: Vec::new(),
            room_top: vec![0; rooms],
            faults: Faults::default(),
            first_fault: None,
        }
    }

    /// Room of client `c`.
    pub fn room_of(&self, c: usize) -> usize {
        c % self.rooms
    }

    pub fn publishers(&self) -> usize {
        self.pubs.len()
    }

    fn fault(&mut self, what: impl FnOnce() -> String) {
        if self.first_fault.is_none() {
            self.first_fault = Some(what());
        }
    }

    /// Client `c` joined its room, whose last seq was `seq`.
    pub fn joined(&mut self, c: usize, seq: u64) {
        if self.members.len() <= c {
            self.members.resize(c + 1, Member::default());
            self.last_n.resize((c + 1) * self.per_room, 0);
            self.floor.resize((c + 1) * self.per_room, 0);
            self.got.resize((c + 1) * self.per_room, 0);
        }
        let room = self.room_of(c) as u32;
        for j in 0..self.per_room {
            let g = j * self.rooms + room as usize;
            let at = c * self.per_room + j;
            self.floor[at] = self.pubs[g].sent;
            self.got[at] = 0;
            self.last_n[at] = 0;
        }
        self.members[c] = Member {
            room,
            active: true,
            base: seq,
            top: seq,
            window: 0,
            received: 0,
        };
        let r = room as usize;
        self.room_top[r] = self.room_top[r].max(seq);
    }

    /// Client `c` is gone: what it misses from now on is not lost.
    pub fn closed(&mut self, c: usize) {
        if let Some(m) = self.members.get_mut(c) {
            m.active = false;
        }
        if let Some(p) = self.pubs.get_mut(c) {
            p.owed = Some(p.echoed + p.refused);
        }
    }

    /// Publisher `g`'s next stamp, sent at `t_ns`.
    pub fn publish(&mut self, g: usize, t_ns: u64) -> Stamp {
        let p = &mut self.pubs[g];
        let n = p.sent;
        p.sent += 1;
        Stamp {
            p: g as u32,
            n,
            t: t_ns,
        }
    }

    /// Publisher `g`'s connection got an error event (its publish refused).
    pub fn refused(&mut self, g: usize) {
        if let Some(p) = self.pubs.get_mut(g) {
            p.refused += 1;
        }
    }

    /// Something on client `c` that is not a valid message of its room.
    pub fn corrupt(&mut self, c: usize, what: &str) {
        self.faults.corrupt += 1;
        self.fault(|| format!("client {c}: {what}"));
    }

    /// A message arrived on client `c`: room index (None: another room's
    /// name), seq, and its stamp.
    pub fn deliver(&mut self, c: usize, room: Option<usize>, seq: u64, s: Stamp) -> Delivered {
        let Some(m) = self.members.get(c).filter(|m| m.active) else {
            self.corrupt(c, "a message before its join was answered");
            return Delivered::Fault;
        };
        let my_room = m.room as usize;
        if room != Some(my_room) {
            self.corrupt(c, "a message of a room it did not join");
            return Delivered::Fault;
        }
        let g = s.p as usize;
        let Some(p) = self.pubs.get(g) else {
            self.corrupt(c, "a message naming an unknown publisher");
            return Delivered::Fault;
        };
        if p.room as usize != my_room || s.n >= p.sent {
            let what = format!("publisher {g}'s message {} that was never sent here", s.n);
            self.corrupt(c, &what);
            return Delivered::Fault;
        }
        // Room seq: exactly once, in order.
        let m = &mut self.members[c];
        if seq <= m.base {
            let base = m.base;
            self.faults.out_of_order += 1;
            self.fault(|| format!("client {c}: seq {seq}, at or below its join's seq {base}"));
            return Delivered::Fault;
        }
        if seq > m.top {
            let shift = seq - m.top;
            m.window = if shift > WINDOW {
                0
            } else {
                // The previous top becomes bit shift - 1.
                (m.window << (shift - 1) << 1) | (1 << (shift - 1))
            };
            if m.top == m.base && m.received == 0 {
                // The first message: nothing below it was received.
                m.window = 0;
            }
            m.top = seq;
            m.received += 1;
        } else if seq == m.top {
            self.faults.duplicates += 1;
            self.fault(|| format!("client {c}: seq {seq} twice"));
            return Delivered::Fault;
        } else {
            let back = m.top - seq - 1;
            if back < WINDOW && m.window & (1 << back) != 0 {
                self.faults.duplicates += 1;
                self.fault(|| format!("client {c}: seq {seq} twice"));
                return Delivered::Fault;
            }
            let top = m.top;
            if back < WINDOW {
                m.window |= 1 << back;
                m.received += 1;
            }
            self.faults.out_of_order += 1;
            self.fault(|| format!("client {c}: seq {seq} after seq {top}"));
        }
        let r = my_room;
        self.room_top[r] = self.room_top[r].max(seq);
        // Publisher counter: increasing on every member.
        let at = c * self.per_room + g / self.rooms;
        if s.n >= self.floor[at] {
            self.got[at] += 1;
        }
        let last = &mut self.last_n[at];
        if *last > s.n {
            let prev = *last - 1;
            self.faults.out_of_order += 1;
            self.fault(|| format!("client {c}: publisher {g}'s message {} after {prev}", s.n));
        } else {
            *last = s.n + 1;
        }
        if c == g {
            self.pubs[g].echoed += 1;
        }
        Delivered::Ok { sent_ns: s.t }
    }

    /// Publishes the gateway has not yet sent back to their publishers
    /// (drained once zero).
    pub fn unechoed(&self) -> u64 {
        self.pubs
            .iter()
            .map(|p| p.sent.saturating_sub(p.echoed + p.refused))
            .sum()
    }

    /// Messages member `c` misses: (room seq holes, publishes sent after
    /// its join that never came).
    fn missing(&self, c: usize) -> (u64, u64) {
        let m = &self.members[c];
        let expected = self.room_top[m.room as usize] - m.base;
        let holes = expected.saturating_sub(m.received);
        let mut unseen = 0;
        for j in 0..self.per_room {
            let p = &self.pubs[j * self.rooms + m.room as usize];
            let at = c * self.per_room + j;
            let due = p.owed.unwrap_or(p.sent).saturating_sub(self.floor[at]);
            unseen += due.saturating_sub(self.got[at] + p.refused);
        }
        (holes, unseen)
    }

    /// Active members still missing messages (the drain waits for none).
    pub fn behind(&self) -> usize {
        (0..self.members.len())
            .filter(|&c| self.members[c].active && self.missing(c) != (0, 0))
            .count()
    }

    /// After the drain: whatever an active member still misses is lost.
    pub fn count_losses(&mut self) {
        for c in 0..self.members.len() {
            if !self.members[c].active {
                continue;
            }
            let (holes, unseen) = self.missing(c);
            let lost = holes.max(unseen);
            if lost > 0 {
                let room = self.members[c].room;
                self.faults.lost += lost;
                self.fault(|| {
                    format!(
                        "client {c} (room {room}) missed {lost} messages ({holes} seq holes, {unseen} publishes sent after its join never came)"
                    )
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(t: &mut Tracker, g: usize) -> Stamp {
        t.publish(g, 7)
    }

    /// Two rooms, one publisher each (clients 0 and 1); clients 2 and 3
    /// receive in rooms 0 and 1.
    fn tracker() -> Tracker {
        let mut t = Tracker::new(2, 1);
        for c in 0..4 {
            t.joined(c, 10);
        }
        t
    }

    #[test]
    fn a_correct_stream_has_no_fault() {
        let mut t = tracker();
        for i in 0..100u64 {
            let s = stamp(&mut t, 0);
            for c in [0, 2] {
                assert_eq!(
                    t.deliver(c, Some(0), 11 + i, s),
                    Delivered::Ok { sent_ns: 7 }
                );
            }
        }
        assert_eq!(t.unechoed(), 0);
        assert_eq!(t.behind(), 0);
        t.count_losses();
        assert_eq!(t.faults, Faults::default());
        assert!(t.first_fault.is_none());
    }

    #[test]
    fn holes_are_lost_unless_they_come_late() {
        let mut t = tracker();
        let s: Vec<Stamp> = (0..4).map(|_| stamp(&mut t, 0)).collect();
        for (i, st) in s.iter().enumerate() {
            t.deliver(0, Some(0), 11 + i as u64, *st);
        }
        // Client 2 gets 11, 13, 14 and then 12 late: out of order, not lost.
        t.deliver(2, Some(0), 11, s[0]);
        t.deliver(2, Some(0), 13, s[2]);
        t.deliver(2, Some(0), 14, s[3]);
        assert_eq!(t.behind(), 1);
        t.deliver(2, Some(0), 12, s[1]);
        assert_eq!(t.behind(), 0);
        assert_eq!(t.faults.out_of_order, 2, "{:?}", t.first_fault); // seq, then counter
        t.count_losses();
        assert_eq!(t.faults.lost, 0);
        assert_eq!(t.faults.duplicates, 0);
    }

    #[test]
    fn a_missing_seq_is_lost() {
        let mut t = tracker();
        let a = stamp(&mut t, 0);
        let b = stamp(&mut t, 0);
        t.deliver(0, Some(0), 11, a);
        t.deliver(0, Some(0), 12, b);
        t.deliver(2, Some(0), 12, b);
        t.count_losses();
        assert_eq!(t.faults.lost, 1);
        assert!(t.first_fault.unwrap().contains("client 2"));
    }

    #[test]
    fn a_member_that_never_gets_the_tail_is_behind_then_lost() {
        let mut t = tracker();
        let a = stamp(&mut t, 0);
        t.deliver(0, Some(0), 11, a);
        assert_eq!(t.behind(), 1);
        t.count_losses();
        assert_eq!(t.faults.lost, 1);
    }

    /// A publisher that is closed owes the others only what it got back.
    #[test]
    fn a_closed_publisher_owes_what_it_got_back() {
        let mut t = tracker();
        let a = stamp(&mut t, 0);
        let _never_read = stamp(&mut t, 0);
        t.deliver(0, Some(0), 11, a);
        t.deliver(2, Some(0), 11, a);
        t.closed(0);
        assert_eq!(t.behind(), 0);
        t.count_losses();
        assert_eq!(t.faults.total(), 0);
    }

    #[test]
    fn a_closed_member_loses_nothing() {
        let mut t = tracker();
        let a = stamp(&mut t, 0);
        t.deliver(0, Some(0), 11, a);
        t.closed(2);
        t.count_losses();
        assert_eq!(t.faults.total(), 0);
    }

    #[test]
    fn a_publish_never_sequenced_is_lost_unless_refused() {
        let mut t = tracker();
        let _ = stamp(&mut t, 1);
        assert_eq!(t.unechoed(), 1);
        let _ = stamp(&mut t, 0);
        t.refused(0);
        t.count_losses();
        // Both members of room 1 (clients 1 and 3) miss it.
        assert_eq!(t.faults.lost, 2);
        assert!(t.first_fault.unwrap().contains("client 1"));
    }

    /// Two unlinked instances: each sequences its own members' publishes,
    /// so every member sees consecutive seqs, yet misses the other
    /// instance's publisher.
    #[test]
    fn a_publisher_a_member_never_hears_is_lost() {
        let mut t = Tracker::new(1, 2);
        for c in 0..4 {
            t.joined(c, 0);
        }
        let a: Vec<Stamp> = (0..3).map(|_| t.publish(0, 1)).collect();
        let b: Vec<Stamp> = (0..2).map(|_| t.publish(1, 1)).collect();
        for c in [0, 2] {
            for (i, s) in a.iter().enumerate() {
                t.deliver(c, Some(0), 1 + i as u64, *s);
            }
        }
        for c in [1, 3] {
            for (i, s) in b.iter().enumerate() {
                t.deliver(c, Some(0), 1 + i as u64, *s);
            }
        }
        assert_eq!(t.faults.total(), 0);
        assert_eq!(t.behind(), 4);
        t.count_losses();
        assert_eq!(t.faults.lost, 2 * 2 + 2 * 3);
    }

    /// A member that joins late owes only what was published after its
    /// join was answered.
    #[test]
    fn a_late_member_owes_what_came_after_its_join() {
        let mut t = Tracker::new(1, 1);
        t.joined(0, 0);
        let early = t.publish(0, 1);
        t.deliver(0, Some(0), 1, early);
        t.joined(1, 1);
        let late = t.publish(0, 1);
        t.deliver(0, Some(0), 2, late);
        assert_eq!(t.behind(), 1);
        t.deliver(1, Some(0), 2, late);
        assert_eq!(t.behind(), 0);
        t.count_losses();
        assert_eq!(t.faults.total(), 0);
    }

    #[test]
    fn duplicates_are_counted() {
        let mut t = tracker();
        let a = stamp(&mut t, 0);
        let b = stamp(&mut t, 0);
        t.deliver(2, Some(0), 11, a);
        t.deliver(2, Some(0), 11, a);
        t.deliver(2, Some(0), 12, b);
        t.deliver(2, Some(0), 11, a);
        assert_eq!(t.faults.duplicates, 2);
        assert_eq!(t.faults.out_of_order, 0);
    }

    #[test]
    fn publisher_counter_must_grow() {
        let mut t = tracker();
        let a = stamp(&mut t, 0);
        let b = stamp(&mut t, 0);
        // Distinct seqs, but the counter goes back: the gateway reordered
        // one publisher's messages.
        t.deliver(2, Some(0), 11, b);
        t.deliver(2, Some(0), 12, a);
        assert_eq!(t.faults.out_of_order, 1);
    }

    #[test]
    fn foreign_messages_are_corrupt() {
        let mut t = tracker();
        let a = stamp(&mut t, 0);
        let b = stamp(&mut t, 1);
        t.deliver(2, Some(1), 11, a); // wrong room
        t.deliver(2, None, 11, a); // unknown room
        t.deliver(2, Some(0), 11, b); // publisher of room 1 in room 0
        t.deliver(2, Some(0), 11, Stamp { p: 0, n: 5, t: 7 }); // never sent
        t.deliver(2, Some(0), 11, Stamp { p: 9, n: 0, t: 7 }); // no such publisher
        t.deliver(9, Some(1), 11, b); // not joined
        t.deliver(2, Some(0), 10, a); // at the join's seq
        assert_eq!(t.faults.corrupt, 6);
        assert_eq!(t.faults.out_of_order, 1);
    }

    #[test]
    fn a_far_gap_resets_the_window() {
        let mut t = tracker();
        let s: Vec<Stamp> = (0..200).map(|_| stamp(&mut t, 0)).collect();
        t.deliver(2, Some(0), 11, s[0]);
        t.deliver(2, Some(0), 11 + 150, s[150]);
        // 100 below the top: beyond the window, an out-of-order message
        // that is not recognised (and stays lost).
        t.deliver(2, Some(0), 11 + 50, s[50]);
        assert_eq!(t.faults.out_of_order, 2);
        assert_eq!(t.faults.duplicates, 0);
    }

    #[test]
    fn stamps_round_trip_through_json() {
        let s = Stamp {
            p: 3,
            n: 1 << 40,
            t: 123_456_789,
        };
        let mut text = String::new();
        s.write(&mut text);
        assert_eq!(serde_json::from_str::<Stamp>(&text).unwrap(), s);
        assert!(serde_json::from_str::<Stamp>("{\"p\":1,\"n\":2}").is_err());
        assert!(serde_json::from_str::<Stamp>("{\"p\":1,\"n\":2,\"t\":3,\"x\":4}").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whatever a server sends (any room, seq and stamp, on any client,
        /// joined or not), the tracker counts it without panicking, and a
        /// delivery is either accepted or counted as a fault.
        #[test]
        fn arbitrary_deliveries_are_counted(
            joins in proptest::collection::vec((0usize..6, 0u64..5), 0..6),
            msgs in proptest::collection::vec(
                (0usize..8, proptest::option::of(0usize..4), 0u64..20, 0u32..6, 0u64..6),
                0..64,
            ),
            sends in proptest::collection::vec(0usize..4, 0..8),
        ) {
            let mut t = Tracker::new(2, 2);
            for (c, seq) in joins {
                t.joined(c, seq);
            }
            for g in sends {
                t.publish(g, 1);
            }
            let mut ok = 0u64;
            for (c, room, seq, p, n) in msgs {
                let before = t.faults.total();
                match t.deliver(c, room, seq, Stamp { p, n, t: 1 }) {
                    Delivered::Ok { .. } => ok += 1,
                    Delivered::Fault => proptest::prop_assert!(t.faults.total() > before),
                }
            }
            let _ = (t.behind(), t.unechoed(), ok);
            t.count_losses();
        }
    }
}
