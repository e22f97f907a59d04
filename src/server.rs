//! The public server API: a [`Handler`] for the application, a plain
//! [`ServerConfig`] and a [`Server`] that binds and runs the reactor.

use std::time::Duration;

use crate::handshake::Limits;
use crate::proto::{self, Message};

pub use crate::net::{ConnId, Control, Ctx, Reactor, Remote, Server, Stopper};

/// The application's side of the server. One handler serves every
/// connection of the (single-threaded) reactor; [`ConnId`] tells them apart.
pub trait Handler {
    /// A connection completed its opening handshake.
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx;
    }

    /// A complete message arrived. It borrows the reactor's read buffer (or
    /// the connection's assembly buffer) and is valid for this call only.
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>);

    /// A pong arrived (the answer to [`Ctx::ping`], or unsolicited).
    fn on_pong(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {
        let _ = (ctx, payload);
    }

    /// The connection ended; called once for every connection that was
    /// opened. `code` is the peer's close code (1005 if its close carried
    /// none), the code we failed the connection with, or 1006 if the
    /// transport ended without a close frame.
    fn on_close(&mut self, id: ConnId, code: u16, reason: &str) {
        let _ = (id, code, reason);
    }

    /// A client connection could not be established: the TCP connect or
    /// the opening handshake failed or timed out. `on_close` is not called
    /// for it.
    fn on_connect_failed(&mut self, id: ConnId, reason: &str) {
        let _ = (id, reason);
    }

    /// Another thread called [`Remote::wake`].
    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        let _ = ctl;
    }

    /// A timer set with [`Control::set_timer`] is due.
    fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) {
        let _ = (ctl, token);
    }
}

/// Server settings. Every field says its default and what it protects
/// against.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Frame and message limits of the protocol core (see [`proto::Config`]).
    pub protocol: proto::Config,
    /// Header block limits of the opening handshake (8 KiB, 64 headers).
    pub handshake: Limits,
    /// Time a client has to complete its opening handshake; then the
    /// connection is dropped. Default 5 s: a slow dribble (slowloris) cannot
    /// hold a connection open.
    pub handshake_timeout: Duration,
    /// Time we wait for the peer's close frame after sending ours, and for the
    /// peer to close TCP after the close handshake. Default 5 s: a peer that
    /// never answers cannot keep the connection.
    pub close_timeout: Duration,
    /// Size of the one read buffer the whole reactor shares. Default 64 KiB.
    pub read_buffer_size: usize,
    /// Reading from a connection pauses while this much output is queued for
    /// it, and resumes once it drains below half. Default 32 MiB (twice the
    /// largest frame, so an echo of one maximal message never stalls): a peer
    /// that stops reading cannot make us buffer without bound.
    pub max_pending_output: usize,
    /// Connections held at once; further accepted sockets are closed at once.
    /// Default 100 000.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            protocol: proto::Config::default(),
            handshake: Limits::default(),
            handshake_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            read_buffer_size: 64 * 1024,
            max_pending_output: 32 << 20,
            max_connections: 100_000,
        }
    }
}
