//! The real reactor on 127.0.0.1 (port 0), driven by a blocking
//! `std::net::TcpStream` client that writes masked frames by hand. Each test
//! runs its own server in a thread and stops it with the `Stopper`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use wsreactor::proto::Config;
use wsreactor::{ConnId, Ctx, Handler, Message, ServerConfig};

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

/// What the handler saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Open(ConnId),
    Pong(ConnId, Vec<u8>),
    Close(ConnId, u16, String),
}

#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn push(&self, s: Seen) {
        self.0.lock().unwrap().push(s);
    }

    fn snapshot(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    /// Wait (up to the I/O timeout) for an entry matching `f`.
    fn wait_for(&self, what: &str, f: impl Fn(&Seen) -> bool) -> Seen {
        let start = Instant::now();
        loop {
            if let Some(s) = self.snapshot().into_iter().find(&f) {
                return s;
            }
            assert!(
                start.elapsed() < IO_TIMEOUT,
                "timed out waiting for {what}; log: {:?}",
                self.snapshot()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The `n`th connection opened (from 0).
    fn opened(&self, n: usize) -> ConnId {
        let start = Instant::now();
        loop {
            let ids: Vec<ConnId> = self
                .snapshot()
                .into_iter()
                .filter_map(|s| match s {
                    Seen::Open(id) => Some(id),
                    _ => None,
                })
                .collect();
            if let Some(id) = ids.get(n) {
                return *id;
            }
            assert!(start.elapsed() < IO_TIMEOUT, "connection {n} never opened");
            std::thread::sleep(Duration::from_millis(2));
        }
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

    /// The close reported for `id`, waiting for it.
    fn close_of(&self, id: ConnId) -> (u16, String) {
        match self.wait_for("on_close", |s| matches!(s, Seen::Close(i, ..) if *i == id)) {
            Seen::Close(_, code, reason) => (code, reason),
            _ => unreachable!(),
        }
    }
}

/// Echoes every message, except the text "close-me", which starts a close
/// handshake with 4001 "bye"; the text "stall" keeps the reactor busy for
/// 200 ms before it is echoed (so bytes pile up in other sockets meanwhile).
#[derive(Debug)]
struct TestHandler {
    log: Log,
}

impl Handler for TestHandler {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        self.log.push(Seen::Open(ctx.id()));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        if msg == Message::Text("close-me") {
            ctx.close(4001, "bye").expect("close");
        } else {
            if msg == Message::Text("stall") {
                std::thread::sleep(STALL);
            }
            ctx.send(msg).expect("echo");
        }
    }

    fn on_pong(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {
        self.log.push(Seen::Pong(ctx.id(), payload.to_vec()));
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        let id = ctx.id();
        self.log.push(Seen::Close(id, code, reason.to_owned()));
    }
}

const STALL: Duration = Duration::from_millis(200);

fn serve(config: ServerConfig) -> (Running<TestHandler>, Log) {
    let log = Log::default();
    let running = start(config, TestHandler { log: log.clone() });
    (running, log)
}

fn serve_default() -> (Running<TestHandler>, Log) {
    serve(ServerConfig::default())
}

fn close_bytes(code: u16) -> [u8; 2] {
    code.to_be_bytes()
}

/// Expected length of a header with the minimal length encoding, unmasked.
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

// ---------------------------------------------------------------------------
// Opening handshake
// ---------------------------------------------------------------------------

#[test]
fn handshake_accept_exact_bytes() {
    let (server, log) = serve_default();
    // `connect` asserts the exact 101, Sec-WebSocket-Accept of the RFC key
    // included.
    let mut c = WsClient::connect(server.addr);
    let id = log.opened(0);
    c.send(OP_CLOSE, &close_payload(1000, b""));
    c.expect_close(&close_bytes(1000));
    c.expect_eof();
    assert_eq!(log.close_of(id), (1000, String::new()));
    server.stop();
}

#[test]
fn handshake_written_a_byte_at_a_time() {
    let (server, log) = serve_default();
    let mut s = tcp(server.addr);
    for b in upgrade_request("/chat") {
        s.write_all(&[b]).unwrap();
    }
    let mut buf = Vec::new();
    assert_eq!(
        lossy(&read_http_head(&mut s, &mut buf)),
        lossy(&expected_101())
    );
    let mut c = WsClient::from_parts(s, buf);
    c.send(OP_TEXT, b"after dribble");
    let f = c.recv();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OP_TEXT, &b"after dribble"[..])
    );
    log.opened(0);
    server.stop();
}

/// A request with the RFC headers, one replaced or removed.
fn request_with(line: &str, change: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut headers = vec![
        ("Host", "server.example.com".to_string()),
        ("Upgrade", "websocket".to_string()),
        ("Connection", "Upgrade".to_string()),
        ("Sec-WebSocket-Key", RFC_KEY.to_string()),
        ("Sec-WebSocket-Version", "13".to_string()),
    ];
    for (name, value) in change {
        match (headers.iter().position(|(n, _)| n == name), value) {
            (Some(i), Some(v)) => headers[i].1 = v.to_string(),
            (Some(i), None) => {
                headers.remove(i);
            }
            (None, Some(v)) => headers.push((name, v.to_string())),
            (None, None) => {}
        }
    }
    let mut out = format!("{line}\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Send `request`, read the whole answer up to EOF (the server must close),
/// check its status line, the given header lines and the body length.
fn expect_rejected(addr: std::net::SocketAddr, request: &[u8], status: &str, lines: &[&str]) {
    let mut s = tcp(addr);
    s.write_all(request).unwrap();
    let answer = read_to_eof(&mut s);
    let text = lossy(&answer);
    assert!(
        text.starts_with(&format!("HTTP/1.1 {status}\r\n")),
        "expected {status}, got {text:?}"
    );
    for line in lines {
        assert!(
            text.contains(&format!("\r\n{line}\r\n")),
            "{status}: no {line:?} in {text:?}"
        );
    }
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length");
    assert_eq!(length.parse::<usize>().unwrap(), body.len(), "{text:?}");
}

#[test]
fn reject_matrix() {
    let (server, log) = serve_default();
    let a = server.addr;
    let get = "GET /chat HTTP/1.1";
    expect_rejected(
        a,
        &request_with("POST /chat HTTP/1.1", &[]),
        "405 Method Not Allowed",
        &["Allow: GET", "Connection: close"],
    );
    for change in [
        ("Sec-WebSocket-Key", None),
        ("Sec-WebSocket-Key", Some("c2hvcnQ=")),
        ("Connection", None),
        ("Connection", Some("keep-alive")),
        ("Upgrade", Some("h2c")),
        ("Host", None),
    ] {
        expect_rejected(
            a,
            &request_with(get, &[change]),
            "400 Bad Request",
            &["Connection: close"],
        );
    }
    expect_rejected(
        a,
        &request_with("GET /chat HTTP/1.0", &[]),
        "400 Bad Request",
        &[],
    );
    for version in [Some("8"), Some("14"), None] {
        expect_rejected(
            a,
            &request_with(get, &[("Sec-WebSocket-Version", version)]),
            "426 Upgrade Required",
            &["Sec-WebSocket-Version: 13", "Upgrade: websocket"],
        );
    }
    // A header block over 8 KiB that never ends: 431 without waiting for it.
    let mut huge = b"GET /chat HTTP/1.1\r\nHost: x\r\nX-Filler: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 9000));
    expect_rejected(a, &huge, "431 Request Header Fields Too Large", &[]);
    // More than 64 header fields.
    let many: Vec<(String, Option<String>)> = (0..64)
        .map(|i| (format!("X-H{i}"), Some("v".to_string())))
        .collect();
    let many: Vec<(&str, Option<&str>)> = many
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_deref()))
        .collect();
    expect_rejected(
        a,
        &request_with(get, &many),
        "431 Request Header Fields Too Large",
        &[],
    );
    expect_rejected(a, b"\x16\x03\x01\x02\x00\r\n\r\n", "400 Bad Request", &[]);
    expect_rejected(
        a,
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        "505 HTTP Version Not Supported",
        &[],
    );
    // None of them opened a WebSocket.
    assert_eq!(log.snapshot(), []);
    server.stop();
}

#[test]
fn healthz_is_200_and_plain_get_is_426() {
    let (server, log) = serve_default();
    let mut s = tcp(server.addr);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(
        lossy(&read_to_eof(&mut s)),
        "HTTP/1.1 200 OK\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Connection: close\r\n\
         Content-Length: 3\r\n\
         \r\n\
         ok\n"
    );
    let mut s = tcp(server.addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(
        lossy(&read_to_eof(&mut s)),
        "HTTP/1.1 426 Upgrade Required\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Connection: Upgrade, close\r\n\
         Upgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Content-Length: 47\r\n\
         \r\n\
         this is a WebSocket endpoint: upgrade required\n"
    );
    assert_eq!(log.snapshot(), []);
    server.stop();
}

#[test]
fn header_dribble_is_closed_after_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);
    let (server, log) = serve(ServerConfig {
        handshake_timeout: timeout,
        ..ServerConfig::default()
    });
    // A finished handshake is not subject to the timeout.
    let mut good = WsClient::connect(server.addr);

    // A partial request, then nothing: closed (EOF, no answer) at the deadline.
    let started = Instant::now();
    let mut idle = tcp(server.addr);
    idle.write_all(b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\n")
        .unwrap();
    // A slow dribble: a byte every 50 ms does not extend the deadline.
    let mut dribble = tcp(server.addr);
    dribble
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let request = upgrade_request("/chat");
    let mut sent = 0;
    let dribble_closed = loop {
        if sent < request.len() && dribble.write_all(&request[sent..sent + 1]).is_ok() {
            sent += 1;
        }
        let mut b = [0u8; 64];
        match dribble.read(&mut b) {
            Ok(0) => break started.elapsed(),
            Ok(n) => panic!("answer to an unfinished request: {:?}", lossy(&b[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break started.elapsed(),
            Err(e) => panic!("{e}"),
        }
        assert!(started.elapsed() < IO_TIMEOUT, "the dribble was never cut");
    };
    assert!(sent < request.len(), "the whole request got through");
    assert!(
        dribble_closed >= timeout - Duration::from_millis(50) && dribble_closed < 4 * timeout,
        "dribble closed after {dribble_closed:?}"
    );
    assert!(read_to_eof(&mut idle).is_empty());
    let idle_closed = started.elapsed();
    assert!(
        idle_closed < 4 * timeout,
        "idle closed after {idle_closed:?}"
    );

    // The upgraded connection outlived the timeout.
    assert!(started.elapsed() >= timeout);
    good.send(OP_TEXT, b"still here");
    let f = good.recv();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OP_TEXT, &b"still here"[..])
    );
    assert_eq!(log.closes(), []);
    server.stop();
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

#[test]
fn echo_text_and_binary_of_every_size_class() {
    let (server, _log) = serve_default();
    let mut c = WsClient::connect(server.addr);
    for len in [0, 1, 125, 126, 65535, 65536, 1 << 20] {
        for (op, payload) in [
            (OP_TEXT, utf8_text(len).into_bytes()),
            (OP_BINARY, binary(len)),
        ] {
            c.send(op, &payload);
            let f = c.recv();
            assert_eq!((f.fin, f.opcode), (true, op), "len {len}");
            assert_eq!(f.header_len, header_len(len), "len {len}");
            assert!(f.payload == payload, "payload of {len} bytes differs");
        }
    }
    server.stop();
}

#[test]
fn pipelined_messages_in_one_write() {
    let (server, _log) = serve_default();
    let mut c = WsClient::connect(server.addr);
    let mut batch = Vec::new();
    for i in 0..200u32 {
        let f = c.frame(true, OP_BINARY, &i.to_be_bytes());
        batch.extend_from_slice(&f);
    }
    c.send_raw(&batch);
    for i in 0..200u32 {
        let f = c.recv();
        assert_eq!(
            (f.opcode, f.payload.as_slice()),
            (OP_BINARY, &i.to_be_bytes()[..])
        );
    }
    server.stop();
}

#[test]
fn many_connections_interleaved() {
    let (server, _log) = serve_default();
    let mut clients: Vec<WsClient> = (0..50).map(|_| WsClient::connect(server.addr)).collect();
    for round in 0..3u8 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(OP_BINARY, &[round, i as u8]);
        }
        for (i, c) in clients.iter_mut().enumerate().rev() {
            assert_eq!(c.recv().payload, [round, i as u8]);
        }
    }
    server.stop();
}

#[test]

fn backpressure_pauses_reading_and_loses_nothing() {
    // The client writes 4 MiB of messages without reading: the server's
    // output for it outgrows max_pending_output, so it stops reading; once
    // the client reads, every echo arrives, in order.
    let (server, _log) = serve(ServerConfig {
        max_pending_output: 64 * 1024,
        ..ServerConfig::default()
    });
    let mut c = WsClient::connect(server.addr);
    const N: usize = 256;
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let mut p = binary(16 * 1024);
            p[..4].copy_from_slice(&(i as u32).to_be_bytes());
            c.frame(true, OP_BINARY, &p)
        })
        .collect();
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for f in frames {
            writer.write_all(&f).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..N {
        let f = c.recv();
        assert_eq!(f.payload.len(), 16 * 1024);
        assert_eq!(
            f.payload[..4],
            (i as u32).to_be_bytes(),
            "echo {i} out of order"
        );
        assert_eq!(f.payload[4..], binary(16 * 1024)[4..]);
    }
    sender.join().unwrap();
    server.stop();
}

#[test]
fn replies_sent_in_place_survive_partial_writes() {
    // Messages that each arrive alone in a read are echoed from the read
    // buffer (header written in front of the payload). The client reads
    // nothing at first, so the kernel soon takes only part of a reply and
    // the rest must be queued from the read buffer before it is reused.
    let (server, _log) = serve(ServerConfig {
        max_pending_output: 256 * 1024,
        ..ServerConfig::default()
    });
    let mut c = WsClient::connect(server.addr);
    const N: usize = 300;
    const LEN: usize = 48 * 1024;
    let payload = |i: usize| {
        let mut p = binary(LEN);
        p[..4].copy_from_slice(&(i as u32).to_be_bytes());
        p[LEN - 4..].copy_from_slice(&(i as u32).to_le_bytes());
        p
    };
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|i| c.frame(true, OP_BINARY, &payload(i)))
        .collect();
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for f in frames {
            writer.write_all(&f).unwrap();
            // One message per read on the server's side.
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    std::thread::sleep(Duration::from_millis(800));
    for i in 0..N {
        let f = c.recv();
        assert_eq!((f.fin, f.opcode, f.header_len), (true, OP_BINARY, 4));
        assert!(f.payload == payload(i), "echo {i} differs");
    }
    sender.join().unwrap();
    server.stop();
}

#[test]
fn fragmented_echo_with_ping_between_fragments() {
    let (server, _log) = serve_default();
    let mut c = WsClient::connect(server.addr);
    c.send_frame(false, OP_TEXT, b"Hel");
    c.send_frame(true, OP_PING, b"mid");
    c.send_frame(false, OP_CONT, b"l");
    c.send_frame(true, OP_CONT, b"o");
    let pong = c.recv();
    assert_eq!(
        (pong.fin, pong.opcode, pong.payload.as_slice()),
        (true, OP_PONG, &b"mid"[..])
    );
    // The message comes back as one frame: exactly the RFC's unmasked "Hello".
    let f = c.recv();
    assert_eq!(
        (f.fin, f.opcode, f.header_len, f.payload.as_slice()),
        (true, OP_TEXT, 2, &b"Hello"[..])
    );
    // A large binary message in three fragments, each in several writes.
    let big = binary(300_000);
    for (i, part) in big.chunks(100_000).enumerate() {
        let op = if i == 0 { OP_BINARY } else { OP_CONT };
        let fr = c.frame(i == 2, op, part);
        for piece in fr.chunks(7_000) {
            c.send_raw(piece);
        }
    }
    let f = c.recv();
    assert_eq!((f.fin, f.opcode, f.header_len), (true, OP_BINARY, 10));
    assert!(f.payload == big);
    server.stop();
}

#[test]
fn ping_pong_and_unsolicited_pong() {
    let (server, log) = serve_default();
    let mut c = WsClient::connect(server.addr);
    let id = log.opened(0);
    for payload in [b"abc".to_vec(), Vec::new(), binary(125)] {
        c.send(OP_PING, &payload);
        let f = c.recv();
        assert_eq!((f.fin, f.opcode, &f.payload), (true, OP_PONG, &payload));
    }
    // An unsolicited pong is reported and not answered: the next frame back
    // is the echo.
    c.send(OP_PONG, b"unsolicited");
    c.send(OP_TEXT, b"after");
    let f = c.recv();
    assert_eq!((f.opcode, f.payload.as_slice()), (OP_TEXT, &b"after"[..]));
    assert_eq!(
        log.wait_for("on_pong", |s| matches!(s, Seen::Pong(..))),
        Seen::Pong(id, b"unsolicited".to_vec())
    );
    server.stop();
}

#[test]
fn frames_in_the_same_write_as_the_request_are_processed() {
    let (server, _log) = serve_default();
    let mut s = tcp(server.addr);
    let mut bytes = upgrade_request("/chat");
    bytes.extend_from_slice(&client_frame(OP_TEXT, b"early"));
    bytes.extend_from_slice(&client_frame(OP_PING, b"p"));
    bytes.extend_from_slice(&client_frame(OP_BINARY, &binary(300)));
    s.write_all(&bytes).unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        lossy(&read_http_head(&mut s, &mut buf)),
        lossy(&expected_101())
    );
    let mut c = WsClient::from_parts(s, buf);
    let f = c.recv();
    assert_eq!((f.opcode, f.payload.as_slice()), (OP_TEXT, &b"early"[..]));
    let f = c.recv();
    assert_eq!((f.opcode, f.payload.as_slice()), (OP_PONG, &b"p"[..]));
    let f = c.recv();
    assert_eq!((f.opcode, f.payload), (OP_BINARY, binary(300)));
    server.stop();
}

