//! One connection's state in the reactor.

use super::timer::Tick;
use super::transport::Transport;

use crate::proto::{Connection, LazyBuf};

/// Where a connection is in its life.
///
/// ```text
///  server:             Handshake ──101 sent──► Open ──close done / failure──► Closing ──► dropped
///  client: Connecting ─► Handshake ──101 ok──►  │                                 ▲
///                            └── rejected / plain HTTP answered ────────────────┘
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Client: the TCP connect is in progress.
    Connecting,
    /// Server: reading the upgrade request. Client: request sent, reading
    /// the response.
    Handshake,
    /// Server: a plain HTTP request whose answer (the metrics) is written
    /// after this round of events; input is ignored meanwhile.
    Answering,
    /// WebSocket frames flow.
    Open,
    /// Flushing the last bytes. A server then shuts its write side down (it
    /// closes TCP first, RFC 6455 §7.1.1); both discard input until the peer
    /// closes or the deadline passes.
    Closing,
}

/// What a client needs until its handshake completes.
#[derive(Debug)]
pub(crate) struct ClientSetup {
    /// The request, sent once connected.
    pub(crate) request: Vec<u8>,
    /// The `Sec-WebSocket-Accept` value the server must answer with.
    pub(crate) expected_accept: String,
    /// The subprotocols offered: the server may choose one of these only.
    pub(crate) protocols: Vec<String>,
}

/// One yes/no fact about a connection; a bit in [`Flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Flag {
    /// The deadline in force is the last one (handshake or close): heartbeats
    /// no longer move it.
    FinalDeadline = 1 << 0,
    /// The close code we sent was counted in the metrics.
    CloseCounted = 1 << 1,
    /// `on_open` was called and `on_close` is still owed.
    Opened = 1 << 2,
    /// The peer ended its side of TCP.
    Eof = 1 << 3,
    /// Reading stopped because too much output is queued (backpressure).
    ReadPaused = 1 << 4,
    /// Our write side is shut down.
    ShutWrite = 1 << 5,
    /// Refused at `max_connections`: only lingers to deliver the 503.
    Refused = 1 << 6,
    /// Our heartbeat ping awaits its pong; `Conn::heartbeat` is when it was
    /// sent.
    PingOutstanding = 1 << 7,
}

/// A set of [`Flag`]s in one byte: every connection stores them, and as
/// `bool`s they took seven.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags(u8);

impl Flags {
    pub(crate) fn contains(self, flag: Flag) -> bool {
        self.0 & flag as u8 != 0
    }

    pub(crate) fn insert(&mut self, flag: Flag) {
        self.0 |= flag as u8;
    }

    pub(crate) fn remove(&mut self, flag: Flag) {
        self.0 &= !(flag as u8);
    }
}

/// Every connection, idle ones included, pays this struct (in a slab slot),
/// so it is kept small: buffers that are empty when idle cost a pointer, the
/// yes/no state is a byte, times are 8-byte ticks.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: Transport,
    pub(crate) generation: u32,
    pub(crate) state: State,
    pub(crate) flags: Flags,
    /// A read or write failed: drop the connection. Not one of the `flags`:
    /// the write path (`Link`, `flush`) borrows it next to `stream` and the
    /// sender.
    pub(crate) broken: bool,
    pub(crate) proto: Connection,
    /// Input left unconsumed by the last read: an unfinished header block
    /// (bounded by the handshake limits) or the start of a frame (at most
    /// `Receiver::MAX_UNCONSUMED` bytes). Empty, and unallocated, when idle.
    pub(crate) partial: LazyBuf,
    /// Client only, until the handshake completes.
    pub(crate) client: Option<Box<ClientSetup>>,
    /// When the connection's one live heap entry fires (see `timer`): the
    /// handshake or close deadline exactly; while open, no later than the
    /// next heartbeat or idle check (`drive::expire` re-arms on an early call).
    pub(crate) deadline: Option<Tick>,
    /// When input last arrived (loop time), for the idle timeout.
    pub(crate) last_read: Tick,
    /// When the next heartbeat ping is due or, with
    /// [`Flag::PingOutstanding`], when the outstanding one was sent (the next
    /// is due one interval after that). One field for both: the next ping
    /// waits for the pong anyway.
    pub(crate) heartbeat: Tick,
}

impl Conn {
    pub(crate) fn new(
        stream: impl Into<Transport>,
        generation: u32,
        proto: Connection,
        state: State,
        now: Tick,
    ) -> Self {
        Self {
            stream: stream.into(),
            generation,
            state,
            flags: Flags::default(),
            broken: false,
            proto,
            partial: LazyBuf::new(),
            client: None,
            deadline: None,
            last_read: now,
            heartbeat: now,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every connection pays this (idle ones included; the slab slot is no
    /// bigger, its `Option` and slab tags fit in niches): keep it in sight. Measured in a
    /// debug build, where mio's `TcpStream` carries a 16-byte selector id
    /// (release: 4 bytes, and `Conn` 8 bytes less; with the `tls` feature
    /// the transport's TLS arm, a box, takes those 8 bytes back, so
    /// there a plain connection costs the debug figure).
    #[test]
    fn connection_state_stays_small() {
        let size = std::mem::size_of::<super::Conn>();
        assert_eq!(
            std::mem::size_of::<Option<super::Conn>>(),
            size,
            "a taken-out slot costs nothing"
        );
        // 8 of them: the sender's pointer to its queue of shared (published)
        // frames, allocated at the first delivery.
        #[cfg(not(feature = "deflate"))]
        let bound = 184;
        // The sender's pointer to the permessage-deflate contexts.
        #[cfg(feature = "deflate")]
        let bound = 192;
        assert!(size <= bound, "Conn grew to {size} bytes (bound {bound})");
    }
}
