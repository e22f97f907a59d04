//! Micro-benchmarks of the sans-IO hot path: what one message costs the CPU
//! before and after the syscalls.
//!
//! ```text
//! cargo bench --bench micro                 # everything, about 2 minutes
//! cargo bench --bench micro -- mask         # one group (a criterion filter)
//! ```
//!
//! Every group that processes a buffer reports `Throughput::Bytes`, so
//! criterion prints GB/s next to the time, and each fast path runs next to
//! its baseline: `apply_mask` against `apply_mask_reference` and a `memcpy`
//! of the same size (the floor for anything that touches every byte), and
//! `Utf8Validator::feed` against `std::str::from_utf8`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsreactor::handshake::server::{classify, parse_request, write_accept, Limits, Outcome};
use wsreactor::handshake::Status;
use wsreactor::proto::{
    apply_mask, apply_mask_reference, copy_masked, decode_header, Config, Connection, Event,
    Message, OpCode, Utf8Validator,
};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// 20 B is the typical chat message, 16 KiB a typical large one (and what the
/// echo benchmark sends); 64 KiB no longer fits in L1.
const SIZES: [(usize, &str); 4] = [
    (20, "20B"),
    (1024, "1KiB"),
    (16 * 1024, "16KiB"),
    (64 * 1024, "64KiB"),
];

/// `len` bytes starting `skew` bytes past a 64-byte boundary in `v`, so that
/// a run measures the same alignment every time (an allocation's own
/// alignment varies from run to run, and unaligned stores cost more).
fn at(v: &mut Vec<u8>, skew: usize, len: usize) -> &mut [u8] {
    v.resize(len + skew + 64, 0);
    let start = v.as_ptr().align_offset(64) + skew;
    &mut v[start..start + len]
}

/// Unmasking touches every payload byte once, so its ceiling is a memcpy.
fn mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    let (mut v1, mut v2, mut v3, mut v4) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (size, name) in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let buf = at(&mut v1, 0, size);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
        g.bench_function(BenchmarkId::new("apply_mask", name), |b| {
            b.iter(|| apply_mask(black_box(&mut *buf), black_box(KEY), 0))
        });
        // In the reactor the payload of a small masked frame starts 6 bytes
        // after the read buffer's start: the unaligned case is the common one.
        let skewed = at(&mut v2, 6, size);
        g.bench_function(BenchmarkId::new("apply_mask_at_6", name), |b| {
            b.iter(|| apply_mask(black_box(&mut *skewed), black_box(KEY), 0))
        });
        g.bench_function(BenchmarkId::new("apply_mask_reference", name), |b| {
            b.iter(|| apply_mask_reference(black_box(&mut *buf), black_box(KEY), 0))
        });
        let src: &[u8] = buf;
        let dst = at(&mut v3, 0, size);
        g.bench_function(BenchmarkId::new("memcpy", name), |b| {
            b.iter(|| black_box(&mut *dst).copy_from_slice(black_box(src)))
        });
        // A client's send: the payload copied out and masked, in one pass
        // or as a copy then a mask.
        g.bench_function(BenchmarkId::new("copy_masked", name), |b| {
            b.iter(|| copy_masked(black_box(&mut *dst), black_box(src), black_box(KEY), 0))
        });
        // In a client the masked payload lands after the frame's header.
        let dst_at_8 = at(&mut v4, 8, size);
        g.bench_function(BenchmarkId::new("copy_masked_at_8", name), |b| {
            b.iter(|| copy_masked(black_box(&mut *dst_at_8), black_box(src), black_box(KEY), 0))
        });
        g.bench_function(BenchmarkId::new("memcpy+apply_mask", name), |b| {
            b.iter(|| {
                black_box(&mut *dst).copy_from_slice(black_box(src));
                apply_mask(black_box(&mut *dst), black_box(KEY), 0)
            })
        });
    }
    g.finish();
}

