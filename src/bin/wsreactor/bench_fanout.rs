//! `wsreactor bench --fanout`: a broadcast (fan-out) load generator.
//!
//! The server under test sends every message any connection sends to every
//! open connection, the sender included, in order (uWebSockets'
//! `benchmarks/broadcast_test` contract). N connections are opened, the
//! first K of them publish: closed loop (`--inflight M`: each publisher
//! keeps M broadcasts outstanding, a broadcast being complete once every
//! connection has received it) or open loop (`--rate R`: R publishes per
//! second in all, round robin over the publishers, on a fixed schedule).
//!
//! Every message starts with a 20-byte header: publisher index (u32 LE),
//! sequence number (u64 LE) and the send time (u64 LE, nanoseconds since
//! the run's epoch; open loop: the time it was due); the rest is the same
//! ASCII pattern as the echo load's. Every delivery on every connection is
//! checked: length, pattern, header against what was published, duplicates
//! (a bitset of receivers per outstanding broadcast), order per publisher,
//! and after the run the receivers each outstanding broadcast still misses
//! (lost). Any nonzero count fails the run.
//!
//! Before measuring, connection 0 sends probe broadcasts until every
//! connection has received the latest one: a connection that got a
//! broadcast is one the server broadcasts to, so no measured broadcast can
//! miss a connection the server has not registered yet (a server may answer
//! the handshake before it subscribes the connection). A probe follows the
//! last one only once every connection that has joined has received it (or
//! after 200 ms without progress), so probes never pile up in a slow
//! server, and none is still in flight when the warm-up starts.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use wsreactor::net::WsUrl;
use wsreactor::{ConnId, Control, Ctx, Handler, Message, Reactor, Remote, ServerConfig};

use super::{
    group, number, secs, string, Meter, Mode, Options, Pacer, Phase, CLOSE_GRACE, CONNECT_BATCH,
    CONNECT_LIMIT,
};

const USAGE: &str = "\
wsreactor bench --fanout: broadcast load generator (closed or open loop)

USAGE:
    wsreactor bench --fanout --url ws://HOST:PORT/ [OPTIONS]

The server must send every message any connection sends to every open
connection, the sender included, in order. The first K connections publish;
every delivery on every connection is checked for loss, duplicates, order
and content, and any fault fails the run. Progress lines (deliveries/s) go
to stderr; the summary (or JSON) to stdout.

OPTIONS:
    --url URL            ws://host:port/path (with --mode tcp: host:port of
                         a raw TCP broadcast server)
    --connections N      Connections, every one a receiver [default: 100]
    --publishers K       Connections that publish (the first K) [default: 1]
    --inflight M         Closed loop: broadcasts each publisher keeps
                         outstanding; one completes when every connection
                         has received it [default: 1]
    --rate R             Open loop: R publishes per second in all, round
                         robin over the publishers, on a schedule; latency
                         is timed from when each was due [default: closed]
    --size BYTES         Message size, at least 20 [default: 20]
    --duration SECS      Measured time, after the warm-up [default: 10]
    --warmup SECS        Time before measuring, counted once every
                         connection receives broadcasts [default: 2]
    --mode ws|tcp        WebSocket (binary messages) on wsreactor's client
                         reactor, or raw TCP (fixed-size messages, no
                         framing) [default: ws]
    --sources S          Connect from S source addresses, 127.0.0.2 ..
                         127.0.0.(S+1) (loopback servers; for many
                         connections) [default: 1: the system's choice]
    --server-pid PID     Also report the CPU time of this process
    --json               Print the result as one JSON object
    -q, --quiet          No progress lines
    -h, --help           Print this help
";

/// Bytes of the header every message starts with.
const HEADER: usize = 20;
/// The publisher index of a probe (see the module comment).
const PROBE: u32 = u32::MAX;
/// How often the probing checks whether the next probe is due.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// A probe no connection has received for this long is followed by the next
/// (the server may have dropped it: it came before the sender was joined).
const PROBE_STALL: Duration = Duration::from_millis(200);
/// After the measurement: how long outstanding broadcasts may take to
/// complete before their missing deliveries count as lost.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Per-connection, per-publisher order state: connections × publishers may
/// not exceed this (8 bytes each).
const MAX_PAIRS: usize = 1 << 22;
/// Memory for the receiver bitsets of outstanding broadcasts (open loop).
const BITSET_BUDGET: usize = 64 << 20;
/// Open loop: broadcasts one publisher may have outstanding (at most;
/// fewer when the bitsets would exceed their budget).
const OPEN_LOOP_OUTSTANDING: usize = 1000;

#[derive(Debug, Clone)]
struct FanOptions {
    /// The options the echo load shares (its meter reads them).
    base: Options,
    publishers: usize,
    inflight: usize,
    sources: u8,
}

fn parse(args: Vec<OsString>) -> Result<Option<FanOptions>, String> {
    use lexopt::prelude::*;
    let mut o = FanOptions {
        base: Options {
            url: String::new(),
            connections: 100,
            size: HEADER,
            text: false,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            pipeline: 1,
            rate: None,
            mode: Mode::Ws,
            server_pid: None,
            json: false,
            quiet: false,
            ca: None,
        },
        publishers: 1,
        inflight: 1,
        sources: 1,
    };
    let b = &mut o.base;
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("fanout") => {}
            Long("url") => b.url = string(&mut parser, "--url")?,
            Long("connections") => b.connections = number(&mut parser, "--connections")?,
            Long("publishers") => o.publishers = number(&mut parser, "--publishers")?,
            Long("inflight") => o.inflight = number(&mut parser, "--inflight")?,
            Long("rate") => b.rate = Some(number(&mut parser, "--rate")?),
            Long("size") => b.size = number(&mut parser, "--size")?,
            Long("duration") => b.duration = secs(&mut parser, "--duration")?,
            Long("warmup") => b.warmup = secs(&mut parser, "--warmup")?,
            Long("mode") => {
                b.mode = match string(&mut parser, "--mode")?.as_str() {
                    "ws" => Mode::Ws,
                    "tcp" => Mode::Tcp,
                    other => return Err(format!("--mode: '{other}' is not ws or tcp")),
                }
            }
            Long("sources") => o.sources = number(&mut parser, "--sources")?,
            Long("server-pid") => b.server_pid = Some(number(&mut parser, "--server-pid")?),
            Long("json") => b.json = true,
            Short('q') | Long("quiet") => b.quiet = true,
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(None);
            }
            Long("text") | Long("binary") => {
                return Err("--fanout sends binary messages (their header is binary)".into())
            }
            Long("pipeline") => {
                return Err("--fanout keeps broadcasts in flight with --inflight".into())
            }
            other => {
                return Err(format!(
                    "{} (see wsreactor bench --fanout --help)",
                    other.unexpected()
                ))
            }
        }
    }
    let b = &o.base;
    if b.url.is_empty() {
        return Err("missing --url (see wsreactor bench --fanout --help)".into());
    }
    if b.connections == 0 || o.inflight == 0 {
        return Err("--connections and --inflight must be at least 1".into());
    }
    if o.publishers == 0 || o.publishers > b.connections {
        return Err("--publishers must be between 1 and --connections".into());
    }
    if b.connections.saturating_mul(o.publishers) > MAX_PAIRS {
        return Err(format!(
            "--connections x --publishers may be at most {MAX_PAIRS} (order is tracked per pair)"
        ));
    }
    if b.connections > u32::MAX as usize / 2 {
        return Err("--connections is too large".into());
    }
    if b.size < HEADER {
        return Err(format!(
            "--size must be at least {HEADER} (publisher, sequence number and send time)"
        ));
    }
    if let Some(rate) = b.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err("--rate must be a positive number of publishes per second".into());
        }
        if o.inflight != 1 {
            return Err("--inflight is for the closed loop; with --rate the schedule sets how many broadcasts are in flight".into());
        }
    }
    if o.sources == 0 || o.sources > 250 {
        return Err("--sources must be between 1 and 250".into());
    }
    if b.duration.is_zero() {
        return Err("--duration must be more than 0".into());
    }
    Ok(Some(o))
}

