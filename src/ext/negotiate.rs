//! permessage-deflate negotiation (RFC 7692 §5, §7.1), sans-IO.
//!
//! ```text
//!  client                                         server
//!  DeflateConfig::offer ── Sec-WebSocket-Extensions ──► DeflateConfig::negotiate
//!                                                       (first acceptable offer)
//!  DeflateConfig::accept_response ◄── response ──────── Agreement.response
//!            │                                                   │
//!            └────────► DeflateParams (the same on both ends) ◄──┘
//! ```
//!
//! Window sizes: zlib cannot compress with a raw 256-byte (8-bit) window,
//! so this side never promises one. A server declines an offer that asks it
//! to (`server_max_window_bits=8`) and moves on to the next offer. A client
//! whose server limits it to 8 bits keeps the agreement but sends every
//! message uncompressed, which RFC 7692 §6 allows ("an endpoint ... MAY
//! choose not to compress"): the connection works, and no promise is
//! broken. Any peer window of 8 bits is inflated with a 9-bit window, a
//! superset.

use std::fmt;

use super::header::{extensions, Extension, Value};
use super::PERMESSAGE_DEFLATE;
use crate::proto::Role;

/// Local permessage-deflate policy, for a server or a client. Every field
/// says its default and what it protects against.
///
/// Memory per connection (zlib-rs backend, heap allocated after one 4 KiB
/// message): a compression context takes 371 KiB at 15 window bits, 259 KiB
/// at 12, 245 KiB at 9 (a 128 KiB hash table and a 64 KiB literal buffer do
/// not shrink with the window); a decompression context 46 KiB whatever the
/// window (zlib-rs always allocates the 32 KiB inflate window). Resident
/// memory is less: about 320 KiB and 23 KiB after small messages. Contexts
/// are created on the first message that needs them and, where the
/// agreement says "no context takeover" for that direction, released after
/// every message (about 6 µs to create one again for the next compressed
/// message, 2 µs for a decompressor), so an idle connection holds none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Offer (client) or accept (server) permessage-deflate at all; treated
    /// as `false` when the crate is built without the `deflate` feature.
    /// Default `false`: compression costs CPU and hundreds of KiB per
    /// connection, and compressing secrets next to attacker-chosen data
    /// leaks them through the length (CRIME/BREACH), so it is opt-in.
    pub enabled: bool,
    /// Largest LZ77 window, as base-2 log (9..=15; other values are
    /// clamped), the server compresses with. A server uses it for its own
    /// compressor (and answers `server_max_window_bits` when below 15); a
    /// client asks for it in its offer when below 15, bounding the window
    /// memory of its decompressor. Default 15 (32 KiB, the best ratio).
    pub server_max_window_bits: u8,
    /// Largest LZ77 window (9..=15, clamped) the client compresses with. A
    /// server asks for it when below 15, bounding its decompressor's
    /// window, and then declines offers that do not let it set the limit;
    /// a client compresses with it and states it in its offer. Default 15.
    pub client_max_window_bits: u8,
    /// The server starts each message with an empty window. A server
    /// announces it in every agreement (and then frees its compressor
    /// between messages); a client requests it. Default `false`: context
    /// takeover compresses a stream of similar messages several times
    /// better (JSON at 1 KiB: ratio 0.21 instead of 0.35 at level 1).
    pub server_no_context_takeover: bool,
    /// The client starts each message with an empty window. A server asks
    /// for it in every agreement (and then frees its decompressor between
    /// messages); a client announces it in its offer. Default `false`.
    pub client_no_context_takeover: bool,
    /// zlib compression level, 0 (store) ..= 9 (best); larger is clamped.
    /// Default 1: with zlib-rs, level 1 compresses JSON 9-14x faster than
    /// level 6 (1 KiB messages: 740 against 81 MiB/s; 64 KiB: 840 against
    /// 61 MiB/s) for a ratio of 0.23 instead of 0.17 (1 KiB, context
    /// takeover); messaging is CPU-bound long before it is
    /// bandwidth-bound. Memory does not depend on it.
    pub level: u32,
    /// Data messages shorter than this many bytes are sent uncompressed.
    /// Default 128. Measured on JSON at level 1: without context takeover a
    /// 64-byte message does not shrink at all (ratio 0.99) and a 128-byte
    /// one only to 0.73, each for about 5 µs (a fresh context per
    /// message); under context takeover a 64-byte message shrinks to 0.34
    /// for about 0.2 µs, so a server that keeps takeover on may lower it
    /// to 32 and save about 40 bytes per small message.
    pub min_compress_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            level: 1,
            min_compress_size: 128,
        }
    }
}

