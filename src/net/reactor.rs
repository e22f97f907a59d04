//! The event loop.
//!
//! Edge-triggered discipline (mio's "draining readiness"): accept, read and
//! write until `WouldBlock`, retry on `Interrupted`, treat events as hints and
//! ignore unknown tokens. A read that returns less than the room it was given
//! has drained the socket (new data raises a new edge), so the extra read that
//! would only say `WouldBlock` is skipped.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::conn::{ClientSetup, Conn, State};
use super::ctx::{flush, ConnId};
use super::drive::{drive, set_deadline, settle, Shared};
use super::rand::{random_16, random_u64};
use super::timer::{Target, Timers};
use super::url::WsUrl;
use crate::handshake::client::write_request;
use crate::proto::{Connection, Message, OpCode, SendError};
use crate::server::{Handler, ServerConfig};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Slab keys at or above this are never handed out (they are the tokens above).
const MAX_KEY: usize = usize::MAX - 16;

/// A handle to a running reactor, usable from any thread.
#[derive(Debug, Clone)]
pub struct Remote {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

/// The name [`Server::stopper`] has always returned.
pub type Stopper = Remote;

impl Remote {
    /// Ask the loop to stop; [`Reactor::run`] then returns.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Wake the loop: it calls [`Handler::on_wake`] (e.g. to pick up work
    /// another thread queued for the handler).
    pub fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::warn!("cannot wake the reactor: {e}");
        }
    }
}

/// A single-threaded event loop holding accepted and outgoing connections.
#[derive(Debug)]
pub struct Reactor<H> {
    poll: Poll,
    listener: Option<TcpListener>,
    remote: Remote,
    handler: H,
    config: ServerConfig,
    conns: Slab<Conn>,
    timers: Timers,
    next_generation: u32,
}

impl<H: Handler> Reactor<H> {
    /// A reactor with no listener and no connections yet.
    ///
    /// # Errors
    /// The OS refuses a poll instance.
    pub fn new(config: ServerConfig, handler: H) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let remote = Remote {
            stop: Arc::new(AtomicBool::new(false)),
            waker,
        };
        Ok(Self {
            poll,
            listener: None,
            remote,
            handler,
            config,
            conns: Slab::new(),
            timers: Timers::default(),
            next_generation: 0,
        })
    }

    /// Accept WebSocket connections on `addr` (the first address it
    /// resolves to). Returns the bound address.
    ///
    /// # Errors
    /// The address does not resolve or cannot be bound.
    pub fn listen(&mut self, addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(std_listener);
        let local = listener.local_addr()?;
        self.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        self.listener = Some(listener);
        Ok(local)
    }

    /// Open a client connection to a `ws://` URL (see [`Control::connect`]).
    ///
    /// # Errors
    /// As [`Control::connect`].
    pub fn connect(&mut self, url: &str) -> io::Result<ConnId> {
        let now = Instant::now();
        self.control(now).connect(url)
    }

    /// A handle to stop or wake the loop from another thread.
    pub fn remote(&self) -> Remote {
        self.remote.clone()
    }

    /// The handler.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    fn control(&mut self, now: Instant) -> Control<'_> {
        Control {
            conns: &mut self.conns,
            poll: &self.poll,
            timers: &mut self.timers,
            config: &self.config,
            next_generation: &mut self.next_generation,
            stop: &self.remote.stop,
            touched: Vec::new(),
            now,
        }
    }

    /// Run until stopped; returns the handler.
    ///
    /// # Errors
    /// The poll itself fails (never because of one connection).
    pub fn run(self) -> io::Result<H> {
        let Reactor {
            mut poll,
            mut listener,
            remote,
            mut handler,
            config,
            mut conns,
            mut timers,
            mut next_generation,
        } = self;
        // The shared read buffer must hold a full header block plus room to read.
        let size = config
            .read_buffer_size
            .max(config.handshake.max_header_bytes + 4096);
        let mut rbuf = vec![0u8; size].into_boxed_slice();
        let mut events = Events::with_capacity(1024);
        loop {
            if remote.stop.load(Ordering::SeqCst) {
                for (key, conn) in conns.iter_mut() {
                    if conn.opened {
                        handler.on_close(
                            ConnId {
                                key,
                                generation: conn.generation,
                            },
                            1006,
                            "reactor stopped",
                        );
                    }
                }
                return Ok(handler);
            }
            let timeout = timers.timeout(Instant::now());
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            let mut woken = false;
            {
                let mut sh = Shared {
                    rbuf: &mut rbuf,
                    handler: &mut handler,
                    config: &config,
                    timers: &mut timers,
                    now,
                };
                for event in events.iter() {
                    match event.token() {
                        LISTENER => {
                            if let Some(l) = listener.as_mut() {
                                accept(l, &poll, &mut conns, &mut next_generation, &mut sh);
                            }
                        }
                        WAKER => woken = true,
                        Token(key) => {
                            let Some(conn) = conns.get_mut(key) else {
                                continue;
                            };
                            let readable =
                                event.is_readable() || event.is_read_closed() || event.is_error();
                            if !drive(conn, key, readable, &mut sh) {
                                remove(&mut conns, key, &poll, sh.handler, "connection lost");
                            }
                        }
                    }
                }
            }
            let mut ctl = Control {
                conns: &mut conns,
                poll: &poll,
                timers: &mut timers,
                config: &config,
                next_generation: &mut next_generation,
                stop: &remote.stop,
                touched: Vec::new(),
                now,
            };
            if woken && !remote.stop.load(Ordering::SeqCst) {
                handler.on_wake(&mut ctl);
            }
            while let Some((when, target)) = ctl.timers.pop_due(now) {
                match target {
                    Target::Conn(key, generation) => match ctl.conns.get(key) {
                        Some(c) if c.generation == generation && c.deadline == Some(when) => {
                            log::debug!("connection {key}: deadline passed in state {:?}", c.state);
                            remove(ctl.conns, key, &poll, &mut handler, "timed out");
                        }
                        _ => {}
                    },
                    Target::App(token) => handler.on_timer(&mut ctl, token),
                }
            }
            let touched = std::mem::take(&mut ctl.touched);
            let mut sh = Shared {
                rbuf: &mut rbuf,
                handler: &mut handler,
                config: &config,
                timers: &mut timers,
                now,
            };
            for id in touched {
                let keep = match conns.get_mut(id.key) {
                    Some(conn) if conn.generation == id.generation => settle(conn, id.key, &mut sh),
                    _ => true,
                };
                if !keep {
                    remove(&mut conns, id.key, &poll, sh.handler, "connection lost");
                }
            }
        }
    }
}

