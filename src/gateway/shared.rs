//! A broker shared between gateway instances, without I/O:
//! [`SharedBroker`] keeps, per room with members here, the last seq this
//! instance delivered and delivers only the next one, whatever way it
//! comes (the publisher's own answer, the room's channel, or a read of the
//! room's stream), so every seq reaches the members here once and in
//! order. It talks to the store (Redis, `super::redis`) through two
//! channels: [`Command`]s out, [`Reply`]s in.
//!
//! The message format on the channel and in the stream, with its parser
//! [`decode`] (fuzzed: `fuzz/fuzz_targets/shared_message.rs`), is here too.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};

use super::broker::{Broker, Completion, HistoryConfig, Recovery, Sequencing};
use super::outgoing::Outgoing;
use super::room::RoomName;

/// Most messages held per room while waiting for an earlier seq.
const MAX_AHEAD: usize = 10_000;

/// Most publishes sent to the store and not yet answered; more are refused
/// at once (a slow store must not queue memory without bound).
pub const MAX_IN_FLIGHT: usize = 10_000;

/// One message as stored and published: `<seq> <ts> <from length> <from><data>`
/// (decimal numbers, one space each; `data` is a JSON value's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its seq in the room.
    pub seq: u64,
    /// Publication time, ms since the Unix epoch.
    pub ts: u64,
    /// The publishing user.
    pub from: String,
    /// The data's JSON text.
    pub data: String,
}

/// Encode `entry` as [`decode`] reads it.
pub fn encode(entry: &Entry) -> Vec<u8> {
    let mut s = String::with_capacity(entry.from.len() + entry.data.len() + 32);
    let _ = write!(
        s,
        "{} {} {} {}{}",
        entry.seq,
        entry.ts,
        entry.from.len(),
        entry.from,
        entry.data
    );
    s.into_bytes()
}

/// Why a stored or published message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not the `<seq> <ts> <len> <from><data>` layout.
    Layout,
    /// `from` or `data` is not UTF-8.
    Utf8,
    /// `data` is not one JSON value.
    Json,
    /// Seq 0 (seqs start at 1).
    Seq,
}

fn number(b: &[u8]) -> Option<(u64, &[u8])> {
    let end = b.iter().position(|&c| c == b' ')?;
    let digits = &b[..end];
    // Canonical decimal only (no sign, no leading zero): one encoding per value.
    if digits.is_empty()
        || digits.len() > 19
        || (digits.len() > 1 && digits[0] == b'0')
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, &b[end + 1..]))
}

/// Parse a message read from the room's channel or stream. Anything that
/// is not what [`encode`] (or the publish script) wrote is an error, never
/// a panic: the store is shared and may hold anything.
pub fn decode(b: &[u8]) -> Result<Entry, DecodeError> {
    let (seq, rest) = number(b).ok_or(DecodeError::Layout)?;
    let (ts, rest) = number(rest).ok_or(DecodeError::Layout)?;
    let (len, rest) = number(rest).ok_or(DecodeError::Layout)?;
    let len = usize::try_from(len).map_err(|_| DecodeError::Layout)?;
    if len > rest.len() {
        return Err(DecodeError::Layout);
    }
    let (from, data) = rest.split_at(len);
    let from = std::str::from_utf8(from).map_err(|_| DecodeError::Utf8)?;
    let data = std::str::from_utf8(data).map_err(|_| DecodeError::Utf8)?;
    // The data goes into JSON frames as it is: it must be one JSON value.
    serde_json::from_str::<&serde_json::value::RawValue>(data).map_err(|_| DecodeError::Json)?;
    if seq == 0 {
        return Err(DecodeError::Seq);
    }
    Ok(Entry {
        seq,
        ts,
        from: from.to_owned(),
        data: data.to_owned(),
    })
}

/// The store (of `n`) that holds `room`: FNV-1a (64 bits) of its name,
/// modulo `n`. Stable across processes and builds, so every instance puts
/// a room on the same store.
pub fn shard_of(room: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % n as u64) as usize
}

/// Why a read of a room's stream is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFor {
    /// Learn the room's seq (first member here) or fill in what was missed
    /// (after a (re)subscription or a gap).
    Sync,
    /// A `join` with `since`.
    Recover {
        /// The join's ticket.
        ticket: u64,
        /// Its `since`.
        since: u64,
    },
}

