//! The event loop.
//!
//! Edge-triggered discipline (mio's "draining readiness"): accept, read and
//! write until `WouldBlock`, retry on `Interrupted`, treat events as hints and
//! ignore unknown tokens. A read that returns less than the room it was given
//! has drained the socket (new data raises a new edge), so the extra read that
//! would only say `WouldBlock` is skipped.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::conn::{Conn, State};
use super::ctx::{flush, ConnId, Ctx};
use super::timer::Timers;
use crate::handshake::server::{
    classify, default_http_response, parse_request, write_accept, write_reject, Outcome,
};
use crate::handshake::Status;
use crate::proto::{CloseState, Connection, Event, Read as ProtoRead};
use crate::server::{Handler, ServerConfig};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Slab keys at or above this are never handed out (they are the tokens above).
const MAX_KEY: usize = usize::MAX - 16;
/// Header slots offered to httparse; `Limits::max_headers` picks how many are used.
const HEADER_SLOTS: usize = 256;

/// Stops a running [`Server`] from another thread.
#[derive(Debug, Clone)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Stopper {
    /// Ask the server's loop to stop; [`Server::run`] then returns.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::warn!("cannot wake the reactor: {e}");
        }
    }
}

/// A WebSocket server: a listener and its single-threaded reactor.
///
/// ```no_run
/// use wsreactor::{Ctx, Handler, Message, Server, ServerConfig};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
///         let _ = ctx.send(msg);
///     }
/// }
///
/// let server = Server::bind("127.0.0.1:9001", ServerConfig::default(), Echo)?;
/// server.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Server<H> {
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    stopper: Stopper,
    handler: H,
    config: ServerConfig,
}

impl<H: Handler> Server<H> {
    /// Bind a listener on `addr` (the first address it resolves to).
    ///
    /// # Errors
    /// The address does not resolve, or cannot be bound (in use, not local,
    /// no permission).
    pub fn bind(addr: impl ToSocketAddrs, config: ServerConfig, handler: H) -> io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(std_listener);
        let local_addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stopper = Stopper {
            flag: Arc::new(AtomicBool::new(false)),
            waker,
        };
        Ok(Self {
            poll,
            listener,
            local_addr,
            stopper,
            handler,
            config,
        })
    }

    /// The address the listener is bound to (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops [`Server::run`] from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Run the loop until stopped; returns the handler.
    ///
    /// # Errors
    /// The poll itself fails (never because of one connection).
    pub fn run(self) -> io::Result<H> {
        let Server {
            mut poll,
            mut listener,
            stopper,
            mut handler,
            config,
            ..
        } = self;
        // The shared read buffer must hold a full header block plus room to read.
        let size = config
            .read_buffer_size
            .max(config.handshake.max_header_bytes + 4096);
        let mut rbuf = vec![0u8; size].into_boxed_slice();
        let mut conns: Slab<Conn> = Slab::new();
        let mut timers = Timers::default();
        let mut events = Events::with_capacity(1024);
        let mut next_generation: u32 = 0;
        loop {
            let timeout = timers.timeout(Instant::now());
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if stopper.flag.load(Ordering::SeqCst) {
                for (key, conn) in conns.iter_mut() {
                    if conn.opened {
                        handler.on_close(
                            ConnId {
                                key,
                                generation: conn.generation,
                            },
                            1006,
                            "server stopped",
                        );
                    }
                }
                return Ok(handler);
            }
            let now = Instant::now();
            let mut sh = Shared {
                rbuf: &mut rbuf,
                handler: &mut handler,
                config: &config,
                timers: &mut timers,
                now,
            };
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept(
                        &mut listener,
                        &poll,
                        &mut conns,
                        &mut next_generation,
                        &mut sh,
                    ),
                    WAKER => {}
                    Token(key) => {
                        let Some(conn) = conns.get_mut(key) else {
                            continue;
                        };
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        if !drive(conn, key, readable, &mut sh) {
                            remove(&mut conns, key, &poll, sh.handler);
                        }
                    }
                }
            }
            while let Some((when, key, generation)) = timers.pop_due(now) {
                match conns.get(key) {
                    Some(c) if c.generation == generation && c.deadline == Some(when) => {
                        log::debug!("connection {key}: deadline passed in state {:?}", c.state);
                        remove(&mut conns, key, &poll, &mut handler);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The loop-wide things every connection step uses.
struct Shared<'a, H> {
    rbuf: &'a mut [u8],
    handler: &'a mut H,
    config: &'a ServerConfig,
    timers: &'a mut Timers,
    now: Instant,
}

fn accept<H>(
    listener: &mut TcpListener,
    poll: &Poll,
    conns: &mut Slab<Conn>,
    next_generation: &mut u32,
    sh: &mut Shared<'_, H>,
) {
    loop {
        let (mut stream, addr) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and friends: the backlog keeps the connection.
                log::warn!("accept failed: {e}");
                return;
            }
        };
        if conns.len() >= sh.config.max_connections || conns.vacant_key() >= MAX_KEY {
            log::warn!("refusing {addr}: {} connections open", conns.len());
            continue;
        }
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("set_nodelay for {addr}: {e}");
        }
        let key = conns.vacant_key();
        if let Err(e) = poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("register {addr}: {e}");
            continue;
        }
        *next_generation = next_generation.wrapping_add(1);
        let mut conn = Conn::new(
            stream,
            *next_generation,
            Connection::server(sh.config.protocol),
        );
        set_deadline(
            &mut conn,
            key,
            sh.timers,
            sh.now + sh.config.handshake_timeout,
        );
        conns.insert(conn);
        log::trace!("accepted {addr} as {key}");
    }
}

