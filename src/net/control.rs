//! Acting on connections from any callback: [`Control`] reaches every
//! connection of the reactor by [`ConnId`], and [`Ctx`] is a `Control`
//! focused on the connection a callback is about.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::conn::{ClientSetup, Conn, State};
use super::ctx::{write_once, ConnId, Link, Sent};
use super::drive::{after, set_deadline};
use super::hub::{deliver, Hub, Publication};
use super::inplace::InPlace;
use super::metrics::Metrics;
use super::rand::{random_16, random_u64};
use super::timer::Tick;
use super::transport::Transport;
use super::url::WsUrl;
use crate::client::ConnectOptions;
use crate::handshake::client::write_request;
use crate::proto::{Connection, DeflatedForms, Message, OpCode, SendError, Sender, SharedFrame};
use crate::topics::TopicError;

/// Slab keys at or above this are never handed out: the reactor's own
/// tokens sit at the top of the range, and timer entries store keys in 32
/// bits.
pub(crate) const MAX_KEY: usize = {
    let timer_keys = u32::MAX as usize;
    let tokens = usize::MAX - 16;
    if timer_keys < tokens {
        timer_keys
    } else {
        tokens
    }
};

/// The connection a [`Ctx`] is about, borrowed piece by piece while the
/// reactor decodes its input.
#[derive(Debug)]
pub(crate) struct Own<'a> {
    pub(crate) id: ConnId,
    pub(crate) tx: &'a mut Sender,
    pub(crate) stream: &'a mut Transport,
    pub(crate) broken: &'a mut bool,
    /// The message being handled, if it can be sent back in place.
    pub(crate) in_place: Option<InPlace>,
    /// More received frames wait in the same read: queue sends, flush once.
    pub(crate) cork: bool,
}

/// Acting on any connection of the reactor, and on its timers and topics.
///
/// Every callback reaches one: [`Handler::on_wake`](crate::Handler::on_wake)
/// and [`Handler::on_timer`](crate::Handler::on_timer) get it directly, the
/// connection callbacks through [`Ctx::control`], and before
/// [`Reactor::run`](super::Reactor::run) [`Reactor::control`](super::Reactor::control)
/// gives one.
///
/// ```
/// use wsreactor::{Control, Ctx, Handler, Message};
///
/// /// Sends every message to the connection that opened first.
/// struct ToFirst(Option<wsreactor::ConnId>);
///
/// impl Handler for ToFirst {
///     fn on_open(&mut self, ctx: &mut Ctx<'_>) {
///         self.0.get_or_insert(ctx.id());
///     }
///     fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
///         if let Some(first) = self.0 {
///             let _ = ctx.control().send(first, msg);
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Control<'a> {
    pub(crate) hub: &'a mut Hub,
    /// The connection being driven: out of the slab while its callback
    /// runs, so reached through here.
    pub(crate) own: Option<Own<'a>>,
    pub(crate) now: Tick,
}

impl<'a> Control<'a> {
    pub(crate) fn new(hub: &'a mut Hub, own: Option<Own<'a>>, now: Tick) -> Self {
        Self { hub, own, now }
    }

    /// Open a client connection to `ws://host[:port][/path]`. The host is
    /// resolved with the system resolver (blocking, once per call); the TCP
    /// connect and the handshake then proceed in the loop. The handler gets
    /// [`Handler::on_open`](crate::Handler::on_open) when the handshake
    /// succeeds, or [`Handler::on_connect_failed`](crate::Handler::on_connect_failed)
    /// if it fails or does not finish within `handshake_timeout`.
    ///
    /// # Errors
    /// A bad URL, a name that does not resolve, too many connections, or a
    /// socket error.
    pub fn connect(&mut self, url: &str) -> io::Result<ConnId> {
        self.connect_with(url, &ConnectOptions::default())
    }

