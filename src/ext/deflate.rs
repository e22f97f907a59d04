//! The permessage-deflate codec (RFC 7692 §7.2), whole messages at a time.
//!
//! [`Compressor`] turns a message into the payload of a compressed message;
//! [`Decompressor`] inflates such a payload, fed in pieces as frames arrive,
//! into a buffer it never lets grow past a cap. Both sit on flate2 with the
//! zlib-rs backend (raw DEFLATE, windows of 9..=15 bits).
//!
//! ```text
//!  compress:   message ─► deflate, sync flush ─► strip 00 00 ff ff ─► payload
//!  decompress: payload pieces ─► inflate ... ─► + 00 00 ff ff ─► message
//!                                 │ (output grows in bounded steps, never past
//!                                 │  the cap + 1 byte: a bomb ends in TooBig)
//! ```
//!
//! Context takeover: a context keeps its LZ77 window from one message to the
//! next unless the agreement says "no context takeover" for that direction;
//! then the context is dropped after each message and created again for the
//! next one (measured with zlib-rs: about 6 µs per compressed message, 2 µs
//! per inflated one; a reset that kept the memory would still cost 3-5 µs,
//! most of it clearing the 128 KiB hash table). Contexts are created lazily,
//! so a connection that never sends or receives a compressed message holds
//! none.
//!
//! Memory per context, heap allocated with zlib-rs after one 4 KiB message:
//! compressor 371 KiB at 15 window bits, 259 KiB at 12, 245 KiB at 9 (a
//! 128 KiB hash table and a 64 KiB literal buffer do not shrink with the
//! window; about 320 KiB of the 371 are resident); decompressor 46 KiB
//! (about 23 KiB resident) whatever the agreed window, as zlib-rs always
//! allocates the largest inflate window.

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The empty stored block a sync flush ends with; RFC 7692 §7.2.1 removes it
/// from every compressed message and §7.2.2 appends it before inflating.
pub const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Smallest step the output buffer grows by while inflating.
const MIN_GROW: usize = 256;
/// Largest first allocation for inflated output; later steps double the
/// buffer, so a large message costs O(log n) reallocations.
const FIRST_GROW_MAX: usize = 64 * 1024;

/// Why the codec gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeflateError {
    /// The inflated message would exceed the cap (close code 1009).
    TooBig,
    /// The payload is not a valid DEFLATE stream, or refers back before the
    /// start of the data it has seen (close code 1007). zlib-rs keeps a
    /// 32 KiB window whatever the agreement, so a peer that exceeds a
    /// smaller agreed window is decoded, not refused.
    Corrupt,
    /// zlib refused to compress (a bug, not the peer's fault: 1011).
    Internal,
}

impl fmt::Display for DeflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooBig => "inflated message exceeds the size limit",
            Self::Corrupt => "compressed message is not valid DEFLATE data",
            Self::Internal => "compression failed",
        })
    }
}

impl std::error::Error for DeflateError {}

/// The sending side of permessage-deflate: one compression context.
pub struct Compressor {
    ctx: Option<Compress>,
    level: Compression,
    window_bits: u8,
    no_context_takeover: bool,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("allocated", &self.ctx.is_some())
            .field("level", &self.level.level())
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish()
    }
}

impl Compressor {
    /// A compressor with an LZ77 window of `window_bits` (clamped to
    /// 9..=15) at zlib `level` (clamped to 0..=9). No memory is taken until
    /// the first message.
    pub fn new(window_bits: u8, level: u32, no_context_takeover: bool) -> Self {
        Self {
            ctx: None,
            level: Compression::new(level.min(9)),
            window_bits: window_bits.clamp(9, 15),
            no_context_takeover,
        }
    }

    /// Whether a compression context is currently allocated.
    pub fn is_allocated(&self) -> bool {
        self.ctx.is_some()
    }