#[test]
fn a_frame_cut_behind_the_request_is_completed_later() {
    let (server, _log) = serve_default();
    let mut s = tcp(server.addr);
    let f = client_frame(OP_TEXT, "κόσμε and more".as_bytes());
    let mut bytes = upgrade_request("/chat");
    bytes.extend_from_slice(&f[..4]);
    s.write_all(&bytes).unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        lossy(&read_http_head(&mut s, &mut buf)),
        lossy(&expected_101())
    );
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(&f[4..]).unwrap();
    let mut c = WsClient::from_parts(s, buf);
    let echo = c.recv();
    assert_eq!(echo.payload, "κόσμε and more".as_bytes());
    server.stop();
}

#[test]
fn connections_over_max_connections_are_closed() {
    let (server, log) = serve(ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    });
    let a = WsClient::connect(server.addr);
    let mut b = WsClient::connect(server.addr);
    // The third is accepted, told 503 and closed at once.
    let mut third = tcp(server.addr);
    assert_eq!(
        lossy(&read_to_eof(&mut third)),
        "HTTP/1.1 503 Service Unavailable\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 20\r\n\
         Connection: close\r\n\
         \r\n\
         too many connections\n"
    );
    // Once one leaves, a new one gets in.
    let a_id = log.opened(0);
    drop(a);
    assert_eq!(log.close_of(a_id).0, 1006);
    let mut d = WsClient::connect(server.addr);
    d.send(OP_TEXT, b"in");
    assert_eq!(d.recv().payload, b"in");
    b.send(OP_TEXT, b"b");
    assert_eq!(b.recv().payload, b"b");
    server.stop();
}

