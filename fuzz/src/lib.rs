//! Helpers shared by the fuzz targets.
//!
//! - [`OwnedEvent`]: an event copied out of the borrow of the input, so runs
//!   fed in different ways can be compared.
//! - [`Inbox`]: the transport side of [`Receiver::read`]'s contract (keep the
//!   unconsumed tail, append new bytes, read until no event), with the
//!   contract itself asserted.
//! - Frame builders and small [`Config`]s that reach the limit paths.
//! - Oracles written independently of the crate (and deliberately naive):
//!   base64, token lists, close-code table.
//! - [`drive_connection`]: the body of `connection_server` and
//!   `connection_client`; [`Cursor`], the reader of their byte code and of
//!   the deflate targets'.

use wsreactor::proto::{
    self, apply_mask_reference, encode_header, CloseState, Config, Connection, DirectHeader, Event,
    Message, OpCode, Receiver, Role,
};

/// An [`Event`] with its payload copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedEvent {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// A close frame: code and reason, or `None` for an empty payload.
    Close(Option<(u16, String)>),
}

impl OwnedEvent {
    /// Copy `e` out of its borrow.
    pub fn from_event(e: &Event<'_>) -> Self {
        match *e {
            Event::Message(Message::Text(s)) => Self::Text(s.to_owned()),
            Event::Message(Message::Binary(b)) => Self::Binary(b.to_vec()),
            Event::Ping(p) => Self::Ping(p.to_vec()),
            Event::Pong(p) => Self::Pong(p.to_vec()),
            Event::Close(c) => Self::Close(c.map(|c| (c.code, c.reason.to_owned()))),
        }
    }
}

/// The result of one [`Inbox::read_one`].
#[derive(Debug)]
pub enum Step {
    /// An event completed.
    Event(OwnedEvent),
    /// Everything buffered was used; more bytes are needed.
    NeedMore,
    /// The connection failed.
    Failed(proto::Error),
}

/// What a transport keeps between reads: the bytes `read` left unconsumed.
#[derive(Debug, Default)]
pub struct Inbox {
    pending: Vec<u8>,
}

impl Inbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes arrived from the wire. They are copied: the core unmasks in
    /// place, so the caller's buffer must stay untouched.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Bytes kept from earlier reads.
    pub fn unconsumed(&self) -> usize {
        self.pending.len()
    }

    /// One call of [`Connection::read`] on the buffered bytes, checking its
    /// contract: `consumed` never exceeds the input, an event always
    /// consumes something (so the caller's loop terminates), and when no
    /// event is returned at most [`Receiver::MAX_UNCONSUMED`] bytes stay.
    pub fn read_one(&mut self, conn: &mut Connection) -> Step {
        let len = self.pending.len();
        let (consumed, event) = match conn.read(&mut self.pending) {
            Ok(read) => (
                read.consumed,
                read.event.as_ref().map(OwnedEvent::from_event),
            ),
            Err(e) => {
                self.pending.clear();
                return Step::Failed(e);
            }
        };
        assert!(consumed <= len, "consumed {consumed} of {len} bytes");
        self.pending.drain(..consumed);
        match event {
            Some(e) => {
                assert!(consumed > 0, "event {e:?} consumed nothing");
                Step::Event(e)
            }
            None => {
                assert!(
                    self.pending.len() <= Receiver::MAX_UNCONSUMED,
                    "read left {} bytes unconsumed without an event",
                    self.pending.len()
                );
                Step::NeedMore
            }
        }
    }

    /// Push `bytes` and read until no event completes; events are appended
    /// to `events`. Returns the close code of a failure.
    pub fn feed(
        &mut self,
        conn: &mut Connection,
        bytes: &[u8],
        events: &mut Vec<OwnedEvent>,
    ) -> Option<u16> {
        self.push(bytes);
        loop {
            match self.read_one(conn) {
                Step::Event(e) => events.push(e),
                Step::NeedMore => return None,
                Step::Failed(e) => return Some(e.close_code()),
            }
        }
    }
}

