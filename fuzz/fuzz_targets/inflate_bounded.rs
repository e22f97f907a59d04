//! Arbitrary bytes as the compressed payload of RSV1 frames, masked as a
//! client does, fed to a server `Connection` with permessage-deflate
//! enabled and `max_message_size` = 4 KiB:
//!
//! - nothing panics;
//! - every message is at most 4 KiB; the only failures are 1002
//!   (protocol: RSV1 on a continuation or control frame, and the like),
//!   1007 (not DEFLATE, a back-reference before the start, or not UTF-8)
//!   and 1009 (inflates past the limit);
//! - the assembly buffer never outgrows the limit: a counting global
//!   allocator records every byte buffer (alignment 1; zlib-rs allocates
//!   its contexts 64-aligned) the connection allocates inside `read`. While
//!   a compressed message is assembled no such buffer may exceed
//!   `max_message_size + 1` bytes (the documented bound of
//!   `Decompressor::feed`: one byte past the cap tells a bomb from a
//!   message of exactly the cap); for an uncompressed fragmented message,
//!   assembled by doubling, `2 * max_message_size`. The heap the
//!   connection holds, contexts included, stays under `HEAP_BOUND` between
//!   reads and `PEAK_BOUND` inside one, and is all freed when it drops;
//! - reading the stream whole and in the input's read size gives the same
//!   events and the same failure (1007 and 1009 may swap: a text message
//!   both invalid and too big fails on whichever the piece boundaries show
//!   first).
//!
//! Input layout: 3 config bytes (the client's window bits `8 + b0 % 8`;
//! `b1` bit 0 client_no_context_takeover; `b2` the read size of the second
//! run, 0 meaning 1),
//! then frames, each a flags byte (bit 0 FIN, bit 1 RSV1, bit 2 text else
//! binary, bit 3 continuation, bit 4 ping instead, bit 5 RSV2, bit 6 split
//! the payload into fragments of the size in the next byte: the first frame
//! takes the flags, the others are continuations with FIN on the last),
//! then a `u16` length and the payload.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;
use wsreactor::ext::{DeflateConfig, DeflateParams};
use wsreactor::proto::{Config, Connection, Receiver};
use wsreactor_fuzz::{frame, Cursor, OwnedEvent};

/// `max_message_size` of the server.
const MAX: usize = 4096;
/// Most heap the connection may hold between reads: the assembly buffer
/// (`2 * MAX` at worst, uncompressed) plus a decompression context (about
/// 46 KiB with zlib-rs, see `DeflateConfig`; 52 KB in all measured on a
/// bomb) plus the boxes and the output queue, with room to spare.
const HEAP_BOUND: isize = 80 * 1024;
/// Most heap the connection may hold at any moment inside a read: one more
/// inflate context than between reads. After a final block (BFINAL) the
/// context is reset, and flate2's zlib-rs backend resets a context whose
/// window is below 15 bits by creating a new state before dropping the
/// old one (96 KB measured).
const PEAK_BOUND: isize = HEAP_BOUND + 48 * 1024;

// ---------------------------------------------------------------------------
// A counting allocator: what the connection allocates inside `read`.
// ---------------------------------------------------------------------------

struct Counting;

/// Counting is on (only around calls into the connection).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Largest byte buffer (alignment 1) allocated or grown to while counting.
static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated minus bytes freed while counting: the heap the
/// connection holds (it allocates and frees only inside the calls counted).
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// Highest `LIVE` seen.
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn note_alloc(size: usize, align: usize) {
    if align == 1 {
        LARGEST.fetch_max(size, Relaxed);
    }
    let live = LIVE.fetch_add(size as isize, Relaxed) + size as isize;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; the counters are
// plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ACTIVE.load(Relaxed) {
            note_alloc(layout.size(), layout.align());
        }
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ACTIVE.load(Relaxed) {
            note_alloc(layout.size(), layout.align());
        }
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ACTIVE.load(Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Relaxed);
        }
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ACTIVE.load(Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Relaxed);
            note_alloc(new_size, layout.align());
        }
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Run `f` with counting on.
fn counted<T>(f: impl FnOnce() -> T) -> T {
    ACTIVE.store(true, Relaxed);
    let r = f();
    ACTIVE.store(false, Relaxed);
    r
}

