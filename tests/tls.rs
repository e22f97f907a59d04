//! `wss://` on the reactor, with certificates made at test time: echo over
//! a full chain with ALPN and resumption, large, fragmented and pipelined
//! messages, permessage-deflate over TLS, a client reconnecting over TLS,
//! the handshake timeout over a stalled TLS handshake, garbage and plain
//! HTTP on the TLS port (on every reactor of a cluster too), and
//! certificates our client must refuse.

mod common;
mod tls_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT};
use tls_support::{Pki, TlsWs};
use wsreactor::client::{ReconnectPolicy, Reconnector};
use wsreactor::rustls::{self, HandshakeKind, ProtocolVersion};
use wsreactor::{
    Accept, Cluster, ConnId, Control, Ctx, Handler, Message, Reactor, Remote, Server, ServerConfig,
};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        let _ = ctx.send(msg);
    }
}

fn tls_config(pki_leaf: &tls_support::Leaf) -> ServerConfig {
    ServerConfig {
        tls: Some(pki_leaf.acceptor()),
        ..ServerConfig::default()
    }
}

fn tls12_only(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.root_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[test]
fn echo_over_a_full_chain_with_alpn_and_resumption_in_tls_13_and_12() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost", "127.0.0.1"], false);
    let server = start(tls_config(&leaf), Echo);
    for (config, version) in [
        (pki.client_config(), ProtocolVersion::TLSv1_3),
        (tls12_only(&pki), ProtocolVersion::TLSv1_2),
    ] {
        for round in 0..2 {
            let mut c = TlsWs::connect(server.addr, config.clone(), "localhost");
            assert_eq!(c.stream.conn.protocol_version(), Some(version));
            if version == ProtocolVersion::TLSv1_3 {
                assert_eq!(c.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
            }
            let kind = c.stream.conn.handshake_kind();
            if round == 0 {
                assert_eq!(kind, Some(HandshakeKind::Full), "{version:?}");
            } else {
                assert_eq!(kind, Some(HandshakeKind::Resumed), "{version:?}");
            }
            c.send(OP_TEXT, b"hello over tls");
            let f = c.recv();
            assert_eq!(
                (f.opcode, f.payload.as_slice()),
                (OP_TEXT, &b"hello over tls"[..])
            );
            c.send(OP_BINARY, &[0, 1, 2, 255]);
            assert_eq!(c.recv().payload, [0, 1, 2, 255]);
            c.send(OP_CLOSE, &1000u16.to_be_bytes());
            assert_eq!(c.recv().opcode, OP_CLOSE);
        }
    }
    // An IP address is verified against the certificate's IP entry.
    let mut c = TlsWs::connect(server.addr, pki.client_config(), "127.0.0.1");
    c.send(OP_TEXT, b"by address");
    assert_eq!(c.recv().payload, b"by address");
    server.stop();
}

#[test]
fn large_fragmented_and_pipelined_messages() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"], false);
    let server = start(tls_config(&leaf), Echo);
    let mut c = TlsWs::connect(server.addr, pki.client_config(), "localhost");
    // Larger than rustls's 64 KiB output limit many times over: the
    // server's queue takes what rustls cannot, and the client reads while
    // the server writes.
    let big: Vec<u8> = (0..4 << 20)
        .map(|i: u32| (i * 7 + i / 4096) as u8)
        .collect();
    c.send(OP_BINARY, &big);
    let f = c.recv();
    assert_eq!(
        (f.fin, f.opcode, f.payload.len()),
        (true, OP_BINARY, big.len())
    );
    assert!(f.payload == big, "4 MiB echo differs");

    // 64 KiB of text in 100-byte fragments with a ping between them.
    let text: Vec<u8> = (0..65536).map(|i| b'a' + (i % 26) as u8).collect();
    let mut chunks = text.chunks(100).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let op = if first { OP_TEXT } else { OP_CONT };
        first = false;
        c.send_frame(chunks.peek().is_none(), op, chunk);
        if chunks.len() == 300 {
            c.send(OP_PING, b"mid");
        }
    }
    let pong = c.recv();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (OP_PONG, &b"mid"[..])
    );
    let f = c.recv();
    assert_eq!((f.opcode, f.payload.len()), (OP_TEXT, text.len()));
    assert!(f.payload == text);

    // 500 messages in one write: the replies of one read batch go out
    // together, and every one arrives in order.
    let mut batch = Vec::new();
    for i in 0..500u32 {
        batch.extend(common::frame(
            true,
            0,
            OP_BINARY,
            Some([1, 2, 3, 4]),
            &i.to_be_bytes(),
        ));
    }
    c.stream.write_all(&batch).unwrap();
    for i in 0..500u32 {
        assert_eq!(c.recv().payload, i.to_be_bytes());
    }
    server.stop();
}

