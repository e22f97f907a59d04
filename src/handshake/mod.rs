//! The opening handshake (RFC 6455 §4), sans-IO.
//!
//! Nothing here touches a socket, a clock or a random source. Parsers take
//! the bytes received so far and answer [`Status::Partial`] until a whole
//! header block is there; writers append response bytes to a `Vec<u8>`. A
//! client passes in its own 16 random key bytes.
//!
//! - [`server`]: parse a request ([`parse_request`]), decide what it is
//!   ([`classify`]) and write the answer ([`write_accept`], [`write_reject`],
//!   [`write_response`]).
//! - [`client`]: write a request ([`write_request`]) and check the server's
//!   answer ([`parse_response`]).
//! - [`headers`]: header lookup and comma-separated token lists.
//!
//! Bytes after the header block (reported as `len`) already belong to the
//! WebSocket connection; callers must hand them to the frame parser rather
//! than drop them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

pub mod client;
pub mod headers;
pub mod server;

pub use client::{parse_response, write_request, ClientHandshakeError, ClientKey, Response};
pub use headers::{has_token, header, header_tokens, header_values, tokens};
pub use headers::{HeaderTokens, HeaderValues, Tokens};
pub use server::{
    classify, default_http_response, parse_request, reason_phrase, write_accept, write_reject,
    write_response, Outcome, PlainHttp, Reject, RejectReason, Request, Upgrade,
};

/// The GUID appended to the client's key before hashing (RFC 6455 §1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this crate speaks (RFC 6455 §4.1, §11.6).
pub const WS_VERSION: &str = "13";

/// Length of a `Sec-WebSocket-Accept` value: base64 of a 20-byte SHA-1.
pub const ACCEPT_LEN: usize = 28;

pub use crate::status::Status;

/// Bounds on a header block received from the peer (request on the server,
/// response on the client).
///
/// Both limits bound the work and memory a peer can make us spend before
/// the handshake is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest header block accepted, in bytes, counting the request or
    /// status line and the final empty line. Default 8192.
    ///
    /// Protects against a peer that never ends its header block and would
    /// otherwise make the caller buffer without bound (slowloris-style
    /// memory exhaustion). Exceeding it answers 431 on the server.
    pub max_header_bytes: usize,
    /// Most header fields accepted. Default 64.
    ///
    /// Protects against many tiny headers that fit in `max_header_bytes`
    /// but make every header lookup scan a long list. The effective limit
    /// is also capped by the length of the `headers` slice the caller
    /// passes in. Exceeding it answers 431 on the server.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 8192,
            max_headers: 64,
        }
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`, as raw ASCII bytes.
///
/// RFC 6455 §4.2.2: "concatenate this with the Globally Unique Identifier
/// ... take the SHA-1 hash of this concatenated value ... base64-encode
/// this 20-byte hash". `key` is the header value as sent (still base64,
/// whitespace trimmed), not the decoded bytes. Does not allocate.
pub fn accept_key_bytes(key: &[u8]) -> [u8; ACCEPT_LEN] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    let digest = sha.finalize();
    let mut out = [0u8; ACCEPT_LEN];
    // 20 input bytes always encode to exactly 28 characters, so this
    // cannot fail whatever the key is.
    let written = STANDARD
        .encode_slice(digest, &mut out)
        .expect("base64 of 20 bytes is 28 bytes");
    debug_assert_eq!(written, ACCEPT_LEN);
    out
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`, as a `String`.
///
/// Same as [`accept_key_bytes`]; this one allocates.
pub fn accept_key(key: &[u8]) -> String {
    accept_key_bytes(key).iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_1_3_accept_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            &accept_key_bytes(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accept_of_empty_key_is_well_formed() {
        // Not a valid key, but hashing must not care.
        let a = accept_key(b"");
        assert_eq!(a.len(), ACCEPT_LEN);
        assert!(a.ends_with('='));
    }

    #[test]
    fn limits_defaults() {
        let l = Limits::default();
        assert_eq!(l.max_header_bytes, 8192);
        assert_eq!(l.max_headers, 64);
    }

    #[test]
    fn status_helpers() {
        assert!(Status::Complete(1).is_complete());
        assert!(Status::<u8>::Partial.is_partial());
        assert_eq!(Status::Complete(3).complete(), Some(3));
        assert_eq!(Status::<u8>::Partial.complete(), None);
    }
}