/// A WebSocket server: a listener and its reactor.
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
    reactor: Reactor<H>,
    local_addr: SocketAddr,
}

impl<H: Handler> Server<H> {
    /// Bind a listener on `addr` (the first address it resolves to).
    ///
    /// # Errors
    /// The address does not resolve, or cannot be bound (in use, not local,
    /// no permission).
    pub fn bind(addr: impl ToSocketAddrs, config: ServerConfig, handler: H) -> io::Result<Self> {
        let mut reactor = Reactor::new(config, handler)?;
        let local_addr = reactor.listen(addr)?;
        Ok(Self {
            reactor,
            local_addr,
        })
    }

    /// The address the listener is bound to (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops [`Server::run`] from another thread.
    pub fn stopper(&self) -> Stopper {
        self.reactor.remote()
    }

    /// The underlying reactor (to open client connections from it too).
    pub fn reactor_mut(&mut self) -> &mut Reactor<H> {
        &mut self.reactor
    }

    /// Run the loop until stopped; returns the handler.
    ///
    /// # Errors
    /// The poll itself fails (never because of one connection).
    pub fn run(self) -> io::Result<H> {
        self.reactor.run()
    }
}

/// Acting on any connection of the reactor, outside a connection's own
/// callback: given to [`Handler::on_wake`] and [`Handler::on_timer`].
#[derive(Debug)]
pub struct Control<'a> {
    conns: &'a mut Slab<Conn>,
    poll: &'a Poll,
    timers: &'a mut Timers,
    config: &'a ServerConfig,
    next_generation: &'a mut u32,
    stop: &'a AtomicBool,
    /// Connections acted on: settled (and dropped if broken) afterwards.
    touched: Vec<ConnId>,
    now: Instant,
}