/// A [`Config`] with limits small enough for the fuzzer to cross them, from
/// four bytes; `0xff` in the first selects the defaults.
pub fn small_config(b: [u8; 4]) -> Config {
    if b[0] == 0xff {
        return Config::default();
    }
    Config {
        max_frame_size: u64::from(b[0]) * 2,
        max_message_size: u64::from(b[1]) * 4,
        max_fragments: u32::from(b[2] % 10),
        allowed_rsv: b[3] & 7,
    }
}

/// Length of a frame header for a payload of `len` bytes, computed from the
/// table in RFC 6455 §5.2 rather than by the crate.
pub fn header_len(len: usize, masked: bool) -> usize {
    let ext = match len {
        0..=125 => 0,
        126..=0xffff => 2,
        _ => 8,
    };
    2 + ext + if masked { 4 } else { 0 }
}

/// A whole frame with a raw (possibly reserved) opcode, masked with the
/// reference masking function when `mask` is given.
pub fn frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let head = encode_header(fin, rsv, OpCode::Continuation, mask, payload.len() as u64);
    let mut out = head.as_slice().to_vec();
    out[0] = (out[0] & 0xf0) | (opcode & 0x0f);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask_reference(&mut out[start..], key, 0);
    }
    out
}

/// Close codes a peer may put on the wire (RFC 6455 §7.4.1, §7.4.2 and the
/// IANA registry for 1012-1014), written out here rather than taken from
/// the crate.
pub fn close_code_is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Close codes worth trying: every boundary of the valid ranges.
pub const INTERESTING_CODES: [u16; 24] = [
    0, 999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
    1014, 1015, 1016, 2999, 3000, 4999, 5000, 65535,
];

