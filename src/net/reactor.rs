//! The event loop.
//!
//! Edge-triggered discipline (mio's "draining readiness"): accept, read and
//! write until `WouldBlock`, retry on `Interrupted`, treat events as hints and
//! ignore unknown tokens. A read that returns less than the room it was given
//! has drained the socket (new data raises a new edge), so the extra read that
//! would only say `WouldBlock` is skipped.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::alarm::{alarm, Alarm};
use super::conn::{ClientSetup, Conn, Flag, State};
use super::ctx::{ConnId, Link, Sent};
use super::drive::{after, closed, drive, expire, set_deadline, settle, Readiness, Shared};
use super::metrics::Metrics;
use super::rand::{random_16, random_u64};
use super::timer::{Target, Tick, Timers};
use super::transport::Transport;
use super::url::WsUrl;
use crate::handshake::client::write_request;
use crate::handshake::server::write_response;
use crate::proto::{Connection, Message, SendError};
use crate::server::{Handler, ServerConfig};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const ALARM: Token = Token(usize::MAX - 3);
/// Slab keys at or above this are never handed out: the tokens above are
/// taken, and timer entries store keys in 32 bits.
const MAX_KEY: usize = {
    let timer_keys = u32::MAX as usize;
    let tokens = usize::MAX - 16;
    if timer_keys < tokens {
        timer_keys
    } else {
        tokens
    }
};

/// A poll timeout computed shorter than this is recomputed from a fresh
/// clock reading (see `Reactor::run`).
const FRESH_CLOCK_BELOW: Duration = Duration::from_millis(50);

/// A handle to a running reactor, usable from any thread.
#[derive(Debug, Clone)]
pub struct Remote {
    flags: Arc<Flags>,
    waker: Arc<Waker>,
}

#[derive(Debug, Default)]
struct Flags {
    stop: AtomicBool,
    shutdown: AtomicBool,
}

/// The name [`Server::stopper`] has always returned.
pub type Stopper = Remote;

