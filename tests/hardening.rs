//! Acceptance tests of issue 7 (service hardening), over loopback against the
//! real reactor: heartbeats, the idle, close and shutdown timeouts, connection
//! and protocol limits, origin and token checks and subprotocols at the
//! handshake, `/healthz` and `/metrics`, graceful shutdown, the overflow
//! policy of queued output, and regression tests for known attack classes.
//!
//! What `loopback.rs` already covers is not repeated: the reject matrix (431
//! for a header block over the cap included), the handshake-timeout dribble,
//! the exact 503 bytes, read backpressure, 1009/1008 past the limits.
//!
//! Timeouts are tens to hundreds of milliseconds. Tests that measure time
//! hold [`timing`] (shared with each other); CPU-heavy ones hold [`heavy`]
//! (exclusive), so a heavy test never runs beside a timed one.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use wsreactor::handshake::server::Upgrade;
use wsreactor::proto::{Config, SendError};
use wsreactor::{
    ConnId, Ctx, Decision, Handler, Message, OverflowPolicy, Remote, Sent, Server, ServerConfig,
};

// Lets the handler report the largest allocation the reactor thread made
// while a connection was open (the counters are per thread).
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------
// Scheduling of the tests themselves
// ---------------------------------------------------------------------------

static LANES: RwLock<()> = RwLock::new(());

/// Held by tests that assert on elapsed time: they may run together.
fn timing() -> RwLockReadGuard<'static, ()> {
    LANES.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held by CPU- or socket-heavy tests: they run alone.
fn heavy() -> RwLockWriteGuard<'static, ()> {
    LANES.write().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

/// What the handler saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Open(ConnId),
    Pong(ConnId, Vec<u8>),
    Close(ConnId, u16, String),
    /// The largest allocation the reactor thread made between the open and
    /// the close of the connection (logged just before its `Close`).
    Largest(ConnId, usize),
    /// Every send of a flood: its outcome and the bytes queued after it.
    Flood(ConnId, Sends),
}

/// Outcomes of the sends of a flood, each with the bytes queued after it.
type Sends = Vec<(Result<Sent, SendError>, usize)>;

#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn push(&self, s: Seen) {
        self.0.lock().unwrap().push(s);
    }

    fn snapshot(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    /// Wait (up to the I/O timeout) until `f` finds a value in the log.
    fn wait_for<T>(&self, what: &str, f: impl Fn(&[Seen]) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f(&self.snapshot()) {
                return v;
            }
            assert!(
                start.elapsed() < IO_TIMEOUT,
                "timed out waiting for {what}; log: {:?}",
                self.snapshot()
            );
            std::thread::sleep(ms(1));
        }
    }

    /// The `n`th connection opened (from 0).
    fn opened(&self, n: usize) -> ConnId {
        self.wait_for(&format!("open #{n}"), |log| {
            log.iter()
                .filter_map(|s| match s {
                    Seen::Open(id) => Some(*id),
                    _ => None,
                })
                .nth(n)
        })
    }

    /// The close reported for `id`, waiting for it.
    fn close_of(&self, id: ConnId) -> (u16, String) {
        self.wait_for("on_close", |log| {
            log.iter().find_map(|s| match s {
                Seen::Close(i, code, reason) if *i == id => Some((*code, reason.clone())),
                _ => None,
            })
        })
    }

    fn closes(&self) -> Vec<(ConnId, u16, String)> {
        self.snapshot()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Close(id, c, r) => Some((id, c, r)),
                _ => None,
            })
            .collect()
    }

    fn pongs(&self, id: ConnId) -> usize {
        self.snapshot()
            .iter()
            .filter(|s| matches!(s, Seen::Pong(i, _) if *i == id))
            .count()
    }

    fn largest(&self, id: ConnId) -> usize {
        self.wait_for("largest allocation", |log| {
            log.iter().find_map(|s| match s {
                Seen::Largest(i, n) if *i == id => Some(*n),
                _ => None,
            })
        })
    }

    fn flood(&self, id: ConnId) -> Sends {
        self.wait_for("flood", |log| {
            log.iter().find_map(|s| match s {
                Seen::Flood(i, sends) if *i == id => Some(sends.clone()),
                _ => None,
            })
        })
    }
}

/// Size of each message of a flood.
const FLOOD_CHUNK: usize = 64 * 1024;
/// A flood stops after this many sends even if none is refused.
const FLOOD_MAX: usize = 2048;

/// The payload of flood message `i`: its number, then filler.
fn flood_payload(i: usize) -> Vec<u8> {
    let mut p = vec![(i % 251) as u8; FLOOD_CHUNK];
    p[..4].copy_from_slice(&(i as u32).to_be_bytes());
    p
}

/// Decides the handshake by path, echoes messages, and on command closes or
/// floods the connection.
///
/// - `/auth` needs `Authorization: Bearer t0ken` (else 401);
/// - `/proto` selects `b` if the client offers it;
/// - `/wrong-proto` selects `c`, which no client here offers (a handler bug);
/// - the text `close-me` starts a close handshake with 4001 "bye";
/// - the text `flood` sends [`FLOOD_CHUNK`]-byte messages until a send is
///   refused (at most [`FLOOD_MAX`]), and logs every outcome.
#[derive(Debug)]
struct Hard {
    log: Log,
}

const AUTH_REASON: &str = "missing or bad bearer token";

impl Handler for Hard {
    fn on_handshake<'b>(&mut self, _id: ConnId, req: &Upgrade<'_, 'b>) -> Decision<'b> {
        match req.path {
            "/auth" => {
                let ok = req.headers().iter().any(|h| {
                    h.name.eq_ignore_ascii_case("authorization") && h.value == b"Bearer t0ken"
                });
                if ok {
                    Decision::ACCEPT
                } else {
                    Decision::Reject {
                        status: 401,
                        reason: AUTH_REASON,
                    }
                }
            }
            "/proto" => Decision::Accept {
                protocol: req.protocols().any(|p| p == b"b").then_some("b"),
            },
            "/wrong-proto" => Decision::Accept {
                protocol: Some("c"),
            },
            _ => Decision::ACCEPT,
        }
    }

    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        reset_largest_allocation();
        self.log.push(Seen::Open(ctx.id()));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        match msg {
            Message::Text("close-me") => {
                ctx.close(4001, "bye").expect("close");
            }
            Message::Text("flood") => {
                let mut sends = Vec::new();
                for i in 0..FLOOD_MAX {
                    let r = ctx.send_binary(&flood_payload(i));
                    sends.push((r, ctx.queued()));
                    if r.is_err() {
                        break;
                    }
                }
                self.log.push(Seen::Flood(ctx.id(), sends));
            }
            // Fails once the close handshake started: nothing to do then.
            _ => {
                let _ = ctx.send(msg);
            }
        }
    }

    fn on_pong(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {
        self.log.push(Seen::Pong(ctx.id(), payload.to_vec()));
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        let id = ctx.id();
        self.log.push(Seen::Largest(id, largest_allocation()));
        self.log.push(Seen::Close(id, code, reason.to_owned()));
    }
}

