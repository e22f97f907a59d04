//! The reactor: one thread, one `mio::Poll`, connections in a `slab`.
//!
//! This is the only module that names mio, slab and sockets. It reads into
//! one buffer shared by the whole loop, lets the protocol core decode frames
//! in place, and hands borrowed messages to the [`Handler`](crate::Handler).
//! Accepted and outgoing (client) connections live in the same loop.

mod alarm;
mod cluster;
mod coalesce;
mod conn;
mod control;
mod ctx;
mod drive;
mod group;
mod hub;
mod inplace;
mod logs;
mod metrics;
mod process;
mod rand;
mod reactor;
#[cfg(feature = "signals")]
mod signals;
mod timer;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
mod url;

pub use cluster::{Accept, Cluster};
pub use control::{Control, Ctx};
pub use ctx::{ConnId, Sent};
pub use metrics::Metrics;
pub use reactor::{Reactor, Remote, Server, Stopper};
#[cfg(feature = "signals")]
pub use signals::ShutdownSignals;
pub use url::{UrlError, WsUrl};
