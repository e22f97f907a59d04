//! `wsreactor bench --gateway`: load on the rooms gateway (`wsreactor
//! serve`, docs/gateway.md), stepped as a stress test.
//!
//! N clients are spread over R rooms (client `i` in room `i % R`, over the
//! URLs round robin) and each joins its room. Once every one has its
//! `joined`, the first K members of every room publish, R msgs/s in all,
//! round robin over the publishers, on a 1 ms schedule. A publish's data is
//! `{"p":PUBLISHER,"n":COUNTER,"t":SEND_NS}`; every member times the
//! publish-to-receive latency from it and checks its room's `seq` and each
//! publisher's counter (see `bench_gateway_track.rs`). Any loss,
//! duplicate, reordering or foreign message fails the run.
//!
//! The run is a sequence of steps (one, without `--step-every`): after each
//! step, `--step-conns` more clients connect and join, or the rate rises by
//! `--step-rate`. Each step prints a row: members, offered and achieved
//! publishes/s, deliveries/s, latency p50/p99, the error rate and the
//! server's CPU and RSS.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use wsreactor::client::ConnectOptions;
use wsreactor::gateway::protocol::{SUBPROTOCOL_JSON, SUBPROTOCOL_PROTO};
use wsreactor::net::WsUrl;
use wsreactor::{ConnId, Control, Ctx, Handler, Message, Reactor, Remote, ServerConfig};

use super::{group, number, secs, string, Pacer, CLOSE_GRACE, CONNECT_BATCH};

#[path = "bench_gateway_rows.rs"]
mod rows;
#[path = "bench_gateway_track.rs"]
mod track;
#[path = "bench_gateway_wire.rs"]
mod wire;

use rows::{histogram, Errors, Row, StepMeter};
use track::{Delivered, Tracker};
use wire::{decode, frame, join_request, publish_request, Encoding, Event};

const USAGE: &str = "\
wsreactor bench --gateway: load on the rooms gateway (wsreactor serve)

USAGE:
    wsreactor bench --gateway --url ws://HOST:PORT/ws [OPTIONS]

N clients in R rooms (client i in room i % R) join their room; then the
first K members of every room publish, --rate publishes/s in all, round
robin. Every member checks its room's seq and each publisher's counter and
times publish-to-receive; any loss, duplicate or reordering fails the run.
With --step-every the load grows each step (more clients or a higher rate)
and a row per step is printed: members, publishes/s, deliveries/s, latency
p50/p99, error rate, the server's CPU and RSS.

OPTIONS:
    --url URL            The gateway's endpoint, ws://host:port/ws; repeat
                         it (or give a comma list) to spread the clients
                         round robin over several gateways
    --conns N            Clients at the start [default: 100]
    --rooms R            Rooms [default: 1]
    --encoding json|proto
                         wsreactor.v1.json (text) or wsreactor.v1.proto
                         (binary) [default: json]
    --token TOKEN        Send Authorization: Bearer TOKEN
    --token-file FILE    The same, the token read from FILE
    --name PREFIX        Connect with ?name=PREFIXi (client i; anonymous
                         gateways) [default: none: guest names]
    --room-prefix P      Room r is named Pr [default: bench:PID-]
    --rate R             Publishes per second in all [default: 100]
    --publishers K       Publishers per room (the room's first K members;
                         every room has K) [default: as many as keep each
                         under 10 publishes/s at the highest rate; the
                         gateway refuses more than 20/s per connection]
    --warmup SECS        Publishing before the first step [default: 1]
    --duration SECS      Without --step-every: the one step's length;
                         with it: a bound on the steps' total [default: 10]
    --step-every SECS    Step length: grow the load every SECS
    --step-conns N       Each step adds N clients (they join their rooms)
    --step-rate R        Each step adds R publishes/s
    --steps K            Steps, the first at the starting load [default: 5
                         with --step-every]
    --sources S          Connect from 127.0.0.2 .. 127.0.0.(S+1) (IPv4
                         loopback servers; for many clients) [default: 1]
    --server-pid PID     Report this process's CPU (% of one core) and RSS
    --allow-errors       Error events, failed connects and closes do not
                         fail the run (looking for the knee); delivery
                         faults always do
    --json               One JSON object per step, then a summary object
    -q, --quiet          No progress lines on stderr
    -h, --help           Print this help
";

/// The gateway's default per-connection publish rate (docs/gateway.md).
const GATEWAY_PUBLISH_LIMIT: f64 = 20.0;
/// What the default number of publishers keeps each one under.
const PUBLISHER_TARGET: f64 = 10.0;
/// Setup (every starting client joined) must not take longer.
const SETUP_LIMIT: Duration = Duration::from_secs(60);
/// After the last step: time for outstanding messages to arrive.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// The publishing schedule's resolution.
const SEND_EVERY: Duration = Duration::from_millis(1);
/// How often missing clients are connected.
const CONNECT_EVERY: Duration = Duration::from_millis(10);
/// Bounds on the run's size.
const MAX_CLIENTS: usize = 1_000_000;
const MAX_PAIRS: usize = 1 << 22;