/// Strict RFC 4648 §4 base64 decoding (padding required, no whitespace,
/// unused bits zero). `None` if `s` is not canonical base64.
pub fn base64_decode_strict(s: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let quads = s.len() / 4;
    for (i, q) in s.chunks_exact(4).enumerate() {
        let last = i + 1 == quads;
        let pad = match (q[2], q[3]) {
            (b'=', b'=') if last => 2,
            (_, b'=') if last => 1,
            _ => 0,
        };
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Canonical: the bits the padding hides must be zero.
        if bytes[3 - pad..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// SP and HTAB trimmed from both ends (RFC 9110 §5.6.3 OWS).
pub fn trim_ows(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

/// Does the comma-separated list `value` hold `token` (ASCII
/// case-insensitive, OWS around elements ignored)?
pub fn list_has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim_ows(t).eq_ignore_ascii_case(token.as_bytes()))
}

// ---------------------------------------------------------------------------
// decoder_chunked: a reference receiver
// ---------------------------------------------------------------------------

/// What a receiver made of a stream: events, the close code of a failure,
/// and the bytes it queued (pongs, close echo, failure close).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Events in order.
    pub events: Vec<OwnedEvent>,
    /// The close code the connection failed with.
    pub failure: Option<u16>,
    /// Output queued by the receiving duties.
    pub output: Vec<u8>,
}

/// A server-side receiver written straight from RFC 6455 §5 and the
/// [`Config`] docs, byte-at-a-time simple, with no state machine: the whole
/// stream is in hand. Where the RFC leaves a choice it makes the crate's
/// documented one: checks in the order of §5.2-§5.5 then the limits (frame
/// size, message size, fragment count, counting declared lengths), UTF-8
/// failing at the first byte that cannot start valid text even before the
/// frame is complete, and control frames acted on only once whole.
pub fn reference_receive(config: &Config, stream: &[u8]) -> Decoded {
    let mut out = Decoded {
        events: Vec::new(),
        failure: None,
        output: Vec::new(),
    };
    let fail = |out: &mut Decoded, code: u16| {
        out.output.extend_from_slice(&[0x88, 0x02]);
        out.output.extend_from_slice(&code.to_be_bytes());
        out.failure = Some(code);
    };
    // The message being assembled: text?, bytes, declared length, frames.
    let mut message: Option<(bool, Vec<u8>, u64, u32)> = None;
    let mut at = 0;
    loop {
        let b = &stream[at..];
        if b.len() < 2 {
            return out;
        }
        let (fin, rsv, opcode) = (b[0] & 0x80 != 0, (b[0] >> 4) & 7, b[0] & 0x0f);
        let masked = b[1] & 0x80 != 0;
        let (ext, len) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (2, u64::from(u16::from_be_bytes([b[2], b[3]]))),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                if n[0] & 0x80 != 0 {
                    fail(&mut out, 1002);
                    return out;
                }
                (8, u64::from_be_bytes(n))
            }
            126 | 127 => return out,
            n => (0, u64::from(n)),
        };
        let head = 2 + ext + if masked { 4 } else { 0 };
        if b.len() < head {
            return out;
        }
        let key = if masked {
            [b[head - 4], b[head - 3], b[head - 2], b[head - 1]]
        } else {
            [0; 4]
        };
        let control = opcode & 0x8 != 0;
        let refused = if rsv & !config.allowed_rsv != 0
            || !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10)
            || !masked
        {
            Some(1002)
        } else if control {
            (len > 125 || !fin).then_some(1002)
        } else if (opcode == 0) != message.is_some() {
            Some(1002)
        } else if len > config.max_frame_size
            || message.as_ref().map_or(0, |m| m.2) + len > config.max_message_size
        {
            Some(1009)
        } else if message
            .as_ref()
            .is_some_and(|m| m.3 >= config.max_fragments)
        {
            Some(1008)
        } else {
            None
        };
        if let Some(code) = refused {
            fail(&mut out, code);
            return out;
        }
        let body = &b[head..];
        let have = body.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        let payload: Vec<u8> = body[..have]
            .iter()
            .enumerate()
            .map(|(i, x)| x ^ key[i % 4])
            .collect();
        if control {
            if (have as u64) < len {
                return out;
            }
            match opcode {
                9 => {
                    out.output.extend_from_slice(&[0x8a, have as u8]);
                    out.output.extend_from_slice(&payload);
                    out.events.push(OwnedEvent::Ping(payload));
                }
                10 => out.events.push(OwnedEvent::Pong(payload)),
                _ => {
                    let close = match payload[..] {
                        [] => None,
                        [_] => {
                            fail(&mut out, 1002);
                            return out;
                        }
                        [hi, lo, ref reason @ ..] => {
                            let code = u16::from_be_bytes([hi, lo]);
                            if !close_code_is_valid(code) {
                                fail(&mut out, 1002);
                                return out;
                            }
                            let Ok(reason) = std::str::from_utf8(reason) else {
                                fail(&mut out, 1007);
                                return out;
                            };
                            Some((code, reason.to_owned()))
                        }
                    };
                    match close {
                        Some((code, _)) => {
                            out.output.extend_from_slice(&[0x88, 0x02]);
                            out.output.extend_from_slice(&code.to_be_bytes());
                        }
                        None => out.output.extend_from_slice(&[0x88, 0x00]),
                    }
                    out.events.push(OwnedEvent::Close(close));
                    return out;
                }
            }
            at += head + have;
            continue;
        }
        let m = message.get_or_insert((opcode == 1, Vec::new(), 0, 0));
        m.1.extend_from_slice(&payload);
        m.2 += len;
        m.3 += 1;
        if m.0 && !is_utf8_prefix(&m.1) {
            fail(&mut out, 1007);
            return out;
        }
        if (have as u64) < len {
            return out;
        }
        at += head + have;
        if fin {
            let (text, bytes, _, _) = message.take().unwrap_or_default();
            if text {
                let Ok(s) = String::from_utf8(bytes) else {
                    fail(&mut out, 1007);
                    return out;
                };
                out.events.push(OwnedEvent::Text(s));
            } else {
                out.events.push(OwnedEvent::Binary(bytes));
            }
        }
    }
}