/// What the loop asks of the store.
#[derive(Debug, Clone)]
pub enum Command {
    /// Sequence, append and publish a message.
    Publish {
        /// The publish's ticket.
        ticket: u64,
        /// The room.
        room: String,
        /// The seq this instance delivered last in the room: the new seq
        /// is above it even if the store lost its data.
        floor: u64,
        /// The message (its `seq` is ignored).
        entry: Entry,
    },
    /// Read the room's seq (raised to `floor` first) and its stream after
    /// seq `after`, at most `count` entries (0: only the seq).
    Read {
        /// The room.
        room: String,
        /// Entries with a seq above this.
        after: u64,
        /// Most entries.
        count: usize,
        /// The seq this instance delivered last.
        floor: u64,
        /// Why.
        purpose: ReadFor,
    },
    /// Subscribe to the room's channel (answered by [`Reply::Subscribed`]).
    Subscribe {
        /// The room.
        room: String,
        /// Tells this subscription from an earlier one of the same room.
        generation: u64,
    },
    /// Unsubscribe from the room's channel.
    Unsubscribe {
        /// The room.
        room: String,
    },
    /// The users in the room on every instance.
    PresenceQuery {
        /// The request's ticket.
        ticket: u64,
        /// The room.
        room: String,
    },
    /// A user is in the room on this instance (`present`), or no longer.
    Presence {
        /// The room.
        room: String,
        /// The user.
        user: String,
        /// Joined or left.
        present: bool,
    },
}

/// A read's answer.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// The room's seq.
    pub last_seq: u64,
    /// The entries read, by seq (bad ones left out).
    pub entries: Vec<Entry>,
    /// Whether the read stopped at `count` (there may be more).
    pub truncated: bool,
}

/// What the store answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A publish's outcome: its seq, or why it was refused.
    Published {
        /// The publish's ticket.
        ticket: u64,
        /// The room.
        room: String,
        /// The message, with its seq when `result` is `Ok`.
        entry: Entry,
        /// Its seq, or the error.
        result: Result<u64, String>,
    },
    /// A read's outcome.
    Read {
        /// The room.
        room: String,
        /// Why it was made.
        purpose: ReadFor,
        /// The result or the error.
        result: Result<ReadResult, String>,
    },
    /// A message from a room's channel.
    Message {
        /// The room.
        room: String,
        /// The message.
        entry: Entry,
    },
    /// The subscription to a room's channel is in place.
    Subscribed {
        /// The room.
        room: String,
        /// The generation of the [`Command::Subscribe`].
        generation: u64,
    },
    /// The subscription connection of a shard was lost: it is
    /// unreachable.
    Down {
        /// The shard (index of its store, 0 with one store).
        shard: usize,
    },
    /// The subscription connection of a shard is back (every room is
    /// subscribed again, each answered by its own `Subscribed`).
    Up {
        /// The shard.
        shard: usize,
    },
    /// A message or stream entry that is not ours was dropped.
    Bad,
    /// The users in a room across instances (each once), or the error.
    Presence {
        /// The query's ticket.
        ticket: u64,
        /// The users.
        result: Result<Vec<String>, String>,
    },
}

#[derive(Debug, Default)]
struct RoomSync {
    generation: u64,
    subscribed: bool,
    /// The seq delivered last; `None` until the first read.
    last: Option<u64>,
    /// What was delivered last, for joins served locally.
    ring: VecDeque<Rc<Outgoing>>,
    /// Arrived before an earlier seq (and whether from this instance's
    /// own publish rather than the channel).
    ahead: BTreeMap<u64, (Entry, bool)>,
    /// A sync read is in flight.
    filling: bool,
    /// Joins waiting for the first read: (ticket, since).
    waiting: Vec<(u64, Option<u64>)>,
    /// Joins whose `since` is ahead of `last`: (ticket, since, store's seq).
    parked: Vec<(u64, u64)>,
}

/// Counters of the shared broker (rendered as `wsreactor_gateway_shared_*`).
#[derive(Debug, Default, Clone)]
pub struct SharedStats {
    /// Publishes the store sequenced.
    pub sequenced: u64,
    /// Publishes refused (store unreachable).
    pub refused: u64,
    /// Messages that arrived again (seq already delivered) and were dropped.
    pub duplicates: u64,
    /// Seqs skipped because the stream no longer held them.
    pub gaps: u64,
    /// Reads of a stream made to fill in missed messages.
    pub fills: u64,
    /// Times the store became unreachable.
    pub outages: u64,
    /// Whether it is unreachable now.
    pub down: bool,
    /// Messages or entries dropped as malformed.
    pub malformed: u64,
}

/// The loop side of a broker shared through a store (Redis).
#[derive(Debug)]
pub struct SharedBroker {
    history: HistoryConfig,
    /// One per store (shard); a room's commands go to `shard_of(room)`.
    txs: Vec<Sender<Command>>,
    down: Vec<bool>,
    rx: Receiver<Reply>,
    rooms: HashMap<RoomName, RoomSync>,
    out: Vec<Completion>,
    generations: u64,
    stats: SharedStats,
    /// Presence queries in flight: the local users, the answer if the
    /// store cannot give one.
    presence: HashMap<u64, Vec<String>>,
    /// Publishes sent and not answered.
    in_flight: usize,
    /// Bytes the rings hold (`Outgoing::size`).
    ring_bytes: usize,
}