#[derive(Debug, Clone)]
struct GwOptions {
    urls: Vec<String>,
    conns: usize,
    rooms: usize,
    encoding: Encoding,
    token: Option<String>,
    name: Option<String>,
    room_prefix: String,
    rate: f64,
    publishers: Option<usize>,
    warmup: Duration,
    duration: Option<Duration>,
    step_every: Option<Duration>,
    step_conns: usize,
    step_rate: f64,
    steps: Option<usize>,
    sources: u8,
    server_pid: Option<u32>,
    allow_errors: bool,
    json: bool,
    quiet: bool,
}

/// The run's shape, derived from the options.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    per_room: usize,
    steps: usize,
    step_len: Duration,
    /// The last step ends here (after the warm-up).
    total: Duration,
    max_clients: usize,
    max_rate: f64,
}

fn valid_name_chars(s: &str, extra: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c) || extra.contains(c))
}

fn parse(args: Vec<OsString>) -> Result<Option<(GwOptions, Plan)>, String> {
    use lexopt::prelude::*;
    let mut o = GwOptions {
        urls: Vec::new(),
        conns: 100,
        rooms: 1,
        encoding: Encoding::Json,
        token: None,
        name: None,
        room_prefix: format!("bench:{}-", std::process::id()),
        rate: 100.0,
        publishers: None,
        warmup: Duration::from_secs(1),
        duration: None,
        step_every: None,
        step_conns: 0,
        step_rate: 0.0,
        steps: None,
        sources: 1,
        server_pid: None,
        allow_errors: false,
        json: false,
        quiet: false,
    };
    let mut token_file = None;
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("gateway") => {}
            Long("url") => {
                let v = string(&mut parser, "--url")?;
                o.urls.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
            }
            Long("conns") | Long("connections") => o.conns = number(&mut parser, "--conns")?,
            Long("rooms") => o.rooms = number(&mut parser, "--rooms")?,
            Long("encoding") => {
                o.encoding = match string(&mut parser, "--encoding")?.as_str() {
                    "json" => Encoding::Json,
                    "proto" | "protobuf" => Encoding::Proto,
                    other => return Err(format!("--encoding: '{other}' is not json or proto")),
                }
            }
            Long("token") => o.token = Some(string(&mut parser, "--token")?),
            Long("token-file") => token_file = Some(string(&mut parser, "--token-file")?),
            Long("name") => o.name = Some(string(&mut parser, "--name")?),
            Long("room-prefix") => o.room_prefix = string(&mut parser, "--room-prefix")?,
            Long("rate") => o.rate = number(&mut parser, "--rate")?,
            Long("publishers") => o.publishers = Some(number(&mut parser, "--publishers")?),
            Long("warmup") => o.warmup = secs(&mut parser, "--warmup")?,
            Long("duration") => o.duration = Some(secs(&mut parser, "--duration")?),
            Long("step-every") => o.step_every = Some(secs(&mut parser, "--step-every")?),
            Long("step-conns") => o.step_conns = number(&mut parser, "--step-conns")?,
            Long("step-rate") => o.step_rate = number(&mut parser, "--step-rate")?,
            Long("steps") => o.steps = Some(number(&mut parser, "--steps")?),
            Long("sources") => o.sources = number(&mut parser, "--sources")?,
            Long("server-pid") => o.server_pid = Some(number(&mut parser, "--server-pid")?),
            Long("allow-errors") => o.allow_errors = true,
            Long("json") => o.json = true,
            Short('q') | Long("quiet") => o.quiet = true,
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(None);
            }
            other => {
                return Err(format!(
                    "{} (see wsreactor bench --gateway --help)",
                    other.unexpected()
                ))
            }
        }
    }
    if let Some(f) = token_file {
        if o.token.is_some() {
            return Err("--token and --token-file exclude each other".into());
        }
        let t = std::fs::read_to_string(&f).map_err(|e| format!("--token-file: {f}: {e}"))?;
        o.token = Some(t.trim().to_string());
    }
    if o.token.as_deref().is_some_and(str::is_empty) {
        return Err("the token is empty".into());
    }
    let plan = check(&o)?;
    Ok(Some((o, plan)))
}

