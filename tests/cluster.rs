//! Several reactors as one server, over loopback: connections land on every
//! reactor and all work, a room whose members sit on different reactors sees
//! one order, the connection limit is global, `/metrics` sums the reactors,
//! a graceful shutdown closes everyone everywhere, and a handler's panic
//! takes the whole server down cleanly.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use wsreactor::{Accept, Cluster, Ctx, Handler, Message, Remote, ServerConfig};

/// Greets with its reactor's number; text commands; binary to the room.
#[derive(Debug)]
struct Node {
    index: usize,
}

impl Handler for Node {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        assert_eq!(ctx.control().reactor(), self.index);
        let _ = ctx.send_text(&format!("r{}", self.index));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        match msg {
            Message::Binary(_) => {
                ctx.publish("room", msg);
            }
            Message::Text("join") => {
                ctx.subscribe("room").unwrap();
                ctx.send_text("joined").unwrap();
            }
            Message::Text("boom") => panic!("boom on reactor {}", self.index),
            // Longer than the 10 s after which /healthz reports a reactor.
            Message::Text("stall") => std::thread::sleep(Duration::from_millis(12_500)),
            Message::Text(t) => {
                let reply = format!("r{}:{t}", self.index);
                ctx.send_text(&reply).unwrap();
            }
        }
    }
}

struct Running {
    addr: SocketAddr,
    remote: Remote,
    thread: JoinHandle<std::io::Result<Vec<Node>>>,
}

fn start(threads: usize, accept: Accept, config: ServerConfig) -> Running {
    let cluster = Cluster::bind_with("127.0.0.1:0", config, threads, accept, |index| Node {
        index,
    })
    .unwrap();
    assert_eq!(cluster.threads(), threads);
    let addr = cluster.local_addr();
    let remote = cluster.stopper();
    let thread = std::thread::spawn(move || cluster.run());
    Running {
        addr,
        remote,
        thread,
    }
}

/// A client and the reactor that serves it (from its greeting).
fn join(addr: SocketAddr) -> (WsClient, usize) {
    let mut c = WsClient::connect(addr);
    let hello = c.recv();
    let text = String::from_utf8(hello.payload).unwrap();
    let index = text.strip_prefix('r').unwrap().parse().unwrap();
    (c, index)
}

/// Connect until every one of `reactors` serves at least `each` clients.
fn clients_everywhere(addr: SocketAddr, reactors: usize, each: usize) -> Vec<(WsClient, usize)> {
    let mut all = Vec::new();
    for _ in 0..400 {
        let counts = (0..reactors)
            .map(|r| all.iter().filter(|(_, i)| *i == r).count())
            .collect::<Vec<_>>();
        if counts.iter().all(|&n| n >= each) {
            return all;
        }
        let (c, index) = join(addr);
        if counts[index] < each {
            all.push((c, index));
        }
    }
    panic!("connections never reached every reactor");
}

fn text(c: &mut WsClient) -> String {
    let f = c.recv();
    assert_eq!(f.opcode, OP_TEXT);
    String::from_utf8(f.payload).unwrap()
}

#[test]
fn connections_land_on_every_reactor_and_all_work() {
    for accept in [Accept::ReusePort, Accept::Handoff] {
        let server = start(2, accept, ServerConfig::default());
        let mut clients: Vec<(WsClient, usize)> = (0..40).map(|_| join(server.addr)).collect();
        let on0 = clients.iter().filter(|(_, i)| *i == 0).count();
        assert!(0 < on0 && on0 < 40, "{accept:?}: {on0} of 40 on reactor 0");
        if accept == Accept::Handoff {
            assert_eq!(on0, 20, "round robin");
        }
        for (n, (c, index)) in clients.iter_mut().enumerate() {
            c.send(OP_TEXT, format!("hello {n}").as_bytes());
            assert_eq!(text(c), format!("r{index}:hello {n}"));
        }
        server.remote.stop();
        let handlers = server.thread.join().unwrap().unwrap();
        assert_eq!(handlers.iter().map(|h| h.index).collect::<Vec<_>>(), [0, 1]);
    }
}