/// Echoes on server connections; a client connection sends `count`
/// messages one after the other and closes.
#[derive(Default)]
struct Both {
    client: Option<ConnId>,
    count: usize,
    size: usize,
    received: usize,
    failed: Vec<String>,
    closes: usize,
    remote: Option<Remote>,
    /// The loop's plaintext bytes in, taken when both ends closed.
    bytes_in: u64,
    /// Only the client is in this loop: one close ends the test.
    solo: bool,
}

impl Both {
    fn payload(&self, i: usize) -> String {
        // Compressible but not constant.
        format!("{i:08} ")
            .repeat(self.size / 9 + 1)
            .chars()
            .take(self.size)
            .collect()
    }
}

impl Handler for Both {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        if Some(ctx.id()) == self.client {
            let p = self.payload(0);
            ctx.send_text(&p).unwrap();
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        if Some(ctx.id()) != self.client {
            ctx.send(msg).unwrap();
            return;
        }
        assert_eq!(msg.as_bytes(), self.payload(self.received).as_bytes());
        self.received += 1;
        if self.received < self.count {
            let p = self.payload(self.received);
            ctx.send_text(&p).unwrap();
        } else {
            ctx.close(1000, "done").unwrap();
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, _code: u16, _reason: &str) {
        self.closes += 1;
        if self.closes == 2 || self.solo {
            if let Some(r) = &self.remote {
                r.wake();
            }
        }
    }

    fn on_connect_failed(&mut self, _ctl: &mut Control<'_>, _id: ConnId, reason: &str) {
        self.failed.push(reason.to_string());
        if let Some(r) = &self.remote {
            r.wake();
        }
    }

    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        if self.closes == 2 || (self.solo && self.closes == 1) || !self.failed.is_empty() {
            self.bytes_in = ctl.metrics().bytes_in;
            ctl.stop();
        }
    }
}

/// Client and server in one loop, both over TLS.
fn both(config: ServerConfig, count: usize, size: usize, url_host: &str) -> Both {
    let mut reactor = Reactor::new(
        config,
        Both {
            count,
            size,
            ..Both::default()
        },
    )
    .unwrap();
    let addr = reactor.listen("127.0.0.1:0").unwrap();
    let id = reactor
        .connect(&format!("wss://{url_host}:{}/both", addr.port()))
        .unwrap();
    reactor.handler_mut().client = Some(id);
    reactor.handler_mut().remote = Some(reactor.remote());
    reactor.stop_later();
    reactor.run().unwrap()
}

#[test]
fn client_and_server_in_one_loop_over_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"], false);
    let config = ServerConfig {
        tls_client: Some(pki.client_config()),
        ..tls_config(&leaf)
    };
    let h = both(config, 200, 3000, "localhost");
    assert!(h.failed.is_empty(), "{:?}", h.failed);
    assert_eq!((h.received, h.closes), (200, 2));
    // Both ends' frames: at least the payloads, twice.
    assert!(h.bytes_in >= 2 * 200 * 3000, "{} bytes in", h.bytes_in);
}

#[cfg(feature = "deflate")]
#[test]
fn deflate_over_tls_round_trips() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"], false);
    let mut config = ServerConfig {
        tls_client: Some(pki.client_config()),
        ..tls_config(&leaf)
    };
    config.deflate.enabled = true;
    let h = both(config, 100, 20_000, "localhost");
    assert!(h.failed.is_empty(), "{:?}", h.failed);
    assert_eq!((h.received, h.closes), (100, 2));
    // `bytes_in` counts message payload (decompressed), both ends: every
    // message arrived whole through deflate inside TLS.
    assert_eq!(h.bytes_in, 2 * 100 * 20_000);
}