// ---------------------------------------------------------------------------
// Closing
// ---------------------------------------------------------------------------

const VALID_CODES: [u16; 16] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
];
const INVALID_CODES: [u16; 9] = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000];

/// Open a connection, send `payload` as a close frame, expect `echo` as the
/// close payload back, then EOF; return the close the handler saw.
fn close_with(
    server: &Running<TestHandler>,
    log: &Log,
    n: usize,
    payload: &[u8],
    echo: &[u8],
) -> (u16, String) {
    let mut c = WsClient::connect(server.addr);
    let id = log.opened(n);
    c.send(OP_CLOSE, payload);
    c.expect_close(echo);
    c.expect_eof();
    log.close_of(id)
}

#[test]
fn close_code_rules() {
    let (server, log) = serve_default();
    let mut n = 0;
    for code in VALID_CODES {
        let seen = close_with(
            &server,
            &log,
            n,
            &close_payload(code, b"why"),
            &close_bytes(code),
        );
        assert_eq!(seen, (code, "why".to_string()));
        n += 1;
    }
    for code in INVALID_CODES {
        let (seen, _) = close_with(
            &server,
            &log,
            n,
            &close_payload(code, b""),
            &close_bytes(1002),
        );
        assert_eq!(seen, 1002, "code {code}");
        n += 1;
    }
    // No code at all: echoed empty, reported as 1005.
    assert_eq!(
        close_with(&server, &log, n, b"", b""),
        (1005, String::new())
    );
    n += 1;
    // One byte of payload, and a reason that is not UTF-8.
    assert_eq!(
        close_with(&server, &log, n, &[0x03], &close_bytes(1002)).0,
        1002
    );
    n += 1;
    let bad_reason = close_payload(1000, b"\xed\xa0\x80");
    assert_eq!(
        close_with(&server, &log, n, &bad_reason, &close_bytes(1007)).0,
        1007
    );
    server.stop();
}