impl SharedBroker {
    /// A broker sending commands on `tx` and taking replies from `rx`;
    /// `history` bounds what is kept here for joins (`max_messages`).
    pub fn new(history: HistoryConfig, tx: Sender<Command>, rx: Receiver<Reply>) -> Self {
        Self::sharded(history, vec![tx], rx)
    }

    /// A broker over several stores: each room lives on the store
    /// [`shard_of`] names (every instance must list the stores in the same
    /// order); replies of all of them come on `rx`.
    pub fn sharded(history: HistoryConfig, txs: Vec<Sender<Command>>, rx: Receiver<Reply>) -> Self {
        assert!(!txs.is_empty(), "at least one store");
        SharedBroker {
            history,
            down: vec![false; txs.len()],
            txs,
            rx,
            rooms: HashMap::new(),
            out: Vec::new(),
            generations: 0,
            stats: SharedStats::default(),
            presence: HashMap::new(),
            in_flight: 0,
            ring_bytes: 0,
        }
    }

    /// The counters.
    pub fn stats(&self) -> &SharedStats {
        &self.stats
    }

    fn send(&self, c: Command) {
        let room = match &c {
            Command::Publish { room, .. }
            | Command::Read { room, .. }
            | Command::Subscribe { room, .. }
            | Command::Unsubscribe { room }
            | Command::PresenceQuery { room, .. }
            | Command::Presence { room, .. } => room,
        };
        let shard = shard_of(room, self.txs.len());
        // The bridge ends only with the process.
        let _ = self.txs[shard].send(c);
    }

    fn read(&mut self, room: &RoomName, after: u64, purpose: ReadFor) {
        let floor = self.rooms.get(room).and_then(|r| r.last).unwrap_or(0);
        let count =
            if purpose == ReadFor::Sync && self.rooms.get(room).is_some_and(|r| r.last.is_none()) {
                0
            } else {
                self.history.max_messages.clamp(100, 10_000)
            };
        if purpose == ReadFor::Sync {
            if let Some(r) = self.rooms.get_mut(room) {
                r.filling = true;
            }
            if count > 0 {
                self.stats.fills += 1;
            }
        }
        self.send(Command::Read {
            room: room.to_string(),
            after,
            count,
            floor,
            purpose,
        });
    }

    /// Answer a join from what was delivered here, if that suffices.
    fn local_recovery(r: &RoomSync, since: Option<u64>) -> Option<Recovery> {
        let last = r.last?;
        let Some(since) = since else {
            return Some(Recovery {
                last_seq: last,
                recovered: true,
                messages: Vec::new(),
            });
        };
        if since > last {
            return None;
        }
        let oldest = r.ring.front().map_or(last + 1, |m| m.seq());
        if oldest > since + 1 {
            return None;
        }
        Some(Recovery {
            last_seq: last,
            recovered: true,
            messages: r.ring.iter().filter(|m| m.seq() > since).cloned().collect(),
        })
    }

    fn start_join(&mut self, ticket: u64, room: &RoomName, since: Option<u64>) -> Option<Recovery> {
        let r = self.rooms.get_mut(room)?;
        if r.last.is_none() {
            r.waiting.push((ticket, since));
            return None;
        }
        if let Some(rec) = Self::local_recovery(r, since) {
            return Some(rec);
        }
        let since = since.unwrap_or(0);
        self.read(room, since, ReadFor::Recover { ticket, since });
        None
    }

    fn deliver_entry(&mut self, room: &RoomName, e: Entry) {
        let max = self.history.max_messages;
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let m = Rc::new(Outgoing::new(
            room.clone(),
            e.seq,
            Rc::from(e.from),
            e.ts,
            e.data.into(),
        ));
        r.last = Some(e.seq);
        if max > 0 {
            self.ring_bytes += m.size();
            r.ring.push_back(m.clone());
            while r.ring.len() > max {
                if let Some(old) = r.ring.pop_front() {
                    self.ring_bytes -= old.size();
                }
            }
        }
        self.out.push(Completion::Deliver(m));
        if !r.parked.is_empty() {
            let last = e.seq;
            let ready: Vec<(u64, u64)> = r.parked.iter().copied().filter(|p| p.1 <= last).collect();
            r.parked.retain(|p| p.1 > last);
            for (ticket, since) in ready {
                let recovery = Self::local_recovery(r, Some(since)).unwrap_or(Recovery {
                    last_seq: last,
                    recovered: false,
                    messages: Vec::new(),
                });
                self.out.push(Completion::Recovered { ticket, recovery });
            }
        }
    }