#[test]
fn the_client_reconnects_over_tls_after_a_server_restart() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"], false);
    let server = Server::bind("127.0.0.1:0", tls_config(&leaf), Echo).unwrap();
    let addr = server.local_addr();
    let stopper = server.stopper();
    let t = std::thread::spawn(move || server.run().unwrap());

    struct App {
        link: Reconnector,
        opens: mpsc::Sender<()>,
    }
    impl Handler for App {
        fn on_open(&mut self, ctx: &mut Ctx<'_>) {
            if self.link.on_open(ctx.id()) {
                ctx.send_text("hi").unwrap();
            }
        }
        fn on_message(&mut self, _ctx: &mut Ctx<'_>, _msg: Message<'_>) {
            let _ = self.opens.send(());
        }
        fn on_close(&mut self, ctx: &mut Ctx<'_>, _code: u16, _reason: &str) {
            let id = ctx.id();
            self.link.on_close(ctx.control(), id);
        }
        fn on_connect_failed(&mut self, ctl: &mut Control<'_>, id: ConnId, _reason: &str) {
            self.link.on_connect_failed(ctl, id);
        }
        fn on_wake(&mut self, ctl: &mut Control<'_>) {
            self.link.on_wake(ctl);
        }
        fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) {
            let _ = self.link.on_timer(ctl, token);
        }
    }
    let (tx, echoes) = mpsc::channel();
    let url = format!("wss://localhost:{}/", addr.port());
    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        ..ReconnectPolicy::default()
    };
    let config = ServerConfig {
        tls_client: Some(pki.client_config()),
        ..ServerConfig::default()
    };
    let mut reactor = Reactor::new(
        config,
        App {
            link: Reconnector::new(url, policy, 7),
            opens: tx,
        },
    )
    .unwrap();
    let client_remote = reactor.remote();
    reactor.handler_mut().link.start(client_remote.clone());
    let ct = std::thread::spawn(move || reactor.run().unwrap());

    echoes
        .recv_timeout(Duration::from_secs(10))
        .expect("first echo");
    stopper.stop();
    t.join().unwrap();
    // The same port again, a new certificate from the same CA.
    let leaf2 = pki.leaf(&["localhost"], false);
    let server = Server::bind(addr, tls_config(&leaf2), Echo).unwrap();
    let stopper = server.stopper();
    let t = std::thread::spawn(move || server.run().unwrap());
    echoes
        .recv_timeout(Duration::from_secs(10))
        .expect("an echo after reconnecting");
    client_remote.stop();
    ct.join().unwrap();
    stopper.stop();
    t.join().unwrap();
}

/// The first bytes a real client sends: a ClientHello.
fn client_hello() -> Vec<u8> {
    let pki = Pki::new();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = rustls::ClientConnection::new(pki.client_config(), name).unwrap();
    let mut out = Vec::new();
    c.write_tls(&mut out).unwrap();
    out
}

/// Read until the server ends the connection: what it sent, and when.
fn until_closed(s: &mut TcpStream) -> (Vec<u8>, Instant) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server did not close: {e}"),
        }
    }
    (got, Instant::now())
}

#[test]
fn the_handshake_timeout_covers_a_stalled_tls_handshake() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"], false);
    let server = start(
        ServerConfig {
            handshake_timeout: Duration::from_millis(300),
            ..tls_config(&leaf)
        },
        Echo,
    );
    let hello = client_hello();
    // Half a ClientHello; a whole one and no more; nothing at all.
    for sent in [&hello[..hello.len() / 2], &hello[..], &[][..]] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        let t0 = Instant::now();
        s.write_all(sent).unwrap();
        let (_, closed) = until_closed(&mut s);
        let after = closed - t0;
        assert!(
            after >= Duration::from_millis(250) && after < Duration::from_secs(3),
            "closed after {after:?} ({} bytes sent)",
            sent.len()
        );
    }
    // And a TLS client that completes TLS but never sends the request.
    let t0 = Instant::now();
    let mut c = TlsWs::tls(server.addr, pki.client_config(), "localhost");
    let mut buf = [0u8; 16];
    let r = c.stream.read(&mut buf);
    assert!(matches!(r, Ok(0) | Err(_)), "expected the end, got {r:?}");
    assert!(t0.elapsed() >= Duration::from_millis(250));
    server.stop();
}

