//! `wsreactor bench`: an echo load generator, closed or open loop.
//!
//! Closed loop (the default): every connection sends a message and waits for
//! its echo before sending the next (uWebSockets' `benchmarks/load_test.c`
//! does the same, and most published WebSocket figures come from it);
//! `--pipeline K` keeps K in flight instead. Open loop (`--rate R`): messages
//! leave on a fixed schedule, R per second in all, round robin over the
//! connections, whether or not earlier echoes came back; servers are then
//! compared at the same offered load (their CPU per echo), and a round trip
//! is timed from when its message was due, so a stalled server cannot hide
//! its stall by slowing the sender. Each echo is checked (length, the sequence number stamped
//! into its first 16 bytes, and the rest of the payload against the pattern
//! it was sent with) and its round trip goes into an HDR histogram.
//!
//! `--mode ws` runs on wsreactor's own client reactor (the code under test
//! on the other side of the wire, with the client's masking). `--mode tcp`
//! speaks raw TCP, without WebSocket framing, through a minimal mio loop in
//! this file, so the raw-TCP echo's limit is measured with the same closed
//! loop, message sizes, checks and clock reads.
//!
//! A progress line per second goes to stderr; the summary (or, with
//! `--json`, one JSON object) to stdout. With `--server-pid` the server's CPU
//! time over the measured interval is reported next to ours, which shows
//! whether the server or the generator was the bottleneck.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use wsreactor::net::WsUrl;
use wsreactor::{ConnId, Control, Ctx, Handler, Message, Reactor, Remote, ServerConfig};

/// `--fanout`: the broadcast load (it shares this module's meter).
#[path = "bench_fanout.rs"]
mod fanout;
/// `--gateway`: rooms load on `wsreactor serve` (it shares the pacer).
#[cfg(feature = "gateway")]
#[path = "bench_gateway.rs"]
mod gateway;

const USAGE: &str = "\
wsreactor bench: echo load generator (closed or open loop)

USAGE:
    wsreactor bench --url ws[s]://HOST:PORT/ [OPTIONS]

Each connection sends a message and waits for its echo before sending the
next (--pipeline K: K messages in flight). Every echo is checked. A progress
line per second goes to stderr; the summary (or JSON) to stdout.

OPTIONS:
    --url URL            ws://host:port/path, or wss:// for TLS (with
                         --mode tcp: the host and port of a raw TCP echo
                         server)
    --ca FILE            Also trust the PEM certificates in FILE for wss://
                         (a private CA); needs a build with --features tls
    --connections N      Connections [default: 100]
    --size SIZE          Payload bytes per message, up to 1G; K, M, G are
                         powers of 1024 (16K = 16384) [default: 20]
    --text               Send text messages
    --binary             Send binary messages [default]
    --duration SECS      Measured time, after the warm-up [default: 10]
    --warmup SECS        Time before measuring starts, counted once all
                         connections are open [default: 2]
    --pipeline K         Messages in flight per connection [default: 1]
    --rate MSGS          Open loop: send MSGS messages per second in all, on
                         a schedule, round robin over the connections,
                         without waiting for echoes; round trips are timed
                         from when each message was due. The generator then
                         polls without sleeping (~100% of its core)
                         [default: closed loop]
    --mode ws|tcp        WebSocket on wsreactor's client reactor, or raw TCP
                         (no framing) against a TCP echo server [default: ws]
    --server-pid PID     Also report the CPU time of this process (the
                         server) over the measured interval
    --json               Print the result as one JSON object
    -q, --quiet          No progress lines
    -h, --help           Print this help

    --fanout             Broadcast load instead of echo: publishers, every
                         connection a receiver (see bench --fanout --help)
    --gateway            Rooms load on wsreactor serve: members, publishers,
                         stepped load (see bench --gateway --help)
";

/// Connects in flight at once while the connections are opened.
const CONNECT_BATCH: usize = 64;
/// Opening all connections must not take longer than this.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// After the measurement, time given to the close handshakes.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Bytes of each payload that carry its sequence number (as hex).
const STAMP: usize = 16;
/// Open loop: echoes one connection may owe before the run fails (the
/// server is not keeping up with the rate).
const OPEN_LOOP_BACKLOG: usize = 1000;