    /// [`Control::connect`] with subprotocols to offer and extra request
    /// headers (e.g. `Authorization`); the server's choice of subprotocol
    /// must be one of those offered.
    ///
    /// # Errors
    /// As [`Control::connect`], or an option that would not make a valid
    /// request (a header name or value with a line break, a bad token).
    pub fn connect_with(&mut self, url: &str, options: &ConnectOptions) -> io::Result<ConnId> {
        options.check()?;
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
        self.check_room()?;
        let tls_host = url.tls.then_some(url.host.as_str());
        self.adopt(
            TcpStream::connect(addr)?,
            &url.host_header(),
            &url.path,
            options,
            tls_host,
        )
    }

    /// Open a client connection to `addr`, sending `host` and `path` in the
    /// request (no name resolution).
    ///
    /// # Errors
    /// Too many connections, or a socket error.
    pub fn connect_addr(&mut self, addr: SocketAddr, host: &str, path: &str) -> io::Result<ConnId> {
        self.check_room()?;
        self.adopt(
            TcpStream::connect(addr)?,
            host,
            path,
            &ConnectOptions::default(),
            None,
        )
    }

    /// Open a client connection over `stream`, a non-blocking TCP socket the
    /// caller has set up and started connecting (e.g. bound to a chosen
    /// source address first, which `connect` cannot do), sending `host` and
    /// `path` in the request. The handshake then proceeds as for
    /// [`Control::connect`].
    ///
    /// # Errors
    /// Too many connections, or the socket cannot be registered.
    pub fn connect_stream(
        &mut self,
        stream: std::net::TcpStream,
        host: &str,
        path: &str,
    ) -> io::Result<ConnId> {
        self.connect_stream_with(stream, host, path, &ConnectOptions::default())
    }

    /// [`Control::connect_stream`] with subprotocols to offer and extra
    /// request headers (as [`Control::connect_with`]).
    ///
    /// # Errors
    /// As [`Control::connect_stream`], or an option that would not make a
    /// valid request.
    pub fn connect_stream_with(
        &mut self,
        stream: std::net::TcpStream,
        host: &str,
        path: &str,
        options: &ConnectOptions,
    ) -> io::Result<ConnId> {
        options.check()?;
        self.check_room()?;
        stream.set_nonblocking(true)?;
        self.adopt(TcpStream::from_std(stream), host, path, options, None)
    }

    fn check_room(&self) -> io::Result<()> {
        let hub = &*self.hub;
        if hub.held() >= hub.config.max_connections || hub.conns.vacant_key() >= MAX_KEY {
            return Err(io::Error::other("connection limit reached"));
        }
        Ok(())
    }

    /// Register a connecting socket as a client connection (TLS towards
    /// `tls_host` for `wss://`).
    fn adopt(
        &mut self,
        stream: TcpStream,
        host: &str,
        path: &str,
        options: &ConnectOptions,
        tls_host: Option<&str>,
    ) -> io::Result<ConnId> {
        let hub = &mut *self.hub;
        let mut stream = Transport::connecting(stream, tls_host, &hub.config)?;
        let key = hub.conns.vacant_key();
        hub.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut request = Vec::with_capacity(256);
        let offer = hub.config.deflate.offer();
        let extensions = offer.as_ref().map(|o| o.as_str());
        let protocols: Vec<&str> = options.protocols.iter().map(String::as_str).collect();
        let headers: Vec<(&str, &str)> = options
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let client_key = write_request(
            &mut request,
            host,
            path,
            &random_16(),
            &protocols,
            extensions,
            &headers,
        );
        hub.next_generation = hub.next_generation.wrapping_add(1);
        let proto = Connection::client(hub.config.protocol, random_u64());
        let mut conn = Conn::new(
            stream,
            hub.next_generation,
            proto,
            State::Connecting,
            self.now,
        );
        conn.client = Some(Box::new(ClientSetup {
            request,
            expected_accept: client_key.expected_accept().to_string(),
            protocols: options.protocols.clone(),
        }));
        if let Some(when) = after(self.now, hub.config.handshake_timeout) {
            set_deadline(&mut conn, key, &mut hub.timers, when);
        }
        let generation = conn.generation;
        let inserted = hub.conns.insert(conn);
        debug_assert_eq!(inserted, key);
        hub.peers.count_in();
        Ok(ConnId { key, generation })
    }

