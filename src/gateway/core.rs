//! The gateway state machine: connections, rooms, presence, limits and
//! token expiry, driven by the caller with opaque connection ids and the
//! current time, answering with [`Action`]s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::rc::Rc;

use super::auth::{credentials, Auth, AuthError, Identity};
use super::broker::{Broker, Completion, HistoryConfig, MemoryBroker, Recovery, Sequencing};
use super::metrics::GatewayMetrics;
use super::outgoing::Outgoing;
use super::protocol::{
    encode_event, parse, Encoding, ErrorCode, Event, Limits, Op, RequestError, RequestId,
};
use super::ratelimit::{Rate, TokenBucket};
use super::room::RoomName;

/// Close code sent when a connection's token expires (no `refresh` came
/// with a later one).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;

/// Settings; every default is documented in docs/gateway.md.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Request size limits.
    pub limits: Limits,
    /// History kept by the default [`MemoryBroker`].
    pub history: HistoryConfig,
    /// Publishes per connection. Default 20/s, burst 40.
    pub publish_rate: Rate,
    /// Requests of any kind per connection (bounds the work one client can
    /// cause, presence lists included). Default 100/s, burst 200.
    pub request_rate: Rate,
    /// Rooms one connection may be in. Default 64.
    pub max_rooms_per_conn: usize,
    /// Rooms with members, in all. Default 100,000.
    pub max_rooms: usize,
    /// Most users listed in a `presence` answer (the first ones in sort
    /// order; the answer then carries `total`). Default 1,000.
    pub max_presence_users: usize,
    /// Mixed into generated guest names, so they differ between runs.
    pub name_seed: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            limits: Limits::default(),
            history: HistoryConfig::default(),
            publish_rate: Rate {
                rate_per_s: 20,
                burst: 40,
            },
            request_rate: Rate {
                rate_per_s: 100,
                burst: 200,
            },
            max_rooms_per_conn: 64,
            max_rooms: 100_000,
            max_presence_users: 1000,
            name_seed: 0,
        }
    }
}

/// The bytes of a [`Action::Send`].
#[derive(Debug, Clone)]
pub enum Payload {
    /// An event for this connection alone.
    Event(Vec<u8>),
    /// A room message (a replay from history): shared, encoded once.
    Message(Rc<Outgoing>),
}

/// What the transport must do.
#[derive(Debug, Clone)]
pub enum Action<C> {
    /// Send one frame to `conn`: binary if `encoding.is_binary()`, else text.
    Send {
        /// The connection.
        conn: C,
        /// Its encoding (which also picks the frame type).
        encoding: Encoding,
        /// What to send.
        payload: Payload,
    },
    /// Add `conn` to the room's topic for its encoding: from now on it gets
    /// every [`Action::Publish`] of the room.
    Subscribe {
        /// The connection.
        conn: C,
        /// The room.
        room: RoomName,
        /// The connection's encoding.
        encoding: Encoding,
    },
    /// Remove `conn` from the room's topic.
    Unsubscribe {
        /// The connection.
        conn: C,
        /// The room.
        room: RoomName,
        /// The connection's encoding.
        encoding: Encoding,
    },
    /// Send `message` to every subscriber of the room: for each encoding
    /// that has subscribers, `message.bytes(encoding)` once, the same frame
    /// to all of them.
    Publish {
        /// The room.
        room: RoomName,
        /// The message.
        message: Rc<Outgoing>,
    },
    /// Close `conn` with this code and reason; the gateway already treats
    /// it as gone from its rooms (call [`Gateway::on_close`] when it is).
    Close {
        /// The connection.
        conn: C,
        /// The close code.
        code: u16,
        /// The reason.
        reason: &'static str,
    },
}

