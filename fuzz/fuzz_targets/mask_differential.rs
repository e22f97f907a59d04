//! `proto::apply_mask` (eight bytes at a time; from 128 bytes on, on x86_64,
//! the AVX2 build of the same loop when the CPU has it) against
//! `proto::apply_mask_reference` (byte by byte) for every start alignment,
//! length and mask phase taken from the input, and the split property the
//! receiver relies on: unmasking in two pieces with the second piece's
//! offset equals unmasking in one. `proto::copy_masked` (the same loops,
//! reading one buffer and writing another) is checked the same way.
//!
//! Input layout: 4 key bytes, 4 bytes of offset, then the buffer. The
//! buffer is also tiled to a long one (64 to 2111 bytes, at a start of 0 to
//! 63, both from the offset bytes) so that even a short input reaches both
//! sides of the dispatch threshold, the wide path's main loop and every tail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsreactor::proto::{apply_mask, apply_mask_reference, copy_masked};

fuzz_target!(|data: &[u8]| {
    let [k0, k1, k2, k3, o0, o1, o2, o3, buf @ ..] = data else {
        return;
    };
    let key = [*k0, *k1, *k2, *k3];
    let base = u32::from_le_bytes([*o0, *o1, *o2, *o3]) as usize;
    // Every alignment of the slice start, four phases, every length up to
    // 40 (all remainders around the eight-byte chunks) and the whole rest.
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    for start in 0..buf.len().min(8) {
        let rest = buf.len() - start;
        for len in (0..=rest.min(40)).chain([rest]) {
            for offset in [base, base + 1, base + 2, base + 3] {
                fast.clear();
                fast.extend_from_slice(&buf[..start + len]);
                slow.clear();
                slow.extend_from_slice(&buf[..start + len]);
                apply_mask(&mut fast[start..], key, offset);
                apply_mask_reference(&mut slow[start..], key, offset);
                assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                let mut copied = buf[..start + len].to_vec();
                copy_masked(&mut copied[start..], &buf[start..start + len], key, offset);
                assert_eq!(
                    copied, slow,
                    "copy: start {start} len {len} offset {offset}"
                );
            }
        }
    }
    // Split anywhere: the second piece continues the phase.
    let mut whole = buf.to_vec();
    apply_mask(&mut whole, key, base);
    let cut = base % (buf.len() + 1);
    let mut parts = buf.to_vec();
    let (a, b) = parts.split_at_mut(cut);
    apply_mask(a, key, base);
    apply_mask(b, key, base + cut);
    assert_eq!(parts, whole, "split at {cut}");
    // Masking is its own inverse.
    apply_mask(&mut whole, key, base);
    assert_eq!(&whole[..], buf);

    // The tiled buffer: every phase, a split, and nothing written outside
    // the slice.
    if buf.is_empty() {
        return;
    }
    let start = (base >> 2) % 64;
    let len = 64 + (base >> 8) % 2048;
    let long: Vec<u8> = buf.iter().copied().cycle().take(start + len + 64).collect();
    for offset in [base, base + 1, base + 2, base + 3] {
        fast.clear();
        fast.extend_from_slice(&long);
        slow.clear();
        slow.extend_from_slice(&long);
        apply_mask(&mut fast[start..start + len], key, offset);
        apply_mask_reference(&mut slow[start..start + len], key, offset);
        assert_eq!(fast, slow, "long: start {start} len {len} offset {offset}");
        let mut copied = long.clone();
        copy_masked(
            &mut copied[start..start + len],
            &long[start..start + len],
            key,
            offset,
        );
        assert_eq!(
            copied, slow,
            "long copy: start {start} len {len} offset {offset}"
        );
    }
    let cut = (base >> 19) % (len + 1);
    let (a, b) = fast[start..start + len].split_at_mut(cut);
    apply_mask(a, key, base + 3);
    apply_mask(b, key, base + 3 + cut);
    assert_eq!(&fast[..], &long[..], "long: split at {cut}");
});