#[test]
fn server_initiated_close_then_tcp_close() {
    let (server, log) = serve_default();
    let mut c = WsClient::connect(server.addr);
    let id = log.opened(0);
    c.send(OP_TEXT, b"close-me");
    c.expect_close(&close_payload(4001, b"bye"));
    // The client answers; the server then closes TCP first.
    c.send(OP_CLOSE, &close_bytes(4001));
    c.expect_eof();
    assert_eq!(log.close_of(id), (4001, String::new()));
    server.stop();
}

#[test]
fn unanswered_close_times_out() {
    let timeout = Duration::from_millis(300);
    let (server, log) = serve(ServerConfig {
        close_timeout: timeout,
        ..ServerConfig::default()
    });
    let mut c = WsClient::connect(server.addr);
    let id = log.opened(0);
    let started = Instant::now();
    c.send(OP_TEXT, b"close-me");
    c.expect_close(&close_payload(4001, b"bye"));
    c.expect_eof();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= timeout - Duration::from_millis(50) && elapsed < 4 * timeout,
        "closed after {elapsed:?}"
    );
    assert_eq!(log.close_of(id).0, 1006);
    server.stop();
}

/// Send `frames` on a fresh connection; expect a close with `code`, then EOF,
/// and `code` reported to the handler.
fn expect_failure(server: &Running<TestHandler>, log: &Log, n: usize, frames: &[u8], code: u16) {
    let mut c = WsClient::connect(server.addr);
    let id = log.opened(n);
    c.send_raw(frames);
    c.expect_close(&close_bytes(code));
    c.expect_eof();
    assert_eq!(log.close_of(id).0, code);
}