impl<C> Action<C> {
    /// For `Send`: the frame's bytes.
    pub fn send_bytes(&self) -> Option<&[u8]> {
        match self {
            Action::Send {
                encoding, payload, ..
            } => Some(match payload {
                Payload::Event(b) => b,
                Payload::Message(m) => m.bytes(*encoding),
            }),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Conn {
    identity: Identity,
    encoding: Encoding,
    rooms: Vec<RoomName>,
    publishes: TokenBucket,
    requests: TokenBucket,
    expiry: Option<(u64, u64)>,
    /// Closed by the gateway (expired); waiting for `on_close`.
    closing: bool,
}

/// A request waiting for the broker's answer.
#[derive(Debug)]
enum Pending<C> {
    Join {
        conn: C,
        room: RoomName,
        since: Option<u64>,
        id: Option<RequestId>,
        /// Whether the connection still has to be subscribed to the topic.
        subscribe: bool,
    },
    Publish {
        conn: C,
        id: Option<RequestId>,
    },
    Presence {
        conn: C,
        room: RoomName,
        id: Option<RequestId>,
    },
}

#[derive(Debug)]
struct Room<C> {
    members: HashSet<C>,
    /// Connections per user: presence counts a user once.
    users: HashMap<Rc<str>, u32>,
}

/// The rooms gateway, without I/O. See the module docs and
/// docs/gateway.md for the protocol; the transport calls:
///
/// - [`Gateway::authenticate`] on the upgrade request (an error: answer
///   with `AuthError::http_status`), then [`Gateway::open`] once the
///   connection is up, with the encoding from
///   [`Encoding::negotiate`];
/// - [`Gateway::on_frame`] for every message, [`Gateway::on_close`] when a
///   connection ends (whoever closed it);
/// - [`Gateway::tick`] when [`Gateway::next_deadline`] is reached;
/// - after each of these, [`Gateway::actions`], applied in order.
#[derive(Debug)]
pub struct Gateway<C, B = MemoryBroker> {
    config: GatewayConfig,
    auth: Auth,
    broker: B,
    conns: HashMap<C, Conn>,
    rooms: HashMap<RoomName, Room<C>>,
    expiries: BTreeMap<(u64, u64), C>,
    serial: u64,
    guests: u64,
    out: Vec<Action<C>>,
    metrics: GatewayMetrics,
    /// Requests the broker answers later, by ticket.
    pending: HashMap<u64, Pending<C>>,
    tickets: u64,
    completions: Vec<Completion>,
}

impl<C: Copy + Eq + Hash> Gateway<C, MemoryBroker> {
    /// A gateway with the in-process broker.
    pub fn new(config: GatewayConfig, auth: Auth) -> Self {
        let broker = MemoryBroker::new(config.history.clone());
        Self::with_broker(config, auth, broker)
    }
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finalizer: distinct counters give scattered names.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<C: Copy + Eq + Hash, B: Broker> Gateway<C, B> {
    /// A gateway on `broker`.
    pub fn with_broker(config: GatewayConfig, auth: Auth, broker: B) -> Self {
        Gateway {
            config,
            auth,
            broker,
            conns: HashMap::new(),
            rooms: HashMap::new(),
            expiries: BTreeMap::new(),
            serial: 0,
            guests: 0,
            out: Vec::new(),
            metrics: GatewayMetrics::default(),
            pending: HashMap::new(),
            tickets: 0,
            completions: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Authenticate an upgrade request: its target (`/ws?token=...`) and
    /// headers (name, value). Failures are counted by reason.
    pub fn authenticate<'a, I>(
        &mut self,
        target: &str,
        headers: I,
        now_ms: u64,
    ) -> Result<Identity, AuthError>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        self.guests += 1;
        let guest = mix(self.config.name_seed ^ self.guests) & 0xff_ffff;
        let r =
            credentials(target, headers).and_then(|c| self.auth.authenticate(&c, now_ms, guest));
        if let Err(e) = &r {
            self.metrics.auth_failure(e);
        }
        r
    }

    /// A connection is up with `identity` (from [`Gateway::authenticate`])
    /// and `encoding`. An id still open is first closed as by `on_close`.
    pub fn open(&mut self, conn: C, identity: Identity, encoding: Encoding, now_ms: u64) {
        if self.conns.contains_key(&conn) {
            self.on_close(conn);
        }
        let expiry = identity.expires_ms.map(|t| self.arm(t, conn));
        self.conns.insert(
            conn,
            Conn {
                identity,
                encoding,
                rooms: Vec::new(),
                publishes: TokenBucket::new(self.config.publish_rate, now_ms),
                requests: TokenBucket::new(self.config.request_rate, now_ms),
                expiry,
                closing: false,
            },
        );
        self.metrics.connections += 1;
        if expiry.is_some_and(|k| k.0 <= now_ms) {
            self.tick(now_ms);
        }
    }

    fn arm(&mut self, at: u64, conn: C) -> (u64, u64) {
        self.serial += 1;
        let k = (at, self.serial);
        self.expiries.insert(k, conn);
        k
    }

    /// A connection ended: it leaves its rooms (with `Unsubscribe` actions,
    /// harmless if the transport already dropped its subscriptions).
    pub fn on_close(&mut self, conn: C) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(k) = c.expiry {
            self.expiries.remove(&k);
        }
        for room in &c.rooms {
            self.remove_member(conn, room, &c.identity.user, c.encoding);
        }
        // Answers still due for it must not reach a later connection
        // with the same id.
        self.pending.retain(|_, p| match p {
            Pending::Publish { conn: c, .. } | Pending::Presence { conn: c, .. } => *c != conn,
            Pending::Join { .. } => true,
        });
        self.metrics.connections -= 1;
    }

    /// One message from `conn`: `binary` says whether it came in a binary
    /// frame. Bad input gets an `error` event; the connection stays.
    pub fn on_frame(&mut self, conn: C, frame: &[u8], binary: bool, now_ms: u64) {
        let limits = &self.config.limits;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closing {
            return;
        }
        let encoding = c.encoding;
        // Every request costs a token, valid or not; it is parsed anyway so
        // the refusal can carry the request's id.
        let allowed = c.requests.take(self.config.request_rate, now_ms);
        let parsed = parse(encoding, frame, binary, limits);
        let r = match parsed {
            Ok(req) if !allowed => Err(RequestError {
                code: ErrorCode::RateLimited,
                message: "too many requests".into(),
                id: req.id,
            }),
            Err(e) if !allowed => Err(RequestError {
                code: ErrorCode::RateLimited,
                message: "too many requests".into(),
                id: e.id,
            }),
            Ok(req) => self
                .serve(conn, req.op, req.id.as_ref(), now_ms)
                .map_err(|mut e| {
                    e.id = req.id;
                    e
                }),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            if e.code == ErrorCode::RateLimited {
                self.metrics.rate_limited += 1;
            }
            self.metrics.error(e.code);
            let event = Event::Error {
                code: e.code,
                message: &e.message,
            };
            let bytes = encode_event(encoding, &event, e.id.as_ref());
            self.send(conn, encoding, bytes);
        }
    }

    fn send(&mut self, conn: C, encoding: Encoding, bytes: Vec<u8>) {
        self.out.push(Action::Send {
            conn,
            encoding,
            payload: Payload::Event(bytes),
        });
    }

    fn serve(
        &mut self,
        conn: C,
        op: Op,
        id: Option<&RequestId>,
        now_ms: u64,
    ) -> Result<(), RequestError> {
        match op {
            Op::Join { room, since } => self.join(conn, room, since, id, now_ms),
            Op::Leave { room } => self.leave(conn, room, id),
            Op::Publish { room, data } => self.publish(conn, room, data, id, now_ms),
            Op::Presence { room } => self.presence(conn, room, id),
            Op::Refresh { token } => self.refresh(conn, &token, id, now_ms),
        }
    }

    fn conn(&self, conn: C) -> &Conn {
        // Only called for ids on_frame found open.
        &self.conns[&conn]
    }

    fn join(
        &mut self,
        conn: C,
        room: RoomName,
        since: Option<u64>,
        id: Option<&RequestId>,
        now_ms: u64,
    ) -> Result<(), RequestError> {
        let c = self.conn(conn);
        let encoding = c.encoding;
        if !c.identity.may_join(&room) {
            return Err(RequestError::new(
                ErrorCode::Forbidden,
                format!("the token does not allow room {room}"),
            ));
        }
        let mut subscribe = false;
        if !c.rooms.contains(&room) {
            if c.rooms.len() >= self.config.max_rooms_per_conn {
                return Err(RequestError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "at most {} rooms per connection",
                        self.config.max_rooms_per_conn
                    ),
                ));
            }
            if !self.rooms.contains_key(&room) && self.rooms.len() >= self.config.max_rooms {
                return Err(RequestError::new(
                    ErrorCode::Forbidden,
                    "too many rooms on this server",
                ));
            }
            let user = c.identity.user.clone();
            if !self.rooms.contains_key(&room) {
                self.broker.set_active(&room, true);
            }
            let first_of_user = self
                .rooms
                .get(&room)
                .is_none_or(|r| !r.users.contains_key(&user));
            if first_of_user {
                self.broker.presence_change(&room, &user, true);
            }
            let r = self.rooms.entry(room.clone()).or_insert_with(|| Room {
                members: HashSet::new(),
                users: HashMap::new(),
            });
            r.members.insert(conn);
            *r.users.entry(user).or_default() += 1;
            self.metrics.members += 1;
            self.metrics.rooms = self.rooms.len() as u64;
            if let Some(c) = self.conns.get_mut(&conn) {
                c.rooms.push(room.clone());
            }
            subscribe = true;
        }
        self.tickets += 1;
        let ticket = self.tickets;
        match self.broker.recover_ticketed(ticket, &room, since, now_ms) {
            Some(rec) => self.joined(conn, encoding, &room, since, id, subscribe, rec),
            None => {
                self.pending.insert(
                    ticket,
                    Pending::Join {
                        conn,
                        room,
                        since,
                        id: id.cloned(),
                        subscribe,
                    },
                );
            }
        }
        Ok(())
    }

    /// Finish a join: subscribe (after the replay is queued, so that live
    /// messages follow it), answer `joined`, replay.
    #[allow(clippy::too_many_arguments)]
    fn joined(
        &mut self,
        conn: C,
        encoding: Encoding,
        room: &RoomName,
        since: Option<u64>,
        id: Option<&RequestId>,
        subscribe: bool,
        rec: Recovery,
    ) {
        if subscribe {
            self.out.push(Action::Subscribe {
                conn,
                room: room.clone(),
                encoding,
            });
        }
        if since.is_some() {
            if rec.recovered {
                self.metrics.history_hits += 1;
            } else {
                self.metrics.history_misses += 1;
            }
        }
        let joined = Event::Joined {
            room,
            seq: rec.last_seq,
            recovered: rec.recovered,
        };
        let bytes = encode_event(encoding, &joined, id);
        self.send(conn, encoding, bytes);
        self.metrics.deliveries += rec.messages.len() as u64;
        for m in rec.messages {
            self.out.push(Action::Send {
                conn,
                encoding,
                payload: Payload::Message(m),
            });
        }
    }

    fn remove_member(&mut self, conn: C, room: &RoomName, user: &Rc<str>, encoding: Encoding) {
        if !self.pending.is_empty() {
            // A join still waiting for its recovery is abandoned.
            self.pending.retain(|_, p| {
                !matches!(p, Pending::Join { conn: c, room: r, .. } if *c == conn && r == room)
            });
        }
        if let Some(r) = self.rooms.get_mut(room) {
            if r.members.remove(&conn) {
                self.metrics.members -= 1;
                if let Some(n) = r.users.get_mut(user) {
                    *n -= 1;
                    if *n == 0 {
                        r.users.remove(user);
                        self.broker.presence_change(room, user, false);
                    }
                }
            }
            if r.members.is_empty() {
                self.rooms.remove(room);
                self.broker.set_active(room, false);
                self.metrics.rooms = self.rooms.len() as u64;
            }
        }
        self.out.push(Action::Unsubscribe {
            conn,
            room: room.clone(),
            encoding,
        });
    }

    fn not_joined(room: &RoomName) -> RequestError {
        RequestError::new(ErrorCode::NotJoined, format!("not in room {room}"))
    }

    fn leave(
        &mut self,
        conn: C,
        room: RoomName,
        id: Option<&RequestId>,
    ) -> Result<(), RequestError> {
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or_else(|| Self::not_joined(&room))?;
        let Some(i) = c.rooms.iter().position(|r| *r == room) else {
            return Err(Self::not_joined(&room));
        };
        c.rooms.swap_remove(i);
        let (user, encoding) = (c.identity.user.clone(), c.encoding);
        self.remove_member(conn, &room, &user, encoding);
        let bytes = encode_event(encoding, &Event::Left { room: &room }, id);
        self.send(conn, encoding, bytes);
        Ok(())
    }

    fn publish(
        &mut self,
        conn: C,
        room: RoomName,
        data: Box<str>,
        id: Option<&RequestId>,
        now_ms: u64,
    ) -> Result<(), RequestError> {
        let rate = self.config.publish_rate;
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or_else(|| Self::not_joined(&room))?;
        if !c.rooms.contains(&room) {
            return Err(Self::not_joined(&room));
        }
        if !c.publishes.take(rate, now_ms) {
            return Err(RequestError::new(
                ErrorCode::RateLimited,
                format!(
                    "at most {} publishes per second (burst {})",
                    rate.rate_per_s, rate.burst
                ),
            ));
        }
        let (user, encoding) = (c.identity.user.clone(), c.encoding);
        self.tickets += 1;
        let ticket = self.tickets;
        match self
            .broker
            .publish_ticketed(ticket, &room, &user, data, now_ms)
        {
            Sequencing::Now(m) => {
                if let Some(m) = m {
                    self.deliver(m);
                }
                if id.is_some() {
                    let bytes = encode_event(encoding, &Event::Ack, id);
                    self.send(conn, encoding, bytes);
                }
            }
            Sequencing::Later => {
                self.pending.insert(
                    ticket,
                    Pending::Publish {
                        conn,
                        id: id.cloned(),
                    },
                );
            }
            Sequencing::Refused(why) => {
                return Err(RequestError::new(ErrorCode::Unavailable, why));
            }
        }
        Ok(())
    }

    /// Take and apply what the broker answered since the last call
    /// (messages sequenced elsewhere, recoveries, publish results).
    pub fn poll_broker(&mut self) {
        let mut done = std::mem::take(&mut self.completions);
        self.broker.poll(&mut done);
        for c in done.drain(..) {
            self.complete(c);
        }
        self.completions = done;
    }

    /// Apply one answer of the broker.
    pub fn complete(&mut self, completion: Completion) {
        match completion {
            Completion::Deliver(m) => self.deliver(m),
            Completion::Recovered { ticket, recovery } => {
                let Some(Pending::Join {
                    conn,
                    room,
                    since,
                    id,
                    subscribe,
                }) = self.pending.remove(&ticket)
                else {
                    return;
                };
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                let encoding = c.encoding;
                self.joined(
                    conn,
                    encoding,
                    &room,
                    since,
                    id.as_ref(),
                    subscribe,
                    recovery,
                );
            }
            Completion::Presence { ticket, users } => {
                let Some(Pending::Presence { conn, room, id }) = self.pending.remove(&ticket)
                else {
                    return;
                };
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                let encoding = c.encoding;
                self.presence_answer(conn, encoding, &room, id.as_ref(), &users);
            }
            Completion::Published { ticket, result } => {
                let Some(Pending::Publish { conn, id }) = self.pending.remove(&ticket) else {
                    return;
                };
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                let encoding = c.encoding;
                match result {
                    Ok(_) if id.is_some() => {
                        let bytes = encode_event(encoding, &Event::Ack, id.as_ref());
                        self.send(conn, encoding, bytes);
                    }
                    Ok(_) => {}
                    Err(why) => {
                        self.metrics.error(ErrorCode::Unavailable);
                        let event = Event::Error {
                            code: ErrorCode::Unavailable,
                            message: &why,
                        };
                        let bytes = encode_event(encoding, &event, id.as_ref());
                        self.send(conn, encoding, bytes);
                    }
                }
            }
        }
    }

    /// A message with its seq, to the room's members here: from this
    /// gateway's own broker, or from a shared one that sequenced it later.
    pub fn deliver(&mut self, message: Rc<Outgoing>) {
        self.metrics.publishes += 1;
        let members = self
            .rooms
            .get(message.room())
            .map_or(0, |r| r.members.len());
        self.metrics.deliveries += members as u64;
        if members > 0 {
            self.out.push(Action::Publish {
                room: message.room().clone(),
                message,
            });
        }
    }

    fn presence(
        &mut self,
        conn: C,
        room: RoomName,
        id: Option<&RequestId>,
    ) -> Result<(), RequestError> {
        let c = self.conn(conn);
        let encoding = c.encoding;
        if !c.rooms.contains(&room) {
            return Err(Self::not_joined(&room));
        }
        let local: Vec<String> = self.rooms.get(&room).map_or_else(Vec::new, |r| {
            r.users.keys().map(|u| u.to_string()).collect()
        });
        self.tickets += 1;
        let ticket = self.tickets;
        match self.broker.presence_ticketed(ticket, &room, local) {
            Some(users) => self.presence_answer(conn, encoding, &room, id, &users),
            None => {
                self.pending.insert(
                    ticket,
                    Pending::Presence {
                        conn,
                        room,
                        id: id.cloned(),
                    },
                );
            }
        }
        Ok(())
    }

    fn presence_answer(
        &mut self,
        conn: C,
        encoding: Encoding,
        room: &RoomName,
        id: Option<&RequestId>,
        users: &[String],
    ) {
        let mut users: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
        let (cap, n) = (self.config.max_presence_users, users.len());
        let total = if n > cap {
            // The first `cap` in order, without sorting them all.
            if cap > 0 {
                users.select_nth_unstable(cap - 1);
            }
            users.truncate(cap);
            Some(n)
        } else {
            None
        };
        users.sort_unstable();
        let event = Event::Presence { room, users, total };
        let bytes = encode_event(encoding, &event, id);
        self.send(conn, encoding, bytes);
    }

    fn refresh(
        &mut self,
        conn: C,
        token: &str,
        id: Option<&RequestId>,
        now_ms: u64,
    ) -> Result<(), RequestError> {
        let Auth::Jwt(verifier) = &self.auth else {
            return Err(RequestError::bad(
                "refresh needs token auth; this gateway is anonymous",
            ));
        };
        let c = self.conn(conn);
        let result = verifier.verify(token, now_ms).and_then(|new| {
            if new.user == c.identity.user {
                Ok(new)
            } else {
                Err(AuthError::OtherUser)
            }
        });
        let new = match result {
            Ok(new) => new,
            Err(e) => {
                self.metrics.auth_failure(&e);
                return Err(RequestError::new(
                    ErrorCode::Forbidden,
                    format!("refresh rejected: {e}"),
                ));
            }
        };
        let old = self.conns.get_mut(&conn).and_then(|c| c.expiry.take());
        if let Some(k) = old {
            self.expiries.remove(&k);
        }
        let expiry = new.expires_ms.map(|t| self.arm(t, conn));
        let encoding = {
            let c = self
                .conns
                .get_mut(&conn)
                .ok_or_else(|| RequestError::bad("closed"))?;
            c.expiry = expiry;
            c.identity = new;
            c.encoding
        };
        if id.is_some() {
            let bytes = encode_event(encoding, &Event::Ack, id);
            self.send(conn, encoding, bytes);
        }
        Ok(())
    }

    /// Time passed: close connections whose token expired (code 4001,
    /// after which they are out of their rooms) and expire history.
    pub fn tick(&mut self, now_ms: u64) {
        while let Some((&k, &conn)) = self.expiries.first_key_value() {
            if k.0 > now_ms {
                break;
            }
            self.expiries.remove(&k);
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.expiry = None;
            c.closing = true;
            let rooms = std::mem::take(&mut c.rooms);
            let (user, encoding) = (c.identity.user.clone(), c.encoding);
            for room in &rooms {
                self.remove_member(conn, room, &user, encoding);
            }
            self.metrics.expired += 1;
            self.out.push(Action::Close {
                conn,
                code: CLOSE_TOKEN_EXPIRED,
                reason: "token expired",
            });
        }
        self.broker.expire(now_ms);
    }

    /// When [`Gateway::tick`] next has work (ms, the caller's clock).
    pub fn next_deadline(&self) -> Option<u64> {
        let a = self.expiries.first_key_value().map(|(k, _)| k.0);
        let b = self.broker.next_expiry();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The actions produced since the last call, in order.
    pub fn actions(&mut self) -> std::vec::Drain<'_, Action<C>> {
        self.out.drain(..)
    }

    /// The transport dropped `n` deliveries (slow subscribers).
    pub fn record_drops(&mut self, n: u64) {
        self.metrics.drops += n;
    }

    /// The counters, history gauges brought up to date.
    pub fn metrics(&mut self) -> &GatewayMetrics {
        self.metrics.history_rooms = self.broker.rooms() as u64;
        self.metrics.history_bytes = self.broker.history_bytes() as u64;
        &self.metrics
    }

    /// The identity of an open connection.
    pub fn identity(&self, conn: C) -> Option<&Identity> {
        self.conns.get(&conn).map(|c| &c.identity)
    }

    /// The rooms `conn` is in.
    pub fn rooms_of(&self, conn: C) -> &[RoomName] {
        self.conns.get(&conn).map_or(&[], |c| &c.rooms)
    }

    /// Whether `conn` is in `room`.
    pub fn is_member(&self, conn: C, room: &str) -> bool {
        self.rooms_of(conn).iter().any(|r| &**r == room)
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Rooms with members.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// The broker.
    pub fn broker(&self) -> &B {
        &self.broker
    }

    /// The broker, e.g. to take the messages a shared broker sequenced and
    /// hand them to [`Gateway::deliver`].
    pub fn broker_mut(&mut self) -> &mut B {
        &mut self.broker
    }
}
