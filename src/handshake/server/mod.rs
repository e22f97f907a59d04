//! Server side of the opening handshake (RFC 6455 §4.2).
//!
//! 1. [`parse_request`] with everything received so far, until it is not
//!    [`Status::Partial`](crate::handshake::Status::Partial).
//! 2. [`classify`] the [`Request`]: an [`Upgrade`], a [`Reject`] or
//!    [`PlainHttp`].
//! 3. Write the answer: [`write_accept`], [`write_reject`] (then close),
//!    or for plain HTTP [`answer_plain`] / [`write_response`].
//! 4. Bytes after [`Request::len`] are the client's first frames.

mod classify;
mod reject;
mod request;
mod response;
mod upgrade;

pub use crate::handshake::Limits;
pub use classify::classify;
pub use reject::{Reject, RejectReason};
pub use request::{parse_request, Request};
pub use response::{
    answer_plain, default_http_response, is_health_check, reason_phrase, write_accept,
    write_head_response, write_reject, write_response, PlainAnswer,
};
pub use upgrade::{Outcome, PlainHttp, Upgrade};