    /// Deliver what `ahead` holds in order from `last + 1`.
    fn drain_ahead(&mut self, room: &RoomName) {
        loop {
            let Some(r) = self.rooms.get_mut(room) else {
                return;
            };
            let Some(last) = r.last else { return };
            while r.ahead.first_key_value().is_some_and(|(&s, _)| s <= last) {
                r.ahead.pop_first();
                self.stats.duplicates += 1;
            }
            match r.ahead.first_key_value() {
                Some((&s, _)) if s == last + 1 => {
                    let (_, (e, _)) = r.ahead.pop_first().expect("just seen");
                    self.deliver_entry(room, e);
                }
                // Only own publishes wait: the channel brings what precedes
                // them (see `on_entry`).
                Some(_) if !r.filling && (!r.subscribed || r.ahead.values().any(|v| !v.1)) => {
                    // A gap: read it from the stream.
                    self.read(room, last, ReadFor::Sync);
                    return;
                }
                _ => return,
            }
        }
    }

    /// A message from the channel, or (`own`) the answer to this
    /// instance's publish.
    fn on_entry(&mut self, room: &RoomName, e: Entry, own: bool) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if e.seq == 0 {
            // Seqs start at 1.
            self.stats.malformed += 1;
            return;
        }
        match r.last {
            Some(last) if e.seq <= last => self.stats.duplicates += 1,
            Some(last) if e.seq == last + 1 => {
                self.deliver_entry(room, e);
                self.drain_ahead(room);
            }
            _ => {
                if r.ahead.len() < MAX_AHEAD {
                    r.ahead.insert(e.seq, (e, own));
                }
                // Else dropped: the fill reads it from the stream.
                // The earlier seqs of an own publish were published before
                // it: on a subscribed channel they are on their way, no
                // read is needed (channel order is the store's order, so
                // a gap there is a real miss).
                if r.last.is_some() && !(own && r.subscribed) {
                    self.drain_ahead(room);
                }
            }
        }
    }

    fn on_read(&mut self, room: &RoomName, purpose: ReadFor, result: Result<ReadResult, String>) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        match purpose {
            ReadFor::Sync => {
                r.filling = false;
                let res = match result {
                    Ok(res) => res,
                    Err(e) => {
                        // Tried again on the next subscription or gap.
                        log::warn!("shared broker: cannot read room {room}: {e}");
                        return;
                    }
                };
                if r.last.is_none() {
                    r.last = Some(res.last_seq);
                    let waiting = std::mem::take(&mut r.waiting);
                    for (ticket, since) in waiting {
                        if let Some(recovery) = self.start_join(ticket, room, since) {
                            self.out.push(Completion::Recovered { ticket, recovery });
                        }
                    }
                }
                self.fill(room, res);
            }
            ReadFor::Recover { ticket, since } => {
                let last = r.last.unwrap_or(0);
                let res = match result {
                    Ok(res) => res,
                    Err(e) => {
                        log::warn!("shared broker: cannot recover room {room}: {e}");
                        self.out.push(Completion::Recovered {
                            ticket,
                            recovery: Recovery {
                                last_seq: last,
                                recovered: false,
                                messages: Vec::new(),
                            },
                        });
                        return;
                    }
                };
                if since > res.last_seq.max(last) {
                    // Ahead of the room: the client saw another life of it.
                    self.out.push(Completion::Recovered {
                        ticket,
                        recovery: Recovery {
                            last_seq: last,
                            recovered: false,
                            messages: Vec::new(),
                        },
                    });
                    return;
                }
                if since > last {
                    // The store is ahead of this instance: answer once the
                    // messages up to `since` were delivered here.
                    r.parked.push((ticket, since));
                    return;
                }
                // What the stream returned up to `last`, then what was
                // delivered here after it; complete only if contiguous.
                let mut got: BTreeMap<u64, Rc<Outgoing>> = BTreeMap::new();
                for e in res.entries {
                    if e.seq > since && e.seq <= last {
                        let m = Outgoing::new(
                            room.clone(),
                            e.seq,
                            Rc::from(e.from),
                            e.ts,
                            e.data.into(),
                        );
                        got.insert(e.seq, Rc::new(m));
                    }
                }
                for m in r.ring.iter().filter(|m| m.seq() > since) {
                    got.insert(m.seq(), m.clone());
                }
                let contiguous = got.keys().copied().eq(since + 1..=last);
                let recovery = Recovery {
                    last_seq: last,
                    recovered: contiguous,
                    messages: if contiguous {
                        got.into_values().collect()
                    } else {
                        Vec::new()
                    },
                };
                self.out.push(Completion::Recovered { ticket, recovery });
            }
        }
    }

    /// Deliver what a sync read found after `last`; skip what the stream
    /// no longer holds.
    fn fill(&mut self, room: &RoomName, res: ReadResult) {
        let truncated = res.truncated;
        for e in res.entries {
            let Some(last) = self.rooms.get(room).and_then(|r| r.last) else {
                return;
            };
            if e.seq <= last {
                continue;
            }
            if e.seq > last + 1 {
                self.stats.gaps += e.seq - last - 1;
                log::warn!(
                    "shared broker: room {room}: seqs {}..{} are no longer in the stream",
                    last + 1,
                    e.seq - 1
                );
            }
            self.deliver_entry(room, e);
        }
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let Some(last) = r.last else { return };
        if truncated {
            self.read(room, last, ReadFor::Sync);
            return;
        }
        // The read saw everything up to the store's seq: what is still
        // missing below it is gone. (Not below what waits in `ahead`: an
        // own publish's earlier seqs may still be on the channel; a gap
        // before a channel message gets its own read, which sees it.)
        let upto = res.last_seq;
        if upto > last {
            self.stats.gaps += upto - last;
            log::warn!(
                "shared broker: room {room}: seqs {}..{upto} are no longer in the stream",
                last + 1
            );
            r.last = Some(upto);
        }
        self.drain_ahead(room);
    }

    fn handle(&mut self, reply: Reply) {
        let room_of = |s: &str| RoomName::new(s).ok();
        match reply {
            Reply::Published {
                ticket,
                room,
                mut entry,
                result,
            } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                match &result {
                    Ok(seq) => {
                        self.stats.sequenced += 1;
                        entry.seq = *seq;
                        if let Some(room) = room_of(&room) {
                            self.on_entry(&room, entry, true);
                        }
                    }
                    Err(_) => self.stats.refused += 1,
                }
                self.out.push(Completion::Published { ticket, result });
            }
            Reply::Read {
                room,
                purpose,
                result,
            } => {
                if let Some(room) = room_of(&room) {
                    self.on_read(&room, purpose, result);
                }
            }
            Reply::Message { room, entry } => {
                if let Some(room) = room_of(&room) {
                    self.on_entry(&room, entry, false);
                }
            }
            Reply::Subscribed { room, generation } => {
                let Some(room) = room_of(&room) else { return };
                let Some(r) = self.rooms.get_mut(&room) else {
                    return;
                };
                if r.generation != generation {
                    return;
                }
                r.subscribed = true;
                // What was published before the subscription took effect
                // is read from the stream.
                let after = r.last.unwrap_or(0);
                self.read(&room, after, ReadFor::Sync);
            }
            Reply::Down { shard } => {
                let n = self.txs.len();
                if shard >= n {
                    return;
                }
                if !self.down[shard] {
                    self.stats.outages += 1;
                    self.down[shard] = true;
                }
                self.stats.down = true;
                for (room, r) in self.rooms.iter_mut() {
                    if shard_of(room, n) == shard {
                        r.subscribed = false;
                    }
                }
            }
            Reply::Up { shard } => {
                if let Some(d) = self.down.get_mut(shard) {
                    *d = false;
                }
                self.stats.down = self.down.iter().any(|d| *d);
            }
            Reply::Presence { ticket, result } => {
                let Some(mut users) = self.presence.remove(&ticket) else {
                    return;
                };
                match result {
                    // This instance's own users count even before the
                    // store has them.
                    Ok(remote) => users.extend(remote),
                    Err(e) => log::debug!("shared broker: presence from local users only: {e}"),
                }
                users.sort_unstable();
                users.dedup();
                self.out.push(Completion::Presence { ticket, users });
            }
            Reply::Bad => self.stats.malformed += 1,
        }
    }
}

