//! `proto::Utf8Validator` fed a stream in fuzzer-chosen pieces against
//! `std::str::from_utf8` on the whole stream.
//!
//! - same verdict (every feed `Ok` and `finish` `Ok` exactly for valid
//!   UTF-8);
//! - fail fast, and not too fast: every piece that ends before the first
//!   byte proving the stream invalid is accepted, and the piece holding
//!   that byte is refused (Autobahn 6.4.*);
//! - `reset` forgets a carried partial code point.
//!
//! Input layout: one byte `k`, `k % 16` piece lengths (cycled; 0 is an
//! empty feed; none, or all 0, is one byte at a time), then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsreactor::proto::Utf8Validator;

/// Index of the first byte after which the stream can no longer be a prefix
/// of valid UTF-8, if any.
fn first_invalid(s: &[u8]) -> Option<usize> {
    let e = std::str::from_utf8(s).err()?;
    e.error_len()?;
    let start = e.valid_up_to();
    // The sequence at `start` is known bad within its first four bytes.
    (start..s.len().min(start + 4))
        .find(|&i| std::str::from_utf8(&s[start..=i]).is_err_and(|e| e.error_len().is_some()))
}

fn check(v: &mut Utf8Validator, sizes: &[u8], stream: &[u8]) {
    let bad = first_invalid(stream);
    let mut sizes = sizes.iter().map(|&s| usize::from(s)).cycle();
    let mut at = 0;
    while at < stream.len() {
        let n = sizes.next().unwrap_or(stream.len()).min(stream.len() - at);
        let end = at + n;
        let r = v.feed(&stream[at..end]);
        match bad {
            Some(b) if b < end => {
                assert!(r.is_err(), "bad byte at {b} accepted in piece {at}..{end}");
                return;
            }
            _ => assert!(r.is_ok(), "valid prefix ..{end} refused"),
        }
        at = end;
    }
    assert!(bad.is_none(), "bad byte never reached");
    assert_eq!(
        v.finish().is_ok(),
        std::str::from_utf8(stream).is_ok(),
        "verdict at finish"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let (sizes, stream) = rest.split_at(usize::from(k % 16).min(rest.len()));
    // Sizes that are all zero would never advance: one byte at a time then.
    let sizes = if sizes.iter().all(|&s| s == 0) {
        &[1]
    } else {
        sizes
    };
    let mut v = Utf8Validator::new();
    check(&mut v, sizes, stream);
    // Again on the same validator after a reset, one byte at a time, from a
    // state that may carry part of a code point.
    v.reset();
    let _ = v.feed(&[0xf0, 0x9f]);
    v.reset();
    check(&mut v, &[1], stream);
});
