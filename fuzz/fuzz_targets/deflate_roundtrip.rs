//! permessage-deflate end to end: a client and a server `Connection` that
//! negotiated it (offer, `negotiate`, `accept_response`, `enable_deflate`,
//! as the reactor does) exchange arbitrary messages both ways, and every
//! message the peer decodes must be exactly the one sent, kind and bytes,
//! in order, message after message (context takeover carries the LZ77
//! window across them). Nothing may fail.
//!
//! The input chooses both `DeflateConfig`s (window bits 9..=15 and context
//! takeover for each direction, level, `min_compress_size`), how each
//! message is sent (`send`, `send_fragmented` with a frame size, fragments
//! by hand, the zero-copy `direct_header` path), its body (raw bytes, a
//! repetition long enough to pass small windows, the previous message again
//! so the peer must resolve back-references into it), when the transport
//! takes output, and the read sizes on each side.
//!
//! Also checked, on the wire: each message's frames are well formed
//! (first Text/Binary, then Continuation, FIN on the last only, masked
//! exactly from the client, frames no longer than the fragment size asked
//! for), RSV1 only on the first frame of a message that was eligible for
//! compression (at least `min_compress_size`, sent through `send` or
//! `send_fragmented`), and always there for such a message unless the
//! sender has no context takeover (`send` may then send an incompressible
//! message plain, RFC 7692 §6).
//!
//! Input layout (see the README): 10 config bytes, then operations.
#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use wsreactor::ext::{DeflateConfig, DeflateParams};
use wsreactor::proto::{
    apply_mask_reference, decode_header, Config, Connection, DirectHeader, OpCode, Role, Status,
    RSV1,
};
use wsreactor_fuzz::{Cursor, Inbox, OwnedEvent};

/// Most message bytes one input sends, both ways together.
const BYTE_BUDGET: usize = 128 * 1024;
/// Most frames one input sends (an estimate: fragments of the uncompressed
/// size).
const FRAME_BUDGET: usize = 8_000;

/// A window size from a byte: 9..=15.
fn bits(b: u8) -> u8 {
    9 + b % 7
}

/// A fragment size from a byte: 1..=128, or 256..=32512 in steps of 256.
fn frame_size(b: u8) -> usize {
    if b < 128 {
        usize::from(b) + 1
    } else {
        usize::from(b - 127) * 256
    }
}

/// How a data message is handed to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// `Sender::send`.
    Send,
    /// `Sender::send_fragmented` with this frame size.
    Fragmented(usize),
    /// `send_frame` fragment after fragment, never compressed.
    ByHand(usize),
    /// `direct_header` + `queue_raw` (the reactor's zero-copy path), or
    /// `send` when the message would be compressed.
    Direct,
}

/// One direction: the sending end's view of what the receiving end must
/// decode, and the receiving end's inbox.
struct Direction {
    /// The events the receiving end must decode from the sending end's
    /// output, in order.
    expected: VecDeque<OwnedEvent>,
    /// The receiving end's unconsumed input.
    inbox: Inbox,
    /// Read size of the receiving end (0: everything taken in one read).
    chunk: usize,
    /// The last data message sent this way, for the repeating bodies.
    last: Vec<u8>,
    /// The sender has no context takeover.
    no_takeover: bool,
    /// Data messages this long or longer are compressed.
    min_size: usize,
}

struct Pair {
    client: Connection,
    server: Connection,
    /// Client to server, server to client.
    dirs: [Direction; 2],
}

impl Pair {
    /// Sender and receiver of direction `d` (0: client to server).
    fn ends(&mut self, d: usize) -> (&mut Connection, &mut Connection, &mut [Direction; 2]) {
        if d == 0 {
            (&mut self.client, &mut self.server, &mut self.dirs)
        } else {
            (&mut self.server, &mut self.client, &mut self.dirs)
        }
    }

    /// The transport takes `n` bytes of direction `d`'s output and the
    /// receiving end reads them in its read size; every event must be the
    /// next one expected. A ping queues a pong the other way.
    fn deliver(&mut self, d: usize, n: usize) {
        let (from, to, dirs) = self.ends(d);
        let tx = from.sender();
        let n = n.min(tx.pending_len());
        let bytes = tx.pending()[..n].to_vec();
        tx.consume(n);
        let chunk = dirs[d].chunk;
        let pieces: Vec<&[u8]> = if chunk == 0 || bytes.is_empty() {
            vec![&bytes[..]]
        } else {
            bytes.chunks(chunk).collect()
        };
        for piece in pieces {
            let mut events = Vec::new();
            if let Some(code) = dirs[d].inbox.feed(to, piece, &mut events) {
                panic!("direction {d} failed with {code} after {events:?}");
            }
            for e in events {
                let want = dirs[d].expected.pop_front();
                assert_eq!(
                    Some(&e),
                    want.as_ref(),
                    "direction {d} decoded something else than was sent"
                );
                if let OwnedEvent::Ping(p) = e {
                    dirs[1 - d].expected.push_back(OwnedEvent::Pong(p));
                }
            }
        }
    }

