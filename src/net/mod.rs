//! The reactor: one thread, one `mio::Poll`, connections in a `slab`.
//!
//! This is the only module that names mio, slab and sockets. It reads into
//! one buffer shared by the whole loop, lets the protocol core decode frames
//! in place, and hands borrowed messages to the [`Handler`](crate::Handler).

mod conn;
mod ctx;
mod reactor;
mod timer;

pub use ctx::{ConnId, Ctx};
pub use reactor::{Server, Stopper};