fn check(o: &GwOptions) -> Result<Plan, String> {
    if o.urls.is_empty() {
        return Err("missing --url (see wsreactor bench --gateway --help)".into());
    }
    if o.conns == 0 || o.rooms == 0 || o.rooms > o.conns {
        return Err(
            "--conns and --rooms must be at least 1, with at least one client per room".into(),
        );
    }
    if let Some(n) = &o.name {
        if n.is_empty() || n.len() > 24 || !valid_name_chars(n, "") {
            return Err("--name: 1 to 24 ASCII letters, digits, '_', '-' or '.' (a client number is appended)".into());
        }
    }
    if o.room_prefix.len() > 100 || !valid_name_chars(&o.room_prefix, ":@/") {
        return Err("--room-prefix: at most 100 ASCII letters, digits and _ - . : @ /".into());
    }
    if !(o.rate.is_finite() && o.rate > 0.0 && o.step_rate.is_finite() && o.step_rate >= 0.0) {
        return Err("--rate must be a positive number of publishes per second (and --step-rate not negative)".into());
    }
    if o.sources == 0 || o.sources > 250 {
        return Err("--sources must be between 1 and 250".into());
    }
    let (steps, step_len, total) = match o.step_every {
        None => {
            if o.steps.is_some() || o.step_conns > 0 || o.step_rate > 0.0 {
                return Err("--steps, --step-conns and --step-rate need --step-every".into());
            }
            let d = o.duration.unwrap_or(Duration::from_secs(10));
            (1, d, d)
        }
        Some(every) => {
            if every.is_zero() {
                return Err("--step-every must be more than 0".into());
            }
            if o.step_conns > 0 && o.step_rate > 0.0 {
                return Err(
                    "--step-conns and --step-rate exclude each other (one variable per run)".into(),
                );
            }
            let steps = o.steps.unwrap_or(5);
            if steps == 0 || steps > 1000 {
                return Err("--steps must be between 1 and 1000".into());
            }
            let mut total = every * steps as u32;
            if let Some(d) = o.duration {
                total = total.min(d);
            }
            // Only the steps that start before the bound run.
            let steps = (total.as_secs_f64() / every.as_secs_f64()).ceil().max(1.0) as usize;
            (steps, every, total)
        }
    };
    if total.is_zero() {
        return Err("--duration must be more than 0".into());
    }
    let grow = steps.saturating_sub(1);
    let max_clients = o.conns.saturating_add(o.step_conns.saturating_mul(grow));
    if max_clients > MAX_CLIENTS {
        return Err(format!("at most {MAX_CLIENTS} clients"));
    }
    let max_rate = o.rate + o.step_rate * grow as f64;
    let min_members = o.conns / o.rooms;
    let per_room = match o.publishers {
        Some(k) => k,
        None => ((max_rate / (o.rooms as f64 * PUBLISHER_TARGET)).ceil() as usize)
            .clamp(1, min_members.max(1)),
    };
    if per_room == 0 || per_room > min_members {
        return Err(format!(
            "--publishers must be between 1 and the members of the smallest room ({min_members})"
        ));
    }
    let each = max_rate / (per_room * o.rooms) as f64;
    if each > GATEWAY_PUBLISH_LIMIT {
        return Err(format!(
            "each publisher would publish {each:.1}/s, above the gateway's per-connection limit of {GATEWAY_PUBLISH_LIMIT}/s: more --publishers or --rooms, or a lower --rate"
        ));
    }
    if max_clients.saturating_mul(per_room) > MAX_PAIRS {
        return Err(format!(
            "clients x publishers per room may be at most {MAX_PAIRS} (order is tracked per pair)"
        ));
    }
    Ok(Plan {
        per_room,
        steps,
        step_len,
        total,
        max_clients,
        max_rate,
    })
}

pub fn run(args: Vec<OsString>) -> Result<(), String> {
    let Some((o, plan)) = parse(args)? else {
        return Ok(());
    };
    let targets = o
        .urls
        .iter()
        .map(|u| Target::resolve(u, o.sources))
        .collect::<Result<Vec<_>, _>>()?;
    raise_fd_limit(plan.max_clients + 64)?;
    let report = run_loop(&o, &plan, targets)?;
    let f = report.faults;
    if o.json {
        println!("{}", report.summary_json(&o, &plan));
    } else {
        print!("{}", report.summary(&o, &plan));
    }
    if f.total() > 0 {
        // A Protobuf join's answer is byte for byte what an echo server
        // sends back, so only the first publish shows a server that is no
        // gateway.
        let hint = if report.totals().1 == 0 {
            format!(
                " (no message was delivered at all: is {} a wsreactor gateway?)",
                o.urls.join(", ")
            )
        } else {
            String::new()
        };
        return Err(format!(
            "delivery faults: {f}; first: {}{hint}",
            report.first_fault.as_deref().unwrap_or("-")
        ));
    }
    if report.errors.total() > 0 && !o.allow_errors {
        return Err(format!(
            "errors: {} (see --allow-errors); first: {}",
            report.errors,
            report.first_error.as_deref().unwrap_or("-")
        ));
    }
    Ok(())
}