/// What both ends agreed on (RFC 7692 §7.1). Window sizes are base-2 logs,
/// 8..=15; 15 when the agreement left them open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after every message.
    pub client_no_context_takeover: bool,
    /// Largest window the server compresses with.
    pub server_max_window_bits: u8,
    /// Largest window the client compresses with.
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// The agreement a bare `permessage-deflate` offer and answer make.
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateParams {
    /// The window `role` compresses with, or `None` when the agreement
    /// allows only 8 bits, which zlib cannot produce: that side then sends
    /// everything uncompressed.
    pub fn compress_window_bits(&self, role: Role) -> Option<u8> {
        let bits = match role {
            Role::Server => self.server_max_window_bits,
            Role::Client => self.client_max_window_bits,
        };
        (bits >= 9).then_some(bits)
    }

    /// The window `role` inflates the peer's messages with: the peer's
    /// limit, at least 9 (a larger window decodes a smaller one's output).
    pub fn decompress_window_bits(&self, role: Role) -> u8 {
        let bits = match role {
            Role::Server => self.client_max_window_bits,
            Role::Client => self.server_max_window_bits,
        };
        bits.max(9)
    }

    /// Whether `role` resets its compressor after every message.
    pub fn compress_no_context_takeover(&self, role: Role) -> bool {
        match role {
            Role::Server => self.server_no_context_takeover,
            Role::Client => self.client_no_context_takeover,
        }
    }

    /// Whether the peer of `role` resets its compressor after every message
    /// (so `role` may reset its decompressor and free its memory).
    pub fn decompress_no_context_takeover(&self, role: Role) -> bool {
        match role {
            Role::Server => self.client_no_context_takeover,
            Role::Client => self.server_no_context_takeover,
        }
    }
}

/// A server's acceptance of an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// What was agreed; pass it to `Connection::enable_deflate`.
    pub params: DeflateParams,
    /// The `Sec-WebSocket-Extensions` value to answer with.
    pub response: ExtensionHeader,
}

/// Why a client refuses the server's `Sec-WebSocket-Extensions` answer. The
/// client MUST then fail the connection (RFC 6455 §4.1; RFC 7692 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionError {
    /// An extension that was not offered, or permessage-deflate when it was
    /// not offered, or it twice: RFC 6455 §4.1, "the use of an extension
    /// that was not present in the client's handshake".
    NotOffered,
    /// The header does not follow the RFC 6455 §9.1 grammar.
    Malformed,
    /// A parameter unknown in a response, repeated, or with an invalid
    /// value (RFC 7692 §5: the client MUST fail the connection).
    InvalidParameter,
    /// A valid answer that does not match the offer (a window larger than
    /// asked for, a requested parameter left out).
    Mismatch,
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotOffered => "server accepted an extension that was not offered",
            Self::Malformed => "malformed Sec-WebSocket-Extensions header",
            Self::InvalidParameter => "unknown, repeated or invalid permessage-deflate parameter",
            Self::Mismatch => "permessage-deflate answer does not match the offer",
        })
    }
}

impl std::error::Error for ExtensionError {}

/// The four parameters of RFC 7692 §7.1 as one element carried them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// `Some(bits)` if present (a value is mandatory).
    server_max_window_bits: Option<u8>,
    /// `Some(None)` if present without a value (legal in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

