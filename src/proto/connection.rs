//! One WebSocket connection as a state machine: bytes in, events and bytes out.
//!
//! The receiving half decodes frames, enforces the rules of RFC 6455 §5 and
//! assembles messages:
//!
//! ```text
//!          complete header, payload present, single-frame message
//!   Header ───────────────────────────────────────────────► event borrowing the input
//!     │  ▲
//!     │  └── payload done (FIN: event borrowing the assembly buffer)
//!     ▼  │
//!   Payload { remaining, mask phase }   bytes streamed into the assembly buffer,
//!                                       unmasked and UTF-8 checked as they arrive
//! ```
//!
//! A message compressed with permessage-deflate (RSV1 on its first frame,
//! once [`Connection::enable_deflate`] was called) always takes the
//! assembly path: its payload is unmasked in the input and inflated, piece
//! by piece, into the assembly buffer, which never grows past
//! `max_message_size`; UTF-8 is checked on the inflated bytes.
//!
//! Control frames are handled whole: until one has fully arrived it is left
//! unconsumed, so the caller keeps at most [`Receiver::MAX_UNCONSUMED`] bytes
//! between reads. Every other byte is consumed as soon as it arrives, so a
//! declared length never reserves memory that has not been received.

use super::buf::LazyBuf;
use super::close::{parse_close_payload, CloseFrame};
use super::error::{Error, ErrorKind};
#[cfg(feature = "deflate")]
use super::frame::RSV1;
use super::frame::{decode_header, Header, OpCode};
use super::mask::apply_mask;
use super::sender::Sender;
use super::utf8::Utf8Validator;
use super::Status;
#[cfg(feature = "deflate")]
use crate::ext::deflate::{Compressor, Decompressor, DeflateError};
#[cfg(feature = "deflate")]
use crate::ext::{DeflateConfig, DeflateParams};

/// Which end of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We accepted the connection: incoming frames must be masked.
    Server,
    /// We opened the connection: incoming frames must not be masked.
    Client,
}

/// Limits of the protocol core. Every field says its default and what it
/// protects against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Largest frame payload accepted; larger closes with 1009.
    /// Default 16 MiB (Autobahn 9.* sends single frames of 16 MiB). Bounds the
    /// memory one frame may make us hold.
    pub max_frame_size: u64,
    /// Largest message (all fragments together) accepted; larger closes with
    /// 1009. Default 64 MiB. Bounds the assembly buffer of a connection.
    pub max_message_size: u64,
    /// Most frames one message may span; more closes with 1008.
    /// Default 131072 (Autobahn 9.* sends 4 MiB in 64-byte fragments = 65536).
    /// Bounds the per-frame work an attacker can buy with tiny fragments.
    pub max_fragments: u32,
    /// RSV bits a negotiated extension allows (RSV1 = 0b100). Default 0:
    /// §5.2 "MUST be 0 unless an extension is negotiated".
    pub allowed_rsv: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_fragments: 1 << 17,
            allowed_rsv: 0,
        }
    }
}

/// A complete data message.
///
/// A received message borrows the reactor's buffers and lives for one
/// callback; copy what must outlive it. A message to send is built from
/// any `&str` or `&[u8]`.
///
/// ```
/// use wsreactor::proto::OpCode;
/// use wsreactor::Message;
///
/// fn describe(msg: Message<'_>) -> String {
///     match msg {
///         // Already validated as UTF-8, across fragments too.
///         Message::Text(text) => format!("text: {text}"),
///         Message::Binary(bytes) => format!("{} bytes", bytes.len()),
///     }
/// }
///
/// let msg = Message::Text("hello");
/// assert_eq!(describe(msg), "text: hello");
/// assert_eq!((msg.as_bytes(), msg.opcode()), (&b"hello"[..], OpCode::Text));
/// assert_eq!(describe(Message::Binary(&[1, 2, 3])), "3 bytes");
/// // Kept beyond the callback: an owned copy.
/// let kept: Vec<u8> = msg.as_bytes().to_vec();
/// # assert_eq!(kept, b"hello");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, validated as UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The opcode to send this message back with.
    pub fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        }
    }
}

