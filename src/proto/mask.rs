//! Masking (RFC 6455 §5.3): `payload[i] ^= key[(offset + i) % 4]`.
//!
//! `offset` is the position of `buf[0]` within the frame's payload, so a
//! payload that arrives in pieces can be unmasked piece by piece.

/// Unmask (or mask: the operation is its own inverse) `buf` in place.
///
/// Processes eight bytes at a time with the key rotated to the right phase;
/// `chunks_exact_mut` lets the compiler vectorise it without `unsafe`.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let phase = offset & 3;
    // The key as seen from `buf[0]`, built from bytes so it is endian-independent.
    let k = [
        key[phase],
        key[(phase + 1) & 3],
        key[(phase + 2) & 3],
        key[(phase + 3) & 3],
    ];
    let k8 = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(word) ^ k8;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
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

    #[test]
    fn split_unmask_equals_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..100u8).collect();
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