/// RFC 7692 §5: an element is declined (server) or fails the handshake
/// (client) if it "contains an extension parameter not defined for use in
/// an offer/a response", one "with an invalid value", or "multiple
/// extension parameters with the same name".
fn parse_params(ext: &Extension<'_>, in_offer: bool) -> Option<Parsed> {
    let mut p = Parsed::default();
    for param in ext.params() {
        match param.name {
            b"server_no_context_takeover" => {
                // §7.1.1.1: "This extension parameter has no value."
                if p.server_no_context_takeover || param.value.is_some() {
                    return None;
                }
                p.server_no_context_takeover = true;
            }
            b"client_no_context_takeover" => {
                // §7.1.1.2: "This extension parameter has no value."
                if p.client_no_context_takeover || param.value.is_some() {
                    return None;
                }
                p.client_no_context_takeover = true;
            }
            b"server_max_window_bits" => {
                // §7.1.2.1: "This parameter has a decimal integer value
                // without leading zeroes between 8 to 15, inclusive".
                if p.server_max_window_bits.is_some() {
                    return None;
                }
                p.server_max_window_bits = Some(window_bits(param.value?)?);
            }
            b"client_max_window_bits" => {
                // §7.1.2.2: in an offer, "no value or a decimal integer
                // value ..."; in a response a value is required.
                if p.client_max_window_bits.is_some() {
                    return None;
                }
                let bits = match param.value {
                    Some(v) => Some(window_bits(v)?),
                    None if in_offer => None,
                    None => return None,
                };
                p.client_max_window_bits = Some(bits);
            }
            _ => return None,
        }
    }
    Some(p)
}

/// `1*DIGIT` "without leading zeroes between 8 to 15, inclusive" (RFC 7692
/// §7.1.2), after quoted-string unescaping (RFC 6455 §9.1).
fn window_bits(v: Value<'_>) -> Option<u8> {
    let mut n: u8 = 0;
    for (digits, b) in v.bytes().enumerate() {
        // At most two digits, and no leading zero.
        if !b.is_ascii_digit() || (digits == 1 && n == 0) || digits == 2 {
            return None;
        }
        n = n * 10 + (b - b'0');
    }
    (8..=15).contains(&n).then_some(n)
}

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(9, 15)
}

fn is_deflate(ext: &Extension<'_>) -> bool {
    ext.name == PERMESSAGE_DEFLATE.as_bytes()
}

impl DeflateConfig {
    /// Enabled, and built with the codec: without the `deflate` feature
    /// nothing could honour an agreement, so none is ever made (unit tests
    /// of the negotiation itself run either way).
    fn active(&self) -> bool {
        self.enabled && (cfg!(feature = "deflate") || cfg!(test))
    }

    /// Server side: pick the first acceptable permessage-deflate offer among
    /// the client's `Sec-WebSocket-Extensions` values (pass
    /// [`Upgrade::extensions`](crate::handshake::Upgrade::extensions)).
    ///
    /// Offers of other extensions are ignored (this crate supports none), and
    /// a permessage-deflate offer is declined, and the next one considered,
    /// when it is malformed, carries an unknown, repeated or invalid
    /// parameter (RFC 7692 §5), asks for `server_max_window_bits=8`, or
    /// does not let us apply a `client_max_window_bits` below 15. `None`
    /// (always, when disabled or built without the `deflate` feature):
    /// answer without the header.
    pub fn negotiate<'b, I>(&self, values: I) -> Option<Agreement>
    where
        I: IntoIterator<Item = &'b [u8]>,
    {
        if !self.active() {
            return None;
        }
        extensions(values)
            .filter_map(Result::ok)
            .filter(is_deflate)
            .find_map(|ext| self.accept_offer(&parse_params(&ext, true)?))
    }