/// Header decoding runs once per frame: it should be a few nanoseconds.
fn header(c: &mut Criterion) {
    let cases: [(&str, &[u8]); 5] = [
        // Unmasked text, 5-byte payload: the 2-byte form.
        ("2B", &[0x81, 0x05]),
        // Unmasked binary, 256 bytes: 16-bit extended length.
        ("4B", &[0x82, 126, 0x01, 0x00]),
        // Unmasked binary, 65536 bytes: 64-bit extended length.
        ("10B", &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        // Masked text, 5 bytes: what a client's small message starts with.
        ("masked_6B", &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]),
        // Masked binary, 65536 bytes: the longest header there is.
        (
            "masked_14B",
            &[0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0x37, 0xfa, 0x21, 0x3d],
        ),
    ];
    let mut g = c.benchmark_group("decode_header");
    for (name, bytes) in cases {
        assert!(matches!(decode_header(bytes), Ok(Status::Complete((_, n))) if n == bytes.len()));
        g.bench_function(name, |b| b.iter(|| decode_header(black_box(bytes))));
    }
    g.finish();
}

/// `size` bytes of valid UTF-8 mixing 1-, 2-, 3- and 4-byte code points.
fn mixed_utf8(size: usize) -> Vec<u8> {
    const SAMPLE: &str = "κόσμε · 日本語のテキスト · 🦀🚀 · plain ASCII words · Größe · ";
    let mut s = String::with_capacity(size + SAMPLE.len());
    while s.len() < size {
        s.push_str(SAMPLE);
    }
    let mut end = size;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    while s.len() < size {
        s.push('.');
    }
    s.into_bytes()
}

/// UTF-8 validation of a text payload, whole (`from_utf8`, what the in-place
/// path uses) and through the incremental validator (the assembly path).
fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for (size, name) in [(1024, "1KiB"), (64 * 1024, "64KiB")] {
        let ascii: Vec<u8> = (0..size).map(|i| b' ' + (i % 95) as u8).collect();
        let mixed = mixed_utf8(size);
        for (kind, data) in [("ascii", &ascii), ("mixed", &mixed)] {
            assert_eq!(data.len(), size);
            assert!(std::str::from_utf8(data).is_ok());
            g.throughput(Throughput::Bytes(size as u64));
            let id = format!("{kind}_{name}");
            g.bench_function(BenchmarkId::new("Utf8Validator::feed", &id), |b| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    v.feed(black_box(data)).and_then(|()| v.finish())
                })
            });
            g.bench_function(BenchmarkId::new("str::from_utf8", &id), |b| {
                b.iter(|| std::str::from_utf8(black_box(data)).is_ok())
            });
        }
    }
    g.finish();
}

/// A browser's opening handshake (Chromium's header set, RFC 6455 §1.3 key).
const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

/// The server's side of the opening handshake, step by step and together.
fn handshake(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Bytes(REQUEST.len() as u64));
    g.bench_function("parse_request", |b| {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        b.iter(|| {
            let r = parse_request(black_box(REQUEST), &mut headers, &limits);
            matches!(r, Ok(Status::Complete(_)))
        })
    });

    let mut headers = [httparse::EMPTY_HEADER; 64];
    let Ok(Status::Complete(req)) = parse_request(REQUEST, &mut headers, &limits) else {
        panic!("the benchmark request must parse");
    };
    g.bench_function("classify", |b| {
        b.iter(|| matches!(classify(black_box(&req)), Outcome::Upgrade(_)))
    });
    let Outcome::Upgrade(up) = classify(&req) else {
        panic!("the benchmark request must be an upgrade");
    };
    let mut out = Vec::with_capacity(256);
    // Once outside the closure too: a filter may skip the benchmark.
    write_accept(&mut out, up.key, None, None);
    g.bench_function("write_accept", |b| {
        b.iter(|| {
            out.clear();
            write_accept(&mut out, black_box(up.key), None, None);
            out.len()
        })
    });
    assert!(out
        .windows(28)
        .any(|w| w == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));

    g.bench_function("parse+classify+write_accept", |b| {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            if let Ok(Status::Complete(req)) =
                parse_request(black_box(REQUEST), &mut headers, &limits)
            {
                if let Outcome::Upgrade(up) = classify(&req) {
                    write_accept(&mut out, up.key, None, None);
                }
            }
            out.len()
        })
    });
    g.finish();
}