/// Many clients need many descriptors: raise the soft limit up to the hard
/// one, or say what `ulimit -n` must be.
fn raise_fd_limit(need: usize) -> Result<(), String> {
    // SAFETY: getrlimit/setrlimit read and write the struct we pass, nothing else.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return Ok(());
        }
        let need = need as libc::rlim_t;
        if l.rlim_cur >= need {
            return Ok(());
        }
        if l.rlim_max < need {
            return Err(format!(
                "{need} clients need that many file descriptors; the hard limit is {} (raise it: ulimit -Hn)",
                l.rlim_max
            ));
        }
        l.rlim_cur = need;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
            return Err(format!(
                "cannot raise the file descriptor limit to {need}: {}",
                io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Where to connect.

struct Target {
    url: String,
    addr: SocketAddr,
    host: String,
    path: String,
    sources: u8,
}

impl Target {
    fn resolve(url: &str, sources: u8) -> Result<Self, String> {
        let u = WsUrl::parse(url).map_err(|e| format!("--url {url}: {e}"))?;
        if u.tls {
            return Err(format!("--url {url}: bench --gateway speaks ws:// only"));
        }
        let addr = (u.host.as_str(), u.port)
            .to_socket_addrs()
            .map_err(|e| format!("--url {url}: {e}"))?
            .next()
            .ok_or_else(|| format!("--url {url}: the host did not resolve"))?;
        if sources > 1 && !(addr.is_ipv4() && addr.ip().is_loopback()) {
            return Err("--sources needs servers on IPv4 loopback addresses".into());
        }
        Ok(Self {
            url: url.to_string(),
            addr,
            host: u.host_header(),
            path: u.path,
            sources,
        })
    }

    /// A socket connecting (non-blocking); client `i` binds to its source
    /// address first when there are several.
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
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let _ = s.set_tcp_nodelay(true);
        Ok(s.into())
    }

    /// The request target of client `i`.
    fn path_for(&self, i: usize, name: Option<&str>) -> String {
        match name {
            None => self.path.clone(),
            Some(n) => {
                let sep = if self.path.contains('?') { '&' } else { '?' };
                format!("{}{sep}name={n}{i}", self.path)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The event loop's handler.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Connecting the starting clients and waiting for their joins.
    Setup,
    Warmup,
    /// Step n (from 0).
    Step(usize),
    Drain,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Connecting,
    Joining,
    Joined,
    Gone,
}

const STEP_TIMER: u64 = 1;
const SEND_TIMER: u64 = 2;
const CONNECT_TIMER: u64 = 3;
const DRAIN_TIMER: u64 = 4;
const GRACE_OVER: u64 = 5;
const SETUP_TIMER: u64 = 6;

struct GwBench {
    encoding: Encoding,
    targets: Vec<Target>,
    name: Option<String>,
    connect: ConnectOptions,
    room_prefix: String,
    rooms: usize,
    server_pid: Option<u32>,
    quiet: bool,
    json: bool,
    plan: Plan,
    step_conns: usize,
    step_rate: f64,
    warmup: Duration,
    /// Clients wanted now (grows with --step-conns).
    want: usize,
    ids: Vec<Option<ConnId>>,
    state: Vec<ClientState>,
    /// `ConnId::index()` → client number.
    number: Vec<u32>,
    connecting: usize,
    members: usize,
    epoch: Instant,
    stage: Stage,
    setup_deadline: Instant,
    run_start: Instant,
    rate: f64,
    pacer: Option<Pacer>,
    next_pub: usize,
    tracker: Tracker,
    step: Option<StepMeter>,
    total_hist: Histogram<u64>,
    total_errors: Errors,
    first_error: Option<String>,
    rows: Vec<Row>,
    drain_deadline: Instant,
    open_now: usize,
    remote: Option<Remote>,
    woken: bool,
    error: Option<String>,
    json_buf: String,
    setup_timer: bool,
}

impl GwBench {
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

    fn room_name(&self, r: usize) -> String {
        format!("{}{r}", self.room_prefix)
    }

    fn room_index(&self, name: &str) -> Option<usize> {
        name.strip_prefix(self.room_prefix.as_str())?
            .parse::<usize>()
            .ok()
            .filter(|&r| r < self.rooms)
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn error(&mut self, kind: fn(&mut Errors), what: impl FnOnce() -> String) {
        kind(&mut self.total_errors);
        if let Some(s) = &mut self.step {
            kind(&mut s.errors);
        }
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    fn connect_more(&mut self, ctl: &mut Control<'_>) {
        while self.ids.len() < self.want && self.connecting < CONNECT_BATCH {
            let i = self.ids.len();
            let t = &self.targets[i % self.targets.len()];
            let path = t.path_for(i, self.name.as_deref());
            let id = t
                .open(i)
                .and_then(|s| ctl.connect_stream_with(s, &t.host, &path, &self.connect));
            if let Some(s) = &mut self.step {
                s.attempts += 1;
            }
            match id {
                Ok(id) => {
                    if self.number.len() <= id.index() {
                        self.number.resize(id.index() + 1, u32::MAX);
                    }
                    self.number[id.index()] = i as u32;
                    self.ids.push(Some(id));
                    self.state.push(ClientState::Connecting);
                    self.connecting += 1;
                }
                Err(e) => {
                    let why = format!("cannot connect to {}: {e}", t.url);
                    if self.stage == Stage::Setup {
                        self.fail(why);
                        return;
                    }
                    self.ids.push(None);
                    self.state.push(ClientState::Gone);
                    self.error(|e| e.connects += 1, || why);
                }
            }
        }
    }

    fn client_of(&self, id: ConnId) -> Option<usize> {
        let c = *self.number.get(id.index())? as usize;
        (self.ids.get(c).copied().flatten() == Some(id)).then_some(c)
    }

    fn send_due(&mut self, ctl: &mut Control<'_>) {
        let Some(mut pacer) = self.pacer.take() else {
            return;
        };
        let now = Instant::now();
        let k = self.tracker.publishers();
        while pacer.next_due(now).is_some() {
            // Round robin over the publishers still connected.
            let mut tries = 0;
            while tries < k && self.state[self.next_pub % k] != ClientState::Joined {
                self.next_pub += 1;
                tries += 1;
            }
            if tries == k {
                break;
            }
            let g = self.next_pub % k;
            self.next_pub += 1;
            let stamp = self.tracker.publish(g, self.ns(Instant::now()));
            let room = self.room_name(self.tracker.room_of(g));
            let mut buf = std::mem::take(&mut self.json_buf);
            let bytes = publish_request(self.encoding, &room, &stamp, &mut buf);
            self.json_buf = buf;
            if let Some(s) = &mut self.step {
                s.publishes += 1;
                s.attempts += 1;
            }
            let Some(id) = self.ids[g] else { continue };
            if let Err(e) = ctl.send(id, frame(self.encoding, &bytes)) {
                // The connection is gone (its close is counted): the
                // publish never left.
                self.tracker.refused(g);
                log::debug!("publisher {g}: send: {e}");
            }
        }
        self.pacer = Some(pacer);
    }

    fn start(&mut self, ctl: &mut Control<'_>, now: Instant) {
        if !self.quiet {
            eprintln!(
                "{} clients joined {} rooms in {:.1} s; publishing",
                group(self.members as u64),
                self.rooms,
                now.duration_since(self.run_start).as_secs_f64()
            );
        }
        self.stage = Stage::Warmup;
        self.run_start = now;
        self.pacer = Some(Pacer::new(self.rate, now));
        ctl.set_timer(SEND_EVERY, SEND_TIMER);
        ctl.set_timer(self.warmup, STEP_TIMER);
    }

    /// End of the warm-up or of a step.
    fn step_over(&mut self, ctl: &mut Control<'_>, now: Instant) {
        let next = match self.stage {
            Stage::Warmup => 0,
            Stage::Step(n) => {
                let meter = self.step.take().expect("a step is measured");
                let row = meter.row(n + 1, self.members, self.rate, now, self.server_pid);
                if self.json {
                    println!("{}", row.json());
                } else {
                    if n == 0 {
                        println!("{}", Row::HEADER);
                    }
                    println!("{}", row.line());
                }
                self.rows.push(row);
                n + 1
            }
            _ => return,
        };
        let elapsed = now.duration_since(self.run_start);
        let measured = elapsed.saturating_sub(self.warmup);
        if next >= self.plan.steps || measured + Duration::from_millis(1) >= self.plan.total {
            self.stage = Stage::Drain;
            self.pacer = None;
            self.drain_deadline = now + DRAIN_GRACE;
            ctl.set_timer(Duration::from_millis(5), DRAIN_TIMER);
            return;
        }
        if next > 0 {
            // Grow the load for the next step.
            if self.step_conns > 0 {
                self.want = (self.want + self.step_conns).min(self.plan.max_clients);
                ctl.set_timer(Duration::ZERO, CONNECT_TIMER);
            }
            if self.step_rate > 0.0 {
                self.rate += self.step_rate;
                self.pacer = Some(Pacer::new(self.rate, now));
            }
        }
        self.stage = Stage::Step(next);
        self.step = Some(StepMeter::new(now, self.server_pid));
        let end = self.warmup + self.plan.step_len * (next as u32 + 1);
        let end = end.min(self.warmup + self.plan.total);
        ctl.set_timer(end.saturating_sub(elapsed), STEP_TIMER);
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, c: usize, msg: Message<'_>) {
        let ev = match decode(self.encoding, &msg) {
            Ok(ev) => ev,
            Err(why) => return self.bad(c, &why),
        };
        match ev {
            Event::Message { room, seq, stamp } => {
                if self.state[c] != ClientState::Joined {
                    return self.bad(c, "a message before its join was answered");
                }
                let room = self.room_index(&room);
                if let Delivered::Ok { sent_ns } = self.tracker.deliver(c, room, seq, stamp) {
                    let latency = self.ns(Instant::now()).saturating_sub(sent_ns).max(1);
                    if let Some(s) = &mut self.step {
                        s.deliveries += 1;
                        s.hist.saturating_record(latency);
                        self.total_hist.saturating_record(latency);
                    }
                }
            }
            Event::Joined { seq } if self.state[c] == ClientState::Joining => {
                self.state[c] = ClientState::Joined;
                self.tracker.joined(c, seq);
                self.members += 1;
                if self.stage == Stage::Setup && self.members == self.want {
                    self.wake();
                }
            }
            Event::Error { code, message } => {
                if self.state[c] == ClientState::Joining {
                    let url = &self.targets[c % self.targets.len()].url;
                    return self.fail(format!(
                        "{url}: the gateway refused client {c}'s join: {code}: {message}"
                    ));
                }
                if c < self.tracker.publishers() {
                    self.tracker.refused(c);
                }
                self.error(
                    |e| e.events += 1,
                    || format!("client {c}: error event {code}: {message}"),
                );
            }
            other => {
                let what = format!("unexpected {other:?}");
                self.bad(c, &what);
            }
        }
        let _ = ctx;
    }

    /// Something that is not a valid answer: before the join it means the
    /// server is not a gateway (the run fails); after, a corrupt delivery.
    fn bad(&mut self, c: usize, why: &str) {
        if self.state[c] == ClientState::Joining {
            let url = &self.targets[c % self.targets.len()].url;
            let why = format!(
                "{url} does not answer a join like a wsreactor gateway (wsreactor serve, endpoint /ws): {why}"
            );
            return self.fail(why);
        }
        self.tracker.corrupt(c, why);
    }
}

impl Handler for GwBench {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let Some(c) = self.client_of(ctx.id()) else {
            return;
        };
        self.connecting -= 1;
        self.open_now += 1;
        self.state[c] = ClientState::Joining;
        let room = self.room_name(self.tracker.room_of(c));
        let req = join_request(self.encoding, &room);
        if let Err(e) = ctx.send(frame(self.encoding, &req)) {
            self.fail(format!("client {c}: sending its join: {e}"));
        }
        self.wake();
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        if let Some(c) = self.client_of(ctx.id()) {
            self.on_event(ctx, c, msg);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        let Some(c) = self.client_of(ctx.id()) else {
            return;
        };
        self.open_now = self.open_now.saturating_sub(1);
        if self.state[c] == ClientState::Joined {
            self.members -= 1;
        }
        self.state[c] = ClientState::Gone;
        self.tracker.closed(c);
        match self.stage {
            Stage::Close => {
                if self.open_now == 0 {
                    if let Some(r) = &self.remote {
                        r.stop();
                    }
                }
            }
            Stage::Setup => {
                let url = &self.targets[c % self.targets.len()].url;
                let why = format!(
                    "{url}: the server closed client {c} before it joined: {code} {reason}"
                );
                self.fail(why);
            }
            _ => self.error(
                |e| e.closes += 1,
                || format!("client {c}: closed by the server: {code} {reason}"),
            ),
        }
    }

    fn on_connect_failed(&mut self, _ctl: &mut Control<'_>, id: ConnId, reason: &str) {
        let Some(c) = self.client_of(id) else {
            return;
        };
        self.connecting = self.connecting.saturating_sub(1);
        self.state[c] = ClientState::Gone;
        let url = &self.targets[c % self.targets.len()].url;
        let why = format!("cannot connect to {url}: {reason}");
        if self.stage == Stage::Setup {
            return self.fail(why);
        }
        self.error(|e| e.connects += 1, || why);
        self.wake();
    }

    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        self.woken = false;
        if self.error.is_some() {
            return;
        }
        if self.stage == Stage::Setup && self.members == self.want {
            return self.start(ctl, Instant::now());
        }
        if self.stage == Stage::Setup && !self.setup_timer {
            // Connect pacing and the setup deadline.
            self.setup_timer = true;
            ctl.set_timer(CONNECT_EVERY, SETUP_TIMER);
        }
        if matches!(self.stage, Stage::Setup | Stage::Warmup | Stage::Step(_)) {
            self.connect_more(ctl);
        }
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) {
        if self.error.is_some() {
            return;
        }
        let now = Instant::now();
        match token {
            SETUP_TIMER if self.stage == Stage::Setup => {
                if now > self.setup_deadline {
                    let why = format!(
                        "only {} of {} clients joined within {SETUP_LIMIT:?}",
                        self.members, self.want
                    );
                    return self.fail(why);
                }
                self.connect_more(ctl);
                ctl.set_timer(CONNECT_EVERY, SETUP_TIMER);
            }
            CONNECT_TIMER if matches!(self.stage, Stage::Step(_)) && self.ids.len() < self.want => {
                self.connect_more(ctl);
                ctl.set_timer(CONNECT_EVERY, CONNECT_TIMER);
            }
            SEND_TIMER if matches!(self.stage, Stage::Warmup | Stage::Step(_)) => {
                self.send_due(ctl);
                ctl.set_timer(SEND_EVERY, SEND_TIMER);
            }
            STEP_TIMER => self.step_over(ctl, now),
            DRAIN_TIMER if self.stage == Stage::Drain => {
                let done = self.tracker.unechoed() == 0 && self.tracker.behind() == 0;
                if !done && now < self.drain_deadline {
                    ctl.set_timer(Duration::from_millis(5), DRAIN_TIMER);
                    return;
                }
                self.tracker.count_losses();
                self.stage = Stage::Close;
                if self.open_now == 0 {
                    return ctl.stop();
                }
                for id in self.ids.iter().flatten() {
                    let _ = ctl.close(*id, 1000, "");
                }
                ctl.set_timer(CLOSE_GRACE, GRACE_OVER);
            }
            GRACE_OVER => ctl.stop(),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// The run and its summary.

struct GwReport {
    rows: Vec<Row>,
    hist: Histogram<u64>,
    faults: track::Faults,
    first_fault: Option<String>,
    errors: Errors,
    first_error: Option<String>,
}

fn run_loop(o: &GwOptions, plan: &Plan, targets: Vec<Target>) -> Result<GwReport, String> {
    let config = ServerConfig {
        // The gateway's pings are answered; ours are not needed.
        ping_interval: None,
        max_connections: plan.max_clients + 16,
        ..ServerConfig::default()
    };
    let mut connect = ConnectOptions::default().protocol(match o.encoding {
        Encoding::Json => SUBPROTOCOL_JSON,
        Encoding::Proto => SUBPROTOCOL_PROTO,
    });
    if let Some(t) = &o.token {
        connect = connect.bearer(t);
    }
    let now = Instant::now();
    let mut reactor = Reactor::new(
        config,
        GwBench {
            encoding: o.encoding,
            targets,
            name: o.name.clone(),
            connect,
            room_prefix: o.room_prefix.clone(),
            rooms: o.rooms,
            server_pid: o.server_pid,
            quiet: o.quiet,
            json: o.json,
            plan: plan.clone(),
            step_conns: o.step_conns,
            step_rate: o.step_rate,
            warmup: o.warmup,
            want: o.conns,
            ids: Vec::with_capacity(plan.max_clients),
            state: Vec::with_capacity(plan.max_clients),
            number: Vec::new(),
            connecting: 0,
            members: 0,
            epoch: now,
            stage: Stage::Setup,
            setup_deadline: now + SETUP_LIMIT,
            run_start: now,
            rate: o.rate,
            pacer: None,
            next_pub: 0,
            tracker: Tracker::new(o.rooms, plan.per_room),
            step: None,
            total_hist: histogram(),
            total_errors: Errors::default(),
            first_error: None,
            rows: Vec::new(),
            drain_deadline: now,
            open_now: 0,
            remote: None,
            woken: false,
            error: None,
            json_buf: String::new(),
            setup_timer: false,
        },
    )
    .map_err(|e| format!("cannot start the event loop: {e}"))?;
    let remote = reactor.remote();
    reactor.handler_mut().remote = Some(remote.clone());
    reactor.handler_mut().wake();
    let h = reactor
        .run()
        .map_err(|e| format!("event loop failed: {e}"))?;
    if let Some(e) = h.error {
        return Err(e);
    }
    if h.stage != Stage::Close {
        return Err("the run stopped before its last step".into());
    }
    Ok(GwReport {
        rows: h.rows,
        hist: h.total_hist,
        faults: h.tracker.faults,
        first_fault: h.tracker.first_fault,
        errors: h.total_errors,
        first_error: h.first_error,
    })
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl GwReport {
    fn totals(&self) -> (f64, u64, u64) {
        let secs: f64 = self.rows.iter().map(|r| r.secs).sum();
        let d = self.rows.iter().map(|r| r.deliveries).sum();
        let p = self.rows.iter().map(|r| r.publishes).sum();
        (secs.max(1e-9), d, p)
    }

    fn us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    fn summary(&self, o: &GwOptions, plan: &Plan) -> String {
        let (secs, d, p) = self.totals();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} gateway: {} clients in {} rooms ({} encoding, {} publishers per room), {} step(s) in {secs:.1} s",
            o.urls.join(","),
            group(o.conns as u64),
            o.rooms,
            if o.encoding == Encoding::Json { "JSON" } else { "Protobuf" },
            plan.per_room,
            self.rows.len()
        );
        let _ = writeln!(
            s,
            "deliveries: {} msg/s ({} checked); publishes: {}/s",
            group((d as f64 / secs) as u64),
            group(d),
            group((p as f64 / secs) as u64)
        );
        let _ = writeln!(
            s,
            "publish to receive (us): p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            self.us(0.5),
            self.us(0.99),
            self.us(0.999),
            self.hist.max() as f64 / 1000.0
        );
        let _ = writeln!(s, "faults: {}", self.faults);
        let _ = writeln!(s, "errors: {}", self.errors);
        s
    }

    fn summary_json(&self, o: &GwOptions, plan: &Plan) -> String {
        let (secs, d, p) = self.totals();
        let urls: Vec<String> = o.urls.iter().map(|u| json_str(u)).collect();
        let f = &self.faults;
        format!(
            concat!(
                "{{\"summary\":true,\"urls\":[{}],\"encoding\":\"{}\",\"conns\":{},\"rooms\":{},",
                "\"publishers_per_room\":{},\"steps\":{},\"secs\":{:.3},\"deliveries\":{},",
                "\"deliveries_per_s\":{:.1},\"publishes_per_s\":{:.1},",
                "\"latency_us\":{{\"p50\":{:.1},\"p99\":{:.1},\"p99_9\":{:.1},\"max\":{:.1}}},",
                "\"faults\":{{\"lost\":{},\"duplicates\":{},\"out_of_order\":{},\"corrupt\":{}}},",
                "\"error_events\":{},\"failed_connects\":{},\"closes\":{},\"first_fault\":{}}}"
            ),
            urls.join(","),
            if o.encoding == Encoding::Json {
                "json"
            } else {
                "proto"
            },
            o.conns,
            o.rooms,
            plan.per_room,
            self.rows.len(),
            secs,
            d,
            d as f64 / secs,
            p as f64 / secs,
            self.us(0.5),
            self.us(0.99),
            self.us(0.999),
            self.hist.max() as f64 / 1000.0,
            f.lost,
            f.duplicates,
            f.out_of_order,
            f.corrupt,
            self.errors.events,
            self.errors.connects,
            self.errors.closes,
            self.first_fault.as_deref().map_or("null".into(), json_str),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        let mut v: Vec<OsString> = ["--gateway", "--url", "ws://127.0.0.1:9/ws"]
            .iter()
            .map(OsString::from)
            .collect();
        v.extend(a.iter().map(OsString::from));
        v
    }

    fn plan(a: &[&str]) -> Result<Plan, String> {
        parse(args(a)).map(|o| o.unwrap().1)
    }

    #[test]
    fn default_publishers_stay_under_the_gateway_limit() {
        let p = plan(&["--conns", "1000", "--rate", "500"]).unwrap();
        assert_eq!(p.per_room, 50);
        assert_eq!((p.steps, p.total), (1, Duration::from_secs(10)));
        let p = plan(&["--conns", "10000", "--rooms", "100", "--rate", "1000"]).unwrap();
        assert_eq!(p.per_room, 1);
        let p = plan(&[
            "--conns",
            "100",
            "--rate",
            "100",
            "--step-every",
            "2",
            "--step-rate",
            "100",
            "--steps",
            "4",
        ])
        .unwrap();
        assert_eq!(p.max_rate, 400.0);
        assert_eq!(p.per_room, 40);
        assert_eq!((p.steps, p.total), (4, Duration::from_secs(8)));
    }

    #[test]
    fn steps_are_bounded_by_duration() {
        let p = plan(&[
            "--step-every",
            "2",
            "--step-conns",
            "10",
            "--steps",
            "10",
            "--duration",
            "5",
        ])
        .unwrap();
        assert_eq!((p.steps, p.total), (3, Duration::from_secs(5)));
        assert_eq!(p.max_clients, 120);
    }

    #[test]
    fn bad_options_are_explained() {
        for (a, want) in [
            (&["--rooms", "0"][..], "--rooms"),
            (&["--conns", "5", "--rooms", "6"][..], "--rooms"),
            (&["--rate", "0"][..], "--rate"),
            (
                &["--publishers", "1", "--rate", "100"][..],
                "per-connection limit",
            ),
            (
                &["--conns", "2", "--rate", "1000"][..],
                "per-connection limit",
            ),
            (&["--publishers", "101"][..], "--publishers"),
            (&["--steps", "3"][..], "need --step-every"),
            (
                &["--step-every", "1", "--step-conns", "1", "--step-rate", "1"][..],
                "exclude",
            ),
            (&["--step-every", "1", "--steps", "0"][..], "--steps"),
            (&["--encoding", "xml"][..], "json or proto"),
            (&["--name", "a b"][..], "--name"),
            (&["--room-prefix", "a*"][..], "--room-prefix"),
            (&["--sources", "0"][..], "--sources"),
            (&["--token", ""][..], "empty"),
            (&["--frobnicate"][..], "--frobnicate"),
        ] {
            let e = plan(a).unwrap_err();
            assert!(e.contains(want), "{a:?}: {e}");
        }
        let e = parse(vec!["--gateway".into()]).unwrap_err();
        assert!(e.contains("--url"), "{e}");
    }

    #[test]
    fn urls_repeat_or_come_as_a_list() {
        let (o, _) = parse(args(&[
            "--url",
            "ws://127.0.0.1:10/ws, ws://127.0.0.1:11/ws",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.urls.len(), 3);
    }
}