#[test]
fn invalid_utf8_is_1007() {
    let (server, log) = serve_default();
    expect_failure(&server, &log, 0, &client_frame(OP_TEXT, b"ok\xff"), 1007);
    // Fail fast: the frame declares 1000 bytes and only an invalid prefix
    // arrives; the close comes without waiting for the rest.
    let mut partial = header(true, 0, OP_TEXT, Some(RFC_MASK), 1000);
    partial.extend(
        b"abc\xf4\x90"
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ RFC_MASK[i % 4]),
    );
    expect_failure(&server, &log, 1, &partial, 1007);
    // Split across fragments.
    let split = [
        frame(false, 0, OP_TEXT, Some(RFC_MASK), b"ok\xce"),
        frame(true, 0, OP_CONT, Some(RFC_MASK), b"A"),
    ]
    .concat();
    expect_failure(&server, &log, 2, &split, 1007);
    server.stop();
}

#[test]
fn protocol_violations_are_1002() {
    let (server, log) = serve_default();
    let cases = [
        // Unmasked client frame (RFC 6455 §5.7's unmasked "Hello").
        vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
        frame(true, 0, 0x3, Some(RFC_MASK), b""),
        frame(true, 0b100, OP_TEXT, Some(RFC_MASK), b"x"),
        frame(true, 0, OP_CONT, Some(RFC_MASK), b"x"),
        frame(false, 0, OP_PING, Some(RFC_MASK), b""),
        header(true, 0, OP_PING, Some(RFC_MASK), 126),
    ];
    for (n, bytes) in cases.iter().enumerate() {
        expect_failure(&server, &log, n, bytes, 1002);
    }
    server.stop();
}