    /// Send a message on connection `id` (see [`Ctx::send`]).
    ///
    /// # Errors
    /// [`SendError::Closed`] if the connection is gone, not open yet, or
    /// closing; [`SendError::Overflow`] as for `Ctx::send`.
    pub fn send(&mut self, id: ConnId, msg: Message<'_>) -> Result<Sent, SendError> {
        self.with(id, |link, cork| {
            link.send(msg.opcode(), msg.as_bytes(), cork)
        })
    }

    /// Send a text message on connection `id`.
    ///
    /// # Errors
    /// As [`Control::send`].
    pub fn send_text(&mut self, id: ConnId, text: &str) -> Result<Sent, SendError> {
        self.with(id, |link, cork| {
            link.send(OpCode::Text, text.as_bytes(), cork)
        })
    }

    /// Send a binary message on connection `id`.
    ///
    /// # Errors
    /// As [`Control::send`].
    pub fn send_binary(&mut self, id: ConnId, data: &[u8]) -> Result<Sent, SendError> {
        self.with(id, |link, cork| link.send(OpCode::Binary, data, cork))
    }

    /// Send a ping on connection `id`.
    ///
    /// # Errors
    /// As [`Control::send`], or [`SendError::ControlTooLong`].
    pub fn ping(&mut self, id: ConnId, payload: &[u8]) -> Result<Sent, SendError> {
        self.with(id, |link, cork| link.control(cork, |tx| tx.ping(payload)))
    }

    /// Start the close handshake on connection `id`.
    ///
    /// # Errors
    /// As [`Control::send`], or an invalid code or reason.
    pub fn close(&mut self, id: ConnId, code: u16, reason: &str) -> Result<Sent, SendError> {
        self.with(id, |link, cork| {
            link.control(cork, |tx| tx.close(code, reason))
        })
    }

    /// Bytes queued for connection `id` and not yet taken by the kernel (0
    /// if it is gone).
    pub fn queued(&mut self, id: ConnId) -> usize {
        if self.hub.pending.holds_for(id) {
            super::coalesce::drain(self.hub, false);
        }
        match &self.own {
            Some(own) if own.id == id => own.tx.pending_len(),
            _ => self
                .hub
                .conns
                .get_id(id)
                .map_or(0, |c| c.proto.sender().pending_len()),
        }
    }

    /// Subscribe connection `id` to `topic`; `Ok(false)` if it already was.
    /// The subscription ends with the connection.
    ///
    /// # Errors
    /// [`TopicError::NotOpen`] if `id` is not an open connection,
    /// [`TopicError::BadName`] for an empty name or one over
    /// [`MAX_TOPIC_LEN`](crate::topics::MAX_TOPIC_LEN) bytes.
    pub fn subscribe(&mut self, id: ConnId, topic: &str) -> Result<bool, TopicError> {
        if !self.is_open(id) {
            return Err(TopicError::NotOpen);
        }
        if self.hub.pending.holds_topic(topic) {
            super::coalesce::drain(self.hub, false);
        }
        self.hub.topics.subscribe(id, topic)
    }

    /// Unsubscribe connection `id` from `topic`; `false` if it was not
    /// subscribed.
    pub fn unsubscribe(&mut self, id: ConnId, topic: &str) -> bool {
        if self.hub.pending.holds_topic(topic) {
            super::coalesce::drain(self.hub, false);
        }
        self.hub.topics.unsubscribe(id, topic)
    }

    /// Number of subscribers of `topic` (on this reactor).
    pub fn subscribers(&self, topic: &str) -> usize {
        self.hub.topics.subscribers(topic).len()
    }

