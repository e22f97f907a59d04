//! Helpers shared by the integration tests.
//!
//! - Frames are written and read *by hand* here (not with the crate's
//!   `encode_header` / `decode_header`), so no test checks the crate's
//!   framing against itself.
//! - [`Owned`] and [`Feeder`] drive a `proto::Connection` the way a transport
//!   must: unconsumed bytes are kept and prepended to the next input, and the
//!   contract's bound on them is asserted.
//! - [`CountingAlloc`] counts allocations per thread; a test binary that wants
//!   it declares it as its `#[global_allocator]`.
//! - [`WsClient`] and [`start`] are a tiny blocking client and a server
//!   harness for the loopback tests.
//!
//! Each test binary uses a different subset, hence the `dead_code` allow.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use wsreactor::proto::{Connection, Error, Event, Message, Receiver};
use wsreactor::{Handler, Server, ServerConfig, Stopper};

/// RFC 6455 §1.3: the sample key and its accept value.
pub const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// `Sec-WebSocket-Accept` for [`RFC_KEY`].
pub const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// The masking key of the RFC 6455 §5.7 examples.
pub const RFC_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

// ---------------------------------------------------------------------------
// Frames by hand
// ---------------------------------------------------------------------------

/// A frame header declaring `len` payload bytes, with the minimal length
/// encoding (RFC 6455 §5.2), and the masking key if any.
pub fn header(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, len: u64) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0xf)];
    let m = if mask.is_some() { 0x80 } else { 0 };
    if len <= 125 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(k) = mask {
        out.extend_from_slice(&k);
    }
    out
}

/// A whole frame; the payload is masked with `mask` if given.
pub fn frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = header(fin, rsv, opcode, mask, payload.len() as u64);
    match mask {
        Some(k) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4])),
        None => out.extend_from_slice(payload),
    }
    out
}

/// A final frame as a client sends it (masked with [`RFC_MASK`]).
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, opcode, Some(RFC_MASK), payload)
}

/// A final frame as a server sends it (unmasked).
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, opcode, None, payload)
}

/// A close frame payload: the code in network order, then the reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A frame decoded by hand; `payload` is already unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    /// Bytes before the payload (2 to 14), to check the length encoding.
    pub header_len: usize,
    pub payload: Vec<u8>,
}

/// Decode one complete frame at the start of `buf`: the frame and its length
/// on the wire, or `None` while incomplete.
pub fn parse_frame(buf: &[u8]) -> Option<(WireFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let mask = if buf[1] & 0x80 != 0 {
        let k: [u8; 4] = buf.get(at..at + 4)?.try_into().unwrap();
        at += 4;
        Some(k)
    } else {
        None
    };
    let raw = buf.get(at..at + len)?;
    let payload = match mask {
        Some(k) => raw.iter().enumerate().map(|(i, b)| b ^ k[i % 4]).collect(),
        None => raw.to_vec(),
    };
    let f = WireFrame {
        fin: buf[0] & 0x80 != 0,
        rsv: (buf[0] >> 4) & 7,
        opcode: buf[0] & 0xf,
        mask,
        header_len: at,
        payload,
    };
    Some((f, at + len))
}

/// Decode a buffer that holds whole frames only.
///
/// # Panics
/// If the buffer ends inside a frame.
pub fn parse_frames(mut buf: &[u8]) -> Vec<WireFrame> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (f, n) = parse_frame(buf).expect("buffer ends inside a frame");
        out.push(f);
        buf = &buf[n..];
    }
    out
}

/// Valid UTF-8 of exactly `len` bytes, with code points of every width (so
/// fragment and read boundaries fall inside them).
pub fn utf8_text(len: usize) -> String {
    const CYCLE: [char; 5] = ['a', 'é', '€', '😀', 'z'];
    let mut s = String::with_capacity(len);
    let mut i = 0;
    while s.len() < len {
        let c = CYCLE[i % CYCLE.len()];
        i += 1;
        if s.len() + c.len_utf8() <= len {
            s.push(c);
        } else {
            s.push('.');
        }
    }
    s
}

