//! What a handler callback gets: the connection's id and a way to send.

use std::io::{self, IoSlice, Write};

use mio::net::TcpStream;

use super::metrics::Metrics;
use crate::proto::{Message, OpCode, SendError, Sender};

/// Identifies a connection: its slab slot plus a generation, so an id kept
/// after its connection closed never reaches the slot's next occupant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) key: usize,
    pub(crate) generation: u32,
}

impl ConnId {
    /// The slot number (unique among open connections).
    pub fn index(&self) -> usize {
        self.key
    }
}

/// A handle to the connection a callback is about.
///
/// Sends go straight to the socket when nothing is queued before them (the
/// frame header and payload in one vectored write); only what the kernel
/// does not take is queued. While more received frames wait in the same
/// read batch, sends are queued instead ("corked") and flushed once after the
/// batch, so pipelined messages cost one write, not one each.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub(crate) id: ConnId,
    pub(crate) tx: &'a mut Sender,
    pub(crate) stream: &'a mut TcpStream,
    pub(crate) cork: bool,
    pub(crate) broken: &'a mut bool,
    pub(crate) metrics: &'a mut Metrics,
}

impl Ctx<'_> {
    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Send a message of the same kind as `msg`.
    ///
    /// # Errors
    /// [`SendError::Closed`] once the close handshake has started.
    pub fn send(&mut self, msg: Message<'_>) -> Result<(), SendError> {
        self.send_data(msg.opcode(), msg.as_bytes())
    }

    /// Send a text message.
    ///
    /// # Errors
    /// As [`Ctx::send`].
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_data(OpCode::Text, text.as_bytes())
    }

    /// Send a binary message.
    ///
    /// # Errors
    /// As [`Ctx::send`].
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_data(OpCode::Binary, data)
    }

    /// Send a ping (at most 125 bytes of payload).
    ///
    /// # Errors
    /// [`SendError::ControlTooLong`], or [`SendError::Closed`].
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.tx.ping(payload)?;
        self.flush_unless_corked();
        Ok(())
    }

    /// Start the close handshake.
    ///
    /// # Errors
    /// [`SendError::InvalidCloseCode`], [`SendError::ControlTooLong`] for a
    /// reason over 123 bytes, or [`SendError::Closed`].
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), SendError> {
        self.tx.close(code, reason)?;
        self.flush_unless_corked();
        Ok(())
    }

    /// Bytes queued for this connection and not yet taken by the kernel.
    pub fn queued(&self) -> usize {
        self.tx.pending_len()
    }

    fn send_data(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.write_data(opcode, payload)?;
        self.metrics.messages_out += 1;
        self.metrics.bytes_out += payload.len() as u64;
        Ok(())
    }

    fn write_data(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if self.cork || self.tx.pending_len() > 0 || *self.broken {
            return self.tx.send(opcode, payload);
        }
        let Some(head) = self.tx.direct_header(opcode, payload.len())? else {
            self.tx.send(opcode, payload)?;
            self.flush_unless_corked();
            return Ok(());
        };
        let head = head.as_slice();
        let written = loop {
            match self
                .stream
                .write_vectored(&[IoSlice::new(head), IoSlice::new(payload)])
            {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) => {
                    log::debug!("write to {:?} failed: {e}", self.id);
                    *self.broken = true;
                    return Ok(());
                }
            }
        };
        // Queue what the kernel did not take.
        if written < head.len() {
            self.tx.queue_raw(&head[written..]);
            self.tx.queue_raw(payload);
        } else if written < head.len() + payload.len() {
            self.tx.queue_raw(&payload[written - head.len()..]);
        }
        Ok(())
    }

    fn flush_unless_corked(&mut self) {
        if !self.cork {
            flush(self.stream, self.tx, self.broken);
        }
    }
}

/// Write queued output until it is gone or the kernel refuses more.
pub(crate) fn flush(stream: &mut TcpStream, tx: &mut Sender, broken: &mut bool) {
    while !*broken && tx.pending_len() > 0 {
        match stream.write(tx.pending()) {
            Ok(0) => *broken = true,
            Ok(n) => tx.consume(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                log::debug!("write failed: {e}");
                *broken = true;
            }
        }
    }
}