#[test]
fn oversize_is_1009_and_too_many_fragments_1008() {
    let (server, log) = serve(ServerConfig {
        protocol: Config {
            max_frame_size: 1024,
            max_message_size: 2048,
            max_fragments: 4,
            ..Config::default()
        },
        ..ServerConfig::default()
    });
    // At the limits: echoed.
    let mut c = WsClient::connect(server.addr);
    c.send(OP_BINARY, &binary(1024));
    assert_eq!(c.recv().payload, binary(1024));
    drop(c);
    // A frame over the limit: refused from its header.
    expect_failure(
        &server,
        &log,
        1,
        &header(true, 0, OP_BINARY, Some(RFC_MASK), 1025),
        1009,
    );
    // A message over the limit in frames within it.
    let over = [
        frame(false, 0, OP_BINARY, Some(RFC_MASK), &binary(1024)),
        frame(false, 0, OP_CONT, Some(RFC_MASK), &binary(1024)),
        frame(true, 0, OP_CONT, Some(RFC_MASK), &binary(1)),
    ]
    .concat();
    expect_failure(&server, &log, 2, &over, 1009);
    let five: Vec<u8> = (0..5)
        .flat_map(|i| {
            let op = if i == 0 { OP_TEXT } else { OP_CONT };
            frame(i == 4, 0, op, Some(RFC_MASK), b"f")
        })
        .collect();
    expect_failure(&server, &log, 3, &five, 1008);
    server.stop();
}

