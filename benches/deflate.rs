//! permessage-deflate throughput: the codec alone, and one message through a
//! pair of connections (compress, frame, unmask, inflate, UTF-8 check).
//!
//! ```text
//! cargo bench --features deflate --bench deflate              # about 2 minutes
//! cargo bench --features deflate --bench deflate -- compress  # one group
//! ```
//!
//! Payloads are English-like text and JSON records, 1 KiB and 64 KiB. Every
//! message of a run is different (consecutive slices of a long generated
//! document), so context takeover helps as much as it would on a real
//! stream of similar messages, and no more. Throughput is in uncompressed
//! bytes. Before the runs, a table of compressed sizes (the ratio each
//! setting buys) is printed.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsreactor::ext::deflate::{Compressor, Decompressor};
use wsreactor::ext::{DeflateConfig, DeflateParams};
use wsreactor::proto::{Config, Connection, Event, OpCode};

const SIZES: [(usize, &str); 2] = [(1024, "1KiB"), (64 * 1024, "64KiB")];
/// Distinct messages per run; the decompressor starts afresh after each
/// cycle (the cost is spread over the cycle).
const CYCLE: usize = 64;

fn rng(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Words drawn at random from a small vocabulary: prose-like entropy.
fn text(len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "of", "and", "a", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on",
        "are", "as", "with", "his", "they", "at", "be", "this", "have", "from", "or", "one", "had",
        "by", "word", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said",
        "there", "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up",
        "other", "about", "out", "many", "then", "them", "these", "so", "some", "her", "would",
        "make", "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see",
        "number", "no", "way", "could", "people", "my", "than", "first", "water", "been", "call",
        "who", "its", "now", "find", "long", "down", "day", "did", "get", "come", "made", "may",
        "part", "socket", "frame", "message", "server", "client",
    ];
    let mut s = 0x1234_5678_9abc_def1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[(rng(&mut s) % WORDS.len() as u64) as usize].as_bytes());
        out.push(if rng(&mut s) % 12 == 0 { b'.' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// An array of small records with varying numbers: API-like JSON.
fn json(len: usize) -> Vec<u8> {
    let mut s = 0x0fed_cba9_8765_4321;
    let mut out = b"[".to_vec();
    let mut i = 0u64;
    while out.len() < len {
        let r = rng(&mut s);
        out.extend_from_slice(
            format!(
                "{{\"id\":{i},\"user\":\"user{}\",\"price\":{}.{:02},\"active\":{},\"tags\":[\"t{}\",\"t{}\"]}},",
                r % 1000,
                r % 10_000,
                r % 100,
                r % 2 == 0,
                r % 7,
                r % 13
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// `CYCLE` consecutive, distinct messages of `size` bytes.
fn messages(kind: &str, size: usize) -> Vec<Vec<u8>> {
    let doc = match kind {
        "text" => text(size * CYCLE),
        _ => json(size * CYCLE),
    };
    doc.chunks(size).map(<[u8]>::to_vec).collect()
}

/// Compressed size / original size over one cycle.
fn ratio(msgs: &[Vec<u8>], level: u32, no_context_takeover: bool) -> f64 {
    let mut c = Compressor::new(15, level, no_context_takeover);
    let mut total = 0;
    let mut out = Vec::new();
    for m in msgs {
        out.clear();
        c.compress(m, &mut out).unwrap();
        total += out.len();
    }
    total as f64 / msgs.iter().map(Vec::len).sum::<usize>() as f64
}

fn print_ratios() {
    eprintln!("compressed/original over {CYCLE} distinct messages (window 15):");
    eprintln!("  payload      level 1   level 1 no-takeover   level 6");
    for kind in ["text", "json"] {
        for (size, name) in [(64, "64B"), (128, "128B"), (256, "256B")]
            .into_iter()
            .chain(SIZES)
        {
            let msgs = messages(kind, size);
            eprintln!(
                "  {kind:4} {name:6}   {:7.3}   {:19.3}   {:7.3}",
                ratio(&msgs, 1, false),
                ratio(&msgs, 1, true),
                ratio(&msgs, 6, false),
            );
        }
    }
}

fn compress(c: &mut Criterion) {
    print_ratios();
    let mut g = c.benchmark_group("compress");
    for kind in ["text", "json"] {
        for (size, name) in SIZES {
            let msgs = messages(kind, size);
            g.throughput(Throughput::Bytes(size as u64));
            for (label, level, nct) in [
                ("level1", 1, false),
                ("level1_no_takeover", 1, true),
                ("level6", 6, false),
            ] {
                let mut z = Compressor::new(15, level, nct);
                let mut out = Vec::with_capacity(2 * size);
                let mut i = 0;
                g.bench_function(BenchmarkId::new(label, format!("{kind}_{name}")), |b| {
                    b.iter(|| {
                        out.clear();
                        z.compress(black_box(&msgs[i % CYCLE]), &mut out).unwrap();
                        i += 1;
                        out.len()
                    })
                });
            }
        }
    }
    g.finish();
}

fn decompress(c: &mut Criterion) {
    let mut g = c.benchmark_group("decompress");
    for kind in ["text", "json"] {
        for (size, name) in SIZES {
            let msgs = messages(kind, size);
            g.throughput(Throughput::Bytes(size as u64));
            for (label, nct) in [("takeover", false), ("no_takeover", true)] {
                let mut z = Compressor::new(15, 1, nct);
                let payloads: Vec<Vec<u8>> = msgs
                    .iter()
                    .map(|m| {
                        let mut out = Vec::new();
                        z.compress(m, &mut out).unwrap();
                        out
                    })
                    .collect();
                let mut d = Decompressor::new(15, nct);
                let mut out = Vec::with_capacity(size);
                let mut i = 0;
                g.bench_function(BenchmarkId::new(label, format!("{kind}_{name}")), |b| {
                    b.iter(|| {
                        if i % CYCLE == 0 {
                            d = Decompressor::new(15, nct);
                        }
                        out.clear();
                        d.decompress(black_box(&payloads[i % CYCLE]), &mut out, usize::MAX)
                            .unwrap();
                        i += 1;
                        out.len()
                    })
                });
            }
        }
    }
    g.finish();
}

/// One text message from server to client through two `Connection`s:
/// `Sender::send` (compressing) then `Receiver::read` (inflating into the
/// assembly buffer, UTF-8 checked), against the same without the extension.
fn connection(c: &mut Criterion) {
    let mut g = c.benchmark_group("connection_send_read");
    let cfg = DeflateConfig {
        enabled: true,
        ..DeflateConfig::default()
    };
    for (size, name) in SIZES {
        let msgs = messages("json", size);
        g.throughput(Throughput::Bytes(size as u64));
        for deflate in [false, true] {
            let fresh = || {
                let mut server = Connection::server(Config::default());
                let mut client = Connection::client(Config::default(), 7);
                if deflate {
                    server.enable_deflate(&DeflateParams::default(), &cfg);
                    client.enable_deflate(&DeflateParams::default(), &cfg);
                }
                (server, client)
            };
            let (mut server, mut client) = fresh();
            let mut wire = Vec::with_capacity(2 * size);
            let mut i = 0;
            let label = if deflate { "deflate" } else { "plain" };
            g.bench_function(BenchmarkId::new(label, format!("json_{name}")), |b| {
                b.iter(|| {
                    if i % CYCLE == 0 {
                        (server, client) = fresh();
                    }
                    let tx = server.sender();
                    tx.send(OpCode::Text, &msgs[i % CYCLE]).unwrap();
                    wire.clear();
                    wire.extend_from_slice(tx.pending());
                    tx.consume(wire.len());
                    i += 1;
                    match client.read(&mut wire).unwrap().event {
                        Some(Event::Message(m)) => m.as_bytes().len(),
                        _ => unreachable!("one whole message"),
                    }
                })
            });
        }
    }
    g.finish();
}

/// Compressing a small message: the fixed cost that `min_compress_size`
/// weighs against the bytes saved.
fn small(c: &mut Criterion) {
    let mut g = c.benchmark_group("compress_small_json");
    for size in [32usize, 64, 128, 256] {
        let msgs = messages("json", size);
        g.throughput(Throughput::Bytes(size as u64));
        for (label, nct) in [("takeover", false), ("no_takeover", true)] {
            let mut z = Compressor::new(15, 1, nct);
            let mut out = Vec::with_capacity(2 * size);
            let mut i = 0;
            g.bench_function(BenchmarkId::new(label, format!("{size}B")), |b| {
                b.iter(|| {
                    out.clear();
                    z.compress(black_box(&msgs[i % CYCLE]), &mut out).unwrap();
                    i += 1;
                    out.len()
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500));
    targets = compress, decompress, connection, small
}
criterion_main!(benches);
