//! The event loop.
//!
//! Edge-triggered discipline (mio's "draining readiness"): accept, read and
//! write until `WouldBlock`, retry on `Interrupted`, treat events as hints and
//! ignore unknown tokens. A read that returns less than the room it was given
//! has drained the socket (new data raises a new edge), so the extra read that
//! would only say `WouldBlock` is skipped.
//!
//! A round: poll, drive every ready connection, call `on_wake` and the due
//! timers, then end the round: write what publishes queued (one vectored
//! write per subscriber) and settle the connections callbacks acted on.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use super::alarm::{alarm, Alarm};
use super::conn::{Conn, Flag, State};
use super::control::{Control, Ctx, MAX_KEY};
use super::ctx::ConnId;
use super::drive::{after, closed, drive, expire, set_deadline, settle, Readiness, Shared};
use super::group::{self, Group, Item, Part, Peers, Scrape};
use super::hub::Hub;
use super::logs::Limits;
use super::metrics::Metrics;
use super::timer::{Target, Tick};
use super::transport::Transport;
use crate::client::ConnectOptions;
use crate::handshake::server::{write_head_response, write_response};
use crate::proto::Connection;
use crate::server::{Handler, ServerConfig};

const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);
const ALARM: Token = Token(usize::MAX - 3);

/// A poll timeout computed shorter than this is recomputed from a fresh
/// clock reading (see `Reactor::run`).
const FRESH_CLOCK_BELOW: Duration = Duration::from_millis(50);

/// A handle to a running reactor, usable from any thread: wake it (the
/// handler's [`on_wake`](Handler::on_wake) then runs on the loop), shut it
/// down gracefully, or stop it.
///
/// ```
/// use std::sync::mpsc::{channel, Receiver, TryRecvError};
/// use wsreactor::{ConnId, Control, Ctx, Handler, Message, Server, ServerConfig};
///
/// /// Broadcasts what another thread produces.
/// struct Feed {
///     news: Receiver<String>,
///     subscribers: Vec<ConnId>,
///     published: usize,
/// }
///
/// impl Handler for Feed {
///     fn on_open(&mut self, ctx: &mut Ctx<'_>) {
///         self.subscribers.push(ctx.id());
///     }
///     fn on_message(&mut self, _ctx: &mut Ctx<'_>, _msg: Message<'_>) {}
///     fn on_close(&mut self, ctx: &mut Ctx<'_>, _code: u16, _reason: &str) {
///         let id = ctx.id();
///         self.subscribers.retain(|s| *s != id);
///     }
///     fn on_wake(&mut self, ctl: &mut Control<'_>) {
///         loop {
///             match self.news.try_recv() {
///                 Ok(item) => {
///                     for &id in &self.subscribers {
///                         let _ = ctl.send(id, Message::Text(&item));
///                     }
///                     self.published += 1;
///                 }
///                 Err(TryRecvError::Empty) => return,
///                 // The producer is done: close everyone with 1001.
///                 Err(TryRecvError::Disconnected) => return ctl.shutdown(),
///             }
///         }
///     }
/// }
///
/// let (tx, news) = channel();
/// let feed = Feed { news, subscribers: Vec::new(), published: 0 };
/// let server = Server::bind("127.0.0.1:0", ServerConfig::default(), feed)?;
/// let remote = server.stopper();
/// let reactor = std::thread::spawn(move || server.run());
///
/// tx.send("first".to_string()).unwrap();
/// remote.wake();
/// drop(tx);
/// remote.wake();
/// let feed = reactor.join().unwrap()?;
/// assert_eq!(feed.published, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// A [`Cluster`](super::Cluster)'s remote reaches every one of its
/// reactors: a stop or shutdown applies to all of them, and a wake calls
/// every reactor's handler.
#[derive(Debug, Clone)]
pub struct Remote {
    pub(crate) group: Arc<Group>,
}

/// The name [`Server::stopper`] has always returned.
pub type Stopper = Remote;