#[test]
fn garbage_and_plain_http_on_the_tls_port_are_closed_cleanly() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"], false);
    let server = start(tls_config(&leaf), Echo);
    let plain_http = common::upgrade_request("/chat");
    let mut garbage: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    // A handshake record header declaring a huge length, then junk.
    let mut bad_record = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    bad_record.extend_from_slice(&[0x42; 100]);
    // A ClientHello whose body is corrupted past the header.
    let mut corrupt_hello = client_hello();
    for b in corrupt_hello.iter_mut().skip(9).step_by(3) {
        *b ^= 0x5a;
    }
    garbage[0] = 0x17;
    for input in [&plain_http, &garbage, &bad_record, &corrupt_hello] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(input).unwrap();
        let (got, _) = until_closed(&mut s);
        // Nothing, or one TLS alert record (content type 21).
        assert!(
            got.is_empty() || (got[0] == 0x15 && got.len() == 7),
            "answer to {:?}...: {got:x?}",
            &input[..8]
        );
        // Never a plain-text answer.
        assert!(!got.starts_with(b"HTTP/"));
    }
    // The server is still serving.
    let mut c = TlsWs::connect(server.addr, pki.client_config(), "localhost");
    c.send(OP_TEXT, b"still here");
    assert_eq!(c.recv().payload, b"still here");
    server.stop();
}

/// Two reactors share the one TLS configuration: each serves `wss://` and
/// closes garbage without answering in plain text, and a swap of the
/// certificate reaches both (connections dealt round robin alternate).
#[test]
fn every_reactor_of_a_cluster_serves_tls_and_refuses_garbage() {
    let pki = Pki::new();
    let first = pki.leaf(&["localhost"], false);
    let second = pki.leaf(&["localhost"], false);
    let config = tls_config(&first);
    let acceptor = config.tls.clone().unwrap();
    let cluster = Cluster::bind_with("127.0.0.1:0", config, 2, Accept::Handoff, |_| Echo).unwrap();
    let addr = cluster.local_addr();
    let stopper = cluster.stopper();
    let thread = std::thread::spawn(move || cluster.run());
    let plain_http = common::upgrade_request("/chat");
    let mut bad_record = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    bad_record.extend_from_slice(&[0x42; 100]);
    // Each input twice: once on each reactor.
    for input in [&plain_http, &plain_http, &bad_record, &bad_record] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(input).unwrap();
        let (got, _) = until_closed(&mut s);
        assert!(
            got.is_empty() || (got[0] == 0x15 && got.len() == 7),
            "answer to {:?}...: {got:x?}",
            &input[..8]
        );
    }
    let leaf_of = |c: &TlsWs| c.stream.conn.peer_certificates().unwrap()[0].clone();
    for leaf in [&first, &second] {
        acceptor.replace(leaf.server_config());
        for _ in 0..2 {
            let mut c = TlsWs::connect(addr, pki.client_config(), "localhost");
            assert_eq!(leaf_of(&c), leaf.chain[0]);
            c.send(OP_TEXT, b"on every reactor");
            assert_eq!(c.recv().payload, b"on every reactor");
        }
    }
    stopper.stop();
    thread.join().unwrap().unwrap();
}

/// What a reactor client reports for `url` against `addr`'s server.
fn client_failure(url: &str, tls_client: Option<Arc<rustls::ClientConfig>>) -> Vec<String> {
    let mut reactor = Reactor::new(
        ServerConfig {
            tls_client,
            ..ServerConfig::default()
        },
        Both {
            count: 1,
            size: 10,
            ..Both::default()
        },
    )
    .unwrap();
    let id = reactor.connect(url).unwrap();
    reactor.handler_mut().client = Some(id);
    reactor.handler_mut().remote = Some(reactor.remote());
    reactor.stop_later();
    let h = reactor.run().unwrap();
    h.failed
}

