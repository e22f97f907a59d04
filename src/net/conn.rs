//! One connection's state in the reactor.

use mio::net::TcpStream;

use super::timer::Tick;

use crate::proto::Connection;

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
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) generation: u32,
    pub(crate) state: State,
    pub(crate) proto: Connection,
    /// Input left unconsumed by the last read: an unfinished header block
    /// (bounded by the handshake limits) or the start of a frame (at most
    /// `Receiver::MAX_UNCONSUMED` bytes). Empty, and unallocated, when idle.
    pub(crate) partial: Vec<u8>,
    /// Client only, until the handshake completes.
    pub(crate) client: Option<Box<ClientSetup>>,
    /// The one deadline in force (see `timer`).
    pub(crate) deadline: Option<Tick>,
    /// When input last arrived (loop time), for the idle timeout.
    pub(crate) last_read: Tick,
    /// When our outstanding heartbeat ping was sent, until its pong arrives.
    pub(crate) ping_sent: Option<Tick>,
    /// When the next heartbeat ping is due.
    pub(crate) next_ping: Tick,
    /// The deadline in force is the last one (handshake or close): heartbeats
    /// no longer move it.
    pub(crate) final_deadline: bool,
    /// The close code we sent was counted in the metrics.
    pub(crate) close_counted: bool,
    /// `on_open` was called and `on_close` is still owed.
    pub(crate) opened: bool,
    /// The peer ended its side of TCP.
    pub(crate) eof: bool,
    /// A read or write failed: drop the connection.
    pub(crate) broken: bool,
    /// Reading stopped because too much output is queued (backpressure).
    pub(crate) read_paused: bool,
    /// Our write side is shut down.
    pub(crate) shut_write: bool,
    /// Refused at `max_connections`: only lingers to deliver the 503.
    pub(crate) refused: bool,
}

impl Conn {
    pub(crate) fn new(
        stream: TcpStream,
        generation: u32,
        proto: Connection,
        state: State,
        now: Tick,
    ) -> Self {
        Self {
            stream,
            generation,
            state,
            proto,
            partial: Vec::new(),
            client: None,
            deadline: None,
            last_read: now,
            ping_sent: None,
            next_ping: now,
            final_deadline: false,
            close_counted: false,
            opened: false,
            eof: false,
            broken: false,
            read_paused: false,
            shut_write: false,
            refused: false,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every connection pays this (idle ones included): keep it in sight.
    #[test]
    fn connection_state_stays_small() {
        let size = std::mem::size_of::<super::Conn>();
        assert!(size <= 256, "Conn grew to {size} bytes");
    }
}