    /// Publish `msg` to every subscriber of `topic`; returns how many had it
    /// queued. The frame is encoded once and shared by every subscriber's
    /// queue; each subscriber's deliveries of one loop round go out in one
    /// vectored write at the end of the round, in publish order. A
    /// subscriber whose queued output would pass
    /// [`ServerConfig::max_subscriber_backlog`](crate::ServerConfig::max_subscriber_backlog)
    /// gets [`ServerConfig::on_slow_subscriber`](crate::ServerConfig::on_slow_subscriber)
    /// instead.
    ///
    /// Publishes to one topic (with the same exception) that a connection
    /// pipelined, handled while more of its input waits in the same read,
    /// are framed back to back into one pooled buffer and delivered
    /// together when the burst ends, or before anything else from this
    /// reactor reaches one of their subscribers (a send, a publish to
    /// another topic, a subscription change to the topic): each subscriber
    /// queues the burst as one slice, in exactly the order it would get the
    /// messages one by one; the backlog limit and policy still apply
    /// message by message, and permessage-deflate subscribers get each
    /// message on its own. For such a publish the count returned is the
    /// topic's subscribers but `except` (the limit is applied later).
    ///
    /// In a [`Cluster`](super::Cluster) of several reactors, the publish
    /// reaches the subscribers of every reactor, and every subscriber sees
    /// a topic's messages in one order: the topic's owner reactor (a fixed
    /// hash of its name) sequences every publish to it and hands the shared
    /// frame to the other reactors. The count returned is then only the
    /// deliveries queued on this reactor at once (0 when another reactor
    /// owns the topic: even this reactor's subscribers get it after the
    /// round trip through the owner).
    pub fn publish(&mut self, topic: &str, msg: Message<'_>) -> usize {
        self.publish_except(topic, msg, None)
    }

    /// [`Control::publish`] to every subscriber but `except` (e.g. the
    /// sender).
    pub fn publish_except(
        &mut self,
        topic: &str,
        msg: Message<'_>,
        except: Option<ConnId>,
    ) -> usize {
        if self.hub.peers.spans() {
            return super::group::publish(self, topic, msg, except);
        }
        if let Some(n) = super::coalesce::publish(self, topic, &msg, except) {
            return n;
        }
        // A lone delivery is written at once, as a raw broadcast would; one
        // of a pipelined burst (more input follows in this read) is queued,
        // so that a subscriber's share of the burst leaves in one writev at
        // the end of the round.
        let corked = self.own.as_ref().is_some_and(|o| o.cork);
        let delivered = self.fan_out(topic, except, corked, |frames| {
            SharedFrame::new_in(frames, msg.opcode(), msg.as_bytes())
        });
        match delivered {
            Some(n) => {
                self.hub.metrics.publishes_total += 1;
                n
            }
            None => 0,
        }
    }

    /// Hand a publish to this reactor's subscribers of `topic` but `except`:
    /// written at once to an idle one unless `corked`, else through
    /// [`deliver`] (backlog limit, slow policy, the end-of-round writev).
    /// `frame` is called only if there is a subscriber; `None` if there is
    /// none. Local publishes and those from other reactors both come here.
    pub(crate) fn fan_out(
        &mut self,
        topic: &str,
        except: Option<ConnId>,
        corked: bool,
        frame: impl FnOnce(&mut crate::proto::FramePool) -> SharedFrame,
    ) -> Option<usize> {
        let hub = &mut *self.hub;
        let subscribers = hub.topics.subscribers(topic);
        if subscribers.is_empty() {
            return None;
        }
        let mut publication = Publication {
            frame: frame(&mut hub.frames),
            forms: DeflatedForms::new(),
        };
        let mut delivered = 0;
        for &id in subscribers {
            if Some(id) == except {
                continue;
            }
            let (tx, stream, broken) = match &mut self.own {
                Some(own) if own.id == id => (&mut *own.tx, &mut *own.stream, &mut *own.broken),
                _ => match hub.conns.get_id(id) {
                    Some(c) if c.state == State::Open => {
                        (c.proto.sender(), &mut c.stream, &mut c.broken)
                    }
                    _ => continue,
                },
            };
            if !corked
                && !*broken
                && tx.can_write_shared(&publication.frame)
                && publication.frame.len() <= hub.config.max_subscriber_backlog
            {
                let bytes = publication.frame.bytes();
                match write_once(stream, |s| s.write(bytes)) {
                    Some(n) => {
                        if n < bytes.len() {
                            // Refused in part: the rest is queued, and the
                            // end of the round flushes it (a TLS transport
                            // may have stopped short of the socket's limit,
                            // so no writable edge is owed).
                            tx.queue_shared_from(&publication.frame, n);
                            hub.dirty.push(id);
                        }
                        hub.metrics.deliveries_total += 1;
                        delivered += 1;
                    }
                    None => {
                        *broken = true;
                        hub.touched.push(id);
                    }
                }
                continue;
            }
            let ok = deliver(
                id,
                tx,
                &mut publication,
                &hub.config,
                &mut hub.metrics,
                &mut hub.dirty,
                &mut hub.touched,
            );
            delivered += usize::from(ok.is_ok());
        }
        Some(delivered)
    }

