//! Sending on one connection: the write path behind [`Ctx`](super::Ctx) and
//! [`Control`](super::Control).

use std::io::{self, IoSlice, Write};

use super::inplace::InPlace;
use super::metrics::Metrics;
use super::transport::Transport;
use crate::proto::{copy_masked, DirectHeader, OpCode, SendError, Sender};
use crate::server::{OverflowPolicy, ServerConfig};

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

/// Compact, for logs: `#slot.generation`, e.g. `#7.1`.
impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}.{}", self.key, self.generation)
    }
}

/// What became of a message that was accepted for sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The kernel took the whole frame.
    Written,
    /// All or part of the frame waits in the connection's queue (the kernel
    /// refused it, earlier output is still queued, or the send was corked);
    /// it goes out as the socket drains.
    Queued,
}

/// The pieces of one connection a send needs.
#[derive(Debug)]
pub(crate) struct Link<'a> {
    pub(crate) tx: &'a mut Sender,
    pub(crate) stream: &'a mut Transport,
    pub(crate) broken: &'a mut bool,
    pub(crate) metrics: &'a mut Metrics,
    pub(crate) config: &'a ServerConfig,
    /// Loop-wide buffer frames are assembled in (a client's masked payload,
    /// small server frames).
    pub(crate) scratch: &'a mut Vec<u8>,
    /// The message being handled, if it can be sent back in place.
    pub(crate) in_place: Option<InPlace>,
}

impl Link<'_> {
    /// Send one data message: straight to the socket when nothing is queued
    /// before it (one write of the whole frame), else queued.
    /// `cork` queues it in any case, for one flush after the batch.
    pub(crate) fn send(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        cork: bool,
    ) -> Result<Sent, SendError> {
        self.check_room(payload.len())?;
        let sent = self.write_data(opcode, payload, cork)?;
        self.metrics.messages_out += 1;
        self.metrics.bytes_out += payload.len() as u64;
        Ok(sent)
    }

    /// Queue a control frame (ping, close) and flush unless corked.
    pub(crate) fn control(
        &mut self,
        cork: bool,
        f: impl FnOnce(&mut Sender) -> Result<(), SendError>,
    ) -> Result<Sent, SendError> {
        f(self.tx)?;
        if !cork {
            self.flush();
        }
        Ok(if self.tx.pending_len() == 0 {
            Sent::Written
        } else {
            Sent::Queued
        })
    }

    /// Apply the overflow policy if `len` more bytes would not fit.
    fn check_room(&mut self, len: usize) -> Result<(), SendError> {
        // 14 bytes: the largest frame header.
        if self.tx.pending_len() + len + 14 <= self.config.max_queued_output {
            return Ok(());
        }
        self.metrics.overflows_total += 1;
        match self.config.on_overflow {
            OverflowPolicy::Refuse => {}
            OverflowPolicy::Close(code) => {
                let _ = self.tx.close(code, "send queue overflow");
            }
            OverflowPolicy::Drop => *self.broken = true,
        }
        Err(SendError::Overflow)
    }

    fn write_data(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        cork: bool,
    ) -> Result<Sent, SendError> {
        if cork || self.tx.pending_len() > 0 || *self.broken {
            self.tx.send(opcode, payload)?;
            return Ok(Sent::Queued);
        }
        let Some(DirectHeader { head, mask }) = self.tx.direct_header(opcode, payload.len())?
        else {
            // Compressed into the queue; flush it at once.
            self.tx.send(opcode, payload)?;
            self.flush();
            return Ok(if self.tx.pending_len() == 0 {
                Sent::Written
            } else {
                Sent::Queued
            });
        };
        let head = head.as_slice();
        // The received message sent back: its reply goes out from where it
        // lies (see `inplace`).
        if mask.is_none() {
            if let Some(frame) = self.in_place.and_then(|p| p.frame(head, payload)) {
                return Ok(write_whole(self.stream, self.tx, self.broken, frame));
            }
        }
        // Other small frames (and every client frame, whose payload is
        // copied to be masked anyway) are assembled in the loop-wide scratch
        // buffer and go out in one `send`: up to `COPY_MAX` the copy costs
        // less than a two-part `writev` costs the kernel. Larger server
        // frames go out with `writev`, header and payload where they are.
        if mask.is_some() || head.len() + payload.len() <= COPY_MAX {
            let len = head.len() + payload.len();
            // Grown, never shrunk: steady state writes each byte once.
            if self.scratch.len() < len {
                self.scratch.resize(len, 0);
            }
            let (h, p) = self.scratch[..len].split_at_mut(head.len());
            h.copy_from_slice(head);
            match mask {
                Some(key) => copy_masked(p, payload, key, 0),
                None => p.copy_from_slice(payload),
            }
            let frame = &self.scratch[..len];
            return Ok(write_whole(self.stream, self.tx, self.broken, frame));
        }
        let parts = [IoSlice::new(head), IoSlice::new(payload)];
        let Some(written) = write_once(self.stream, |s| s.write_vectored(&parts)) else {
            *self.broken = true;
            return Ok(Sent::Queued);
        };
        // Queue what the kernel did not take.
        if written < head.len() {
            self.tx.queue_raw(&head[written..]);
            self.tx.queue_raw(payload);
        } else if written < head.len() + payload.len() {
            self.tx.queue_raw(&payload[written - head.len()..]);
        } else {
            return Ok(Sent::Written);
        }
        Ok(Sent::Queued)
    }

    pub(crate) fn flush(&mut self) {
        flush(self.stream, self.tx, self.broken);
    }
}

/// Frames up to this size (header included) are copied and sent in one
/// piece rather than written from two places with `writev`.
const COPY_MAX: usize = 4096;

/// One write, retried on `Interrupted`: the bytes taken (0 if the kernel
/// would block), or `None` if the connection failed.
pub(crate) fn write_once(
    stream: &mut Transport,
    mut write: impl FnMut(&mut Transport) -> io::Result<usize>,
) -> Option<usize> {
    loop {
        match write(stream) {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(0),
            Err(e) => {
                log::debug!("write failed: {e}");
                return None;
            }
        }
    }
}

/// One write of a whole frame; what the kernel does not take is queued.
fn write_whole(stream: &mut Transport, tx: &mut Sender, broken: &mut bool, frame: &[u8]) -> Sent {
    match write_once(stream, |s| s.write(frame)) {
        Some(n) if n == frame.len() => return Sent::Written,
        Some(n) => tx.queue_raw(&frame[n..]),
        None => *broken = true,
    }
    Sent::Queued
}

/// Iovecs per vectored write of a segmented queue (shared frames).
const IOV_BATCH: usize = 32;

/// Write queued output until it is gone or the kernel refuses more. Shared
/// frames queued by publishes go out with one vectored write per batch of
/// up to 32 runs.
pub(crate) fn flush(stream: &mut Transport, tx: &mut Sender, broken: &mut bool) {
    // TLS records the socket refused earlier go first (plain TCP holds none).
    if stream.holds_output() {
        if let Err(e) = stream.push() {
            log::debug!("write failed: {e}");
            *broken = true;
        }
    }
    while !*broken && tx.pending_len() > 0 {
        let written = if tx.is_segmented() {
            let mut iov = [IoSlice::new(&[]); IOV_BATCH];
            match tx.pending_slices(&mut iov) {
                // One run (a lone delivery): a plain write costs the kernel
                // less than a one-element writev.
                1 => stream.write(&iov[0]),
                n => stream.write_vectored(&iov[..n]),
            }
        } else {
            stream.write(tx.pending())
        };
        match written {
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