impl Broker for SharedBroker {
    fn publish(
        &mut self,
        _room: &RoomName,
        _from: &Rc<str>,
        _data: Box<str>,
        _now_ms: u64,
    ) -> Option<Rc<Outgoing>> {
        // Only `publish_ticketed` is used: the answer comes later.
        None
    }

    fn publish_ticketed(
        &mut self,
        ticket: u64,
        room: &RoomName,
        from: &Rc<str>,
        data: Box<str>,
        now_ms: u64,
    ) -> Sequencing {
        if self.in_flight >= MAX_IN_FLIGHT {
            self.stats.refused += 1;
            return Sequencing::Refused(format!(
                "the shared store is behind ({MAX_IN_FLIGHT} publishes waiting)"
            ));
        }
        self.in_flight += 1;
        let floor = self.rooms.get(room).and_then(|r| r.last).unwrap_or(0);
        self.send(Command::Publish {
            ticket,
            room: room.to_string(),
            floor,
            entry: Entry {
                seq: 0,
                ts: now_ms,
                from: from.to_string(),
                data: data.into(),
            },
        });
        Sequencing::Later
    }

    fn recover(&mut self, room: &RoomName, since: Option<u64>, _now_ms: u64) -> Recovery {
        self.rooms
            .get(room)
            .and_then(|r| Self::local_recovery(r, since))
            .unwrap_or(Recovery {
                last_seq: 0,
                recovered: false,
                messages: Vec::new(),
            })
    }