    /// The counters so far.
    pub fn metrics(&self) -> &Metrics {
        &self.hub.metrics
    }

    /// Is `id` an open WebSocket connection?
    pub fn is_open(&self, id: ConnId) -> bool {
        match &self.own {
            Some(own) if own.id == id => true,
            _ => {
                matches!(self.hub.conns.get(id.key), Some(c) if c.generation == id.generation && c.state == State::Open)
            }
        }
    }

    /// Number of connections held (in any state) by this reactor.
    pub fn connections(&self) -> usize {
        self.hub.conns.len()
    }

    /// Call [`Handler::on_timer`](crate::Handler::on_timer) with `token`
    /// after `delay`.
    pub fn set_timer(&mut self, delay: Duration, token: u64) {
        self.hub.timers.push_app(self.now + delay, token);
    }

    /// Stop the loop after this callback.
    pub fn stop(&mut self) {
        self.hub.flags.stop.store(true, Ordering::SeqCst);
    }

    /// Begin a graceful shutdown after this callback (see
    /// [`Remote::shutdown`](super::Remote::shutdown)).
    pub fn shutdown(&mut self) {
        self.hub.flags.shutdown.store(true, Ordering::SeqCst);
    }

    /// Run `f` on connection `id`'s write path, if it is open.
    fn with(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut Link<'_>, bool) -> Result<Sent, SendError>,
    ) -> Result<Sent, SendError> {
        if self.hub.pending.holds_for(id) {
            // Publishes before this send reach `id` before it.
            super::coalesce::drain(self.hub, false);
        }
        let hub = &mut *self.hub;
        if let Some(own) = self.own.as_mut().filter(|o| o.id == id) {
            let mut link = Link {
                tx: own.tx,
                stream: own.stream,
                broken: own.broken,
                metrics: &mut hub.metrics,
                config: &hub.config,
                scratch: &mut hub.scratch,
                in_place: own.in_place,
            };
            // Settled by the reactor when the callback returns.
            return f(&mut link, own.cork);
        }
        let conn = match hub.conns.get_id(id) {
            Some(c) if c.state == State::Open => c,
            _ => return Err(SendError::Closed),
        };
        let mut link = Link {
            tx: conn.proto.sender(),
            stream: &mut conn.stream,
            broken: &mut conn.broken,
            metrics: &mut hub.metrics,
            config: &hub.config,
            scratch: &mut hub.scratch,
            in_place: None,
        };
        let result = f(&mut link, false);
        // Settled (and dropped if broken) at the end of the round.
        hub.touched.push(id);
        result
    }
}

