//! permessage-deflate end to end, in memory: the opening handshake through
//! `handshake` and `ext` (offer, negotiation, answer, check), then a client
//! and a server `proto::Connection` exchanging compressed messages, whole and
//! fragmented, with reads split anywhere; and every way a peer can get the
//! extension wrong, with its close code.
#![cfg(feature = "deflate")]

use proptest::prelude::*;
use wsreactor::ext::{DeflateConfig, DeflateParams};
use wsreactor::handshake::server::Upgrade;
use wsreactor::handshake::{classify, parse_request, parse_response, write_accept, write_request};
use wsreactor::handshake::{Limits, Outcome, Status};
use wsreactor::proto::{
    encode_header, Config, Connection, ErrorKind, Event, OpCode, Read, Role, RSV1,
};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>),
}

fn owned(e: Event<'_>) -> Got {
    match e {
        Event::Message(wsreactor::Message::Text(t)) => Got::Text(t.to_string()),
        Event::Message(wsreactor::Message::Binary(b)) => Got::Binary(b.to_vec()),
        Event::Ping(p) => Got::Ping(p.to_vec()),
        Event::Pong(p) => Got::Pong(p.to_vec()),
        Event::Close(c) => Got::Close(c.map(|c| c.code)),
    }
}

/// Everything `conn` queued for the transport.
fn take_output(conn: &mut Connection) -> Vec<u8> {
    let out = conn.sender().pending().to_vec();
    conn.sender().consume(out.len());
    out
}

/// Feed `bytes` to `to` in reads of `chunk` bytes, keeping what a read left
/// unconsumed in front of the next one, as the reactor does.
fn deliver(bytes: &[u8], to: &mut Connection, chunk: usize) -> (Vec<Got>, Result<(), ErrorKind>) {
    let mut buf = Vec::new();
    let mut events = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let (consumed, event) = match to.read(&mut buf) {
                Ok(Read { consumed, event }) => (consumed, event.map(owned)),
                Err(e) => return (events, Err(e.kind())),
            };
            buf.drain(..consumed);
            match event {
                Some(e) => events.push(e),
                None => break,
            }
        }
    }
    (events, Ok(()))
}

/// A client and a server after an in-memory handshake.
struct Pair {
    client: Connection,
    server: Connection,
    /// What each side agreed on (`None`: no extension).
    agreed: Option<DeflateParams>,
}

impl Pair {
    fn new(client_cfg: DeflateConfig, server_cfg: DeflateConfig) -> Self {
        Self::with_limits(client_cfg, server_cfg, Config::default())
    }

    fn with_limits(client_cfg: DeflateConfig, server_cfg: DeflateConfig, limits: Config) -> Self {
        let (server_side, client_side) = handshake(&client_cfg, &server_cfg);
        assert_eq!(server_side, client_side, "both ends agree");
        let mut client = Connection::client(limits, 0x5eed_0000_1234_5678);
        let mut server = Connection::server(limits);
        if let Some(p) = &server_side {
            server.enable_deflate(p, &server_cfg);
            client.enable_deflate(p, &client_cfg);
        }
        Pair {
            client,
            server,
            agreed: server_side,
        }
    }

    fn c2s(&mut self, chunk: usize) -> (Vec<Got>, Result<(), ErrorKind>) {
        let bytes = take_output(&mut self.client);
        deliver(&bytes, &mut self.server, chunk)
    }

    fn s2c(&mut self, chunk: usize) -> (Vec<Got>, Result<(), ErrorKind>) {
        let bytes = take_output(&mut self.server);
        deliver(&bytes, &mut self.client, chunk)
    }
}

