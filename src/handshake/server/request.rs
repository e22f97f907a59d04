//! Incremental parsing of the client's request header block.

use httparse::Header;

use super::reject::{Reject, RejectReason};
use crate::handshake::headers::{self, HeaderValues};
use crate::handshake::{Limits, Status};

/// A parsed request header block. Borrows the caller's buffer (`'b`) and
/// header slice (`'h`); nothing is copied.
#[derive(Debug, Clone, Copy)]
pub struct Request<'h, 'b> {
    /// Request method, case preserved (methods are case-sensitive).
    pub method: &'b str,
    /// Request target as sent: usually origin-form (`/chat?x=1`).
    pub path: &'b str,
    /// HTTP minor version: `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version: u8,
    /// Header fields in the order received.
    pub headers: &'h [Header<'b>],
    /// Length of the header block in bytes, final empty line included.
    /// Bytes from here on are the client's first WebSocket frames.
    pub len: usize,
}

impl<'h, 'b> Request<'h, 'b> {
    /// Value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        headers::header(self.headers, name)
    }

    /// Every value of the headers named `name` (case-insensitive); for
    /// headers that may repeat, such as `Sec-WebSocket-Protocol`.
    pub fn header_values<'a>(&'a self, name: &'a str) -> HeaderValues<'a, 'b> {
        headers::header_values(self.headers, name)
    }
}

