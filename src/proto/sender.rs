//! The sending half: frames queued as bytes, and the close state.
//!
//! ```text
//!            close() / fail            peer's Close
//!   Open ────────────────────► CloseSent ───────────► Closed
//!     │                                                  ▲
//!     └──── peer's Close (echoed) / connection failed ───┘
//! ```
//!
//! Once `Closed`, the caller flushes what is pending and closes the transport
//! (a server first, RFC 6455 §7.1.1).

use super::close::is_valid_sent_code;
use super::error::SendError;
use super::frame::{encode_header, HeaderBuf, OpCode};
use super::mask::apply_mask;

/// Where the close handshake stands, from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseState {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// Both close frames were exchanged, or the connection failed: nothing
    /// more is sent after what is pending.
    Closed,
}

/// Output queued for the transport, in order, plus the close state.
///
/// An empty queue owns no heap memory: the buffer is released once drained,
/// so an idle connection costs only this struct.
#[derive(Debug)]
pub struct Sender {
    out: Vec<u8>,
    /// How much of `out` the transport has taken.
    pos: usize,
    state: CloseState,
    /// The code of the close frame we sent (`Some(1005)` for an empty one).
    sent_close: Option<u16>,
    /// Masking-key generator; `Some` for a client (§5.3: "a client MUST mask
    /// all frames that it sends to the server").
    mask: Option<MaskGen>,
}

impl Sender {
    pub(crate) fn new(mask_seed: Option<u64>) -> Self {
        Self {
            out: Vec::new(),
            pos: 0,
            state: CloseState::Open,
            sent_close: None,
            mask: mask_seed.map(MaskGen),
        }
    }

    /// Where the close handshake stands.
    pub fn state(&self) -> CloseState {
        self.state
    }

    /// The code of the close frame we sent, if any: `Some(1005)` when it
    /// carried no code (an echo of an empty close).
    pub fn sent_close_code(&self) -> Option<u16> {
        self.sent_close
    }

    /// Queue a complete text or binary message as one frame.
    ///
    /// # Errors
    /// [`SendError::Closed`] once a close frame was sent.
    pub fn send(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.send_frame(opcode, true, payload)
    }

    /// Queue one frame; `opcode` is `Continuation` for the second and later
    /// frames of a fragmented message.
    ///
    /// # Errors
    /// [`SendError::Closed`] once a close frame was sent;
    /// [`SendError::ControlTooLong`] for a control payload over 125 bytes.
    pub fn send_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if self.state != CloseState::Open {
            return Err(SendError::Closed);
        }
        if opcode.is_control() && (payload.len() > 125 || !fin) {
            return Err(SendError::ControlTooLong);
        }
        self.push_frame(opcode, fin, payload);
        Ok(())
    }

    /// Queue a ping.
    ///
    /// # Errors
    /// As [`Sender::send_frame`].
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_frame(OpCode::Ping, true, payload)
    }

    /// Start the close handshake with `code` and a UTF-8 `reason`.
    ///
    /// # Errors
    /// [`SendError::InvalidCloseCode`] for a code that may not be sent,
    /// [`SendError::ControlTooLong`] for a reason over 123 bytes, and
    /// [`SendError::Closed`] if a close was already sent.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), SendError> {
        if self.state != CloseState::Open {
            return Err(SendError::Closed);
        }
        if !is_valid_sent_code(code) {
            return Err(SendError::InvalidCloseCode);
        }
        if reason.len() > 123 {
            return Err(SendError::ControlTooLong);
        }
        self.push_close(Some(code), reason);
        self.state = CloseState::CloseSent;
        Ok(())
    }

    /// The header for a data frame whose payload the caller transmits itself
    /// (the zero-copy path: header and payload leave in one vectored write).
    /// Returns `None` for a client, whose payload must be masked into a copy;
    /// use [`Sender::send`] there.
    ///
    /// # Errors
    /// [`SendError::Closed`] once a close frame was sent.
    pub fn direct_header(
        &mut self,
        opcode: OpCode,
        len: usize,
    ) -> Result<Option<HeaderBuf>, SendError> {
        if self.state != CloseState::Open {
            return Err(SendError::Closed);
        }
        if self.mask.is_some() {
            return Ok(None);
        }
        Ok(Some(encode_header(true, 0, opcode, None, len as u64)))
    }

    /// Append raw bytes that are already framed (what a direct write could
    /// not hand to the kernel).
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Bytes waiting for the transport.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.pos..]
    }

    /// Number of bytes waiting.
    pub fn pending_len(&self) -> usize {
        self.out.len() - self.pos
    }

    /// The transport took `n` bytes of [`Sender::pending`].
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.out.len());
        if self.pos >= self.out.len() {
            // Release the buffer: idle connections own no output memory.
            self.out = Vec::new();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.out.len() {
            self.out.drain(..self.pos);
            self.pos = 0;
        }
    }

    // ---- duties queued by the receiver ----

    pub(crate) fn queue_pong(&mut self, payload: &[u8]) {
        // §5.5.1: after our Close, nothing but what is pending goes out.
        if self.state == CloseState::Open {
            self.push_frame(OpCode::Pong, true, payload);
        }
    }

    /// The peer's close arrived: echo its code unless we closed first.
    pub(crate) fn on_peer_close(&mut self, code: Option<u16>) {
        if self.state == CloseState::Open {
            self.push_close(code, "");
        }
        self.state = CloseState::Closed;
    }

    /// Fail the connection (§7.1.7): send a close with `code` if we have not.
    pub(crate) fn fail(&mut self, code: u16) {
        if self.state == CloseState::Open {
            self.push_close(Some(code), "");
        }
        self.state = CloseState::Closed;
    }

    fn push_close(&mut self, code: Option<u16>, reason: &str) {
        self.sent_close = Some(code.unwrap_or(1005));
        let mut payload = [0u8; 125];
        let len = match code {
            Some(code) => {
                payload[..2].copy_from_slice(&code.to_be_bytes());
                payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
                2 + reason.len()
            }
            None => 0,
        };
        self.push_frame(OpCode::Close, true, &payload[..len]);
    }

    fn push_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let key = self.mask.as_mut().map(MaskGen::next_key);
        let head = encode_header(fin, 0, opcode, key, payload.len() as u64);
        self.out.reserve(head.as_slice().len() + payload.len());
        self.out.extend_from_slice(head.as_slice());
        let start = self.out.len();
        self.out.extend_from_slice(payload);
        if let Some(key) = key {
            apply_mask(&mut self.out[start..], key, 0);
        }
    }
}

/// Masking keys for a client: wyrand, seeded by the caller from the OS.
///
/// §10.3 asks that keys be unpredictable to the application (so a script
/// cannot choose the bytes on the wire); a 64-bit generator seeded from OS
/// randomness per connection meets that for a non-browser client without a
/// syscall per frame.
#[derive(Debug, Clone, Copy)]
struct MaskGen(u64);

impl MaskGen {
    fn next_key(&mut self) -> [u8; 4] {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        (((t >> 64) ^ t) as u32).to_ne_bytes()
    }
}