/// A server whose reactor runs in a thread we know the id of.
struct Srv {
    addr: SocketAddr,
    remote: Remote,
    /// Kernel thread id of the reactor thread.
    tid: u32,
    thread: Option<JoinHandle<io::Result<Hard>>>,
}

fn serve(config: ServerConfig) -> (Srv, Log) {
    let log = Log::default();
    let server = Server::bind("127.0.0.1:0", config, Hard { log: log.clone() }).expect("bind");
    let addr = server.local_addr();
    let remote = server.stopper();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("reactor".into())
        .spawn(move || {
            tx.send(own_tid()).unwrap();
            server.run()
        })
        .expect("spawn the reactor");
    let tid = rx.recv().expect("the reactor's thread id");
    let srv = Srv {
        addr,
        remote,
        tid,
        thread: Some(thread),
    };
    (srv, log)
}

/// The calling thread's kernel id (`/proc/thread-self` → `.../task/<tid>`).
fn own_tid() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("a thread id")
}

impl Srv {
    /// CPU time the reactor thread has used so far.
    fn cpu(&self) -> Duration {
        let path = format!("/proc/self/task/{}/schedstat", self.tid);
        let stat = std::fs::read_to_string(path).expect("schedstat");
        let ns = stat.split_whitespace().next().unwrap().parse().unwrap();
        Duration::from_nanos(ns)
    }

    /// Stop at once and get the handler back.
    fn stop(mut self) -> Hard {
        self.remote.stop();
        self.join()
    }

    /// Wait for `run` to return.
    fn join(&mut self) -> Hard {
        let thread = self.thread.take().expect("running");
        thread
            .join()
            .expect("reactor thread panicked")
            .expect("reactor failed")
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.remote.stop();
        }
    }
}

// ---------------------------------------------------------------------------
// Client-side helpers
// ---------------------------------------------------------------------------

fn close_bytes(code: u16) -> Vec<u8> {
    code.to_be_bytes().to_vec()
}

/// Send `request` on a fresh connection and read the answer up to EOF.
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tcp(addr);
    s.write_all(request).unwrap();
    lossy(&read_to_eof(&mut s))
}