/// What a read produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete message.
    Message(Message<'a>),
    /// A ping; the pong is already queued.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame (`None`: it carried no code). If we had not sent
    /// a close, the echo is queued; the close handshake is then complete.
    Close(Option<CloseFrame<'a>>),
}

/// The outcome of [`Receiver::read`].
#[derive(Debug)]
pub struct Read<'a> {
    /// Bytes of the input used; the caller keeps the rest for the next read.
    pub consumed: usize,
    /// The event, if one completed; `None` means more input is needed.
    pub event: Option<Event<'a>>,
}

#[derive(Debug, Clone, Copy)]
enum FrameState {
    Header,
    Payload {
        fin: bool,
        mask: Option<[u8; 4]>,
        /// Payload bytes already taken, modulo 4: the mask phase of the next
        /// byte. Only the phase matters, and a byte instead of a `u64` count
        /// keeps this state at 16 bytes.
        phase: u8,
        remaining: u64,
    },
}

/// The receiving half of a connection.
#[derive(Debug)]
pub struct Receiver {
    role: Role,
    config: Config,
    frame: FrameState,
    /// Opcode of the message being assembled, if any.
    message: Option<OpCode>,
    message_len: u64,
    fragments: u32,
    utf8: Utf8Validator,
    /// Assembly buffer: holds memory only while a message is assembled, and
    /// until the next read after the event that borrowed it (an idle
    /// connection holds none, and pays one pointer for it).
    buf: LazyBuf,
    /// The last event borrowed `buf`: release it at the next read.
    release_buf: bool,
    /// Closed or failed: input is discarded.
    done: bool,
    /// permessage-deflate was negotiated. Its decompressor is kept by the
    /// [`Sender`], which every read gets: one box for both directions.
    #[cfg(feature = "deflate")]
    deflate: bool,
    /// The message being assembled is compressed.
    #[cfg(feature = "deflate")]
    compressed: bool,
}

/// What `decode` decided to return, as positions: the borrow of the input
/// or the buffer is only taken by `Receiver::event`, at the end.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ready {
    InPlace {
        op: OpCode,
        start: usize,
        end: usize,
    },
    Assembled(OpCode),
    Control {
        op: OpCode,
        start: usize,
        end: usize,
    },
}

impl Receiver {
    /// Most bytes [`Receiver::read`] ever leaves unconsumed: a whole control
    /// frame (14-byte header + 125-byte payload) not fully arrived yet.
    pub const MAX_UNCONSUMED: usize = 14 + 125;

    fn new(role: Role, config: Config) -> Self {
        Self {
            role,
            config,
            frame: FrameState::Header,
            message: None,
            message_len: 0,
            fragments: 0,
            utf8: Utf8Validator::new(),
            buf: LazyBuf::new(),
            release_buf: false,
            done: false,
            #[cfg(feature = "deflate")]
            deflate: false,
            #[cfg(feature = "deflate")]
            compressed: false,
        }
    }

    /// Accept RSV1 as "compressed" on the first frame of data messages.
    #[cfg(feature = "deflate")]
    fn enable_deflate(&mut self) {
        self.config.allowed_rsv |= RSV1;
        self.deflate = true;
    }

