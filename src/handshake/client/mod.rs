//! Client side of the opening handshake (RFC 6455 §4.1).
//!
//! 1. [`write_request`] with 16 random bytes from the caller; keep the
//!    returned [`ClientKey`].
//! 2. [`parse_response`] with everything received so far, until it is not
//!    [`Status::Partial`](crate::handshake::Status::Partial).
//! 3. Bytes after [`Response::len`] are the server's first frames.

mod request;
mod response;

pub use crate::handshake::Limits;
pub use request::{check_header, check_protocol, write_request, ClientKey, RequestFieldError};
pub use response::{parse_response, ClientHandshakeError, Response};
