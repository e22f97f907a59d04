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
//!
//! # Features
//!
//! As a library dependency, turn the default features off: they also build
//! the `wsreactor` binary's own crates (feature `cli`).
//!
//! ```toml
//! wsreactor = { version = "0.1", default-features = false, features = ["net"] }
//! ```
//!
//! `net`: the reactor, server and client. `signals`: graceful shutdown on
//! SIGINT/SIGTERM (`Server::shutdown_on_signals`). `deflate`:
//! permessage-deflate. Without `net`, the crate is the sans-IO core alone.
//!
//! # A complete echo server
//!
//! ```
//! use std::io::{Read, Write};
//! use wsreactor::{Ctx, Handler, Message, Server, ServerConfig};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
//!         // Fails only once the close handshake has started.
//!         let _ = ctx.send(msg);
//!     }
//! }
//!
//! let server = Server::bind("127.0.0.1:0", ServerConfig::default(), Echo)?;
//! let addr = server.local_addr();
//! let stopper = server.stopper();
//! let thread = std::thread::spawn(move || server.run());
//!
//! // A client by hand: the RFC 6455 §1.3 handshake, then the §5.7 masked "Hello".
//! let mut tcp = std::net::TcpStream::connect(addr)?;
//! tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n")?;
//! let mut response = Vec::new();
//! let mut byte = [0u8; 1];
//! while !response.ends_with(b"\r\n\r\n") {
//!     tcp.read_exact(&mut byte)?;
//!     response.push(byte[0]);
//! }
//! let response = String::from_utf8(response).unwrap();
//! assert!(response.starts_with("HTTP/1.1 101"));
//! assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
//! tcp.write_all(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58])?;
//! let mut echo = [0u8; 7];
//! tcp.read_exact(&mut echo)?;
//! assert_eq!(&echo, b"\x81\x05Hello"); // server frames are not masked
//!
//! stopper.stop();
//! thread.join().unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

/// The README's Rust examples, compiled as doctests so they keep working.
#[cfg(all(doctest, feature = "signals"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "net")]
pub mod client;
pub mod ext;
#[cfg(feature = "gateway")]
pub mod gateway;
pub mod handshake;
#[cfg(feature = "net")]
pub mod net;
pub mod proto;
#[cfg(feature = "net")]
pub mod server;
mod status;
pub mod topics;

#[cfg(feature = "signals")]
pub use net::ShutdownSignals;
pub use proto::{CloseFrame, Message};
/// The rustls this crate is built with, for its configuration types.
#[cfg(feature = "tls")]
pub use rustls;
#[cfg(feature = "net")]
pub use server::{
    Accept, Cluster, ConnId, Control, Ctx, Decision, Handler, HttpResponse, Metrics,
    OverflowPolicy, Reactor, Remote, Sent, Server, ServerConfig, SlowPolicy, Stopper,
};
pub use status::Status;