    fn recover_ticketed(
        &mut self,
        ticket: u64,
        room: &RoomName,
        since: Option<u64>,
        _now_ms: u64,
    ) -> Option<Recovery> {
        self.start_join(ticket, room, since)
    }

    fn set_active(&mut self, room: &RoomName, active: bool) {
        if active {
            if self.rooms.contains_key(room) {
                return;
            }
            self.generations += 1;
            let generation = self.generations;
            self.rooms.insert(
                room.clone(),
                RoomSync {
                    generation,
                    ..Default::default()
                },
            );
            self.send(Command::Subscribe {
                room: room.to_string(),
                generation,
            });
        } else if let Some(r) = self.rooms.remove(room) {
            self.ring_bytes -= r.ring.iter().map(|m| m.size()).sum::<usize>();
            self.send(Command::Unsubscribe {
                room: room.to_string(),
            });
        }
    }

    fn presence_ticketed(
        &mut self,
        ticket: u64,
        room: &RoomName,
        local: Vec<String>,
    ) -> Option<Vec<String>> {
        self.presence.insert(ticket, local);
        self.send(Command::PresenceQuery {
            ticket,
            room: room.to_string(),
        });
        None
    }

    fn presence_change(&mut self, room: &RoomName, user: &Rc<str>, present: bool) {
        self.send(Command::Presence {
            room: room.to_string(),
            user: user.to_string(),
            present,
        });
    }

    fn expire(&mut self, _now_ms: u64) {}

    fn next_expiry(&self) -> Option<u64> {
        None
    }

    fn rooms(&self) -> usize {
        self.rooms.len()
    }

    fn history_bytes(&self) -> usize {
        self.ring_bytes
    }

