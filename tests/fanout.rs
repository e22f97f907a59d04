//! Topics and publish over loopback: delivery to every subscriber in publish
//! order, subscribe/unsubscribe/skip-sender, cleanup on close, and slow
//! subscribers bounded by the backlog policy while the others keep up.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use common::*;
use wsreactor::{ConnId, Control, Ctx, Handler, Message, Reactor, ServerConfig, SlowPolicy};

/// Server side: every connection joins "room" (if `auto_join`); binary
/// messages are published to "room"; text commands act on topics.
#[derive(Default)]
struct Room {
    auto_join: bool,
    /// `slow_subscribers_closed_total` and `deliveries_dropped_total` as
    /// last seen.
    slow_closed: u64,
    dropped: u64,
    closes: Vec<u16>,
}

impl Handler for Room {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        if self.auto_join {
            ctx.subscribe("room").unwrap();
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        match msg {
            Message::Binary(_) => {
                ctx.publish("room", msg);
            }
            Message::Text(t) => {
                let mut words = t.splitn(3, ' ');
                let (cmd, topic, data) = (
                    words.next().unwrap_or(""),
                    words.next().unwrap_or(""),
                    words.next().unwrap_or(""),
                );
                match cmd {
                    "join" => {
                        let fresh = ctx.subscribe(topic).unwrap();
                        ctx.send_text(if fresh { "joined" } else { "already" })
                            .unwrap();
                    }
                    "leave" => {
                        let was = ctx.unsubscribe(topic);
                        ctx.send_text(if was { "left" } else { "not joined" })
                            .unwrap();
                    }
                    "pub" => {
                        let n = ctx.publish(topic, Message::Text(data));
                        ctx.send_text(&format!("published to {n}")).unwrap();
                    }
                    "others" => {
                        let n = ctx.publish_others(topic, Message::Text(data));
                        ctx.send_text(&format!("published to {n}")).unwrap();
                    }
                    "count" => {
                        let n = ctx.control().subscribers(topic);
                        ctx.send_text(&format!("{n} subscribers")).unwrap();
                    }
                    _ => {
                        ctx.close(1003, "unknown command").unwrap();
                    }
                }
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, _reason: &str) {
        self.closes.push(code);
        let m = ctx.control().metrics();
        self.slow_closed = m.slow_subscribers_closed_total;
        self.dropped = m.deliveries_dropped_total;
        // The closed connection is already out of every topic.
        let id = ctx.id();
        assert!(ctx.send_text("too late").is_err());
        assert!(!ctx.control().is_open(id));
    }
}

fn text(c: &mut WsClient) -> String {
    let f = c.recv();
    assert_eq!(f.opcode, OP_TEXT, "{f:?}");
    String::from_utf8(f.payload).unwrap()
}

#[test]
fn subscribe_publish_skip_sender_unsubscribe_and_cleanup() {
    let server = start(ServerConfig::default(), Room::default());
    let mut a = WsClient::connect(server.addr);
    let mut b = WsClient::connect(server.addr);
    let mut c = WsClient::connect(server.addr);
    for x in [&mut a, &mut b, &mut c] {
        x.send(OP_TEXT, b"join news");
        assert_eq!(text(x), "joined");
    }
    a.send(OP_TEXT, b"join news");
    assert_eq!(text(&mut a), "already");

    // publish reaches the sender too, and comes before the sender's answer.
    a.send(OP_TEXT, b"pub news hello");
    assert_eq!(text(&mut a), "hello");
    assert_eq!(text(&mut a), "published to 3");
    assert_eq!(text(&mut b), "hello");
    assert_eq!(text(&mut c), "hello");

    // others: everyone but the sender.
    b.send(OP_TEXT, b"others news from-b");
    assert_eq!(text(&mut b), "published to 2");
    assert_eq!(text(&mut a), "from-b");
    assert_eq!(text(&mut c), "from-b");

    c.send(OP_TEXT, b"leave news");
    assert_eq!(text(&mut c), "left");
    c.send(OP_TEXT, b"leave news");
    assert_eq!(text(&mut c), "not joined");
    a.send(OP_TEXT, b"pub news second");
    assert_eq!(text(&mut a), "second");
    assert_eq!(text(&mut a), "published to 2");
    assert_eq!(text(&mut b), "second");
    c.send(OP_TEXT, b"count news");
    assert_eq!(
        text(&mut c),
        "2 subscribers",
        "c received nothing since leaving"
    );

    // A closed subscriber leaves every topic.
    b.send(OP_CLOSE, &close_payload(1000, b""));
    b.expect_close(&1000u16.to_be_bytes());
    b.expect_eof();
    a.send(OP_TEXT, b"count news");
    assert_eq!(text(&mut a), "1 subscribers");
    a.send(OP_TEXT, b"pub nobody x");
    assert_eq!(text(&mut a), "published to 0");
    // A bad name is refused by the registry (the handler unwraps: the
    // connection then fails, which the test sees as a close or EOF).
    drop(server.stop());
}

/// Many messages published in one burst reach every subscriber once, in
/// order; many frames for one subscriber in one round leave together.
#[test]
fn a_room_of_1000_gets_every_message_once_in_order() {
    raise_fd_limit(4096);
    const MEMBERS: usize = 1000;
    const MESSAGES: u64 = 20;
    let server = start(
        ServerConfig::default(),
        Room {
            auto_join: true,
            ..Room::default()
        },
    );

    struct Members {
        opened: Vec<ConnId>,
        next: HashMap<ConnId, u64>,
        received: u64,
        failures: Vec<String>,
    }
    impl Handler for Members {
        fn on_open(&mut self, ctx: &mut Ctx<'_>) {
            self.opened.push(ctx.id());
            self.next.insert(ctx.id(), 0);
            if self.opened.len() == MEMBERS {
                // Everyone is in: the first member publishes a burst.
                let first = self.opened[0];
                for seq in 0..MESSAGES {
                    let mut payload = seq.to_be_bytes().to_vec();
                    payload.resize(20, 0xab);
                    ctx.control().send_binary(first, &payload).unwrap();
                }
            }
        }
        fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
            let Message::Binary(b) = msg else {
                self.failures.push("a text message".into());
                return;
            };
            let seq = u64::from_be_bytes(b[..8].try_into().unwrap());
            let next = self.next.get_mut(&ctx.id()).unwrap();
            if seq != *next {
                self.failures
                    .push(format!("{:?}: got {seq}, expected {next}", ctx.id()));
            }
            *next = seq + 1;
            self.received += 1;
            if self.received == MEMBERS as u64 * MESSAGES {
                ctx.control().stop();
            }
        }
        fn on_connect_failed(&mut self, ctl: &mut Control<'_>, _id: ConnId, reason: &str) {
            self.failures.push(format!("connect failed: {reason}"));
            ctl.stop();
        }
        fn on_timer(&mut self, ctl: &mut Control<'_>, _token: u64) {
            self.failures.push("timed out".into());
            ctl.stop();
        }
    }
    let mut reactor = Reactor::new(
        ServerConfig::default(),
        Members {
            opened: Vec::new(),
            next: HashMap::new(),
            received: 0,
            failures: Vec::new(),
        },
    )
    .unwrap();
    let url = format!("ws://{}/", server.addr);
    for _ in 0..MEMBERS {
        reactor.connect(&url).unwrap();
    }
    reactor.control().set_timer(Duration::from_secs(30), 0);
    let m = reactor.run().unwrap();
    assert!(
        m.failures.is_empty(),
        "{:?}",
        &m.failures[..m.failures.len().min(5)]
    );
    assert_eq!(m.received, MEMBERS as u64 * MESSAGES);
    assert!(m.next.values().all(|&n| n == MESSAGES));
    server.stop();
}

/// A subscriber that never reads, among subscribers that do, while one of
/// them publishes 32 MiB (in windows of 256 KiB: the next window once every
/// fast subscriber has the last, so they never fall a backlog behind): the
/// slow one is closed (or skipped) at its backlog limit, after the kernel's
/// buffers filled; the others get every message in order.
fn slow_subscriber_run(policy: SlowPolicy) -> (Room, Vec<u8>) {
    const FAST: usize = 4;
    const MESSAGES: u64 = 4096;
    const SIZE: usize = 8192;
    const WINDOW: u64 = 32;
    let config = ServerConfig {
        on_slow_subscriber: policy,
        ..ServerConfig::default()
    };
    let server = start(
        config,
        Room {
            auto_join: true,
            ..Room::default()
        },
    );
    // Never reads until the end.
    let mut slow = WsClient::connect(server.addr);

    struct Fast {
        opened: Vec<ConnId>,
        next: HashMap<ConnId, u64>,
        sent: u64,
        done: usize,
        failures: Vec<String>,
        started: Option<Instant>,
        took: Duration,
    }
    impl Fast {
        fn send_window(&mut self, ctl: &mut Control<'_>) {
            let first = self.opened[0];
            for seq in self.sent..(self.sent + WINDOW).min(MESSAGES) {
                let mut payload = vec![0x5au8; SIZE];
                payload[..8].copy_from_slice(&seq.to_be_bytes());
                ctl.send_binary(first, &payload).unwrap();
            }
            self.sent = (self.sent + WINDOW).min(MESSAGES);
        }
    }
    impl Handler for Fast {
        fn on_open(&mut self, ctx: &mut Ctx<'_>) {
            self.opened.push(ctx.id());
            self.next.insert(ctx.id(), 0);
            if self.opened.len() == FAST {
                self.started = Some(Instant::now());
                self.send_window(ctx.control());
            }
        }
        fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
            let seq = u64::from_be_bytes(msg.as_bytes()[..8].try_into().unwrap());
            let next = self.next.get_mut(&ctx.id()).unwrap();
            if seq != *next {
                self.failures.push(format!("got {seq}, expected {next}"));
            }
            *next = seq + 1;
            if self.sent < MESSAGES && self.next.values().all(|&n| n == self.sent) {
                self.send_window(ctx.control());
            }
            if seq + 1 == MESSAGES {
                self.done += 1;
                if self.done == FAST {
                    self.took = self.started.unwrap().elapsed();
                    ctx.control().stop();
                }
            }
        }
        fn on_timer(&mut self, ctl: &mut Control<'_>, _token: u64) {
            self.failures.push("timed out".into());
            ctl.stop();
        }
    }
    let mut reactor = Reactor::new(
        ServerConfig::default(),
        Fast {
            opened: Vec::new(),
            next: HashMap::new(),
            sent: 0,
            done: 0,
            failures: Vec::new(),
            started: None,
            took: Duration::ZERO,
        },
    )
    .unwrap();
    let url = format!("ws://{}/", server.addr);
    for _ in 0..FAST {
        reactor.connect(&url).unwrap();
    }
    reactor.control().set_timer(Duration::from_secs(30), 0);
    let fast = reactor.run().unwrap();
    assert!(fast.failures.is_empty(), "{:?}", fast.failures);
    assert!(
        fast.took < Duration::from_secs(10),
        "the fast subscribers took {:?}",
        fast.took
    );
    // Now read what the slow one was sent (before the close timeout).
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
    (server.stop(), got)
}