/// Why an open-loop run failed: a connection's backlog reached the limit.
fn behind() -> String {
    format!(
        "the server fell {OPEN_LOOP_BACKLOG} echoes behind on a connection: it does not sustain --rate"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ws,
    Tcp,
}

#[derive(Debug, Clone)]
struct Options {
    url: String,
    connections: usize,
    size: usize,
    text: bool,
    duration: Duration,
    warmup: Duration,
    pipeline: usize,
    /// Open loop: messages per second in all.
    rate: Option<f64>,
    mode: Mode,
    server_pid: Option<u32>,
    json: bool,
    quiet: bool,
    ca: Option<std::path::PathBuf>,
}

fn secs(parser: &mut lexopt::Parser, name: &str) -> Result<Duration, String> {
    let s = string(parser, name)?;
    let x: f64 = s
        .parse()
        .map_err(|_| format!("{name}: '{s}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(x).map_err(|_| format!("{name}: '{s}' is out of range"))
}

fn number<T: std::str::FromStr>(parser: &mut lexopt::Parser, name: &str) -> Result<T, String> {
    let s = string(parser, name)?;
    s.parse()
        .map_err(|_| format!("{name}: '{s}' is not a valid number"))
}

fn string(parser: &mut lexopt::Parser, name: &str) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| format!("{name}: not UTF-8"))
}

fn parse(args: Vec<OsString>) -> Result<Option<Options>, String> {
    use lexopt::prelude::*;
    let mut o = Options {
        url: String::new(),
        connections: 100,
        size: 20,
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
    };
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("url") => o.url = string(&mut parser, "--url")?,
            Long("connections") => o.connections = number(&mut parser, "--connections")?,
            Long("size") => {
                let v = string(&mut parser, "--size")?;
                o.size = crate::args::size("size", &v, 0..=1 << 30)? as usize;
            }
            Long("text") => o.text = true,
            Long("binary") => o.text = false,
            Long("duration") => o.duration = secs(&mut parser, "--duration")?,
            Long("warmup") => o.warmup = secs(&mut parser, "--warmup")?,
            Long("pipeline") => o.pipeline = number(&mut parser, "--pipeline")?,
            Long("rate") => o.rate = Some(number(&mut parser, "--rate")?),
            Long("mode") => {
                o.mode = match string(&mut parser, "--mode")?.as_str() {
                    "ws" => Mode::Ws,
                    "tcp" => Mode::Tcp,
                    other => return Err(format!("--mode: '{other}' is not ws or tcp")),
                }
            }
            Long("server-pid") => o.server_pid = Some(number(&mut parser, "--server-pid")?),
            Long("json") => o.json = true,
            Long("ca") => o.ca = Some(string(&mut parser, "--ca")?.into()),
            Short('q') | Long("quiet") => o.quiet = true,
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(None);
            }
            other => {
                return Err(format!(
                    "{} (see wsreactor bench --help)",
                    other.unexpected()
                ))
            }
        }
    }
    if o.url.is_empty() {
        return Err("missing --url (see wsreactor bench --help)".into());
    }
    if o.connections == 0 || o.pipeline == 0 {
        return Err("--connections and --pipeline must be at least 1".into());
    }
    if o.mode == Mode::Tcp && o.size == 0 {
        return Err("--mode tcp needs --size of at least 1 (raw TCP has no empty messages)".into());
    }
    if let Some(rate) = o.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err("--rate must be a positive number of messages per second".into());
        }
        if o.pipeline != 1 {
            return Err("--pipeline is for the closed loop; with --rate the schedule sets how many messages are in flight".into());
        }
    }
    if o.duration.is_zero() {
        return Err("--duration must be more than 0".into());
    }
    Ok(Some(o))
}

pub fn run(args: Vec<OsString>) -> Result<(), String> {
    if args.iter().any(|a| a == "--fanout") {
        return fanout::run(args);
    }
    if args.iter().any(|a| a == "--gateway") {
        #[cfg(feature = "gateway")]
        return gateway::run(args);
        #[cfg(not(feature = "gateway"))]
        return Err("bench --gateway is built only with the gateway feature: cargo build --release --features loadgen,gateway".into());
    }
    let Some(opts) = parse(args)? else {
        return Ok(());
    };
    let report = match opts.mode {
        Mode::Ws => run_ws(&opts)?,
        Mode::Tcp => run_tcp(&opts)?,
    };
    if opts.json {
        println!("{}", report.json(&opts));
    } else {
        print!("{}", report.human(&opts));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Payloads: what is sent and how an echo is checked.

/// The message bytes: a 16-byte sequence stamp (lowercase hex, so text
/// stays valid UTF-8) followed by a fixed ASCII pattern.
struct Payload {
    /// The message as sent; its first `STAMP` bytes are rewritten per send.
    buf: Vec<u8>,
}

impl Payload {
    fn new(size: usize) -> Self {
        Self {
            buf: (0..size).map(|i| b'a' + (i % 26) as u8).collect(),
        }
    }

    fn stamp_len(&self) -> usize {
        self.buf.len().min(STAMP)
    }

    /// The payload for message `seq` of a connection.
    fn stamped(&mut self, seq: u64) -> &[u8] {
        let n = self.stamp_len();
        self.buf[..n].copy_from_slice(&hex_stamp(seq)[..n]);
        &self.buf
    }

    /// Is `got` the echo of message `seq`? Compares every byte.
    fn check(&self, seq: u64, got: &[u8]) -> Result<(), String> {
        if got.len() != self.buf.len() {
            return Err(format!(
                "echo of message {seq} has {} bytes, sent {}",
                got.len(),
                self.buf.len()
            ));
        }
        self.check_part(seq, 0, got)
    }

    /// Is `got` the part of message `seq` that starts at byte `at`?
    fn check_part(&self, seq: u64, at: usize, got: &[u8]) -> Result<(), String> {
        let n = self.stamp_len();
        let end = at + got.len();
        let stamp = hex_stamp(seq);
        let stamp_ok = at >= n || got[..n.min(end) - at] == stamp[at..n.min(end)];
        let rest_from = at.max(n);
        let rest_ok = rest_from >= end || got[rest_from - at..] == self.buf[rest_from..end];
        if stamp_ok && rest_ok {
            Ok(())
        } else {
            Err(format!(
                "echo of message {seq} differs from what was sent (bytes {at}..{end})"
            ))
        }
    }
}

/// `seq` as 16 lowercase hex digits, a byte at a time from a table (the
/// generator stamps and checks every message, so this is on its hot path).
fn hex_stamp(seq: u64) -> [u8; STAMP] {
    const PAIRS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut t = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [HEX[i >> 4], HEX[i & 0xf]];
            i += 1;
        }
        t
    };
    let mut out = [0u8; STAMP];
    for (i, byte) in seq.to_be_bytes().iter().enumerate() {
        out[2 * i..2 * i + 2].copy_from_slice(&PAIRS[*byte as usize]);
    }
    out
}