/// Offer, negotiate, answer through real HTTP bytes; the agreement as the
/// server and as the client see it.
fn handshake(
    client_cfg: &DeflateConfig,
    server_cfg: &DeflateConfig,
) -> (Option<DeflateParams>, Option<DeflateParams>) {
    let offer = client_cfg.offer();
    let mut request = Vec::new();
    let key = write_request(
        &mut request,
        "h",
        "/",
        &[9; 16],
        &[],
        offer.as_ref().map(|o| o.as_str()),
        &[],
    );
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let req = match parse_request(&request, &mut hs, &Limits::default()).unwrap() {
        Status::Complete(r) => r,
        Status::Partial => panic!("partial request"),
    };
    let Outcome::Upgrade(up) = classify(&req) else {
        panic!("not an upgrade");
    };
    let (server_side, response) = server_answer(&up, server_cfg);
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let res = match parse_response(
        &response,
        &mut hs,
        key.expected_accept(),
        &[],
        &Limits::default(),
    )
    .unwrap()
    {
        Status::Complete(r) => r,
        Status::Partial => panic!("partial response"),
    };
    let client_side = client_cfg
        .accept_response(res.extensions())
        .expect("client accepts the answer");
    (server_side, client_side)
}

/// What the reactor does on an upgrade.
fn server_answer(up: &Upgrade<'_, '_>, cfg: &DeflateConfig) -> (Option<DeflateParams>, Vec<u8>) {
    let agreed = cfg.negotiate(up.extensions());
    let mut response = Vec::new();
    write_accept(
        &mut response,
        up.key,
        None,
        agreed.as_ref().map(|a| a.response.as_str()),
    );
    (agreed.map(|a| a.params), response)
}

fn on() -> DeflateConfig {
    DeflateConfig {
        enabled: true,
        ..DeflateConfig::default()
    }
}

/// `(fin, rsv, opcode, payload)` of each frame in `bytes` (unmasked).
fn frames(mut bytes: &[u8]) -> Vec<(bool, u8, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = wsreactor::proto::decode_header(bytes)
            .unwrap()
            .complete()
            .unwrap();
        let end = n + h.len as usize;
        let mut payload = bytes[n..end].to_vec();
        if let Some(key) = h.mask {
            wsreactor::proto::apply_mask(&mut payload, key, 0);
        }
        out.push((h.fin, h.rsv, h.opcode, payload));
        bytes = &bytes[end..];
    }
    out
}

fn json(i: usize, len: usize) -> String {
    let mut s = format!("{{\"seq\":{i},\"items\":[");
    let mut k = 0;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{k},\"name\":\"item-{}\",\"ok\":true}},",
            (i * 7 + k) % 13
        ));
        k += 1;
    }
    s.truncate(len);
    s
}

// ---------------------------------------------------------------------------
// Negotiated exchange
// ---------------------------------------------------------------------------

#[test]
fn default_agreement_and_round_trip_both_ways() {
    let mut p = Pair::new(on(), on());
    assert_eq!(p.agreed, Some(DeflateParams::default()));
    for i in 0..20 {
        let text = json(i, 40 + i * 97);
        p.client
            .sender()
            .send(OpCode::Text, text.as_bytes())
            .unwrap();
        let wire = p.client.sender().pending().to_vec();
        let f = frames(&wire);
        assert_eq!(f.len(), 1);
        // Compressed (RSV1) only from `min_compress_size` on.
        assert_eq!(f[0].1 == RSV1, text.len() >= 128, "len {}", text.len());
        assert_eq!(p.c2s(usize::MAX), (vec![Got::Text(text.clone())], Ok(())));
        let bin = text.as_bytes().repeat(3);
        p.server.sender().send(OpCode::Binary, &bin).unwrap();
        assert_eq!(p.s2c(usize::MAX), (vec![Got::Binary(bin)], Ok(())));
    }
}

#[test]
fn compression_actually_shrinks_and_takeover_helps() {
    let mut p = Pair::new(on(), on());
    let msg = json(1, 1000);
    p.server
        .sender()
        .send(OpCode::Text, msg.as_bytes())
        .unwrap();
    let first = take_output(&mut p.server);
    p.server
        .sender()
        .send(OpCode::Text, msg.as_bytes())
        .unwrap();
    let second = take_output(&mut p.server);
    assert!(first.len() < msg.len() / 2, "{}", first.len());
    // The second refers back into the first.
    assert!(second.len() < 60, "{}", second.len());
    let (events, r) = deliver(&[first, second].concat(), &mut p.client, 1);
    r.unwrap();
    assert_eq!(events, [Got::Text(msg.clone()), Got::Text(msg)]);
}