    /// Whether a data frame starting a message starts a compressed one.
    /// Tests `rsv` first: on the hot path it is 0 and nothing else is read.
    #[inline(always)]
    fn starts_compressed(&self, h: &Header) -> bool {
        #[cfg(feature = "deflate")]
        return h.rsv != 0 && h.rsv & RSV1 != 0 && self.deflate;
        #[cfg(not(feature = "deflate"))]
        {
            let _ = h;
            false
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Set the RSV bits a negotiated extension allows.
    pub fn set_allowed_rsv(&mut self, rsv: u8) {
        self.config.allowed_rsv = rsv & 0x7;
    }

    /// Decode `input` until one event completes or the input runs out.
    ///
    /// Complete single-frame messages are unmasked in place and returned as
    /// slices of `input`; other payload is streamed into the connection's
    /// assembly buffer. Call again with `input[consumed..]` (plus whatever
    /// arrives next) until `event` is `None`. Once the connection is closed or
    /// failed, input is discarded.
    ///
    /// # Errors
    /// Any violation of RFC 6455 or of the [`Config`] limits. The close frame
    /// with [`Error::close_code`] is already queued in `tx`, which is now
    /// [`CloseState::Closed`](super::CloseState::Closed).
    pub fn read<'a>(&'a mut self, input: &'a mut [u8], tx: &mut Sender) -> Result<Read<'a>, Error> {
        let (consumed, ready) = self.decode(input, tx)?;
        let this: &'a Self = self;
        Ok(Read {
            consumed,
            #[allow(unsafe_code)]
            // SAFETY: `ready` is from the `decode` just made on `input`.
            event: ready.map(|r| unsafe { this.event(r, input) }),
        })
    }

    /// [`Receiver::read`] with the event as positions in `input` rather than
    /// a borrow of it: the reactor keeps its own access to the input (to
    /// reply in place, `net::inplace`) and borrows the event with
    /// [`Receiver::event`].
    pub(crate) fn decode(
        &mut self,
        input: &mut [u8],
        tx: &mut Sender,
    ) -> Result<(usize, Option<Ready>), Error> {
        self.end_of_input();
        if self.done {
            return Ok((input.len(), None));
        }
        match self.step(input, tx) {
            Ok((consumed, ready)) => {
                // An assembled message is lent out until the next call.
                self.release_buf = matches!(ready, Some(Ready::Assembled(_)));
                Ok((consumed, ready))
            }
            Err(e) => {
                self.done = true;
                self.buf.release();
                tx.fail(e.close_code());
                Err(e)
            }
        }
    }

    /// What [`Receiver::decode`] does with empty input, without decoding:
    /// release the assembly buffer the last event borrowed (so an idle
    /// connection holds no memory). Empty input changes nothing else.
    #[inline]
    pub(crate) fn end_of_input(&mut self) {
        if self.release_buf {
            self.buf.release();
            self.release_buf = false;
        }
    }

    /// Bytes the assembly buffer holds allocated (0 when released).
    #[cfg(test)]
    pub(crate) fn assembly_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The event `ready` (from [`Receiver::decode`] on `input`) denotes.
    ///
    /// # Safety
    /// `ready` must come from this receiver's latest `decode`, and `input`
    /// must be the input that call was given, unchanged since: a text
    /// message's bytes are validated as UTF-8 there and not again here.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn event<'a>(&'a self, ready: Ready, input: &'a [u8]) -> Event<'a> {
        match ready {
            Ready::InPlace { op, start, end } => {
                let bytes = &input[start..end];
                // SAFETY: by this function's contract `decode` made `ready`
                // from these bytes, after validating them if text (`message`).
                Event::Message(unsafe { message(op, bytes) })
            }
            Ready::Assembled(op) => {
                let bytes = self.buf.as_slice();
                // SAFETY: as above: `decode` only returns a text `Ready`
                // when every byte in the assembly buffer passed the
                // validator (a failure releases the buffer), and no other
                // method adds bytes to it.
                Event::Message(unsafe { message(op, bytes) })
            }
            Ready::Control { op, start, end } => {
                let payload = &input[start..end];
                match op {
                    OpCode::Ping => Event::Ping(payload),
                    OpCode::Pong => Event::Pong(payload),
                    // Validated in `control`.
                    _ => Event::Close(parse_close_payload(payload).unwrap_or(None)),
                }
            }
        }
    }

    fn step(&mut self, input: &mut [u8], tx: &mut Sender) -> Result<(usize, Option<Ready>), Error> {
        let mut pos = 0;
        loop {
            match self.frame {
                FrameState::Header => {
                    let (h, hlen) = match decode_header(&input[pos..])? {
                        Status::Complete(x) => x,
                        Status::Partial => return Ok((pos, None)),
                    };
                    let op = self.check_header(&h)?;
                    let start = pos + hlen;
                    let available = (input.len() - start) as u64;
                    if op.is_control() {
                        if available < h.len {
                            return Ok((pos, None)); // wait for the whole frame
                        }
                        let end = start + h.len as usize;
                        if let Some(key) = h.mask {
                            apply_mask(&mut input[start..end], key, 0);
                        }
                        self.control(op, &input[start..end], tx)?;
                        return Ok((end, Some(Ready::Control { op, start, end })));
                    }
                    if self.message.is_none()
                        && h.fin
                        && available >= h.len
                        && !self.starts_compressed(&h)
                    {
                        // The common case: a whole message in the input.
                        let end = start + h.len as usize;
                        let payload = &mut input[start..end];
                        if let Some(key) = h.mask {
                            apply_mask(payload, key, 0);
                        }
                        if op == OpCode::Text && !is_utf8(payload) {
                            return Err(invalid_utf8());
                        }
                        return Ok((end, Some(Ready::InPlace { op, start, end })));
                    }
                    if self.message.is_none() {
                        self.message = Some(op);
                        self.message_len = 0;
                        self.fragments = 0;
                        self.utf8.reset();
                        #[cfg(feature = "deflate")]
                        {
                            self.compressed = self.starts_compressed(&h);
                        }
                    }
                    self.message_len += h.len;
                    self.fragments += 1;
                    self.frame = FrameState::Payload {
                        fin: h.fin,
                        mask: h.mask,
                        phase: 0,
                        remaining: h.len,
                    };
                    pos = start;
                }
                FrameState::Payload {
                    fin,
                    mask,
                    phase,
                    remaining,
                } => {
                    let n = remaining.min((input.len() - pos) as u64) as usize;
                    if n == 0 && remaining > 0 {
                        return Ok((pos, None));
                    }
                    let last = fin && remaining == n as u64;
                    self.assemble(&mut input[pos..pos + n], mask, phase, last, tx)?;
                    pos += n;
                    if remaining > n as u64 {
                        self.frame = FrameState::Payload {
                            fin,
                            mask,
                            phase: ((usize::from(phase) + n) & 3) as u8,
                            remaining: remaining - n as u64,
                        };
                        continue;
                    }
                    self.frame = FrameState::Header;
                    if fin {
                        #[cfg(feature = "deflate")]
                        {
                            self.compressed = false;
                        }
                        let op = self.message.take().unwrap_or(OpCode::Binary);
                        if op == OpCode::Text {
                            self.utf8.finish().map_err(|_| invalid_utf8())?;
                        }
                        return Ok((pos, Some(Ready::Assembled(op))));
                    }
                }
            }
        }
    }

    /// Payload bytes (still masked, the first at mask phase `phase`) of the
    /// message being assembled; `last`: the final piece of its final frame.
    /// They are unmasked and checked in the input, then copied.
    #[inline]
    fn assemble(
        &mut self,
        piece: &mut [u8],
        mask: Option<[u8; 4]>,
        phase: u8,
        last: bool,
        tx: &mut Sender,
    ) -> Result<(), Error> {
        if let Some(key) = mask {
            apply_mask(piece, key, usize::from(phase));
        }
        #[cfg(feature = "deflate")]
        if self.compressed {
            return self.inflate(piece, last, tx);
        }
        let _ = (last, tx);
        if self.message == Some(OpCode::Text) {
            self.utf8.feed(piece).map_err(|_| invalid_utf8())?;
        }
        self.buf.extend_from_slice(piece);
        Ok(())
    }

    /// Inflate a piece of a compressed message into the assembly buffer
    /// (RFC 7692 §7.2.2), capped at `max_message_size`, and check the new
    /// text as UTF-8.
    #[cfg(feature = "deflate")]
    fn inflate(&mut self, compressed: &[u8], last: bool, tx: &mut Sender) -> Result<(), Error> {
        let Some(d) = tx.decompressor() else {
            // Released when the connection failed on our side (§7.1.7: we
            // are done with the peer's data).
            return Err(Error::new(
                ErrorKind::Protocol,
                "compressed message after the connection failed",
            ));
        };
        let max = usize::try_from(self.config.max_message_size).unwrap_or(usize::MAX);
        let buf = self.buf.vec_mut();
        let from = buf.len();
        let mut result = d.feed(compressed, buf, max);
        if last && result.is_ok() {
            result = d.finish(buf, max);
        }
        result.map_err(|e| match e {
            DeflateError::TooBig => Error::new(
                ErrorKind::TooBig,
                "inflated message exceeds max_message_size",
            ),
            DeflateError::Corrupt | DeflateError::Internal => Error::new(
                ErrorKind::InvalidPayload,
                "compressed message is not valid DEFLATE data",
            ),
        })?;
        if self.message == Some(OpCode::Text) {
            self.utf8.feed(&buf[from..]).map_err(|_| invalid_utf8())?;
        }
        Ok(())
    }

    /// Policy checks on a header (RFC 6455 §5.1-§5.5 and the limits).
    fn check_header(&self, h: &Header) -> Result<OpCode, Error> {
        let protocol = |detail| Err(Error::new(ErrorKind::Protocol, detail));
        if h.rsv != 0 {
            self.check_rsv(h)?;
        }
        let Some(op) = OpCode::from_u8(h.opcode) else {
            return protocol("reserved opcode");
        };
        match (self.role, h.mask.is_some()) {
            // §5.1: "The server MUST close the connection upon receiving a
            // frame that is not masked."
            (Role::Server, false) => return protocol("unmasked frame from a client"),
            // §5.1: "A client MUST close a connection if it detects a masked
            // frame."
            (Role::Client, true) => return protocol("masked frame from a server"),
            _ => {}
        }
        if op.is_control() {
            // §5.5: "All control frames MUST have a payload length of 125 bytes
            // or less and MUST NOT be fragmented."
            if h.len > 125 {
                return protocol("control frame payload over 125 bytes");
            }
            if !h.fin {
                return protocol("fragmented control frame");
            }
            return Ok(op);
        }
        match (op, self.message) {
            (OpCode::Continuation, None) => {
                return protocol("continuation frame without a message to continue")
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return protocol("new data frame inside a fragmented message")
            }
            _ => {}
        }
        if h.len > self.config.max_frame_size {
            return Err(Error::new(
                ErrorKind::TooBig,
                "frame exceeds max_frame_size",
            ));
        }
        let so_far = if self.message.is_some() {
            self.message_len
        } else {
            0
        };
        if so_far + h.len > self.config.max_message_size {
            return Err(Error::new(
                ErrorKind::TooBig,
                "message exceeds max_message_size",
            ));
        }
        if self.message.is_some() && self.fragments >= self.config.max_fragments {
            return Err(Error::new(
                ErrorKind::Policy,
                "message exceeds max_fragments",
            ));
        }
        Ok(op)
    }

    /// RSV bits, off the hot path (almost every frame has none).
    #[cold]
    #[inline(never)]
    fn check_rsv(&self, h: &Header) -> Result<(), Error> {
        let protocol = |detail| Err(Error::new(ErrorKind::Protocol, detail));
        if h.rsv & !self.config.allowed_rsv != 0 {
            // §5.2: "MUST be 0 unless an extension is negotiated that defines
            // meanings for non-zero values".
            return protocol("reserved bit set without a negotiated extension");
        }
        // RFC 7692 §6.1: "An endpoint MUST NOT set the "Per-Message
        // Compressed" bit of control frames and non-first fragments of a
        // data message. An endpoint receiving such a frame MUST _Fail the
        // WebSocket Connection_." (Control opcodes have the top bit set.)
        #[cfg(feature = "deflate")]
        if h.rsv & RSV1 != 0
            && self.deflate
            && (h.opcode & 0x8 != 0 || h.opcode == OpCode::Continuation as u8)
        {
            return protocol("RSV1 on a control frame or a continuation frame");
        }
        Ok(())
    }

    /// Duties of a complete control frame (its payload already unmasked).
    fn control(&mut self, op: OpCode, payload: &[u8], tx: &mut Sender) -> Result<(), Error> {
        match op {
            // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a
            // Pong frame in response ... with identical Application data".
            OpCode::Ping => tx.queue_pong(payload),
            // §5.5.3: "A response to an unsolicited Pong frame is not expected."
            OpCode::Pong => {}
            _ => {
                let close = parse_close_payload(payload)?;
                // §5.5.1: echo "the status code it received".
                tx.on_peer_close(close.map(|c| c.code));
                self.done = true;
                self.buf.release();
            }
        }
        Ok(())
    }
}

/// Whether `bytes` is UTF-8. Most text messages are ASCII, which `is_ascii`
/// confirms in a fraction of `from_utf8`'s instructions (about 78 for
/// 20 bytes); `from_utf8` then only sees the rest. Callgrind, server,
/// 100 × 20 B text echo: 890 instructions per echo, down from 942.
#[inline]
fn is_utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

fn invalid_utf8() -> Error {
    Error::new(ErrorKind::InvalidPayload, "text is not UTF-8")
}

/// The message `bytes` of opcode `op` hold, as the application sees it.
///
/// Text is validated exactly once, by `step`: a whole frame in place with
/// `is_utf8`; an assembled (or inflated) message piece by piece with the
/// `Utf8Validator`, over exactly the bytes appended to the assembly buffer,
/// and finished at the last frame. Checking again here cost the server 90
/// of its 890 instructions per echo of 100 × 20 B text (callgrind), and
/// 0.6-1.0% of msg/s in paired echo runs with this code at both ends.
///
/// # Safety
/// A text message's `bytes` must have been validated as UTF-8.
#[allow(unsafe_code)]
unsafe fn message(op: OpCode, bytes: &[u8]) -> Message<'_> {
    match op {
        OpCode::Text => {
            // Every test and fuzz target runs with debug assertions.
            debug_assert!(std::str::from_utf8(bytes).is_ok(), "text not validated");
            // SAFETY: the caller's contract.
            Message::Text(unsafe { std::str::from_utf8_unchecked(bytes) })
        }
        _ => Message::Binary(bytes),
    }
}

