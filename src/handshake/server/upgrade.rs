//! What a parsed request turned out to be (the result of
//! [`classify`](super::classify)).

use httparse::Header;

use super::reject::Reject;
use crate::handshake::headers::{self, HeaderTokens, HeaderValues};

/// What a request turned out to be.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'h, 'b> {
    /// A valid WebSocket opening handshake: answer with
    /// [`write_accept`](super::write_accept).
    Upgrade(Upgrade<'h, 'b>),
    /// A WebSocket upgrade attempt that breaks a rule, or an HTTP request
    /// that breaks HTTP itself: answer with
    /// [`write_reject`](super::write_reject) and close.
    Reject(Reject),
    /// A plain HTTP request, not an upgrade attempt at all; the caller
    /// answers it, e.g. with
    /// [`default_http_response`](super::default_http_response).
    Http(PlainHttp<'b>),
}

/// A valid upgrade request.
#[derive(Debug, Clone, Copy)]
pub struct Upgrade<'h, 'b> {
    /// Request target (RFC 6455 calls it the /resource name/).
    pub path: &'b str,
    /// `Host` value, untrimmed (httparse already drops surrounding OWS).
    pub host: &'b [u8],
    /// `Sec-WebSocket-Key` as sent (base64 text), whitespace trimmed; what
    /// [`write_accept`](super::write_accept) hashes.
    pub key: &'b [u8],
    /// `Origin`, if sent. Browsers always send it; checking it is the
    /// server's job (RFC 6455 §10.2).
    pub origin: Option<&'b [u8]>,
    pub(super) headers: &'h [Header<'b>],
}

impl<'h, 'b> Upgrade<'h, 'b> {
    /// Offered subprotocols, in the client's order of preference: every
    /// element across all `Sec-WebSocket-Protocol` headers.
    pub fn protocols(&self) -> HeaderTokens<'h, 'b> {
        headers::header_tokens(self.headers, "Sec-WebSocket-Protocol")
    }

    /// Raw values of every `Sec-WebSocket-Extensions` header, in order;
    /// negotiation happens elsewhere.
    pub fn extensions(&self) -> HeaderValues<'h, 'b> {
        headers::header_values(self.headers, "Sec-WebSocket-Extensions")
    }

    /// All request headers, e.g. for cookies or authorization.
    pub fn headers(&self) -> &'h [Header<'b>] {
        self.headers
    }
}

/// A plain HTTP request (no `Upgrade`, no `Sec-WebSocket-Key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainHttp<'b> {
    /// Request method.
    pub method: &'b str,
    /// Request target as sent.
    pub path: &'b str,
}