#[test]
fn reads_split_at_every_boundary() {
    for chunk in [1, 2, 3, 5, 8, 13, 100] {
        let mut p = Pair::new(on(), on());
        let msgs: Vec<String> = (0..6).map(|i| json(i, 50 + 300 * i)).collect();
        for m in &msgs {
            p.client.sender().send(OpCode::Text, m.as_bytes()).unwrap();
            p.client.sender().ping(b"p").unwrap();
        }
        let (events, r) = p.c2s(chunk);
        r.unwrap();
        let want: Vec<Got> = msgs
            .iter()
            .flat_map(|m| [Got::Text(m.clone()), Got::Ping(b"p".to_vec())])
            .collect();
        assert_eq!(events, want, "chunk {chunk}");
        // The pongs came back uncompressed.
        let (events, r) = p.s2c(chunk);
        r.unwrap();
        assert_eq!(events, vec![Got::Pong(b"p".to_vec()); 6]);
    }
}

#[test]
fn fragmented_compressed_messages() {
    let mut p = Pair::new(on(), on());
    for (i, frame) in [1usize, 7, 64, 100].into_iter().enumerate() {
        let text = json(i, 3000);
        p.client
            .sender()
            .send_fragmented(OpCode::Text, text.as_bytes(), frame)
            .unwrap();
        let wire = p.client.sender().pending().to_vec();
        let f = frames(&wire);
        assert!(f.len() > 1);
        // RSV1 on the first frame only (RFC 7692 §6.1).
        assert_eq!(f[0].1, RSV1);
        assert!(f[1..].iter().all(|x| x.1 == 0 && x.2 == 0));
        assert!(f[..f.len() - 1].iter().all(|x| !x.0));
        assert!(f.last().unwrap().0);
        // A ping between fragments is fine.
        let (events, r) = p.c2s(3);
        r.unwrap();
        assert_eq!(events, [Got::Text(text)]);
    }
    // Server to client, binary, and a control frame interleaved by hand.
    let bin: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    p.server
        .sender()
        .send_fragmented(OpCode::Binary, &bin, 10)
        .unwrap();
    let wire = take_output(&mut p.server);
    let f = frames(&wire);
    assert!(f.len() > 2);
    let mut bytes = Vec::new();
    for (i, (fin, rsv, op, payload)) in f.iter().enumerate() {
        let head = encode_header(
            *fin,
            *rsv,
            OpCode::from_u8(*op).unwrap(),
            None,
            payload.len() as u64,
        );
        bytes.extend_from_slice(head.as_slice());
        bytes.extend_from_slice(payload);
        if i == 0 {
            bytes.extend_from_slice(&[0x89, 0x01, b'x']);
        }
    }
    let (events, r) = deliver(&bytes, &mut p.client, 11);
    r.unwrap();
    assert_eq!(events, [Got::Ping(b"x".to_vec()), Got::Binary(bin)]);
}

#[test]
fn fragmented_below_threshold_is_uncompressed() {
    let mut p = Pair::new(on(), on());
    p.client
        .sender()
        .send_fragmented(OpCode::Text, b"tiny message", 4)
        .unwrap();
    let f = frames(p.client.sender().pending());
    assert_eq!(f.len(), 3);
    assert!(f.iter().all(|x| x.1 == 0));
    assert_eq!(
        p.c2s(usize::MAX),
        (vec![Got::Text("tiny message".into())], Ok(()))
    );
    // An empty message is one frame.
    p.client
        .sender()
        .send_fragmented(OpCode::Binary, b"", 4)
        .unwrap();
    assert_eq!(p.c2s(1), (vec![Got::Binary(vec![])], Ok(())));
}