/// Both halves of a connection.
#[derive(Debug)]
pub struct Connection {
    rx: Receiver,
    tx: Sender,
}

impl Connection {
    /// A server-side connection (after the handshake).
    pub fn server(config: Config) -> Self {
        Self {
            rx: Receiver::new(Role::Server, config),
            tx: Sender::new(None),
        }
    }

    /// A client-side connection; `mask_seed` seeds the masking keys and should
    /// come from the OS's random source.
    pub fn client(config: Config, mask_seed: u64) -> Self {
        Self {
            rx: Receiver::new(Role::Client, config),
            tx: Sender::new(Some(mask_seed)),
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.rx.role
    }

    /// Use permessage-deflate as agreed in the opening handshake (see
    /// [`crate::ext`]): RSV1 on the first frame of a data message now means
    /// "compressed", and [`Sender::send`] compresses data messages of at
    /// least `config.min_compress_size` bytes. Call it before the first
    /// frame is read or sent.
    ///
    /// ```
    /// use wsreactor::ext::DeflateConfig;
    /// use wsreactor::proto::{Config, Connection};
    ///
    /// let deflate = DeflateConfig { enabled: true, ..DeflateConfig::default() };
    /// let agreed = deflate
    ///     .negotiate([&b"permessage-deflate; client_max_window_bits"[..]])
    ///     .expect("acceptable offer");
    /// assert_eq!(agreed.response.as_str(), "permessage-deflate");
    /// let mut conn = Connection::server(Config::default());
    /// conn.enable_deflate(&agreed.params, &deflate);
    /// ```
    #[cfg(feature = "deflate")]
    pub fn enable_deflate(&mut self, params: &DeflateParams, config: &DeflateConfig) {
        let role = self.role();
        self.rx.enable_deflate();
        let decompressor = Decompressor::new(
            params.decompress_window_bits(role),
            params.decompress_no_context_takeover(role),
        );
        let compressor = params.compress_window_bits(role).map(|bits| {
            Compressor::new(
                bits,
                config.level,
                params.compress_no_context_takeover(role),
            )
        });
        self.tx
            .enable_deflate(compressor, decompressor, config.min_compress_size);
    }

    /// The two halves, so an event borrowed from the receiver can be answered
    /// through the sender.
    pub fn split(&mut self) -> (&mut Receiver, &mut Sender) {
        (&mut self.rx, &mut self.tx)
    }

    /// Bytes queued for the transport.
    pub fn pending_len(&self) -> usize {
        self.tx.pending_len()
    }

    /// The sending half.
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.tx
    }