/// Parses the request header block at the start of `buf`.
///
/// Call again with the whole accumulated buffer each time more bytes
/// arrive. Returns [`Status::Partial`] while the block is incomplete, and a
/// 431 [`Reject`] as soon as `buf` is longer than
/// [`Limits::max_header_bytes`] without a complete block, so the caller
/// never buffers more than that. The number of headers parsed is the
/// smaller of [`Limits::max_headers`] and `headers.len()`; more is a 431.
/// Anything that is not HTTP/1.x is a 400 (505 for another HTTP version).
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    limits: &Limits,
) -> Result<Status<Request<'h, 'b>>, Reject> {
    let cap = limits.max_headers.min(headers.len());
    let (headers, _) = headers.split_at_mut(cap);
    let mut req = httparse::Request::new(headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > limits.max_header_bytes {
                Err(RejectReason::HeaderTooLarge.into())
            } else {
                Ok(Status::Partial)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RejectReason::TooManyHeaders.into()),
        Err(httparse::Error::Version) => return Err(RejectReason::UnsupportedHttpVersion.into()),
        Err(_) => return Err(RejectReason::Malformed.into()),
    };
    // Checked on completion too, so the answer does not depend on how the
    // bytes were split into reads.
    if len > limits.max_header_bytes {
        return Err(RejectReason::HeaderTooLarge.into());
    }
    match (req.method, req.path, req.version) {
        (Some(method), Some(path), Some(version)) => Ok(Status::Complete(Request {
            method,
            path,
            version,
            headers: req.headers,
            len,
        })),
        // httparse fills all three on Complete; stay total anyway.
        _ => Err(RejectReason::Malformed.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_REQ: &[u8] = b"GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\
        \r\n";

    fn parse(buf: &[u8]) -> Result<Status<usize>, Reject> {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        parse_request(buf, &mut hs, &Limits::default()).map(|s| match s {
            Status::Complete(r) => Status::Complete(r.len),
            Status::Partial => Status::Partial,
        })
    }

    fn reason(buf: &[u8]) -> RejectReason {
        parse(buf).unwrap_err().reason
    }

    #[test]
    fn parses_rfc_sample() {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let r = parse_request(RFC_REQ, &mut hs, &Limits::default())
            .unwrap()
            .complete()
            .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/chat");
        assert_eq!(r.version, 1);
        assert_eq!(r.headers.len(), 7);
        assert_eq!(r.len, RFC_REQ.len());
        assert_eq!(r.header("host"), Some(&b"server.example.com"[..]));
        assert_eq!(r.header("HOST"), Some(&b"server.example.com"[..]));
        assert_eq!(r.header("nope"), None);
    }

    #[test]
    fn every_proper_prefix_is_partial() {
        for i in 0..RFC_REQ.len() {
            assert_eq!(parse(&RFC_REQ[..i]), Ok(Status::Partial), "split at {i}");
        }
        assert_eq!(parse(RFC_REQ), Ok(Status::Complete(RFC_REQ.len())));
    }

    #[test]
    fn trailing_frame_bytes_are_not_part_of_len() {
        let mut buf = RFC_REQ.to_vec();
        buf.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        assert_eq!(parse(&buf), Ok(Status::Complete(RFC_REQ.len())));
    }

    #[test]
    fn repeated_headers_are_all_visible() {
        let buf = b"GET / HTTP/1.1\r\nSec-WebSocket-Protocol: a\r\n\
            X: y\r\nsec-websocket-protocol: b, c\r\n\r\n";
        let mut hs = [httparse::EMPTY_HEADER; 8];
        let r = parse_request(buf, &mut hs, &Limits::default())
            .unwrap()
            .complete()
            .unwrap();
        let v: Vec<&[u8]> = r.header_values("Sec-WebSocket-Protocol").collect();
        assert_eq!(v, [&b"a"[..], b"b, c"]);
    }

    #[test]
    fn oversized_partial_block_is_431() {
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        buf.resize(8192, b'a');
        assert_eq!(parse(&buf), Ok(Status::Partial));
        buf.push(b'a');
        assert_eq!(reason(&buf), RejectReason::HeaderTooLarge);
        assert_eq!(parse(&buf).unwrap_err().status, 431);
    }

    #[test]
    fn block_size_limit_is_inclusive() {
        let head = b"GET / HTTP/1.1\r\nX: ";
        let mut buf = head.to_vec();
        buf.resize(8192 - 4, b'a');
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&buf), Ok(Status::Complete(8192)));
        // One byte more, complete in a single read: still 431.
        let mut big = head.to_vec();
        big.resize(8193 - 4, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(reason(&big), RejectReason::HeaderTooLarge);
    }

    #[test]
    fn endless_leading_newlines_are_bounded() {
        let buf = vec![b'\n'; 9000];
        assert_eq!(reason(&buf), RejectReason::HeaderTooLarge);
    }

    #[test]
    fn header_count_limit() {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..64 {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut ok = buf.clone();
        ok.extend_from_slice(b"\r\n");
        assert!(parse(&ok).unwrap().is_complete());
        buf.extend_from_slice(b"X-64: v\r\n\r\n");
        let err = parse(&buf).unwrap_err();
        assert_eq!(
            (err.status, err.reason),
            (431, RejectReason::TooManyHeaders)
        );
        // A smaller limit and a smaller slice both apply.
        let limits = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let three = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let err = parse_request(three, &mut hs, &limits).unwrap_err();
        assert_eq!(err.reason, RejectReason::TooManyHeaders);
        let mut two = [httparse::EMPTY_HEADER; 2];
        let err = parse_request(three, &mut two, &Limits::default()).unwrap_err();
        assert_eq!(err.reason, RejectReason::TooManyHeaders);
    }

    #[test]
    fn garbage_is_400() {
        for g in [
            &b"\x00\x01\x02garbage\r\n\r\n"[..],
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\r\n",
            b"\r\x00",
        ] {
            let err = parse(g).unwrap_err();
            assert_eq!(
                (err.status, err.reason),
                (400, RejectReason::Malformed),
                "{g:?}"
            );
        }
    }

    #[test]
    fn other_http_versions_are_505() {
        for v in [&b"GET / HTTP/2.0\r\n\r\n"[..], b"GET / HTTP/1.2\r\n\r\n"] {
            let err = parse(v).unwrap_err();
            assert_eq!(err.status, 505);
            assert_eq!(err.reason, RejectReason::UnsupportedHttpVersion);
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // Deterministic xorshift: no randomness source in the core.
        let mut x: u32 = 0x9e37_79b9;
        let mut buf = Vec::new();
        for _ in 0..2000 {
            buf.clear();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let n = (x % 64) as usize;
            // Start from a valid prefix half of the time to get deeper.
            if x & 1 == 0 {
                buf.extend_from_slice(&RFC_REQ[..(x as usize >> 8) % RFC_REQ.len()]);
            }
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf.push(b"GET /\r\n: \t,aZ\x00\xff"[(x % 14) as usize]);
            }
            let _ = parse(&buf);
        }
    }
}
