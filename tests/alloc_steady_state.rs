//! No heap allocation per echoed single-frame message in steady state.
//!
//! A counting global allocator (per thread, so only the reactor's thread is
//! measured) wraps the system allocator for this test binary alone: each
//! integration test is its own process. The real reactor runs an echo
//! handler; a closed-loop client (send, wait for the echo) warms it up, then
//! the reactor thread's allocations are counted across the next 10 000
//! messages, from the end of one `on_message` to the end of another, so
//! everything in between (poll, read, decode, unmask, UTF-8 check, callback,
//! write) is covered.

mod common;

use std::io::{Read, Write};

use common::*;
use wsreactor::{Ctx, Handler, Message, ServerConfig};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const WARMUP: u64 = 1_000;
const MEASURED: u64 = 10_000;

/// Echoes, and reads the reactor thread's allocation counter around the
/// measured window. The text "probe" afterwards allocates on purpose, to show
/// the counter sees this thread.
#[derive(Debug, Default)]
struct CountingEcho {
    messages: u64,
    at_start: u64,
    at_end: u64,
    probe: u64,
}

impl Handler for CountingEcho {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        if msg == Message::Text("probe") {
            let before = thread_allocations();
            std::hint::black_box(Box::new([0u8; 32]));
            self.probe = thread_allocations() - before;
            return;
        }
        self.messages += 1;
        ctx.send(msg).expect("echo");
        if self.messages == WARMUP {
            self.at_start = thread_allocations();
        } else if self.messages == WARMUP + MEASURED {
            self.at_end = thread_allocations();
        }
    }
}

#[test]
fn zero_allocations_per_echoed_message() {
    let server = start(ServerConfig::default(), CountingEcho::default());
    let mut c = WsClient::connect(server.addr);

    // Text and binary of 20 bytes and 1 KiB, each with its own masking key;
    // the echo must come back byte for byte as an unmasked frame.
    let kinds: Vec<(Vec<u8>, Vec<u8>)> = [
        (OP_TEXT, utf8_text(20).into_bytes()),
        (OP_BINARY, binary(20)),
        (OP_TEXT, utf8_text(1024).into_bytes()),
        (OP_BINARY, binary(1024)),
    ]
    .into_iter()
    .map(|(op, payload)| (c.frame(true, op, &payload), server_frame(op, &payload)))
    .collect();
    let mut echo = vec![0u8; 2048];
    for i in 0..WARMUP + MEASURED {
        let (request, expected) = &kinds[i as usize % kinds.len()];
        c.stream.write_all(request).unwrap();
        let got = &mut echo[..expected.len()];
        c.stream.read_exact(got).unwrap();
        assert!(got == expected.as_slice(), "echo {i} differs");
    }
    c.send(OP_TEXT, b"probe");
    c.send(OP_CLOSE, &close_payload(1000, b""));
    c.expect_close(&1000u16.to_be_bytes());
    c.expect_eof();

    let h = server.stop();
    assert_eq!(h.messages, WARMUP + MEASURED);
    assert!(h.probe >= 1, "the counter does not see the reactor thread");
    assert_eq!(
        h.at_end - h.at_start,
        0,
        "allocations on the reactor thread across {MEASURED} echoed messages"
    );
}

/// A closed-loop client on the reactor: sends, waits for the echo, sends
/// the next; counts its own thread's allocations across the measured window.
#[derive(Debug, Default)]
struct CountingClient {
    received: u64,
    at_start: u64,
    at_end: u64,
    closed: Option<u16>,
    remote: Option<wsreactor::Remote>,
}

const CLIENT_PAYLOADS: [&[u8]; 2] = [&[0x5a; 20], &[0xa5; 1024]];

impl Handler for CountingClient {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        ctx.send_binary(CLIENT_PAYLOADS[0]).expect("send");
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        let expected = CLIENT_PAYLOADS[(self.received % 2) as usize];
        assert_eq!(msg, Message::Binary(expected), "echo {}", self.received);
        self.received += 1;
        if self.received == WARMUP {
            self.at_start = thread_allocations();
        } else if self.received == WARMUP + MEASURED {
            self.at_end = thread_allocations();
            ctx.close(1000, "").expect("close");
            return;
        }
        ctx.send_binary(CLIENT_PAYLOADS[(self.received % 2) as usize])
            .expect("send");
    }

    fn on_close(&mut self, _ctx: &mut wsreactor::Ctx<'_>, code: u16, _reason: &str) {
        self.closed = Some(code);
        if let Some(r) = &self.remote {
            r.stop();
        }
    }
}