#[test]
fn every_window_and_takeover_combination() {
    for snct in [false, true] {
        for cnct in [false, true] {
            for bits in 9..=15u8 {
                let client_cfg = DeflateConfig {
                    server_no_context_takeover: snct,
                    client_no_context_takeover: cnct,
                    server_max_window_bits: bits,
                    client_max_window_bits: 24 - bits,
                    ..on()
                };
                let mut p = Pair::new(client_cfg, on());
                let agreed = p.agreed.unwrap();
                assert_eq!(agreed.server_max_window_bits, bits);
                assert_eq!(agreed.client_max_window_bits, (24 - bits).min(15));
                assert_eq!(agreed.server_no_context_takeover, snct);
                assert_eq!(agreed.client_no_context_takeover, cnct);
                for i in 0..5 {
                    let m = json(i, 200 + 700 * i);
                    p.client.sender().send(OpCode::Text, m.as_bytes()).unwrap();
                    p.server.sender().send(OpCode::Text, m.as_bytes()).unwrap();
                    assert_eq!(p.c2s(97), (vec![Got::Text(m.clone())], Ok(())));
                    assert_eq!(p.s2c(97), (vec![Got::Text(m)], Ok(())));
                }
            }
        }
    }
}

#[test]
fn disabled_on_either_side_means_plain_frames() {
    for (c, s) in [
        (DeflateConfig::default(), on()),
        (on(), DeflateConfig::default()),
    ] {
        let mut p = Pair::new(c, s);
        assert_eq!(p.agreed, None);
        let m = json(0, 500);
        p.client.sender().send(OpCode::Text, m.as_bytes()).unwrap();
        assert_eq!(frames(p.client.sender().pending())[0].1, 0);
        assert_eq!(p.c2s(usize::MAX), (vec![Got::Text(m)], Ok(())));
    }
}

#[test]
fn zero_copy_header_only_for_uncompressed_messages() {
    let mut p = Pair::new(on(), on());
    let tx = p.server.sender();
    assert!(tx.direct_header(OpCode::Text, 127).unwrap().is_some());
    assert!(tx.direct_header(OpCode::Text, 128).unwrap().is_none());
    assert!(tx.direct_header(OpCode::Binary, 1 << 20).unwrap().is_none());
    let mut plain = Connection::server(Config::default());
    assert!(plain
        .sender()
        .direct_header(OpCode::Text, 1 << 20)
        .unwrap()
        .is_some());
}

#[test]
fn queued_output_before_a_compressed_message_stays_in_order() {
    let mut p = Pair::new(on(), on());
    let a = json(1, 300);
    let b = json(2, 300);
    p.server.sender().send(OpCode::Text, a.as_bytes()).unwrap();
    p.server.sender().ping(b"between").unwrap();
    // Part of the output already taken by the transport.
    let first = p.server.sender().pending()[..5].to_vec();
    p.server.sender().consume(5);
    p.server.sender().send(OpCode::Text, b.as_bytes()).unwrap();
    let rest = take_output(&mut p.server);
    let (events, r) = deliver(&[first, rest].concat(), &mut p.client, 4);
    r.unwrap();
    assert_eq!(
        events,
        [Got::Text(a), Got::Ping(b"between".to_vec()), Got::Text(b)]
    );
}

#[test]
fn incompressible_without_takeover_goes_out_plain() {
    let cfg = DeflateConfig {
        server_no_context_takeover: true,
        ..on()
    };
    let mut p = Pair::new(on(), cfg);
    let mut noise = Vec::new();
    let mut s = 7u64;
    for _ in 0..2000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        noise.push(s as u8);
    }
    p.server.sender().send(OpCode::Binary, &noise).unwrap();
    assert_eq!(frames(p.server.sender().pending())[0].1, 0);
    assert_eq!(
        p.s2c(usize::MAX),
        (vec![Got::Binary(noise.clone())], Ok(()))
    );
    // With context takeover it must stay compressed (the window moved on).
    let mut p = Pair::new(on(), on());
    p.server.sender().send(OpCode::Binary, &noise).unwrap();
    assert_eq!(frames(p.server.sender().pending())[0].1, RSV1);
    assert_eq!(p.s2c(usize::MAX), (vec![Got::Binary(noise)], Ok(())));
}

