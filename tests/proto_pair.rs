//! An in-memory client/server pair, no sockets: the opening handshake through
//! `handshake::{client, server}`, then two `proto::Connection`s whose output
//! is fed to each other. Every failure mode of RFC 6455 §5 is checked with its
//! exact close code and the exact close frame queued in reply.

mod common;

use common::*;
use wsreactor::handshake::{classify, parse_request, parse_response, write_accept};
use wsreactor::handshake::{write_request, Limits, Outcome};
use wsreactor::proto::{CloseState, Config, Connection, Error, Event, Message, OpCode, SendError};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------
// The pair
// ---------------------------------------------------------------------------

/// A client and a server connection after an in-memory opening handshake.
struct Pair {
    client: Connection,
    server: Connection,
    to_server: Feeder,
    to_client: Feeder,
}

impl Pair {
    fn new() -> Self {
        Self::with(Config::default(), Config::default())
    }

    fn with(server: Config, client: Config) -> Self {
        assert!(handshake(&[]).is_empty());
        Pair {
            client: Connection::client(client, 0x5eed_1234_abcd_0042),
            server: Connection::server(server),
            to_server: Feeder::default(),
            to_client: Feeder::default(),
        }
    }

    /// Deliver what the client queued to the server: its events, and how the
    /// read ended.
    fn c2s(&mut self) -> (Vec<Owned>, Result<(), Error>) {
        let bytes = drain_output(&mut self.client);
        let mut events = Vec::new();
        let r = self.to_server.feed(&mut self.server, &bytes, &mut events);
        (events, r)
    }

    fn s2c(&mut self) -> (Vec<Owned>, Result<(), Error>) {
        let bytes = drain_output(&mut self.server);
        let mut events = Vec::new();
        let r = self.to_client.feed(&mut self.client, &bytes, &mut events);
        (events, r)
    }

    fn c2s_ok(&mut self) -> Vec<Owned> {
        let (events, r) = self.c2s();
        r.expect("server read failed");
        events
    }

    fn s2c_ok(&mut self) -> Vec<Owned> {
        let (events, r) = self.s2c();
        r.expect("client read failed");
        events
    }
}