/// A handle to the connection a callback is about: a [`Control`] focused on
/// it.
///
/// Sends go straight to the socket when nothing is queued before them (the
/// whole frame in one write); only what the kernel does not take is queued.
/// While more received frames wait in the same read batch, sends are queued
/// instead ("corked") and flushed once after the batch, so pipelined
/// messages cost one write, not one each. In
/// [`Handler::on_close`](crate::Handler::on_close) the connection is gone:
/// its own sends fail with [`SendError::Closed`], the rest of the reactor is
/// still reachable.
///
/// ```
/// use wsreactor::{Ctx, Handler, Message};
///
/// /// A chat room: everyone who connects joins "room"; every message goes
/// /// to all members but its sender.
/// struct Room;
///
/// impl Handler for Room {
///     fn on_open(&mut self, ctx: &mut Ctx<'_>) {
///         ctx.subscribe("room").expect("the connection is open");
///     }
///     fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
///         ctx.publish_others("room", msg);
///     }
/// }
/// ```
///
/// What a send reports:
///
/// ```
/// use wsreactor::{Ctx, Handler, Message, Sent};
///
/// struct Greeter;
///
/// impl Handler for Greeter {
///     fn on_open(&mut self, ctx: &mut Ctx<'_>) {
///         let _ = ctx.send_text(&format!("welcome, {}", ctx.id()));
///     }
///
///     fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
///         if msg.as_bytes() == b"bye" {
///             let _ = ctx.close(1000, "bye");
///             return;
///         }
///         // A peer that does not read what we send: skip it for now.
///         if ctx.queued() > 1 << 20 {
///             return;
///         }
///         match ctx.send(msg) {
///             Ok(Sent::Written) => {}             // the kernel has it all
///             Ok(Sent::Queued) => {}              // goes out as the socket drains
///             Err(e) => eprintln!("{}: {e}", ctx.id()), // closing, or over the limit
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Ctx<'a> {
    pub(crate) id: ConnId,
    pub(crate) ctl: Control<'a>,
}

impl<'a> Ctx<'a> {
    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The whole reactor: other connections, timers, topics.
    pub fn control(&mut self) -> &mut Control<'a> {
        &mut self.ctl
    }

    /// Send a message of the same kind as `msg`.
    ///
    /// # Errors
    /// [`SendError::Closed`] once the close handshake has started;
    /// [`SendError::Overflow`] if the queued output would pass
    /// `max_queued_output` (then `on_overflow` applies).
    #[inline]
    pub fn send(&mut self, msg: Message<'_>) -> Result<Sent, SendError> {
        self.ctl.send(self.id, msg)
    }

    /// Send a text message.
    ///
    /// # Errors
    /// As [`Ctx::send`].
    pub fn send_text(&mut self, text: &str) -> Result<Sent, SendError> {
        self.ctl.send_text(self.id, text)
    }

    /// Send a binary message.
    ///
    /// # Errors
    /// As [`Ctx::send`].
    pub fn send_binary(&mut self, data: &[u8]) -> Result<Sent, SendError> {
        self.ctl.send_binary(self.id, data)
    }

    /// Send a ping (at most 125 bytes of payload).
    ///
    /// # Errors
    /// [`SendError::ControlTooLong`], or [`SendError::Closed`].
    pub fn ping(&mut self, payload: &[u8]) -> Result<Sent, SendError> {
        self.ctl.ping(self.id, payload)
    }

    /// Start the close handshake.
    ///
    /// # Errors
    /// [`SendError::InvalidCloseCode`], [`SendError::ControlTooLong`] for a
    /// reason over 123 bytes, or [`SendError::Closed`].
    pub fn close(&mut self, code: u16, reason: &str) -> Result<Sent, SendError> {
        self.ctl.close(self.id, code, reason)
    }

    /// Bytes queued for this connection and not yet taken by the kernel.
    pub fn queued(&mut self) -> usize {
        self.ctl.queued(self.id)
    }

    /// Subscribe this connection to `topic` (see [`Control::subscribe`]).
    ///
    /// # Errors
    /// As [`Control::subscribe`].
    pub fn subscribe(&mut self, topic: &str) -> Result<bool, TopicError> {
        self.ctl.subscribe(self.id, topic)
    }

    /// Unsubscribe this connection from `topic`.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.ctl.unsubscribe(self.id, topic)
    }

    /// Publish to every subscriber of `topic`, this connection included if
    /// it subscribed (see [`Control::publish`]).
    pub fn publish(&mut self, topic: &str, msg: Message<'_>) -> usize {
        self.ctl.publish_except(topic, msg, None)
    }

    /// Publish to every subscriber of `topic` but this connection.
    pub fn publish_others(&mut self, topic: &str, msg: Message<'_>) -> usize {
        let id = self.id;
        self.ctl.publish_except(topic, msg, Some(id))
    }
}