impl Remote {
    /// Stop the loop at once; [`Reactor::run`] returns. Open connections get
    /// `on_close` with 1006 and their sockets are closed without a close
    /// handshake. See [`Remote::shutdown`] for the graceful way.
    pub fn stop(&self) {
        self.flags.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Graceful shutdown: stop accepting, send close 1001 ("going away") to
    /// every open connection, wait for the close handshakes up to
    /// `shutdown_timeout`, then return from [`Reactor::run`].
    pub fn shutdown(&self) {
        self.flags.shutdown.store(true, Ordering::SeqCst);
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

/// A [`Control`] borrowing the reactor's fields one by one, so the handler
/// (another field) stays free to be called with it.
macro_rules! control {
    ($r:expr, $now:expr) => {
        Control {
            conns: &mut $r.conns,
            poll: &$r.poll,
            timers: &mut $r.timers,
            config: &$r.config,
            metrics: &mut $r.metrics,
            next_generation: &mut $r.next_generation,
            flags: &$r.remote.flags,
            scratch: &mut $r.scratch,
            touched: Vec::new(),
            now: $now,
        }
    };
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
    metrics: Metrics,
    /// When a graceful shutdown must be over.
    shutdown_deadline: Option<Tick>,
    /// Connections held only to deliver a 503 (not counted as connections).
    refused_lingering: usize,
    /// Where a client masks what it sends; grows to the largest message.
    scratch: Vec<u8>,
    /// Wakes the poll for the next deadline; without it the poll times out.
    alarm: Option<Alarm>,
}

impl<H: Handler> Reactor<H> {
    /// A reactor with no listener and no connections yet.
    ///
    /// # Errors
    /// The OS refuses a poll instance.
    pub fn new(config: ServerConfig, handler: H) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let alarm = alarm(poll.registry(), ALARM);
        let remote = Remote {
            flags: Arc::default(),
            waker,
        };
        // Address space for the configured connections (slots and timer
        // entries), reserved up front (up to 64 Ki): pages are touched only
        // as they are used, so memory grows with the connections actually
        // held, and nothing is copied while growing to that size (a copy's
        // old pages would stay resident).
        let reserved = config.max_connections.min(1 << 16);
        let conns = Slab::with_capacity(reserved);
        Ok(Self {
            poll,
            listener: None,
            remote,
            handler,
            config,
            conns,
            timers: Timers::with_capacity(reserved),
            next_generation: 0,
            metrics: Metrics::default(),
            shutdown_deadline: None,
            refused_lingering: 0,
            scratch: Vec::new(),
            alarm,
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
        self.control(Tick::now()).connect(url)
    }

    /// A handle to stop or wake the loop from another thread.
    pub fn remote(&self) -> Remote {
        self.remote.clone()
    }

    /// The handler.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The counters so far.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn control(&mut self, now: Tick) -> Control<'_> {
        control!(self, now)
    }

    /// Run until stopped (or shut down); returns the handler.
    ///
    /// # Errors
    /// The poll itself fails (never because of one connection).
    pub fn run(mut self) -> io::Result<H> {
        // The shared read buffer must hold a full header block plus room to read.
        let size = self
            .config
            .read_buffer_size
            .max(self.config.handshake.max_header_bytes + 4096);
        let mut rbuf = vec![0u8; size].into_boxed_slice();
        let mut events = Events::with_capacity(1024);
        let mut metrics_requests = Vec::new();
        // The clock is read once per round, after the poll (a read costs
        // about as much as decoding a frame). Before sleeping, that reading
        // is up to one round's work old, which can only make the sleep
        // longer, never wake a deadline early; a sleep computed as short is
        // recomputed from a fresh reading, so timers stay accurate.
        let mut now = Tick::now();
        loop {
            // Checked before sleeping, so a stop or shutdown asked for by a
            // callback of the last round takes effect without waiting for an
            // event.
            if self.remote.flags.shutdown.load(Ordering::SeqCst) && self.shutdown_deadline.is_none()
            {
                now = Tick::now();
                self.begin_shutdown(now, &mut rbuf, &mut metrics_requests);
            }
            if self.remote.flags.stop.load(Ordering::SeqCst) || self.shutdown_done(now) {
                return Ok(self.finish());
            }
            let next = self.next_deadline();
            let mut timeout = next.map(|when| when.since(now));
            if timeout.is_some_and(|t| t < FRESH_CLOCK_BELOW) {
                now = Tick::now();
                timeout = next.map(|when| when.since(now));
            }
            // With the alarm set for the deadline, sleep without a timeout
            // (see `alarm`); a deadline already due is a poll that does not
            // sleep either way.
            if timeout != Some(Duration::ZERO) {
                if let Some(alarm) = &mut self.alarm {
                    match alarm.set(next, now) {
                        Ok(()) => timeout = None,
                        Err(e) => {
                            log::warn!("cannot set the timerfd ({e}): the poll times out instead");
                            self.alarm = None;
                        }
                    }
                }
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            now = Tick::now();
            self.metrics.loop_iterations += 1;
            let mut woken = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => woken = true,
                    ALARM => {
                        if let Some(alarm) = &mut self.alarm {
                            alarm.fired();
                        }
                    }
                    Token(key) => {
                        let ready = Readiness {
                            readable: event.is_readable(),
                            read_closed: event.is_read_closed() || event.is_error(),
                        };
                        self.with_conn(
                            key,
                            None,
                            now,
                            &mut rbuf,
                            &mut metrics_requests,
                            |conn, key, sh| drive(conn, key, ready, sh),
                        );
                    }
                }
            }
            if woken {
                let mut ctl = control!(self, now);
                self.handler.on_wake(&mut ctl);
                let touched = ctl.touched;
                self.settle_touched(touched, now, &mut rbuf, &mut metrics_requests);
            }
            while let Some((when, target)) = self.timers.pop_due(now) {
                match target {
                    Target::Conn(key, generation) => {
                        // Only the connection's live entry counts; any
                        // other is stale (see `timer`).
                        let due = matches!(self.conns.get(key), Some(c) if c.generation == generation && c.deadline == Some(when));
                        if due {
                            self.with_conn(
                                key,
                                None,
                                now,
                                &mut rbuf,
                                &mut metrics_requests,
                                expire,
                            );
                        }
                    }
                    Target::App(token) => {
                        let mut ctl = control!(self, now);
                        self.handler.on_timer(&mut ctl, token);
                        let touched = ctl.touched;
                        self.settle_touched(touched, now, &mut rbuf, &mut metrics_requests);
                    }
                }
            }
            for id in std::mem::take(&mut metrics_requests) {
                self.answer_metrics(id, now, &mut rbuf);
            }
        }
    }

    /// When the loop must wake: the next timer or the shutdown deadline.
    fn next_deadline(&self) -> Option<Tick> {
        match (self.timers.next(), self.shutdown_deadline) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        }
    }

    /// Run `f` on connection `key` (if it exists and, with `generation`,
    /// is still that connection); drop it if `f` says so.
    fn with_conn(
        &mut self,
        key: usize,
        generation: Option<u32>,
        now: Tick,
        rbuf: &mut [u8],
        metrics_requests: &mut Vec<ConnId>,
        f: impl FnOnce(&mut Conn, usize, &mut Shared<'_, H>) -> bool,
    ) {
        let mut sh = Shared {
            scratch: &mut self.scratch,
            rbuf,
            handler: &mut self.handler,
            config: &self.config,
            timers: &mut self.timers,
            metrics: &mut self.metrics,
            metrics_requests,
            now,
        };
        let keep = match self.conns.get_mut(key) {
            Some(conn) if generation.is_none_or(|g| g == conn.generation) => f(conn, key, &mut sh),
            _ => return,
        };
        if !keep {
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if conn.flags.contains(Flag::Refused) {
                self.refused_lingering -= 1;
            }
            let id = ConnId {
                key,
                generation: conn.generation,
            };
            if conn.flags.contains(Flag::Opened) {
                closed(&mut conn, id, &mut sh, 1006, "connection lost");
            } else if conn.client.is_some() {
                sh.handler
                    .on_connect_failed(id, "connection lost or timed out");
            }
        }
    }

    fn settle_touched(
        &mut self,
        touched: Vec<ConnId>,
        now: Tick,
        rbuf: &mut [u8],
        mr: &mut Vec<ConnId>,
    ) {
        for id in touched {
            self.with_conn(id.key, Some(id.generation), now, rbuf, mr, settle);
        }
    }

    fn accept(&mut self) {
        let Some(listener) = self.listener.as_mut() else {
            return;
        };
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
            self.metrics.accepted_total += 1;
            // The clock per connection: a long batch must not make its
            // handshake deadline early.
            let now = Tick::now();
            let held = self.conns.len() - self.refused_lingering;
            let full = held >= self.config.max_connections;
            // Refused sockets get a lingering close like any other (503,
            // FIN, input drained) so the client reads the answer instead of
            // a reset; a few extra slots bound what that may hold.
            let linger_slots = (self.config.max_connections / 16).max(64);
            if (full && self.refused_lingering >= linger_slots)
                || self.conns.vacant_key() >= MAX_KEY
            {
                log::warn!("refusing {addr}: {held} connections held");
                self.metrics.refused_total += 1;
                // Best effort: a fresh socket's send buffer takes this at once
                // (not on a TLS port: it would be garbage to a TLS client).
                if !Transport::serves_tls(&self.config) {
                    let _ = stream.write(SERVICE_UNAVAILABLE);
                }
                continue;
            }
            if let Err(e) = stream.set_nodelay(true) {
                log::debug!("set_nodelay for {addr}: {e}");
            }
            let mut stream = match Transport::accepted(stream, &self.config) {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("TLS for {addr}: {e}");
                    continue;
                }
            };
            let key = self.conns.vacant_key();
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("register {addr}: {e}");
                continue;
            }
            self.next_generation = self.next_generation.wrapping_add(1);
            let proto = Connection::server(self.config.protocol);
            let mut conn = Conn::new(stream, self.next_generation, proto, State::Handshake, now);
            if full {
                log::warn!("refusing {addr}: {held} connections held");
                self.metrics.refused_total += 1;
                conn.state = State::Closing;
                conn.flags.insert(Flag::Refused);
                self.refused_lingering += 1;
                conn.proto.sender().queue_raw(SERVICE_UNAVAILABLE);
                conn.flags.insert(Flag::FinalDeadline);
                if let Some(when) = after(now, self.config.close_timeout) {
                    set_deadline(&mut conn, key, &mut self.timers, when);
                }
            } else if let Some(when) = after(now, self.config.handshake_timeout) {
                set_deadline(&mut conn, key, &mut self.timers, when);
            }
            self.conns.insert(conn);
            log::trace!("accepted {addr} as {key}");
        }
    }

    /// Stop accepting and start the close handshake everywhere.
    fn begin_shutdown(&mut self, now: Tick, rbuf: &mut [u8], mr: &mut Vec<ConnId>) {
        log::info!("shutting down: closing {} connections", self.conns.len());
        self.shutdown_deadline = Some(now + self.config.shutdown_timeout);
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let keys: Vec<(usize, u32)> = self.conns.iter().map(|(k, c)| (k, c.generation)).collect();
        for (key, generation) in keys {
            self.with_conn(
                key,
                Some(generation),
                now,
                rbuf,
                mr,
                |conn, key, sh| match conn.state {
                    State::Open => {
                        let _ = conn.proto.sender().close(1001, "server shutting down");
                        let id = ConnId {
                            key,
                            generation: conn.generation,
                        };
                        closed(conn, id, sh, 1001, "server shutting down");
                        settle(conn, key, sh)
                    }
                    State::Closing | State::Answering => true,
                    State::Handshake | State::Connecting => false,
                },
            );
        }
    }

    fn shutdown_done(&self, now: Tick) -> bool {
        match self.shutdown_deadline {
            Some(deadline) => self.conns.is_empty() || now >= deadline,
            None => false,
        }
    }

    /// Leave the loop: whatever is still open ends abruptly.
    fn finish(mut self) -> H {
        for (key, conn) in self.conns.iter_mut() {
            if conn.flags.contains(Flag::Opened) {
                conn.flags.remove(Flag::Opened);
                self.handler.on_close(
                    ConnId {
                        key,
                        generation: conn.generation,
                    },
                    1006,
                    "reactor stopped",
                );
            }
        }
        self.handler
    }

    fn answer_metrics(&mut self, id: ConnId, now: Tick, rbuf: &mut [u8]) {
        let queued: usize = self
            .conns
            .iter_mut()
            .map(|(_, c)| c.proto.sender().pending_len())
            .sum();
        let body = self.metrics.render(queued, self.conns.len());
        let mut response = Vec::with_capacity(body.len() + 128);
        write_response(
            &mut response,
            200,
            &[
                ("Content-Type", "text/plain; version=0.0.4"),
                ("Connection", "close"),
            ],
            body.as_bytes(),
        );
        let mut none = Vec::new();
        self.with_conn(
            id.key,
            Some(id.generation),
            now,
            rbuf,
            &mut none,
            |conn, key, sh| {
                conn.proto.sender().queue_raw(&response);
                conn.state = State::Closing;
                settle(conn, key, sh)
            },
        );
    }
}