#[test]
fn zero_allocations_per_message_sent_by_a_client() {
    #[derive(Debug)]
    struct Echo;
    impl Handler for Echo {
        fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
            ctx.send(msg).expect("echo");
        }
    }
    let server = start(ServerConfig::default(), Echo);
    let url = format!("ws://{}/", server.addr);
    let client = std::thread::spawn(move || {
        let mut reactor =
            wsreactor::Reactor::new(ServerConfig::default(), CountingClient::default()).unwrap();
        reactor.connect(&url).unwrap();
        reactor.handler_mut().remote = Some(reactor.remote());
        reactor.run().unwrap()
    });
    let h = client.join().unwrap();
    server.stop();
    assert_eq!(h.received, WARMUP + MEASURED);
    assert_eq!(h.closed, Some(1000));
    assert_eq!(
        h.at_end - h.at_start,
        0,
        "allocations on the client's reactor thread across {MEASURED} messages (masking included)"
    );
}

/// Joins every connection to one topic and publishes every message to it,
/// counting the reactor thread's allocations like `CountingEcho`.
#[derive(Debug, Default)]
struct CountingRoom {
    messages: u64,
    at_start: u64,
    at_end: u64,
}

impl Handler for CountingRoom {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        ctx.subscribe("room").unwrap();
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        self.messages += 1;
        if self.messages == WARMUP {
            self.at_start = thread_allocations();
        } else if self.messages == WARMUP + MEASURED {
            self.at_end = thread_allocations();
        }
        ctx.publish("room", msg);
    }
}

/// No allocation per delivery nor per publish in steady state: the frame's
/// buffer comes from the pool, each subscriber's queue keeps its memory.
#[test]
fn zero_allocations_per_published_message() {
    const SUBSCRIBERS: usize = 20;
    let server = start(ServerConfig::default(), CountingRoom::default());
    let mut clients: Vec<WsClient> = (0..SUBSCRIBERS)
        .map(|_| WsClient::connect(server.addr))
        .collect();
    let payloads = [binary(20), binary(1024)];
    let frames: Vec<Vec<u8>> = payloads
        .iter()
        .map(|p| server_frame(OP_BINARY, p))
        .collect();
    let mut got = vec![0u8; 2048];
    for i in 0..WARMUP + MEASURED {
        let k = i as usize % 2;
        // Publishers take turns.
        let publisher = i as usize % SUBSCRIBERS;
        let request = clients[publisher].frame(true, OP_BINARY, &payloads[k]);
        clients[publisher].stream.write_all(&request).unwrap();
        for (n, c) in clients.iter_mut().enumerate() {
            let got = &mut got[..frames[k].len()];
            c.stream.read_exact(got).unwrap();
            assert!(got == frames[k].as_slice(), "message {i} to {n} differs");
        }
    }
    let h = server.stop();
    assert_eq!(h.messages, WARMUP + MEASURED);
    assert_eq!(
        h.at_end - h.at_start,
        0,
        "allocations on the reactor thread across {MEASURED} publishes to {SUBSCRIBERS}"
    );
}