    /// Whether the context is dropped after every message.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// The LZ77 window, as base-2 log (9..=15).
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Appends the payload of the compressed form of `message` to `out`.
    ///
    /// RFC 7692 §7.2.1: "Compress all the octets of the payload of the
    /// message using DEFLATE", then, the data ending with an empty block
    /// with no compression after a sync flush, "Remove 4 octets (that are
    /// 0x00 0x00 0xff 0xff) from the tail end".
    ///
    /// # Errors
    /// [`DeflateError::Internal`] if zlib fails, which it does not on a
    /// healthy context; `out` is then left as it was and the context is
    /// dropped.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        if message.is_empty() {
            // §7.2.3.6: an empty stored block, less its `00 00 ff ff`. zlib
            // itself would write nothing: it refuses a second flush with no
            // input in between. Messages end byte-aligned, so this is valid
            // anywhere in the stream, and the context is left untouched.
            out.push(0x00);
            return Ok(());
        }
        let start = out.len();
        let result = self.deflate(message, out);
        if result.is_err() {
            out.truncate(start);
            self.ctx = None;
        } else if self.no_context_takeover {
            // §7.1.1: without context takeover the next message starts from
            // an empty window anyway, so give the memory back.
            self.ctx = None;
        }
        result
    }

    fn deflate(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        let (level, bits) = (self.level, self.window_bits);
        let ctx = self
            .ctx
            .get_or_insert_with(|| Compress::new_with_window_bits(level, false, bits));
        let start = out.len();
        let base = ctx.total_in();
        loop {
            let done = (ctx.total_in() - base) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve((message.len() - done) / 2 + 64);
            }
            ctx.compress_vec(&message[done..], out, FlushCompress::Sync)
                .map_err(|_| DeflateError::Internal)?;
            // zlib: a flush is complete once all input is taken and output
            // space is left over ("If deflate returns with avail_out == 0,
            // this function must be called again").
            let done = (ctx.total_in() - base) as usize;
            if done == message.len() && out.len() < out.capacity() {
                break;
            }
        }
        if !out[start..].ends_with(&TRAILER) {
            return Err(DeflateError::Internal);
        }
        out.truncate(out.len() - TRAILER.len());
        Ok(())
    }
}

/// The receiving side of permessage-deflate: one decompression context and
/// the state of the message being inflated.
pub struct Decompressor {
    ctx: Option<Decompress>,
    window_bits: u8,
    no_context_takeover: bool,
    /// Some payload of the current message was fed.
    fed: bool,
    /// The current message's DEFLATE data ended with a final block
    /// (BFINAL = 1); what follows in the message is ignored.
    ended: bool,
}

