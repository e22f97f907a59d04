//! Masking (RFC 6455 §5.3): `payload[i] ^= key[(offset + i) % 4]`.
//!
//! `offset` is the position of `buf[0]` within the frame's payload, so a
//! payload that arrives in pieces can be unmasked piece by piece.

/// Buffers at least this long go to the widest code the CPU supports; shorter
/// ones stay on the inlined portable loop. Dispatch (a call that cannot be
/// inlined plus std's cached feature test) costs about a nanosecond, which
/// AVX2 wins back once its 128-byte main loop runs (measured on Zen 4: 0.9x
/// at 96 bytes, 1.15x at 128, 1.4x at 512, 1.7x at 16 KiB).
#[cfg(target_arch = "x86_64")]
const WIDE_MIN_LEN: usize = 128;

/// Unmask (or mask: the operation is its own inverse) `buf` in place.
///
/// Processes eight bytes at a time with the key rotated to the right phase;
/// `chunks_exact_mut` lets the compiler vectorise it without `unsafe`. On
/// x86_64 a buffer of 128 bytes or more runs the same loop compiled for AVX2
/// when the CPU has it (checked at run time, the answer cached by std).
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let k = rotate_key(key, offset);
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= WIDE_MIN_LEN {
        x86::mask_wide(buf, k);
        return;
    }
    mask_words(buf, k);
}

/// Copy `src` into `dst` masked: `dst[i] = src[i] ^ key[(offset + i) % 4]`.
/// One pass over the bytes, where a copy followed by [`apply_mask`] takes
/// two (a client masks every payload it sends).
///
/// # Panics
/// If the lengths differ.
#[inline]
pub fn copy_masked(dst: &mut [u8], src: &[u8], key: [u8; 4], offset: usize) {
    assert_eq!(dst.len(), src.len(), "copy_masked: lengths differ");
    let k = rotate_key(key, offset);
    #[cfg(target_arch = "x86_64")]
    if src.len() >= WIDE_MIN_LEN {
        x86::copy_wide(dst, src, k);
        return;
    }
    copy_words(dst, src, k);
}

/// The key as seen from `buf[0]` when `buf[0]` is at `offset` in the payload,
/// built from bytes so it is endian-independent.
#[inline(always)]
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let phase = offset & 3;
    [
        key[phase],
        key[(phase + 1) & 3],
        key[(phase + 2) & 3],
        key[(phase + 3) & 3],
    ]
}

/// The portable loop, with `k` already rotated to `buf[0]`'s phase: eight
/// bytes at a time, then at most one four-byte word and three single bytes.
/// LLVM vectorises the eight-byte loop for whatever the enclosing function is
/// compiled for: SSE2 (16-byte registers) on baseline x86_64, AVX2 inside
/// `x86`'s wrapper. `inline(always)` so that wrapper gets the loop, not a
/// call to it.
#[inline(always)]
fn mask_words(buf: &mut [u8], k: [u8; 4]) {
    let k4 = u32::from_ne_bytes(k);
    // `k` twice over, in memory order on either endianness: one multiply
    // instead of assembling the word from eight bytes.
    let k8 = u64::from(k4) * 0x0000_0001_0000_0001;
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(word) ^ k8;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // The rest starts at a multiple of eight (phase 0) and is under 8 bytes.
    let mut rest = chunks.into_remainder();
    if rest.len() >= 4 {
        let (head, tail) = rest.split_at_mut(4);
        let mut word = [0u8; 4];
        word.copy_from_slice(head);
        let v = u32::from_ne_bytes(word) ^ k4;
        head.copy_from_slice(&v.to_ne_bytes());
        rest = tail;
    }
    for (b, m) in rest.iter_mut().zip(k) {
        *b ^= m;
    }
}

/// [`mask_words`] from `src` into `dst` (same length).
#[inline(always)]
fn copy_words(dst: &mut [u8], src: &[u8], k: [u8; 4]) {
    let k4 = u32::from_ne_bytes(k);
    let k8 = u64::from(k4) * 0x0000_0001_0000_0001;
    let mut out = dst.chunks_exact_mut(8);
    let mut inp = src.chunks_exact(8);
    for (o, i) in (&mut out).zip(&mut inp) {
        let mut word = [0u8; 8];
        word.copy_from_slice(i);
        let v = u64::from_ne_bytes(word) ^ k8;
        o.copy_from_slice(&v.to_ne_bytes());
    }
    // The rest starts at phase 0 and is under 8 bytes.
    for ((o, i), m) in out
        .into_remainder()
        .iter_mut()
        .zip(inp.remainder())
        .zip(k.iter().cycle())
    {
        *o = i ^ m;
    }
}