/// Deterministic binary bytes (every value occurs).
pub fn binary(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

// ---------------------------------------------------------------------------
// Driving a proto::Connection
// ---------------------------------------------------------------------------

/// An event copied out of the input it borrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

impl Owned {
    pub fn of(e: &Event<'_>) -> Self {
        match *e {
            Event::Message(Message::Text(t)) => Owned::Text(t.to_owned()),
            Event::Message(Message::Binary(b)) => Owned::Binary(b.to_vec()),
            Event::Ping(p) => Owned::Ping(p.to_vec()),
            Event::Pong(p) => Owned::Pong(p.to_vec()),
            Event::Close(c) => Owned::Close(c.map(|c| (c.code, c.reason.to_owned()))),
        }
    }

    /// A short description for assertion messages (payloads can be 1 MiB).
    pub fn brief(&self) -> String {
        match self {
            Owned::Text(t) => format!("Text({} bytes)", t.len()),
            Owned::Binary(b) => format!("Binary({} bytes)", b.len()),
            other => format!("{other:?}"),
        }
    }
}

/// The transport's side of [`Receiver::read`]: keeps the bytes a read left
/// unconsumed and prepends them to the next input.
#[derive(Debug, Default)]
pub struct Feeder {
    pending: Vec<u8>,
}

impl Feeder {
    /// Feed `bytes` and read every event they complete into `events`.
    ///
    /// # Panics
    /// If a read claims more than it was given, or leaves more than
    /// [`Receiver::MAX_UNCONSUMED`] bytes unconsumed.
    pub fn feed(
        &mut self,
        conn: &mut Connection,
        bytes: &[u8],
        events: &mut Vec<Owned>,
    ) -> Result<(), Error> {
        self.pending.extend_from_slice(bytes);
        let mut off = 0;
        let result = loop {
            let len = self.pending.len() - off;
            match conn.read(&mut self.pending[off..]) {
                Ok(r) => {
                    assert!(r.consumed <= len, "consumed {} of {len}", r.consumed);
                    off += r.consumed;
                    match r.event {
                        Some(e) => events.push(Owned::of(&e)),
                        None => break Ok(()),
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.pending.drain(..off);
        if result.is_ok() {
            assert!(
                self.pending.len() <= Receiver::MAX_UNCONSUMED,
                "{} bytes left unconsumed",
                self.pending.len()
            );
        }
        result
    }

    /// Bytes kept for the next read.
    pub fn unconsumed(&self) -> usize {
        self.pending.len()
    }
}

/// Take everything a connection's sender has queued.
pub fn drain_output(conn: &mut Connection) -> Vec<u8> {
    let tx = conn.sender();
    let out = tx.pending().to_vec();
    tx.consume(out.len());
    out
}

// ---------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------

thread_local! {
    // Const-initialised and without destructors, so touching them from the
    // allocator never allocates or registers anything.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// A pass-through allocator that counts, per thread, the allocations (and
/// reallocations) made and the largest size requested.
#[derive(Debug)]
pub struct CountingAlloc;

fn note(size: usize) {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size);
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters are plain thread-local cells.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations (and reallocations) made by this thread so far.
pub fn thread_allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// The largest allocation this thread requested since the last
/// [`reset_largest_allocation`].
pub fn largest_allocation() -> usize {
    LARGEST.with(Cell::get)
}

pub fn reset_largest_allocation() {
    LARGEST.with(|l| l.set(0));
}

// ---------------------------------------------------------------------------
// Loopback: server harness and a blocking client
// ---------------------------------------------------------------------------

/// Read and write timeout of the test clients: only reached when a test is
/// about to fail.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A server running its reactor in a thread.
#[derive(Debug)]
pub struct Running<H> {
    pub addr: SocketAddr,
    stopper: Stopper,
    thread: Option<JoinHandle<io::Result<H>>>,
}

/// Bind `127.0.0.1:0` and run the reactor in a thread.
pub fn start<H: Handler + Send + 'static>(config: ServerConfig, handler: H) -> Running<H> {
    let server = Server::bind("127.0.0.1:0", config, handler).expect("bind 127.0.0.1:0");
    let addr = server.local_addr();
    let stopper = server.stopper();
    let thread = std::thread::Builder::new()
        .name("reactor".into())
        .spawn(move || server.run())
        .expect("spawn the reactor");
    Running {
        addr,
        stopper,
        thread: Some(thread),
    }
}

impl<H> Running<H> {
    /// Stop the reactor and get the handler back.
    pub fn stop(mut self) -> H {
        self.stopper.stop();
        let thread = self.thread.take().expect("running");
        thread
            .join()
            .expect("reactor thread panicked")
            .expect("reactor failed")
    }
}

impl<H> Drop for Running<H> {
    fn drop(&mut self) {
        // A test that failed before `stop` still stops its reactor.
        if self.thread.is_some() {
            self.stopper.stop();
        }
    }
}

/// A TCP connection to `addr` with the test timeouts.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// The RFC 6455 §1.3 opening handshake request, written by hand.
pub fn upgrade_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: server.example.com\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {RFC_KEY}\r\n\
         Origin: http://example.com\r\n\
         Sec-WebSocket-Version: 13\r\n\
         \r\n"
    )
    .into_bytes()
}

/// The exact 101 answer to [`upgrade_request`].
pub fn expected_101() -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {RFC_ACCEPT}\r\n\
         \r\n"
    )
    .into_bytes()
}

/// Read from `stream` into `buf` until it holds an HTTP header block; return
/// the block and leave what follows in `buf`.
pub fn read_http_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return std::mem::replace(buf, rest);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("read the HTTP head");
        assert!(n > 0, "EOF inside the HTTP head: {:?}", lossy(buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Read until EOF; a timeout or reset fails the test.
pub fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("read until EOF");
    out
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A blocking WebSocket client that masks by hand, for the loopback tests.
#[derive(Debug)]
pub struct WsClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    keys: u32,
}

impl WsClient {
    /// Connect and complete the opening handshake, asserting the exact 101.
    pub fn connect(addr: SocketAddr) -> Self {
        let mut stream = tcp(addr);
        stream.write_all(&upgrade_request("/chat")).unwrap();
        let mut buf = Vec::new();
        let head = read_http_head(&mut stream, &mut buf);
        assert_eq!(lossy(&head), lossy(&expected_101()));
        Self::from_parts(stream, buf)
    }

    /// A client over an already upgraded stream; `buf` holds bytes already
    /// read past the 101.
    pub fn from_parts(stream: TcpStream, buf: Vec<u8>) -> Self {
        Self {
            stream,
            buf,
            keys: 0,
        }
    }

    /// A fresh masking key for every frame, so unmasking is exercised at
    /// every phase.
    pub fn next_key(&mut self) -> [u8; 4] {
        self.keys = self.keys.wrapping_add(1);
        (self.keys.wrapping_mul(0x9e37_79b9) | 0x0101_0101).to_be_bytes()
    }

    /// One masked frame.
    pub fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let key = self.next_key();
        frame(fin, 0, opcode, Some(key), payload)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Send one masked frame in one write.
    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let f = self.frame(fin, opcode, payload);
        self.send_raw(&f);
    }

    /// Send a complete message as one masked frame.
    pub fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.send_frame(true, opcode, payload);
    }

    /// The next frame from the server, which must be unmasked with no RSV
    /// bits.
    pub fn recv(&mut self) -> WireFrame {
        loop {
            if let Some((f, n)) = parse_frame(&self.buf) {
                self.buf.drain(..n);
                assert_eq!(f.mask, None, "the server masked a frame");
                assert_eq!(f.rsv, 0, "the server set RSV bits");
                return f;
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).expect("read a frame");
            assert!(n > 0, "EOF while waiting for a frame");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next frame must be a close with exactly this payload.
    pub fn expect_close(&mut self, payload: &[u8]) {
        let f = self.recv();
        assert_eq!(
            (f.fin, f.opcode, f.payload.as_slice()),
            (true, OP_CLOSE, payload),
            "expected a close frame"
        );
    }

    /// Nothing more may arrive: the server closes its side of TCP.
    pub fn expect_eof(&mut self) {
        assert!(self.buf.is_empty(), "unread bytes: {:x?}", self.buf);
        let rest = read_to_eof(&mut self.stream);
        assert!(rest.is_empty(), "bytes before EOF: {rest:x?}");
    }
}
