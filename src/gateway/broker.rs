//! Sequence numbers and history: the [`Broker`] trait and its in-process
//! implementation, [`MemoryBroker`].
//!
//! The gateway asks the broker for the next seq of a room and for the
//! history after a seq; it keeps membership and presence itself. A broker
//! shared between instances (Redis) implements the same trait: `publish`
//! may then return `None` and hand the message back later through
//! [`super::Gateway::deliver`], once the shared sequence assigned it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use super::outgoing::Outgoing;
use super::room::RoomName;

/// History retention. Defaults: the last 1,000 messages, 5 minutes, and
/// 4 MiB of data per room, whichever is reached first.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Most messages kept per room (0: no history).
    pub max_messages: usize,
    /// Oldest message kept, in ms.
    pub max_age_ms: u64,
    /// Most bytes of message data (plus per-message overhead) per room.
    pub max_bytes: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            max_messages: 1000,
            max_age_ms: 5 * 60 * 1000,
            max_bytes: 4 << 20,
        }
    }
}

/// What a `join` with `since` gets.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The room's last seq (0 before its first message).
    pub last_seq: u64,
    /// Whether `messages` holds everything after `since`.
    pub recovered: bool,
    /// The messages after `since`, oldest first (empty unless recovered).
    pub messages: Vec<Rc<Outgoing>>,
}

/// How a publish is sequenced ([`Broker::publish_ticketed`]).
#[derive(Debug)]
pub enum Sequencing {
    /// Settled now: the message when it has its seq already (`None`: it
    /// comes later through [`super::Gateway::deliver`]); the publish is
    /// acknowledged at once.
    Now(Option<Rc<Outgoing>>),
    /// Answered later by a [`Completion::Published`] with the same ticket
    /// (the acknowledgement or the error waits for it).
    Later,
    /// Refused now (`unavailable`): not sequenced, delivered to nobody.
    Refused(String),
}

/// An answer of a broker that works asynchronously, taken by
/// [`super::Gateway::poll_broker`].
#[derive(Debug)]
pub enum Completion {
    /// A message with its seq for the room's members here (each seq once,
    /// in order).
    Deliver(Rc<Outgoing>),
    /// The answer to a [`Broker::recover_ticketed`] that returned `None`.
    Recovered {
        /// The ticket it was given.
        ticket: u64,
        /// The recovery.
        recovery: Recovery,
    },
    /// The answer to a [`Broker::presence_ticketed`] that returned `None`:
    /// the users (each once, any order).
    Presence {
        /// The ticket it was given.
        ticket: u64,
        /// The users.
        users: Vec<String>,
    },
    /// The answer to a [`Sequencing::Later`] publish: `Err` means it was
    /// refused (not sequenced, delivered to nobody) and says why.
    Published {
        /// The ticket it was given.
        ticket: u64,
        /// Its seq, or why it was refused.
        result: Result<u64, String>,
    },
}

/// Assigns seqs and keeps history.
pub trait Broker {
    /// Publish `data` from `from` to `room` at `now_ms`: the message with
    /// its seq, when this broker assigns it synchronously.
    fn publish(
        &mut self,
        room: &RoomName,
        from: &Rc<str>,
        data: Box<str>,
        now_ms: u64,
    ) -> Option<Rc<Outgoing>>;

    /// The room's last seq and the messages after `since` (when
    /// `since` is `None`: only the last seq, `recovered` true).
    fn recover(&mut self, room: &RoomName, since: Option<u64>, now_ms: u64) -> Recovery;

    /// Whether the room has members on this gateway. An active room keeps
    /// its seq even when its history empties (its members would otherwise
    /// see seqs start again); an inactive one may be forgotten.
    fn set_active(&mut self, room: &RoomName, active: bool);

    /// Drop what expired by `now_ms`.
    fn expire(&mut self, now_ms: u64);

    /// When `expire` next has work.
    fn next_expiry(&self) -> Option<u64>;

    /// Rooms with history or a seq kept.
    fn rooms(&self) -> usize;

    /// Bytes of history held.
    fn history_bytes(&self) -> usize;