fn remove<H: Handler>(conns: &mut Slab<Conn>, key: usize, poll: &Poll, handler: &mut H) {
    let mut conn = conns.remove(key);
    let _ = poll.registry().deregister(&mut conn.stream);
    if conn.opened {
        handler.on_close(
            ConnId {
                key,
                generation: conn.generation,
            },
            1006,
            "",
        );
    }
}

fn set_deadline(conn: &mut Conn, key: usize, timers: &mut Timers, when: std::time::Instant) {
    conn.deadline = Some(when);
    timers.push(when, key, conn.generation);
}

/// Handle readiness of one connection; `false` means drop it.
fn drive<H: Handler>(
    conn: &mut Conn,
    key: usize,
    mut readable: bool,
    sh: &mut Shared<'_, H>,
) -> bool {
    let id = ConnId {
        key,
        generation: conn.generation,
    };
    flush(&mut conn.stream, conn.proto.sender(), &mut conn.broken);
    if conn.read_paused && conn.proto.sender().pending_len() <= sh.config.max_pending_output / 2 {
        conn.read_paused = false;
        readable = true;
    }
    if readable {
        read_loop(conn, id, sh);
    }
    settle(conn, key, sh)
}

fn read_loop<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>) {
    while !conn.broken && !conn.eof {
        if conn.proto.sender().pending_len() > sh.config.max_pending_output {
            // Backpressure: the peer is not reading what we send.
            conn.read_paused = true;
            return;
        }
        let p = conn.partial.len();
        sh.rbuf[..p].copy_from_slice(&conn.partial);
        let room = sh.rbuf.len() - p;
        match conn.stream.read(&mut sh.rbuf[p..]) {
            Ok(0) => conn.eof = true,
            Ok(n) => {
                process(conn, id, sh, p + n);
                if n < room {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::debug!("read from {id:?}: {e}");
                conn.broken = true;
            }
        }
    }
}

/// Consume `sh.rbuf[..len]` according to the connection's state.
fn process<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>, len: usize) {
    match conn.state {
        State::Handshake => handshake(conn, id, sh, len),
        State::Open => frames(conn, id, sh, len),
        State::Closing => conn.partial = Vec::new(),
    }
}

