//! The reactor: one thread, one `mio::Poll`, connections in a `slab`.
//!
//! This is the only module that names mio, slab and sockets. It reads into
//! one buffer shared by the whole loop, lets the protocol core decode frames
//! in place, and hands borrowed messages to the [`Handler`](crate::Handler).
//! Accepted and outgoing (client) connections live in the same loop.

mod alarm;
mod conn;
mod ctx;
mod drive;
mod inplace;
mod metrics;
mod rand;
mod reactor;
mod timer;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
mod url;

pub use ctx::{ConnId, Ctx, Sent};
pub use metrics::Metrics;
pub use reactor::{Control, Reactor, Remote, Server, Stopper};
pub use url::{UrlError, WsUrl};