    /// Publish as [`Broker::publish`], for a broker that may answer later
    /// (the gateway then holds the publisher's acknowledgement until the
    /// [`Completion::Published`] with `ticket`).
    fn publish_ticketed(
        &mut self,
        ticket: u64,
        room: &RoomName,
        from: &Rc<str>,
        data: Box<str>,
        now_ms: u64,
    ) -> Sequencing {
        let _ = ticket;
        Sequencing::Now(self.publish(room, from, data, now_ms))
    }

    /// Recover as [`Broker::recover`], or `None` when the answer comes
    /// later as a [`Completion::Recovered`] with `ticket` (the member is
    /// then subscribed only when it comes, after its replay).
    fn recover_ticketed(
        &mut self,
        ticket: u64,
        room: &RoomName,
        since: Option<u64>,
        now_ms: u64,
    ) -> Option<Recovery> {
        let _ = ticket;
        Some(self.recover(room, since, now_ms))
    }

    /// A user joined (`present`) or left a room on this gateway (a shared
    /// broker publishes presence across instances).
    fn presence_change(&mut self, room: &RoomName, user: &Rc<str>, present: bool) {
        let _ = (room, user, present);
    }

    /// The users in a room across instances: `None` when the answer comes
    /// later as a [`Completion::Presence`] with `ticket`. `local` are the
    /// users in the room on this gateway (the default answer).
    fn presence_ticketed(
        &mut self,
        ticket: u64,
        room: &RoomName,
        local: Vec<String>,
    ) -> Option<Vec<String>> {
        let _ = (ticket, room);
        Some(local)
    }

    /// Move what the broker has for the gateway into `out`.
    fn poll(&mut self, out: &mut Vec<Completion>) {
        let _ = out;
    }

    /// Append the broker's own metrics (Prometheus text).
    fn render_metrics(&self, out: &mut String) {
        let _ = out;
    }
}

#[derive(Debug, Default)]
struct RoomLog {
    last_seq: u64,
    /// When the last message was published.
    last_ts: u64,
    history: VecDeque<Rc<Outgoing>>,
    bytes: usize,
    /// The key of this room's entry in `MemoryBroker::expiries`.
    expiry: Option<(u64, u64)>,
    /// Members on this gateway: the seq is kept.
    active: bool,
}

/// The in-process broker: seqs per room from 1, history in memory.
///
/// A room is forgotten (its seq starts again from 1) when its history
/// empties by age; a client whose `since` is then ahead of the room's seq
/// gets `recovered: false`.
#[derive(Debug, Default)]
pub struct MemoryBroker {
    config: HistoryConfig,
    rooms: HashMap<RoomName, RoomLog>,
    /// (time the oldest message of a room expires, serial) -> room.
    expiries: BTreeMap<(u64, u64), RoomName>,
    serial: u64,
    bytes: usize,
}

impl MemoryBroker {
    /// A broker keeping history as `config` says.
    pub fn new(config: HistoryConfig) -> Self {
        MemoryBroker {
            config,
            ..Default::default()
        }
    }

    fn schedule(&mut self, room: &RoomName) {
        let Some(log) = self.rooms.get_mut(room) else {
            return;
        };
        if let Some(k) = log.expiry.take() {
            self.expiries.remove(&k);
        }
        // Without history left, the room itself (its seq) expires as its
        // last message would have: rooms never accumulate.
        let from = log.history.front().map_or(log.last_ts, |m| m.ts());
        self.serial += 1;
        let k = (from.saturating_add(self.config.max_age_ms), self.serial);
        log.expiry = Some(k);
        self.expiries.insert(k, room.clone());
    }

    fn trim(config: &HistoryConfig, log: &mut RoomLog, total: &mut usize, now_ms: u64) {
        while let Some(front) = log.history.front() {
            let old = front.ts().saturating_add(config.max_age_ms) <= now_ms;
            if !(old || log.history.len() > config.max_messages || log.bytes > config.max_bytes) {
                break;
            }
            let size = front.size();
            log.bytes -= size;
            *total -= size;
            log.history.pop_front();
        }
    }
}