/// The same for pipelined publishes: each publisher writes a burst of four
/// at once, so the reactor coalesces them into one run (a pooled buffer)
/// that every subscriber queues as one reference.
#[test]
fn zero_allocations_per_coalesced_burst() {
    const SUBSCRIBERS: usize = 20;
    let server = start(ServerConfig::default(), CountingRoom::default());
    let mut clients: Vec<WsClient> = (0..SUBSCRIBERS)
        .map(|_| WsClient::connect(server.addr))
        .collect();
    let payloads = [binary(20), binary(1024), binary(20), binary(300)];
    let expected: Vec<u8> = payloads
        .iter()
        .flat_map(|p| server_frame(OP_BINARY, p))
        .collect();
    let mut got = vec![0u8; expected.len()];
    let bursts = (WARMUP + MEASURED) / payloads.len() as u64 + 1;
    for i in 0..bursts {
        let publisher = i as usize % SUBSCRIBERS;
        let mut request = Vec::new();
        for p in &payloads {
            request.extend(clients[publisher].frame(true, OP_BINARY, p));
        }
        clients[publisher].stream.write_all(&request).unwrap();
        for (n, c) in clients.iter_mut().enumerate() {
            c.stream.read_exact(&mut got).unwrap();
            assert!(got == expected, "burst {i} to {n} differs");
        }
    }
    let h = server.stop();
    assert!(h.messages >= WARMUP + MEASURED);
    assert_eq!(
        h.at_end - h.at_start,
        0,
        "allocations on the reactor thread across {MEASURED} publishes in bursts to {SUBSCRIBERS}"
    );
}

/// One reactor of a two-reactor cluster: counts its thread's allocations
/// across the measured window of what it handles (publishes on reactor 0,
/// acknowledgements on reactor 1).
#[derive(Debug, Default)]
struct CountingNode {
    topic: String,
    handled: u64,
    at_start: u64,
    at_end: u64,
}

impl Handler for CountingNode {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        ctx.subscribe(&self.topic).unwrap();
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        self.handled += 1;
        if self.handled == WARMUP {
            self.at_start = thread_allocations();
        } else if self.handled == WARMUP + MEASURED {
            self.at_end = thread_allocations();
        }
        if let Message::Binary(_) = msg {
            let topic = std::mem::take(&mut self.topic);
            ctx.publish_others(&topic, msg);
            self.topic = topic;
        }
    }
}

/// The reactor that sequences `topic` among `n` (the library's FNV-1a).
fn owner(topic: &str, n: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in topic.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % n
}

/// Publishes that cross reactors allocate nothing in steady state either,
/// on either reactor: the publisher's reactor (0) routes each publish to
/// the topic's owner (1), which delivers it to its subscriber and sends it
/// back for reactor 0's subscriber (inbox, wake, shared frame, interned
/// topic name).
#[test]
fn zero_allocations_per_publish_across_reactors() {
    let topic = (0..100)
        .map(|i| format!("room{i}"))
        .find(|t| owner(t, 2) == 1)
        .unwrap();
    let name = topic.clone();
    let cluster = wsreactor::Cluster::bind_with(
        "127.0.0.1:0",
        ServerConfig::default(),
        2,
        wsreactor::Accept::Handoff,
        move |_| CountingNode {
            topic: name.clone(),
            ..CountingNode::default()
        },
    )
    .unwrap();
    let addr = cluster.local_addr();
    let remote = cluster.stopper();
    let thread = std::thread::spawn(move || cluster.run());
    // Handed out round robin: reactor 0, 1, 0.
    let mut publisher = WsClient::connect(addr);
    let mut far = WsClient::connect(addr);
    let mut near = WsClient::connect(addr);
    let payloads = [binary(20), binary(1024)];
    let frames: Vec<Vec<u8>> = payloads
        .iter()
        .map(|p| server_frame(OP_BINARY, p))
        .collect();
    let mut got = vec![0u8; 2048];
    for i in 0..WARMUP + MEASURED {
        let k = (i % 2) as usize;
        publisher.send(OP_BINARY, &payloads[k]);
        for c in [&mut near, &mut far] {
            let got = &mut got[..frames[k].len()];
            c.stream.read_exact(got).unwrap();
            assert!(got == frames[k].as_slice(), "delivery {i} differs");
        }
        // Counted on reactor 1, the far subscriber's.
        far.send(OP_TEXT, b"ack");
    }
    // The last acknowledgement is in once its reply to a ping is.
    far.send(OP_PING, b"");
    assert_eq!(far.recv().opcode, OP_PONG);
    remote.stop();
    let nodes = thread.join().unwrap().unwrap();
    assert_eq!(
        nodes[0].handled,
        WARMUP + MEASURED,
        "publishes on reactor 0"
    );
    assert_eq!(nodes[1].handled, WARMUP + MEASURED, "acks on reactor 1");
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(
            n.at_end - n.at_start,
            0,
            "allocations on reactor {i} across {MEASURED} cross-reactor publishes"
        );
    }
}