impl Control<'_> {
    /// Open a client connection to `ws://host[:port][/path]`. The host is
    /// resolved with the system resolver (blocking, once per call); the TCP
    /// connect and the handshake then proceed in the loop. The handler gets
    /// [`Handler::on_open`] when the handshake succeeds, or
    /// [`Handler::on_connect_failed`] if it fails or does not finish within
    /// `handshake_timeout`.
    ///
    /// # Errors
    /// A bad URL, a name that does not resolve, too many connections, or a
    /// socket error.
    pub fn connect(&mut self, url: &str) -> io::Result<ConnId> {
        let url = WsUrl::parse(url).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let addr = (url.host.as_str(), url.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host did not resolve"))?;
        self.connect_addr(addr, &url.host_header(), &url.path)
    }

    /// Open a client connection to `addr`, sending `host` and `path` in the
    /// request (no name resolution).
    ///
    /// # Errors
    /// Too many connections, or a socket error.
    pub fn connect_addr(&mut self, addr: SocketAddr, host: &str, path: &str) -> io::Result<ConnId> {
        if self.conns.len() >= self.config.max_connections || self.conns.vacant_key() >= MAX_KEY {
            return Err(io::Error::other("connection limit reached"));
        }
        let mut stream = TcpStream::connect(addr)?;
        let key = self.conns.vacant_key();
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut request = Vec::with_capacity(256);
        let client_key = write_request(&mut request, host, path, &random_16(), &[], None, &[]);
        *self.next_generation = self.next_generation.wrapping_add(1);
        let proto = Connection::client(self.config.protocol, random_u64());
        let mut conn = Conn::new(stream, *self.next_generation, proto, State::Connecting);
        conn.client = Some(Box::new(ClientSetup {
            request,
            expected_accept: client_key.expected_accept().to_string(),
        }));
        set_deadline(
            &mut conn,
            key,
            self.timers,
            self.now + self.config.handshake_timeout,
        );
        let generation = conn.generation;
        self.conns.insert(conn);
        Ok(ConnId { key, generation })
    }

    /// Send a message on connection `id`.
    ///
    /// # Errors
    /// [`SendError::Closed`] if the connection is gone, not open yet, or
    /// closing.
    pub fn send(&mut self, id: ConnId, msg: Message<'_>) -> Result<(), SendError> {
        self.with(id, |tx| tx.send(msg.opcode(), msg.as_bytes()))
    }

    /// Send a ping on connection `id`.
    ///
    /// # Errors
    /// As [`Control::send`], or [`SendError::ControlTooLong`].
    pub fn ping(&mut self, id: ConnId, payload: &[u8]) -> Result<(), SendError> {
        self.with(id, |tx| tx.send(OpCode::Ping, payload))
    }

    /// Start the close handshake on connection `id`.
    ///
    /// # Errors
    /// As [`Control::send`], or an invalid code or reason.
    pub fn close(&mut self, id: ConnId, code: u16, reason: &str) -> Result<(), SendError> {
        self.with(id, |tx| tx.close(code, reason))
    }

    /// Is `id` an open WebSocket connection?
    pub fn is_open(&self, id: ConnId) -> bool {
        matches!(self.conns.get(id.key), Some(c) if c.generation == id.generation && c.state == State::Open)
    }

    /// Number of connections held (in any state).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Call [`Handler::on_timer`] with `token` after `delay`.
    pub fn set_timer(&mut self, delay: Duration, token: u64) {
        self.timers.push(self.now + delay, Target::App(token));
    }

    /// Stop the loop after this callback.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn with(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut crate::proto::Sender) -> Result<(), SendError>,
    ) -> Result<(), SendError> {
        let conn = match self.conns.get_mut(id.key) {
            Some(c) if c.generation == id.generation && c.state == State::Open => c,
            _ => return Err(SendError::Closed),
        };
        f(conn.proto.sender())?;
        flush(&mut conn.stream, conn.proto.sender(), &mut conn.broken);
        self.touched.push(id);
        Ok(())
    }
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
            State::Handshake,
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

fn remove<H: Handler>(conns: &mut Slab<Conn>, key: usize, poll: &Poll, handler: &mut H, why: &str) {
    let mut conn = conns.remove(key);
    let _ = poll.registry().deregister(&mut conn.stream);
    let id = ConnId {
        key,
        generation: conn.generation,
    };
    if conn.opened {
        handler.on_close(id, 1006, why);
    } else if conn.client.is_some() {
        handler.on_connect_failed(id, why);
    }
}
