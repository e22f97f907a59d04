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

use std::collections::VecDeque;
use std::io::IoSlice;
use std::num::NonZeroU16;
use std::sync::Arc;

use super::close::is_valid_sent_code;
use super::error::SendError;
use super::frame::{encode_header, HeaderBuf, OpCode};
#[cfg(feature = "deflate")]
use super::frame::{MAX_HEADER_LEN, RSV1};
use super::mask::apply_mask;
use super::run::FrameRun;
use super::shared::{DeflatedForms, SharedFrame};
#[cfg(feature = "deflate")]
use crate::ext::deflate::{Compressor, Decompressor};

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
/// so an idle connection costs only this struct (48 bytes on a 64-bit
/// target; 56 with the `deflate` feature).
#[derive(Debug)]
pub struct Sender {
    /// The queue. A plain `Vec`, not a one-pointer [`LazyBuf`] like the
    /// receiver's buffers: a sans-IO caller that sends and drains every
    /// message would pay the box's allocation on every message.
    ///
    /// [`LazyBuf`]: super::buf::LazyBuf
    out: Vec<u8>,
    /// Output queued ahead of `out`: shared frames, and owned bytes moved
    /// there to keep their order. `None` until the first shared frame; then
    /// kept (emptied, not freed), so a subscriber's steady state allocates
    /// nothing per delivery.
    front: Option<Box<Front>>,
    /// Masking-key generator, used only by a `client`. Not an `Option`: a
    /// `u64` has no spare value to mean `None`, so that would cost 8 bytes.
    mask: MaskGen,
    /// How much of `out` the transport has taken. 32 bits keep the struct
    /// small; `skip_to` compacts the queue rather than let it overflow.
    pos: u32,
    /// The code of the close frame we sent (1005 for an empty one). Never 0:
    /// the codes we send are valid ones.
    sent_close: Option<NonZeroU16>,
    state: CloseState,
    /// We are the client: frames are masked (§5.3: "a client MUST mask all
    /// frames that it sends to the server").
    client: bool,
    /// permessage-deflate, once negotiated. Both directions live here, in
    /// one box: the receiver gets the sender on every read, so an
    /// uncompressed connection pays one pointer in all.
    #[cfg(feature = "deflate")]
    deflate: Option<Box<Deflate>>,
}

/// The queue of byte runs ahead of [`Sender`]'s own buffer.
#[derive(Debug, Default)]
struct Front {
    segs: VecDeque<Seg>,
    /// Bytes pending in `segs`.
    len: usize,
}