impl Remote {
    /// Stop the loop at once; [`Reactor::run`] returns. Open connections get
    /// `on_close` with 1006 and their sockets are closed without a close
    /// handshake. See [`Remote::shutdown`] for the graceful way.
    pub fn stop(&self) {
        self.group.flags.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Graceful shutdown: stop accepting, send close 1001 ("going away") to
    /// every open connection, wait for the close handshakes up to
    /// `shutdown_timeout`, then return from [`Reactor::run`].
    pub fn shutdown(&self) {
        self.group.flags.shutdown.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Wake the loop: it calls [`Handler::on_wake`] (e.g. to pick up work
    /// another thread queued for the handler).
    pub fn wake(&self) {
        self.group.wake_all();
    }
}

/// A single-threaded event loop holding accepted and outgoing connections.
#[derive(Debug)]
pub struct Reactor<H> {
    hub: Hub,
    listener: Option<TcpListener>,
    remote: Remote,
    handler: H,
    /// When a graceful shutdown must be over.
    shutdown_deadline: Option<Tick>,
    /// Connections held only to deliver a 503 (not counted as connections).
    refused_lingering: usize,
    /// Wakes the poll for the next deadline; without it the poll times out.
    alarm: Option<Alarm>,
    /// Connections a graceful shutdown closed with 1001 (for its last log).
    shutdown_closing: usize,
}

impl<H: Handler> Reactor<H> {
    /// A reactor with no listener and no connections yet.
    ///
    /// # Errors
    /// The OS refuses a poll instance.
    pub fn new(config: ServerConfig, handler: H) -> io::Result<Self> {
        let poll = Poll::new()?;
        let peers = Peers::lone(&poll)?;
        Ok(Self::in_group(config, handler, poll, peers))
    }

    /// A reactor of a group (`poll` has the group's waker for it).
    pub(crate) fn in_group(config: ServerConfig, handler: H, poll: Poll, peers: Peers) -> Self {
        let alarm = alarm(poll.registry(), ALARM);
        let remote = Remote {
            group: Arc::clone(&peers.group),
        };
        let hub = Hub::new(config, poll, peers);
        Self {
            hub,
            listener: None,
            remote,
            handler,
            shutdown_deadline: None,
            refused_lingering: 0,
            alarm,
            shutdown_closing: 0,
        }
    }

    /// Accept WebSocket connections on `addr` (the first address it
    /// resolves to). Returns the bound address.
    ///
    /// # Errors
    /// The address does not resolve or cannot be bound.
    pub fn listen(&mut self, addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        self.listen_on(std_listener)
    }

    /// Accept on a listener bound elsewhere (a group's `SO_REUSEPORT`
    /// socket).
    pub(crate) fn listen_on(
        &mut self,
        std_listener: std::net::TcpListener,
    ) -> io::Result<SocketAddr> {
        std_listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(std_listener);
        let local = listener.local_addr()?;
        self.hub
            .poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        self.listener = Some(listener);
        if self.hub.peers.index == 0 {
            let scheme = if Transport::serves_tls(&self.hub.config) {
                "wss"
            } else {
                "ws"
            };
            log::info!("listening on {scheme}://{local}");
            log::info!("{}", Limits(&self.hub.config));
        }
        Ok(local)
    }

    /// Open a client connection to a `ws://` URL (see [`Control::connect`]).
    ///
    /// # Errors
    /// As [`Control::connect`].
    pub fn connect(&mut self, url: &str) -> io::Result<ConnId> {
        self.control().connect(url)
    }

    /// [`Reactor::connect`] with subprotocols to offer and extra request
    /// headers (e.g. `Authorization`).
    ///
    /// # Errors
    /// As [`Control::connect_with`].
    pub fn connect_with(&mut self, url: &str, options: &ConnectOptions) -> io::Result<ConnId> {
        self.control().connect_with(url, options)
    }

    /// Act on the reactor before [`Reactor::run`]: open connections, set
    /// timers (e.g. the first tick of a periodic push). What it queues goes
    /// out in the loop's first round.
    pub fn control(&mut self) -> Control<'_> {
        Control::new(&mut self.hub, None, Tick::now())
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
        &self.hub.metrics
    }

    /// Run until stopped (or shut down); returns the handler.
    ///
    /// # Errors
    /// The poll itself fails (never because of one connection).
    pub fn run(mut self) -> io::Result<H> {
        // The shared read buffer must hold a full header block plus room to read.
        let size = self
            .hub
            .config
            .read_buffer_size
            .max(self.hub.config.handshake.max_header_bytes + 4096);
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
            // What callbacks (or `control` before the first round) queued.
            self.end_round(now, &mut rbuf, &mut metrics_requests);
            // Checked before sleeping, so a stop or shutdown asked for by a
            // callback of the last round takes effect without waiting for an
            // event.
            let flags = &self.remote.group.flags;
            if flags.shutdown.load(Ordering::SeqCst) && self.shutdown_deadline.is_none() {
                now = Tick::now();
                if self.hub.peers.spans() {
                    // Asked for by a callback here: the others see it too.
                    self.remote.group.nudge_others(self.hub.peers.index);
                }
                self.begin_shutdown(now, &mut rbuf, &mut metrics_requests);
                self.end_round(now, &mut rbuf, &mut metrics_requests);
            }
            let stop = self.remote.group.flags.stop.load(Ordering::SeqCst);
            if stop || self.shutdown_done(now) {
                if stop && self.hub.peers.spans() {
                    self.remote.group.nudge_others(self.hub.peers.index);
                }
                self.log_end(now);
                return Ok(self.finish(now));
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
            let spans = self.hub.peers.spans();
            if spans {
                self.remote.group.busy(self.hub.peers.index, None);
            }
            if let Err(e) = self.hub.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            now = Tick::now();
            if spans {
                self.remote.group.busy(self.hub.peers.index, Some(now));
            }
            self.hub.metrics.loop_iterations += 1;
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
                // One waker per poll: it serves the inbox and `on_wake`.
                if spans {
                    self.drain_inbox(now, &mut rbuf);
                }
                if !spans || self.remote.group.take_app_wake(self.hub.peers.index) {
                    let mut ctl = Control::new(&mut self.hub, None, now);
                    self.handler.on_wake(&mut ctl);
                }
            }
            while let Some((when, target)) = self.hub.timers.pop_due(now) {
                match target {
                    Target::Conn(key, generation) => {
                        // Only the connection's live entry counts; any
                        // other is stale (see `timer`).
                        let due = matches!(self.hub.conns.get(key), Some(c) if c.generation == generation && c.deadline == Some(when));
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
                        let mut ctl = Control::new(&mut self.hub, None, now);
                        self.handler.on_timer(&mut ctl, token);
                    }
                }
            }
            for (id, head) in std::mem::take(&mut metrics_requests) {
                self.answer_metrics(id, head, now, &mut rbuf);
            }
            if spans && !self.hub.peers.scrapes.is_empty() {
                self.answer_late_scrapes(now, &mut rbuf);
            }
        }
    }

    /// Write what publishes queued this round and settle the connections
    /// callbacks acted on, until neither leaves more (settling one may
    /// close it, and its `on_close` may publish).
    fn end_round(&mut self, now: Tick, rbuf: &mut [u8], mr: &mut Vec<(ConnId, bool)>) {
        loop {
            self.hub.flush_dirty();
            if self.hub.touched.is_empty() {
                if self.hub.peers.spans() {
                    self.hub.peers.flush();
                }
                return;
            }
            let mut touched = std::mem::take(&mut self.hub.touched);
            for &id in &touched {
                self.with_conn(id.key, Some(id.generation), now, rbuf, mr, settle);
            }
            touched.clear();
            if self.hub.touched.is_empty() {
                // Kept: its capacity serves the next round.
                self.hub.touched = touched;
            }
        }
    }

    /// When the loop must wake: the next timer, the shutdown deadline, or
    /// the oldest `/metrics` answer waiting for other reactors.
    fn next_deadline(&self) -> Option<Tick> {
        let scrape = self.hub.peers.scrapes.first().map(|s| s.deadline);
        [self.hub.timers.next(), self.shutdown_deadline, scrape]
            .into_iter()
            .flatten()
            .min()
    }

    /// Answer the `/metrics` requests whose wait for the other reactors is
    /// over with the parts that came.
    fn answer_late_scrapes(&mut self, now: Tick, rbuf: &mut [u8]) {
        while let Some(first) = self.hub.peers.scrapes.first() {
            if first.deadline > now {
                return;
            }
            let mut scrape = self.hub.peers.scrapes.remove(0);
            let body = group::render(&mut scrape.parts, self.hub.peers.len());
            self.write_metrics(scrape.id, scrape.head, body, now, rbuf);
        }
    }

    /// Run `f` on connection `key` (if it exists and, with `generation`,
    /// is still that connection); drop it if `f` says so. The connection is
    /// out of the slab meanwhile, so that its callbacks can reach every
    /// other connection.
    fn with_conn(
        &mut self,
        key: usize,
        generation: Option<u32>,
        now: Tick,
        rbuf: &mut [u8],
        metrics_requests: &mut Vec<(ConnId, bool)>,
        f: impl FnOnce(&mut Conn, usize, &mut Shared<'_, H>) -> bool,
    ) {
        let mut conn = match self.hub.conns.get(key) {
            Some(c) if generation.is_none_or(|g| g == c.generation) => {
                match self.hub.conns.take(key) {
                    Some(conn) => conn,
                    None => return,
                }
            }
            _ => return,
        };
        let mut sh = Shared {
            rbuf,
            handler: &mut self.handler,
            hub: &mut self.hub,
            metrics_requests,
            now,
        };
        if f(&mut conn, key, &mut sh) {
            self.hub.conns.put(key, conn);
            return;
        }
        self.hub.conns.remove(key);
        let _ = self.hub.poll.registry().deregister(&mut conn.stream);
        if conn.flags.contains(Flag::Refused) {
            self.refused_lingering -= 1;
        } else {
            self.hub.peers.count_out();
        }
        let id = ConnId {
            key,
            generation: conn.generation,
        };
        let mut sh = Shared {
            rbuf,
            handler: &mut self.handler,
            hub: &mut self.hub,
            metrics_requests,
            now,
        };
        if conn.flags.contains(Flag::Opened) {
            closed(&mut conn, id, &mut sh, 1006, "connection lost");
        } else if conn.client.is_some() {
            let mut ctl = Control::new(sh.hub, None, now);
            sh.handler
                .on_connect_failed(&mut ctl, id, "connection lost or timed out");
        }
    }

    fn accept(&mut self) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        loop {
            let (stream, addr) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the backlog keeps the connection.
                    log::warn!("accept failed: {e}");
                    break;
                }
            };
            if self.hub.peers.handoff {
                let to = self.hub.peers.next_target();
                if to != self.hub.peers.index {
                    self.hub.peers.send(to, Item::Adopt(stream, addr));
                    continue;
                }
            }
            self.admit(stream, addr);
        }
        self.listener = Some(listener);
    }

    /// Serve an accepted socket, or refuse it at `max_connections`.
    fn admit(&mut self, mut stream: mio::net::TcpStream, addr: SocketAddr) {
        let hub = &mut self.hub;
        hub.metrics.accepted_total += 1;
        // The clock per connection: a long batch must not make its
        // handshake deadline early.
        let now = Tick::now();
        let max = hub.config.max_connections;
        let (held, full) = if hub.peers.spans() {
            // Counted first, so that reactors accepting at once cannot
            // pass the limit together.
            let held = hub.peers.group.held.fetch_add(1, Ordering::SeqCst);
            if held >= max {
                hub.peers.group.held.fetch_sub(1, Ordering::SeqCst);
            }
            (held, held >= max)
        } else {
            let held = hub.conns.len() - self.refused_lingering;
            (held, held >= max)
        };
        // Refused sockets get a lingering close like any other (503,
        // FIN, input drained) so the client reads the answer instead of
        // a reset; a few extra slots bound what that may hold.
        let linger_slots = (max / 16).max(64);
        if (full && self.refused_lingering >= linger_slots) || hub.conns.vacant_key() >= MAX_KEY {
            if !full {
                hub.peers.count_out();
            }
            hub.rejects.refused(now, addr, held);
            hub.metrics.refused_total += 1;
            // Best effort: a fresh socket's send buffer takes this at once
            // (not on a TLS port: it would be garbage to a TLS client).
            if !Transport::serves_tls(&hub.config) {
                let _ = stream.write(SERVICE_UNAVAILABLE);
            }
            return;
        }
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("set_nodelay for {addr}: {e}");
        }
        let mut stream = match Transport::accepted(stream, &hub.config) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("TLS for {addr}: {e}");
                if !full {
                    hub.peers.count_out();
                }
                return;
            }
        };
        let key = hub.conns.vacant_key();
        if let Err(e) = hub.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("register {addr}: {e}");
            if !full {
                hub.peers.count_out();
            }
            return;
        }
        hub.next_generation = hub.next_generation.wrapping_add(1);
        let proto = Connection::server(hub.config.protocol);
        let mut conn = Conn::new(stream, hub.next_generation, proto, State::Handshake, now);
        if full {
            hub.rejects.refused(now, addr, held);
            hub.metrics.refused_total += 1;
            conn.state = State::Closing;
            conn.flags.insert(Flag::Refused);
            self.refused_lingering += 1;
            conn.proto.sender().queue_raw(SERVICE_UNAVAILABLE);
            conn.flags.insert(Flag::FinalDeadline);
            if let Some(when) = after(now, hub.config.close_timeout) {
                set_deadline(&mut conn, key, &mut hub.timers, when);
            }
        } else if let Some(when) = after(now, hub.config.handshake_timeout) {
            set_deadline(&mut conn, key, &mut hub.timers, when);
        }
        hub.conns.insert(conn);
        log::trace!("accepted {addr} as {key}");
    }

    /// What the other reactors posted: publishes to sequence or deliver,
    /// sockets to serve, metrics to share or collect.
    fn drain_inbox(&mut self, now: Tick, rbuf: &mut [u8]) {
        let mut items = std::mem::take(&mut self.hub.peers.spare);
        self.remote
            .group
            .take_inbox(self.hub.peers.index, &mut items);
        // As with pipelined input: a lone delivery is written at once, those
        // of a batch are queued and leave in one writev per subscriber at
        // the end of the round.
        let mut left = items.len();
        for item in items.drain(..) {
            left -= 1;
            let corked = left > 0;
            match item {
                Item::Route {
                    topic,
                    frame,
                    except,
                } => {
                    let mut ctl = Control::new(&mut self.hub, None, now);
                    group::sequence(&mut ctl, topic, frame, except, corked);
                }
                Item::Deliver {
                    topic,
                    frame,
                    except,
                } => {
                    let mut ctl = Control::new(&mut self.hub, None, now);
                    group::deliver_here(&mut ctl, &topic, &frame, except, corked);
                }
                Item::Adopt(stream, addr) => {
                    if self.shutdown_deadline.is_none() {
                        self.admit(stream, addr);
                    }
                }
                Item::Scrape { from, id } => {
                    let part = Box::new(Part::of(&mut self.hub));
                    self.hub.peers.send(from, Item::Scraped { id, part });
                }
                Item::Scraped { id, part } => {
                    let reactors = self.hub.peers.len();
                    let scrapes = &mut self.hub.peers.scrapes;
                    // Gone if it was answered without this part.
                    let Some(at) = scrapes.iter().position(|s| s.id == id) else {
                        continue;
                    };
                    scrapes[at].parts.push(*part);
                    if scrapes[at].parts.len() == reactors {
                        let mut scrape = scrapes.remove(at);
                        let body = group::render(&mut scrape.parts, reactors);
                        self.write_metrics(scrape.id, scrape.head, body, now, rbuf);
                    }
                }
            }
        }
        self.hub.peers.spare = items;
    }

    /// Stop accepting and start the close handshake everywhere.
    fn begin_shutdown(&mut self, now: Tick, rbuf: &mut [u8], mr: &mut Vec<(ConnId, bool)>) {
        self.shutdown_closing = self
            .hub
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Open)
            .count();
        log::info!(
            "shutting down: closing {} connections with 1001 (timeout {:?})",
            self.shutdown_closing,
            self.hub.config.shutdown_timeout
        );
        self.shutdown_deadline = Some(now + self.hub.config.shutdown_timeout);
        if let Some(mut l) = self.listener.take() {
            let _ = self.hub.poll.registry().deregister(&mut l);
        }
        for id in self.hub.conns.ids() {
            self.with_conn(
                id.key,
                Some(id.generation),
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
            Some(deadline) => self.hub.conns.is_empty() || now >= deadline,
            None => false,
        }
    }

    fn log_end(&self, now: Tick) {
        let left = self.hub.conns.len();
        match self.shutdown_deadline {
            Some(_) if left == 0 => log::info!(
                "shutdown complete: {} connections closed",
                self.shutdown_closing
            ),
            Some(deadline) if now >= deadline => log::warn!(
                "shutdown timeout ({:?}) hit: {left} of {} connections still closing, dropped",
                self.hub.config.shutdown_timeout,
                self.shutdown_closing.max(left)
            ),
            Some(_) => log::info!("stopped during shutdown: {left} connections dropped"),
            None if left > 0 => log::info!("stopped: {left} connections dropped"),
            None => log::debug!("stopped"),
        }
    }

    /// Leave the loop: whatever is still open ends abruptly.
    fn finish(mut self, now: Tick) -> H {
        for id in self.hub.conns.ids() {
            let Some(mut conn) = self.hub.conns.remove(id.key) else {
                continue;
            };
            if !conn.flags.contains(Flag::Refused) {
                self.hub.peers.count_out();
            }
            if conn.flags.contains(Flag::Opened) {
                conn.flags.remove(Flag::Opened);
                self.hub.topics.remove_conn(id);
                let mut ctx = Ctx {
                    id,
                    ctl: Control::new(&mut self.hub, None, now),
                };
                self.handler.on_close(&mut ctx, 1006, "reactor stopped");
            }
        }
        self.handler
    }

    fn answer_metrics(&mut self, id: ConnId, head: bool, now: Tick, rbuf: &mut [u8]) {
        if self.hub.peers.spans() {
            // Every reactor's part; answered when the last one is in.
            let part = Part::of(&mut self.hub);
            self.hub.peers.scrapes.push(Scrape {
                id,
                head,
                parts: vec![part],
                deadline: now + group::SCRAPE_WAIT,
            });
            let me = self.hub.peers.index;
            for to in (0..self.hub.peers.len()).filter(|&to| to != me) {
                self.hub.peers.send(to, Item::Scrape { from: me, id });
            }
            return;
        }
        let queued: usize = self
            .hub
            .conns
            .iter()
            .map(|(_, c)| c.proto.pending_len())
            .sum();
        self.hub.metrics.topics = self.hub.topics.len() as u64;
        self.hub.metrics.subscriptions = self.hub.topics.subscriptions() as u64;
        let body = self.hub.metrics.render(queued, self.hub.conns.len());
        self.write_metrics(id, head, body, now, rbuf);
    }

    /// Answer a `/metrics` request with `body` and the application's own
    /// metrics (from this reactor's handler).
    fn write_metrics(
        &mut self,
        id: ConnId,
        head: bool,
        mut body: String,
        now: Tick,
        rbuf: &mut [u8],
    ) {
        self.handler.on_metrics(&mut body);
        let mut response = Vec::with_capacity(body.len() + 128);
        let headers = [
            ("Content-Type", "text/plain; version=0.0.4"),
            ("Connection", "close"),
        ];
        if head {
            write_head_response(&mut response, 200, &headers, body.as_bytes());
        } else {
            write_response(&mut response, 200, &headers, body.as_bytes());
        }
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;
    use std::time::Instant;

    use super::*;
    use crate::Message;

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
        fn on_close(&mut self, _ctx: &mut Ctx<'_>, code: u16, reason: &str) {
            // Stopping the reactor closes everyone; only earlier closes count.
            if reason != "reactor stopped" {
                self.closes.push((code, reason.to_string()));
            }
        }
        fn on_timer(&mut self, ctl: &mut Control<'_>, _token: u64) {
            let elapsed = self.started.elapsed();
            if elapsed >= self.sample_from {
                let entries = ctl.hub.timers.conn_entries();
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
        reactor.control().set_timer(ms(2), 0);
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