#[test]
fn abrupt_disconnect_is_1006_and_others_keep_working() {
    let (server, log) = serve_default();
    let mut a = WsClient::connect(server.addr);
    let a_id = log.opened(0);
    let mut b = WsClient::connect(server.addr);
    let b_id = log.opened(1);
    // Half a frame, then the client vanishes (the FIN a little later, so it
    // raises its own readiness edge; see the ignored test below for both at
    // once).
    let f = a.frame(true, OP_BINARY, &binary(5000));
    a.send_raw(&f[..2500]);
    std::thread::sleep(Duration::from_millis(50));
    drop(a);
    // (The reason of a 1006 is the server's own wording: not checked.)
    assert_eq!(log.close_of(a_id).0, 1006);
    // A connection that vanishes inside a frame header, too.
    let mut c = WsClient::connect(server.addr);
    let c_id = log.opened(2);
    c.send_raw(&[0x82, 0xfe, 0x10]);
    std::thread::sleep(Duration::from_millis(50));
    drop(c);
    assert_eq!(log.close_of(c_id).0, 1006);
    // The others are unaffected.
    b.send(OP_TEXT, b"still serving");
    let f = b.recv();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OP_TEXT, &b"still serving"[..])
    );
    let mut d = WsClient::connect(server.addr);
    d.send(OP_BINARY, &[7; 10]);
    assert_eq!(d.recv().payload, [7; 10]);
    assert!(log.closes().iter().all(|(id, ..)| *id != b_id));
    server.stop();
}

#[test]

fn disconnect_arriving_with_the_last_data_is_noticed() {
    let (server, log) = serve_default();
    let mut a = WsClient::connect(server.addr);
    let a_id = log.opened(0);
    let mut b = WsClient::connect(server.addr);
    log.opened(1);
    // Keep the reactor busy while A's last bytes and its FIN both arrive, so
    // one readiness edge covers both.
    b.send(OP_TEXT, b"stall");
    std::thread::sleep(STALL / 4);
    let f = a.frame(true, OP_BINARY, &binary(5000));
    a.send_raw(&f[..2500]);
    drop(a);
    let echo = b.recv();
    assert_eq!(echo.payload, b"stall");
    assert_eq!(log.close_of(a_id).0, 1006);
    // The same with a complete message right before the FIN: it is echoed
    // (into a closed socket) and the disconnect must still be reported.
    let mut c = WsClient::connect(server.addr);
    let c_id = log.opened(2);
    b.send(OP_TEXT, b"stall");
    std::thread::sleep(STALL / 4);
    c.send(OP_TEXT, b"last words");
    drop(c);
    assert_eq!(b.recv().payload, b"stall");
    assert_eq!(log.close_of(c_id).0, 1006);
    server.stop();
}

#[test]
fn stop_reports_open_connections() {
    let (server, log) = serve_default();
    let mut c = WsClient::connect(server.addr);
    let id = log.opened(0);
    let handler = server.stop();
    let closes: Vec<(ConnId, u16)> = handler
        .log
        .closes()
        .into_iter()
        .map(|(id, code, _)| (id, code))
        .collect();
    assert_eq!(closes, [(id, 1006)]);
    // The socket is closed with the reactor.
    c.expect_eof();
}