/// A run of queued bytes: `bytes[start..end]` is pending.
#[derive(Debug)]
struct Seg {
    bytes: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

/// A drained front queue keeps its memory up to this many entries (a
/// subscriber's usual backlog); a larger one is freed.
const FRONT_KEEP: usize = 64;

/// Both directions of permessage-deflate.
#[cfg(feature = "deflate")]
#[derive(Debug)]
struct Deflate {
    /// `None`: the agreement lets us send only uncompressed messages.
    compressor: Option<Compressor>,
    decompressor: Decompressor,
    /// Data messages shorter than this go out uncompressed (`usize::MAX`
    /// without a compressor).
    min_size: usize,
}

impl Sender {
    pub(crate) fn new(mask_seed: Option<u64>) -> Self {
        Self {
            out: Vec::new(),
            front: None,
            mask: MaskGen(mask_seed.unwrap_or(0)),
            pos: 0,
            sent_close: None,
            state: CloseState::Open,
            client: mask_seed.is_some(),
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }

    /// Compress data messages of at least `min_size` bytes from now on
    /// (`compressor` `None`: the agreement lets us send only uncompressed
    /// messages), and keep the receiver's `decompressor`.
    #[cfg(feature = "deflate")]
    pub(crate) fn enable_deflate(
        &mut self,
        compressor: Option<Compressor>,
        decompressor: Decompressor,
        min_size: usize,
    ) {
        let min_size = if compressor.is_some() {
            min_size
        } else {
            usize::MAX
        };
        self.deflate = Some(Box::new(Deflate {
            compressor,
            decompressor,
            min_size,
        }));
    }

    /// The receiving direction's context, once negotiated.
    #[cfg(feature = "deflate")]
    pub(crate) fn decompressor(&mut self) -> Option<&mut Decompressor> {
        self.deflate.as_deref_mut().map(|d| &mut d.decompressor)
    }

    /// Whether a data message of `len` bytes would be sent compressed.
    #[inline(always)]
    fn compresses(&self, opcode: OpCode, len: usize) -> bool {
        #[cfg(feature = "deflate")]
        if let Some(d) = self.deflate.as_deref() {
            return len >= d.min_size && matches!(opcode, OpCode::Text | OpCode::Binary);
        }
        let _ = (opcode, len);
        false
    }

    /// Where the close handshake stands.
    pub fn state(&self) -> CloseState {
        self.state
    }

    /// The code of the close frame we sent, if any: `Some(1005)` when it
    /// carried no code (an echo of an empty close).
    pub fn sent_close_code(&self) -> Option<u16> {
        self.sent_close.map(NonZeroU16::get)
    }

    /// Queue a complete text or binary message as one frame, compressed
    /// when permessage-deflate was negotiated and the message is at least
    /// `min_compress_size` long.
    ///
    /// # Errors
    /// [`SendError::Closed`] once a close frame was sent (or if compression
    /// failed, which fails the connection with 1011).
    pub fn send(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        #[cfg(feature = "deflate")]
        if self.compresses(opcode, payload.len()) {
            return self.send_compressed(opcode, payload);
        }
        self.send_frame(opcode, true, payload)
    }

    /// Queue a text or binary message split into frames of at most
    /// `max_frame` payload bytes (at least 1). With permessage-deflate the
    /// message is compressed as a whole first, as for [`Sender::send`], and
    /// only its first frame carries RSV1 (RFC 7692 §6.1).
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn send_fragmented(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        max_frame: usize,
    ) -> Result<(), SendError> {
        if self.state != CloseState::Open {
            return Err(SendError::Closed);
        }
        if opcode.is_control() {
            // §5.5: "Control frames ... MUST NOT be fragmented."
            return self.send_frame(opcode, true, payload);
        }
        let max_frame = max_frame.max(1);
        #[cfg(feature = "deflate")]
        if self.compresses(opcode, payload.len()) {
            let mut body = Vec::new();
            if let Some(z) = self
                .deflate
                .as_deref_mut()
                .and_then(|d| d.compressor.as_mut())
            {
                if z.compress(payload, &mut body).is_err() {
                    self.fail(1011);
                    return Err(SendError::Closed);
                }
            }
            self.push_fragments(opcode, RSV1, &body, max_frame);
            return Ok(());
        }
        self.push_fragments(opcode, 0, payload, max_frame);
        Ok(())
    }

    fn push_fragments(&mut self, opcode: OpCode, rsv: u8, body: &[u8], max_frame: usize) {
        let mut chunks = body.chunks(max_frame).peekable();
        let (mut op, mut rsv) = (opcode, rsv);
        if chunks.peek().is_none() {
            self.push_frame_rsv(op, true, rsv, &[]);
        }
        while let Some(chunk) = chunks.next() {
            self.push_frame_rsv(op, chunks.peek().is_none(), rsv, chunk);
            (op, rsv) = (OpCode::Continuation, 0);
        }
    }

    /// Compress straight into the output queue: a gap the size of the
    /// largest header is left before the compressed bytes, and the header,
    /// whose length is known only afterwards, is written at its end. With
    /// nothing else queued the gap is simply skipped (`pos`); otherwise the
    /// body moves back over it.
    #[cfg(feature = "deflate")]
    #[inline(never)]
    fn send_compressed(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if self.state != CloseState::Open {
            return Err(SendError::Closed);
        }
        let Some(z) = self
            .deflate
            .as_deref_mut()
            .and_then(|d| d.compressor.as_mut())
        else {
            return self.send_frame(opcode, true, payload);
        };
        let head_at = self.out.len();
        self.out.resize(head_at + MAX_HEADER_LEN, 0);
        let body_at = self.out.len();
        if z.compress(payload, &mut self.out).is_err() {
            self.out.truncate(head_at);
            self.fail(1011);
            return Err(SendError::Closed);
        }
        let len = self.out.len() - body_at;
        if len >= payload.len() && z.no_context_takeover() {
            // Incompressible. Without context takeover the peer's window
            // need not see these bytes, so they may go out as they are
            // (RFC 7692 §6: compression is chosen per message).
            self.out.truncate(head_at);
            self.push_frame(opcode, true, payload);
            return Ok(());
        }
        let key = self.next_mask();
        // §6.1: RSV1 on the first (here: only) frame of a compressed message.
        let head = encode_header(true, RSV1, opcode, key, len as u64);
        let head = head.as_slice();
        let at = body_at - head.len();
        self.out[at..body_at].copy_from_slice(head);
        if let Some(key) = key {
            apply_mask(&mut self.out[body_at..], key, 0);
        }
        if self.pos as usize == head_at {
            self.skip_to(at);
        } else {
            self.out.drain(head_at..at);
        }
        Ok(())
    }

    /// Queue one frame; `opcode` is `Continuation` for the second and later
    /// frames of a fragmented message. Frames queued this way are never
    /// compressed.
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
    /// (the direct path: header and payload leave in one write, nothing is
    /// queued),
    /// with the masking key a client must apply to the payload it sends
    /// (`None` for a server). Returns `None` for a message that
    /// permessage-deflate will compress; use [`Sender::send`] there.
    ///
    /// # Errors
    /// [`SendError::Closed`] once a close frame was sent.
    pub fn direct_header(
        &mut self,
        opcode: OpCode,
        len: usize,
    ) -> Result<Option<DirectHeader>, SendError> {
        if self.state != CloseState::Open {
            return Err(SendError::Closed);
        }
        if self.compresses(opcode, len) {
            return Ok(None);
        }
        let mask = self.next_mask();
        let head = encode_header(true, 0, opcode, mask, len as u64);
        Ok(Some(DirectHeader { head, mask }))
    }

    /// Append raw bytes that are already framed (what a direct write could
    /// not hand to the kernel).
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Queue a frame encoded once for many connections: a reference to it,
    /// not a copy. With permessage-deflate, a message long enough to be
    /// compressed goes out in the compressed form `forms` holds for this
    /// connection's window (built here by the first subscriber that needs
    /// it) when the agreement has no server context takeover; with context
    /// takeover the connection compresses it for itself, since its
    /// compressor's window is its own.
    ///
    /// # Errors
    /// [`SendError::Closed`] once a close frame was sent.
    pub fn send_shared(
        &mut self,
        frame: &SharedFrame,
        forms: &mut DeflatedForms,
    ) -> Result<(), SendError> {
        if self.state != CloseState::Open {
            return Err(SendError::Closed);
        }
        if self.client {
            // A client masks each frame: it cannot share one.
            return self.send(frame.opcode(), frame.payload());
        }
        if self.compresses(frame.opcode(), frame.payload().len()) {
            #[cfg(feature = "deflate")]
            return self.send_shared_deflated(frame, forms);
        }
        let _ = forms;
        self.queue_frame(frame, 0);
        Ok(())
    }

    #[cfg(feature = "deflate")]
    fn send_shared_deflated(
        &mut self,
        frame: &SharedFrame,
        forms: &mut DeflatedForms,
    ) -> Result<(), SendError> {
        let Some(z) = self
            .deflate
            .as_deref_mut()
            .and_then(|d| d.compressor.as_mut())
        else {
            self.queue_frame(frame, 0);
            return Ok(());
        };
        if !z.no_context_takeover() {
            return self.send(frame.opcode(), frame.payload());
        }
        let slot = &mut forms.forms[usize::from(z.window_bits() - 9)];
        if slot.is_none() {
            let payload = frame.payload();
            let mut body = Vec::with_capacity(payload.len() / 2 + 64);
            if z.compress(payload, &mut body).is_err() {
                self.fail(1011);
                return Err(SendError::Closed);
            }
            *slot = Some((body.len() < payload.len()).then(|| {
                // §6.1: RSV1 on the (only) frame of a compressed message.
                let head = encode_header(true, RSV1, frame.opcode(), None, body.len() as u64);
                let mut bytes = Vec::with_capacity(head.as_slice().len() + body.len());
                bytes.extend_from_slice(head.as_slice());
                bytes.extend_from_slice(&body);
                Arc::new(bytes)
            }));
        }
        match slot {
            Some(Some(compressed)) => {
                let end = compressed.len();
                self.queue_shared(Arc::clone(compressed), 0, end);
            }
            // Incompressible: plain, as `send` does without context takeover.
            _ => self.queue_frame(frame, 0),
        }
        Ok(())
    }

    /// Whether `frame` can go out as it is on this connection right now,
    /// written directly by the caller: nothing is queued, the connection is
    /// open, it is a server's and does not compress this message. What the
    /// transport does not take then goes to [`Sender::queue_shared_from`].
    #[inline]
    pub fn can_write_shared(&self, frame: &SharedFrame) -> bool {
        self.state == CloseState::Open
            && !self.client
            && self.pending_len() == 0
            && !self.compresses(frame.opcode(), frame.payload().len())
    }

    /// Queue the rest of `frame` after the transport took its first
    /// `written` bytes (a direct write the kernel took only in part): a
    /// reference, not a copy.
    pub fn queue_shared_from(&mut self, frame: &SharedFrame, written: usize) {
        if written < frame.len() {
            self.queue_frame(frame, written);
        }
    }

    /// Whether `run` can be queued as it is, one reference for all its
    /// frames: the connection is open, a server's, and compresses none of
    /// them (else each goes through [`Sender::send_shared`]).
    #[inline]
    pub fn takes_run(&self, run: &FrameRun) -> bool {
        if self.state != CloseState::Open || self.client {
            return false;
        }
        #[cfg(feature = "deflate")]
        if self.deflate.is_some() {
            return (0..run.messages()).all(|i| {
                let (opcode, len) = run.message(i);
                !self.compresses(opcode, len)
            });
        }
        let _ = run;
        true
    }

    /// Queue the first `frames` frames of `run` but their first `written`
    /// bytes (a direct write took those): one reference, not a copy. The
    /// caller checked [`Sender::takes_run`].
    pub fn queue_run(&mut self, run: &FrameRun, frames: usize, written: usize) {
        let end = run.prefix_len(frames);
        if let Some(bytes) = run.buffer() {
            if written < end {
                self.queue_shared(Arc::clone(bytes), written, end);
            }
        }
    }

    fn queue_frame(&mut self, frame: &SharedFrame, written: usize) {
        let (bytes, at, end) = frame.share();
        self.queue_shared(bytes, at + written, end);
    }

    /// Queue `bytes[start..end]` (already framed) behind everything pending.
    fn queue_shared(&mut self, bytes: Arc<Vec<u8>>, start: usize, end: usize) {
        let own = self.out.len() - self.pos as usize;
        // Room for two runs to start with (a subscriber's usual backlog is
        // one frame); it grows with a burst and keeps what it grew to.
        let front = self.front.get_or_insert_with(|| {
            Box::new(Front {
                segs: VecDeque::with_capacity(2),
                len: 0,
            })
        });
        if own > 0 {
            // Owned bytes queued earlier go first: move them (not copy) to
            // the front queue.
            let out = std::mem::take(&mut self.out);
            let end = out.len();
            front.segs.push_back(Seg {
                bytes: Arc::new(out),
                start: self.pos as usize,
                end,
            });
            front.len += own;
            self.pos = 0;
        }
        front.len += end - start;
        front.segs.push_back(Seg { bytes, start, end });
    }

    /// The first run of bytes waiting for the transport (all of them unless
    /// shared frames are queued; see [`Sender::pending_slices`]).
    pub fn pending(&self) -> &[u8] {
        match self.front.as_deref().and_then(|f| f.segs.front()) {
            Some(seg) => &seg.bytes[seg.start..seg.end],
            None => &self.out[self.pos as usize..],
        }
    }

    /// Whether the pending bytes are in more than one run (shared frames
    /// queued): write them with [`Sender::pending_slices`] and a vectored
    /// write.
    #[inline]
    pub fn is_segmented(&self) -> bool {
        self.front.as_deref().is_some_and(|f| f.len > 0)
    }

    /// Fill `dst` with the pending runs, in order, for a vectored write;
    /// returns how many were filled (fewer than all if `dst` is short).
    pub fn pending_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        if let Some(front) = self.front.as_deref() {
            for seg in &front.segs {
                if n == dst.len() {
                    return n;
                }
                dst[n] = IoSlice::new(&seg.bytes[seg.start..seg.end]);
                n += 1;
            }
        }
        let own = &self.out[self.pos as usize..];
        if !own.is_empty() && n < dst.len() {
            dst[n] = IoSlice::new(own);
            n += 1;
        }
        n
    }