// ---------------------------------------------------------------------------
// The open loop's schedule.

/// When each message of an open-loop run is due: message `k` (counted over
/// all connections) at `start + k / rate`.
struct Pacer {
    start: Instant,
    /// Seconds between two messages.
    interval: f64,
    /// The next message to send.
    next: u64,
}

impl Pacer {
    fn new(rate: f64, start: Instant) -> Self {
        Self {
            start,
            interval: 1.0 / rate,
            next: 0,
        }
    }

    /// The next message if it is due by `now`: its number and the time it
    /// was due (which its round trip is timed from).
    fn next_due(&mut self, now: Instant) -> Option<(u64, Instant)> {
        let at = self.start + Duration::from_secs_f64(self.next as f64 * self.interval);
        if at > now {
            return None;
        }
        self.next += 1;
        Some((self.next - 1, at))
    }
}

// ---------------------------------------------------------------------------
// The meter: phases, per-second progress, the histogram, CPU times.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Opening connections.
    Ramp,
    Warmup,
    Measure,
    Done,
}

struct Meter {
    size: usize,
    warmup: Duration,
    duration: Duration,
    quiet: bool,
    server_pid: Option<u32>,
    phase: Phase,
    /// All connections open: the warm-up starts.
    started: Instant,
    measure_start: Instant,
    /// Echoes since the last progress line.
    interval_start: Instant,
    interval_msgs: u64,
    /// Echoes in the measured interval.
    msgs: u64,
    /// Messages sent in the measured interval.
    sent: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
    per_second: Vec<f64>,
    cpu_self: Option<u64>,
    cpu_server: Option<u64>,
    self_cpu_pct: Option<f64>,
    server_cpu_pct: Option<f64>,
    /// Run-queue wait of the main threads at the start of the measurement.
    wait_self: Option<u64>,
    wait_server: Option<u64>,
    self_wait_pct: Option<f64>,
    server_wait_pct: Option<f64>,
}

impl Meter {
    fn new(o: &Options) -> Self {
        let now = Instant::now();
        Self {
            size: o.size,
            warmup: o.warmup,
            duration: o.duration,
            quiet: o.quiet,
            server_pid: o.server_pid,
            phase: Phase::Ramp,
            started: now,
            measure_start: now,
            interval_start: now,
            interval_msgs: 0,
            msgs: 0,
            sent: 0,
            elapsed: Duration::ZERO,
            // 1 ns .. 60 s at 3 significant digits.
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds"),
            per_second: Vec::new(),
            cpu_self: None,
            cpu_server: None,
            self_cpu_pct: None,
            server_cpu_pct: None,
            wait_self: None,
            wait_server: None,
            self_wait_pct: None,
            server_wait_pct: None,
        }
    }

    /// An echo arrived `rtt` after its message was sent.
    #[inline]
    fn record(&mut self, rtt: Duration) {
        self.interval_msgs += 1;
        if self.phase == Phase::Measure {
            self.msgs += 1;
            self.hist.saturating_record(rtt.as_nanos() as u64);
        }
    }

    /// A message was sent.
    #[inline]
    fn sent(&mut self) {
        if self.phase == Phase::Measure {
            self.sent += 1;
        }
    }

    /// All connections are open: the warm-up starts now.
    fn begin(&mut self, now: Instant) {
        self.phase = Phase::Warmup;
        self.started = now;
        self.interval_start = now;
        self.interval_msgs = 0;
        if self.warmup.is_zero() {
            self.start_measuring(now);
        }
    }

    fn start_measuring(&mut self, now: Instant) {
        self.phase = Phase::Measure;
        self.measure_start = now;
        self.msgs = 0;
        self.sent = 0;
        self.hist.reset();
        self.cpu_self = cpu_ticks("self");
        self.cpu_server = self.server_pid.and_then(|p| cpu_ticks(&p.to_string()));
        self.wait_self = runqueue_wait_ns("thread-self");
        self.wait_server = self
            .server_pid
            .and_then(|p| runqueue_wait_ns(&format!("{p}/task/{p}")));
    }

    /// When the next call to `tick` is due.
    fn next_tick(&self, now: Instant) -> Duration {
        let next_line = self.interval_start + Duration::from_secs(1);
        let phase_end = match self.phase {
            Phase::Warmup => self.started + self.warmup,
            _ => self.measure_start + self.duration,
        };
        next_line.min(phase_end).saturating_duration_since(now)
    }