/// Two publishers on different reactors send at once; every member, on
/// either reactor, must see the same interleaving. (Were each publish
/// delivered at once on its own reactor and later on the other, members
/// of the two reactors would see their own publisher's messages first.)
#[test]
fn a_room_across_reactors_sees_one_order() {
    const EACH: u16 = 400;
    let server = start(2, Accept::ReusePort, ServerConfig::default());
    let mut members = clients_everywhere(server.addr, 2, 3);
    for (c, _) in &mut members {
        c.send(OP_TEXT, b"join");
        assert_eq!(text(c), "joined");
    }
    // One publisher on each reactor (they are members too).
    let p0 = members.iter().position(|(_, i)| *i == 0).unwrap();
    let p1 = members.iter().position(|(_, i)| *i == 1).unwrap();
    let writers: Vec<_> = [(p0, 0u8), (p1, 1u8)]
        .into_iter()
        .map(|(at, tag)| {
            let mut stream = members[at].0.stream.try_clone().unwrap();
            // Frames built up front, so the writes race as hard as they can.
            let mut masker =
                WsClient::from_parts(members[at].0.stream.try_clone().unwrap(), Vec::new());
            let frames: Vec<Vec<u8>> = (0..EACH)
                .map(|seq| {
                    let [hi, lo] = seq.to_be_bytes();
                    masker.frame(true, OP_BINARY, &[tag, hi, lo])
                })
                .collect();
            std::thread::spawn(move || {
                for f in frames {
                    stream.write_all(&f).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let mut orders = Vec::new();
    for (c, index) in &mut members {
        let mut seen = Vec::with_capacity(2 * usize::from(EACH));
        for _ in 0..2 * EACH {
            let f = c.recv();
            assert_eq!(f.opcode, OP_BINARY);
            seen.push((
                f.payload[0],
                u16::from_be_bytes([f.payload[1], f.payload[2]]),
            ));
        }
        // Each publisher's own order holds.
        for tag in [0, 1] {
            let mine: Vec<u16> = seen.iter().filter(|m| m.0 == tag).map(|m| m.1).collect();
            assert_eq!(mine, (0..EACH).collect::<Vec<_>>());
        }
        orders.push((*index, seen));
    }
    let (first_reactor, first) = &orders[0];
    for (index, order) in &orders[1..] {
        let at = first.iter().zip(order).position(|(a, b)| a != b);
        assert!(
            at.is_none(),
            "a member on reactor {index} and one on reactor {first_reactor} differ at message {at:?}"
        );
    }
    server.remote.stop();
    server.thread.join().unwrap().unwrap();
}

/// Bursts (many publishes in one write, read at once and so corked) from
/// a publisher on one reactor reach members on both reactors whole and in
/// order, the publisher's own copies in order too.
#[test]
fn bursts_across_reactors_arrive_in_order() {
    const BURSTS: u16 = 50;
    const EACH: u16 = 16;
    let server = start(2, Accept::Handoff, ServerConfig::default());
    let mut members = clients_everywhere(server.addr, 2, 2);
    for (c, _) in &mut members {
        c.send(OP_TEXT, b"join");
        assert_eq!(text(c), "joined");
    }
    let (mut publisher, on) = members.remove(0);
    for burst in 0..BURSTS {
        let mut bytes = Vec::new();
        for i in 0..EACH {
            let seq = burst * EACH + i;
            bytes.extend(publisher.frame(true, OP_BINARY, &seq.to_be_bytes()));
        }
        bytes.extend(publisher.frame(true, OP_TEXT, b"done"));
        publisher.send_raw(&bytes);
        // Its own copies come back through the topic's owner reactor, which
        // may be the other one: ordered among themselves, not with "done".
        let frames: Vec<WireFrame> = (0..=EACH).map(|_| publisher.recv()).collect();
        let data: Vec<&[u8]> = frames
            .iter()
            .filter(|f| f.opcode == OP_BINARY)
            .map(|f| &f.payload[..])
            .collect();
        let want: Vec<[u8; 2]> = (0..EACH)
            .map(|i| (burst * EACH + i).to_be_bytes())
            .collect();
        assert_eq!(data, want.iter().map(|w| &w[..]).collect::<Vec<_>>());
        assert!(frames
            .iter()
            .any(|f| f.opcode == OP_TEXT && f.payload == format!("r{on}:done").as_bytes()));
    }
    for (c, index) in &mut members {
        for seq in 0..BURSTS * EACH {
            let f = c.recv();
            assert_eq!(f.payload, seq.to_be_bytes(), "a member on reactor {index}");
        }
    }
    server.remote.stop();
    server.thread.join().unwrap().unwrap();
}

#[test]
fn graceful_shutdown_closes_every_connection_on_every_reactor() {
    let server = start(2, Accept::ReusePort, ServerConfig::default());
    let mut clients = clients_everywhere(server.addr, 2, 2);
    server.remote.shutdown();
    for (c, _) in &mut clients {
        c.expect_close(&close_payload(1001, b"server shutting down"));
        c.send(OP_CLOSE, &close_payload(1001, b""));
        c.expect_eof();
    }
    let handlers = server.thread.join().unwrap().unwrap();
    assert_eq!(handlers.len(), 2);
}

#[test]
fn a_panicking_handler_takes_the_server_down_cleanly() {
    let server = start(2, Accept::ReusePort, ServerConfig::default());
    let mut clients = clients_everywhere(server.addr, 2, 2);
    let at = clients.iter().position(|(_, i)| *i == 1).unwrap();
    let (mut victim, _) = clients.remove(at);
    victim.send(OP_TEXT, b"boom");
    // The panicking reactor's connections just end.
    let mut rest = Vec::new();
    let _ = victim.stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no close frame from a failed reactor");
    for (c, index) in &mut clients {
        if *index == 0 {
            // The healthy reactor closes its connections gracefully.
            c.expect_close(&close_payload(1001, b"server shutting down"));
            c.send(OP_CLOSE, &close_payload(1001, b""));
            c.expect_eof();
        } else {
            let mut rest = Vec::new();
            let _ = c.stream.read_to_end(&mut rest);
            assert!(rest.is_empty());
        }
    }
    let err = server.thread.join().unwrap().unwrap_err();
    let why = err.to_string();
    assert!(why.contains("reactor 1"), "{why}");
    assert!(why.contains("boom on reactor 1"), "{why}");
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = tcp(addr);
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    lossy(&read_to_eof(&mut s))
}

fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing:\n{body}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_sum_every_reactor_and_health_covers_them() {
    let server = start(2, Accept::Handoff, ServerConfig::default());
    let mut clients: Vec<_> = (0..6).map(|_| join(server.addr)).collect();
    for (c, _) in &mut clients {
        for i in 0..5 {
            c.send(OP_TEXT, format!("m{i}").as_bytes());
            text(c);
        }
    }
    let body = http_get(server.addr, "/metrics");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert_eq!(metric(&body, "wsreactor_messages_in_total"), 30);
    assert_eq!(metric(&body, "wsreactor_connections_open"), 6);
    for r in 0..2 {
        let name = format!("wsreactor_reactor_messages_in_total{{reactor=\"{r}\"}}");
        assert_eq!(metric(&body, &name), 15, "round robin: 3 clients each");
        let name = format!("wsreactor_reactor_connections_open{{reactor=\"{r}\"}}");
        assert_eq!(metric(&body, &name), 3);
    }
    let health = http_get(server.addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    server.remote.stop();
    server.thread.join().unwrap().unwrap();
}

/// A reactor stuck in a callback makes `/healthz` answer 503 from the
/// others and `/metrics` answer without its part (not hang), and `/healthz`
/// 200 again once it is back.
#[test]
fn health_reports_a_stuck_reactor() {
    let server = start(2, Accept::Handoff, ServerConfig::default());
    let (_first, r0) = join(server.addr);
    let (mut second, r1) = join(server.addr);
    assert_eq!((r0, r1), (0, 1), "handed out round robin");
    second.send(OP_TEXT, b"stall");
    std::thread::sleep(Duration::from_millis(10_300));
    // The next connection is reactor 0's.
    let health = http_get(server.addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.contains("reactor 1 busy for 10 s"), "{health}");
    // The next connection goes to the stuck reactor: leave it waiting.
    let _queued = tcp(server.addr);
    let asked = std::time::Instant::now();
    let body = http_get(server.addr, "/metrics");
    assert!(
        asked.elapsed() < Duration::from_millis(1900),
        "{:?}",
        asked.elapsed()
    );
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("# wsreactor: no answer from reactor 1 within 1s"),
        "{body}"
    );
    assert_eq!(
        metric(&body, "wsreactor_reactor_connections_open{reactor=\"0\"}"),
        1
    );
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..2 {
        let health = http_get(server.addr, "/healthz");
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    }
    server.remote.stop();
    server.thread.join().unwrap().unwrap();
}

#[test]
fn the_connection_limit_is_global() {
    let config = ServerConfig {
        max_connections: 4,
        ..ServerConfig::default()
    };
    let server = start(2, Accept::ReusePort, config);
    let mut held: Vec<_> = (0..4).map(|_| join(server.addr)).collect();
    let mut per: HashMap<usize, usize> = HashMap::new();
    for (_, i) in &held {
        *per.entry(*i).or_default() += 1;
    }
    // Whatever the spread, the fifth is refused by the reactor it reaches.
    for _ in 0..4 {
        let mut s = tcp(server.addr);
        s.write_all(&upgrade_request("/")).unwrap();
        let answer = lossy(&read_to_eof(&mut s));
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    }
    // A slot freed on one reactor serves a connection on any.
    let (mut gone, _) = held.pop().unwrap();
    gone.send(OP_CLOSE, &close_payload(1000, b""));
    gone.expect_close(&close_payload(1000, b""));
    gone.expect_eof();
    // The server holds the socket until our FIN (its lingering close).
    drop(gone);
    std::thread::sleep(Duration::from_millis(100));
    let (mut again, _) = join(server.addr);
    again.send(OP_TEXT, b"x");
    assert!(text(&mut again).ends_with(":x"));
    server.remote.stop();
    server.thread.join().unwrap().unwrap();
    assert!(!per.is_empty());
}

/// Bad input reaching any reactor is refused there, and the server serves
/// on: a malformed request line, a frame with reserved bits, an oversized
/// header block.
#[test]
fn bad_input_on_any_reactor_is_refused_and_the_rest_serve_on() {
    let server = start(2, Accept::Handoff, ServerConfig::default());
    for _ in 0..2 {
        // Handed out alternately: each reactor gets one of each.
        let mut s = tcp(server.addr);
        s.write_all(b"GARBAGE / HTTP/9.9\r\n\r\n").unwrap();
        let answer = lossy(&read_to_eof(&mut s));
        assert!(answer.starts_with("HTTP/1.1 505"), "{answer}");
        let (mut c, _) = join(server.addr);
        c.send_raw(&frame(true, 0b100, OP_TEXT, Some([1, 2, 3, 4]), b"x"));
        let f = c.recv();
        assert_eq!(f.opcode, OP_CLOSE);
        assert_eq!(f.payload[..2], 1002u16.to_be_bytes());
    }
    let mut clients: Vec<_> = (0..4).map(|_| join(server.addr)).collect();
    for (c, index) in &mut clients {
        c.send(OP_TEXT, b"still");
        assert_eq!(text(c), format!("r{index}:still"));
    }
    server.remote.stop();
    server.thread.join().unwrap().unwrap();
}

/// The frame and message limits hold on every reactor, and their closes
/// are counted in the summed metrics.
#[test]
fn limits_hold_on_every_reactor() {
    let config = ServerConfig {
        protocol: wsreactor::proto::Config {
            max_frame_size: 1024,
            max_message_size: 1500,
            ..wsreactor::proto::Config::default()
        },
        ..ServerConfig::default()
    };
    let server = start(2, Accept::Handoff, config);
    for _ in 0..2 {
        // Handed out alternately: each pair lands on both reactors.
        let (mut at, index) = join(server.addr);
        let limit = utf8_text(1024);
        at.send(OP_TEXT, limit.as_bytes());
        assert_eq!(text(&mut at), format!("r{index}:{limit}"));
        let (mut over, _) = join(server.addr);
        over.send_raw(&header(true, 0, OP_BINARY, Some(RFC_MASK), 1025));
        over.expect_close(&close_payload(1009, b""));
    }
    let body = http_get(server.addr, "/metrics");
    assert_eq!(
        metric(&body, "wsreactor_close_codes_sent_total{code=\"1009\"}"),
        2
    );
    server.remote.stop();
    server.thread.join().unwrap().unwrap();
}

#[test]
fn zero_threads_is_an_error() {
    let err = Cluster::bind("127.0.0.1:0", ServerConfig::default(), 0, |index| Node {
        index,
    })
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// A subscriber on another reactor than the publisher gets the publishes
/// through its reactor's inbox, under the same backlog limit as a local
/// one: one that never reads is closed with 1008 once its kernel buffers
/// and its backlog are full, after what it had queued, in order.
#[test]
fn a_slow_subscriber_on_another_reactor_is_closed_at_its_backlog() {
    const SIZE: usize = 8192;
    const MESSAGES: u16 = 2048; // 16 MiB: more than loopback buffers hold
    let config = ServerConfig {
        max_subscriber_backlog: 64 * 1024,
        ..ServerConfig::default()
    };
    let server = start(2, Accept::Handoff, config);
    let mut clients = clients_everywhere(server.addr, 2, 1);
    let at = clients.iter().position(|(_, i)| *i == 1).unwrap();
    let (mut slow, _) = clients.swap_remove(at);
    let (mut publisher, on) = clients.pop().unwrap();
    assert_eq!(on, 0);
    slow.send(OP_TEXT, b"join");
    assert_eq!(text(&mut slow), "joined");
    for seq in 0..MESSAGES {
        let mut payload = vec![0x5a; SIZE];
        payload[..2].copy_from_slice(&seq.to_be_bytes());
        publisher.send(OP_BINARY, &payload);
    }
    // The publishes are through once the publisher's connection answers.
    publisher.send(OP_TEXT, b"ping");
    assert_eq!(text(&mut publisher), "r0:ping");
    let body = http_get(server.addr, "/metrics");
    assert_eq!(
        metric(&body, "wsreactor_slow_subscribers_closed_total"),
        1,
        "{body}"
    );

    slow.stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    while let Ok(n) = slow.stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    let frames = parse_frames(&got);
    let data: Vec<&WireFrame> = frames.iter().filter(|f| f.opcode == OP_BINARY).collect();
    assert!(
        !data.is_empty() && data.len() < usize::from(MESSAGES),
        "{} messages",
        data.len()
    );
    for (i, f) in data.iter().enumerate() {
        assert_eq!(f.payload[..2], (i as u16).to_be_bytes(), "in order, no gap");
    }
    let close = frames
        .iter()
        .find(|f| f.opcode == OP_CLOSE)
        .expect("a close");
    assert_eq!(close.payload[..2], 1008u16.to_be_bytes());
    assert_eq!(&close.payload[2..], b"slow subscriber");
    server.remote.stop();
    server.thread.join().unwrap().unwrap();
}