fn get(addr: SocketAddr, path: &str) -> String {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

/// The exact answer to a handler or origin rejection: plain text, and the
/// connection closes after it; a 401 names the Bearer scheme.
fn bare_response(status: &str, body: &str) -> String {
    let auth = if status.starts_with("401") {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The metrics text: the body of `GET /metrics`, whose head is checked.
fn scrape(addr: SocketAddr) -> String {
    let answer = get(addr, "/metrics");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a header block");
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n")
            && head.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n")
            && head.contains(&format!("\r\nContent-Length: {}", body.len())),
        "{head}"
    );
    body.to_string()
}

/// The value of the sample `name` (labels included) in metrics `text`.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[track_caller]
fn assert_metric(text: &str, name: &str, value: u64) {
    assert_eq!(metric(text, name), Some(value), "{name} in:\n{text}");
}

/// An upgrade request for `path` with the RFC 6455 key and `extra` header
/// lines.
fn upgrade_with(path: &str, extra: &[&str]) -> Vec<u8> {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\n\
         Host: server.example.com\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {RFC_KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        r.push_str(line);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Send `request`, expect the exact 101 (selecting `protocol` if given),
/// check an echo and return the client.
fn expect_101(addr: SocketAddr, request: &[u8], protocol: Option<&str>) -> WsClient {
    let mut s = tcp(addr);
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let head = lossy(&read_http_head(&mut s, &mut buf));
    let mut want = format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {RFC_ACCEPT}\r\n"
    );
    if let Some(p) = protocol {
        want.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    want.push_str("\r\n");
    assert_eq!(head, want);
    let mut c = WsClient::from_parts(s, buf);
    c.send(OP_TEXT, b"hi");
    assert_eq!(c.recv().payload, b"hi");
    c
}

/// The next frame that is not a heartbeat ping (those are answered).
fn recv_data(c: &mut WsClient) -> WireFrame {
    loop {
        let f = c.recv();
        if f.opcode != OP_PING {
            return f;
        }
        c.send(OP_PONG, &f.payload);
    }
}

/// Client-initiated close with 1000, answered, then EOF.
fn close_normally(c: &mut WsClient) {
    c.send(OP_CLOSE, &close_bytes(1000));
    let f = recv_data(c);
    assert_eq!((f.opcode, f.payload), (OP_CLOSE, close_bytes(1000)));
    c.expect_eof();
}

fn assert_between(what: &str, t: Duration, lo: Duration, hi: Duration) {
    assert!(
        t >= lo && t <= hi,
        "{what} after {t:?}, expected {lo:?}..={hi:?}"
    );
}

/// Resident set size of this process.
fn vm_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

// ---------------------------------------------------------------------------
// Heartbeats and timeouts
// ---------------------------------------------------------------------------

#[test]
fn heartbeat_answered_keeps_the_connection_open() {
    let _t = timing();
    let (srv, log) = serve(ServerConfig {
        ping_interval: Some(ms(100)),
        pong_timeout: ms(100),
        ..ServerConfig::default()
    });
    let mut c = WsClient::connect(srv.addr);
    let id = log.opened(0);
    // A ping every interval (counted from the last one), each answered.
    let mut last = Instant::now();
    for i in 0..5 {
        let f = c.recv();
        let gap = last.elapsed();
        last = Instant::now();
        assert_eq!(
            (f.fin, f.opcode, f.payload.as_slice()),
            (true, OP_PING, &b""[..]),
            "frame {i}"
        );
        assert_between(&format!("ping {i}"), gap, ms(80), ms(200));
        c.send(OP_PONG, &f.payload);
    }
    // Five intervals (and pong timeouts) later the connection still works.
    c.send(OP_TEXT, b"alive");
    let f = recv_data(&mut c);
    assert_eq!((f.opcode, f.payload.as_slice()), (OP_TEXT, &b"alive"[..]));
    assert!(log.pongs(id) >= 5, "on_pong: {:?}", log.snapshot());
    assert_eq!(log.closes(), []);
    close_normally(&mut c);
    assert_eq!(log.close_of(id), (1000, String::new()));
    srv.stop();
}

#[test]
fn heartbeat_unanswered_fails_with_1001_pong_timeout() {
    let _t = timing();
    let (srv, log) = serve(ServerConfig {
        ping_interval: Some(ms(100)),
        pong_timeout: ms(100),
        ..ServerConfig::default()
    });
    let mut c = WsClient::connect(srv.addr);
    let t0 = Instant::now();
    let id = log.opened(0);
    let f = c.recv();
    let pinged = t0.elapsed();
    assert_eq!((f.opcode, f.payload.as_slice()), (OP_PING, &b""[..]));
    assert_between("ping", pinged, ms(80), ms(200));
    // No pong: a close 1001 (the code alone on the wire) at the pong timeout,
    // then TCP ends without waiting for our close (the connection failed).
    c.expect_close(&close_bytes(1001));
    let closed = t0.elapsed();
    assert_between("close after the ping", closed - pinged, ms(80), ms(200));
    c.expect_eof();
    assert!(t0.elapsed() - closed < ms(100), "EOF {:?}", t0.elapsed());
    assert_eq!(log.close_of(id), (1001, "pong timeout".to_string()));
    srv.stop();
}

#[test]

fn heartbeat_interval_holds_when_pong_timeout_is_longer() {
    // ServerConfig::ping_interval: "Send a ping this long after the last
    // one". A pong timeout longer than the interval (e.g. 5 s / 10 s) must
    // not stretch the interval while pongs come back at once.
    let _t = timing();
    let (srv, log) = serve(ServerConfig {
        ping_interval: Some(ms(100)),
        pong_timeout: ms(1000),
        ..ServerConfig::default()
    });
    let mut c = WsClient::connect(srv.addr);
    log.opened(0);
    let mut last = Instant::now();
    for i in 0..4 {
        let f = c.recv();
        let gap = last.elapsed();
        last = Instant::now();
        assert_eq!(f.opcode, OP_PING, "frame {i}");
        assert_between(&format!("ping {i}"), gap, ms(80), ms(200));
        c.send(OP_PONG, &f.payload);
    }
    srv.stop();
}

#[test]
fn idle_timeout_closes_with_1001() {
    let _t = timing();
    let idle = ms(150);
    let (srv, log) = serve(ServerConfig {
        idle_timeout: Some(idle),
        ping_interval: None,
        ..ServerConfig::default()
    });
    let mut c = WsClient::connect(srv.addr);
    let id = log.opened(0);
    // Input every 50 ms keeps it open past twice the idle timeout.
    for i in 0..6u8 {
        std::thread::sleep(ms(50));
        c.send(OP_BINARY, &[i]);
        assert_eq!(c.recv().payload, [i]);
    }
    // Then silence: a close 1001 "idle timeout" one idle timeout after the
    // last input.
    let quiet = Instant::now();
    let mut want = close_bytes(1001);
    want.extend_from_slice(b"idle timeout");
    c.expect_close(&want);
    assert_between("idle close", quiet.elapsed(), ms(130), ms(300));
    assert_eq!(log.close_of(id), (1001, "idle timeout".to_string()));
    // A normal close handshake follows.
    c.send(OP_CLOSE, &close_bytes(1001));
    c.expect_eof();
    srv.stop();
}

#[test]
fn close_timeout_drops_a_peer_that_never_answers() {
    let _t = timing();
    let timeout = ms(150);
    let (srv, log) = serve(ServerConfig {
        close_timeout: timeout,
        ..ServerConfig::default()
    });
    let mut c = WsClient::connect(srv.addr);
    let id = log.opened(0);
    c.send(OP_TEXT, b"close-me");
    c.expect_close(&[&close_bytes(4001)[..], b"bye"].concat());
    let sent = Instant::now();
    // We never answer: TCP ends at the close timeout.
    c.expect_eof();
    assert_between("EOF", sent.elapsed(), ms(130), ms(300));
    assert_eq!(log.close_of(id).0, 1006);
    srv.stop();
}

#[test]
fn close_timeout_ends_tcp_the_peer_keeps_open() {
    // After the close handshake the server closes its side of TCP at once
    // (RFC 6455 §7.1.1) and waits for the peer's FIN at most close_timeout.
    let _t = timing();
    let timeout = ms(200);
    let (srv, log) = serve(ServerConfig {
        close_timeout: timeout,
        ..ServerConfig::default()
    });
    let mut c = WsClient::connect(srv.addr);
    let id = log.opened(0);
    let start = Instant::now();
    close_normally(&mut c);
    assert_eq!(log.close_of(id), (1000, String::new()));
    // The client keeps its socket open: the server still holds it (the
    // scrape's own connection is the other one).
    let text = scrape(srv.addr);
    assert!(start.elapsed() < timeout, "too slow to observe");
    assert_metric(&text, "wsreactor_connections_held", 2);
    assert_metric(&text, "wsreactor_connections_open", 0);
    std::thread::sleep(timeout + ms(100) - start.elapsed().min(timeout));
    assert_metric(&scrape(srv.addr), "wsreactor_connections_held", 1);
    drop(c);
    srv.stop();
}

#[test]

fn zero_timeouts_disable_them() {
    let _t = timing();
    let (srv, log) = serve(ServerConfig {
        handshake_timeout: Duration::ZERO,
        close_timeout: Duration::ZERO,
        ping_interval: Some(ms(50)),
        pong_timeout: Duration::ZERO,
        ..ServerConfig::default()
    });
    // No handshake deadline: a request written in two parts is answered.
    let mut s = tcp(srv.addr);
    let request = upgrade_request("/chat");
    s.write_all(&request[..10]).unwrap();
    std::thread::sleep(ms(30));
    s.write_all(&request[10..]).unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        lossy(&read_http_head(&mut s, &mut buf)),
        lossy(&expected_101())
    );
    let mut c = WsClient::from_parts(s, buf);
    let id = log.opened(0);
    // No pong deadline: unanswered pings do not fail the connection.
    assert_eq!(c.recv().opcode, OP_PING);
    std::thread::sleep(ms(150));
    // No close deadline: a close answered late still completes.
    c.send(OP_TEXT, b"close-me");
    c.expect_close(&[&close_bytes(4001)[..], b"bye"].concat());
    std::thread::sleep(ms(30));
    c.send(OP_CLOSE, &close_bytes(4001));
    c.expect_eof();
    assert_eq!(log.close_of(id), (4001, String::new()));
    srv.stop();
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

#[test]
fn max_connections_answers_503_and_counts_refusals() {
    let (srv, log) = serve(ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    });
    let a = WsClient::connect(srv.addr);
    let a_id = log.opened(0);
    let mut b = WsClient::connect(srv.addr);
    let mut third = tcp(srv.addr);
    let answer = lossy(&read_to_eof(&mut third));
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
            && answer.ends_with("\r\n\r\ntoo many connections\n"),
        "{answer:?}"
    );
    // Room again once one leaves; /metrics takes the free slot.
    drop(a);
    assert_eq!(log.close_of(a_id).0, 1006);
    let text = scrape(srv.addr);
    assert_metric(&text, "wsreactor_refused_total", 1);
    assert_metric(&text, "wsreactor_accepted_total", 4);
    assert_metric(&text, "wsreactor_connections_open", 1);
    b.send(OP_TEXT, b"b");
    assert_eq!(b.recv().payload, b"b");
    srv.stop();
}

#[test]

fn max_connections_503_reaches_a_client_that_sent_its_request() {
    // A real client writes its upgrade request right after connecting; the
    // refused socket must still deliver the 503 (not a reset) to it.
    let (srv, log) = serve(ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    });
    let a = WsClient::connect(srv.addr);
    let a_id = log.opened(0);
    for i in 0..50 {
        let mut s = tcp(srv.addr);
        s.write_all(&upgrade_request("/chat")).unwrap();
        let mut answer = Vec::new();
        if let Err(e) = s.read_to_end(&mut answer) {
            panic!("attempt {i}: {e} after {:?}", lossy(&answer));
        }
        assert!(
            answer.starts_with(b"HTTP/1.1 503 Service Unavailable\r\n"),
            "attempt {i}: {:?}",
            lossy(&answer)
        );
    }
    drop(a);
    log.close_of(a_id);
    assert_metric(&scrape(srv.addr), "wsreactor_refused_total", 50);
    srv.stop();
}

#[test]
fn frame_message_and_fragment_limits_are_exact() {
    let (srv, log) = serve(ServerConfig {
        protocol: Config {
            max_frame_size: 1024,
            max_message_size: 1500,
            max_fragments: 4,
            ..Config::default()
        },
        ..ServerConfig::default()
    });
    // Exactly at each limit: accepted and echoed as one frame.
    let mut c = WsClient::connect(srv.addr);
    c.send(OP_BINARY, &binary(1024));
    assert_eq!(c.recv().payload, binary(1024));
    let msg = binary(1500);
    c.send_frame(false, OP_BINARY, &msg[..1024]);
    c.send_frame(true, OP_CONT, &msg[1024..]);
    assert_eq!(c.recv().payload, msg);
    c.send_frame(false, OP_TEXT, b"a");
    c.send_frame(false, OP_CONT, b"b");
    c.send_frame(false, OP_CONT, b"c");
    c.send_frame(true, OP_CONT, b"d");
    assert_eq!(c.recv().payload, b"abcd");

    // One past each: refused from the frame header, before its payload.
    let fail = |n: usize, bytes: Vec<u8>, code: u16, reason: &str| {
        let mut c = WsClient::connect(srv.addr);
        let id = log.opened(n);
        c.send_raw(&bytes);
        c.expect_close(&close_bytes(code));
        c.expect_eof();
        assert_eq!(log.close_of(id), (code, reason.to_string()));
    };
    fail(
        1,
        header(true, 0, OP_BINARY, Some(RFC_MASK), 1025),
        1009,
        "frame exceeds max_frame_size",
    );
    let mut over = frame(false, 0, OP_BINARY, Some(RFC_MASK), &binary(1024));
    over.extend(header(true, 0, OP_CONT, Some(RFC_MASK), 477));
    fail(2, over, 1009, "message exceeds max_message_size");
    let five: Vec<u8> = (0..5)
        .flat_map(|i| {
            let op = if i == 0 { OP_TEXT } else { OP_CONT };
            frame(i == 4, 0, op, Some(RFC_MASK), b"f")
        })
        .collect();
    fail(3, five, 1008, "message exceeds max_fragments");

    let text = scrape(srv.addr);
    assert_metric(&text, "wsreactor_close_codes_sent_total{code=\"1009\"}", 2);
    assert_metric(&text, "wsreactor_close_codes_sent_total{code=\"1008\"}", 1);
    assert_metric(&text, "wsreactor_messages_in_total", 3);
    srv.stop();
}

// ---------------------------------------------------------------------------
// Origin, auth and subprotocols at the handshake
// ---------------------------------------------------------------------------

#[test]
fn origin_allow_list() {
    let (srv, log) = serve(ServerConfig {
        allowed_origins: Some(vec!["https://good.example".to_string()]),
        ..ServerConfig::default()
    });
    let a = srv.addr;
    expect_101(
        a,
        &upgrade_with("/", &["Origin: https://good.example"]),
        None,
    );
    // Exact match, ASCII case-insensitive.
    expect_101(
        a,
        &upgrade_with("/", &["Origin: HTTPS://Good.Example"]),
        None,
    );
    // No Origin: not a browser, accepted.
    expect_101(a, &upgrade_with("/", &[]), None);
    for evil in [
        "https://evil.example",
        "https://good.example.evil.example",
        "http://good.example",
        "null",
    ] {
        assert_eq!(
            http(a, &upgrade_with("/", &[&format!("Origin: {evil}")])),
            bare_response("403 Forbidden", "origin not allowed\n"),
            "{evil}"
        );
    }
    let text = scrape(a);
    assert_metric(
        &text,
        "wsreactor_handshakes_rejected_total{reason=\"origin\"}",
        4,
    );
    assert_metric(&text, "wsreactor_connections_total", 3);
    assert_eq!(log.closes().len(), 3, "{:?}", log.snapshot());
    srv.stop();
}

#[test]
fn bearer_token_checked_by_the_handshake_hook() {
    let (srv, log) = serve(ServerConfig::default());
    let a = srv.addr;
    let refused = bare_response("401 Unauthorized", &format!("{AUTH_REASON}\n"));
    assert_eq!(http(a, &upgrade_with("/auth", &[])), refused);
    assert_eq!(
        http(a, &upgrade_with("/auth", &["Authorization: Bearer wrong"])),
        refused
    );
    assert_eq!(
        http(
            a,
            &upgrade_with("/auth", &["Authorization: Basic dDBrZW4="])
        ),
        refused
    );
    assert_eq!(log.snapshot(), [], "a refused handshake opened");
    let mut c = expect_101(
        a,
        &upgrade_with("/auth", &["Authorization: Bearer t0ken"]),
        None,
    );
    close_normally(&mut c);
    let text = scrape(a);
    assert_metric(
        &text,
        "wsreactor_handshakes_rejected_total{reason=\"handler\"}",
        3,
    );
    assert_metric(&text, "wsreactor_connections_total", 1);
    srv.stop();
}

#[test]
fn subprotocol_chosen_by_the_handler() {
    let (srv, log) = serve(ServerConfig::default());
    let a = srv.addr;
    // Offered "a, b": the handler picks "b", echoed in the 101.
    expect_101(
        a,
        &upgrade_with("/proto", &["Sec-WebSocket-Protocol: a, b"]),
        Some("b"),
    );
    // Offered over two header lines.
    expect_101(
        a,
        &upgrade_with(
            "/proto",
            &["Sec-WebSocket-Protocol: a", "Sec-WebSocket-Protocol: b"],
        ),
        Some("b"),
    );
    // "b" not offered: the handler selects none, and no header is sent.
    expect_101(
        a,
        &upgrade_with("/proto", &["Sec-WebSocket-Protocol: a"]),
        None,
    );
    expect_101(a, &upgrade_with("/proto", &[]), None);
    // A handler selecting a protocol the client did not offer is a server
    // error (RFC 6455 §4.2.2), not a 101 the client must fail.
    let internal = bare_response("500 Internal Server Error", "internal error\n");
    assert_eq!(
        http(
            a,
            &upgrade_with("/wrong-proto", &["Sec-WebSocket-Protocol: a, b"])
        ),
        internal
    );
    assert_eq!(http(a, &upgrade_with("/wrong-proto", &[])), internal);
    let text = scrape(a);
    assert_metric(
        &text,
        "wsreactor_handshakes_rejected_total{reason=\"handler_error\"}",
        2,
    );
    assert_metric(&text, "wsreactor_connections_total", 4);
    assert_eq!(
        log.snapshot()
            .iter()
            .filter(|s| matches!(s, Seen::Open(_)))
            .count(),
        4
    );
    srv.stop();
}

// ---------------------------------------------------------------------------
// Plain HTTP: /healthz, /metrics, others
// ---------------------------------------------------------------------------

#[test]
fn metrics_count_exactly() {
    let (srv, log) = serve(ServerConfig::default());
    let a = srv.addr;
    let mut c = WsClient::connect(a);
    let id = log.opened(0);
    const N: u64 = 7;
    let mut bytes_in = 0;
    let mut payload_bytes = 0;
    for i in 0..N {
        let p = binary(100 * i as usize);
        let f = c.frame(true, OP_BINARY, &p);
        c.send_raw(&f);
        assert_eq!(c.recv().payload, p);
        payload_bytes += p.len() as u64;
        // Payload only, as for bytes_out.
        bytes_in += p.len();
        assert!(f.len() > p.len());
    }
    let text = scrape(a);
    // Payload of the messages only: not the upgrade request, the framing
    // or this scrape's request.
    assert_metric(&text, "wsreactor_bytes_in_total", bytes_in as u64);
    assert_metric(&text, "wsreactor_messages_in_total", N);
    assert_metric(&text, "wsreactor_messages_out_total", N);
    assert_metric(&text, "wsreactor_bytes_out_total", payload_bytes);
    assert_metric(&text, "wsreactor_connections_open", 1);
    assert_metric(&text, "wsreactor_connections_total", 1);
    // This scrape's own connection is held too.
    assert_metric(&text, "wsreactor_connections_held", 2);
    assert_metric(&text, "wsreactor_queued_bytes", 0);
    assert_metric(&text, "wsreactor_refused_total", 0);
    assert!(metric(&text, "wsreactor_loop_iterations_total").unwrap() > 0);
    // The conventional process metrics, for stock dashboards.
    #[cfg(target_os = "linux")]
    for name in [
        "process_open_fds",
        "process_max_fds",
        "process_resident_memory_bytes",
    ] {
        assert!(metric(&text, name).unwrap() > 0, "{name} in:\n{text}");
    }
    for name in ["connections_open", "queued_bytes"] {
        assert!(text.contains(&format!("# TYPE wsreactor_{name} gauge\n")));
    }
    assert!(text.contains("# TYPE wsreactor_messages_in_total counter\n"));

    // Bad requests, by reason.
    let old_version = upgrade_with("/", &["Sec-WebSocket-Version: 8"]);
    assert!(http(a, &old_version).starts_with("HTTP/1.1 426 "));
    let no_key = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert!(http(a, no_key).starts_with("HTTP/1.1 400 "));
    assert!(http(a, no_key).starts_with("HTTP/1.1 400 "));

    // A close with 1000, echoed.
    close_normally(&mut c);
    assert_eq!(log.close_of(id), (1000, String::new()));
    let text = scrape(a);
    assert_metric(
        &text,
        "wsreactor_handshakes_rejected_total{reason=\"bad_ws_version\"}",
        1,
    );
    assert_metric(
        &text,
        "wsreactor_handshakes_rejected_total{reason=\"bad_key\"}",
        2,
    );
    assert_metric(
        &text,
        "wsreactor_close_codes_received_total{code=\"1000\"}",
        1,
    );
    assert_metric(&text, "wsreactor_close_codes_sent_total{code=\"1000\"}", 1);
    assert_metric(&text, "wsreactor_connections_open", 0);
    assert_metric(&text, "wsreactor_messages_in_total", N);
    // Plain HTTP requests are not WebSocket connections.
    assert_metric(&text, "wsreactor_connections_total", 1);
    srv.stop();
}

#[test]
fn plain_http_answers() {
    let (srv, log) = serve(ServerConfig {
        metrics_path: Some("/stats".to_string()),
        ..ServerConfig::default()
    });
    let a = srv.addr;
    assert_eq!(
        get(a, "/healthz"),
        "HTTP/1.1 200 OK\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Connection: close\r\n\
         Content-Length: 3\r\n\
         \r\n\
         ok\n"
    );
    assert!(get(a, "/stats").starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(get(a, "/stats").contains("\nwsreactor_connections_open 0\n"));
    // By path, whatever the query.
    assert_eq!(get(a, "/healthz?probe=1"), get(a, "/healthz"));
    let stats = get(a, "/stats?x=1");
    assert!(stats.starts_with("HTTP/1.1 200 OK\r\n"), "{stats}");
    assert!(
        stats.contains("\nwsreactor_connections_open 0\n"),
        "{stats}"
    );
    // HEAD: GET's header block, Content-Length included, and no body.
    let head = http(a, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(head, get(a, "/healthz").strip_suffix("ok\n").unwrap());
    let head = http(a, b"HEAD /stats?x HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let length: usize = head
        .split("\r\nContent-Length: ")
        .nth(1)
        .and_then(|rest| rest.split("\r\n").next()?.parse().ok())
        .expect("a Content-Length");
    assert!(length > 100, "{head}");
    assert!(head.ends_with("\r\n\r\n"), "a body after HEAD: {head}");
    // Other methods on those paths: 405 naming the allowed ones.
    for request in [
        "POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "DELETE /healthz?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let answer = http(a, request.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")
                && answer.contains("\r\nAllow: GET, HEAD\r\n"),
            "{request:?}: {answer:?}"
        );
    }
    // Every other path, whatever the method, is told to upgrade: there is
    // no 404.
    for request in [
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /healthz/x HTTP/1.1\r\nHost: x\r\n\r\n",
        "HEAD /statsx HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ] {
        let answer = http(a, request.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{request:?}: {answer:?}"
        );
    }
    // HTTP/1.0 needs no Host; an HTTP/1.1 request without one breaks HTTP.
    assert!(http(a, b"GET /healthz HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(http(a, b"GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert_eq!(log.snapshot(), []);
    srv.stop();

    // Metrics can be turned off.
    let (srv, _log) = serve(ServerConfig {
        metrics_path: None,
        ..ServerConfig::default()
    });
    assert!(get(srv.addr, "/metrics").starts_with("HTTP/1.1 426 "));
    srv.stop();
}

// ---------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------

fn shutdown_close() -> Vec<u8> {
    [&close_bytes(1001)[..], b"server shutting down"].concat()
}

#[test]
fn graceful_shutdown_closes_everyone_with_1001() {
    let _t = timing();
    let (mut srv, log) = serve(ServerConfig {
        shutdown_timeout: Duration::from_secs(3),
        ..ServerConfig::default()
    });
    let mut a = WsClient::connect(srv.addr);
    let a_id = log.opened(0);
    let mut b = WsClient::connect(srv.addr);
    let b_id = log.opened(1);
    // A connection still in its handshake is just dropped.
    let mut half = tcp(srv.addr);
    half.write_all(b"GET /chat HTTP/1.1\r\n").unwrap();
    std::thread::sleep(ms(20));

    let start = Instant::now();
    srv.remote.shutdown();
    for c in [&mut a, &mut b] {
        c.expect_close(&shutdown_close());
        c.send(OP_CLOSE, &close_bytes(1001));
        c.expect_eof();
    }
    drop((a, b));
    assert!(read_to_eof(&mut half).is_empty());
    let handler = srv.join();
    assert!(
        start.elapsed() < ms(500),
        "run returned after {:?}",
        start.elapsed()
    );
    // on_close once per connection, with the code and reason we sent.
    let reason = "server shutting down".to_string();
    assert_eq!(
        handler.log.closes(),
        [(a_id, 1001, reason.clone()), (b_id, 1001, reason)]
    );
    // The listener is gone.
    let refused = TcpStream::connect(srv.addr).map(|_| ()).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[test]

fn graceful_shutdown_gives_up_at_shutdown_timeout() {
    let _t = timing();
    let timeout = ms(300);
    let (mut srv, log) = serve(ServerConfig {
        shutdown_timeout: timeout,
        close_timeout: Duration::from_secs(3),
        ..ServerConfig::default()
    });
    let mut good = WsClient::connect(srv.addr);
    let good_id = log.opened(0);
    let mut deaf = WsClient::connect(srv.addr);
    let deaf_id = log.opened(1);
    let start = Instant::now();
    srv.remote.shutdown();
    good.expect_close(&shutdown_close());
    good.send(OP_CLOSE, &close_bytes(1001));
    good.expect_eof();
    drop(good);
    // `deaf` never answers: run() returns at the shutdown timeout.
    deaf.expect_close(&shutdown_close());
    let handler = srv.join();
    assert_between(
        "run() returning",
        start.elapsed(),
        timeout,
        timeout + ms(200),
    );
    let reason = "server shutting down".to_string();
    assert_eq!(
        handler.log.closes(),
        [(good_id, 1001, reason.clone()), (deaf_id, 1001, reason)]
    );
    deaf.expect_eof();
}

// ---------------------------------------------------------------------------
// Queued output: a client that never reads
// ---------------------------------------------------------------------------

const QUEUE_LIMIT: usize = 1 << 20;

/// Connect, ask for a flood and return the client, its id and the sends.
fn flood(srv: &Srv, log: &Log, n: usize) -> (WsClient, ConnId, Sends) {
    let mut c = WsClient::connect(srv.addr);
    let id = log.opened(n);
    c.send(OP_TEXT, b"flood");
    let sends = log.flood(id);
    // Written while the kernel takes it, then queued, then one refusal.
    let refused = sends.len() - 1;
    assert_eq!(sends[refused].0, Err(SendError::Overflow), "{sends:?}");
    let first_queued = sends
        .iter()
        .position(|(r, _)| *r == Ok(Sent::Queued))
        .expect("some sends queued");
    assert!(
        sends[..first_queued]
            .iter()
            .all(|(r, _)| *r == Ok(Sent::Written))
            && sends[first_queued..refused]
                .iter()
                .all(|(r, _)| *r == Ok(Sent::Queued)),
        "{sends:?}"
    );
    // The queue never passed the limit, and the refused message would have.
    assert!(
        sends.iter().all(|(_, q)| *q <= QUEUE_LIMIT + 64),
        "{sends:?}"
    );
    let before = sends[refused - 1].1;
    assert!(before + FLOOD_CHUNK + 14 > QUEUE_LIMIT, "{sends:?}");
    eprintln!(
        "flood: {first_queued} written, {} queued ({before} bytes), then refused",
        refused - first_queued
    );
    (c, id, sends)
}

/// Read the `n` flood messages, in order and intact.
fn read_flood(c: &mut WsClient, n: usize) {
    for i in 0..n {
        let f = c.recv();
        assert_eq!((f.opcode, f.payload.len()), (OP_BINARY, FLOOD_CHUNK), "{i}");
        assert!(f.payload == flood_payload(i), "message {i} differs");
    }
}

#[test]
fn never_reading_client_overflow_closes_1008() {
    let (srv, log) = serve(ServerConfig {
        max_queued_output: QUEUE_LIMIT,
        ..ServerConfig::default()
    });
    let (mut c, id, sends) = flood(&srv, &log, 0);
    // Bounded: what is queued now is under the limit.
    let text = scrape(srv.addr);
    assert_metric(&text, "wsreactor_overflows_total", 1);
    let queued = metric(&text, "wsreactor_queued_bytes").unwrap();
    assert!(queued as usize <= QUEUE_LIMIT + 64, "{queued}");
    assert_metric(&text, "wsreactor_close_codes_sent_total{code=\"1008\"}", 1);
    // Once the client reads: every accepted message, then the close.
    read_flood(&mut c, sends.len() - 1);
    c.expect_close(&[&close_bytes(1008)[..], b"send queue overflow"].concat());
    c.send(OP_CLOSE, &close_bytes(1008));
    c.expect_eof();
    assert_eq!(log.close_of(id).0, 1008);
    srv.stop();
}

#[test]
fn never_reading_client_overflow_refuse_keeps_the_connection() {
    let (srv, log) = serve(ServerConfig {
        max_queued_output: QUEUE_LIMIT,
        on_overflow: OverflowPolicy::Refuse,
        ..ServerConfig::default()
    });
    let (mut c, id, sends) = flood(&srv, &log, 0);
    read_flood(&mut c, sends.len() - 1);
    // Still open and drained: sends are written again.
    c.send(OP_TEXT, b"after");
    assert_eq!(c.recv().payload, b"after");
    assert_metric(&scrape(srv.addr), "wsreactor_overflows_total", 1);
    assert_metric(&scrape(srv.addr), "wsreactor_queued_bytes", 0);
    close_normally(&mut c);
    assert_eq!(log.close_of(id), (1000, String::new()));
    srv.stop();
}

#[test]
fn never_reading_client_overflow_drop_ends_tcp() {
    let (srv, log) = serve(ServerConfig {
        max_queued_output: QUEUE_LIMIT,
        on_overflow: OverflowPolicy::Drop,
        ..ServerConfig::default()
    });
    let (mut c, id, _sends) = flood(&srv, &log, 0);
    assert_eq!(log.close_of(id).0, 1006);
    // What the kernel already had may still arrive; no close frame, then EOF
    // (or a reset).
    let mut rest = Vec::new();
    let _ = c.stream.read_to_end(&mut rest);
    assert!(rest.len() <= 64 << 20);
    assert_metric(&scrape(srv.addr), "wsreactor_overflows_total", 1);
    assert_metric(&scrape(srv.addr), "wsreactor_connections_held", 1);
    srv.stop();
}

// ---------------------------------------------------------------------------
// Known attack classes
// ---------------------------------------------------------------------------

/// Time between two bytes of the header dribble.
const DRIBBLE_PACE: Duration = Duration::from_micros(25);

/// tungstenite CVE-2023-43669: a header block dribbled a byte at a time
/// must be cut at the header cap (431) or the handshake timeout, with the
/// reactor's CPU time bounded and the loop serving others meanwhile.
#[test]
fn attack_header_dribble_of_1_mib() {
    let _h = heavy();
    let timeout = Duration::from_secs(2);
    let (srv, _log) = serve(ServerConfig {
        handshake_timeout: timeout,
        ..ServerConfig::default()
    });
    let mut good = WsClient::connect(srv.addr);
    let cpu_before = srv.cpu();
    let start = Instant::now();

    let mut header = b"GET /chat HTTP/1.1\r\nHost: x\r\nX-Filler: ".to_vec();
    header.resize(1 << 20, b'a');
    let mut attacker = tcp(srv.addr);
    let mut writer = attacker.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let dribble = {
        let (stop, written) = (stop.clone(), written.clone());
        std::thread::spawn(move || {
            for b in &header {
                if stop.load(Ordering::Relaxed) || writer.write_all(&[*b]).is_err() {
                    break;
                }
                written.fetch_add(1, Ordering::Relaxed);
                // About one byte per server read: the worst case for a
                // parser that rescans the whole block on every read.
                let t = Instant::now();
                while t.elapsed() < DRIBBLE_PACE {
                    std::hint::spin_loop();
                }
            }
        })
    };
    // The loop keeps serving another client; the attacker gets its answer.
    attacker.set_nonblocking(true).unwrap();
    let mut answer = Vec::new();
    let mut answered_at = None;
    let mut worst_echo = Duration::ZERO;
    loop {
        let t = Instant::now();
        good.send(OP_TEXT, b"ping?");
        assert_eq!(good.recv().payload, b"ping?");
        worst_echo = worst_echo.max(t.elapsed());
        let mut buf = [0u8; 4096];
        match attacker.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                answered_at.get_or_insert((start.elapsed(), written.load(Ordering::Relaxed)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("{e}"),
        }
        assert!(start.elapsed() < timeout + ms(1000), "never cut");
        std::thread::sleep(ms(5));
    }
    stop.store(true, Ordering::Relaxed);
    dribble.join().unwrap();
    let cut = start.elapsed();
    let cpu = srv.cpu() - cpu_before;
    let (at, sent) = answered_at.expect("no answer before EOF");
    eprintln!(
        "dribble: 431 after {at:?} and {sent} bytes, EOF after {cut:?}, reactor CPU {cpu:?}, \
         worst echo {worst_echo:?}"
    );
    let answer = lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n")
            && answer.ends_with("\r\n\r\nrequest header block too large\n"),
        "{answer:?}"
    );
    // Cut at the 8 KiB cap, long before 1 MiB or the timeout.
    assert!(sent < 64 * 1024, "{sent} bytes in before the 431");
    assert!(cut < timeout + ms(500), "EOF after {cut:?}");
    assert!(cpu < ms(500), "reactor CPU {cpu:?}");
    assert!(worst_echo < ms(100), "worst echo {worst_echo:?}");
    srv.stop();
}

/// rust-websocket CVE-2022-35922: a declared length is no reason to
/// allocate. 2^62 bytes is refused from the header (1009); a frame at the
/// limit whose payload trickles in holds only what arrived.
#[test]
fn attack_frame_declaring_2_pow_62_bytes() {
    let _h = heavy();
    let (srv, log) = serve(ServerConfig::default());
    let rss_before = vm_rss();
    let mut c = WsClient::connect(srv.addr);
    let id = log.opened(0);
    let mut bytes = header(true, 0, OP_BINARY, Some(RFC_MASK), 1 << 62);
    bytes.extend_from_slice(&[0; 100]);
    c.send_raw(&bytes);
    c.expect_close(&close_bytes(1009));
    c.expect_eof();
    assert_eq!(
        log.close_of(id),
        (1009, "frame exceeds max_frame_size".to_string())
    );
    let largest = log.largest(id);
    eprintln!("2^62 declared: largest allocation {largest}");
    assert!(largest < 64 * 1024, "largest allocation {largest}");

    // The most significant bit set: a protocol error (RFC 6455 §5.2).
    let mut c = WsClient::connect(srv.addr);
    let id = log.opened(1);
    c.send_raw(&header(true, 0, OP_BINARY, Some(RFC_MASK), 1 << 63));
    c.expect_close(&close_bytes(1002));
    c.expect_eof();
    assert_eq!(log.close_of(id).0, 1002);

    // 16 MiB declared (the default limit), 256 KiB sent, then the client
    // vanishes: at most what arrived was held.
    let mut c = WsClient::connect(srv.addr);
    let id = log.opened(2);
    let len = 16 << 20;
    c.send_raw(&header(true, 0, OP_BINARY, Some(RFC_MASK), len));
    c.send_raw(&vec![0x5a; 256 * 1024]);
    std::thread::sleep(ms(50));
    drop(c);
    assert_eq!(log.close_of(id).0, 1006);
    let largest = log.largest(id);
    assert!(largest < 2 << 20, "largest allocation {largest}");
    let grown = vm_rss().saturating_sub(rss_before);
    eprintln!("16 MiB declared, 256 KiB sent: largest allocation {largest}, RSS grew by {grown}");
    assert!(grown < 16 << 20, "RSS grew by {grown} bytes");
    srv.stop();
}

/// Node ws CVE-2026-48779: a message split into 100,000 one-byte fragments
/// is cut at the fragment limit (1008), reading no further than needed.
#[test]
fn attack_100k_one_byte_fragments() {
    let _h = heavy();
    let (srv, log) = serve(ServerConfig {
        protocol: Config {
            max_fragments: 1000,
            ..Config::default()
        },
        close_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    });
    let mut c = WsClient::connect(srv.addr);
    let id = log.opened(0);
    let fragments: Vec<u8> = (0..100_000)
        .flat_map(|i| {
            let op = if i == 0 { OP_TEXT } else { OP_CONT };
            frame(i == 99_999, 0, op, Some(RFC_MASK), b"x")
        })
        .collect();
    let start = Instant::now();
    let mut writer = c.stream.try_clone().unwrap();
    // The server discards what follows the failure until we close.
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&fragments);
    });
    c.expect_close(&close_bytes(1008));
    c.expect_eof();
    assert!(start.elapsed() < ms(1500), "{:?}", start.elapsed());
    assert_eq!(
        log.close_of(id),
        (1008, "message exceeds max_fragments".to_string())
    );
    sender.join().unwrap();
    srv.stop();
}

/// With the default limit (131072) the same 100,000 fragments are one
/// message: assembled once and echoed as one frame.
#[test]
fn attack_100k_one_byte_fragments_under_the_default_limit() {
    let _h = heavy();
    let (srv, _log) = serve(ServerConfig::default());
    let mut c = WsClient::connect(srv.addr);
    let text = utf8_text(100_000).into_bytes();
    let mut bytes = Vec::with_capacity(text.len() * 7);
    for (i, b) in text.iter().enumerate() {
        let op = if i == 0 { OP_TEXT } else { OP_CONT };
        bytes.extend(frame(i == text.len() - 1, 0, op, Some(RFC_MASK), &[*b]));
    }
    let start = Instant::now();
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&bytes).unwrap());
    let f = c.recv();
    eprintln!("100k fragments echoed after {:?}", start.elapsed());
    assert_eq!((f.fin, f.opcode, f.header_len), (true, OP_TEXT, 10));
    assert!(f.payload == text);
    sender.join().unwrap();
    srv.stop();
}

/// Open `n` connections that never finish the handshake (half of them send
/// a partial request, the others nothing); each with the time it connected.
///
/// Every 100 connects a scrape waits for the server to accept them all (the
/// accept queue is FIFO, so the scrape is answered after those): the listen
/// backlog is 128 and a burst that overflows it stalls a connect for the
/// 1 s SYN retransmission.
fn open_half(addr: SocketAddr, n: usize) -> Vec<(TcpStream, Instant)> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        if i % 100 == 99 {
            scrape(addr);
        }
        let at = Instant::now();
        let mut s = TcpStream::connect(addr).expect("connect");
        if i % 2 == 0 {
            s.write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\n").unwrap();
        }
        conns.push((s, at));
    }
    conns
}