    /// Progress lines and phase changes; returns `false` once done.
    fn tick(&mut self, now: Instant) -> bool {
        if self.phase == Phase::Ramp || self.phase == Phase::Done {
            return self.phase != Phase::Done;
        }
        let span = now.duration_since(self.interval_start);
        if span >= Duration::from_millis(999) {
            let rate = self.interval_msgs as f64 / span.as_secs_f64();
            if self.phase == Phase::Measure {
                self.per_second.push(rate);
            }
            if !self.quiet {
                eprintln!(
                    "{:6.1}s {:7} {:>12} msg/s {:>10.2} MB/s",
                    now.duration_since(self.started).as_secs_f64(),
                    if self.phase == Phase::Warmup {
                        "warmup"
                    } else {
                        "measure"
                    },
                    group(rate as u64),
                    rate * self.size as f64 / 1e6,
                );
            }
            self.interval_start = now;
            self.interval_msgs = 0;
        }
        if self.phase == Phase::Warmup && now >= self.started + self.warmup {
            self.start_measuring(now);
            self.interval_start = now;
            self.interval_msgs = 0;
        }
        if self.phase == Phase::Measure && now >= self.measure_start + self.duration {
            self.finish(now);
            return false;
        }
        true
    }

    fn finish(&mut self, now: Instant) {
        self.phase = Phase::Done;
        self.elapsed = now.duration_since(self.measure_start);
        let secs = self.elapsed.as_secs_f64();
        let pct = |before: Option<u64>, after: Option<u64>| match (before, after) {
            (Some(b), Some(a)) => Some((a - b) as f64 / CLK_TCK / secs * 100.0),
            _ => None,
        };
        self.self_cpu_pct = pct(self.cpu_self, cpu_ticks("self"));
        self.server_cpu_pct = pct(
            self.cpu_server,
            self.server_pid.and_then(|p| cpu_ticks(&p.to_string())),
        );
        let wait = |before: Option<u64>, after: Option<u64>| match (before, after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / 1e9 / secs * 100.0),
            _ => None,
        };
        self.self_wait_pct = wait(self.wait_self, runqueue_wait_ns("thread-self"));
        self.server_wait_pct = wait(
            self.wait_server,
            self.server_pid
                .and_then(|p| runqueue_wait_ns(&format!("{p}/task/{p}"))),
        );
    }
}

/// `sysconf(_SC_CLK_TCK)`: the unit of utime/stime in /proc/PID/stat. It is
/// 100 on every Linux ABI (USER_HZ), whatever the kernel's own HZ.
const CLK_TCK: f64 = 100.0;