/// Run the opening handshake in memory with the RFC 6455 §1.3 key.
/// `early` is appended to the client's request (frames sent before the 101
/// arrived); the server's first frame follows its 101 in the same bytes.
/// Returns what the server's parser left after the request: `early`.
fn handshake(early: &[u8]) -> Vec<u8> {
    let mut request = Vec::new();
    let key = write_request(
        &mut request,
        "server.example.com",
        "/chat",
        b"the sample nonce",
        &[],
        None,
        &[],
    );
    assert_eq!(key.key(), RFC_KEY);
    assert_eq!(key.expected_accept(), RFC_ACCEPT);
    let request_len = request.len();
    request.extend_from_slice(early);

    let mut response = Vec::new();
    let at_server = {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let req = parse_request(&request, &mut headers, &Limits::default())
            .expect("valid request")
            .complete()
            .expect("complete request");
        assert_eq!(req.len, request_len);
        assert_eq!((req.method, req.path, req.version), ("GET", "/chat", 1));
        let Outcome::Upgrade(up) = classify(&req) else {
            panic!("not an upgrade");
        };
        assert_eq!(up.key, RFC_KEY.as_bytes());
        assert_eq!(up.host, b"server.example.com");
        write_accept(&mut response, up.key, None, None);
        request[req.len..].to_vec()
    };
    assert_eq!(lossy(&response), lossy(&expected_101()));

    // The server's first frame travels in the same segment as its 101.
    let response_len = response.len();
    let first = server_frame(OP_TEXT, b"welcome");
    response.extend_from_slice(&first);
    // Every prefix of the 101 is Partial.
    for cut in 0..response_len {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let st = parse_response(
            &response[..cut],
            &mut headers,
            key.expected_accept(),
            &[],
            &Limits::default(),
        )
        .expect("prefix of a valid response");
        assert!(st.is_partial(), "cut {cut}");
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let res = parse_response(
        &response,
        &mut headers,
        key.expected_accept(),
        &[],
        &Limits::default(),
    )
    .expect("valid response")
    .complete()
    .expect("complete response");
    assert_eq!(res.len, response_len);
    assert_eq!(res.protocol, None);
    assert_eq!(&response[res.len..], first.as_slice());
    at_server
}

// ---------------------------------------------------------------------------
// Failure helpers
// ---------------------------------------------------------------------------

/// The close frame a server sends when failing with `code` (unmasked).
fn server_close(code: u16) -> Vec<u8> {
    server_frame(OP_CLOSE, &code.to_be_bytes())
}

/// Feed `bytes` to a fresh server with `config`: it must fail with `code`,
/// have queued exactly one frame (the close with that code, no reason), be
/// `Closed`, and discard anything fed afterwards.
fn server_fails_with(config: Config, bytes: &[u8], code: u16) -> Vec<Owned> {
    let mut server = Connection::server(config);
    let mut feeder = Feeder::default();
    let mut events = Vec::new();
    let err = feeder
        .feed(&mut server, bytes, &mut events)
        .expect_err("the server accepted invalid input");
    assert_eq!(err.close_code(), code, "{err}");
    assert_eq!(server.sender().state(), CloseState::Closed);
    let out = drain_output(&mut server);
    // Pongs owed before the failure may precede the close.
    let frames = parse_frames(&out);
    let last = frames.last().expect("no close frame queued");
    assert_eq!(
        (last.fin, last.opcode, last.mask, last.payload.as_slice()),
        (true, OP_CLOSE, None, &code.to_be_bytes()[..]),
        "close frame queued for {code}"
    );
    assert!(frames[..frames.len() - 1]
        .iter()
        .all(|f| f.opcode != OP_CLOSE));
    assert_after_failure(&mut server);
    events
}

fn server_fails(bytes: &[u8], code: u16) -> Vec<Owned> {
    server_fails_with(Config::default(), bytes, code)
}

/// Like [`server_fails_with`] for a client, whose close frame is masked.
fn client_fails(bytes: &[u8], code: u16) -> Vec<Owned> {
    let mut client = Connection::client(Config::default(), 7);
    let mut feeder = Feeder::default();
    let mut events = Vec::new();
    let err = feeder
        .feed(&mut client, bytes, &mut events)
        .expect_err("the client accepted invalid input");
    assert_eq!(err.close_code(), code, "{err}");
    assert_eq!(client.sender().state(), CloseState::Closed);
    let frames = parse_frames(&drain_output(&mut client));
    let last = frames.last().expect("no close frame queued");
    assert!(last.mask.is_some(), "a client's close must be masked");
    assert_eq!(
        (last.fin, last.opcode, last.payload.as_slice()),
        (true, OP_CLOSE, &code.to_be_bytes()[..])
    );
    assert_after_failure(&mut client);
    events
}

/// After a failure (or a completed close) input is discarded whole: no
/// event, nothing queued.
fn assert_after_failure(conn: &mut Connection) {
    let mut more = client_frame(OP_TEXT, b"ignored");
    more.extend_from_slice(&client_frame(OP_PING, b"x"));
    let len = more.len();
    let r = conn
        .read(&mut more)
        .expect("input after the end is discarded");
    assert_eq!((r.consumed, r.event), (len, None));
    assert!(conn.sender().pending().is_empty());
    assert_eq!(
        conn.sender().send(OpCode::Text, b"late"),
        Err(SendError::Closed)
    );
}

/// A masked client frame with explicit FIN and RSV.
fn cf(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, rsv, opcode, Some(RFC_MASK), payload)
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ---------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------

#[test]
fn handshake_in_memory_with_rfc_key() {
    // Lenient: frames right behind the request are left for the frame parser.
    let early = client_frame(OP_TEXT, b"early");
    let at_server = handshake(&early);
    assert_eq!(at_server, early);
    let mut server = Connection::server(Config::default());
    let mut events = Vec::new();
    Feeder::default()
        .feed(&mut server, &at_server, &mut events)
        .unwrap();
    assert_eq!(events, [Owned::Text("early".into())]);
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.7 examples, byte for byte
// ---------------------------------------------------------------------------

const HELLO: &[u8] = b"Hello";
const RFC_UNMASKED_HELLO: [u8; 7] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
const RFC_MASKED_HELLO: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];
const RFC_HEL: [u8; 5] = [0x01, 0x03, 0x48, 0x65, 0x6c];
const RFC_LO: [u8; 4] = [0x80, 0x02, 0x6c, 0x6f];
const RFC_PING: [u8; 7] = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
const RFC_MASKED_PONG: [u8; 11] = [
    0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];
const RFC_256_HEADER: [u8; 4] = [0x82, 0x7e, 0x01, 0x00];
const RFC_64K_HEADER: [u8; 10] = [0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0, 0];

fn feed_client(bytes: &[u8]) -> (Connection, Vec<Owned>) {
    let mut client = Connection::client(Config::default(), 99);
    let mut events = Vec::new();
    Feeder::default()
        .feed(&mut client, bytes, &mut events)
        .unwrap();
    (client, events)
}

fn feed_server(bytes: &[u8]) -> (Connection, Vec<Owned>) {
    let mut server = Connection::server(Config::default());
    let mut events = Vec::new();
    Feeder::default()
        .feed(&mut server, bytes, &mut events)
        .unwrap();
    (server, events)
}

#[test]
fn rfc_5_7_single_frame_unmasked_hello() {
    let (mut client, events) = feed_client(&RFC_UNMASKED_HELLO);
    assert_eq!(events, [Owned::Text("Hello".into())]);
    assert!(drain_output(&mut client).is_empty());
    // And the server writes exactly those bytes.
    let mut server = Connection::server(Config::default());
    server.sender().send(OpCode::Text, HELLO).unwrap();
    assert_eq!(drain_output(&mut server), RFC_UNMASKED_HELLO);
}

#[test]
fn rfc_5_7_single_frame_masked_hello() {
    let (mut server, events) = feed_server(&RFC_MASKED_HELLO);
    assert_eq!(events, [Owned::Text("Hello".into())]);
    assert!(drain_output(&mut server).is_empty());
    // Unmasked in place: the event borrows the input, which now holds "Hello".
    let mut input = RFC_MASKED_HELLO;
    let mut server = Connection::server(Config::default());
    let r = server.read(&mut input).unwrap();
    assert_eq!(r.consumed, 11);
    let Some(Event::Message(Message::Text(t))) = r.event else {
        panic!("not a text message");
    };
    assert_eq!(t.as_ptr(), input[6..].as_ptr(), "not borrowed in place");
    assert_eq!(&input[6..], HELLO);
}

#[test]
fn rfc_5_7_fragmented_unmasked_hello() {
    let mut client = Connection::client(Config::default(), 99);
    let mut feeder = Feeder::default();
    let mut events = Vec::new();
    feeder.feed(&mut client, &RFC_HEL, &mut events).unwrap();
    assert_eq!(events, []);
    feeder.feed(&mut client, &RFC_LO, &mut events).unwrap();
    assert_eq!(events, [Owned::Text("Hello".into())]);
    let mut server = Connection::server(Config::default());
    server
        .sender()
        .send_frame(OpCode::Text, false, b"Hel")
        .unwrap();
    server
        .sender()
        .send_frame(OpCode::Continuation, true, b"lo")
        .unwrap();
    assert_eq!(drain_output(&mut server), concat(&[&RFC_HEL, &RFC_LO]));
}

#[test]
fn rfc_5_7_unmasked_ping_and_masked_pong() {
    // The client answers the unmasked ping with a masked pong of "Hello".
    let (mut client, events) = feed_client(&RFC_PING);
    assert_eq!(events, [Owned::Ping(HELLO.to_vec())]);
    let out = drain_output(&mut client);
    let (pong, n) = parse_frame(&out).expect("a whole pong");
    assert_eq!(n, out.len());
    assert_eq!(out[..2], [0x8a, 0x85]);
    assert!(pong.mask.is_some());
    assert_eq!(pong.payload, HELLO);
    // The server receives the RFC's masked pong: an event, nothing owed.
    let (mut server, events) = feed_server(&RFC_MASKED_PONG);
    assert_eq!(events, [Owned::Pong(HELLO.to_vec())]);
    assert!(drain_output(&mut server).is_empty());
    // A server answers a masked ping with exactly the unmasked pong.
    let (mut server, events) = feed_server(&cf(true, 0, OP_PING, HELLO));
    assert_eq!(events, [Owned::Ping(HELLO.to_vec())]);
    assert_eq!(
        drain_output(&mut server),
        [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
}

#[test]
fn rfc_5_7_256_byte_and_64_kib_binary() {
    for (header, len) in [(&RFC_256_HEADER[..], 256), (&RFC_64K_HEADER[..], 65536)] {
        let payload = binary(len);
        let (_, events) = feed_client(&concat(&[header, &payload]));
        assert_eq!(events, [Owned::Binary(payload.clone())]);
        let mut server = Connection::server(Config::default());
        server.sender().send(OpCode::Binary, &payload).unwrap();
        let out = drain_output(&mut server);
        assert_eq!(&out[..header.len()], header);
        assert_eq!(&out[header.len()..], payload.as_slice());
    }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

const SIZES: [usize; 7] = [0, 1, 125, 126, 65535, 65536, 1 << 20];

/// The length field as it must appear on the wire (minimal encoding).
fn expected_header_len(len: usize, masked: bool) -> usize {
    let base = match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    base + if masked { 4 } else { 0 }
}

#[test]
fn every_size_class_text_and_binary_both_ways() {
    let mut pair = Pair::new();
    for len in SIZES {
        for text in [false, true] {
            let (op, expect) = if text {
                let s = utf8_text(len);
                (OpCode::Text, Owned::Text(s))
            } else {
                (OpCode::Binary, Owned::Binary(binary(len)))
            };
            let payload = match &expect {
                Owned::Text(s) => s.as_bytes().to_vec(),
                Owned::Binary(b) => b.clone(),
                _ => unreachable!(),
            };
            // Client to server: masked, minimal length.
            pair.client.sender().send(op, &payload).unwrap();
            let wire = pair.client.sender().pending().to_vec();
            let (f, n) = parse_frame(&wire).unwrap();
            assert_eq!(n, wire.len());
            assert_eq!(n - len, expected_header_len(len, true), "len {len}");
            assert!(f.mask.is_some() && f.fin);
            assert_eq!(f.opcode, op as u8);
            let events = pair.c2s_ok();
            assert_eq!(events.len(), 1, "len {len}");
            assert!(events[0] == expect, "c2s len {len}: {}", events[0].brief());
            // Server to client: unmasked, header exactly as written by hand.
            pair.server.sender().send(op, &payload).unwrap();
            let wire = pair.server.sender().pending().to_vec();
            assert_eq!(
                wire[..wire.len() - len],
                header(true, 0, op as u8, None, len as u64)
            );
            let events = pair.s2c_ok();
            assert_eq!(events.len(), 1);
            assert!(events[0] == expect, "s2c len {len}: {}", events[0].brief());
        }
    }
    assert_eq!(pair.to_server.unconsumed(), 0);
    assert_eq!(pair.to_client.unconsumed(), 0);
}

#[test]
fn every_size_class_in_small_reads() {
    // The same messages arriving 1000 bytes at a time (streamed, with UTF-8
    // code points cut by read boundaries).
    for len in SIZES {
        for text in [false, true] {
            let payload = if text {
                utf8_text(len).into_bytes()
            } else {
                binary(len)
            };
            let op = if text { OP_TEXT } else { OP_BINARY };
            let wire = frame(true, 0, op, Some([1, 2, 3, 4]), &payload);
            let mut server = Connection::server(Config::default());
            let mut feeder = Feeder::default();
            let mut events = Vec::new();
            for chunk in wire.chunks(1000) {
                feeder.feed(&mut server, chunk, &mut events).unwrap();
            }
            let expect = if text {
                Owned::Text(String::from_utf8(payload).unwrap())
            } else {
                Owned::Binary(payload)
            };
            assert_eq!(events.len(), 1, "len {len}");
            assert!(events[0] == expect, "len {len}");
        }
    }
}

#[test]
fn echo_through_split_halves() {
    // The pattern a transport uses: answer a borrowed event via the sender.
    let mut server = Connection::server(Config::default());
    let mut input = concat(&[&RFC_MASKED_HELLO, &cf(true, 0, OP_BINARY, &[0, 1, 2])]);
    let mut off = 0;
    loop {
        let (rx, tx) = server.split();
        let r = rx.read(&mut input[off..], tx).unwrap();
        off += r.consumed;
        match r.event {
            Some(Event::Message(m)) => tx.send(m.opcode(), m.as_bytes()).unwrap(),
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    assert_eq!(
        drain_output(&mut server),
        concat(&[&RFC_UNMASKED_HELLO, &[0x82, 0x03, 0, 1, 2]])
    );
}

#[test]
fn fragmented_messages_with_control_frames_interleaved() {
    let mut pair = Pair::new();
    let tx = pair.client.sender();
    tx.send_frame(OpCode::Text, false, "κό".as_bytes()).unwrap();
    tx.ping(b"p1").unwrap();
    tx.send_frame(OpCode::Continuation, false, b"").unwrap();
    tx.send_frame(OpCode::Pong, true, b"unsolicited").unwrap();
    tx.send_frame(OpCode::Continuation, false, "σμ".as_bytes())
        .unwrap();
    tx.ping(b"").unwrap();
    tx.send_frame(OpCode::Continuation, true, "ε".as_bytes())
        .unwrap();
    let events = pair.c2s_ok();
    assert_eq!(
        events,
        [
            Owned::Ping(b"p1".to_vec()),
            Owned::Pong(b"unsolicited".to_vec()),
            Owned::Ping(Vec::new()),
            Owned::Text("κόσμε".into()),
        ]
    );
    // Pongs owed, in order, with identical payloads; nothing for the pong.
    assert_eq!(
        pair.server.sender().pending(),
        concat(&[&[0x8a, 0x02, b'p', b'1'], &[0x8a, 0x00]])
    );
    assert_eq!(
        pair.s2c_ok(),
        [Owned::Pong(b"p1".to_vec()), Owned::Pong(Vec::new())]
    );

    // A binary message of many fragments, two of them empty.
    let tx = pair.client.sender();
    tx.send_frame(OpCode::Binary, false, &[1]).unwrap();
    tx.send_frame(OpCode::Continuation, false, &[]).unwrap();
    tx.send_frame(OpCode::Continuation, false, &binary(70_000))
        .unwrap();
    tx.send_frame(OpCode::Continuation, true, &[]).unwrap();
    tx.send(OpCode::Text, b"next").unwrap();
    let mut expect = vec![1];
    expect.extend_from_slice(&binary(70_000));
    let events = pair.c2s_ok();
    assert_eq!(events.len(), 2);
    assert!(events[0] == Owned::Binary(expect));
    assert_eq!(events[1], Owned::Text("next".into()));
}

#[test]
fn ping_pong_identical_payload_both_ways() {
    let mut pair = Pair::new();
    for payload in [Vec::new(), b"x".to_vec(), binary(125)] {
        pair.client.sender().ping(&payload).unwrap();
        assert_eq!(pair.c2s_ok(), [Owned::Ping(payload.clone())]);
        assert_eq!(
            pair.server.sender().pending(),
            server_frame(OP_PONG, &payload)
        );
        assert_eq!(pair.s2c_ok(), [Owned::Pong(payload.clone())]);
        assert!(pair.client.sender().pending().is_empty());

        pair.server.sender().ping(&payload).unwrap();
        assert_eq!(pair.s2c_ok(), [Owned::Ping(payload.clone())]);
        let out = pair.client.sender().pending().to_vec();
        let (pong, n) = parse_frame(&out).unwrap();
        assert_eq!(n, out.len());
        assert_eq!((pong.opcode, &pong.payload), (OP_PONG, &payload));
        assert!(pong.mask.is_some());
        assert_eq!(pair.c2s_ok(), [Owned::Pong(payload.clone())]);
    }
    // Control payloads over 125 bytes are refused by the sender.
    assert_eq!(
        pair.client.sender().ping(&binary(126)),
        Err(SendError::ControlTooLong)
    );
}

#[test]
fn unsolicited_pong_is_ignored() {
    let (mut server, events) = feed_server(&concat(&[
        &cf(true, 0, OP_PONG, b"nobody asked"),
        &RFC_MASKED_HELLO,
    ]));
    assert_eq!(
        events,
        [
            Owned::Pong(b"nobody asked".to_vec()),
            Owned::Text("Hello".into())
        ]
    );
    assert!(drain_output(&mut server).is_empty());
    assert_eq!(server.sender().state(), CloseState::Open);
}

// ---------------------------------------------------------------------------
// Close handshake
// ---------------------------------------------------------------------------

#[test]
fn close_initiated_by_client() {
    let mut pair = Pair::new();
    pair.client.sender().close(1000, "bye").unwrap();
    assert_eq!(pair.client.sender().state(), CloseState::CloseSent);
    assert_eq!(
        pair.client.sender().send(OpCode::Text, b"x"),
        Err(SendError::Closed)
    );
    assert_eq!(pair.client.sender().ping(b""), Err(SendError::Closed));
    // The server gets the code and reason, echoes the code, and is Closed.
    assert_eq!(pair.c2s_ok(), [Owned::Close(Some((1000, "bye".into())))]);
    assert_eq!(pair.server.sender().state(), CloseState::Closed);
    assert_eq!(pair.server.sender().pending(), [0x88, 0x02, 0x03, 0xe8]);
    // The client gets the echo and is Closed too; nothing more is owed.
    assert_eq!(pair.s2c_ok(), [Owned::Close(Some((1000, String::new())))]);
    assert_eq!(pair.client.sender().state(), CloseState::Closed);
    assert!(pair.client.sender().pending().is_empty());
    assert_after_failure(&mut pair.server);
}

#[test]
fn close_initiated_by_server() {
    let mut pair = Pair::new();
    pair.server.sender().close(4000, "going").unwrap();
    assert_eq!(pair.server.sender().state(), CloseState::CloseSent);
    assert_eq!(
        pair.server.sender().pending(),
        concat(&[&[0x88, 0x07, 0x0f, 0xa0], b"going"])
    );
    // A message the client sent before seeing the close still arrives.
    pair.client.sender().send(OpCode::Text, b"late").unwrap();
    assert_eq!(pair.c2s_ok(), [Owned::Text("late".into())]);
    assert_eq!(pair.s2c_ok(), [Owned::Close(Some((4000, "going".into())))]);
    assert_eq!(pair.client.sender().state(), CloseState::Closed);
    let echo = parse_frames(pair.client.sender().pending());
    assert_eq!(echo.len(), 1);
    assert_eq!(
        (echo[0].opcode, &echo[0].payload[..]),
        (OP_CLOSE, &[0x0f, 0xa0][..])
    );
    assert!(echo[0].mask.is_some());
    assert_eq!(pair.c2s_ok(), [Owned::Close(Some((4000, String::new())))]);
    assert_eq!(pair.server.sender().state(), CloseState::Closed);
    assert!(pair.server.sender().pending().is_empty());
}

#[test]
fn after_our_close_pings_get_no_pong_but_messages_arrive() {
    let mut pair = Pair::new();
    pair.server.sender().close(1001, "").unwrap();
    let close = drain_output(&mut pair.server);
    assert_eq!(close, [0x88, 0x02, 0x03, 0xe9]);
    pair.client.sender().ping(b"late ping").unwrap();
    pair.client
        .sender()
        .send(OpCode::Binary, b"late data")
        .unwrap();
    assert_eq!(
        pair.c2s_ok(),
        [
            Owned::Ping(b"late ping".to_vec()),
            Owned::Binary(b"late data".to_vec())
        ]
    );
    // §5.5.1: after sending a Close, nothing but what was pending goes out.
    assert!(pair.server.sender().pending().is_empty());
    assert_eq!(pair.server.sender().state(), CloseState::CloseSent);
}

#[test]
fn sender_output_survives_partial_consumption() {
    let mut server = Connection::server(Config::default());
    let parts: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            let mut p = binary(50_000);
            p[0] = i;
            p
        })
        .collect();
    let mut expected = Vec::new();
    for p in &parts {
        server.sender().send(OpCode::Binary, p).unwrap();
        expected.extend_from_slice(&server_frame(OP_BINARY, p));
    }
    server.sender().ping(b"tail").unwrap();
    expected.extend_from_slice(&server_frame(OP_PING, b"tail"));
    let mut taken = 0;
    for n in [1, 999, 70_000, 10_000, 40_000, 1] {
        assert_eq!(server.sender().pending(), &expected[taken..], "at {taken}");
        assert_eq!(server.sender().pending_len(), expected.len() - taken);
        server.sender().consume(n);
        taken += n;
    }
    assert_eq!(server.sender().pending(), &expected[taken..]);
    let rest = server.sender().pending_len();
    server.sender().consume(rest);
    assert!(server.sender().pending().is_empty());
    // And the queue works again afterwards.
    server.sender().send(OpCode::Text, b"again").unwrap();
    assert_eq!(server.sender().pending(), server_frame(OP_TEXT, b"again"));
}

#[test]
fn simultaneous_close_sends_no_second_close() {
    let mut pair = Pair::new();
    pair.client.sender().close(1001, "").unwrap();
    pair.server.sender().close(1000, "").unwrap();
    assert_eq!(pair.c2s_ok(), [Owned::Close(Some((1001, String::new())))]);
    assert_eq!(pair.s2c_ok(), [Owned::Close(Some((1000, String::new())))]);
    for conn in [&mut pair.client, &mut pair.server] {
        assert_eq!(conn.sender().state(), CloseState::Closed);
        assert!(conn.sender().pending().is_empty());
    }
}

#[test]
fn empty_close_is_echoed_empty() {
    let (mut server, events) = feed_server(&cf(true, 0, OP_CLOSE, b""));
    assert_eq!(events, [Owned::Close(None)]);
    assert_eq!(drain_output(&mut server), [0x88, 0x00]);
    assert_eq!(server.sender().state(), CloseState::Closed);
}

const VALID_CODES: [u16; 16] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
];
const INVALID_CODES: [u16; 12] = [
    0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
];

#[test]
fn valid_close_codes_are_echoed() {
    for code in VALID_CODES {
        let (mut server, events) =
            feed_server(&cf(true, 0, OP_CLOSE, &close_payload(code, b"why")));
        assert_eq!(events, [Owned::Close(Some((code, "why".into())))]);
        assert_eq!(drain_output(&mut server), server_close(code), "{code}");
        // The sender may use them too.
        let mut c = Connection::client(Config::default(), 1);
        assert_eq!(c.sender().close(code, ""), Ok(()), "{code}");
    }
}

#[test]
fn invalid_close_codes_fail_with_1002() {
    for code in INVALID_CODES {
        server_fails(&cf(true, 0, OP_CLOSE, &close_payload(code, b"")), 1002);
        let mut c = Connection::client(Config::default(), 1);
        assert_eq!(
            c.sender().close(code, ""),
            Err(SendError::InvalidCloseCode),
            "{code}"
        );
    }
    // The client enforces the same table.
    client_fails(&server_frame(OP_CLOSE, &close_payload(1005, b"")), 1002);
}

#[test]
fn close_payload_of_one_byte_is_1002() {
    server_fails(&cf(true, 0, OP_CLOSE, &[0x03]), 1002);
}

#[test]
fn close_reason_not_utf8_is_1007() {
    server_fails(
        &cf(
            true,
            0,
            OP_CLOSE,
            &close_payload(
                1000,
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
            ),
        ),
        1007,
    );
    // A reason cut inside a code point is not UTF-8 either.
    server_fails(
        &cf(true, 0, OP_CLOSE, &close_payload(1000, b"ok\xe2\x82")),
        1007,
    );
}

#[test]
fn close_reason_limits_on_send() {
    let mut c = Connection::server(Config::default());
    let long = "r".repeat(124);
    assert_eq!(
        c.sender().close(1000, &long),
        Err(SendError::ControlTooLong)
    );
    assert_eq!(c.sender().close(1000, &long[..123]), Ok(()));
    let out = drain_output(&mut c);
    assert_eq!(out[..4], [0x88, 125, 0x03, 0xe8]);
    assert_eq!(out.len(), 2 + 125);
}

// ---------------------------------------------------------------------------
// Failures: framing rules (1002)
// ---------------------------------------------------------------------------

#[test]
fn reserved_opcodes_are_1002() {
    for op in [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        server_fails(&cf(true, 0, op, b"x"), 1002);
        client_fails(&server_frame(op, b""), 1002);
    }
}

#[test]
fn rsv_bits_without_extension_are_1002() {
    for rsv in [0b100, 0b010, 0b001, 0b111] {
        server_fails(&cf(true, rsv, OP_TEXT, b"x"), 1002);
        server_fails(&cf(true, rsv, OP_PING, b""), 1002);
        client_fails(&frame(true, rsv, OP_BINARY, None, b""), 1002);
    }
    // With RSV1 negotiated, RSV1 passes but RSV2 still fails.
    let mut server = Connection::server(Config::default());
    server.receiver().set_allowed_rsv(0b100);
    let mut events = Vec::new();
    let mut feeder = Feeder::default();
    feeder
        .feed(&mut server, &cf(true, 0b100, OP_BINARY, b"z"), &mut events)
        .unwrap();
    assert_eq!(events, [Owned::Binary(b"z".to_vec())]);
    let err = feeder
        .feed(&mut server, &cf(true, 0b010, OP_BINARY, b"z"), &mut events)
        .unwrap_err();
    assert_eq!(err.close_code(), 1002);
}

#[test]
fn unmasked_client_frame_is_1002() {
    server_fails(&RFC_UNMASKED_HELLO, 1002);
    server_fails(&RFC_PING, 1002);
}

#[test]
fn masked_server_frame_is_1002() {
    client_fails(&RFC_MASKED_HELLO, 1002);
    client_fails(&RFC_MASKED_PONG, 1002);
}

#[test]
fn control_frame_over_125_bytes_is_1002() {
    for op in [OP_PING, OP_PONG, OP_CLOSE] {
        // The header alone is enough to fail: no need to wait for 126 bytes.
        server_fails(&header(true, 0, op, Some(RFC_MASK), 126), 1002);
        server_fails(&cf(true, 0, op, &binary(126)), 1002);
    }
}

#[test]
fn fragmented_control_frame_is_1002() {
    for op in [OP_PING, OP_PONG, OP_CLOSE] {
        server_fails(&cf(false, 0, op, b""), 1002);
    }
}

#[test]
fn continuation_without_start_is_1002() {
    server_fails(&cf(true, 0, OP_CONT, b"lo"), 1002);
    server_fails(&cf(false, 0, OP_CONT, b""), 1002);
    // Also after a complete fragmented message.
    let events = server_fails(
        &concat(&[
            &cf(false, 0, OP_TEXT, b"a"),
            &cf(true, 0, OP_CONT, b"b"),
            &cf(true, 0, OP_CONT, b"c"),
        ]),
        1002,
    );
    assert_eq!(events, [Owned::Text("ab".into())]);
}

#[test]
fn new_data_frame_inside_fragmented_message_is_1002() {
    for op in [OP_TEXT, OP_BINARY] {
        let events = server_fails(
            &concat(&[&cf(false, 0, OP_TEXT, b"He"), &cf(true, 0, op, b"llo")]),
            1002,
        );
        assert_eq!(events, []);
    }
}

#[test]
fn length_with_top_bit_set_is_1002() {
    let mut bad = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
    bad.extend_from_slice(&RFC_MASK);
    server_fails(&bad, 1002);
    client_fails(
        &[0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        1002,
    );
}

// ---------------------------------------------------------------------------
// Failures: UTF-8 (1007)
// ---------------------------------------------------------------------------

/// "κόσμε" followed by F4 90 80 80 (beyond U+10FFFF), then "edited":
/// Autobahn 6.4.1's payload. 0x90 is the first byte that proves it invalid.
const BAD_UTF8: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited";
const BAD_AT: usize = 12;

#[test]
fn invalid_utf8_text_is_1007() {
    server_fails(&cf(true, 0, OP_TEXT, BAD_UTF8), 1007);
    server_fails(&cf(true, 0, OP_TEXT, b"\xff"), 1007);
    // ASCII for two words and more, then one bad byte.
    server_fails(&cf(true, 0, OP_TEXT, b"0123456789abcdefghij\xff"), 1007);
    // A surrogate, and a message ending inside a code point.
    server_fails(&cf(true, 0, OP_TEXT, b"\xed\xa0\x80"), 1007);
    server_fails(&cf(true, 0, OP_TEXT, b"ok\xe2\x82"), 1007);
    // Binary messages are not checked.
    let (_, events) = feed_server(&cf(true, 0, OP_BINARY, BAD_UTF8));
    assert_eq!(events, [Owned::Binary(BAD_UTF8.to_vec())]);
    client_fails(&server_frame(OP_TEXT, b"\xc0\xaf"), 1007);
}

#[test]
fn utf8_split_across_fragments() {
    // Valid: a code point cut between fragments (and a ping between them).
    let (_, events) = feed_server(&concat(&[
        &cf(false, 0, OP_TEXT, b"\xce"),
        &cf(true, 0, OP_PING, b""),
        &cf(false, 0, OP_CONT, b"\xba\xe1"),
        &cf(true, 0, OP_CONT, b"\xbd\xb9"),
    ]));
    assert_eq!(
        events,
        [
            Owned::Ping(Vec::new()),
            Owned::Text("\u{3ba}\u{1f79}".into())
        ]
    );
    // Invalid: a lead byte at the end of one fragment, ASCII at the start of
    // the next.
    let events = server_fails(
        &concat(&[
            &cf(false, 0, OP_TEXT, b"ok\xce"),
            &cf(true, 0, OP_CONT, b"A"),
        ]),
        1007,
    );
    assert_eq!(events, []);
    // Invalid: the final fragment ends inside a code point.
    server_fails(
        &concat(&[
            &cf(false, 0, OP_TEXT, b"ok"),
            &cf(true, 0, OP_CONT, b"\xf0\x9f"),
        ]),
        1007,
    );
}

#[test]
fn invalid_utf8_fails_at_the_first_invalid_byte() {
    // One frame, fed a byte at a time: the read that delivers byte BAD_AT
    // fails, long before the frame is complete.
    let wire = cf(true, 0, OP_TEXT, BAD_UTF8);
    let header_len = 6;
    let mut server = Connection::server(Config::default());
    let mut feeder = Feeder::default();
    let mut events = Vec::new();
    for (i, b) in wire.iter().enumerate() {
        let r = feeder.feed(&mut server, &[*b], &mut events);
        if i < header_len + BAD_AT {
            r.unwrap_or_else(|e| panic!("failed early at byte {i}: {e}"));
        } else {
            assert_eq!(r.unwrap_err().close_code(), 1007, "byte {i}");
            assert_eq!(drain_output(&mut server), server_close(1007));
            break;
        }
    }
    // The same inside the second fragment of a message whose declared length
    // has mostly not arrived.
    let mut input = cf(false, 0, OP_TEXT, b"fine");
    let mut second = header(true, 0, OP_CONT, Some(RFC_MASK), 1000);
    let bad: Vec<u8> = b"ab\xed\xa0"
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ RFC_MASK[i % 4])
        .collect();
    second.extend_from_slice(&bad);
    input.extend_from_slice(&second);
    server_fails(&input, 1007);
}

// ---------------------------------------------------------------------------
// Failures: limits (1009, 1008) and memory
// ---------------------------------------------------------------------------

fn limits(frame: u64, message: u64, fragments: u32) -> Config {
    Config {
        max_frame_size: frame,
        max_message_size: message,
        max_fragments: fragments,
        ..Config::default()
    }
}

#[test]
fn frame_over_max_frame_size_is_1009() {
    let cfg = limits(1000, 10_000, 100);
    // At the limit: fine.
    let mut server = Connection::server(cfg);
    let mut events = Vec::new();
    Feeder::default()
        .feed(
            &mut server,
            &cf(true, 0, OP_BINARY, &binary(1000)),
            &mut events,
        )
        .unwrap();
    assert_eq!(events, [Owned::Binary(binary(1000))]);
    // One over: the header alone fails, in a single frame and in a fragment.
    server_fails_with(cfg, &header(true, 0, OP_BINARY, Some(RFC_MASK), 1001), 1009);
    server_fails_with(
        cfg,
        &concat(&[
            &cf(false, 0, OP_TEXT, b"a"),
            &header(true, 0, OP_CONT, Some(RFC_MASK), 1001),
        ]),
        1009,
    );
}

#[test]
fn message_over_max_message_size_is_1009() {
    let cfg = limits(1000, 1500, 100);
    let ok = concat(&[
        &cf(false, 0, OP_BINARY, &binary(1000)),
        &cf(true, 0, OP_CONT, &binary(500)),
    ]);
    let mut server = Connection::server(cfg);
    let mut events = Vec::new();
    Feeder::default()
        .feed(&mut server, &ok, &mut events)
        .unwrap();
    assert_eq!(events.len(), 1);
    let events = server_fails_with(
        cfg,
        &concat(&[
            &cf(false, 0, OP_BINARY, &binary(1000)),
            &header(true, 0, OP_CONT, Some(RFC_MASK), 501),
        ]),
        1009,
    );
    assert_eq!(events, []);
    // A single frame over the message limit (but within the frame limit).
    server_fails_with(
        limits(4000, 1500, 100),
        &header(true, 0, OP_TEXT, Some(RFC_MASK), 1501),
        1009,
    );
}

#[test]
fn too_many_fragments_is_1008() {
    let cfg = limits(1000, 10_000, 3);
    let three = concat(&[
        &cf(false, 0, OP_TEXT, b"a"),
        &cf(false, 0, OP_CONT, b"b"),
        &cf(true, 0, OP_CONT, b"c"),
    ]);
    let mut server = Connection::server(cfg);
    let mut events = Vec::new();
    Feeder::default()
        .feed(&mut server, &three, &mut events)
        .unwrap();
    assert_eq!(events, [Owned::Text("abc".into())]);
    let events = server_fails_with(
        cfg,
        &concat(&[
            &three,
            &cf(false, 0, OP_TEXT, b"a"),
            &cf(false, 0, OP_CONT, b"b"),
            &cf(false, 0, OP_CONT, b"c"),
            &cf(true, 0, OP_CONT, b"d"),
        ]),
        1008,
    );
    // The first message, of exactly three fragments, was delivered.
    assert_eq!(events, [Owned::Text("abc".into())]);
}

#[test]
fn declared_length_is_never_reserved() {
    // 2^62 bytes declared against a small limit: refused from the header,
    // and nothing near that size was asked of the allocator.
    let mut server = Connection::server(limits(1 << 20, 1 << 20, 100));
    let mut input = header(true, 0, OP_BINARY, Some(RFC_MASK), 1 << 62);
    reset_largest_allocation();
    let err = server.read(&mut input).unwrap_err();
    assert_eq!(err.close_code(), 1009);
    assert!(
        largest_allocation() < 4096,
        "allocated {} bytes",
        largest_allocation()
    );

    // 1 GiB declared within a 2 GiB limit, only 10 bytes sent: they are
    // consumed into a buffer sized by what arrived, not by the declaration.
    for op in [OP_BINARY, OP_TEXT] {
        let mut server = Connection::server(limits(2 << 30, 2 << 30, 100));
        let mut input = header(true, 0, op, Some(RFC_MASK), 1 << 30);
        input.extend(
            b"0123456789"
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ RFC_MASK[i % 4]),
        );
        let len = input.len();
        reset_largest_allocation();
        let r = server.read(&mut input).unwrap();
        assert_eq!((r.consumed, r.event), (len, None));
        assert!(
            largest_allocation() < 64 * 1024,
            "allocated {} bytes for 10 received",
            largest_allocation()
        );
        // The same declared as the first of several fragments.
        let mut server = Connection::server(limits(2 << 30, 2 << 30, 100));
        let mut input = header(false, 0, op, Some(RFC_MASK), 1 << 30);
        input.push(b'a' ^ RFC_MASK[0]);
        reset_largest_allocation();
        let r = server.read(&mut input).unwrap();
        assert_eq!(r.event, None);
        assert!(largest_allocation() < 64 * 1024);
    }
}

#[test]
fn message_in_place_needs_no_allocation() {
    // A complete single-frame message is unmasked in the caller's buffer:
    // the read itself allocates nothing.
    let mut server = Connection::server(Config::default());
    let mut input = cf(true, 0, OP_TEXT, utf8_text(1000).as_bytes());
    let before = thread_allocations();
    let r = server.read(&mut input).unwrap();
    let event = r
        .event
        .map(|e| matches!(e, Event::Message(Message::Text(t)) if t.len() == 1000));
    assert_eq!(thread_allocations(), before);
    assert_eq!(event, Some(true));
}