// ---------------------------------------------------------------------------
// The stream
// ---------------------------------------------------------------------------

/// What the server should be doing with the bytes of one frame, by a plain
/// model of RFC 6455 §5.4 message structure (where the model sees a
/// protocol error the connection fails there, before assembling anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// A control frame, or past a protocol error: nothing is assembled.
    Other,
    /// Payload of a compressed message.
    Compressed,
    /// Payload of an uncompressed message.
    Plain,
}

struct Stream {
    bytes: Vec<u8>,
    /// Where each frame ends, and what its payload belongs to.
    frames: Vec<(usize, Part)>,
}

impl Stream {
    /// The loosest bound that applies to buffers allocated while reading
    /// `bytes[from..to]`.
    fn buffer_bound(&self, from: usize, to: usize) -> usize {
        let mut start = 0;
        let mut bound = MAX + 1;
        for &(end, part) in &self.frames {
            if end > from && start < to.max(from + 1) && part == Part::Plain {
                bound = 2 * MAX;
            }
            start = end;
        }
        bound
    }
}

fn build(mut input: Cursor<'_>) -> Stream {
    let mut s = Stream {
        bytes: Vec::new(),
        frames: Vec::new(),
    };
    // The model: the message in progress (compressed?), or an error seen.
    let mut message: Option<Part> = None;
    let mut broken = false;
    let mut n = 0u8;
    let mut push = |s: &mut Stream, fin: bool, rsv: u8, opcode: u8, payload: &[u8]| {
        n = n.wrapping_add(1);
        let key = [n, n.wrapping_mul(7), 0x5a, 0xa5];
        let control = opcode & 8 != 0;
        let part = if broken {
            Part::Other
        } else if control {
            broken = rsv != 0 || payload.len() > 125;
            Part::Other
        } else {
            let part = match (opcode, message) {
                (0, Some(p)) if rsv == 0 => Some(p),
                (1 | 2, None) if rsv & !4 == 0 => Some(if rsv == 4 {
                    Part::Compressed
                } else {
                    Part::Plain
                }),
                _ => None,
            };
            match part {
                Some(p) => {
                    message = (!fin).then_some(p);
                    p
                }
                None => {
                    broken = true;
                    Part::Other
                }
            }
        };
        s.bytes
            .extend_from_slice(&frame(fin, rsv, opcode, Some(key), payload));
        s.frames.push((s.bytes.len(), part));
    };
    while let Some(flags) = input.u8() {
        let split = if flags & 0x40 != 0 {
            input.u8().map(|b| usize::from(b).max(1))
        } else {
            None
        };
        let Some(payload) = input.long() else { break };
        let fin = flags & 1 != 0;
        let rsv = (((flags >> 1) & 1) << 2) | (((flags >> 5) & 1) << 1);
        let opcode = if flags & 0x10 != 0 {
            0x9
        } else if flags & 8 != 0 {
            0x0
        } else if flags & 4 != 0 {
            0x1
        } else {
            0x2
        };
        match split {
            Some(size) if payload.len() > size => {
                let pieces: Vec<&[u8]> = payload.chunks(size).collect();
                let last = pieces.len() - 1;
                for (i, p) in pieces.into_iter().enumerate() {
                    let (rsv, opcode) = if i == 0 { (rsv, opcode) } else { (0, 0) };
                    push(&mut s, i == last && fin, rsv, opcode, p);
                }
            }
            _ => push(&mut s, fin, rsv, opcode, payload),
        }
    }
    s
}