    /// Number of bytes waiting.
    #[inline]
    pub fn pending_len(&self) -> usize {
        let front = match self.front.as_deref() {
            Some(f) => f.len,
            None => 0,
        };
        front + self.out.len() - self.pos as usize
    }

    /// The transport took `n` bytes of the pending ones.
    pub fn consume(&mut self, mut n: usize) {
        debug_assert!(n <= self.pending_len());
        if let Some(front) = self.front.as_deref_mut() {
            while n > 0 {
                let Some(seg) = front.segs.front_mut() else {
                    break;
                };
                let left = seg.end - seg.start;
                if n < left {
                    seg.start += n;
                    front.len -= n;
                    return;
                }
                n -= left;
                front.len -= left;
                front.segs.pop_front();
            }
            if front.segs.is_empty() && front.segs.capacity() > FRONT_KEEP {
                self.front = None;
            }
        }
        if n > 0 {
            self.skip_to(self.pos as usize + n);
        }
    }

    /// Nothing before `out[pos]` is pending any more (the transport took
    /// it, or it is the unused gap `send_compressed` left).
    fn skip_to(&mut self, pos: usize) {
        if pos >= self.out.len() {
            // Release the buffer: idle connections own no output memory.
            self.out = Vec::new();
            self.pos = 0;
            return;
        }
        match u32::try_from(pos) {
            Ok(pos) if pos <= 64 * 1024 || pos as usize * 2 <= self.out.len() => self.pos = pos,
            // Mostly consumed (or past what `pos` can hold): move the rest
            // to the front rather than keep the dead bytes.
            _ => {
                self.out.drain(..pos);
                self.pos = 0;
            }
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
        self.release_deflate();
    }

    /// Fail the connection (§7.1.7): send a close with `code` if we have not.
    pub(crate) fn fail(&mut self, code: u16) {
        if self.state == CloseState::Open {
            self.push_close(Some(code), "");
        }
        self.state = CloseState::Closed;
        self.release_deflate();
    }

    /// Nothing more is compressed or inflated once both directions are
    /// closed: give the contexts' memory back now.
    fn release_deflate(&mut self) {
        #[cfg(feature = "deflate")]
        {
            self.deflate = None;
        }
    }

    fn push_close(&mut self, code: Option<u16>, reason: &str) {
        self.sent_close = NonZeroU16::new(code.unwrap_or(1005));
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
        self.push_frame_rsv(opcode, fin, 0, payload);
    }

    /// The masking key for the next frame: a fresh one for a client, none
    /// for a server.
    #[inline(always)]
    fn next_mask(&mut self) -> Option<[u8; 4]> {
        if self.client {
            Some(self.mask.next_key())
        } else {
            None
        }
    }

    fn push_frame_rsv(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: &[u8]) {
        let key = self.next_mask();
        let head = encode_header(fin, rsv, opcode, key, payload.len() as u64);
        self.out.reserve(head.as_slice().len() + payload.len());
        self.out.extend_from_slice(head.as_slice());
        let start = self.out.len();
        self.out.extend_from_slice(payload);
        if let Some(key) = key {
            apply_mask(&mut self.out[start..], key, 0);
        }
    }
}

/// A frame header for the caller to send before its payload
/// ([`Sender::direct_header`]).
#[derive(Debug, Clone, Copy)]
pub struct DirectHeader {
    /// The encoded header.
    pub head: HeaderBuf,
    /// The key a client must mask the payload with (`None` for a server).
    pub mask: Option<[u8; 4]>,
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