    fn accept_offer(&self, offer: &Parsed) -> Option<Agreement> {
        let mut response = ExtensionHeader::new();
        let mut params = DeflateParams::default();
        // §7.1.1.1: "A server accepts an extension negotiation offer that
        // includes the "server_no_context_takeover" extension parameter by
        // including [it] in the corresponding extension negotiation
        // response", and "MAY include [it] ... even if the extension
        // negotiation offer ... didn't include" it.
        if offer.server_no_context_takeover || self.server_no_context_takeover {
            params.server_no_context_takeover = true;
            response.push("; server_no_context_takeover");
        }
        // §7.1.1.2: a client's "client_no_context_takeover" is a hint it
        // will follow anyway; echoing it makes it binding, and a server
        // "MAY include [it] in an extension negotiation response".
        if offer.client_no_context_takeover || self.client_no_context_takeover {
            params.client_no_context_takeover = true;
            response.push("; client_no_context_takeover");
        }
        // §7.1.2.1: "A server accepts an extension negotiation offer with
        // this parameter by including the "server_max_window_bits"
        // extension parameter in the extension negotiation response ... with
        // the same or smaller value as the offer"; it "MAY include [it] ...
        // even if the extension negotiation offer ... didn't include" it.
        let ours = clamp_bits(self.server_max_window_bits);
        params.server_max_window_bits = match offer.server_max_window_bits {
            // We cannot compress with a window of 256 bytes: decline.
            Some(8) => return None,
            Some(asked) => asked.min(ours),
            None => ours,
        };
        if offer.server_max_window_bits.is_some() || params.server_max_window_bits < 15 {
            response.push("; server_max_window_bits=");
            response.push_bits(params.server_max_window_bits);
        }
        // §7.1.2.2: "If a received extension negotiation offer doesn't have
        // the "client_max_window_bits" extension parameter, the
        // corresponding extension negotiation response to the offer MUST
        // NOT include" it. A value in the offer is a promise of the client
        // ("the client is not going to use an LZ77 sliding window size
        // greater than the size specified by the value"), so we only
        // answer when we want less than that.
        let limit = clamp_bits(self.client_max_window_bits);
        params.client_max_window_bits = match offer.client_max_window_bits {
            None if limit < 15 => return None,
            None => 15,
            Some(promised) => {
                let promised = promised.unwrap_or(15);
                if limit < promised {
                    response.push("; client_max_window_bits=");
                    response.push_bits(limit);
                    limit
                } else {
                    promised
                }
            }
        };
        Some(Agreement { params, response })
    }

    /// Client side: the `Sec-WebSocket-Extensions` value to offer (pass it to
    /// [`write_request`](crate::handshake::client::write_request)), or
    /// `None` when disabled.
    ///
    /// The offer always carries `client_max_window_bits` (with our window
    /// when below 15), which lets the server limit our window (§7.1.2.2).
    pub fn offer(&self) -> Option<ExtensionHeader> {
        if !self.active() {
            return None;
        }
        let mut h = ExtensionHeader::new();
        if self.server_no_context_takeover {
            h.push("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            h.push("; client_no_context_takeover");
        }
        let server_bits = clamp_bits(self.server_max_window_bits);
        if server_bits < 15 {
            h.push("; server_max_window_bits=");
            h.push_bits(server_bits);
        }
        h.push("; client_max_window_bits");
        let client_bits = clamp_bits(self.client_max_window_bits);
        if client_bits < 15 {
            h.push("=");
            h.push_bits(client_bits);
        }
        Some(h)
    }

    /// Client side: check the server's `Sec-WebSocket-Extensions` values
    /// (pass [`Response::extensions`](crate::handshake::Response::extensions))
    /// against what [`DeflateConfig::offer`] sent. `Ok(None)`: the server
    /// declined, the connection runs uncompressed.
    ///
    /// # Errors
    /// Any extension other than the one permessage-deflate element we
    /// offered, a malformed header, or an answer that RFC 7692 §5 says the
    /// client MUST fail the connection on. Call it even when disabled: then
    /// any extension in the answer is an error.
    pub fn accept_response<'b, I>(&self, values: I) -> Result<Option<DeflateParams>, ExtensionError>
    where
        I: IntoIterator<Item = &'b [u8]>,
    {
        let mut agreed = None;
        for ext in extensions(values) {
            let ext = ext.map_err(|_| ExtensionError::Malformed)?;
            // RFC 6455 §9.1: the server answers with extensions the client
            // offered; we offered one element, so one answer at most.
            if !self.active() || !is_deflate(&ext) || agreed.is_some() {
                return Err(ExtensionError::NotOffered);
            }
            let answer = parse_params(&ext, false).ok_or(ExtensionError::InvalidParameter)?;
            agreed = Some(self.check_answer(&answer)?);
        }
        Ok(agreed)
    }

    fn check_answer(&self, answer: &Parsed) -> Result<DeflateParams, ExtensionError> {
        let mut params = DeflateParams {
            server_no_context_takeover: answer.server_no_context_takeover,
            // Our hint binds us whether or not the server repeated it.
            client_no_context_takeover: answer.client_no_context_takeover
                || self.client_no_context_takeover,
            ..DeflateParams::default()
        };
        // §7.1.1.1: the server accepts our "server_no_context_takeover" by
        // including it; an answer without it does not match the offer.
        if self.server_no_context_takeover && !answer.server_no_context_takeover {
            return Err(ExtensionError::Mismatch);
        }
        // §7.1.2.1: the answer to a "server_max_window_bits" offer carries
        // "the same or smaller value".
        let asked = clamp_bits(self.server_max_window_bits);
        params.server_max_window_bits = match answer.server_max_window_bits {
            Some(bits) if bits > asked => return Err(ExtensionError::Mismatch),
            Some(bits) => bits,
            None if asked < 15 => return Err(ExtensionError::Mismatch),
            None => 15,
        };
        // §7.1.2.2: "a value equal to or smaller than the received value".
        // 8 is kept: we then send uncompressed (see the module docs).
        let ours = clamp_bits(self.client_max_window_bits);
        params.client_max_window_bits = match answer.client_max_window_bits {
            Some(Some(bits)) if bits > ours => return Err(ExtensionError::Mismatch),
            Some(Some(bits)) => bits,
            // `parse_params` requires the value in a response.
            Some(None) => return Err(ExtensionError::InvalidParameter),
            None => ours,
        };
        Ok(params)
    }
}

/// A `Sec-WebSocket-Extensions` value built on the stack (the longest one
/// this crate writes is 128 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ExtensionHeader {
    buf: [u8; Self::CAPACITY],
    len: u8,
}