    fn poll(&mut self, out: &mut Vec<Completion>) {
        loop {
            match self.rx.try_recv() {
                Ok(reply) => self.handle(reply),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if !self.stats.down {
                        self.stats.down = true;
                        self.stats.outages += 1;
                    }
                    break;
                }
            }
        }
        out.append(&mut self.out);
    }

    fn render_metrics(&self, out: &mut String) {
        let s = &self.stats;
        for (name, kind, help, v) in [
            (
                "sequenced_total",
                "counter",
                "Publishes the shared store sequenced.",
                s.sequenced,
            ),
            (
                "refused_total",
                "counter",
                "Publishes refused with `unavailable` (store unreachable).",
                s.refused,
            ),
            (
                "duplicates_total",
                "counter",
                "Messages received again and dropped.",
                s.duplicates,
            ),
            (
                "gaps_total",
                "counter",
                "Seqs skipped: no longer in the room's stream.",
                s.gaps,
            ),
            (
                "fills_total",
                "counter",
                "Stream reads made to fill in missed messages.",
                s.fills,
            ),
            (
                "outages_total",
                "counter",
                "Times the shared store became unreachable.",
                s.outages,
            ),
            (
                "down",
                "gauge",
                "1 while the shared store is unreachable.",
                u64::from(s.down),
            ),
            (
                "malformed_total",
                "counter",
                "Messages or stream entries dropped as malformed.",
                s.malformed,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP wsreactor_gateway_shared_{name} {help}\n# TYPE wsreactor_gateway_shared_{name} {kind}\nwsreactor_gateway_shared_{name} {v}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn entry(seq: u64) -> Entry {
        Entry {
            seq,
            ts: 7,
            from: "u".into(),
            data: format!("{seq}"),
        }
    }

    #[test]
    fn codec_round_trip_and_bad_input() {
        let e = Entry {
            seq: 12,
            ts: 99,
            from: "a b 3".into(),
            data: "{\"x\":[1,\"é\"]}".into(),
        };
        assert_eq!(decode(&encode(&e)), Ok(e));
        for bad in [
            &b""[..],
            b"1",
            b"1 2",
            b"1 2 3",
            b"1 2 3 ab",
            b"x 2 1 a1",
            b"1 2 99999999999999999999 a1",
            b"18446744073709551616 2 1 a1",
            b"1 2 1 a{",
            b"1 2 1 \xff1",
            b"1 2 1 a1 2",
            b"0 2 1 a1",
            b"-1 2 1 a1",
            b"+1 2 1 a1",
            b"01 2 1 a1",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    fn broker() -> (SharedBroker, Receiver<Command>, Sender<Reply>) {
        let (ctx, crx) = channel();
        let (rtx, rrx) = channel();
        (
            SharedBroker::new(HistoryConfig::default(), ctx, rrx),
            crx,
            rtx,
        )
    }

    fn delivered(b: &mut SharedBroker) -> Vec<u64> {
        let mut out = Vec::new();
        b.poll(&mut out);
        out.iter()
            .filter_map(|c| match c {
                Completion::Deliver(m) => Some(m.seq()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_seq_once_in_order_with_a_fill() {
        let (mut b, cmds, replies) = broker();
        let room = RoomName::new("r").unwrap();
        b.set_active(&room, true);
        assert!(matches!(
            cmds.try_recv(),
            Ok(Command::Subscribe { generation: 1, .. })
        ));
        // Before the first read: held.
        replies
            .send(Reply::Message {
                room: "r".into(),
                entry: entry(6),
            })
            .unwrap();
        replies
            .send(Reply::Subscribed {
                room: "r".into(),
                generation: 1,
            })
            .unwrap();
        assert!(delivered(&mut b).is_empty());
        assert!(matches!(
            cmds.try_recv(),
            Ok(Command::Read {
                after: 0,
                count: 0,
                ..
            })
        ));
        // The room is at 5 when the first read happens.
        let ok = |last_seq, entries: Vec<Entry>| Reply::Read {
            room: "r".into(),
            purpose: ReadFor::Sync,
            result: Ok(ReadResult {
                last_seq,
                entries,
                truncated: false,
            }),
        };
        replies.send(ok(5, vec![])).unwrap();
        assert_eq!(delivered(&mut b), [6]);
        // 6 again, then 9 (a gap: 7 and 8 are read from the stream).
        replies
            .send(Reply::Message {
                room: "r".into(),
                entry: entry(6),
            })
            .unwrap();
        replies
            .send(Reply::Message {
                room: "r".into(),
                entry: entry(9),
            })
            .unwrap();
        assert!(delivered(&mut b).is_empty());
        assert!(matches!(
            cmds.try_recv(),
            Ok(Command::Read { after: 6, .. })
        ));
        replies
            .send(ok(9, vec![entry(7), entry(8), entry(9)]))
            .unwrap();
        assert_eq!(delivered(&mut b), [7, 8, 9]);
        assert_eq!(b.stats().duplicates, 2);
        // A gap the stream no longer holds is skipped and counted.
        replies
            .send(Reply::Message {
                room: "r".into(),
                entry: entry(12),
            })
            .unwrap();
        assert!(delivered(&mut b).is_empty());
        replies.send(ok(12, vec![entry(12)])).unwrap();
        assert_eq!(delivered(&mut b), [12]);
        assert_eq!(b.stats().gaps, 2);
        // The ring's bytes are accounted, and released with the room.
        let held = b.history_bytes();
        assert!(held > 0);
        b.set_active(&room, false);
        assert_eq!(b.history_bytes(), 0);
    }

    #[test]
    fn a_join_is_answered_locally_or_from_the_stream() {
        let (mut b, cmds, replies) = broker();
        let room = RoomName::new("r").unwrap();
        b.set_active(&room, true);
        // Waits for the first read.
        assert!(b.recover_ticketed(1, &room, Some(2), 0).is_none());
        replies
            .send(Reply::Subscribed {
                room: "r".into(),
                generation: 1,
            })
            .unwrap();
        delivered(&mut b);
        replies
            .send(Reply::Read {
                room: "r".into(),
                purpose: ReadFor::Sync,
                result: Ok(ReadResult {
                    last_seq: 4,
                    entries: vec![],
                    truncated: false,
                }),
            })
            .unwrap();
        delivered(&mut b);
        let read = cmds.try_iter().find(|c| {
            matches!(
                c,
                Command::Read {
                    purpose: ReadFor::Recover { .. },
                    ..
                }
            )
        });
        assert!(matches!(read, Some(Command::Read { after: 2, .. })));
        replies
            .send(Reply::Read {
                room: "r".into(),
                purpose: ReadFor::Recover {
                    ticket: 1,
                    since: 2,
                },
                result: Ok(ReadResult {
                    last_seq: 4,
                    entries: vec![entry(3), entry(4)],
                    truncated: false,
                }),
            })
            .unwrap();
        let mut out = Vec::new();
        b.poll(&mut out);
        let Some(Completion::Recovered {
            ticket: 1,
            recovery,
        }) = out.pop()
        else {
            panic!("no recovery");
        };
        assert!(recovery.recovered);
        assert_eq!(
            recovery
                .messages
                .iter()
                .map(|m| m.seq())
                .collect::<Vec<_>>(),
            [3, 4]
        );
        // Now delivered here: a later join is answered at once.
        replies
            .send(Reply::Message {
                room: "r".into(),
                entry: entry(5),
            })
            .unwrap();
        delivered(&mut b);
        let r = b.recover_ticketed(2, &room, Some(4), 0).unwrap();
        assert_eq!(r.messages.len(), 1);
        assert!(r.recovered);
    }

    #[test]
    fn publishes_in_flight_are_bounded() {
        let (mut b, cmds, replies) = broker();
        let room = RoomName::new("r").unwrap();
        let from: Rc<str> = Rc::from("u");
        for t in 0..MAX_IN_FLIGHT as u64 {
            assert!(matches!(
                b.publish_ticketed(t, &room, &from, "1".into(), 0),
                Sequencing::Later
            ));
        }
        assert!(matches!(
            b.publish_ticketed(0, &room, &from, "1".into(), 0),
            Sequencing::Refused(_)
        ));
        assert_eq!(b.stats().refused, 1);
        // One answer frees one place.
        let Ok(Command::Publish { ticket, entry, .. }) = cmds.try_recv() else {
            panic!("no publish")
        };
        replies
            .send(Reply::Published {
                ticket,
                room: "r".into(),
                entry,
                result: Err("down".into()),
            })
            .unwrap();
        let mut out = Vec::new();
        b.poll(&mut out);
        assert!(matches!(
            b.publish_ticketed(1, &room, &from, "1".into(), 0),
            Sequencing::Later
        ));
    }

    #[test]
    fn an_own_publish_answered_before_the_first_read_loses_nothing() {
        let (mut b, _cmds, replies) = broker();
        let room = RoomName::new("r").unwrap();
        b.set_active(&room, true);
        // Own seq 7 comes back first; the read then says 5; 6 and 7 come
        // on the channel.
        replies
            .send(Reply::Published {
                ticket: 1,
                room: "r".into(),
                entry: entry(0),
                result: Ok(7),
            })
            .unwrap();
        replies
            .send(Reply::Subscribed {
                room: "r".into(),
                generation: 1,
            })
            .unwrap();
        replies
            .send(Reply::Read {
                room: "r".into(),
                purpose: ReadFor::Sync,
                result: Ok(ReadResult {
                    last_seq: 5,
                    entries: vec![],
                    truncated: false,
                }),
            })
            .unwrap();
        assert!(delivered(&mut b).is_empty());
        replies
            .send(Reply::Message {
                room: "r".into(),
                entry: entry(6),
            })
            .unwrap();
        replies
            .send(Reply::Message {
                room: "r".into(),
                entry: entry(7),
            })
            .unwrap();
        assert_eq!(delivered(&mut b), [6, 7]);
        assert_eq!(b.stats().gaps, 0);
        assert_eq!(b.stats().duplicates, 1);
    }

    #[test]
    fn a_join_ahead_of_this_instance_waits_for_it() {
        let (mut b, cmds, replies) = broker();
        let room = RoomName::new("r").unwrap();
        b.set_active(&room, true);
        replies
            .send(Reply::Subscribed {
                room: "r".into(),
                generation: 1,
            })
            .unwrap();
        replies
            .send(Reply::Read {
                room: "r".into(),
                purpose: ReadFor::Sync,
                result: Ok(ReadResult {
                    last_seq: 3,
                    entries: vec![],
                    truncated: false,
                }),
            })
            .unwrap();
        delivered(&mut b);
        // The client saw seq 5 elsewhere; this instance is at 3, the store at 6.
        assert!(b.recover_ticketed(7, &room, Some(5), 0).is_none());
        assert!(cmds
            .try_iter()
            .any(|c| matches!(c, Command::Read { after: 5, .. })));
        replies
            .send(Reply::Read {
                room: "r".into(),
                purpose: ReadFor::Recover {
                    ticket: 7,
                    since: 5,
                },
                result: Ok(ReadResult {
                    last_seq: 6,
                    entries: vec![entry(6)],
                    truncated: false,
                }),
            })
            .unwrap();
        let mut out = Vec::new();
        b.poll(&mut out);
        assert!(out.is_empty(), "parked until this instance reaches 5");
        for s in 4..=6 {
            replies
                .send(Reply::Message {
                    room: "r".into(),
                    entry: entry(s),
                })
                .unwrap();
        }
        b.poll(&mut out);
        let rec = out.iter().find_map(|c| match c {
            Completion::Recovered {
                ticket: 7,
                recovery,
            } => Some(recovery),
            _ => None,
        });
        let rec = rec.expect("answered");
        assert!(rec.recovered);
        assert_eq!(rec.last_seq, 5);
        assert!(rec.messages.is_empty());
        // A since ahead of the store itself: recovered false at once.
        assert!(b.recover_ticketed(8, &room, Some(99), 0).is_none());
        replies
            .send(Reply::Read {
                room: "r".into(),
                purpose: ReadFor::Recover {
                    ticket: 8,
                    since: 99,
                },
                result: Ok(ReadResult {
                    last_seq: 6,
                    entries: vec![],
                    truncated: false,
                }),
            })
            .unwrap();
        out.clear();
        b.poll(&mut out);
        assert!(matches!(
            out.as_slice(),
            [Completion::Recovered { ticket: 8, recovery }] if !recovery.recovered
        ));
    }
}
