//! The sans-IO protocol core: RFC 6455 framing, message assembly and the
//! close handshake.
//!
//! Nothing here performs I/O, reads a clock or draws randomness. The caller
//! feeds received bytes to [`Receiver::read`] and gets [`Event`]s that borrow
//! those bytes; what must be sent (application messages, and the duties the
//! protocol imposes on reads such as pongs and close echoes) is queued as bytes
//! in the [`Sender`] for the caller to transmit.
//!
//! ```text
//!  bytes ─► frame (header decode) ─► decoder (policy) ─► assembler ─► Event
//!                                           │
//!                                  Sender ◄─┘ pong / close echo queued as bytes
//! ```

mod buf;
mod close;
mod connection;
mod error;
mod frame;
mod mask;
mod run;
mod sender;
mod shared;
mod utf8;

#[cfg(feature = "net")]
pub(crate) use buf::LazyBuf;
pub use close::{is_valid_received_code, is_valid_sent_code, CloseFrame};
pub use connection::{Config, Connection, Event, Message, Read, Receiver, Role};
pub use error::{Error, ErrorKind, SendError};
pub use frame::{decode_header, encode_header, Header, HeaderBuf, OpCode, MAX_HEADER_LEN, RSV1};
pub use mask::{apply_mask, apply_mask_reference, copy_masked};
pub use run::FrameRun;
pub use sender::{CloseState, DirectHeader, Sender};
pub use shared::{DeflatedForms, FramePool, SharedFrame};
pub use utf8::Utf8Validator;

pub use crate::status::Status;