impl ExtensionHeader {
    const CAPACITY: usize = 160;

    /// `permessage-deflate` and no parameters yet.
    fn new() -> Self {
        let mut h = Self {
            buf: [0; Self::CAPACITY],
            len: 0,
        };
        h.push(PERMESSAGE_DEFLATE);
        h
    }

    fn push(&mut self, s: &str) {
        self.push_bytes(s.as_bytes());
    }

    fn push_bytes(&mut self, s: &[u8]) {
        let at = self.len as usize;
        self.buf[at..at + s.len()].copy_from_slice(s);
        self.len += s.len() as u8;
    }

    fn push_bits(&mut self, bits: u8) {
        debug_assert!((8..=15).contains(&bits));
        if bits >= 10 {
            self.push_bytes(b"1");
        }
        self.push_bytes(&[b'0' + bits % 10]);
    }

    /// The header value.
    pub fn as_str(&self) -> &str {
        // Only ASCII `&str`s are pushed.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or_default()
    }
}

impl fmt::Debug for ExtensionHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ExtensionHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for ExtensionHeader {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> DeflateConfig {
        DeflateConfig {
            enabled: true,
            ..DeflateConfig::default()
        }
    }

    /// The server's answer to `offers` (one header line each), or `None`.
    fn answer(config: &DeflateConfig, offers: &[&str]) -> Option<(String, DeflateParams)> {
        config
            .negotiate(offers.iter().map(|v| v.as_bytes()))
            .map(|a| (a.response.to_string(), a.params))
    }

