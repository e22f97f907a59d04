//! One connection's state in the reactor.

use std::time::Instant;

use mio::net::TcpStream;

use crate::proto::Connection;

/// Where a connection is in its life.
///
/// ```text
///  Handshake ──101──► Open ──close handshake done / failure──► Closing ──EOF / deadline──► dropped
///      └──────── rejected (HTTP error or plain HTTP answer) ──────┘
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Reading the HTTP upgrade request.
    Handshake,
    /// WebSocket frames flow.
    Open,
    /// Flushing the last bytes, then the write side is shut down (the server
    /// closes TCP first, RFC 6455 §7.1.1) and input is discarded until the
    /// peer closes or the deadline passes.
    Closing,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) generation: u32,
    pub(crate) state: State,
    pub(crate) proto: Connection,
    /// Input left unconsumed by the last read: an unfinished request header
    /// block (bounded by the handshake limits) or the start of a frame (at
    /// most `Receiver::MAX_UNCONSUMED` bytes). Empty, and unallocated, when
    /// idle.
    pub(crate) partial: Vec<u8>,
    /// The one deadline in force (see `timer`).
    pub(crate) deadline: Option<Instant>,
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
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, generation: u32, proto: Connection) -> Self {
        Self {
            stream,
            generation,
            state: State::Handshake,
            proto,
            partial: Vec::new(),
            deadline: None,
            opened: false,
            eof: false,
            broken: false,
            read_paused: false,
            shut_write: false,
        }
    }
}