/// Run-time dispatch to AVX2. No hand-written intrinsics: the AVX2 path is
/// [`mask_words`] recompiled with the feature enabled, which LLVM turns into
/// 32-byte `vpxor`s unrolled four times (intrinsics measured no faster).
///
/// AVX-512 would be about 1.2x faster again at 16 KiB on Zen 4, but
/// `#[target_feature(enable = "avx512f")]` needs Rust 1.89 and the crate's
/// `rust-version` is 1.86.
#[cfg(target_arch = "x86_64")]
mod x86 {
    /// [`super::mask_words`] on the widest path the CPU supports. Kept out of
    /// line so that the inlined [`super::apply_mask`] stays small.
    #[inline(never)]
    pub(super) fn mask_wide(buf: &mut [u8], k: [u8; 4]) {
        // Up to 31 leading bytes on the portable loop, so that the wide loop
        // stores from a 32-byte boundary.
        let at = to_boundary(buf);
        let (head, rest) = buf.split_at_mut(at);
        super::mask_words(head, k);
        let k = super::rotate_key(k, at);
        if !try_mask_avx2(rest, k) {
            super::mask_words(rest, k);
        }
    }

    /// Bytes of `buf` before its first 32-byte boundary (all of it if none).
    ///
    /// Half of the 32-byte stores of an unaligned buffer straddle two cache
    /// lines, and a payload rarely starts on a boundary (in the reactor it
    /// follows a 6-, 8- or 14-byte header). Measured on Zen 4, 16 KiB
    /// starting 6 bytes past a boundary: 115 ns unaligned, 89 ns with the
    /// head peeled off.
    #[inline(always)]
    fn to_boundary(buf: &[u8]) -> usize {
        (buf.as_ptr().addr().wrapping_neg() & 31).min(buf.len())
    }

    /// Masks `buf` with the AVX2 build of the loop and returns `true`, or
    /// returns `false` without touching `buf` if the CPU lacks AVX2.
    ///
    /// `is_x86_feature_detected!` caches its answer in a static inside std
    /// (after the first call it is one relaxed load and a bit test); a
    /// cache of our own measured slightly slower, not faster.
    #[inline]
    pub(super) fn try_mask_avx2(buf: &mut [u8], k: [u8; 4]) -> bool {
        if is_x86_feature_detected!("avx2") {
            // SAFETY: `mask_words_avx2` is safe code whose only precondition
            // is that the CPU executes AVX2 instructions, and the run-time
            // check just above says it does.
            #[allow(unsafe_code)]
            unsafe {
                mask_words_avx2(buf, k)
            };
            true
        } else {
            false
        }
    }

    #[target_feature(enable = "avx2")]
    fn mask_words_avx2(buf: &mut [u8], k: [u8; 4]) {
        super::mask_words(buf, k);
    }

    /// [`super::copy_words`] on the widest path the CPU supports.
    #[inline(never)]
    pub(super) fn copy_wide(dst: &mut [u8], src: &[u8], k: [u8; 4]) {
        if !try_copy_avx2(dst, src, k) {
            super::copy_words(dst, src, k);
        }
    }

    /// As [`try_mask_avx2`], for [`super::copy_words`].
    #[inline]
    pub(super) fn try_copy_avx2(dst: &mut [u8], src: &[u8], k: [u8; 4]) -> bool {
        if is_x86_feature_detected!("avx2") {
            // SAFETY: as in `try_mask_avx2`: safe code whose only
            // precondition, a CPU with AVX2, was just checked.
            #[allow(unsafe_code)]
            unsafe {
                copy_words_avx2(dst, src, k)
            };
            true
        } else {
            false
        }
    }

    #[target_feature(enable = "avx2")]
    fn copy_words_avx2(dst: &mut [u8], src: &[u8], k: [u8; 4]) {
        super::copy_words(dst, src, k);
    }
}