pub fn run(args: Vec<OsString>) -> Result<(), String> {
    let Some(o) = parse(args)? else {
        return Ok(());
    };
    let target = Target::resolve(&o)?;
    let report = match o.base.mode {
        Mode::Ws => run_ws(&o, target)?,
        Mode::Tcp => run_tcp(&o, target)?,
    };
    if o.base.json {
        println!("{}", report.json(&o));
    } else {
        print!("{}", report.human(&o));
    }
    let f = report.faults;
    if f.total() > 0 {
        return Err(format!(
            "delivery faults: {} lost, {} duplicated, {} out of order, {} corrupt; first: {}",
            f.lost,
            f.duplicates,
            f.out_of_order,
            f.corrupt,
            report.first_fault.as_deref().unwrap_or("-")
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Where to connect, and from where.

struct Target {
    addr: SocketAddr,
    /// WebSocket mode: the Host header and the path of the request.
    host: String,
    path: String,
    sources: u8,
}

impl Target {
    fn resolve(o: &FanOptions) -> Result<Self, String> {
        let (hostport, host, path) = match o.base.mode {
            Mode::Ws => {
                let u = WsUrl::parse(&o.base.url).map_err(|e| format!("--url: {e}"))?;
                let hp = if u.host.contains(':') {
                    format!("[{}]:{}", u.host, u.port)
                } else {
                    format!("{}:{}", u.host, u.port)
                };
                (hp, u.host_header(), u.path)
            }
            Mode::Tcp => {
                let s = o.base.url.as_str();
                let s = s
                    .strip_prefix("tcp://")
                    .or_else(|| s.strip_prefix("ws://"))
                    .unwrap_or(s);
                let s = s.split('/').next().unwrap_or(s);
                (s.to_string(), String::new(), String::new())
            }
        };
        let addr = hostport
            .to_socket_addrs()
            .map_err(|e| format!("--url: {hostport}: {e}"))?
            .next()
            .ok_or_else(|| format!("--url: {hostport} did not resolve"))?;
        if o.sources > 1 && !(addr.is_ipv4() && addr.ip().is_loopback()) {
            return Err("--sources needs a server on an IPv4 loopback address".into());
        }
        Ok(Self {
            addr,
            host,
            path,
            sources: o.sources,
        })
    }

    /// A socket connecting (non-blocking) to the server; connection `i`
    /// binds to its source address first when there are several.
    fn open(&self, i: usize) -> io::Result<std::net::TcpStream> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(
            Domain::for_address(self.addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        s.set_nonblocking(true)?;
        if self.sources > 1 {
            let ip = Ipv4Addr::new(127, 0, 0, 2 + (i % self.sources as usize) as u8);
            s.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())?;
        }
        match s.connect(&self.addr.into()) {
            Ok(()) => {}
            Err(e) if in_progress(&e) => {}
            Err(e) => return Err(e),
        }
        let _ = s.set_tcp_nodelay(true);
        Ok(s.into())
    }
}

/// A non-blocking connect that has started.
fn in_progress(e: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        e.raw_os_error() == Some(libc::EINPROGRESS)
    }
    #[cfg(not(target_os = "linux"))]
    {
        e.kind() == io::ErrorKind::WouldBlock
    }
}

// ---------------------------------------------------------------------------
// The tracker: what was published, who received it, what is wrong.

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Faults {
    /// Deliveries a connection never got (counted after the drain).
    lost: u64,
    /// A second delivery of a broadcast to a connection.
    duplicates: u64,
    /// A delivery that came after a later one of the same publisher.
    out_of_order: u64,
    /// Wrong length or content, or a header that names no broadcast sent.
    corrupt: u64,
}

impl Faults {
    fn total(&self) -> u64 {
        self.lost + self.duplicates + self.out_of_order + self.corrupt
    }
}

struct Outstanding {
    /// Send time (open loop: due time), nanoseconds since the epoch.
    sent_ns: u64,
    /// Connections that have not received it yet.
    remaining: u32,
    /// Connections that have, one bit each.
    seen: Box<[u64]>,
}

struct Publisher {
    /// Sequence number of the next broadcast.
    next: u64,
    /// Sequence number of `pending[0]`: all before it completed.
    base: u64,
    pending: VecDeque<Outstanding>,
}

struct Tracker {
    conns: usize,
    words: usize,
    /// The message as sent; its header is rewritten per publish.
    msg: Vec<u8>,
    epoch: Instant,
    pubs: Vec<Publisher>,
    /// Per (connection, publisher): the highest sequence number received
    /// plus one.
    next_in_order: Vec<u64>,
    spare: Vec<Box<[u64]>>,
    joined: Vec<bool>,
    joined_count: usize,
    /// Probes sent; receivers of the latest, and when it last gained one.
    probes: u64,
    probe_receivers: usize,
    probe_progress: Instant,
    faults: Faults,
    first_fault: Option<String>,
    /// Broadcasts completed while measuring, and their publish-to-last-
    /// delivery times.
    completed: u64,
    completion: Histogram<u64>,
}

/// The header of a message: publisher, sequence number, send time.
fn header(msg: &[u8]) -> (u32, u64, u64) {
    let mut p = [0u8; 4];
    let mut s = [0u8; 8];
    let mut t = [0u8; 8];
    p.copy_from_slice(&msg[0..4]);
    s.copy_from_slice(&msg[4..12]);
    t.copy_from_slice(&msg[12..20]);
    (
        u32::from_le_bytes(p),
        u64::from_le_bytes(s),
        u64::from_le_bytes(t),
    )
}

impl Tracker {
    fn new(conns: usize, publishers: usize, size: usize) -> Self {
        Self {
            conns,
            words: conns.div_ceil(64),
            msg: (0..size).map(|i| b'a' + (i % 26) as u8).collect(),
            epoch: Instant::now(),
            pubs: (0..publishers)
                .map(|_| Publisher {
                    next: 0,
                    base: 0,
                    pending: VecDeque::new(),
                })
                .collect(),
            next_in_order: vec![0; conns * publishers],
            spare: Vec::new(),
            joined: vec![false; conns],
            joined_count: 0,
            probes: 0,
            probe_receivers: 0,
            probe_progress: Instant::now(),
            faults: Faults::default(),
            first_fault: None,
            completed: 0,
            completion: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds"),
        }
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Open loop: outstanding broadcasts one publisher may have.
    fn open_loop_limit(&self) -> usize {
        let per = (self.words * 8).max(1);
        (BITSET_BUDGET / per / self.pubs.len()).clamp(1, OPEN_LOOP_OUTSTANDING)
    }

    fn outstanding(&self, p: usize) -> usize {
        self.pubs[p].pending.len()
    }

    fn outstanding_total(&self) -> usize {
        self.pubs.iter().map(|p| p.pending.len()).sum()
    }

    fn stamp(&mut self, publisher: u32, seq: u64, sent_ns: u64) -> &[u8] {
        self.msg[0..4].copy_from_slice(&publisher.to_le_bytes());
        self.msg[4..12].copy_from_slice(&seq.to_le_bytes());
        self.msg[12..20].copy_from_slice(&sent_ns.to_le_bytes());
        &self.msg
    }

    /// Publisher `p`'s next broadcast, timed from `at`: the message to send.
    fn publish(&mut self, p: usize, at: Instant) -> &[u8] {
        let sent_ns = self.ns(at);
        let seen = self
            .spare
            .pop()
            .unwrap_or_else(|| vec![0; self.words].into_boxed_slice());
        let pb = &mut self.pubs[p];
        let seq = pb.next;
        pb.next += 1;
        pb.pending.push_back(Outstanding {
            sent_ns,
            remaining: self.conns as u32,
            seen,
        });
        self.stamp(p as u32, seq, sent_ns)
    }

    /// A probe (not tracked; see the module comment).
    fn probe(&mut self, at: Instant) -> &[u8] {
        let sent_ns = self.ns(at);
        self.probes += 1;
        self.probe_receivers = 0;
        self.probe_progress = at;
        self.stamp(PROBE, self.probes, sent_ns)
    }

    /// Every connection has received the latest probe.
    fn all_joined(&self) -> bool {
        self.probes > 0 && self.probe_receivers == self.conns
    }

    /// Should the next probe go out now? Once every joined connection has
    /// the latest (no probe is queued anywhere), or when it stalled.
    fn probe_due(&self, now: Instant) -> bool {
        !self.all_joined()
            && (self.probes == 0
                || (self.probe_receivers > 0 && self.probe_receivers == self.joined_count)
                || now.duration_since(self.probe_progress) >= PROBE_STALL)
    }

    fn fault(&mut self, what: impl FnOnce() -> String) {
        if self.first_fault.is_none() {
            self.first_fault = Some(what());
        }
    }

    fn corrupt(&mut self, c: usize, what: &str) {
        self.faults.corrupt += 1;
        self.fault(|| format!("connection {c}: {what}"));
    }

    /// A message arrived on connection `c`. Returns the publisher, if its
    /// oldest outstanding broadcasts completed with it (so a closed loop
    /// publishes again).
    fn deliver(&mut self, c: usize, msg: &[u8], now: Instant, meter: &mut Meter) -> Option<usize> {
        if msg.len() != self.msg.len() {
            let what = format!("a message of {} bytes, sent {}", msg.len(), self.msg.len());
            self.corrupt(c, &what);
            return None;
        }
        if msg[HEADER..] != self.msg[HEADER..] {
            self.corrupt(c, "a message whose payload differs from what was sent");
            return None;
        }
        let (p, s, t) = header(msg);
        if p == PROBE {
            if !self.joined[c] {
                self.joined[c] = true;
                self.joined_count += 1;
            }
            if s == self.probes {
                self.probe_receivers += 1;
                self.probe_progress = now;
            }
            return None;
        }
        let p = p as usize;
        if p >= self.pubs.len() {
            self.corrupt(c, "a message with an unknown publisher");
            return None;
        }
        let pb = &mut self.pubs[p];
        if s >= pb.next {
            self.corrupt(c, "a broadcast that was never sent");
            return None;
        }
        if s < pb.base {
            // Every connection had received it already.
            self.faults.duplicates += 1;
            self.fault(|| format!("connection {c}: publisher {p}'s broadcast {s} twice"));
            return None;
        }
        let o = &mut pb.pending[(s - pb.base) as usize];
        if o.sent_ns != t {
            self.corrupt(
                c,
                "a broadcast with a send time that differs from the sent one",
            );
            return None;
        }
        let (w, bit) = (c / 64, 1u64 << (c % 64));
        if o.seen[w] & bit != 0 {
            self.faults.duplicates += 1;
            self.fault(|| format!("connection {c}: publisher {p}'s broadcast {s} twice"));
            return None;
        }
        o.seen[w] |= bit;
        o.remaining -= 1;
        let done = o.remaining == 0;
        let k = self.pubs.len();
        let order = &mut self.next_in_order[c * k + p];
        if s < *order {
            let after = *order - 1;
            self.faults.out_of_order += 1;
            self.fault(|| {
                format!("connection {c}: publisher {p}'s broadcast {s} after its broadcast {after}")
            });
        } else {
            *order = s + 1;
        }
        let now_ns = self.ns(now);
        let latency = now_ns.saturating_sub(t);
        meter.record(Duration::from_nanos(latency));
        if !done {
            return None;
        }
        if meter.phase == Phase::Measure {
            self.completed += 1;
            self.completion.saturating_record(latency.max(1));
        }
        // Retire from the front: a broadcast completes no later than the
        // next one of its publisher unless a delivery came out of order.
        let pb = &mut self.pubs[p];
        let mut retired = false;
        while pb.pending.front().is_some_and(|o| o.remaining == 0) {
            let mut o = pb.pending.pop_front().expect("front exists");
            o.seen.fill(0);
            self.spare.push(o.seen);
            pb.base += 1;
            retired = true;
        }
        retired.then_some(p)
    }

    /// After the drain: whatever outstanding broadcasts still miss is lost.
    fn count_losses(&mut self) {
        for p in 0..self.pubs.len() {
            for (i, o) in self.pubs[p].pending.iter().enumerate() {
                if o.remaining == 0 {
                    continue;
                }
                self.faults.lost += u64::from(o.remaining);
                if self.first_fault.is_none() {
                    let s = self.pubs[p].base + i as u64;
                    let missing = (0..self.conns)
                        .find(|c| o.seen[c / 64] & (1 << (c % 64)) == 0)
                        .unwrap_or(0);
                    self.first_fault = Some(format!(
                        "publisher {p}'s broadcast {s} never reached {} of {} connections (e.g. connection {missing})",
                        o.remaining, self.conns
                    ));
                }
            }
        }
    }

    /// Open loop: a publisher is too far behind (the run fails).
    fn behind(&self, p: usize) -> String {
        let pb = &self.pubs[p];
        let missing = pb.pending.front().map_or(0, |o| o.remaining);
        format!(
            "publisher {p} has {} broadcasts outstanding (the oldest, {}, still misses {missing} of {} connections): the server does not sustain --rate, or lost them",
            pb.pending.len(),
            pb.base,
            self.conns
        )
    }
}

// ---------------------------------------------------------------------------
// Stages of a run (both modes).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Opening connections.
    Connect,
    /// Probing until every connection receives broadcasts.
    Join,
    /// Warm-up and measurement (the meter's phases).
    Run,
    /// Measurement over: waiting for outstanding broadcasts.
    Drain,
    /// Closing connections.
    Close,
}

fn join_timeout(joined: usize, n: usize) -> String {
    format!(
        "only {joined} of {n} connections received the probe broadcasts within {CONNECT_LIMIT:?}: does the server broadcast to every connection?"
    )
}

// ---------------------------------------------------------------------------
// WebSocket mode: wsreactor's client reactor.

const TICK: u64 = 1;
const GRACE_OVER: u64 = 2;
const PROBE_TIMER: u64 = 3;
const DRAIN_CHECK: u64 = 4;

struct FanWs {
    target: Target,
    conns: usize,
    inflight: usize,
    rate: Option<f64>,
    pacer: Option<Pacer>,
    open_loop_limit: usize,
    /// By connection number (publisher p is connection p).
    ids: Vec<ConnId>,
    /// `ConnId::index()` → connection number.
    number: Vec<u32>,
    opened: usize,
    open_now: usize,
    deadline: Instant,
    stage: Stage,
    tracker: Tracker,
    meter: Meter,
    remote: Option<Remote>,
    /// Publishers whose broadcasts completed in a callback without a
    /// `Control`: topped up in `on_wake`.
    top_up: Vec<usize>,
    woken: bool,
    error: Option<String>,
}

impl FanWs {
    fn fail(&mut self, why: String) {
        if self.error.is_none() {
            self.error = Some(why);
        }
        if let Some(r) = &self.remote {
            r.stop();
        }
    }

    fn wake(&mut self) {
        if !self.woken {
            self.woken = true;
            if let Some(r) = &self.remote {
                r.wake();
            }
        }
    }

    fn connect_more(&mut self, ctl: &mut Control<'_>) {
        while self.ids.len() < self.conns && self.ids.len() - self.opened < CONNECT_BATCH {
            let i = self.ids.len();
            let id = self
                .target
                .open(i)
                .and_then(|s| ctl.connect_stream(s, &self.target.host, &self.target.path));
            match id {
                Ok(id) => {
                    if self.number.len() <= id.index() {
                        self.number.resize(id.index() + 1, u32::MAX);
                    }
                    self.number[id.index()] = i as u32;
                    self.ids.push(id);
                }
                Err(e) => {
                    let why = format!("cannot connect to {}: {e}", self.target.addr);
                    self.fail(why);
                    return;
                }
            }
        }
    }

    /// Closed loop: publisher `p` back to `inflight` outstanding.
    fn top_up(&mut self, ctl: &mut Control<'_>, p: usize, now: Instant) {
        while self.tracker.outstanding(p) < self.inflight {
            let msg = self.tracker.publish(p, now);
            if let Err(e) = ctl.send(self.ids[p], Message::Binary(msg)) {
                self.fail(format!("send: {e}"));
                return;
            }
            self.meter.sent();
        }
    }

    /// Open loop: every publish due by `now`, then wake again at once (as
    /// the echo load's open loop does, for microsecond timing).
    fn send_due(&mut self, ctl: &mut Control<'_>, now: Instant) {
        let Some(mut pacer) = self.pacer.take() else {
            return;
        };
        let k = self.tracker.pubs.len() as u64;
        while let Some((n, at)) = pacer.next_due(now) {
            let p = (n % k) as usize;
            if self.tracker.outstanding(p) >= self.open_loop_limit {
                let why = self.tracker.behind(p);
                self.fail(why);
                return;
            }
            let msg = self.tracker.publish(p, at);
            if let Err(e) = ctl.send(self.ids[p], Message::Binary(msg)) {
                self.fail(format!("send: {e}"));
                return;
            }
            self.meter.sent();
        }
        self.pacer = Some(pacer);
        self.wake();
    }

    fn start_run(&mut self, ctl: &mut Control<'_>, now: Instant) {
        self.stage = Stage::Run;
        self.meter.begin(now);
        ctl.set_timer(self.meter.next_tick(now), TICK);
        match self.rate {
            None => {
                for p in 0..self.tracker.pubs.len() {
                    self.top_up(ctl, p, now);
                }
            }
            Some(rate) => {
                self.pacer = Some(Pacer::new(rate, now));
                self.send_due(ctl, now);
            }
        }
    }
}

impl Handler for FanWs {
    fn on_open(&mut self, _ctx: &mut Ctx<'_>) {
        self.opened += 1;
        self.open_now += 1;
        // More connects, or the probes: both need a Control.
        self.wake();
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        let c = match self.number.get(ctx.id().index()) {
            Some(&c) if (c as usize) < self.conns => c as usize,
            _ => return,
        };
        let now = Instant::now();
        let completed = match msg {
            Message::Binary(data) => self.tracker.deliver(c, data, now, &mut self.meter),
            Message::Text(_) => {
                self.tracker
                    .corrupt(c, "a text message (binary ones were sent)");
                None
            }
        };
        let Some(p) = completed else {
            return;
        };
        if self.stage != Stage::Run || self.rate.is_some() {
            return;
        }
        if p == c {
            // The publisher's own connection: send from here.
            while self.tracker.outstanding(p) < self.inflight {
                let msg = self.tracker.publish(p, now);
                if let Err(e) = ctx.send(Message::Binary(msg)) {
                    self.fail(format!("send: {e}"));
                    return;
                }
                self.meter.sent();
            }
        } else {
            self.top_up.push(p);
            self.wake();
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        self.open_now = self.open_now.saturating_sub(1);
        if self.stage == Stage::Close {
            if self.open_now == 0 {
                if let Some(r) = &self.remote {
                    r.stop();
                }
            }
        } else {
            self.fail(format!(
                "the server closed a connection during the run: {code} {reason}"
            ));
        }
    }

    fn on_connect_failed(&mut self, _ctl: &mut Control<'_>, _id: ConnId, reason: &str) {
        let why = format!("cannot connect to {}: {reason}", self.target.addr);
        self.fail(why);
    }

    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        self.woken = false;
        if self.error.is_some() {
            return;
        }
        let now = Instant::now();
        match self.stage {
            Stage::Connect => {
                if self.opened == self.conns {
                    self.stage = Stage::Join;
                    self.deadline = now + CONNECT_LIMIT;
                    self.on_timer(ctl, PROBE_TIMER);
                } else if now > self.deadline {
                    self.fail(format!(
                        "only {} of {} connections opened in {CONNECT_LIMIT:?}",
                        self.opened, self.conns
                    ));
                } else {
                    self.connect_more(ctl);
                }
            }
            Stage::Run => {
                let mut top_up = std::mem::take(&mut self.top_up);
                for p in top_up.drain(..) {
                    self.top_up(ctl, p, now);
                }
                self.top_up = top_up;
                self.send_due(ctl, now);
            }
            _ => self.top_up.clear(),
        }
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) {
        let now = Instant::now();
        match token {
            PROBE_TIMER if self.stage == Stage::Join => {
                if self.tracker.all_joined() {
                    self.start_run(ctl, now);
                } else if now > self.deadline {
                    let why = join_timeout(self.tracker.joined_count, self.conns);
                    self.fail(why);
                } else {
                    if self.tracker.probe_due(now) {
                        let msg = self.tracker.probe(now);
                        if let Err(e) = ctl.send(self.ids[0], Message::Binary(msg)) {
                            self.fail(format!("send: {e}"));
                            return;
                        }
                    }
                    ctl.set_timer(PROBE_EVERY, PROBE_TIMER);
                }
            }
            TICK => {
                if self.meter.tick(now) {
                    ctl.set_timer(self.meter.next_tick(now), TICK);
                } else {
                    self.stage = Stage::Drain;
                    self.pacer = None;
                    self.deadline = now + DRAIN_GRACE;
                    self.on_timer(ctl, DRAIN_CHECK);
                }
            }
            DRAIN_CHECK => {
                if self.tracker.outstanding_total() > 0 && now < self.deadline {
                    ctl.set_timer(Duration::from_millis(5), DRAIN_CHECK);
                    return;
                }
                self.tracker.count_losses();
                // Close every connection, wait for the handshakes
                // (bounded), then stop.
                self.stage = Stage::Close;
                for &id in &self.ids {
                    let _ = ctl.close(id, 1000, "");
                }
                ctl.set_timer(CLOSE_GRACE, GRACE_OVER);
            }
            GRACE_OVER => ctl.stop(),
            _ => {}
        }
    }
}

fn run_ws(o: &FanOptions, target: Target) -> Result<FanReport, String> {
    let b = &o.base;
    let config = ServerConfig {
        // Nothing but broadcasts on the wire: no heartbeats.
        ping_interval: None,
        max_connections: b.connections + 16,
        ..ServerConfig::default()
    };
    let tracker = Tracker::new(b.connections, o.publishers, b.size);
    let mut reactor = Reactor::new(
        config,
        FanWs {
            target,
            conns: b.connections,
            inflight: o.inflight,
            rate: b.rate,
            pacer: None,
            open_loop_limit: tracker.open_loop_limit(),
            ids: Vec::with_capacity(b.connections),
            number: Vec::new(),
            opened: 0,
            open_now: 0,
            deadline: Instant::now() + CONNECT_LIMIT,
            stage: Stage::Connect,
            tracker,
            meter: Meter::new(b),
            remote: None,
            top_up: Vec::new(),
            woken: false,
            error: None,
        },
    )
    .map_err(|e| format!("cannot start the event loop: {e}"))?;
    let remote = reactor.remote();
    reactor.handler_mut().remote = Some(remote.clone());
    // The connects start in on_wake (they need a Control). Single-threaded
    // for the same reason as the echo load.
    reactor.handler_mut().wake();
    let h = reactor
        .run()
        .map_err(|e| format!("event loop failed: {e}"))?;
    if let Some(e) = h.error {
        return Err(e);
    }
    if h.meter.phase != Phase::Done {
        return Err("the run stopped before the measurement ended".into());
    }
    Ok(FanReport::new(h.meter, h.tracker))
}

// ---------------------------------------------------------------------------
// Raw TCP mode: fixed-size messages, no framing, a minimal mio loop.

struct TcpConn {
    stream: TcpStream,
    connected: bool,
    /// What the kernel has not taken yet.
    out: Vec<u8>,
    /// The part of a message received so far (when a read split it).
    partial: Vec<u8>,
}

/// Send `data` on `c`: directly, queueing only what the kernel refuses.
fn tcp_send(c: &mut TcpConn, data: &[u8]) -> Result<(), String> {
    if !c.out.is_empty() {
        c.out.extend_from_slice(data);
        return Ok(());
    }
    let n = loop {
        match c.stream.write(data) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    };
    c.out.extend_from_slice(&data[n..]);
    Ok(())
}

fn tcp_flush(c: &mut TcpConn) -> Result<(), String> {
    let mut done = 0;
    while done < c.out.len() {
        match c.stream.write(&c.out[done..]) {
            Ok(0) => return Err("write: the connection took no bytes".into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    c.out.drain(..done);
    Ok(())
}

/// Read connection `i` until drained, delivering every complete message;
/// publishers whose broadcasts completed go to `ready`.
fn tcp_read(
    i: usize,
    c: &mut TcpConn,
    rbuf: &mut [u8],
    tracker: &mut Tracker,
    meter: &mut Meter,
    ready: &mut Vec<usize>,
) -> Result<(), String> {
    let size = tracker.msg.len();
    loop {
        let n = match c.stream.read(rbuf) {
            Ok(0) => return Err("the server closed a connection during the run".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        let now = Instant::now();
        let mut chunk = &rbuf[..n];
        while !chunk.is_empty() {
            if c.partial.is_empty() && chunk.len() >= size {
                ready.extend(tracker.deliver(i, &chunk[..size], now, meter));
                chunk = &chunk[size..];
                continue;
            }
            let take = chunk.len().min(size - c.partial.len());
            c.partial.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if c.partial.len() == size {
                ready.extend(tracker.deliver(i, &c.partial, now, meter));
                c.partial.clear();
            }
        }
        if n < rbuf.len() {
            return Ok(());
        }
    }
}

fn run_tcp(o: &FanOptions, target: Target) -> Result<FanReport, String> {
    let b = &o.base;
    let n = b.connections;
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut events = Events::with_capacity(1024);
    let mut rbuf = vec![0u8; 64 * 1024].into_boxed_slice();
    let mut meter = Meter::new(b);
    let mut tracker = Tracker::new(n, o.publishers, b.size);
    let open_loop_limit = tracker.open_loop_limit();
    let mut conns: Vec<TcpConn> = Vec::with_capacity(n);
    let mut opened = 0;
    let mut stage = Stage::Connect;
    let mut deadline = Instant::now() + CONNECT_LIMIT;
    let mut next_probe = Instant::now();
    let mut pacer: Option<Pacer> = None;
    let mut ready: Vec<usize> = Vec::new();
    let connect = |poll: &Poll, conns: &mut Vec<TcpConn>| -> Result<(), String> {
        let s = target
            .open(conns.len())
            .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
        let mut stream = TcpStream::from_std(s);
        poll.registry()
            .register(
                &mut stream,
                Token(conns.len()),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
        conns.push(TcpConn {
            stream,
            connected: false,
            out: Vec::new(),
            partial: Vec::with_capacity(b.size),
        });
        Ok(())
    };
    loop {
        let now = Instant::now();
        match stage {
            Stage::Connect => {
                while conns.len() < n && conns.len() - opened < CONNECT_BATCH {
                    connect(&poll, &mut conns)?;
                }
                if opened == n {
                    stage = Stage::Join;
                    deadline = now + CONNECT_LIMIT;
                    next_probe = now;
                } else if now > deadline {
                    return Err(format!(
                        "only {opened} of {n} connections opened in {CONNECT_LIMIT:?}"
                    ));
                }
            }
            Stage::Join => {
                if tracker.all_joined() {
                    stage = Stage::Run;
                    meter.begin(now);
                    match b.rate {
                        None => ready.extend(0..o.publishers),
                        Some(r) => pacer = Some(Pacer::new(r, now)),
                    }
                } else if now > deadline {
                    return Err(join_timeout(tracker.joined_count, n));
                } else if now >= next_probe {
                    if tracker.probe_due(now) {
                        let msg = tracker.probe(now);
                        tcp_send(&mut conns[0], msg)?;
                    }
                    next_probe = now + PROBE_EVERY;
                }
            }
            Stage::Run => {
                if !meter.tick(now) {
                    stage = Stage::Drain;
                    pacer = None;
                    ready.clear();
                    deadline = now + DRAIN_GRACE;
                }
            }
            Stage::Drain => {
                if tracker.outstanding_total() == 0 || now >= deadline {
                    tracker.count_losses();
                    break;
                }
            }
            Stage::Close => break,
        }
        if stage == Stage::Run {
            // Closed loop only: in the open loop the schedule publishes.
            let top_up = if b.rate.is_none() { ready.len() } else { 0 };
            for p in ready.drain(..).take(top_up) {
                while tracker.outstanding(p) < o.inflight {
                    let msg = tracker.publish(p, now);
                    tcp_send(&mut conns[p], msg)?;
                    meter.sent();
                }
            }
            if let Some(pacer) = &mut pacer {
                let k = o.publishers as u64;
                while let Some((x, at)) = pacer.next_due(now) {
                    let p = (x % k) as usize;
                    if tracker.outstanding(p) >= open_loop_limit {
                        return Err(tracker.behind(p));
                    }
                    let msg = tracker.publish(p, at);
                    tcp_send(&mut conns[p], msg)?;
                    meter.sent();
                }
            }
        }
        let timeout = match stage {
            Stage::Connect => Duration::from_millis(100),
            Stage::Join => next_probe.saturating_duration_since(now),
            // Open loop: poll without sleeping (as the echo load does).
            Stage::Run if pacer.is_some() => Duration::ZERO,
            Stage::Run => meter.next_tick(now),
            _ => Duration::from_millis(5),
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        for event in events.iter() {
            let i = event.token().0;
            let Some(c) = conns.get_mut(i) else {
                continue;
            };
            if !c.connected {
                if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
                    return Err(format!("cannot connect to {}: {e}", target.addr));
                }
                match c.stream.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                    Err(e) => return Err(format!("cannot connect to {}: {e}", target.addr)),
                }
                c.connected = true;
                opened += 1;
            }
            if event.is_writable() && !c.out.is_empty() {
                tcp_flush(c)?;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                tcp_read(i, c, &mut rbuf, &mut tracker, &mut meter, &mut ready)?;
            }
        }
    }
    drop(conns);
    Ok(FanReport::new(meter, tracker))
}

// ---------------------------------------------------------------------------
// The result.

struct FanReport {
    meter: Meter,
    completed: u64,
    completion: Histogram<u64>,
    faults: Faults,
    first_fault: Option<String>,
}

impl FanReport {
    fn new(meter: Meter, t: Tracker) -> Self {
        Self {
            meter,
            completed: t.completed,
            completion: t.completion,
            faults: t.faults,
            first_fault: t.first_fault,
        }
    }

    fn secs(&self) -> f64 {
        self.meter.elapsed.as_secs_f64().max(1e-9)
    }

    /// Deliveries per second.
    fn rate(&self) -> f64 {
        self.meter.msgs as f64 / self.secs()
    }

    fn us(h: &Histogram<u64>, q: f64) -> f64 {
        h.value_at_quantile(q) as f64 / 1000.0
    }

    /// CPU microseconds per delivery for a CPU percentage (none without
    /// deliveries).
    fn per_delivery(&self, pct: Option<f64>) -> Option<f64> {
        if self.meter.msgs == 0 {
            return None;
        }
        pct.map(|p| p / 100.0 * 1e6 / self.rate())
    }

    fn human(&self, o: &FanOptions) -> String {
        let b = &o.base;
        let m = &self.meter;
        let mut s = String::new();
        let lp = match b.rate {
            Some(r) => format!("open loop, {} publishes/s offered", group(r as u64)),
            None => format!("{} in flight per publisher", o.inflight),
        };
        let _ = writeln!(
            s,
            "{} fan-out: {} connections, {} publisher(s), {} B {} ({lp}), {:.1} s measured after {:.1} s warm-up",
            b.url,
            b.connections,
            o.publishers,
            b.size,
            if b.mode == Mode::Tcp { "raw TCP" } else { "binary" },
            m.elapsed.as_secs_f64(),
            b.warmup.as_secs_f64()
        );
        let rate = self.rate();
        let _ = writeln!(
            s,
            "deliveries: {} msg/s, {:.2} MB/s ({} deliveries, all checked)",
            group(rate as u64),
            rate * b.size as f64 / 1e6,
            group(m.msgs)
        );
        let _ = writeln!(
            s,
            "broadcasts: {} completed/s, {} published/s",
            group((self.completed as f64 / self.secs()) as u64),
            group((m.sent as f64 / self.secs()) as u64)
        );
        if let (Some(min), Some(max)) = (
            m.per_second.iter().copied().reduce(f64::min),
            m.per_second.iter().copied().reduce(f64::max),
        ) {
            let _ = writeln!(
                s,
                "per second: min {} max {} deliveries/s",
                group(min as u64),
                group(max as u64)
            );
        }
        let h = &m.hist;
        let _ = writeln!(
            s,
            "publish to receive (us): p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            Self::us(h, 0.5),
            Self::us(h, 0.99),
            Self::us(h, 0.999),
            h.max() as f64 / 1000.0,
            h.mean() / 1000.0
        );
        let c = &self.completion;
        let _ = writeln!(
            s,
            "publish to last receive (us): p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            Self::us(c, 0.5),
            Self::us(c, 0.99),
            Self::us(c, 0.999),
            c.max() as f64 / 1000.0
        );
        let f = &self.faults;
        let _ = writeln!(
            s,
            "faults: {} lost, {} duplicated, {} out of order, {} corrupt",
            f.lost, f.duplicates, f.out_of_order, f.corrupt
        );
        let cpu = |name: &str, pct: Option<f64>| match pct {
            Some(p) => format!(
                "{name} {p:.0}% of a core ({:.3} us per delivery)",
                self.per_delivery(Some(p)).unwrap_or(0.0)
            ),
            None => format!("{name} n/a"),
        };
        let _ = writeln!(
            s,
            "cpu: {}; {}",
            cpu("generator", m.self_cpu_pct),
            cpu("server", m.server_cpu_pct)
        );
        let wait = |pct: Option<f64>| pct.map_or("n/a".to_string(), |p| format!("{p:.1}%"));
        let _ = writeln!(
            s,
            "waiting for a CPU (other processes): generator {}, server {}",
            wait(m.self_wait_pct),
            wait(m.server_wait_pct)
        );
        s
    }

    fn json(&self, o: &FanOptions) -> String {
        let b = &o.base;
        let m = &self.meter;
        let num = |x: Option<f64>| x.map_or("null".to_string(), |v| format!("{v:.3}"));
        let rate = self.rate();
        let per_second: Vec<String> = m.per_second.iter().map(|r| format!("{r:.0}")).collect();
        let url: String = b
            .url
            .chars()
            .filter(|c| !c.is_control())
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let (h, c, f) = (&m.hist, &self.completion, &self.faults);
        format!(
            concat!(
                "{{\"fanout\":true,\"url\":\"{}\",\"mode\":\"{}\",\"connections\":{},",
                "\"publishers\":{},\"inflight\":{},\"rate\":{},\"size\":{},",
                "\"warmup_s\":{:.3},\"elapsed_s\":{:.3},\"deliveries\":{},",
                "\"msg_per_s\":{:.1},\"broadcasts\":{},\"broadcasts_per_s\":{:.1},",
                "\"published_per_s\":{:.1},\"mb_per_s\":{:.3},\"per_second\":[{}],",
                "\"latency_us\":{{\"p50\":{:.2},\"p90\":{:.2},\"p99\":{:.2},",
                "\"p99_9\":{:.2},\"max\":{:.2},\"mean\":{:.2}}},",
                "\"broadcast_latency_us\":{{\"p50\":{:.2},\"p99\":{:.2},\"p99_9\":{:.2},",
                "\"max\":{:.2}}},",
                "\"faults\":{{\"lost\":{},\"duplicates\":{},\"out_of_order\":{},\"corrupt\":{}}},",
                "\"generator_cpu_pct\":{},\"server_cpu_pct\":{},",
                "\"generator_cpu_us_per_msg\":{},\"server_cpu_us_per_msg\":{},",
                "\"generator_runq_wait_pct\":{},\"server_runq_wait_pct\":{}}}"
            ),
            url,
            if b.mode == Mode::Ws { "ws" } else { "tcp" },
            b.connections,
            o.publishers,
            o.inflight,
            num(b.rate),
            b.size,
            b.warmup.as_secs_f64(),
            m.elapsed.as_secs_f64(),
            m.msgs,
            rate,
            self.completed,
            self.completed as f64 / self.secs(),
            m.sent as f64 / self.secs(),
            rate * b.size as f64 / 1e6,
            per_second.join(","),
            Self::us(h, 0.5),
            Self::us(h, 0.9),
            Self::us(h, 0.99),
            Self::us(h, 0.999),
            h.max() as f64 / 1000.0,
            h.mean() / 1000.0,
            Self::us(c, 0.5),
            Self::us(c, 0.99),
            Self::us(c, 0.999),
            c.max() as f64 / 1000.0,
            f.lost,
            f.duplicates,
            f.out_of_order,
            f.corrupt,
            num(m.self_cpu_pct),
            num(m.server_cpu_pct),
            num(self.per_delivery(m.self_cpu_pct)),
            num(self.per_delivery(m.server_cpu_pct)),
            num(m.self_wait_pct),
            num(m.server_wait_pct),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            url: "ws://127.0.0.1:9/".into(),
            connections: 3,
            size: 24,
            text: false,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            pipeline: 1,
            rate: None,
            mode: Mode::Ws,
            server_pid: None,
            json: false,
            quiet: true,
            ca: None,
        }
    }

    /// Two publishers, three connections: every fault kind is counted where
    /// it happens, and a correct stream completes broadcasts in order.
    #[test]
    fn tracker_counts_every_fault() {
        let o = opts();
        let mut meter = Meter::new(&o);
        let mut t = Tracker::new(3, 2, 24);
        let now = Instant::now();
        let a0 = t.publish(0, now).to_vec();
        let a1 = t.publish(0, now).to_vec();
        let b0 = t.publish(1, now).to_vec();
        // Broadcast a0 reaches all three: it completes publisher 0's front.
        assert_eq!(t.deliver(0, &a0, now, &mut meter), None);
        assert_eq!(t.deliver(1, &a0, now, &mut meter), None);
        assert_eq!(t.deliver(2, &a0, now, &mut meter), Some(0));
        assert_eq!(t.outstanding(0), 1);
        // Duplicates: of a completed broadcast, and of an outstanding one.
        t.deliver(1, &a0, now, &mut meter);
        t.deliver(0, &b0, now, &mut meter);
        t.deliver(0, &b0, now, &mut meter);
        assert_eq!(t.faults.duplicates, 2);
        // Connection 1 gets a1 ... then connection 2 gets b0 and a1 in
        // order; connection 0 gets a1: publisher 0 is done.
        t.deliver(1, &a1, now, &mut meter);
        t.deliver(2, &b0, now, &mut meter);
        assert_eq!(t.deliver(0, &a1, now, &mut meter), None);
        assert_eq!(t.deliver(2, &a1, now, &mut meter), Some(0));
        assert_eq!(t.outstanding(0), 0);
        assert_eq!(t.faults.out_of_order, 0);
        // Out of order: a3 before a2 on connection 0.
        let a2 = t.publish(0, now).to_vec();
        let a3 = t.publish(0, now).to_vec();
        t.deliver(0, &a3, now, &mut meter);
        t.deliver(0, &a2, now, &mut meter);
        assert_eq!(t.faults.out_of_order, 1);
        // Corrupt: length, pattern, unknown publisher, unsent sequence,
        // changed send time.
        t.deliver(0, &a2[..23], now, &mut meter);
        let mut bad = a2.clone();
        bad[23] ^= 1;
        t.deliver(0, &bad, now, &mut meter);
        let mut bad = a2.clone();
        bad[0] = 7;
        t.deliver(0, &bad, now, &mut meter);
        let mut bad = a2.clone();
        bad[4] = 99;
        t.deliver(0, &bad, now, &mut meter);
        let mut bad = a2.clone();
        bad[12] ^= 1;
        t.deliver(0, &bad, now, &mut meter);
        assert_eq!(t.faults.corrupt, 5);
        // Lost: b0 never reached connection 1; a2 and a3 missed 1 and 2.
        t.count_losses();
        assert_eq!(t.faults.lost, 1 + 2 + 2);
        assert!(t.first_fault.is_some());
    }

    #[test]
    fn probes_join_connections_and_are_not_tracked() {
        let o = opts();
        let mut meter = Meter::new(&o);
        let mut t = Tracker::new(2, 1, 20);
        let now = Instant::now();
        assert!(t.probe_due(now) && !t.all_joined());
        let p1 = t.probe(now).to_vec();
        // Not due while nobody has the first probe (until it stalls).
        assert!(!t.probe_due(now + Duration::from_millis(10)));
        assert!(t.probe_due(now + PROBE_STALL));
        t.deliver(1, &p1, now, &mut meter);
        assert_eq!(t.joined_count, 1);
        // Every joined connection has the latest: the next one is due.
        assert!(t.probe_due(now));
        let p2 = t.probe(now).to_vec();
        assert!(!t.probe_due(now));
        t.deliver(0, &p1, now, &mut meter);
        t.deliver(1, &p2, now, &mut meter);
        assert_eq!(t.joined_count, 2);
        assert!(!t.all_joined());
        t.deliver(0, &p2, now, &mut meter);
        assert!(t.all_joined() && !t.probe_due(now));
        assert_eq!(t.faults, Faults::default());
        assert_eq!(t.outstanding_total(), 0);
    }

    #[test]
    fn options_are_checked() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let base = ["--fanout", "--url", "ws://127.0.0.1:9/"];
        for (extra, expect) in [
            (&["--size", "19"][..], "at least 20"),
            (&["--publishers", "0"][..], "--publishers must be"),
            (
                &["--connections", "2", "--publishers", "3"][..],
                "--publishers must be",
            ),
            (
                &["--rate", "10", "--inflight", "2"][..],
                "--inflight is for the closed loop",
            ),
            (&["--text"][..], "binary"),
            (&["--sources", "0"][..], "--sources"),
            (
                &["--connections", "100000", "--publishers", "100"][..],
                "at most",
            ),
        ] {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            let e = parse(args(&a)).unwrap_err();
            assert!(e.contains(expect), "{extra:?}: {e}");
        }
        let o = parse(args(&base)).unwrap().unwrap();
        assert_eq!((o.base.connections, o.publishers, o.inflight), (100, 1, 1));
        assert_eq!(o.base.size, HEADER);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whatever bytes arrive, on whichever connection, the tracker
        /// counts them without panicking: random bytes are never a valid
        /// delivery (that takes the pattern and a header naming an
        /// outstanding broadcast with its send time), so each is corrupt.
        #[test]
        fn arbitrary_bytes_are_counted_as_corrupt(
            msgs in proptest::collection::vec(
                (0usize..3, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48)),
                0..24,
            )
        ) {
            let mut meter = Meter::new(&opts());
            let mut t = Tracker::new(3, 2, 24);
            let now = Instant::now();
            let valid = t.publish(1, now).to_vec();
            for (c, m) in &msgs {
                t.deliver(*c, m, now, &mut meter);
            }
            proptest::prop_assert_eq!(t.faults.corrupt, msgs.len() as u64);
            // The real broadcast still completes.
            for c in 0..3 {
                t.deliver(c, &valid, now, &mut meter);
            }
            proptest::prop_assert_eq!(t.outstanding_total(), 0);
        }
    }

    #[test]
    fn open_loop_limit_keeps_bitsets_in_budget() {
        let t = Tracker::new(10_000, 1, 20);
        assert_eq!(t.open_loop_limit(), OPEN_LOOP_OUTSTANDING);
        let t = Tracker::new(1_000_000, 4, 20);
        let limit = t.open_loop_limit();
        assert!(limit * 4 * 1_000_000usize.div_ceil(64) * 8 <= BITSET_BUDGET);
    }
}