const SERVICE_UNAVAILABLE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 20\r\nConnection: close\r\n\r\ntoo many connections\n";

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
    metrics: &'a mut Metrics,
    next_generation: &'a mut u32,
    flags: &'a Flags,
    scratch: &'a mut Vec<u8>,
    /// Connections acted on: settled (and dropped if broken) afterwards.
    touched: Vec<ConnId>,
    now: Tick,
}

impl Control<'_> {
    /// Open a client connection to `ws[s]://host[:port][/path]` (`wss://`
    /// with the `tls` feature: the certificate is verified for the host,
    /// against `ServerConfig::tls_client`'s roots). The host is
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
        if url.tls && cfg!(not(feature = "tls")) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "wss:// needs a build with the tls feature",
            ));
        }
        let addr = (url.host.as_str(), url.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host did not resolve"))?;
        let tls_host = url.tls.then_some(url.host.as_str());
        self.open_client(addr, &url.host_header(), &url.path, tls_host)
    }

    /// Open a client connection to `addr`, sending `host` and `path` in the
    /// request (no name resolution).
    ///
    /// # Errors
    /// Too many connections, or a socket error.
    pub fn connect_addr(&mut self, addr: SocketAddr, host: &str, path: &str) -> io::Result<ConnId> {
        self.open_client(addr, host, path, None)
    }

    fn open_client(
        &mut self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        tls_host: Option<&str>,
    ) -> io::Result<ConnId> {
        if self.conns.len() >= self.config.max_connections || self.conns.vacant_key() >= MAX_KEY {
            return Err(io::Error::other("connection limit reached"));
        }
        let stream = TcpStream::connect(addr)?;
        let mut stream = Transport::connecting(stream, tls_host, self.config)?;
        let key = self.conns.vacant_key();
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut request = Vec::with_capacity(256);
        let offer = self.config.deflate.offer();
        let extensions = offer.as_ref().map(|o| o.as_str());
        let client_key =
            write_request(&mut request, host, path, &random_16(), &[], extensions, &[]);
        *self.next_generation = self.next_generation.wrapping_add(1);
        let proto = Connection::client(self.config.protocol, random_u64());
        let mut conn = Conn::new(
            stream,
            *self.next_generation,
            proto,
            State::Connecting,
            self.now,
        );
        conn.client = Some(Box::new(ClientSetup {
            request,
            expected_accept: client_key.expected_accept().to_string(),
        }));
        if let Some(when) = after(self.now, self.config.handshake_timeout) {
            set_deadline(&mut conn, key, self.timers, when);
        }
        let generation = conn.generation;
        self.conns.insert(conn);
        Ok(ConnId { key, generation })
    }

    /// Send a message on connection `id` (see [`Ctx::send`](super::Ctx::send)).
    ///
    /// # Errors
    /// [`SendError::Closed`] if the connection is gone, not open yet, or
    /// closing; [`SendError::Overflow`] as for `Ctx::send`.
    pub fn send(&mut self, id: ConnId, msg: Message<'_>) -> Result<Sent, SendError> {
        self.with(id, |link| link.send(msg.opcode(), msg.as_bytes(), false))
    }

    /// Send a ping on connection `id`.
    ///
    /// # Errors
    /// As [`Control::send`], or [`SendError::ControlTooLong`].
    pub fn ping(&mut self, id: ConnId, payload: &[u8]) -> Result<Sent, SendError> {
        self.with(id, |link| link.control(false, |tx| tx.ping(payload)))
    }

    /// Start the close handshake on connection `id`.
    ///
    /// # Errors
    /// As [`Control::send`], or an invalid code or reason.
    pub fn close(&mut self, id: ConnId, code: u16, reason: &str) -> Result<Sent, SendError> {
        self.with(id, |link| link.control(false, |tx| tx.close(code, reason)))
    }

    /// The counters so far.
    pub fn metrics(&self) -> &Metrics {
        self.metrics
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
        self.timers.push_app(self.now + delay, token);
    }

    /// Stop the loop after this callback.
    pub fn stop(&mut self) {
        self.flags.stop.store(true, Ordering::SeqCst);
    }

    /// Begin a graceful shutdown after this callback (see [`Remote::shutdown`]).
    pub fn shutdown(&mut self) {
        self.flags.shutdown.store(true, Ordering::SeqCst);
    }

    fn with(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut Link<'_>) -> Result<Sent, SendError>,
    ) -> Result<Sent, SendError> {
        let conn = match self.conns.get_mut(id.key) {
            Some(c) if c.generation == id.generation && c.state == State::Open => c,
            _ => return Err(SendError::Closed),
        };
        let mut link = Link {
            tx: conn.proto.sender(),
            stream: &mut conn.stream,
            broken: &mut conn.broken,
            metrics: self.metrics,
            config: self.config,
            scratch: self.scratch,
            in_place: None,
        };
        let result = f(&mut link);
        // Settled (and dropped if broken) after the callback.
        self.touched.push(id);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;
    use std::time::Instant;

    use super::*;
    use crate::net::ctx::Ctx;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Connects `clients` connections to its own listener and samples the
    /// timer heap every few milliseconds until `run_for` is over.
    struct Probe {
        clients: usize,
        started: Instant,
        /// Sampling starts here (after stale handshake entries are gone).
        sample_from: Duration,
        run_for: Duration,
        /// Largest `connection entries - connections` seen.
        excess: usize,
        samples: usize,
        opened: usize,
        pongs: usize,
        closes: Vec<(u16, String)>,
    }

    impl Handler for Probe {
        fn on_open(&mut self, _ctx: &mut Ctx<'_>) {
            self.opened += 1;
        }
        fn on_message(&mut self, _ctx: &mut Ctx<'_>, _msg: Message<'_>) {}
        fn on_pong(&mut self, _ctx: &mut Ctx<'_>, _payload: &[u8]) {
            self.pongs += 1;
        }
        fn on_close(&mut self, _id: ConnId, code: u16, reason: &str) {
            // Stopping the reactor closes everyone; only earlier closes count.
            if reason != "reactor stopped" {
                self.closes.push((code, reason.to_string()));
            }
        }
        fn on_timer(&mut self, ctl: &mut Control<'_>, _token: u64) {
            let elapsed = self.started.elapsed();
            if elapsed >= self.sample_from {
                let entries = ctl.timers.conn_entries();
                self.excess = self.excess.max(entries.saturating_sub(ctl.connections()));
                self.samples += 1;
            }
            if elapsed >= self.run_for {
                ctl.stop();
            } else {
                ctl.set_timer(ms(2), 0);
            }
        }
    }

    /// Heartbeats on `clients` connections to ourselves (each side pings),
    /// for `run_for`; returns the probe.
    fn heartbeat_run(config: ServerConfig, clients: usize, sample_from: Duration) -> Probe {
        let run_for = sample_from + ms(1000);
        let probe = Probe {
            clients,
            started: Instant::now(),
            sample_from,
            run_for,
            excess: 0,
            samples: 0,
            opened: 0,
            pongs: 0,
            closes: Vec::new(),
        };
        let mut reactor = Reactor::new(config, probe).unwrap();
        let addr = reactor.listen("127.0.0.1:0").unwrap();
        for _ in 0..clients {
            reactor.connect(&format!("ws://{addr}/")).unwrap();
        }
        reactor.control(Tick::now()).set_timer(ms(2), 0);
        reactor.run().unwrap()
    }

    fn assert_one_entry_each(p: &Probe, ping: Duration) {
        assert_eq!(
            p.opened,
            2 * p.clients,
            "every connection opened, both ends"
        );
        assert!(p.closes.is_empty(), "closed: {:?}", p.closes);
        assert!(p.samples > 100, "only {} samples", p.samples);
        // Both ends ping every `ping`; allow for a slow machine.
        let cycles = (p.run_for - p.sample_from).as_millis() / ping.as_millis();
        let expected = 2 * p.clients * usize::try_from(cycles / 3).unwrap();
        assert!(
            p.pongs >= expected,
            "{} pongs, expected {expected}",
            p.pongs
        );
        // One entry per connection; a margin for a connection caught between
        // two states (one failing adds its close deadline).
        assert!(
            p.excess <= 2,
            "{} timer entries beyond one per connection",
            p.excess
        );
    }

    /// Defaults' shape (pong timeout shorter than the interval, handshake
    /// timeout shorter than the first heartbeat): the handshake entry
    /// becomes the first heartbeat wake-up, and each ping/pong cycle
    /// re-arms the one entry.
    #[test]
    fn heartbeats_keep_one_timer_entry_per_connection() {
        let ping = ms(150);
        let config = ServerConfig {
            handshake_timeout: ms(100),
            ping_interval: Some(ping),
            pong_timeout: ms(100),
            ..ServerConfig::default()
        };
        let p = heartbeat_run(config, 16, Duration::ZERO);
        assert_one_entry_each(&p, ping);
    }

    /// Pong timeout longer than the interval, idle timeout on: a pong makes
    /// the next ping due before the pong deadline, which must not push a
    /// second entry per cycle.
    #[test]
    fn heartbeats_with_a_long_pong_timeout_keep_one_entry() {
        let ping = ms(30);
        let config = ServerConfig {
            handshake_timeout: ms(100),
            ping_interval: Some(ping),
            pong_timeout: ms(300),
            idle_timeout: Some(ms(500)),
            ..ServerConfig::default()
        };
        // From 150 ms on: the handshake entries (100 ms, later than the
        // first heartbeat) are gone by then.
        let p = heartbeat_run(config, 16, ms(150));
        assert_one_entry_each(&p, ping);
    }

    // A raw client, to see exactly when the server's frames arrive.

    const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";
    const PONG: &[u8] = &[0x8A, 0x80, 0, 0, 0, 0];

    fn serve(config: ServerConfig) -> (SocketAddr, Remote, std::thread::JoinHandle<()>) {
        struct Quiet;
        impl Handler for Quiet {
            fn on_message(&mut self, _ctx: &mut Ctx<'_>, _msg: Message<'_>) {}
        }
        let server = Server::bind("127.0.0.1:0", config, Quiet).unwrap();
        let addr = server.local_addr();
        let remote = server.stopper();
        let thread = std::thread::spawn(move || {
            server.run().unwrap();
        });
        (addr, remote, thread)
    }

    /// Opens a connection: returns it and when the request was sent.
    fn upgrade(addr: SocketAddr) -> (StdStream, Instant) {
        let mut s = StdStream::connect(addr).unwrap();
        s.set_read_timeout(Some(ms(5000))).unwrap();
        let sent = Instant::now();
        s.write_all(UPGRADE).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        (s, sent)
    }

    /// The next frame's first byte and payload (server frames are unmasked
    /// and, here, short).
    fn frame(s: &mut StdStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).unwrap();
        assert!(head[1] < 126, "unexpected long frame");
        let mut payload = vec![0u8; usize::from(head[1])];
        s.read_exact(&mut payload).unwrap();
        (head[0], payload)
    }

    /// The handshake deadline's entry, still queued after the open, only
    /// wakes the connection early: it neither drops the connection nor
    /// brings the first ping forward.
    #[test]
    fn the_first_ping_waits_a_full_interval_past_the_handshake_deadline() {
        let (addr, remote, thread) = serve(ServerConfig {
            handshake_timeout: ms(50),
            ping_interval: Some(ms(250)),
            pong_timeout: ms(2000),
            ..ServerConfig::default()
        });
        let (mut s, sent) = upgrade(addr);
        assert_eq!(frame(&mut s).0, 0x89, "a ping");
        assert!(sent.elapsed() >= ms(250), "ping after {:?}", sent.elapsed());
        remote.stop();
        thread.join().unwrap();
    }

    /// A pong later than the interval: the next ping is due at once and goes
    /// out with the pong's arrival; a missing pong still fails with 1001,
    /// never before the pong timeout.
    #[test]
    fn a_late_pong_brings_the_next_ping_at_once() {
        let (addr, remote, thread) = serve(ServerConfig {
            ping_interval: Some(ms(100)),
            pong_timeout: ms(400),
            ..ServerConfig::default()
        });
        let (mut s, _) = upgrade(addr);
        assert_eq!(frame(&mut s).0, 0x89);
        std::thread::sleep(ms(200));
        let answered = Instant::now();
        s.write_all(PONG).unwrap();
        assert_eq!(frame(&mut s).0, 0x89);
        let second = Instant::now();
        assert!(
            second - answered < ms(80),
            "second ping {:?} after the pong",
            second - answered
        );
        // Unanswered: the server fails the connection 400 ms after it sent
        // that ping (after our pong was written).
        let (op, payload) = frame(&mut s);
        assert_eq!(op, 0x88, "a close");
        assert_eq!(payload[..2], 1001u16.to_be_bytes());
        assert!(
            answered.elapsed() >= ms(400),
            "failed after {:?}",
            answered.elapsed()
        );
        remote.stop();
        thread.join().unwrap();
    }
}