#[test]
fn client_limited_to_8_bits_sends_uncompressed() {
    // A server (not ours) answers client_max_window_bits=8.
    let mut client = Connection::client(Config::default(), 1);
    let params = on()
        .accept_response([&b"permessage-deflate; client_max_window_bits=8"[..]])
        .unwrap()
        .unwrap();
    client.enable_deflate(&params, &on());
    let m = json(3, 1000);
    client.sender().send(OpCode::Text, m.as_bytes()).unwrap();
    let f = frames(client.sender().pending());
    assert_eq!((f[0].1, f[0].3.len()), (0, 1000));
    // It still inflates what the server compresses.
    let mut server = Connection::server(Config::default());
    server.enable_deflate(&params, &on());
    server.sender().send(OpCode::Text, m.as_bytes()).unwrap();
    let wire = take_output(&mut server);
    assert_eq!(frames(&wire)[0].1, RSV1);
    assert_eq!(deliver(&wire, &mut client, 9), (vec![Got::Text(m)], Ok(())));
}

// ---------------------------------------------------------------------------
// RFC 7692 §7.2.3 bytes on the wire
// ---------------------------------------------------------------------------

fn client_with_deflate() -> Connection {
    let mut c = Connection::client(Config::default(), 3);
    c.enable_deflate(&DeflateParams::default(), &on());
    c
}