#[test]
fn a_slow_subscriber_is_closed_and_the_others_keep_up() {
    let (room, got) = slow_subscriber_run(SlowPolicy::Close(1008));
    assert_eq!(
        room.slow_closed, 1,
        "exactly the slow subscriber was closed"
    );
    // What it had queued is delivered, in order, then the close.
    let frames = parse_frames(&got);
    let data: Vec<&WireFrame> = frames.iter().filter(|f| f.opcode == OP_BINARY).collect();
    assert!(
        !data.is_empty() && data.len() < 4096,
        "{} messages",
        data.len()
    );
    for (i, f) in data.iter().enumerate() {
        assert_eq!(f.payload[..8], (i as u64).to_be_bytes(), "in order, no gap");
    }
    let close = frames
        .iter()
        .find(|f| f.opcode == OP_CLOSE)
        .expect("a close");
    assert_eq!(close.payload[..2], 1008u16.to_be_bytes());
    assert_eq!(&close.payload[2..], b"slow subscriber");
}

#[test]
fn a_slow_subscriber_can_be_skipped_instead() {
    let (room, got) = slow_subscriber_run(SlowPolicy::Drop);
    assert_eq!(room.slow_closed, 0);
    let frames = parse_frames(&got);
    assert!(frames.iter().all(|f| f.opcode == OP_BINARY), "no close");
    // Gaps, never a duplicate or a step back.
    let seqs: Vec<u64> = frames
        .iter()
        .map(|f| u64::from_be_bytes(f.payload[..8].try_into().unwrap()))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
    assert!(seqs.len() < 4096, "some deliveries were dropped");
    assert!(room.dropped > 0);
}

/// Raise the soft limit on open files (a test with 1,000 connections holds
/// both ends in this process).
fn raise_fd_limit(want: u64) {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
