//! Errors of the protocol core: small data, each mapped to a close code.

use std::fmt;

/// What kind of failure ended the connection (RFC 6455 §7.4.1 codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The peer broke the framing or close rules: 1002.
    Protocol,
    /// A text message or close reason was not UTF-8: 1007.
    InvalidPayload,
    /// A message or frame exceeded the configured limit: 1009.
    TooBig,
    /// A local policy (such as a fragment limit) was violated: 1008.
    Policy,
}

/// A failure of the connection: the core has already queued the close frame
/// carrying [`Error::close_code`]; the caller flushes it and closes the
/// transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    detail: &'static str,
}

impl Error {
    pub(crate) const fn new(kind: ErrorKind, detail: &'static str) -> Self {
        Self { kind, detail }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// A short description of the rule that was broken.
    pub fn detail(&self) -> &'static str {
        self.detail
    }

    /// The close code sent to the peer.
    pub fn close_code(&self) -> u16 {
        match self.kind {
            ErrorKind::Protocol => 1002,
            ErrorKind::InvalidPayload => 1007,
            ErrorKind::Policy => 1008,
            ErrorKind::TooBig => 1009,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close code {})", self.detail, self.close_code())
    }
}

impl std::error::Error for Error {}

/// Why a send was refused. Nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// A close frame was already sent: RFC 6455 §5.5.1, "the application MUST
    /// NOT send any more data frames".
    Closed,
    /// A control frame payload over 125 bytes (§5.5).
    ControlTooLong,
    /// A close code that must not be sent (§7.4.1: 1005, 1006, 1015 and
    /// unassigned codes).
    InvalidCloseCode,
    /// The connection's queued output would exceed its limit (the peer is
    /// not reading); what else happened depends on the overflow policy.
    Overflow,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closed => "the connection is closing",
            SendError::ControlTooLong => "control frame payload over 125 bytes",
            SendError::InvalidCloseCode => "close code may not be sent",
            SendError::Overflow => "queued output over its limit",
        })
    }
}

impl std::error::Error for SendError {}