impl fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompressor")
            .field("allocated", &self.ctx.is_some())
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("fed", &self.fed)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Decompressor {
    /// A decompressor for a peer that compresses with at most `window_bits`
    /// (raised to at least 9, clamped to 15). No memory is taken until the
    /// first compressed message.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Self {
            ctx: None,
            window_bits: window_bits.clamp(9, 15),
            no_context_takeover,
            fed: false,
            ended: false,
        }
    }

    /// Whether a decompression context is currently allocated.
    pub fn is_allocated(&self) -> bool {
        self.ctx.is_some()
    }

    /// Inflate a whole compressed payload, appending to `out`: [`feed`]
    /// then [`finish`].
    ///
    /// [`feed`]: Decompressor::feed
    /// [`finish`]: Decompressor::finish
    ///
    /// # Errors
    /// As [`Decompressor::feed`].
    pub fn decompress(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), DeflateError> {
        self.feed(payload, out, max)?;
        self.finish(out, max)
    }

    /// Inflate the next piece of a compressed message's payload, appending
    /// to `out`, which may hold at most `max` bytes in all.
    ///
    /// The buffer grows in steps (doubling, from a size guessed from the
    /// input) and never beyond `max + 1` bytes of capacity, whatever the
    /// input claims: a decompression bomb stops at the cap.
    ///
    /// # Errors
    /// [`DeflateError::TooBig`] once the output would pass `max`;
    /// [`DeflateError::Corrupt`] for invalid DEFLATE data. The context is
    /// unusable afterwards: the connection is failed.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), DeflateError> {
        if self.ended || input.is_empty() {
            return Ok(());
        }
        self.fed = true;
        let bits = self.window_bits;
        let ctx = self
            .ctx
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, bits));
        self.ended = inflate(ctx, input, out, max)?;
        Ok(())
    }

    /// The last piece of the message was fed: inflate the trailer
    /// (RFC 7692 §7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the
    /// tail end of the payload of the message") and get ready for the next
    /// message.
    ///
    /// A message with an empty payload inflates to nothing and leaves the
    /// context untouched. After a final block (§7.2.3.4 allows BFINAL = 1)
    /// the stream is over, so the context starts afresh for the next
    /// message; without context takeover it is released.
    ///
    /// # Errors
    /// As [`Decompressor::feed`].
    pub fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), DeflateError> {
        if !std::mem::take(&mut self.fed) {
            return Ok(());
        }
        let ended = std::mem::take(&mut self.ended);
        let Some(ctx) = self.ctx.as_mut() else {
            return Ok(());
        };
        let ended = ended || inflate(ctx, &TRAILER, out, max)?;
        if self.no_context_takeover {
            self.ctx = None;
        } else if ended {
            ctx.reset(false);
        }
        Ok(())
    }
}