    /// The receiving half.
    pub fn receiver(&mut self) -> &mut Receiver {
        &mut self.rx
    }

    /// [`Receiver::read`] on this connection.
    ///
    /// # Errors
    /// As [`Receiver::read`].
    pub fn read<'a>(&'a mut self, input: &'a mut [u8]) -> Result<Read<'a>, Error> {
        self.rx.read(input, &mut self.tx)
    }
}

#[cfg(all(test, feature = "deflate"))]
mod deflate_tests {
    use super::*;
    use crate::proto::frame::encode_header;

    /// An unmasked (server) frame with RSV1 carrying `message` compressed.
    fn compressed_frame(message: &[u8], level: u32) -> Vec<u8> {
        let mut z = Vec::new();
        Compressor::new(15, level, false)
            .compress(message, &mut z)
            .unwrap();
        let mut wire = encode_header(true, RSV1, OpCode::Binary, None, z.len() as u64)
            .as_slice()
            .to_vec();
        wire.extend_from_slice(&z);
        wire
    }

    fn client_rx(max_message_size: u64) -> Receiver {
        let config = Config {
            max_message_size,
            ..Config::default()
        };
        let mut rx = Receiver::new(Role::Client, config);
        rx.enable_deflate();
        rx
    }

    fn client_tx(no_context_takeover: bool) -> Sender {
        let mut tx = Sender::new(Some(1));
        tx.enable_deflate(None, Decompressor::new(15, no_context_takeover), 0);
        tx
    }

