//! Frame headers (RFC 6455 §5.2): pure decode and encode.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! Decoding only checks what the header format itself forbids (the top bit
//! of a 64-bit length); which opcodes, RSV bits and masks are acceptable is
//! policy and lives in the connection.

use super::error::{Error, ErrorKind};
use super::Status;

/// The longest header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

/// RSV1 in [`Header::rsv`]: permessage-deflate's "Per-Message Compressed"
/// bit (RFC 7692 §6).
pub const RSV1: u8 = 0b100;

/// Frame opcodes defined by RFC 6455 §5.2 (the others are reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// A continuation of a fragmented message.
    Continuation = 0x0,
    /// The first frame of a text message.
    Text = 0x1,
    /// The first frame of a binary message.
    Binary = 0x2,
    /// Connection close.
    Close = 0x8,
    /// Ping.
    Ping = 0x9,
    /// Pong.
    Pong = 0xa,
}

impl OpCode {
    /// The opcode for a raw 4-bit value, or `None` if it is reserved.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xa => Self::Pong,
            _ => return None,
        })
    }

    /// "Control frames are identified by opcodes where the most significant
    /// bit of the opcode is 1" (§5.5).
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A decoded frame header, borrowing nothing: it is 24 bytes of plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as the three low bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The raw 4-bit opcode (may be reserved; see [`OpCode::from_u8`]).
    pub opcode: u8,
    /// The masking key, if the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub len: u64,
}

/// Decode a header from the start of `buf`.
///
/// Returns the header and its length in bytes, or `Partial` if `buf` is too
/// short (nothing allocated, nothing consumed).
///
/// # Errors
/// A 64-bit length with the most significant bit set (§5.2: "the most
/// significant bit MUST be 0").
#[inline]
pub fn decode_header(buf: &[u8]) -> Result<Status<(Header, usize)>, Error> {
    let [b0, b1, ..] = *buf else {
        return Ok(Status::Partial);
    };
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            let Some(ext) = buf.get(2..4) else {
                return Ok(Status::Partial);
            };
            (u16::from_be_bytes([ext[0], ext[1]]) as u64, 4)
        }
        127 => {
            let Some(ext) = buf.get(2..10) else {
                return Ok(Status::Partial);
            };
            let mut b = [0u8; 8];
            b.copy_from_slice(ext);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    "64-bit payload length has its most significant bit set",
                ));
            }
            (len, 10)
        }
        n => (n as u64, 2),
    };
    let mask = if masked {
        let Some(k) = buf.get(at..at + 4) else {
            return Ok(Status::Partial);
        };
        at += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    let header = Header {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x7,
        opcode: b0 & 0xf,
        mask,
        len,
    };
    Ok(Status::Complete((header, at)))
}

/// An encoded header on the stack.
#[derive(Debug, Clone, Copy)]
pub struct HeaderBuf {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl HeaderBuf {
    /// The encoded bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Encode a header with the minimal length encoding (§5.2: "the minimal number
/// of bytes MUST be used to encode the length").
#[inline]
pub fn encode_header(
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    len: u64,
) -> HeaderBuf {
    let mut bytes = [0u8; MAX_HEADER_LEN];
    bytes[0] = (u8::from(fin) << 7) | ((rsv & 0x7) << 4) | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut at = match len {
        0..=125 => {
            bytes[1] = mask_bit | len as u8;
            2
        }
        126..=0xffff => {
            bytes[1] = mask_bit | 126;
            bytes[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            bytes[1] = mask_bit | 127;
            bytes[2..10].copy_from_slice(&len.to_be_bytes());
            10
        }
    };
    if let Some(k) = mask {
        bytes[at..at + 4].copy_from_slice(&k);
        at += 4;
    }
    HeaderBuf {
        bytes,
        len: at as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Header, usize) {
        match decode_header(buf).unwrap() {
            Status::Complete(h) => h,
            Status::Partial => panic!("partial"),
        }
    }

    #[test]
    fn rfc_5_7_unmasked_hello() {
        let (h, n) = complete(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(n, 2);
        assert_eq!(
            h,
            Header {
                fin: true,
                rsv: 0,
                opcode: 1,
                mask: None,
                len: 5
            }
        );
    }

    #[test]
    fn rfc_5_7_masked_hello() {
        let (h, n) = complete(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f]);
        assert_eq!(n, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.len, 5);
    }

    #[test]
    fn rfc_5_7_fragments_and_ping() {
        assert!(!complete(&[0x01, 0x03]).0.fin);
        assert_eq!(complete(&[0x80, 0x02]).0.opcode, 0);
        let (h, _) = complete(&[0x89, 0x05]);
        assert_eq!((h.opcode, h.len), (0x9, 5));
        let (h, _) = complete(&[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!((h.opcode, h.len), (0xa, 5));
    }

    #[test]
    fn rfc_5_7_extended_lengths() {
        // 256 bytes binary: 0x82 0x7E 0x0100; 64 KiB: 0x82 0x7F 0x0000000000010000.
        let (h, n) = complete(&[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!((h.len, n), (256, 4));
        let (h, n) = complete(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.len, n), (65536, 10));
    }

    #[test]
    fn every_prefix_is_partial() {
        let full = [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for cut in 0..full.len() {
            assert_eq!(
                decode_header(&full[..cut]).unwrap(),
                Status::Partial,
                "cut {cut}"
            );
        }
        assert_eq!(complete(&full).1, 14);
    }

    #[test]
    fn top_bit_of_64_bit_length_fails() {
        let e = decode_header(&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.close_code(), 1002);
    }

    #[test]
    fn encode_round_trips_minimal_headers() {
        for &len in &[0u64, 1, 125, 126, 127, 0xffff, 0x10000, u32::MAX as u64 + 5] {
            for mask in [None, Some([9, 8, 7, 6])] {
                for (fin, rsv, op) in [(true, 0, OpCode::Text), (false, 4, OpCode::Continuation)] {
                    let enc = encode_header(fin, rsv, op, mask, len);
                    let (h, n) = complete(enc.as_slice());
                    assert_eq!(n, enc.as_slice().len());
                    assert_eq!(
                        h,
                        Header {
                            fin,
                            rsv,
                            opcode: op as u8,
                            mask,
                            len
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn encode_exact_bytes() {
        assert_eq!(
            encode_header(true, 0, OpCode::Text, None, 5).as_slice(),
            &[0x81, 0x05]
        );
        assert_eq!(
            encode_header(true, 0, OpCode::Binary, None, 256).as_slice(),
            &[0x82, 0x7e, 1, 0]
        );
        assert_eq!(
            encode_header(true, 0, OpCode::Text, Some([0x37, 0xfa, 0x21, 0x3d]), 5).as_slice(),
            &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]
        );
    }
}