/// Wait for every connection to end (EOF, or a reset for the ones whose
/// bytes the server did not read); none may end before `timeout` after its
/// connect started, less 20 ms: the reactor reads the clock once per batch
/// of events, and a connection accepted late in a long batch gets a deadline
/// that much early. Returns the latest end, counted from its connect.
fn await_ends(conns: Vec<(TcpStream, Instant)>, timeout: Duration) -> Duration {
    let mut latest = Duration::ZERO;
    for (i, (mut s, at)) in conns.into_iter().enumerate() {
        s.set_read_timeout(Some(timeout + IO_TIMEOUT)).unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("connection {i}: {other:?}"),
        }
        let ended = at.elapsed();
        assert!(
            ended >= timeout - ms(20),
            "connection {i} ended after {ended:?}"
        );
        latest = latest.max(ended);
    }
    latest
}

/// The server side of the half-open tests: after `open` (which opens the
/// `n` connections, in this process or another, and returns once they are
/// all accepted), all are held; then all are dropped at the timeout and a
/// new client is served.
fn half_open_connections(n: usize, timeout: Duration, open: impl FnOnce(SocketAddr) -> Duration) {
    let (srv, log) = serve(ServerConfig {
        handshake_timeout: timeout,
        ..ServerConfig::default()
    });
    let start = Instant::now();
    let latest = open(srv.addr);
    eprintln!(
        "{n} half-open connections: the last dropped {latest:?} after its connect, \
         all gone after {:?}",
        start.elapsed()
    );
    assert!(
        latest < timeout + ms(1000),
        "latest dropped after {latest:?}"
    );
    // Only the scrape's own connection is left.
    assert_metric(&scrape(srv.addr), "wsreactor_connections_held", 1);
    let mut c = WsClient::connect(srv.addr);
    c.send(OP_TEXT, b"served");
    assert_eq!(c.recv().payload, b"served");
    assert_eq!(log.closes(), []);
    srv.stop();
}