    /// A ~1 KiB frame inflating to 1 MiB against a 64 KiB limit, read 16
    /// bytes at a time: 1009, and the assembly buffer never held more than
    /// the limit plus one byte.
    #[test]
    fn bomb_never_grows_the_buffer_past_the_limit() {
        let cap = 64 * 1024;
        let wire = compressed_frame(&vec![0u8; 1 << 20], 9);
        assert!(wire.len() < 1200, "{}", wire.len());
        let mut rx = client_rx(cap as u64);
        let mut tx = client_tx(false);
        let mut pending = Vec::new();
        let mut peak = 0;
        let mut failed = None;
        for piece in wire.chunks(16) {
            pending.extend_from_slice(piece);
            let consumed = match rx.read(&mut pending, &mut tx) {
                Ok(r) => {
                    assert!(r.event.is_none());
                    r.consumed
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            pending.drain(..consumed);
            peak = peak.max(rx.buf.capacity());
        }
        let e = failed.expect("refused");
        assert_eq!((e.kind(), e.close_code()), (ErrorKind::TooBig, 1009));
        assert!(peak <= cap + 1, "peak {peak}");
        assert!(peak > cap / 2, "peak {peak}");
        // Everything is released; the 1009 close is queued.
        assert_eq!(rx.buf.capacity(), 0);
        assert!(tx.decompressor().is_none());
        // A masked close frame with a 2-byte payload (the code).
        assert_eq!(tx.pending()[..2], [0x88, 0x82]);
    }

    #[test]
    fn no_context_takeover_releases_the_decompressor() {
        for nct in [false, true] {
            let mut rx = client_rx(1 << 20);
            let mut tx = client_tx(nct);
            for _ in 0..3 {
                let mut wire = compressed_frame(b"hello hello hello hello", 1);
                let r = rx.read(&mut wire, &mut tx).unwrap();
                assert_eq!(
                    r.event,
                    Some(Event::Message(Message::Binary(b"hello hello hello hello")))
                );
                assert_eq!(tx.decompressor().unwrap().is_allocated(), !nct);
            }
        }
    }
}