/// The byte-by-byte definition, kept as the reference the fast path is tested
/// (and fuzzed) against.
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut p = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut p, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&p, b"Hello");
    }

    #[test]
    fn fast_matches_reference_every_length_and_offset() {
        let key = [0x12, 0x9a, 0xfe, 0x01];
        for len in 0..=64usize {
            for offset in 0..8usize {
                for start in 0..8usize {
                    let data: Vec<u8> = (0..len + start).map(|i| (i * 31 + 7) as u8).collect();
                    let mut a = data.clone();
                    let mut b = data.clone();
                    apply_mask(&mut a[start..], key, offset);
                    apply_mask_reference(&mut b[start..], key, offset);
                    assert_eq!(a, b, "len {len} offset {offset} start {start}");
                }
            }
        }
    }

    /// A masking function with the signature of [`apply_mask`].
    type MaskFn = fn(&mut [u8], [u8; 4], usize);

    /// Every implementation `apply_mask` can end up in on this machine, each
    /// called explicitly (the dispatcher picks by length and CPU).
    fn paths() -> Vec<(&'static str, MaskFn)> {
        let mut paths: Vec<(&'static str, MaskFn)> = vec![
            ("apply_mask", apply_mask),
            ("portable", |buf, key, offset| {
                mask_words(buf, rotate_key(key, offset))
            }),
            // The copying variants, from a copy of the input.
            ("copy_masked", |buf, key, offset| {
                let src = buf.to_vec();
                copy_masked(buf, &src, key, offset)
            }),
            ("copy portable", |buf, key, offset| {
                let src = buf.to_vec();
                copy_words(buf, &src, rotate_key(key, offset))
            }),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            paths.push(("wide", |buf, key, offset| {
                x86::mask_wide(buf, rotate_key(key, offset))
            }));
            paths.push(("copy wide", |buf, key, offset| {
                let src = buf.to_vec();
                x86::copy_wide(buf, &src, rotate_key(key, offset))
            }));
            if is_x86_feature_detected!("avx2") {
                paths.push(("avx2", |buf, key, offset| {
                    assert!(x86::try_mask_avx2(buf, rotate_key(key, offset)));
                }));
                paths.push(("copy avx2", |buf, key, offset| {
                    let src = buf.to_vec();
                    assert!(x86::try_copy_avx2(buf, &src, rotate_key(key, offset)));
                }));
            } else {
                eprintln!("no AVX2 on this CPU: its path is not tested here");
            }
        }
        paths
    }

    /// xorshift64: test data without a dependency.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// One case for every path: `len` random bytes at `start` in a random
    /// buffer with 64 more bytes after them, masked at `offset`, must equal
    /// the reference, and the bytes around the slice must be untouched.
    fn check(rng: &mut u64, len: usize, offset: usize, start: usize) {
        let key = next(rng).to_le_bytes()[..4].try_into().unwrap();
        let data: Vec<u8> = (0..start + len + 64).map(|_| next(rng) as u8).collect();
        let mut want = data.clone();
        apply_mask_reference(&mut want[start..start + len], key, offset);
        for (name, f) in paths() {
            let mut got = data.clone();
            f(&mut got[start..start + len], key, offset);
            assert!(
                got == want,
                "{name}: len {len} offset {offset} start {start} key {key:02x?}"
            );
        }
    }

    #[test]
    fn every_path_matches_reference() {
        let mut rng = 0x9e37_79b9_7f4a_7c15;
        // Every length to past the dispatch threshold, random lengths up to
        // 300 at every alignment, and some large ones (AVX2 main loop plus
        // every tail).
        for len in 0..=300 {
            for offset in 0..4 {
                let start = (next(&mut rng) % 64) as usize;
                check(&mut rng, len, offset, start);
            }
        }
        for start in 0..64 {
            for offset in 0..4 {
                for _ in 0..4 {
                    let len = (next(&mut rng) % 301) as usize;
                    check(&mut rng, len, offset, start);
                }
                for len in [1024 + 5, 4096 + 127, 16 * 1024 + 31] {
                    check(&mut rng, len, offset, start);
                }
            }
        }
        for len in [64 * 1024, 64 * 1024 + 1, 256 * 1024 + 99] {
            for offset in 0..4 {
                let start = (next(&mut rng) % 64) as usize;
                check(&mut rng, len, offset, start);
            }
        }
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn copy_masked_refuses_unequal_lengths() {
        copy_masked(&mut [0; 3], &[0; 4], [1, 2, 3, 4], 0);
    }

    #[test]
    fn split_unmask_equals_whole() {
        let key = [1, 2, 3, 4];
        // Long enough that the pieces fall on both sides of the dispatch
        // threshold.
        let data: Vec<u8> = (0..700).map(|i| (i * 7) as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for cut in 0..data.len() {
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut);
            assert_eq!(parts, whole, "cut {cut}");
        }
    }
}