    fn params(snct: bool, cnct: bool, s: u8, c: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: s,
            client_max_window_bits: c,
        }
    }

    #[test]
    fn disabled_accepts_nothing() {
        let off = DeflateConfig::default();
        assert!(!off.enabled);
        assert_eq!(answer(&off, &["permessage-deflate"]), None);
        assert_eq!(off.offer(), None);
    }

    #[test]
    fn bare_offer() {
        assert_eq!(
            answer(&on(), &["permessage-deflate"]),
            Some(("permessage-deflate".into(), DeflateParams::default()))
        );
    }

    #[test]
    fn browser_offer() {
        // What Chromium and Firefox send.
        assert_eq!(
            answer(&on(), &["permessage-deflate; client_max_window_bits"]),
            Some(("permessage-deflate".into(), DeflateParams::default()))
        );
    }

    #[test]
    fn server_no_context_takeover() {
        let want = Some((
            "permessage-deflate; server_no_context_takeover".into(),
            params(true, false, 15, 15),
        ));
        assert_eq!(
            answer(&on(), &["permessage-deflate; server_no_context_takeover"]),
            want
        );
        // The server may announce it unasked.
        let cfg = DeflateConfig {
            server_no_context_takeover: true,
            ..on()
        };
        assert_eq!(answer(&cfg, &["permessage-deflate"]), want);
        // It has no value.
        assert_eq!(
            answer(&on(), &["permessage-deflate; server_no_context_takeover=1"]),
            None
        );
    }

    #[test]
    fn client_no_context_takeover() {
        let want = Some((
            "permessage-deflate; client_no_context_takeover".into(),
            params(false, true, 15, 15),
        ));
        // Echoed: the client's hint becomes binding.
        assert_eq!(
            answer(&on(), &["permessage-deflate; client_no_context_takeover"]),
            want
        );
        let cfg = DeflateConfig {
            client_no_context_takeover: true,
            ..on()
        };
        assert_eq!(answer(&cfg, &["permessage-deflate"]), want);
        assert_eq!(
            answer(
                &on(),
                &["permessage-deflate; client_no_context_takeover=\"x\""]
            ),
            None
        );
    }

    #[test]
    fn server_max_window_bits() {
        for bits in 9..=15u8 {
            let offer = format!("permessage-deflate; server_max_window_bits={bits}");
            assert_eq!(
                answer(&on(), &[&offer]),
                Some((
                    format!("permessage-deflate; server_max_window_bits={bits}"),
                    params(false, false, bits, 15)
                ))
            );
        }
        // Quoted is the same value (RFC 6455 §9.1).
        assert_eq!(
            answer(
                &on(),
                &["permessage-deflate; server_max_window_bits=\"10\""]
            )
            .unwrap()
            .1
            .server_max_window_bits,
            10
        );
        // Our own limit applies when it is smaller, with or without an offer.
        let cfg = DeflateConfig {
            server_max_window_bits: 11,
            ..on()
        };
        assert_eq!(
            answer(&cfg, &["permessage-deflate; server_max_window_bits=13"]),
            Some((
                "permessage-deflate; server_max_window_bits=11".into(),
                params(false, false, 11, 15)
            ))
        );
        assert_eq!(
            answer(&cfg, &["permessage-deflate; server_max_window_bits=10"])
                .unwrap()
                .1
                .server_max_window_bits,
            10
        );
        assert_eq!(
            answer(&cfg, &["permessage-deflate"]),
            Some((
                "permessage-deflate; server_max_window_bits=11".into(),
                params(false, false, 11, 15)
            ))
        );
        // A value is mandatory.
        assert_eq!(
            answer(&on(), &["permessage-deflate; server_max_window_bits"]),
            None
        );
    }

    #[test]
    fn server_window_of_8_is_declined() {
        assert_eq!(
            answer(&on(), &["permessage-deflate; server_max_window_bits=8"]),
            None
        );
        // ... and the next offer is taken.
        assert_eq!(
            answer(
                &on(),
                &["permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9"]
            ),
            Some((
                "permessage-deflate; server_max_window_bits=9".into(),
                params(false, false, 9, 15)
            ))
        );
    }

    #[test]
    fn client_max_window_bits() {
        // A promise of the client; nothing to answer, inflated with >= 9.
        for bits in 8..=15u8 {
            let offer = format!("permessage-deflate; client_max_window_bits={bits}");
            let (resp, p) = answer(&on(), &[&offer]).unwrap();
            assert_eq!(resp, "permessage-deflate");
            assert_eq!(p.client_max_window_bits, bits);
            assert_eq!(p.decompress_window_bits(Role::Server), bits.max(9));
        }
        // Our limit, when smaller than what the client would use.
        let cfg = DeflateConfig {
            client_max_window_bits: 10,
            ..on()
        };
        assert_eq!(
            answer(&cfg, &["permessage-deflate; client_max_window_bits"]),
            Some((
                "permessage-deflate; client_max_window_bits=10".into(),
                params(false, false, 15, 10)
            ))
        );
        assert_eq!(
            answer(&cfg, &["permessage-deflate; client_max_window_bits=12"]),
            Some((
                "permessage-deflate; client_max_window_bits=10".into(),
                params(false, false, 15, 10)
            ))
        );
        assert_eq!(
            answer(&cfg, &["permessage-deflate; client_max_window_bits=9"]),
            Some(("permessage-deflate".into(), params(false, false, 15, 9)))
        );
        // §7.1.2.2: not offered, so we may not limit it: decline.
        assert_eq!(answer(&cfg, &["permessage-deflate"]), None);
        // Without a limit of ours, an offer without it is fine.
        assert_eq!(
            answer(&on(), &["permessage-deflate"]).unwrap().0,
            "permessage-deflate"
        );
    }

    #[test]
    fn bad_values_are_declined() {
        for v in [
            "7",
            "16",
            "0",
            "08",
            "010",
            "1",
            "-9",
            "9.0",
            "+9",
            "a",
            "\"\"",
            "99999999999",
        ] {
            for name in ["server_max_window_bits", "client_max_window_bits"] {
                let offer = format!("permessage-deflate; {name}={v}");
                assert_eq!(answer(&on(), &[&offer]), None, "{offer}");
            }
        }
    }

    #[test]
    fn duplicates_and_unknown_parameters_are_declined() {
        for offer in [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            "permessage-deflate; x",
            "permessage-deflate; Server_No_Context_Takeover",
            "permessage-deflate;",
            "permessage-deflate server_no_context_takeover",
        ] {
            assert_eq!(answer(&on(), &[offer]), None, "{offer}");
        }
    }

    #[test]
    fn first_acceptable_offer_across_headers() {
        let got = answer(
            &on(),
            &[
                "x-webkit-deflate-frame, permessage-deflate; bogus",
                "foo; a=\"1,2\", permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=12, permessage-deflate",
            ],
        );
        assert_eq!(
            got,
            Some((
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=12".into(),
                params(false, true, 12, 15)
            ))
        );
        assert_eq!(answer(&on(), &["foo", "bar; x=1"]), None);
        assert_eq!(answer(&on(), &[]), None);
    }

    #[test]
    fn longest_response_fits() {
        let cfg = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 12,
            client_max_window_bits: 10,
            ..on()
        };
        let (resp, p) = answer(
            &cfg,
            &["permessage-deflate; client_max_window_bits; server_max_window_bits=15"],
        )
        .unwrap();
        assert_eq!(
            resp,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits=10"
        );
        assert_eq!(p, params(true, true, 12, 10));
    }

    #[test]
    fn out_of_range_config_is_clamped() {
        let cfg = DeflateConfig {
            server_max_window_bits: 8,
            client_max_window_bits: 200,
            ..on()
        };
        assert_eq!(
            answer(&cfg, &["permessage-deflate; client_max_window_bits"]),
            Some((
                "permessage-deflate; server_max_window_bits=9".into(),
                params(false, false, 9, 15)
            ))
        );
    }

    // ---- client side ----

    fn check(
        config: &DeflateConfig,
        answer: &[&str],
    ) -> Result<Option<DeflateParams>, ExtensionError> {
        config.accept_response(answer.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn offers() {
        assert_eq!(
            on().offer().unwrap().as_str(),
            "permessage-deflate; client_max_window_bits"
        );
        let cfg = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 12,
            ..on()
        };
        assert_eq!(
            cfg.offer().unwrap().as_str(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
    }

    #[test]
    fn every_offer_round_trips_through_our_server() {
        for snct in [false, true] {
            for cnct in [false, true] {
                for s in 9..=15 {
                    for c in 9..=15 {
                        let client = DeflateConfig {
                            server_no_context_takeover: snct,
                            client_no_context_takeover: cnct,
                            server_max_window_bits: s,
                            client_max_window_bits: c,
                            ..on()
                        };
                        let offer = client.offer().unwrap();
                        let server = DeflateConfig {
                            client_max_window_bits: 12,
                            ..on()
                        };
                        let agreed = server.negotiate([offer.as_str().as_bytes()]).unwrap();
                        let got = client
                            .accept_response([agreed.response.as_str().as_bytes()])
                            .unwrap();
                        assert_eq!(got, Some(agreed.params), "{offer} -> {}", agreed.response);
                        assert_eq!(agreed.params.server_max_window_bits, s);
                        assert_eq!(agreed.params.client_max_window_bits, c.min(12));
                    }
                }
            }
        }
    }

    #[test]
    fn client_accepts_no_extension() {
        assert_eq!(check(&on(), &[]), Ok(None));
        assert_eq!(check(&on(), &["", " , "]), Ok(None));
        assert_eq!(check(&DeflateConfig::default(), &[]), Ok(None));
    }

    #[test]
    fn client_refuses_what_it_did_not_offer() {
        use ExtensionError as E;
        assert_eq!(
            check(&DeflateConfig::default(), &["permessage-deflate"]),
            Err(E::NotOffered)
        );
        assert_eq!(check(&on(), &["x-other"]), Err(E::NotOffered));
        assert_eq!(
            check(&on(), &["permessage-deflate, permessage-deflate"]),
            Err(E::NotOffered)
        );
        assert_eq!(
            check(&on(), &["permessage-deflate", "permessage-deflate"]),
            Err(E::NotOffered)
        );
        assert_eq!(check(&on(), &["permessage-deflate;"]), Err(E::Malformed));
    }

    #[test]
    fn client_checks_parameters() {
        use ExtensionError as E;
        let ok = |a: &str| check(&on(), &[a]);
        assert_eq!(ok("permessage-deflate"), Ok(Some(DeflateParams::default())));
        // Allowed unasked.
        assert_eq!(
            ok("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            Ok(Some(params(true, true, 15, 15)))
        );
        assert_eq!(
            ok("permessage-deflate; server_max_window_bits=8"),
            Ok(Some(params(false, false, 8, 15)))
        );
        assert_eq!(
            ok("permessage-deflate; client_max_window_bits=10"),
            Ok(Some(params(false, false, 15, 10)))
        );
        // Limited to 8 bits: kept, but we will not compress.
        let p = ok("permessage-deflate; client_max_window_bits=8")
            .unwrap()
            .unwrap();
        assert_eq!(p.compress_window_bits(Role::Client), None);
        assert_eq!(p.decompress_window_bits(Role::Client), 15);
        for bad in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; unknown",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover=true",
        ] {
            assert_eq!(ok(bad), Err(E::InvalidParameter), "{bad}");
        }
    }

    #[test]
    fn client_checks_the_answer_matches_the_offer() {
        use ExtensionError as E;
        let cfg = DeflateConfig {
            server_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 12,
            ..on()
        };
        let full = "permessage-deflate; server_no_context_takeover; server_max_window_bits=10";
        assert_eq!(check(&cfg, &[full]), Ok(Some(params(true, false, 10, 12))));
        // Smaller windows are fine.
        assert_eq!(
            check(
                &cfg,
                &["permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=11"]
            ),
            Ok(Some(params(true, false, 9, 11)))
        );
        for bad in [
            // Requested server_no_context_takeover left out.
            "permessage-deflate; server_max_window_bits=10",
            // Requested server_max_window_bits left out, or larger.
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
            // Larger than our promised client window.
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=13",
        ] {
            assert_eq!(check(&cfg, &[bad]), Err(E::Mismatch), "{bad}");
        }
    }

    #[test]
    fn client_hint_binds_us() {
        let cfg = DeflateConfig {
            client_no_context_takeover: true,
            ..on()
        };
        let p = check(&cfg, &["permessage-deflate"]).unwrap().unwrap();
        assert!(p.compress_no_context_takeover(Role::Client));
        assert!(p.decompress_no_context_takeover(Role::Server));
    }

    #[test]
    fn role_views() {
        let p = params(true, false, 10, 8);
        assert_eq!(p.compress_window_bits(Role::Server), Some(10));
        assert_eq!(p.compress_window_bits(Role::Client), None);
        assert_eq!(p.decompress_window_bits(Role::Server), 9);
        assert_eq!(p.decompress_window_bits(Role::Client), 10);
        assert!(p.compress_no_context_takeover(Role::Server));
        assert!(!p.compress_no_context_takeover(Role::Client));
        assert!(!p.decompress_no_context_takeover(Role::Server));
        assert!(p.decompress_no_context_takeover(Role::Client));
    }

    #[test]
    fn window_bits_values() {
        let v = |s: &'static str| {
            extensions([format!("a; x={s}").leak().as_bytes() as &[u8]])
                .next()
                .unwrap()
                .ok()
                .and_then(|e| e.params().next()?.value)
                .and_then(window_bits)
        };
        assert_eq!(v("8"), Some(8));
        assert_eq!(v("15"), Some(15));
        assert_eq!(v("\"1\\5\""), Some(15));
        assert_eq!(v("08"), None);
        assert_eq!(v("16"), None);
        assert_eq!(v("150"), None);
        assert_eq!(v("7"), None);
    }
}
