//! `proto::decode_header` on arbitrary bytes against a naive reading of the
//! RFC 6455 §5.2 diagram, and `encode_header` round trips.
//!
//! - decode agrees with the reference: same fields and length, `Partial`
//!   exactly when bytes are missing, an error exactly for a 64-bit length
//!   with its top bit set;
//! - every proper prefix of a complete header is `Partial`;
//! - a header whose length uses the minimal encoding re-encodes to the same
//!   bytes; any header re-encodes to one that decodes to the same fields;
//! - headers built from arbitrary fields decode back to those fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsreactor::proto::{decode_header, encode_header, Header, OpCode, Status, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    check_decode(data);
    check_encode(data);
});

/// The reference: `Ok(None)` while bytes are missing, `Err` for the
/// forbidden top bit (reported as soon as the 64-bit length is there).
fn reference(b: &[u8]) -> Result<Option<(Header, usize)>, ()> {
    if b.len() < 2 {
        return Ok(None);
    }
    let len7 = b[1] & 0x7f;
    let masked = b[1] & 0x80 != 0;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    if ext == 8 && b.len() >= 10 && b[2] & 0x80 != 0 {
        return Err(());
    }
    let need = 2 + ext + if masked { 4 } else { 0 };
    if b.len() < need {
        return Ok(None);
    }
    let len = if ext == 0 {
        u64::from(len7)
    } else {
        b[2..2 + ext]
            .iter()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
    };
    let mask = masked.then(|| [b[2 + ext], b[3 + ext], b[4 + ext], b[5 + ext]]);
    let header = Header {
        fin: b[0] & 0x80 != 0,
        rsv: (b[0] >> 4) & 7,
        opcode: b[0] & 0x0f,
        mask,
        len,
    };
    Ok(Some((header, need)))
}

/// Encode with a raw opcode (reserved ones included).
fn encode(h: &Header) -> Vec<u8> {
    let op = OpCode::from_u8(h.opcode).unwrap_or(OpCode::Continuation);
    let mut out = encode_header(h.fin, h.rsv, op, h.mask, h.len)
        .as_slice()
        .to_vec();
    out[0] = (out[0] & 0xf0) | h.opcode;
    out
}

fn check_decode(data: &[u8]) {
    let got = decode_header(data);
    let want = reference(data);
    let (h, n) = match (got, want) {
        (Ok(Status::Partial), Ok(None)) => return,
        (Err(e), Err(())) => {
            assert_eq!(e.close_code(), 1002);
            return;
        }
        (Ok(Status::Complete(got)), Ok(Some(want))) => {
            assert_eq!(got, want, "decoded differently from the reference");
            got
        }
        (got, want) => panic!("decode_header gave {got:?}, the reference {want:?}"),
    };
    assert!(n <= MAX_HEADER_LEN && n <= data.len());
    for cut in 0..n {
        assert_eq!(
            decode_header(&data[..cut]),
            Ok(Status::Partial),
            "prefix of {cut} bytes"
        );
    }
    let minimal = match data[1] & 0x7f {
        126 => h.len >= 126,
        127 => h.len > 0xffff,
        _ => true,
    };
    let enc = encode(&h);
    if minimal {
        assert_eq!(
            &enc[..],
            &data[..n],
            "minimal header re-encoded differently"
        );
    } else {
        assert!(enc.len() < n, "non-minimal header did not shrink");
    }
    assert_eq!(
        decode_header(&enc),
        Ok(Status::Complete((h, enc.len()))),
        "re-encoded header decodes differently"
    );
}

fn check_encode(data: &[u8]) {
    let Some(d) = data.get(..15) else {
        return;
    };
    let mut len = [0u8; 8];
    len.copy_from_slice(&d[7..15]);
    // Every magnitude from 0 to 2^63 - 1.
    let len = (u64::from_be_bytes(len) >> (d[2] >> 2)) & (u64::MAX >> 1);
    let h = Header {
        fin: d[0] & 1 != 0,
        rsv: (d[0] >> 1) & 7,
        opcode: [0, 1, 2, 8, 9, 10][usize::from(d[1]) % 6],
        mask: (d[2] & 1 != 0).then(|| [d[3], d[4], d[5], d[6]]),
        len,
    };
    let enc = encode(&h);
    let ext = match len {
        0..=125 => 0,
        126..=0xffff => 2,
        _ => 8,
    };
    let want_len = 2 + ext + if h.mask.is_some() { 4 } else { 0 };
    assert_eq!(enc.len(), want_len, "not the minimal encoding for {len}");
    assert_eq!(decode_header(&enc), Ok(Status::Complete((h, enc.len()))));
}