#[test]
fn rfc_7692_frames() {
    let mut c = client_with_deflate();
    let hello = Got::Text("Hello".into());
    // §7.2.3.1, one frame, then fragmented.
    let one = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(deliver(&one, &mut c, 1), (vec![hello.clone()], Ok(())));
    let frag = [
        0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
    ];
    let mut c = client_with_deflate();
    assert_eq!(deliver(&frag, &mut c, 2), (vec![hello.clone()], Ok(())));
    // §7.2.3.2: context takeover, the second message refers to the first.
    let second = [0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00];
    assert_eq!(deliver(&second, &mut c, 3), (vec![hello.clone()], Ok(())));
    // §7.2.3.3 (stored block), §7.2.3.4 (BFINAL), §7.2.3.5 (two blocks).
    for bytes in [
        &[
            0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ][..],
        &[0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        &[
            0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07,
            0x00,
        ],
    ] {
        let mut c = client_with_deflate();
        assert_eq!(deliver(bytes, &mut c, 1), (vec![hello.clone()], Ok(())));
        // The context is usable for the next message.
        assert_eq!(deliver(&one, &mut c, 4), (vec![hello.clone()], Ok(())));
    }
    // An uncompressed message on the same connection (RSV1 clear).
    let plain = [0x81, 0x02, b'h', b'i'];
    assert_eq!(
        deliver(&plain, &mut c, 1),
        (vec![Got::Text("hi".into())], Ok(()))
    );
    // An empty compressed message: RSV1 and no payload.
    assert_eq!(
        deliver(&[0xc1, 0x00], &mut c, 1),
        (vec![Got::Text(String::new())], Ok(()))
    );
    assert_eq!(deliver(&one, &mut c, 1), (vec![hello], Ok(())));
}

// ---------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------

/// Delivers server frames to a deflate client and returns the error and the
/// close code the client queued.
fn fail_client(bytes: &[u8]) -> (ErrorKind, u16) {
    let mut c = client_with_deflate();
    let (_, r) = deliver(bytes, &mut c, 1);
    let kind = r.expect_err("must fail");
    let out = take_output(&mut c);
    let f = frames(&out);
    let (_, _, op, payload) = f.last().expect("close queued");
    assert_eq!(*op, 0x8);
    (kind, u16::from_be_bytes([payload[0], payload[1]]))
}

#[test]
fn rsv1_on_control_or_continuation_is_1002() {
    // Ping with RSV1.
    assert_eq!(fail_client(&[0xc9, 0x00]), (ErrorKind::Protocol, 1002));
    // Close with RSV1.
    assert_eq!(
        fail_client(&[0xc8, 0x02, 0x03, 0xe8]),
        (ErrorKind::Protocol, 1002)
    );
    // A continuation with RSV1, after a compressed first frame...
    assert_eq!(
        fail_client(&[0x41, 0x03, 0xf2, 0x48, 0xcd, 0xc0, 0x04, 0xc9, 0xc9, 0x07, 0x00]),
        (ErrorKind::Protocol, 1002)
    );
    // ... or after an uncompressed one.
    assert_eq!(
        fail_client(&[0x01, 0x01, b'a', 0xc0, 0x01, b'b']),
        (ErrorKind::Protocol, 1002)
    );
    // RSV2 and RSV3 stay reserved.
    assert_eq!(
        fail_client(&[0xa1, 0x01, b'a']),
        (ErrorKind::Protocol, 1002)
    );
    assert_eq!(
        fail_client(&[0x91, 0x01, b'a']),
        (ErrorKind::Protocol, 1002)
    );
}

#[test]
fn rsv1_without_negotiation_is_1002() {
    let mut c = Connection::client(Config::default(), 3);
    let one = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let (_, r) = deliver(&one, &mut c, usize::MAX);
    assert_eq!(r, Err(ErrorKind::Protocol));
}

#[test]
fn corrupt_deflate_is_1007() {
    // BTYPE 11 (reserved).
    assert_eq!(
        fail_client(&[0xc2, 0x04, 0xff, 0xff, 0xff, 0xff]),
        (ErrorKind::InvalidPayload, 1007)
    );
}

#[test]
fn invalid_utf8_inside_compressed_text_is_1007() {
    let mut server = Connection::server(Config::default());
    server.enable_deflate(&DeflateParams::default(), &on());
    let bad = [b'a'; 200]
        .iter()
        .copied()
        .chain([0xff, 0xfe])
        .collect::<Vec<u8>>();
    // Send it as binary (the sender does not check), relabel as text.
    server.sender().send(OpCode::Binary, &bad).unwrap();
    let mut wire = take_output(&mut server);
    assert_eq!(wire[0], 0xc2);
    wire[0] = 0xc1;
    let mut c = client_with_deflate();
    let (_, r) = deliver(&wire, &mut c, 5);
    assert_eq!(r, Err(ErrorKind::InvalidPayload));
}

#[test]
fn bomb_is_1009_at_the_message_limit() {
    let limits = Config {
        max_message_size: 64 * 1024,
        ..Config::default()
    };
    let mut p = Pair::with_limits(on(), on(), limits);
    // 1 MiB of zeros compresses to about 1 KiB at level 9.
    let zeros = vec![0u8; 1 << 20];
    let mut big = Connection::client(Config::default(), 5);
    let best = DeflateConfig { level: 9, ..on() };
    big.enable_deflate(&p.agreed.unwrap(), &best);
    big.sender().send(OpCode::Binary, &zeros).unwrap();
    let wire = take_output(&mut big);
    assert!(wire.len() < 1200, "{}", wire.len());
    let (events, r) = deliver(&wire, &mut p.server, usize::MAX);
    assert!(events.is_empty());
    assert_eq!(r, Err(ErrorKind::TooBig));
    let out = take_output(&mut p.server);
    assert_eq!(frames(&out), [(true, 0, 0x8, vec![0x03, 0xf1])]);
    // Exactly at the limit passes.
    let mut p = Pair::with_limits(on(), on(), limits);
    let mut fits = Connection::client(Config::default(), 5);
    fits.enable_deflate(&p.agreed.unwrap(), &on());
    fits.sender()
        .send(OpCode::Binary, &zeros[..64 * 1024])
        .unwrap();
    let wire = take_output(&mut fits);
    let (events, r) = deliver(&wire, &mut p.server, 100);
    r.unwrap();
    assert_eq!(events, [Got::Binary(vec![0; 64 * 1024])]);
}

#[test]
fn fragmented_bomb_is_1009_too() {
    let limits = Config {
        max_message_size: 10_000,
        ..Config::default()
    };
    let mut p = Pair::with_limits(on(), on(), limits);
    p.client
        .sender()
        .send_fragmented(OpCode::Text, &vec![b'a'; 200_000], 16)
        .unwrap();
    let (_, r) = p.c2s(7);
    assert_eq!(r, Err(ErrorKind::TooBig));
}

// ---------------------------------------------------------------------------
// Property: any messages, any agreement, any framing and read split
// ---------------------------------------------------------------------------

fn message() -> impl Strategy<Value = (bool, Vec<u8>)> {
    prop_oneof![
        // Compressible text.
        (0usize..3000, 0usize..50).prop_map(|(len, seed)| (true, json(seed, len).into_bytes())),
        // Arbitrary bytes (binary), sometimes long runs.
        proptest::collection::vec(any::<u8>(), 0..2000).prop_map(|v| (false, v)),
        (any::<u8>(), 0usize..20_000).prop_map(|(b, n)| (false, vec![b; n])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_any_agreement(
        snct in any::<bool>(),
        cnct in any::<bool>(),
        server_bits in 9u8..=15,
        client_bits in 9u8..=15,
        level in 0u32..=9,
        min_size in prop_oneof![Just(0usize), Just(128), 0usize..500],
        msgs in proptest::collection::vec(message(), 1..8),
        frame in prop_oneof![Just(usize::MAX), 1usize..700],
        chunk in prop_oneof![Just(usize::MAX), 1usize..300],
    ) {
        let client_cfg = DeflateConfig {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            level,
            min_compress_size: min_size,
            ..on()
        };
        let server_cfg = DeflateConfig { level, min_compress_size: min_size, ..on() };
        let mut p = Pair::new(client_cfg, server_cfg);
        for (text, body) in &msgs {
            let op = if *text { OpCode::Text } else { OpCode::Binary };
            let want = if *text {
                Got::Text(String::from_utf8(body.clone()).unwrap())
            } else {
                Got::Binary(body.clone())
            };
            for role in [Role::Client, Role::Server] {
                let conn = match role {
                    Role::Client => &mut p.client,
                    Role::Server => &mut p.server,
                };
                if frame == usize::MAX {
                    conn.sender().send(op, body).unwrap();
                } else {
                    conn.sender().send_fragmented(op, body, frame).unwrap();
                }
                let got = match role {
                    Role::Client => p.c2s(chunk),
                    Role::Server => p.s2c(chunk),
                };
                prop_assert_eq!(got, (vec![want.clone()], Ok(())));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Publishing one shared frame to many subscribers
// ---------------------------------------------------------------------------

/// Without server context takeover, subscribers with the same window get
/// the one compressed form, built once; with takeover each compresses for
/// itself (its window is its own). Every subscriber decodes the message.
#[test]
fn a_shared_frame_is_compressed_once_per_window_without_takeover() {
    use wsreactor::proto::{DeflatedForms, SharedFrame};
    let message = json(7, 4000);
    let frame = SharedFrame::new(OpCode::Text, message.as_bytes());
    for snct in [true, false] {
        let mut forms = DeflatedForms::new();
        // Three subscribers at 15 bits, one at 10.
        let mut pairs: Vec<Pair> = [15u8, 15, 15, 10]
            .into_iter()
            .map(|bits| {
                let client_cfg = DeflateConfig {
                    server_no_context_takeover: snct,
                    server_max_window_bits: bits,
                    ..on()
                };
                Pair::new(client_cfg, on())
            })
            .collect();
        let mut wires = Vec::new();
        for p in &mut pairs {
            // A message first, so a context-takeover window is not empty.
            p.server
                .sender()
                .send(OpCode::Text, json(1, 900).as_bytes())
                .unwrap();
            p.server.sender().send_shared(&frame, &mut forms).unwrap();
            let mut out = Vec::new();
            while p.server.sender().pending_len() > 0 {
                out.extend(take_output(&mut p.server));
            }
            let f = frames(&out);
            assert_eq!(f.len(), 2);
            assert_eq!(f[1].1, RSV1, "the published message is compressed");
            assert!(f[1].3.len() < message.len() / 2);
            wires.push(f[1].3.clone());
            let (got, ok) = deliver(&out, &mut p.client, 500);
            assert_eq!(ok, Ok(()));
            assert_eq!(
                got,
                vec![Got::Text(json(1, 900)), Got::Text(message.clone())]
            );
        }
        if snct {
            assert_eq!(forms.built(), 2, "one form per window size");
            assert_eq!(wires[0], wires[1]);
            assert_eq!(wires[1], wires[2]);
        } else {
            assert_eq!(forms.built(), 0, "each compressed for itself");
        }
    }
}
