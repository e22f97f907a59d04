//! Pipelined publishes, coalesced into one run per topic, over loopback:
//! every subscriber still sees exactly the order of the publishes, sends,
//! subscriptions and closes around them (a subscriber of two topics, a
//! direct send between two publishes of a burst, the publisher subscribed
//! itself, permessage-deflate and plain subscribers together), and a slow
//! subscriber's backlog limit and policy hold for a coalesced burst.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use wsreactor::{ConnId, Ctx, Handler, Message, ServerConfig, SlowPolicy};

/// Binary messages are publishes: the first byte names the topic ('a' or
/// 'b': to every subscriber; 'A' or 'B': to every subscriber but the
/// sender). Text: "tell" sends a marker to every other connection, "flip"
/// toggles the second connection's subscription to "b".
#[derive(Default)]
struct Bursts {
    ids: Vec<ConnId>,
    dropped: u64,
    delivered: u64,
}

impl Handler for Bursts {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        // Connections open one after another: P (a), S (a, b), A (a), ...
        let id = ctx.id();
        let topics: &[&str] = match self.ids.len() {
            1 => &["a", "b"],
            _ => &["a"],
        };
        self.ids.push(id);
        for t in topics {
            ctx.subscribe(t).unwrap();
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        match msg {
            Message::Binary(b) => {
                let topic = match b[0] {
                    b'a' | b'A' => "a",
                    _ => "b",
                };
                if b[0].is_ascii_lowercase() {
                    ctx.publish(topic, msg);
                } else {
                    ctx.publish_others(topic, msg);
                }
            }
            Message::Text(t) if t.starts_with("tell") => {
                let me = ctx.id();
                for &id in &self.ids {
                    if id != me {
                        // A slow subscriber may have been closed.
                        let _ = ctx.control().send_text(id, t);
                    }
                }
            }
            Message::Text("flip") => {
                let s = self.ids[1];
                let ctl = ctx.control();
                if !ctl.subscribe(s, "b").unwrap() {
                    ctl.unsubscribe(s, "b");
                }
            }
            Message::Text(_) => {}
        }
        let m = ctx.control().metrics();
        self.dropped = m.deliveries_dropped_total;
        self.delivered = m.deliveries_total;
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What a client should receive: (opcode, payload).
type Expected = Vec<(u8, Vec<u8>)>;

fn recv_all(c: &mut WsClient, expected: &Expected, what: &str) {
    for (i, (op, payload)) in expected.iter().enumerate() {
        let f = c.recv();
        assert_eq!(
            (f.opcode, &f.payload),
            (*op, payload),
            "{what}: message {i} of {}",
            expected.len()
        );
    }
}

/// The random bursts and what each connection should get from them.
struct Model {
    rng: Rng,
    s_in_b: bool,
    seq: u32,
}

impl Model {
    fn new(seed: u64) -> Self {
        Self {
            rng: Rng(seed),
            s_in_b: true,
            seq: 0,
        }
    }

    /// One burst from `p`: publishes to two topics with and without the
    /// sender (sizes on both sides of the compression threshold), sends to
    /// the other connections, and changes to S's subscription, between
    /// them. Returns the bytes and what P, S and A should get.
    fn burst(&mut self, p: &mut WsClient) -> (Vec<u8>, [Expected; 3]) {
        let (mut to_p, mut to_s, mut to_a) = (Expected::new(), Expected::new(), Expected::new());
        let mut bytes = Vec::new();
        for _ in 0..1 + self.rng.below(24) {
            self.seq += 1;
            let step = self.rng.below(20);
            if step == 0 {
                let t = format!("tell {}", self.seq).into_bytes();
                to_s.push((OP_TEXT, t.clone()));
                to_a.push((OP_TEXT, t.clone()));
                bytes.extend(p.frame(true, OP_TEXT, &t));
                continue;
            }
            if step == 1 {
                self.s_in_b = !self.s_in_b;
                bytes.extend(p.frame(true, OP_TEXT, b"flip"));
                continue;
            }
            let kind = [b'a', b'b', b'A', b'B'][self.rng.below(4) as usize];
            let mut m = vec![kind];
            m.extend_from_slice(&self.seq.to_be_bytes());
            m.resize(5 + self.rng.below(4) as usize * 100, b'.');
            let topic_a = kind.eq_ignore_ascii_case(&b'a');
            if topic_a || self.s_in_b {
                to_s.push((OP_BINARY, m.clone()));
            }
            if topic_a {
                to_a.push((OP_BINARY, m.clone()));
                if kind == b'a' {
                    to_p.push((OP_BINARY, m.clone()));
                }
            }
            bytes.extend(p.frame(true, OP_BINARY, &m));
        }
        (bytes, [to_p, to_s, to_a])
    }
}

/// Random bursts, each written at once (so the server reads it in one go
/// and its publishes are corked): every connection gets exactly what the
/// model says, in order.
#[test]
fn bursts_keep_every_order() {
    let server = start(ServerConfig::default(), Bursts::default());
    // P publishes; S is in "a" and "b"; A in "a" only.
    let mut p = WsClient::connect(server.addr);
    let mut s = WsClient::connect(server.addr);
    let mut a = WsClient::connect(server.addr);
    // Handshakes are done; the opens have run once a reply comes back.
    p.send(OP_TEXT, b"tell sync");
    assert_eq!(s.recv().payload, b"tell sync");
    assert_eq!(a.recv().payload, b"tell sync");
    let mut model = Model::new(0x2545_f491_4f6c_dd1d);
    for burst in 0..60 {
        let (bytes, [to_p, to_s, to_a]) = model.burst(&mut p);
        p.send_raw(&bytes);
        recv_all(&mut s, &to_s, &format!("S, burst {burst}"));
        recv_all(&mut a, &to_a, &format!("A, burst {burst}"));
        recv_all(&mut p, &to_p, &format!("P, burst {burst}"));
    }
    // Nothing more, nothing twice.
    p.send(OP_TEXT, b"tell end");
    assert_eq!(s.recv().payload, b"tell end");
    assert_eq!(a.recv().payload, b"tell end");
    let h = server.stop();
    assert_eq!(h.dropped, 0);
}

/// S negotiates permessage-deflate, P and A do not: S gets the long
/// messages compressed (one form shared by every such subscriber without
/// server context takeover, its own with takeover), each message on its
/// own, in the same order as the plain subscribers.
#[cfg(feature = "deflate")]
#[test]
fn deflate_and_plain_subscribers_of_one_burst() {
    use wsreactor::ext::deflate::Decompressor;
    use wsreactor::ext::DeflateConfig;
    for no_takeover in [true, false] {
        let config = ServerConfig {
            deflate: DeflateConfig {
                enabled: true,
                server_no_context_takeover: no_takeover,
                ..DeflateConfig::default()
            },
            ..ServerConfig::default()
        };
        let server = start(config, Bursts::default());
        let mut p = WsClient::connect(server.addr);
        let mut s = {
            let mut stream = tcp(server.addr);
            let mut request = upgrade_request("/chat");
            request.truncate(request.len() - 2);
            request.extend_from_slice(b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
            stream.write_all(&request).unwrap();
            let mut rest = Vec::new();
            let head = lossy(&read_http_head(&mut stream, &mut rest));
            assert!(head.contains("permessage-deflate"), "{head}");
            (stream, rest)
        };
        // RSV1 marks a compressed frame: read frames by hand.
        let mut recv_s = move || loop {
            if let Some((f, n)) = parse_frame(&s.1) {
                s.1.drain(..n);
                assert_eq!(f.mask, None);
                return f;
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = s.0.read(&mut chunk).unwrap();
            assert!(n > 0, "EOF");
            s.1.extend_from_slice(&chunk[..n]);
        };
        let mut a = WsClient::connect(server.addr);
        p.send(OP_TEXT, b"tell sync");
        assert_eq!(recv_s().payload, b"tell sync");
        assert_eq!(a.recv().payload, b"tell sync");
        let mut inflate = Decompressor::new(15, no_takeover);
        let mut compressed = 0;
        let mut model = Model::new(0x9e37_79b9_7f4a_7c15);
        for burst in 0..60 {
            let (bytes, [to_p, to_s, to_a]) = model.burst(&mut p);
            p.send_raw(&bytes);
            for (i, (op, payload)) in to_s.iter().enumerate() {
                let f = recv_s();
                let got = if f.rsv & 0x4 != 0 {
                    compressed += 1;
                    let mut out = Vec::new();
                    inflate.decompress(&f.payload, &mut out, 1 << 20).unwrap();
                    out
                } else {
                    f.payload
                };
                assert_eq!((f.opcode, &got), (*op, payload), "S, burst {burst}, {i}");
            }
            recv_all(&mut a, &to_a, &format!("A, burst {burst}"));
            recv_all(&mut p, &to_p, &format!("P, burst {burst}"));
        }
        assert!(compressed > 100, "{compressed} compressed");
        server.stop();
    }
}

/// The simplest case spelled out: a subscriber of two topics sees them
/// interleaved as published, and a send between two publishes of one
/// burst arrives between them.
#[test]
fn interleaved_topics_and_a_send_inside_a_burst() {
    let server = start(ServerConfig::default(), Bursts::default());
    let mut p = WsClient::connect(server.addr);
    let mut s = WsClient::connect(server.addr);
    p.send(OP_TEXT, b"tell sync");
    assert_eq!(s.recv().payload, b"tell sync");
    let mut bytes = Vec::new();
    for m in [&b"A1"[..], b"A2", b"B3", b"A4", b"B5", b"B6", b"A7"] {
        bytes.extend(p.frame(true, OP_BINARY, m));
    }
    bytes.extend(p.frame(true, OP_TEXT, b"tell 8"));
    for m in [&b"A9"[..], b"A10"] {
        bytes.extend(p.frame(true, OP_BINARY, m));
    }
    p.send_raw(&bytes);
    let got: Vec<Vec<u8>> = (0..10).map(|_| s.recv().payload).collect();
    assert_eq!(
        got,
        ["A1", "A2", "B3", "A4", "B5", "B6", "A7", "tell 8", "A9", "A10"]
            .map(|m| m.as_bytes().to_vec())
    );
    // A burst longer than one run holds (256 messages): split, in order.
    let mut bytes = Vec::new();
    for i in 0..600u32 {
        let mut m = b"A".to_vec();
        m.extend_from_slice(&i.to_be_bytes());
        bytes.extend(p.frame(true, OP_BINARY, &m));
    }
    p.send_raw(&bytes);
    for i in 0..600u32 {
        assert_eq!(s.recv().payload[1..], i.to_be_bytes());
    }
    server.stop();
}

/// A subscriber that does not read, in a burst-heavy room with a small
/// backlog limit: the readers get everything in order; the slow one gets
/// an in-order prefix and then, by the policy, nothing more (closed with
/// 1008) or only what fits (the rest dropped and counted).
#[test]
fn slow_subscriber_policies_with_coalesced_bursts() {
    for policy in [SlowPolicy::Close(1008), SlowPolicy::Drop] {
        const SIZE: usize = 4000;
        // A burst fits the backlog limit; 16 MiB in all: more than
        // loopback buffers hold.
        const EACH: u32 = 8;
        const BURSTS: u32 = 512;
        let config = ServerConfig {
            max_subscriber_backlog: 64 * 1024,
            on_slow_subscriber: policy,
            ..ServerConfig::default()
        };
        let server = start(config, Bursts::default());
        let mut p = WsClient::connect(server.addr);
        let mut slow = WsClient::connect(server.addr);
        let mut reader = WsClient::connect(server.addr);
        p.send(OP_TEXT, b"tell sync");
        assert_eq!(slow.recv().payload, b"tell sync");
        assert_eq!(reader.recv().payload, b"tell sync");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        for burst in 0..BURSTS {
            let mut bytes = Vec::new();
            for i in 0..EACH {
                let mut m = vec![b'A'; SIZE];
                m[1..5].copy_from_slice(&(burst * EACH + i).to_be_bytes());
                bytes.extend(p.frame(true, OP_BINARY, &m));
            }
            p.stream.write_all(&bytes).unwrap();
            // The reader keeps up: its backlog never passes one burst.
            let want = ((burst + 1) * EACH) as usize * (SIZE + 4);
            while got.len() < want {
                let n = reader.stream.read(&mut buf).unwrap();
                assert!(n > 0, "EOF");
                got.extend_from_slice(&buf[..n]);
            }
        }
        let frames = parse_frames(&got);
        assert_eq!(frames.len(), (BURSTS * EACH) as usize, "{policy:?}");
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.payload[1..5], (i as u32).to_be_bytes(), "{policy:?}");
        }
        // Every publish is through once P's own "tell" is answered.
        p.send(OP_TEXT, b"tell end");
        assert_eq!(reader.recv().payload, b"tell end");

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
        let data: Vec<u32> = frames
            .iter()
            .filter(|f| f.opcode == OP_BINARY)
            .map(|f| u32::from_be_bytes(f.payload[1..5].try_into().unwrap()))
            .collect();
        let total = BURSTS * EACH;
        assert!(
            !data.is_empty() && (data.len() as u32) < total,
            "{policy:?}: {} messages",
            data.len()
        );
        let h = server.stop();
        match policy {
            SlowPolicy::Close(_) => {
                for (i, &n) in data.iter().enumerate() {
                    assert_eq!(n, i as u32, "in order, no gap");
                }
                let close = frames
                    .iter()
                    .find(|f| f.opcode == OP_CLOSE)
                    .expect("a close");
                assert_eq!(close.payload[..2], 1008u16.to_be_bytes());
                assert_eq!(&close.payload[2..], b"slow subscriber");
            }
            SlowPolicy::Drop => {
                assert!(data.windows(2).all(|w| w[0] < w[1]), "in order");
                assert!(!frames.iter().any(|f| f.opcode == OP_CLOSE));
                // Whatever the slow one got or not is counted, message by
                // message ("tell" and the sync are sends, not deliveries).
                let unique: BTreeSet<u32> = data.iter().copied().collect();
                assert_eq!(unique.len(), data.len());
                assert!(h.dropped > 0);
                assert_eq!(h.dropped + data.len() as u64, u64::from(total), "dropped");
            }
        }
        // Counted message by message, not by run.
        assert_eq!(h.delivered, u64::from(total) + data.len() as u64);
    }
}
