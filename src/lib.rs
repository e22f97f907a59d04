//! # wsreactor
//!
//! RFC 6455 WebSocket written by hand: a sans-IO protocol core driven by a
//! single-threaded [`mio`](https://docs.rs/mio) reactor.
//!
//! - [`proto`] and [`handshake`] are the protocol core. They never touch a
//!   socket, a clock or a random source: the caller passes bytes (and, for a
//!   client, mask keys) in and takes events and bytes out. The reactor, the
//!   tests and the fuzz targets all drive the same code.
//! - `net` (feature `net`, on by default) is the reactor: the only module that
//!   names mio, slab and sockets.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod handshake;
#[cfg(feature = "net")]
pub mod net;
pub mod proto;
#[cfg(feature = "net")]
pub mod server;
mod status;

pub use proto::{CloseFrame, Message};
#[cfg(feature = "net")]
pub use server::{
    ConnId, Control, Ctx, Decision, Handler, Metrics, OverflowPolicy, Reactor, Remote, Sent,
    Server, ServerConfig, Stopper,
};
pub use status::Status;