trait StopLater {
    fn stop_later(&mut self);
}

impl<H: Handler> StopLater for Reactor<H> {
    /// A stop after 20 s, so a test fails rather than hangs.
    fn stop_later(&mut self) {
        let remote = self.remote();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(20));
            remote.stop();
        });
    }
}

#[test]
fn our_client_refuses_wrong_name_expired_and_unknown_certificates() {
    let pki = Pki::new();
    let good = pki.leaf(&["localhost"], false);
    let expired = pki.leaf(&["localhost"], true);
    let server = start(tls_config(&good), Echo);
    let old = start(tls_config(&expired), Echo);
    let port = server.addr.port();

    // The control: the right name and the CA trusted work.
    let mut reactor = Reactor::new(
        ServerConfig {
            tls_client: Some(pki.client_config()),
            ..ServerConfig::default()
        },
        Both {
            count: 3,
            size: 10,
            solo: true,
            ..Both::default()
        },
    )
    .unwrap();
    let id = reactor
        .connect(&format!("wss://localhost:{port}/"))
        .unwrap();
    reactor.handler_mut().client = Some(id);
    let remote = reactor.remote();
    reactor.handler_mut().remote = Some(remote);
    reactor.stop_later();
    let h = reactor.run().unwrap();
    assert!(h.failed.is_empty(), "{:?}", h.failed);
    assert_eq!(h.received, 3);

    let cases = [
        // The certificate names localhost only.
        (
            format!("wss://127.0.0.1:{port}/"),
            Some(pki.client_config()),
            "not valid for name",
        ),
        // Valid only in 2001.
        (
            format!("wss://localhost:{}/", old.addr.port()),
            Some(pki.client_config()),
            "expired",
        ),
        // Our CA not trusted: Mozilla's roots only.
        (format!("wss://localhost:{port}/"), None, "UnknownIssuer"),
    ];
    for (url, config, why) in cases {
        let failed = client_failure(&url, config);
        assert_eq!(failed.len(), 1, "{url}: {failed:?}");
        assert!(
            failed[0].contains("certificate") && failed[0].contains(why),
            "{url}: {}",
            failed[0]
        );
    }
    server.stop();
    old.stop();
}

#[test]
fn a_swapped_configuration_serves_new_connections_and_keeps_open_ones() {
    let pki = Pki::new();
    let first = pki.leaf(&["localhost"], false);
    let second = pki.leaf(&["localhost"], false);
    let acceptor = first.acceptor();
    let server = start(
        ServerConfig {
            tls: Some(acceptor.clone()),
            ..ServerConfig::default()
        },
        Echo,
    );
    let mut before = TlsWs::connect(server.addr, pki.client_config(), "localhost");
    let leaf_of = |c: &TlsWs| c.stream.conn.peer_certificates().unwrap()[0].clone();
    assert_eq!(leaf_of(&before), first.chain[0]);
    acceptor.replace(second.server_config());
    let mut after = TlsWs::connect(server.addr, pki.client_config(), "localhost");
    assert_eq!(leaf_of(&after), second.chain[0]);
    for c in [&mut before, &mut after] {
        c.send(OP_TEXT, b"x");
        assert_eq!(c.recv().payload, b"x");
    }
    server.stop();
}

#[test]
fn past_max_connections_a_tls_client_reads_the_503_over_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"], false);
    let server = start(
        ServerConfig {
            max_connections: 1,
            ..tls_config(&leaf)
        },
        Echo,
    );
    let mut first = TlsWs::connect(server.addr, pki.client_config(), "localhost");
    let mut second = TlsWs::tls(server.addr, pki.client_config(), "localhost");
    second
        .stream
        .write_all(&common::upgrade_request("/chat"))
        .unwrap();
    let head = second.read_head();
    assert!(
        head.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    first.send(OP_TEXT, b"the first still works");
    assert_eq!(first.recv().payload, b"the first still works");
    server.stop();
}