/// Can `b` be continued into valid UTF-8?
fn is_utf8_prefix(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

// ---------------------------------------------------------------------------
// connection_server / connection_client
// ---------------------------------------------------------------------------

/// Reads the byte-code inputs of the connection and deflate targets, so
/// seeds can be written by hand (see the README for the layouts).
pub struct Cursor<'a>(pub &'a [u8]);

impl<'a> Cursor<'a> {
    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (b, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        b
    }

    /// A byte length, then that many bytes.
    pub fn short(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        Some(self.bytes(usize::from(n)))
    }

    /// A two-byte length, then that many bytes.
    pub fn long(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        Some(self.bytes(usize::from(n)))
    }

    /// [`Cursor::short`] made UTF-8 lossily.
    pub fn text(&mut self) -> Option<String> {
        Some(String::from_utf8_lossy(self.short()?).into_owned())
    }
}

/// A close code: below 0x100 an index into [`INTERESTING_CODES`], else raw.
fn pick_code(code: u16) -> u16 {
    match usize::from(code) {
        i @ 0..=0xff => INTERESTING_CODES[i % INTERESTING_CODES.len()],
        _ => code,
    }
}

/// What happens next to the connection.
#[derive(Debug)]
enum Action<'a> {
    /// Bytes from the wire, exactly as given.
    Raw(&'a [u8]),
    /// One frame from the peer: FIN, RSV bits, raw opcode, the mask the
    /// role calls for (or the wrong one), payload.
    Frame {
        fin: bool,
        rsv: u8,
        opcode: u8,
        wrong_mask: bool,
        key: [u8; 4],
        payload: &'a [u8],
    },
    /// The application sends a text message.
    Text(String),
    /// The application sends a binary message.
    Binary(&'a [u8]),
    /// The application sends one fragment (the first is Text or Binary, the
    /// rest Continuation).
    Fragment {
        text: bool,
        fin: bool,
        payload: String,
    },
    /// The application sends a message through the zero-copy path
    /// (`direct_header` + `queue_raw`), as the reactor does.
    Direct(&'a [u8]),
    /// The application pings.
    Ping(&'a [u8]),
    /// The application starts the close handshake.
    Close { code: u16, reason: String },
    /// The transport takes some of the pending output.
    Consume(u16),
}

impl<'a> Action<'a> {
    fn next(c: &mut Cursor<'a>) -> Option<Self> {
        Some(match c.u8()? % 9 {
            0 => Action::Raw(c.long()?),
            1 => {
                let flags = c.u8()?;
                let opcode = c.u8()? & 0x0f;
                let key = [c.u8()?, c.u8()?, c.u8()?, c.u8()?];
                Action::Frame {
                    fin: flags & 1 != 0,
                    wrong_mask: flags & 2 != 0,
                    rsv: (flags >> 2) & 7,
                    opcode,
                    key,
                    payload: c.long()?,
                }
            }
            2 => Action::Text(c.text()?),
            3 => Action::Binary(c.short()?),
            4 => {
                let flags = c.u8()?;
                Action::Fragment {
                    text: flags & 1 != 0,
                    fin: flags & 2 != 0,
                    payload: c.text()?,
                }
            }
            5 => Action::Direct(c.short()?),
            6 => Action::Ping(c.short()?),
            7 => Action::Close {
                code: pick_code(c.u16()?),
                reason: c.text()?,
            },
            _ => Action::Consume(c.u16()?),
        })
    }
}

/// What the peer must see, and the most bytes that may be queued.
struct Model {
    role: Role,
    /// Events the peer must decode from our output, in order.
    expected: Vec<OwnedEvent>,
    /// Bytes of output justified by what was accepted so far.
    justified: usize,
    /// Bytes the transport has taken.
    taken: usize,
    /// An outgoing fragmented message: text?, bytes so far.
    outgoing: Option<(bool, Vec<u8>)>,
    state: CloseState,
}

impl Model {
    fn queued(&mut self, payload_len: usize) {
        self.justified += header_len(payload_len, self.role == Role::Client) + payload_len;
    }

    fn expect(&mut self, e: OwnedEvent, payload_len: usize) {
        self.queued(payload_len);
        self.expected.push(e);
    }

    /// The checks that hold after every step.
    fn check(&mut self, conn: &mut Connection) {
        let tx = conn.sender();
        let state = tx.state();
        assert!(
            rank(state) >= rank(self.state),
            "close state went back from {:?} to {state:?}",
            self.state
        );
        self.state = state;
        assert!(
            self.taken + tx.pending_len() <= self.justified,
            "{} bytes queued in all, only {} justified",
            self.taken + tx.pending_len(),
            self.justified
        );
    }
}

fn rank(s: CloseState) -> u8 {
    match s {
        CloseState::Open => 0,
        CloseState::CloseSent => 1,
        CloseState::Closed => 2,
    }
}

/// The peer: a connection of the other role with default limits that
/// decodes everything the transport takes from us. Our output must always
/// be valid WebSocket for it.
struct Peer {
    conn: Connection,
    inbox: Inbox,
    events: Vec<OwnedEvent>,
}

impl Peer {
    fn receive(&mut self, bytes: &[u8]) {
        if let Some(code) = self.inbox.feed(&mut self.conn, bytes, &mut self.events) {
            panic!("our output failed the peer with {code}: {:?}", self.events);
        }
    }
}

/// The body of `connection_server` and `connection_client`: a connection of
/// `role` fed arbitrary bytes with application actions interleaved.
///
/// Checks: no panic; `read`'s contract ([`Inbox::read_one`]); the close state
/// never goes back; sends succeed exactly when the close state and the
/// arguments allow; queued output never exceeds what the accepted actions
/// and the read duties (pong, close echo, failure close) justify; events
/// respect the limits; and everything queued decodes, for a peer of the
/// other role, to exactly the expected messages, pings, pongs and close.
pub fn drive_connection(role: Role, data: &[u8]) {
    let [c0, c1, c2, c3, s0, s1, s2, s3, s4, s5, s6, s7, rest @ ..] = data else {
        return;
    };
    let config = small_config([*c0, *c1, *c2, *c3]);
    let seed = u64::from_le_bytes([*s0, *s1, *s2, *s3, *s4, *s5, *s6, *s7]);
    let mut input = Cursor(rest);
    let (mut conn, peer) = match role {
        Role::Server => (
            Connection::server(config),
            Connection::client(Config::default(), 1),
        ),
        Role::Client => (
            Connection::client(config, seed),
            Connection::server(Config::default()),
        ),
    };
    let mut peer = Peer {
        conn: peer,
        inbox: Inbox::new(),
        events: Vec::new(),
    };
    let mut inbox = Inbox::new();
    let mut model = Model {
        role,
        expected: Vec::new(),
        justified: 0,
        taken: 0,
        outgoing: None,
        state: CloseState::Open,
    };
    // The receiving half finished (peer's close, or failure).
    let mut finished = false;

    while let Some(action) = Action::next(&mut input) {
        match action {
            Action::Raw(bytes) => {
                receive(&mut conn, &mut inbox, &mut model, &mut finished, bytes);
            }
            Action::Frame {
                fin,
                rsv,
                opcode,
                wrong_mask,
                key,
                payload,
            } => {
                let masked = (role == Role::Server) != wrong_mask;
                let bytes = frame(fin, rsv, opcode, masked.then_some(key), payload);
                receive(&mut conn, &mut inbox, &mut model, &mut finished, &bytes);
            }
            Action::Text(s) => send_message(&mut conn, &mut model, true, s.as_bytes(), false),
            Action::Binary(b) => send_message(&mut conn, &mut model, false, b, false),
            Action::Direct(b) => send_message(&mut conn, &mut model, false, b, true),
            Action::Fragment { text, fin, payload } => {
                let open = model.state == CloseState::Open;
                let (opcode, text) = match &model.outgoing {
                    Some((t, _)) => (OpCode::Continuation, *t),
                    None if text => (OpCode::Text, true),
                    None => (OpCode::Binary, false),
                };
                let r = conn.sender().send_frame(opcode, fin, payload.as_bytes());
                assert_eq!(r.is_ok(), open, "send_frame in {:?}: {r:?}", model.state);
                if r.is_ok() {
                    model.queued(payload.len());
                    let (_, so_far) = model.outgoing.get_or_insert((text, Vec::new()));
                    so_far.extend_from_slice(payload.as_bytes());
                    if fin {
                        let (_, all) = model.outgoing.take().unwrap_or_default();
                        model.expected.push(message_event(text, all));
                    }
                }
            }
            Action::Ping(p) => {
                let ok = model.state == CloseState::Open && p.len() <= 125;
                let r = conn.sender().ping(p);
                assert_eq!(
                    r.is_ok(),
                    ok,
                    "ping of {} in {:?}: {r:?}",
                    p.len(),
                    model.state
                );
                if ok {
                    model.expect(OwnedEvent::Ping(p.to_vec()), p.len());
                }
            }
            Action::Close { code, reason } => {
                let ok = model.state == CloseState::Open
                    && close_code_is_valid(code)
                    && reason.len() <= 123;
                let r = conn.sender().close(code, &reason);
                assert_eq!(
                    r.is_ok(),
                    ok,
                    "close({code}, {} bytes): {r:?}",
                    reason.len()
                );
                if ok {
                    model.expect(
                        OwnedEvent::Close(Some((code, reason.clone()))),
                        2 + reason.len(),
                    );
                    assert_eq!(conn.sender().state(), CloseState::CloseSent);
                }
            }
            Action::Consume(n) => {
                let tx = conn.sender();
                let n = usize::from(n) % (tx.pending_len() + 1);
                let bytes = tx.pending()[..n].to_vec();
                tx.consume(n);
                model.taken += n;
                peer.receive(&bytes);
            }
        }
        model.check(&mut conn);
    }

    // Flush: the peer must see exactly what was sent.
    let tx = conn.sender();
    let rest = tx.pending().to_vec();
    tx.consume(rest.len());
    assert_eq!(tx.pending_len(), 0);
    model.taken += rest.len();
    peer.receive(&rest);
    assert_eq!(
        peer.events, model.expected,
        "the peer decoded something else than what was sent"
    );
    assert_eq!(peer.inbox.unconsumed(), 0, "a frame was left half-sent");
}

fn message_event(text: bool, bytes: Vec<u8>) -> OwnedEvent {
    if text {
        OwnedEvent::Text(String::from_utf8(bytes).expect("text fragments are UTF-8"))
    } else {
        OwnedEvent::Binary(bytes)
    }
}

/// A whole message from the application; while a fragmented message is
/// open it is sent as its last fragment instead (anything else would be the
/// application breaking §5.4, not the core).
fn send_message(
    conn: &mut Connection,
    model: &mut Model,
    text: bool,
    payload: &[u8],
    direct: bool,
) {
    let open = model.state == CloseState::Open;
    if let Some((t, _)) = model.outgoing {
        let payload = if !t || std::str::from_utf8(payload).is_ok() {
            payload
        } else {
            &[]
        };
        let r = conn
            .sender()
            .send_frame(OpCode::Continuation, true, payload);
        assert_eq!(r.is_ok(), open, "send_frame in {:?}: {r:?}", model.state);
        if r.is_ok() {
            model.queued(payload.len());
            let (t, mut all) = model.outgoing.take().unwrap_or_default();
            all.extend_from_slice(payload);
            model.expected.push(message_event(t, all));
        }
        return;
    }
    let opcode = if text { OpCode::Text } else { OpCode::Binary };
    let tx = conn.sender();
    let ok = if direct {
        match tx.direct_header(opcode, payload.len()) {
            Ok(Some(DirectHeader { head, mask })) => {
                let client = model.role == Role::Client;
                assert_eq!(mask.is_some(), client, "masking key for a {:?}", model.role);
                assert_eq!(head.as_slice().len(), header_len(payload.len(), client));
                // What the kernel did not take is queued, header and
                // payload; a client masks a copy of the payload first.
                let mut body = payload.to_vec();
                if let Some(key) = mask {
                    apply_mask_reference(&mut body, key, 0);
                }
                tx.queue_raw(head.as_slice());
                tx.queue_raw(&body);
                true
            }
            // Only when permessage-deflate would compress the message.
            Ok(None) => tx.send(opcode, payload).is_ok(),
            Err(_) => false,
        }
    } else {
        tx.send(opcode, payload).is_ok()
    };
    assert_eq!(ok, open, "send in {:?}", model.state);
    if ok {
        model.expect(message_event(text, payload.to_vec()), payload.len());
    }
}

/// Bytes from the wire: read until no event, keeping the model of the read
/// duties (pong, close echo, failure close) in step.
fn receive(
    conn: &mut Connection,
    inbox: &mut Inbox,
    model: &mut Model,
    finished: &mut bool,
    bytes: &[u8],
) {
    inbox.push(bytes);
    loop {
        let before = conn.sender().state();
        let step = inbox.read_one(conn);
        let after = conn.sender().state();
        if *finished {
            // Closed or failed: input is discarded.
            assert!(matches!(step, Step::NeedMore), "after the end: {step:?}");
            assert_eq!(inbox.unconsumed(), 0, "input after the end was kept");
            return;
        }
        match step {
            Step::NeedMore => return,
            Step::Failed(e) => {
                assert!(
                    matches!(e.close_code(), 1002 | 1007 | 1008 | 1009),
                    "failure with close code {}",
                    e.close_code()
                );
                assert_eq!(after, CloseState::Closed, "failed but {after:?}");
                if before == CloseState::Open {
                    model.expect(OwnedEvent::Close(Some((e.close_code(), String::new()))), 2);
                }
                *finished = true;
                return;
            }
            Step::Event(e) => {
                match &e {
                    OwnedEvent::Text(s) => assert_message_len(conn, s.len()),
                    OwnedEvent::Binary(b) => assert_message_len(conn, b.len()),
                    OwnedEvent::Ping(p) => {
                        assert!(p.len() <= 125);
                        assert_eq!(after, before, "a ping changed the close state");
                        if before == CloseState::Open {
                            model.expect(OwnedEvent::Pong(p.clone()), p.len());
                        }
                    }
                    OwnedEvent::Pong(p) => assert!(p.len() <= 125),
                    OwnedEvent::Close(c) => {
                        if let Some((code, reason)) = c {
                            assert!(close_code_is_valid(*code), "close event with {code}");
                            assert!(reason.len() <= 123);
                        }
                        assert_eq!(after, CloseState::Closed, "peer closed but {after:?}");
                        if before == CloseState::Open {
                            let echo = c.as_ref().map(|(code, _)| (*code, String::new()));
                            let len = if echo.is_some() { 2 } else { 0 };
                            model.expect(OwnedEvent::Close(echo), len);
                        }
                        *finished = true;
                    }
                }
                if !matches!(e, OwnedEvent::Close(_)) {
                    assert_eq!(after, before, "{e:?} changed the close state");
                }
            }
        }
    }
}

fn assert_message_len(conn: &mut Connection, len: usize) {
    let max = conn.receiver().config().max_message_size;
    assert!(len as u64 <= max, "message of {len} bytes, limit {max}");
}

pub mod gateway;