    /// Deliver everything pending, both ways, until nothing is left.
    fn flush(&mut self) {
        while self.client.sender().pending_len() + self.server.sender().pending_len() > 0 {
            self.deliver(0, usize::MAX);
            self.deliver(1, usize::MAX);
        }
    }
}

/// Both ends negotiate as the reactor does: the client's offer, the server's
/// answer, the client's check of the answer. All must succeed and agree.
fn connect(
    client_cfg: &DeflateConfig,
    server_cfg: &DeflateConfig,
) -> (Connection, Connection, DeflateParams) {
    let offer = client_cfg.offer().expect("enabled client offers");
    let agreed = server_cfg
        .negotiate([offer.as_str().as_bytes()])
        .unwrap_or_else(|| panic!("server declined our own offer {offer}"));
    let params = client_cfg
        .accept_response([agreed.response.as_str().as_bytes()])
        .unwrap_or_else(|e| panic!("client refused {}: {e}", agreed.response))
        .expect("client sees the agreement");
    assert_eq!(params, agreed.params, "{offer} -> {}", agreed.response);
    for b in [params.server_max_window_bits, params.client_max_window_bits] {
        assert!((9..=15).contains(&b), "window {b} in {params:?}");
    }
    let mut client = Connection::client(Config::default(), 0x5eed_d0d0_cafe_f00d);
    let mut server = Connection::server(Config::default());
    client.enable_deflate(&params, client_cfg);
    server.enable_deflate(&params, server_cfg);
    (client, server, params)
}

/// One frame of our own output, unmasked.
struct WireFrame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    len: usize,
}

/// Split `bytes` (what one send appended to the output) into frames; they
/// must all be complete.
fn wire_frames(mut bytes: &[u8]) -> Vec<WireFrame> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = match decode_header(bytes) {
            Ok(Status::Complete(x)) => x,
            other => panic!("our output has a bad frame header: {other:?}"),
        };
        let len = usize::try_from(h.len).expect("frame length");
        assert!(n + len <= bytes.len(), "a frame was queued half");
        out.push(WireFrame {
            fin: h.fin,
            rsv: h.rsv,
            opcode: h.opcode,
            masked: h.mask.is_some(),
            len,
        });
        bytes = &bytes[n + len..];
    }
    out
}

/// Queue a data message from `conn` (the sending end of `dir`) and check the
/// frames it appended.
fn send_data(conn: &mut Connection, dir: &mut Direction, text: bool, body: &[u8], how: Method) {
    let client = conn.role() == Role::Client;
    let opcode = if text { OpCode::Text } else { OpCode::Binary };
    let before = conn.sender().pending_len();
    // A message `send` and `send_fragmented` compress.
    let eligible = body.len() >= dir.min_size;
    let tx = conn.sender();
    let (compressible, max_frame) = match how {
        Method::Send => {
            tx.send(opcode, body).expect("send");
            (eligible, usize::MAX)
        }
        Method::Fragmented(size) => {
            tx.send_fragmented(opcode, body, size)
                .expect("send_fragmented");
            (eligible, size)
        }
        Method::ByHand(size) => {
            let mut chunks = body.chunks(size).peekable();
            let mut op = opcode;
            if chunks.peek().is_none() {
                tx.send_frame(op, true, &[]).expect("send_frame");
            }
            while let Some(c) = chunks.next() {
                tx.send_frame(op, chunks.peek().is_none(), c)
                    .expect("send_frame");
                op = OpCode::Continuation;
            }
            (false, size)
        }
        Method::Direct => match tx.direct_header(opcode, body.len()).expect("direct_header") {
            Some(DirectHeader { head, mask }) => {
                assert!(!eligible, "direct header for a message to compress");
                assert_eq!(mask.is_some(), client);
                let mut payload = body.to_vec();
                if let Some(key) = mask {
                    apply_mask_reference(&mut payload, key, 0);
                }
                tx.queue_raw(head.as_slice());
                tx.queue_raw(&payload);
                (false, usize::MAX)
            }
            None => {
                assert!(eligible, "no direct header for a message sent plain");
                tx.send(opcode, body).expect("send");
                (true, usize::MAX)
            }
        },
    };
    let frames = wire_frames(&conn.sender().pending()[before..]);
    assert!(!frames.is_empty(), "nothing queued for a message");
    let last = frames.len() - 1;
    for (i, f) in frames.iter().enumerate() {
        let want_op = if i == 0 { opcode as u8 } else { 0 };
        assert_eq!(f.opcode, want_op, "frame {i} of {}", frames.len());
        assert_eq!(f.fin, i == last, "FIN on frame {i} of {}", frames.len());
        assert_eq!(f.masked, client, "masking of frame {i}");
        assert!(f.len <= max_frame, "frame of {} > {max_frame}", f.len);
        assert_eq!(f.rsv & !RSV1, 0, "RSV2/RSV3 set");
        if i > 0 {
            assert_eq!(f.rsv, 0, "RSV1 on a continuation frame");
        }
    }
    let compressed = frames[0].rsv == RSV1;
    if !compressible {
        assert!(
            !compressed,
            "{how:?} compressed a message of {}",
            body.len()
        );
    } else if !dir.no_takeover || matches!(how, Method::Fragmented(_)) {
        // Only `send` without context takeover may fall back to plain.
        assert!(compressed, "{how:?} sent {} bytes plain", body.len());
    }
    let event = if text {
        OwnedEvent::Text(String::from_utf8(body.to_vec()).expect("text is UTF-8"))
    } else {
        OwnedEvent::Binary(body.to_vec())
    };
    dir.expected.push_back(event);
}