fn handshake<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>, len: usize) {
    let limits = &sh.config.handshake;
    let slots = limits.max_headers.min(HEADER_SLOTS);
    let mut headers = [httparse::EMPTY_HEADER; HEADER_SLOTS];
    let mut response = Vec::new();
    let upgraded_len = match parse_request(&sh.rbuf[..len], &mut headers[..slots], limits) {
        Ok(Status::Partial) => {
            conn.partial.clear();
            conn.partial.extend_from_slice(&sh.rbuf[..len]);
            return;
        }
        Ok(Status::Complete(req)) => match classify(&req) {
            Outcome::Upgrade(up) => {
                write_accept(&mut response, up.key, None, None);
                Some(req.len)
            }
            Outcome::Reject(reject) => {
                log::debug!("{id:?}: handshake rejected: {:?}", reject.reason);
                write_reject(&mut response, &reject);
                None
            }
            Outcome::Http(plain) => {
                default_http_response(&mut response, &plain);
                None
            }
        },
        Err(reject) => {
            log::debug!("{id:?}: handshake rejected: {:?}", reject.reason);
            write_reject(&mut response, &reject);
            None
        }
    };
    conn.partial = Vec::new();
    conn.proto.sender().queue_raw(&response);
    let Some(req_len) = upgraded_len else {
        conn.state = State::Closing;
        return;
    };
    conn.state = State::Open;
    conn.deadline = None;
    conn.opened = true;
    flush(&mut conn.stream, conn.proto.sender(), &mut conn.broken);
    {
        let (_, tx) = conn.proto.split();
        let mut ctx = Ctx {
            id,
            tx,
            stream: &mut conn.stream,
            cork: false,
            broken: &mut conn.broken,
        };
        sh.handler.on_open(&mut ctx);
    }
    // Lenient on purpose: frames sent right behind the request (before our
    // 101 arrived) are processed, not dropped.
    if req_len < len {
        sh.rbuf.copy_within(req_len..len, 0);
        frames(conn, id, sh, len - req_len);
    }
}

/// Decode frames from `sh.rbuf[..len]` and dispatch their events.
fn frames<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>, len: usize) {
    let mut off = 0;
    let (rx, tx) = conn.proto.split();
    loop {
        let input = &mut sh.rbuf[off..len];
        let input_len = input.len();
        match rx.read(input, tx) {
            Ok(ProtoRead {
                consumed,
                event: None,
            }) => {
                off += consumed;
                break;
            }
            Ok(ProtoRead {
                consumed,
                event: Some(event),
            }) => {
                off += consumed;
                let cork = consumed < input_len;
                let mut ctx = Ctx {
                    id,
                    tx,
                    stream: &mut conn.stream,
                    cork,
                    broken: &mut conn.broken,
                };
                match event {
                    Event::Message(msg) => sh.handler.on_message(&mut ctx, msg),
                    Event::Ping(_) => {}
                    Event::Pong(payload) => sh.handler.on_pong(&mut ctx, payload),
                    Event::Close(frame) => {
                        if conn.opened {
                            conn.opened = false;
                            let (code, reason) = frame.map_or((1005, ""), |f| (f.code, f.reason));
                            sh.handler.on_close(id, code, reason);
                        }
                    }
                }
            }
            Err(e) => {
                log::debug!("{id:?}: failing the connection: {e}");
                if conn.opened {
                    conn.opened = false;
                    sh.handler.on_close(id, e.close_code(), e.detail());
                }
                off = len;
                break;
            }
        }
    }
    if off < len {
        conn.partial.clear();
        conn.partial.extend_from_slice(&sh.rbuf[off..len]);
    } else {
        conn.partial = Vec::new();
    }
}

/// After I/O: flush, move between states, set deadlines. `false`: drop.
fn settle<H>(conn: &mut Conn, key: usize, sh: &mut Shared<'_, H>) -> bool {
    flush(&mut conn.stream, conn.proto.sender(), &mut conn.broken);
    if conn.broken || conn.eof {
        return false;
    }
    if conn.state == State::Open {
        match conn.proto.sender().state() {
            CloseState::Closed => {
                conn.state = State::Closing;
                set_deadline(conn, key, sh.timers, sh.now + sh.config.close_timeout);
            }
            CloseState::CloseSent if conn.deadline.is_none() => {
                set_deadline(conn, key, sh.timers, sh.now + sh.config.close_timeout);
            }
            _ => {}
        }
    }
    if conn.state == State::Closing {
        if conn.deadline.is_none() {
            set_deadline(conn, key, sh.timers, sh.now + sh.config.close_timeout);
        }
        if !conn.shut_write && conn.proto.sender().pending_len() == 0 {
            conn.shut_write = true;
            if let Err(e) = conn.stream.shutdown(Shutdown::Write) {
                log::debug!("shutdown: {e}");
                return false;
            }
        }
    }
    true
}