impl Broker for MemoryBroker {
    fn publish(
        &mut self,
        room: &RoomName,
        from: &Rc<str>,
        data: Box<str>,
        now_ms: u64,
    ) -> Option<Rc<Outgoing>> {
        let log = self.rooms.entry(room.clone()).or_default();
        log.last_seq += 1;
        log.last_ts = now_ms;
        let msg = Rc::new(Outgoing::new(
            room.clone(),
            log.last_seq,
            from.clone(),
            now_ms,
            data,
        ));
        let old_front = log.history.front().map(|m| m.seq());
        if self.config.max_messages > 0 {
            let size = msg.size();
            log.bytes += size;
            self.bytes += size;
            log.history.push_back(msg.clone());
        }
        Self::trim(&self.config, log, &mut self.bytes, now_ms);
        let front = log.history.front().map(|m| m.seq());
        if front.is_none() || front != old_front {
            // The oldest message changed (or appeared, or there is no
            // history and the room's last activity moved): its expiry moves.
            self.schedule(room);
        }
        Some(msg)
    }

    fn recover(&mut self, room: &RoomName, since: Option<u64>, now_ms: u64) -> Recovery {
        let Some(log) = self.rooms.get_mut(room) else {
            return Recovery {
                last_seq: 0,
                recovered: since.is_none_or(|s| s == 0),
                messages: Vec::new(),
            };
        };
        Self::trim(&self.config, log, &mut self.bytes, now_ms);
        let last = log.last_seq;
        let Some(since) = since else {
            return Recovery {
                last_seq: last,
                recovered: true,
                messages: Vec::new(),
            };
        };
        // Everything after `since` must still be there: the oldest kept
        // message is at most `since + 1` (or nothing was missed).
        let oldest = log.history.front().map_or(last + 1, |m| m.seq());
        let recovered = since <= last && oldest <= since + 1;
        let messages = if recovered {
            log.history
                .iter()
                .filter(|m| m.seq() > since)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Recovery {
            last_seq: last,
            recovered,
            messages,
        }
    }

    fn set_active(&mut self, room: &RoomName, active: bool) {
        let log = if active {
            self.rooms.entry(room.clone()).or_default()
        } else {
            match self.rooms.get_mut(room) {
                Some(log) => log,
                None => return,
            }
        };
        log.active = active;
        if !active && log.expiry.is_none() {
            self.schedule(room);
        }
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some((&k, _)) = self.expiries.first_key_value() {
            if k.0 > now_ms {
                break;
            }
            let Some(room) = self.expiries.remove(&k) else {
                break;
            };
            let Some(log) = self.rooms.get_mut(&room) else {
                continue;
            };
            log.expiry = None;
            Self::trim(&self.config, log, &mut self.bytes, now_ms);
            if log.history.is_empty() && log.active {
                // Kept for its members; set_active(false) schedules it again.
                continue;
            }
            if log.history.is_empty()
                && log.last_ts.saturating_add(self.config.max_age_ms) <= now_ms
            {
                self.rooms.remove(&room);
            } else {
                self.schedule(&room);
            }
        }
    }

    fn next_expiry(&self) -> Option<u64> {
        self.expiries.first_key_value().map(|(k, _)| k.0)
    }

    fn rooms(&self) -> usize {
        self.rooms.len()
    }

    fn history_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(s: &str) -> RoomName {
        RoomName::new(s).unwrap()
    }

    fn publish(b: &mut MemoryBroker, r: &str, now: u64) -> u64 {
        let from: Rc<str> = Rc::from("u");
        b.publish(&room(r), &from, "1".into(), now).unwrap().seq()
    }

    #[test]
    fn seq_per_room_from_one() {
        let mut b = MemoryBroker::new(HistoryConfig::default());
        assert_eq!(publish(&mut b, "a", 0), 1);
        assert_eq!(publish(&mut b, "a", 0), 2);
        assert_eq!(publish(&mut b, "b", 0), 1);
        assert_eq!(publish(&mut b, "a", 0), 3);
        assert_eq!(b.recover(&room("a"), None, 0).last_seq, 3);
        assert_eq!(b.recover(&room("zzz"), None, 0).last_seq, 0);
    }

    #[test]
    fn recovery_by_count() {
        let cfg = HistoryConfig {
            max_messages: 3,
            ..Default::default()
        };
        let mut b = MemoryBroker::new(cfg);
        for _ in 0..5 {
            publish(&mut b, "a", 0);
        }
        // Kept: 3, 4, 5.
        let r = b.recover(&room("a"), Some(2), 0);
        assert!(r.recovered);
        assert_eq!(
            r.messages.iter().map(|m| m.seq()).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        let r = b.recover(&room("a"), Some(1), 0);
        assert!(!r.recovered);
        assert!(r.messages.is_empty());
        assert_eq!(r.last_seq, 5);
        let r = b.recover(&room("a"), Some(5), 0);
        assert!(r.recovered && r.messages.is_empty());
        // Ahead of the room: the client saw another life of it.
        assert!(!b.recover(&room("a"), Some(6), 0).recovered);
        // A room never seen: since 0 is recovered, more is not.
        assert!(b.recover(&room("new"), Some(0), 0).recovered);
        assert!(!b.recover(&room("new"), Some(3), 0).recovered);
    }

    #[test]
    fn recovery_by_age_and_expiry() {
        let cfg = HistoryConfig {
            max_age_ms: 1000,
            ..Default::default()
        };
        let mut b = MemoryBroker::new(cfg);
        publish(&mut b, "a", 0);
        publish(&mut b, "a", 500);
        assert_eq!(b.next_expiry(), Some(1000));
        let r = b.recover(&room("a"), Some(0), 999);
        assert!(r.recovered);
        assert_eq!(r.messages.len(), 2);
        b.expire(1000);
        assert_eq!(b.next_expiry(), Some(1500));
        assert!(!b.recover(&room("a"), Some(0), 1000).recovered);
        assert!(b.recover(&room("a"), Some(1), 1000).recovered);
        b.expire(1500);
        assert_eq!(b.rooms(), 0);
        assert_eq!(b.history_bytes(), 0);
        assert_eq!(b.next_expiry(), None);
    }

    #[test]
    fn an_active_room_keeps_its_seq() {
        let cfg = HistoryConfig {
            max_age_ms: 1000,
            ..Default::default()
        };
        let mut b = MemoryBroker::new(cfg);
        publish(&mut b, "a", 0);
        b.set_active(&room("a"), true);
        b.expire(5000);
        assert_eq!(b.next_expiry(), None);
        assert_eq!(b.recover(&room("a"), Some(1), 5000).last_seq, 1);
        assert!(b.recover(&room("a"), Some(1), 5000).recovered);
        assert_eq!(publish(&mut b, "a", 5000), 2);
        b.set_active(&room("a"), false);
        b.expire(7000);
        assert_eq!(b.rooms(), 0);
        assert_eq!(publish(&mut b, "a", 7000), 1);
    }

    #[test]
    fn byte_budget() {
        let one = Outgoing::new(room("a"), 1, Rc::from("u"), 0, "1".into()).size();
        let cfg = HistoryConfig {
            max_bytes: one * 2,
            ..Default::default()
        };
        let mut b = MemoryBroker::new(cfg);
        for _ in 0..10 {
            publish(&mut b, "a", 0);
        }
        assert_eq!(b.history_bytes(), one * 2);
        assert!(b.recover(&room("a"), Some(8), 0).recovered);
        assert!(!b.recover(&room("a"), Some(7), 0).recovered);
    }

    #[test]
    fn no_history() {
        let cfg = HistoryConfig {
            max_messages: 0,
            ..Default::default()
        };
        let mut b = MemoryBroker::new(cfg);
        publish(&mut b, "a", 0);
        assert_eq!(b.recover(&room("a"), Some(1), 0).last_seq, 1);
        assert!(b.recover(&room("a"), Some(1), 0).recovered);
        assert!(!b.recover(&room("a"), Some(0), 0).recovered);
    }
}
