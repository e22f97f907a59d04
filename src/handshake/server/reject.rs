//! Why a request was refused, and with which HTTP status.

use std::fmt;

/// Why a request was refused. `Copy`, and [`as_str`](Self::as_str) is a
/// fixed snake_case label, so it can be used directly as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// Upgrade attempt with a method other than GET. 405, with `Allow: GET`
    /// (RFC 9110 §15.5.6 requires `Allow` on a 405).
    Method,
    /// Upgrade attempt over HTTP/1.0. 400, not 505: the major version is
    /// supported, only this request is not a valid handshake.
    HttpVersion,
    /// Request line names a version other than HTTP/1.0 or HTTP/1.1. 505.
    UnsupportedHttpVersion,
    /// No `Host` header. 400.
    MissingHost,
    /// A header that must appear once (`Host`, `Origin`) appears more
    /// than once. 400.
    DuplicateHeader,
    /// `Upgrade` missing or lacking the `websocket` token. 400.
    UpgradeHeader,
    /// `Connection` missing or lacking the `upgrade` token. 400.
    ConnectionHeader,
    /// `Sec-WebSocket-Key` missing, repeated, not base64, or not 16 bytes
    /// once decoded. 400.
    BadKey,
    /// `Sec-WebSocket-Version` missing, repeated or not `13`. 426, with
    /// `Sec-WebSocket-Version: 13`.
    BadWsVersion,
    /// Header block larger than [`Limits::max_header_bytes`]. 431.
    ///
    /// [`Limits::max_header_bytes`]: crate::handshake::Limits::max_header_bytes
    HeaderTooLarge,
    /// More headers than [`Limits::max_headers`]. 431.
    ///
    /// [`Limits::max_headers`]: crate::handshake::Limits::max_headers
    TooManyHeaders,
    /// Not parseable as an HTTP/1.x request. 400.
    Malformed,
}

impl RejectReason {
    /// Short snake_case label, stable, suitable for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Method => "method",
            RejectReason::HttpVersion => "http_version",
            RejectReason::UnsupportedHttpVersion => "unsupported_http_version",
            RejectReason::MissingHost => "missing_host",
            RejectReason::DuplicateHeader => "duplicate_header",
            RejectReason::UpgradeHeader => "upgrade_header",
            RejectReason::ConnectionHeader => "connection_header",
            RejectReason::BadKey => "bad_key",
            RejectReason::BadWsVersion => "bad_ws_version",
            RejectReason::HeaderTooLarge => "header_too_large",
            RejectReason::TooManyHeaders => "too_many_headers",
            RejectReason::Malformed => "malformed",
        }
    }

    /// HTTP status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            RejectReason::Method => 405,
            RejectReason::UnsupportedHttpVersion => 505,
            RejectReason::BadWsVersion => 426,
            RejectReason::HeaderTooLarge | RejectReason::TooManyHeaders => 431,
            RejectReason::HttpVersion
            | RejectReason::MissingHost
            | RejectReason::DuplicateHeader
            | RejectReason::UpgradeHeader
            | RejectReason::ConnectionHeader
            | RejectReason::BadKey
            | RejectReason::Malformed => 400,
        }
    }

    /// One-line human-readable explanation, used as the response body.
    pub fn message(self) -> &'static str {
        match self {
            RejectReason::Method => "WebSocket handshake must use GET",
            RejectReason::HttpVersion => "WebSocket handshake requires HTTP/1.1",
            RejectReason::UnsupportedHttpVersion => "only HTTP/1.0 and HTTP/1.1 are supported",
            RejectReason::MissingHost => "missing Host header",
            RejectReason::DuplicateHeader => "repeated Host or Origin header",
            RejectReason::UpgradeHeader => "Upgrade header must contain websocket",
            RejectReason::ConnectionHeader => "Connection header must contain upgrade",
            RejectReason::BadKey => "Sec-WebSocket-Key must appear once and be base64 of 16 bytes",
            RejectReason::BadWsVersion => "Sec-WebSocket-Version must be 13",
            RejectReason::HeaderTooLarge => "request header block too large",
            RejectReason::TooManyHeaders => "too many request headers",
            RejectReason::Malformed => "malformed HTTP request",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: the status to answer with and why.
///
/// Write the answer with [`write_reject`](super::write_reject), then close
/// the connection: bytes after a refused header block cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reject {
    /// HTTP status code; always `reason.status()` when built by this crate.
    pub status: u16,
    /// Why.
    pub reason: RejectReason,
}

impl Reject {
    /// A reject with the status that belongs to `reason`.
    pub fn new(reason: RejectReason) -> Self {
        Reject {
            status: reason.status(),
            reason,
        }
    }
}

impl From<RejectReason> for Reject {
    fn from(reason: RejectReason) -> Self {
        Reject::new(reason)
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason.message(), self.status)
    }
}

impl std::error::Error for Reject {}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [RejectReason; 12] = [
        RejectReason::Method,
        RejectReason::HttpVersion,
        RejectReason::UnsupportedHttpVersion,
        RejectReason::MissingHost,
        RejectReason::DuplicateHeader,
        RejectReason::UpgradeHeader,
        RejectReason::ConnectionHeader,
        RejectReason::BadKey,
        RejectReason::BadWsVersion,
        RejectReason::HeaderTooLarge,
        RejectReason::TooManyHeaders,
        RejectReason::Malformed,
    ];

    #[test]
    fn labels_are_snake_case_and_unique() {
        for (i, r) in ALL.iter().enumerate() {
            let s = r.as_str();
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert!(ALL[..i].iter().all(|o| o.as_str() != s), "{s}");
            assert!(!r.message().contains('\n'));
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(Reject::new(RejectReason::Method).status, 405);
        assert_eq!(Reject::new(RejectReason::HttpVersion).status, 400);
        assert_eq!(
            Reject::new(RejectReason::UnsupportedHttpVersion).status,
            505
        );
        assert_eq!(Reject::new(RejectReason::BadWsVersion).status, 426);
        assert_eq!(Reject::new(RejectReason::HeaderTooLarge).status, 431);
        assert_eq!(Reject::new(RejectReason::TooManyHeaders).status, 431);
        assert_eq!(Reject::from(RejectReason::BadKey).status, 400);
        assert_eq!(
            Reject::new(RejectReason::BadWsVersion).to_string(),
            "Sec-WebSocket-Version must be 13 (426)"
        );
    }
}