fuzz_target!(|data: &[u8]| {
    let &[flags, cs, cc, ss, sc, levels, cmin, smin, c2s, s2c, ref rest @ ..] = data else {
        return;
    };
    let client_cfg = DeflateConfig {
        enabled: true,
        server_no_context_takeover: flags & 1 != 0,
        client_no_context_takeover: flags & 2 != 0,
        server_max_window_bits: bits(cs),
        client_max_window_bits: bits(cc),
        level: u32::from(levels & 0x0f) % 10,
        min_compress_size: usize::from(cmin),
    };
    let server_cfg = DeflateConfig {
        enabled: true,
        server_no_context_takeover: flags & 4 != 0,
        client_no_context_takeover: flags & 8 != 0,
        server_max_window_bits: bits(ss),
        client_max_window_bits: bits(sc),
        level: u32::from(levels >> 4) % 10,
        min_compress_size: usize::from(smin),
    };
    let (client, server, params) = connect(&client_cfg, &server_cfg);
    let direction = |chunk: u8, no_takeover: bool, min_size: u8| Direction {
        expected: VecDeque::new(),
        inbox: Inbox::new(),
        chunk: usize::from(chunk),
        last: Vec::new(),
        no_takeover,
        min_size: usize::from(min_size),
    };
    let mut pair = Pair {
        client,
        server,
        dirs: [
            direction(c2s, params.client_no_context_takeover, cmin),
            direction(s2c, params.server_no_context_takeover, smin),
        ],
    };
    // Bytes and frames sent so far: a run stops at `BYTE_BUDGET` or
    // `FRAME_BUDGET`, so that repetitions and 1-byte fragments keep each
    // input fast.
    let (mut bytes_sent, mut frames_sent) = (0usize, 0usize);

    let mut input = Cursor(rest);
    while let Some(op) = input.u8() {
        let d = usize::from(op & 1);
        let kind = (op >> 1) & 3;
        if kind == 3 {
            // The transport takes some of this direction's output.
            let Some(n) = input.u16() else { break };
            let pending = pair.ends(d).0.sender().pending_len();
            pair.deliver(d, usize::from(n) % (pending + 1));
            continue;
        }
        // A ping has no method (nor its frame-size byte).
        let how = match (op >> 3) & 3 {
            _ if kind == 2 => Method::Send,
            0 => Method::Send,
            1 => Method::Fragmented(frame_size(input.u8().unwrap_or(0))),
            2 => Method::ByHand(frame_size(input.u8().unwrap_or(0))),
            _ => Method::Direct,
        };
        let (from, _, dirs) = pair.ends(d);
        let dir = &mut dirs[d];
        let mut body = match (op >> 5) & 3 {
            0 => input.long().unwrap_or_default().to_vec(),
            1 => {
                let times = usize::from(input.u8().unwrap_or(0)) + 1;
                input.short().unwrap_or_default().repeat(times)
            }
            2 => dir.last.clone(),
            _ => {
                let mut b = dir.last.clone();
                b.extend_from_slice(input.short().unwrap_or_default());
                b
            }
        };
        let text = kind == 1;
        if text {
            body = String::from_utf8_lossy(&body).into_owned().into_bytes();
        }
        bytes_sent += body.len();
        frames_sent += match how {
            Method::Fragmented(size) | Method::ByHand(size) => body.len() / size + 1,
            _ => 1,
        };
        if bytes_sent > BYTE_BUDGET || frames_sent > FRAME_BUDGET {
            break;
        }
        if kind == 2 {
            body.truncate(125);
            from.sender().ping(&body).expect("ping");
            dir.expected.push_back(OwnedEvent::Ping(body));
        } else {
            send_data(from, dir, text, &body, how);
            dir.last = body;
        }
        if op & 0x80 == 0 {
            pair.deliver(d, usize::MAX);
        }
    }

    pair.flush();
    for (d, dir) in pair.dirs.iter().enumerate() {
        assert!(
            dir.expected.is_empty(),
            "direction {d} never decoded {:?}",
            dir.expected
        );
        assert_eq!(
            dir.inbox.unconsumed(),
            0,
            "direction {d}: half a frame left"
        );
    }
});