const ECHO_MESSAGES: u64 = 100_000;
const ECHO_PAYLOAD: &[u8; 14] = b"Hello, world!!";

/// How the server answers in the in-memory echo.
#[derive(Clone, Copy)]
enum Reply {
    /// `Sender::send`: the frame is queued in the sender's buffer.
    Send,
    /// `Sender::direct_header`: the reactor's zero-copy path, where header
    /// and payload go to the socket in one writev (here: into the buffer).
    DirectHeader,
}

/// One client and one server connection passing `ECHO_MESSAGES` 14-byte text
/// messages through in-memory "sockets": everything an echo costs except the
/// syscalls. `wire_*` stand for the reactor's loop-wide read buffers.
fn echo_round_trips(reply: Reply) -> u64 {
    let mut client = Connection::client(Config::default(), 0x5eed);
    let mut server = Connection::server(Config::default());
    let mut wire_to_server = Vec::with_capacity(64 * 1024);
    let mut wire_to_client = Vec::with_capacity(64 * 1024);
    let mut echoed = 0;
    for _ in 0..ECHO_MESSAGES {
        // Client sends: masked into its sender's queue, "written" to the wire.
        let tx = client.sender();
        tx.send(OpCode::Text, ECHO_PAYLOAD).expect("open");
        wire_to_server.clear();
        wire_to_server.extend_from_slice(tx.pending());
        tx.consume(wire_to_server.len());

        // Server reads the frame (unmasked in place) and echoes it.
        let (rx, tx) = server.split();
        let read = rx.read(&mut wire_to_server, tx).expect("valid frame");
        debug_assert_eq!(read.consumed, 2 + 4 + ECHO_PAYLOAD.len());
        let Some(Event::Message(msg)) = read.event else {
            panic!("expected a message");
        };
        wire_to_client.clear();
        match reply {
            Reply::Send => {
                tx.send(msg.opcode(), msg.as_bytes()).expect("open");
                wire_to_client.extend_from_slice(tx.pending());
                tx.consume(wire_to_client.len());
            }
            Reply::DirectHeader => {
                let bytes = msg.as_bytes();
                let direct = tx
                    .direct_header(msg.opcode(), bytes.len())
                    .expect("open")
                    .expect("not compressed");
                assert!(direct.mask.is_none(), "a server does not mask");
                wire_to_client.extend_from_slice(direct.head.as_slice());
                wire_to_client.extend_from_slice(bytes);
            }
        }

        // Client reads the echo.
        let read = client.read(&mut wire_to_client).expect("valid frame");
        if let Some(Event::Message(Message::Text(t))) = read.event {
            echoed += t.len() as u64;
        }
    }
    assert_eq!(echoed, ECHO_MESSAGES * ECHO_PAYLOAD.len() as u64);
    echoed
}

fn echo(c: &mut Criterion) {
    let mut g = c.benchmark_group("echo_in_memory");
    // One iteration is 100,000 round trips (a few ms): few samples suffice.
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    // Per element = per message: criterion's "thrpt" is messages per second,
    // and time / 100,000 is the cost of one message.
    g.throughput(Throughput::Elements(ECHO_MESSAGES));
    g.bench_function("100k_text_14B/send", |b| {
        b.iter(|| echo_round_trips(Reply::Send))
    });
    g.bench_function("100k_text_14B/direct_header", |b| {
        b.iter(|| echo_round_trips(Reply::DirectHeader))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // Short runs: the whole file takes about two minutes on 2 cores.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500));
    targets = mask, header, utf8, handshake, echo
}
criterion_main!(benches);