/// Inflate all of `input` into `out` (at most `max` bytes in all); `true`
/// if the DEFLATE stream ended (a final block).
fn inflate(
    ctx: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<bool, DeflateError> {
    // One byte past the cap is room enough to learn that the cap is passed.
    let limit = max.saturating_add(1);
    loop {
        if out.len() == out.capacity() {
            if out.len() >= limit {
                return Err(DeflateError::TooBig);
            }
            let grow = if out.is_empty() {
                input
                    .len()
                    .saturating_mul(4)
                    .clamp(MIN_GROW, FIRST_GROW_MAX)
            } else {
                out.len().max(MIN_GROW)
            };
            out.reserve_exact(grow.min(limit - out.len()));
        }
        let (in0, out0) = (ctx.total_in(), ctx.total_out());
        let status = ctx
            .decompress_vec(input, out, FlushDecompress::None)
            .map_err(|_| DeflateError::Corrupt)?;
        let used = (ctx.total_in() - in0) as usize;
        let made = (ctx.total_out() - out0) as usize;
        input = &input[used..];
        if out.len() > max {
            return Err(DeflateError::TooBig);
        }
        if status == Status::StreamEnd {
            return Ok(true);
        }
        // Input-starved with room left: everything inflatable is out.
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(false);
        }
        if used == 0 && made == 0 && out.len() < out.capacity() {
            // No progress with input and room: cannot happen on a healthy
            // stream; refuse rather than spin.
            return Err(DeflateError::Corrupt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate_all(d: &mut Decompressor, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        d.decompress(payload, &mut out, usize::MAX).unwrap();
        out
    }

    /// RFC 7692 §7.2.3 example payloads for "Hello".
    #[test]
    fn rfc_7692_examples() {
        let mut d = Decompressor::new(15, false);
        // §7.2.3.1: one compressed block.
        let one = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&mut d, &one), b"Hello");
        // §7.2.3.2: the second "Hello" refers back into the first.
        let again = [0xf2, 0x00, 0x11, 0x00, 0x00];
        assert_eq!(inflate_all(&mut d, &again), b"Hello");
        // §7.2.3.3: a block with no compression.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate_all(&mut d, &stored), b"Hello");
        // §7.2.3.4: BFINAL set; the stream ends, the next message starts a
        // fresh one.
        let fin = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_all(&mut d, &fin), b"Hello");
        assert_eq!(inflate_all(&mut d, &one), b"Hello");
        // §7.2.3.5: two blocks in one message.
        let two = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(inflate_all(&mut d, &two), b"Hello");
        // Fed byte by byte (fragments and reads split anywhere).
        let mut d = Decompressor::new(15, false);
        let mut out = Vec::new();
        for b in one {
            d.feed(&[b], &mut out, 100).unwrap();
        }
        d.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn we_produce_the_rfc_bytes() {
        let mut c = Compressor::new(15, 6, false);
        let mut out = Vec::new();
        c.compress(b"Hello", &mut out).unwrap();
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }

    #[test]
    fn empty_message_between_others() {
        for level in [0, 1, 6] {
            let mut c = Compressor::new(15, level, false);
            let mut d = Decompressor::new(15, false);
            for msg in [&b"first first"[..], b"", b"", b"first again", b""] {
                let mut z = Vec::new();
                c.compress(msg, &mut z).unwrap();
                assert_eq!(inflate_all(&mut d, &z), msg, "level {level}");
            }
        }
    }

    #[test]
    fn empty_payload_is_an_empty_message() {
        let mut d = Decompressor::new(15, false);
        assert_eq!(inflate_all(&mut d, &[]), b"");
        assert!(!d.is_allocated());
        // And an empty message compressed by us.
        let mut c = Compressor::new(15, 1, false);
        let mut z = Vec::new();
        c.compress(b"", &mut z).unwrap();
        assert_eq!(inflate_all(&mut d, &z), b"");
        z.clear();
        c.compress(b"after", &mut z).unwrap();
        assert_eq!(inflate_all(&mut d, &z), b"after");
    }

    #[test]
    fn round_trip_with_and_without_takeover() {
        for bits in 9..=15 {
            for nct in [false, true] {
                let mut c = Compressor::new(bits, 1, nct);
                let mut d = Decompressor::new(bits, nct);
                for i in 0..20u32 {
                    let msg: Vec<u8> = format!(
                        "{{\"seq\":{i},\"body\":\"{}\"}}",
                        "ab".repeat(i as usize * 50)
                    )
                    .into_bytes();
                    let mut z = Vec::new();
                    c.compress(&msg, &mut z).unwrap();
                    assert_eq!(c.is_allocated(), !nct);
                    assert_eq!(inflate_all(&mut d, &z), msg, "bits {bits} nct {nct} #{i}");
                    assert_eq!(d.is_allocated(), !nct);
                }
            }
        }
    }

    #[test]
    fn takeover_shrinks_repeats() {
        let msg = b"{\"type\":\"update\",\"symbol\":\"ABC\",\"price\":101.25,\"size\":300}";
        let mut with = Compressor::new(15, 1, false);
        let mut without = Compressor::new(15, 1, true);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        with.compress(msg, &mut a).unwrap();
        without.compress(msg, &mut b).unwrap();
        assert_eq!(a, b);
        a.clear();
        b.clear();
        with.compress(msg, &mut a).unwrap();
        without.compress(msg, &mut b).unwrap();
        assert!(a.len() * 3 < b.len(), "{} vs {}", a.len(), b.len());
    }

    #[test]
    fn reference_before_the_window_is_corrupt() {
        // Two messages under context takeover and a 32 KiB window: the
        // second repeats the start of the first, 20 000 bytes back.
        let mut c = Compressor::new(15, 6, false);
        let mut block = Vec::new();
        let mut s = 1u32;
        for _ in 0..20_000 {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            block.push((s >> 24) as u8);
        }
        let (mut z1, mut z2) = (Vec::new(), Vec::new());
        c.compress(&block, &mut z1).unwrap();
        c.compress(&block[..1000], &mut z2).unwrap();
        assert!(z2.len() < 100, "{}", z2.len());
        // The receiver's window keeps the first message for the second.
        let mut d = Decompressor::new(15, false);
        assert_eq!(inflate_all(&mut d, &z1), block);
        assert_eq!(inflate_all(&mut d, &z2), &block[..1000]);
        // A fresh receiver (no context) cannot resolve the back-reference.
        let mut d = Decompressor::new(15, false);
        let mut out = Vec::new();
        assert_eq!(
            d.decompress(&z2, &mut out, usize::MAX),
            Err(DeflateError::Corrupt)
        );
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut d = Decompressor::new(15, false);
        let mut out = Vec::new();
        // BTYPE = 11 is reserved.
        assert_eq!(
            d.decompress(&[0xff; 8], &mut out, 1000),
            Err(DeflateError::Corrupt)
        );
    }

    /// A ~1 KiB payload inflating to 1 MiB of zeros against a 64 KiB cap:
    /// refused, and the buffer never held more than the cap plus one byte.
    #[test]
    fn bomb_stops_at_the_cap() {
        let mut c = Compressor::new(15, 9, false);
        let mut z = Vec::new();
        c.compress(&vec![0u8; 1 << 20], &mut z).unwrap();
        assert!(z.len() < 1200, "{}", z.len());
        for cap in [0, 1, 1000, 64 * 1024, (1 << 20) - 1] {
            let mut d = Decompressor::new(15, false);
            let mut out = Vec::new();
            assert_eq!(d.decompress(&z, &mut out, cap), Err(DeflateError::TooBig));
            assert!(out.capacity() <= cap + 1, "cap {cap}: {}", out.capacity());
        }
        // Exactly at the cap is fine.
        let mut d = Decompressor::new(15, false);
        let mut out = Vec::new();
        d.decompress(&z, &mut out, 1 << 20).unwrap();
        assert_eq!(out.len(), 1 << 20);
        assert!(out.capacity() <= (1 << 20) + 1);
        // Fed in small pieces, the same.
        let mut d = Decompressor::new(15, false);
        let mut out = Vec::new();
        let r = z.chunks(7).try_for_each(|p| d.feed(p, &mut out, 5000));
        assert_eq!(r, Err(DeflateError::TooBig));
        assert!(out.capacity() <= 5001);
    }

    fn payload() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            // Low entropy: text-like, compresses and back-references.
            proptest::collection::vec(proptest::sample::select(b"ab {}\":,0123".to_vec()), 0..4000),
            // Arbitrary bytes: incompressible.
            proptest::collection::vec(any::<u8>(), 0..1500),
            // Long runs.
            (any::<u8>(), 0usize..40_000).prop_map(|(b, n)| vec![b; n]),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, ..Default::default() })]

        /// compress -> decompress is the identity, message after message,
        /// for every window and both takeover modes, whatever the pieces
        /// the payload arrives in.
        #[test]
        fn round_trip_any_messages(
            bits in 9u8..=15,
            nct in proptest::prelude::any::<bool>(),
            level in 0u32..=9,
            msgs in proptest::collection::vec(payload(), 1..10),
            piece in 1usize..5000,
        ) {
            let mut c = Compressor::new(bits, level, nct);
            let mut d = Decompressor::new(bits, nct);
            for msg in &msgs {
                let mut z = Vec::new();
                c.compress(msg, &mut z).unwrap();
                let mut out = Vec::new();
                for p in z.chunks(piece) {
                    d.feed(p, &mut out, msg.len()).unwrap();
                }
                d.finish(&mut out, msg.len()).unwrap();
                proptest::prop_assert_eq!(&out, msg);
                proptest::prop_assert!(out.capacity() <= msg.len() + 1);
            }
        }
    }

    #[test]
    fn level_and_window_are_clamped() {
        let mut c = Compressor::new(8, 99, false);
        let mut z = Vec::new();
        c.compress(b"clamped clamped clamped", &mut z).unwrap();
        let mut d = Decompressor::new(0, false);
        assert_eq!(inflate_all(&mut d, &z), b"clamped clamped clamped");
        assert!(format!("{c:?}").contains("window_bits: 9"));
        assert!(format!("{d:?}").contains("window_bits: 9"));
    }
}