// ---------------------------------------------------------------------------
// Reading it
// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<OwnedEvent>,
    failure: Option<u16>,
}

fn run(stream: &Stream, params: &DeflateParams, chunk: usize) -> Outcome {
    let config = Config {
        max_message_size: MAX as u64,
        ..Config::default()
    };
    LIVE.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    let mut conn = counted(|| {
        let mut conn = Connection::server(config);
        let deflate = DeflateConfig {
            enabled: true,
            ..DeflateConfig::default()
        };
        conn.enable_deflate(params, &deflate);
        conn
    });
    let mut out = Outcome {
        events: Vec::new(),
        failure: None,
    };
    let pieces: Vec<&[u8]> = if chunk == 0 {
        vec![&stream.bytes[..]]
    } else {
        stream.bytes.chunks(chunk).collect()
    };
    let mut pending: Vec<u8> = Vec::new();
    // Offset in the stream of `pending[0]`.
    let mut at = 0;
    'pieces: for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            let len = pending.len();
            LARGEST.store(0, Relaxed);
            // Counting stops before the event is copied out.
            ACTIVE.store(true, Relaxed);
            let read = conn.read(&mut pending);
            ACTIVE.store(false, Relaxed);
            let read = match read {
                Ok(r) => Ok((r.consumed, r.event.as_ref().map(OwnedEvent::from_event))),
                Err(e) => Err(e.close_code()),
            };
            let largest = LARGEST.load(Relaxed);
            let (live, peak) = (LIVE.load(Relaxed), PEAK.load(Relaxed));
            assert!(live <= HEAP_BOUND, "the connection holds {live} bytes");
            assert!(peak <= PEAK_BOUND, "the connection held {peak} bytes");
            let (consumed, event) = match read {
                Ok(x) => x,
                Err(code) => {
                    assert!(
                        matches!(code, 1002 | 1007 | 1009),
                        "failed with close code {code}"
                    );
                    // Whatever was being read: the rest of the input.
                    let bound = stream.buffer_bound(at, stream.bytes.len());
                    assert!(
                        largest <= bound,
                        "a buffer of {largest} bytes, bound {bound}"
                    );
                    out.failure = Some(code);
                    break 'pieces;
                }
            };
            assert!(consumed <= len, "consumed {consumed} of {len}");
            let bound = stream.buffer_bound(at, at + consumed);
            assert!(
                largest <= bound,
                "a buffer of {largest} bytes, bound {bound}"
            );
            pending.drain(..consumed);
            at += consumed;
            match event {
                Some(e) => {
                    if let OwnedEvent::Text(m) = &e {
                        assert!(m.len() <= MAX, "text message of {}", m.len());
                    }
                    if let OwnedEvent::Binary(m) = &e {
                        assert!(m.len() <= MAX, "binary message of {}", m.len());
                    }
                    out.events.push(e);
                }
                None => {
                    assert!(pending.len() <= Receiver::MAX_UNCONSUMED);
                    break;
                }
            }
        }
    }
    // Everything the connection allocated, it frees.
    counted(|| drop(conn));
    assert_eq!(LIVE.load(Relaxed), 0, "the connection leaked");
    out
}

fuzz_target!(|data: &[u8]| {
    let [bits, flags, chunk, rest @ ..] = data else {
        return;
    };
    let params = DeflateParams {
        client_max_window_bits: 8 + bits % 8,
        client_no_context_takeover: flags & 1 != 0,
        ..DeflateParams::default()
    };
    let stream = build(Cursor(rest));
    let whole = run(&stream, &params, 0);
    let chunked = run(&stream, &params, usize::from(*chunk).max(1));
    assert_eq!(
        whole.events, chunked.events,
        "the read size changed the events"
    );
    match (whole.failure, chunked.failure) {
        (Some(1007 | 1009), Some(1007 | 1009)) => {}
        (a, b) => assert_eq!(a, b, "the read size changed the failure"),
    }
});