/// utime + stime of a process (all its threads), in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Nanoseconds a thread spent runnable but waiting for a CPU (the second
/// field of /proc/PID/task/TID/schedstat): time other processes took from
/// it. Near zero on an otherwise idle machine.
fn runqueue_wait_ns(task: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{task}/schedstat")).ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

/// 1234567 → "1,234,567".
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------
// The result.

struct Report {
    msgs: u64,
    sent: u64,
    elapsed: Duration,
    per_second: Vec<f64>,
    hist: Histogram<u64>,
    self_cpu_pct: Option<f64>,
    server_cpu_pct: Option<f64>,
    self_wait_pct: Option<f64>,
    server_wait_pct: Option<f64>,
}

impl Report {
    fn from_meter(m: Meter) -> Self {
        Self {
            msgs: m.msgs,
            sent: m.sent,
            elapsed: m.elapsed,
            per_second: m.per_second,
            hist: m.hist,
            self_cpu_pct: m.self_cpu_pct,
            server_cpu_pct: m.server_cpu_pct,
            self_wait_pct: m.self_wait_pct,
            server_wait_pct: m.server_wait_pct,
        }
    }

    fn rate(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Messages sent per second over the measured interval.
    fn sent_rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// CPU microseconds per echo for a CPU percentage.
    fn cpu_us_per_msg(&self, pct: Option<f64>) -> Option<f64> {
        pct.map(|p| p / 100.0 * 1e6 / self.rate().max(1e-9))
    }

    fn human(&self, o: &Options) -> String {
        let mut s = String::new();
        let rate = self.rate();
        let lp = match o.rate {
            Some(r) => format!("open loop, {} msg/s offered", group(r as u64)),
            None => format!("pipeline {}", o.pipeline),
        };
        let _ = writeln!(
            s,
            "{} {} x {} B {} ({lp}), {:.1} s measured after {:.1} s warm-up",
            o.url,
            o.connections,
            o.size,
            match (o.mode, o.text) {
                (Mode::Tcp, _) => "raw TCP",
                (Mode::Ws, true) => "text",
                (Mode::Ws, false) => "binary",
            },
            self.elapsed.as_secs_f64(),
            o.warmup.as_secs_f64()
        );
        if o.rate.is_some() {
            let _ = writeln!(
                s,
                "sent:    {} msg/s (round trips timed from when each was due)",
                group(self.sent_rate() as u64)
            );
        }
        let _ = writeln!(
            s,
            "echoes:  {} msg/s, {:.2} MB/s of payload each way ({} echoes, all checked)",
            group(rate as u64),
            rate * o.size as f64 / 1e6,
            group(self.msgs)
        );
        if let (Some(min), Some(max)) = (
            self.per_second.iter().copied().reduce(f64::min),
            self.per_second.iter().copied().reduce(f64::max),
        ) {
            let _ = writeln!(
                s,
                "per second: min {} max {} msg/s",
                group(min as u64),
                group(max as u64)
            );
        }
        let _ = writeln!(
            s,
            "latency (us): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            self.us(0.5),
            self.us(0.9),
            self.us(0.99),
            self.us(0.999),
            self.hist.max() as f64 / 1000.0,
            self.hist.mean() / 1000.0
        );
        let cpu = |name: &str, pct: Option<f64>| match pct {
            Some(p) => format!(
                "{name} {p:.0}% of a core ({:.2} us per echo)",
                self.cpu_us_per_msg(Some(p)).unwrap_or(0.0)
            ),
            None => format!("{name} n/a"),
        };
        let _ = writeln!(
            s,
            "cpu: {}; {}",
            cpu("generator", self.self_cpu_pct),
            cpu("server", self.server_cpu_pct)
        );
        let wait = |pct: Option<f64>| pct.map_or("n/a".to_string(), |p| format!("{p:.1}%"));
        let _ = writeln!(
            s,
            "waiting for a CPU (other processes): generator {}, server {}",
            wait(self.self_wait_pct),
            wait(self.server_wait_pct)
        );
        s
    }

    fn json(&self, o: &Options) -> String {
        let num = |x: Option<f64>| x.map_or("null".to_string(), |v| format!("{v:.3}"));
        let rate = self.rate();
        let per_second: Vec<String> = self.per_second.iter().map(|r| format!("{r:.0}")).collect();
        let mut url = String::new();
        for c in o.url.chars() {
            match c {
                '"' | '\\' => {
                    url.push('\\');
                    url.push(c);
                }
                c if c.is_control() => {}
                c => url.push(c),
            }
        }
        format!(
            concat!(
                "{{\"url\":\"{}\",\"mode\":\"{}\",\"connections\":{},\"size\":{},",
                "\"text\":{},\"pipeline\":{},\"rate\":{},\"warmup_s\":{:.3},",
                "\"elapsed_s\":{:.3},\"messages\":{},\"msg_per_s\":{:.1},",
                "\"sent_per_s\":{:.1},\"mb_per_s\":{:.3},",
                "\"per_second\":[{}],",
                "\"latency_us\":{{\"p50\":{:.2},\"p90\":{:.2},\"p99\":{:.2},",
                "\"p99_9\":{:.2},\"max\":{:.2},\"mean\":{:.2}}},",
                "\"generator_cpu_pct\":{},\"server_cpu_pct\":{},",
                "\"generator_cpu_us_per_msg\":{},\"server_cpu_us_per_msg\":{},",
                "\"generator_runq_wait_pct\":{},\"server_runq_wait_pct\":{}}}"
            ),
            url,
            if o.mode == Mode::Ws { "ws" } else { "tcp" },
            o.connections,
            o.size,
            o.text,
            o.pipeline,
            num(o.rate),
            o.warmup.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            self.msgs,
            rate,
            self.sent_rate(),
            rate * o.size as f64 / 1e6,
            per_second.join(","),
            self.us(0.5),
            self.us(0.9),
            self.us(0.99),
            self.us(0.999),
            self.hist.max() as f64 / 1000.0,
            self.hist.mean() / 1000.0,
            num(self.self_cpu_pct),
            num(self.server_cpu_pct),
            num(self.cpu_us_per_msg(self.self_cpu_pct)),
            num(self.cpu_us_per_msg(self.server_cpu_pct)),
            num(self.self_wait_pct),
            num(self.server_wait_pct),
        )
    }
}

// ---------------------------------------------------------------------------
// WebSocket mode: wsreactor's client reactor.

/// Timer token of the meter's tick.
const TICK: u64 = 1;
/// Timer token that ends the close grace period.
const GRACE_OVER: u64 = 2;

struct WsConn {
    /// Messages sent and echoes received.
    sent: u64,
    received: u64,
    /// Send times (open loop: due times) of the messages in flight, oldest
    /// first.
    in_flight: VecDeque<Instant>,
}

/// A payload as the message to send: text (it is ASCII) or binary.
fn as_message(data: &[u8], text: bool) -> Message<'_> {
    if !text {
        return Message::Binary(data);
    }
    match std::str::from_utf8(data) {
        Ok(t) => Message::Text(t),
        Err(_) => unreachable!("the payload is ASCII"),
    }
}

struct WsBench {
    url: String,
    target: usize,
    pipeline: usize,
    /// Open loop: the rate, and once the warm-up starts its schedule.
    rate: Option<f64>,
    pacer: Option<Pacer>,
    text: bool,
    payload: Payload,
    /// Indexed by `ConnId::index()`.
    conns: Vec<Option<WsConn>>,
    ids: Vec<ConnId>,
    connects_started: usize,
    opened: usize,
    open_now: usize,
    ramp_deadline: Instant,
    meter: Meter,
    remote: Option<Remote>,
    /// The measurement is over; close handshakes run.
    closing: bool,
    error: Option<String>,
}

impl WsBench {
    fn fail(&mut self, why: String) {
        if self.error.is_none() {
            self.error = Some(why);
        }
        if let Some(r) = &self.remote {
            r.stop();
        }
    }

    /// Send the next message on `ctx`'s connection.
    #[inline]
    fn send_next(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let Some(Some(c)) = self.conns.get_mut(ctx.id().index()) else {
            return;
        };
        let data = self.payload.stamped(c.sent);
        if ctx.send(as_message(data, self.text)).is_ok() {
            c.sent += 1;
            c.in_flight.push_back(now);
            self.meter.sent();
        }
    }

    /// Open loop: send every message due by `now`, each on its connection
    /// in turn, then wake the loop again at once. The reactor's timers have
    /// millisecond resolution; waking it every round instead keeps the
    /// generator polling without sleeping (a core's worth of CPU, which it
    /// has to itself), so messages leave within microseconds of when they
    /// are due, as in `--mode tcp`, which polls with a zero timeout.
    fn send_due(&mut self, ctl: &mut Control<'_>, now: Instant) {
        let Some(pacer) = &mut self.pacer else {
            return;
        };
        if let Some(r) = &self.remote {
            r.wake();
        }
        while let Some((k, due)) = pacer.next_due(now) {
            let id = self.ids[(k % self.ids.len() as u64) as usize];
            let Some(Some(c)) = self.conns.get_mut(id.index()) else {
                continue;
            };
            if c.in_flight.len() >= OPEN_LOOP_BACKLOG {
                self.fail(behind());
                return;
            }
            let data = self.payload.stamped(c.sent);
            if let Err(e) = ctl.send(id, as_message(data, self.text)) {
                let why = format!("send: {e}");
                self.fail(why);
                return;
            }
            c.sent += 1;
            c.in_flight.push_back(due);
            self.meter.sent();
        }
    }

    fn connect_more(&mut self, ctl: &mut Control<'_>) {
        while self.connects_started < self.target
            && self.connects_started - self.opened < CONNECT_BATCH
        {
            match ctl.connect(&self.url) {
                Ok(id) => {
                    self.connects_started += 1;
                    self.ids.push(id);
                }
                Err(e) => {
                    self.fail(format!("cannot connect to {}: {e}", self.url));
                    return;
                }
            }
        }
    }
}

impl Handler for WsBench {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let i = ctx.id().index();
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        self.conns[i] = Some(WsConn {
            sent: 0,
            received: 0,
            in_flight: VecDeque::with_capacity(self.pipeline),
        });
        self.opened += 1;
        self.open_now += 1;
        let now = Instant::now();
        if self.rate.is_none() {
            for _ in 0..self.pipeline {
                self.send_next(ctx, now);
            }
        }
        // More connects, or the start of the warm-up: both need a Control.
        if let Some(r) = &self.remote {
            r.wake();
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        let now = Instant::now();
        let i = ctx.id().index();
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        let seq = c.received;
        c.received += 1;
        let sent_at = c.in_flight.pop_front();
        let kind_ok = matches!(msg, Message::Text(_)) == self.text;
        let checked = if !kind_ok {
            Err(format!("echo of message {seq} came back as another kind"))
        } else if sent_at.is_none() {
            Err("an echo arrived for a message never sent".to_string())
        } else {
            self.payload.check(seq, msg.as_bytes())
        };
        if let Err(e) = checked {
            self.fail(format!("connection {i}: {e}"));
            return;
        }
        if let Some(t) = sent_at {
            self.meter.record(now.duration_since(t));
        }
        if !self.closing && self.rate.is_none() {
            self.send_next(ctx, now);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        let id = ctx.id();
        self.open_now = self.open_now.saturating_sub(1);
        if let Some(slot) = self.conns.get_mut(id.index()) {
            *slot = None;
        }
        if self.closing {
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
        let why = format!("cannot connect to {}: {reason}", self.url);
        self.fail(why);
    }

    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        if self.meter.phase != Phase::Ramp {
            if !self.closing && self.error.is_none() {
                self.send_due(ctl, Instant::now());
            }
            return;
        }
        let now = Instant::now();
        if self.opened == self.target {
            self.meter.begin(now);
            ctl.set_timer(self.meter.next_tick(now), TICK);
            if let Some(rate) = self.rate {
                self.pacer = Some(Pacer::new(rate, now));
                self.send_due(ctl, now);
            }
        } else if now > self.ramp_deadline {
            self.fail(format!(
                "only {} of {} connections opened in {CONNECT_LIMIT:?}",
                self.opened, self.target
            ));
        } else {
            self.connect_more(ctl);
        }
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) {
        let now = Instant::now();
        match token {
            TICK => {
                if self.meter.tick(now) {
                    ctl.set_timer(self.meter.next_tick(now), TICK);
                } else {
                    // Done: close every connection, wait for the handshakes
                    // (bounded), then stop.
                    self.closing = true;
                    for id in std::mem::take(&mut self.ids) {
                        let _ = ctl.close(id, 1000, "");
                    }
                    ctl.set_timer(CLOSE_GRACE, GRACE_OVER);
                }
            }
            GRACE_OVER => ctl.stop(),
            _ => {}
        }
    }
}

fn run_ws(o: &Options) -> Result<Report, String> {
    // A bad URL fails here, once, rather than in every connect.
    WsUrl::parse(&o.url).map_err(|e| format!("--url: {e}"))?;
    let mut config = ServerConfig {
        // Nothing but echoes on the wire: no heartbeats.
        ping_interval: None,
        max_connections: o.connections + 16,
        ..ServerConfig::default()
    };
    if let Some(ca) = &o.ca {
        crate::tls::trust(&mut config, ca)?;
    }
    let mut reactor = Reactor::new(
        config,
        WsBench {
            url: o.url.clone(),
            target: o.connections,
            pipeline: o.pipeline,
            rate: o.rate,
            pacer: None,
            text: o.text,
            payload: Payload::new(o.size),
            conns: Vec::new(),
            ids: Vec::with_capacity(o.connections),
            connects_started: 0,
            opened: 0,
            open_now: 0,
            ramp_deadline: Instant::now() + CONNECT_LIMIT,
            meter: Meter::new(o),
            remote: None,
            closing: false,
            error: None,
        },
    )
    .map_err(|e| format!("cannot start the event loop: {e}"))?;
    let remote = reactor.remote();
    reactor.handler_mut().remote = Some(remote.clone());
    // The first batch of connects; on_wake starts the rest as these open.
    for _ in 0..o.connections.min(CONNECT_BATCH) {
        let id = reactor
            .connect(&o.url)
            .map_err(|e| format!("cannot connect to {}: {e}", o.url))?;
        let h = reactor.handler_mut();
        h.connects_started += 1;
        h.ids.push(id);
    }
    // No helper thread (not even a watchdog for the ramp: every connect
    // opens or fails within handshake_timeout). Once a process has a
    // second thread, glibc takes the asynchronous-cancellation path on every
    // recv/writev/epoll_wait (two atomic updates per syscall), which costs
    // the generator measurably.
    let h = reactor
        .run()
        .map_err(|e| format!("event loop failed: {e}"))?;
    if let Some(e) = h.error {
        return Err(e);
    }
    if h.meter.phase != Phase::Done {
        return Err("the run stopped before the measurement ended".into());
    }
    Ok(Report::from_meter(h.meter))
}

// ---------------------------------------------------------------------------
// Raw TCP mode: a minimal mio loop, the same closed loop without framing.

struct TcpConn {
    stream: TcpStream,
    connected: bool,
    /// What the kernel has not taken yet.
    out: Vec<u8>,
    sent: u64,
    received: u64,
    /// Bytes of the message being received.
    at: usize,
    in_flight: VecDeque<Instant>,
}

struct TcpBench {
    size: usize,
    pipeline: usize,
    payload: Payload,
}

impl TcpBench {
    /// Send the next message on `c`; its round trip is timed from `at`.
    fn send_next(&mut self, c: &mut TcpConn, at: Instant, meter: &mut Meter) -> io::Result<()> {
        let data = self.payload.stamped(c.sent);
        c.sent += 1;
        c.in_flight.push_back(at);
        meter.sent();
        if !c.out.is_empty() {
            c.out.extend_from_slice(data);
            return Ok(());
        }
        let n = loop {
            match c.stream.write(data) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        c.out.extend_from_slice(&data[n..]);
        Ok(())
    }

    fn flush(c: &mut TcpConn) -> io::Result<()> {
        let mut done = 0;
        while done < c.out.len() {
            match c.stream.write(&c.out[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        c.out.drain(..done);
        Ok(())
    }

    /// Read until drained; check the echoed bytes, record each completed
    /// message and send the next.
    fn read(
        &mut self,
        c: &mut TcpConn,
        rbuf: &mut [u8],
        meter: &mut Meter,
        sending: bool,
    ) -> Result<(), String> {
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
                let take = chunk.len().min(self.size - c.at);
                self.payload.check_part(c.received, c.at, &chunk[..take])?;
                chunk = &chunk[take..];
                c.at += take;
                if c.at == self.size {
                    c.at = 0;
                    c.received += 1;
                    let Some(t) = c.in_flight.pop_front() else {
                        return Err("more bytes echoed than were sent".into());
                    };
                    meter.record(now.duration_since(t));
                    if sending {
                        self.send_next(c, now, meter)
                            .map_err(|e| format!("write: {e}"))?;
                    }
                }
            }
            if n < rbuf.len() {
                return Ok(());
            }
        }
    }
}

fn run_tcp(o: &Options) -> Result<Report, String> {
    let hostport = o
        .url
        .strip_prefix("tcp://")
        .or_else(|| o.url.strip_prefix("ws://"))
        .unwrap_or(&o.url);
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    let addr: SocketAddr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("--url: {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("--url: {hostport} did not resolve"))?;
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut events = Events::with_capacity(1024);
    let mut rbuf = vec![0u8; 64 * 1024].into_boxed_slice();
    let mut meter = Meter::new(o);
    let mut bench = TcpBench {
        size: o.size,
        pipeline: o.pipeline,
        payload: Payload::new(o.size),
    };
    let mut conns: Vec<TcpConn> = Vec::with_capacity(o.connections);
    let mut opened = 0;
    let mut pacer: Option<Pacer> = None;
    let ramp_deadline = Instant::now() + CONNECT_LIMIT;
    let connect = |poll: &Poll, conns: &mut Vec<TcpConn>| -> Result<(), String> {
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
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
            sent: 0,
            received: 0,
            at: 0,
            in_flight: VecDeque::with_capacity(o.pipeline),
        });
        Ok(())
    };
    while conns.len() < o.connections.min(CONNECT_BATCH) {
        connect(&poll, &mut conns)?;
    }
    loop {
        let now = Instant::now();
        let timeout = match meter.phase {
            Phase::Ramp => {
                if now > ramp_deadline {
                    return Err(format!(
                        "only {opened} of {} connections opened in {CONNECT_LIMIT:?}",
                        o.connections
                    ));
                }
                Some(Duration::from_millis(100))
            }
            // Open loop: poll without sleeping (see `WsBench::send_due`).
            _ if pacer.is_some() => Some(Duration::ZERO),
            _ => Some(meter.next_tick(now)),
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        for event in events.iter() {
            let Some(c) = conns.get_mut(event.token().0) else {
                continue;
            };
            if !c.connected {
                if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
                    return Err(format!("cannot connect to {addr}: {e}"));
                }
                match c.stream.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                    Err(e) => return Err(format!("cannot connect to {addr}: {e}")),
                }
                c.connected = true;
                let _ = c.stream.set_nodelay(true);
                opened += 1;
                let now = Instant::now();
                if o.rate.is_none() {
                    for _ in 0..bench.pipeline {
                        bench
                            .send_next(c, now, &mut meter)
                            .map_err(|e| format!("write: {e}"))?;
                    }
                }
            }
            if event.is_writable() && !c.out.is_empty() {
                TcpBench::flush(c).map_err(|e| format!("write: {e}"))?;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                bench.read(c, &mut rbuf, &mut meter, o.rate.is_none())?;
            }
        }
        let now = Instant::now();
        if meter.phase == Phase::Ramp {
            while conns.len() < o.connections && conns.len() - opened < CONNECT_BATCH {
                connect(&poll, &mut conns)?;
            }
            if opened == o.connections {
                meter.begin(now);
                pacer = o.rate.map(|r| Pacer::new(r, now));
            }
        } else if !meter.tick(now) {
            break;
        }
        if let Some(p) = &mut pacer {
            while let Some((k, due)) = p.next_due(now) {
                let n = conns.len() as u64;
                let c = &mut conns[(k % n) as usize];
                if c.in_flight.len() >= OPEN_LOOP_BACKLOG {
                    return Err(behind());
                }
                bench
                    .send_next(c, due, &mut meter)
                    .map_err(|e| format!("write: {e}"))?;
            }
        }
    }
    drop(conns);
    Ok(Report::from_meter(meter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_hex() {
        assert_eq!(&hex_stamp(0), b"0000000000000000");
        assert_eq!(&hex_stamp(0x0123_4567_89ab_cdef), b"0123456789abcdef");
        assert_eq!(&hex_stamp(u64::MAX), b"ffffffffffffffff");
    }

    #[test]
    fn checks_whole_and_split_echoes() {
        for size in [0, 1, 15, 16, 17, 20, 1024] {
            let mut p = Payload::new(size);
            let sent = p.stamped(42).to_vec();
            assert!(p.check(42, &sent).is_ok());
            assert!(
                p.check(41, &sent).is_err()
                    || size == 0
                    || hex_stamp(41)[..size.min(16)] == hex_stamp(42)[..size.min(16)]
            );
            for cut in 0..=size {
                assert!(p.check_part(42, 0, &sent[..cut]).is_ok(), "{size} {cut}");
                assert!(p.check_part(42, cut, &sent[cut..]).is_ok(), "{size} {cut}");
            }
            if size > 0 {
                let mut bad = sent.clone();
                bad[size - 1] ^= 1;
                assert!(p.check(42, &bad).is_err());
                assert!(p.check(42, &sent[..size - 1]).is_err());
            }
        }
    }

    #[test]
    fn pacer_releases_each_message_at_its_time() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer::new(1000.0, t0);
        // Message 0 is due at once, message k at k ms.
        assert_eq!(p.next_due(t0), Some((0, t0)));
        assert_eq!(p.next_due(t0), None);
        assert_eq!(p.next_due(t0 + ms(3)), Some((1, t0 + ms(1))));
        assert_eq!(p.next_due(t0 + ms(3)), Some((2, t0 + ms(2))));
        assert_eq!(p.next_due(t0 + ms(3)), Some((3, t0 + ms(3))));
        assert_eq!(p.next_due(t0 + ms(3)), None);
        // A late caller gets everything it missed, with the times it was due.
        let late: Vec<u64> =
            std::iter::from_fn(|| p.next_due(t0 + ms(10)).map(|(k, _)| k)).collect();
        assert_eq!(late, (4..=10).collect::<Vec<_>>());
        // Over a second at 2,500/s: 2,501 messages (0 through 2,500).
        let mut q = Pacer::new(2500.0, t0);
        assert_eq!(
            std::iter::from_fn(|| q.next_due(t0 + ms(1000))).count(),
            2501
        );
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }
}