/// The soft limit on open files of this process.
fn fd_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("Max open files")
}

#[test]
fn attack_2000_connections_never_finish_the_handshake() {
    let _h = heavy();
    // Both ends are in this process; leave room for the rest.
    let n = 2000.min(fd_limit().saturating_sub(256) / 2);
    if n < 2000 {
        eprintln!("only {n} connections: the file limit is {}", fd_limit());
    }
    let timeout = ms(1000);
    half_open_connections(n, timeout, |addr| {
        let start = Instant::now();
        let conns = open_half(addr, n);
        let connected = start.elapsed();
        let text = scrape(addr);
        assert!(connected < timeout, "{n} connects took {connected:?}");
        assert_metric(&text, "wsreactor_connections_held", n as u64 + 1);
        await_ends(conns, timeout)
    });
}

/// The same with 10,000: their file descriptors and the server's would not
/// fit in this process's limit (20,000 here), so the clients live in a
/// child process, this test binary running [`soak_child_half_open`].
#[test]
#[ignore = "soak: 10,000 connections in a child process, about 3 s"]
fn soak_10000_connections_never_finish_the_handshake() {
    let _h = heavy();
    let n = 10_000;
    let timeout = Duration::from_secs(2);
    half_open_connections(n, timeout, |addr| {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "soak_child_half_open",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SOAK_ADDR", addr.to_string())
            .env("SOAK_N", n.to_string())
            .env("SOAK_TIMEOUT_MS", timeout.as_millis().to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the client process");
        let mut lines = io::BufRead::lines(io::BufReader::new(child.stdout.take().unwrap()));
        let mut latest = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            // libtest may print "test soak_child_half_open ... " first.
            let Some(at) = line.find("SOAK ") else {
                continue;
            };
            let line = &line[at..];
            if line.starts_with("SOAK connected") {
                // All accepted (the child's last scrape came after them).
                let text = scrape(addr);
                assert_metric(&text, "wsreactor_connections_held", n as u64 + 1);
                eprintln!("{line}");
            } else if let Some(ms) = line.strip_prefix("SOAK latest_ms ") {
                latest = Some(Duration::from_millis(ms.parse().unwrap()));
            }
        }
        assert!(child.wait().unwrap().success(), "the client process failed");
        latest.expect("the client process reported no result")
    });
}

/// Client side of [`soak_10000_connections_never_finish_the_handshake`];
/// does nothing unless run by it.
#[test]
#[ignore = "helper process of the soak test"]
fn soak_child_half_open() {
    let Ok(addr) = std::env::var("SOAK_ADDR") else {
        return;
    };
    let addr: SocketAddr = addr.parse().unwrap();
    let n: usize = std::env::var("SOAK_N").unwrap().parse().unwrap();
    let timeout = ms(std::env::var("SOAK_TIMEOUT_MS").unwrap().parse().unwrap());
    let start = Instant::now();
    let conns = open_half(addr, n);
    scrape(addr);
    let connected = start.elapsed();
    assert!(connected < timeout, "{n} connects took {connected:?}");
    println!("SOAK connected {n} in {connected:?}");
    let latest = await_ends(conns, timeout);
    println!("SOAK latest_ms {}", latest.as_millis());
}
