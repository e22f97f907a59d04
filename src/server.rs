//! The public server API: a [`Handler`] for the application, a plain
//! [`ServerConfig`] and the [`Server`] that binds and runs the reactor.

use std::time::Duration;

use crate::ext::DeflateConfig;
use crate::handshake::server::{PlainHttp, Upgrade};
use crate::handshake::Limits;
use crate::proto::{self, Message};

pub use crate::net::{
    Accept, Cluster, ConnId, Control, Ctx, Metrics, Reactor, Remote, Sent, Server, Stopper,
};

/// What [`Handler::on_handshake`] decides about an upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'b> {
    /// Answer 101. `protocol` must be one of the subprotocols the client
    /// offered (RFC 6455 §4.2.2); `None` selects none.
    Accept {
        /// The chosen subprotocol.
        protocol: Option<&'b str>,
    },
    /// Answer with an HTTP error and close.
    Reject {
        /// The HTTP status (e.g. 401, 403).
        status: u16,
        /// A one-line text body.
        reason: &'static str,
    },
}

impl Decision<'_> {
    /// Accept without a subprotocol.
    pub const ACCEPT: Decision<'static> = Decision::Accept { protocol: None };
}

/// The application's side of the reactor. One handler serves every
/// connection of the (single-threaded) loop; [`ConnId`] tells them apart.
/// Only [`on_message`](Handler::on_message) must be written.
///
/// ```
/// use std::collections::HashSet;
/// use wsreactor::handshake::server::Upgrade;
/// use wsreactor::{ConnId, Ctx, Decision, Handler, Message, Server, ServerConfig};
///
/// /// Requires a token, speaks subprotocol "upper.v1": answers every text
/// /// in upper case.
/// struct Upper {
///     open: HashSet<ConnId>,
/// }
///
/// impl Handler for Upper {
///     fn on_handshake<'b>(&mut self, _id: ConnId, req: &Upgrade<'_, 'b>) -> Decision<'b> {
///         let authorized = req.headers().iter().any(|h| {
///             h.name.eq_ignore_ascii_case("authorization") && h.value == b"Bearer s3cret"
///         });
///         if !authorized {
///             return Decision::Reject { status: 401, reason: "bearer token required" };
///         }
///         // Select the subprotocol only if the client offered it.
///         let offered = req.protocols().any(|p| p == b"upper.v1");
///         Decision::Accept { protocol: offered.then_some("upper.v1") }
///     }
///
///     fn on_open(&mut self, ctx: &mut Ctx<'_>) {
///         self.open.insert(ctx.id());
///     }
///
///     fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
///         match msg {
///             Message::Text(text) => {
///                 let _ = ctx.send_text(&text.to_uppercase());
///             }
///             // 1003: a data type we cannot accept.
///             Message::Binary(_) => {
///                 let _ = ctx.close(1003, "text only");
///             }
///         }
///     }
///
///     fn on_close(&mut self, ctx: &mut Ctx<'_>, _code: u16, _reason: &str) {
///         let id = ctx.id();
///         self.open.remove(&id);
///     }
/// }
///
/// let server = Server::bind("127.0.0.1:0", ServerConfig::default(), Upper { open: HashSet::new() })?;
/// # let _ = server;
/// // server.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Handler {
    /// A valid upgrade request arrived (after the built-in checks: RFC 6455
    /// rules and [`ServerConfig::allowed_origins`]). Decide whether to
    /// accept it (and with which subprotocol) or reject it with an HTTP
    /// status, e.g. for a missing or bad `Authorization: Bearer` token.
    /// Default: accept without a subprotocol.
    fn on_handshake<'b>(&mut self, id: ConnId, req: &Upgrade<'_, 'b>) -> Decision<'b> {
        let _ = (id, req);
        Decision::ACCEPT
    }

    /// A connection completed its opening handshake.
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx;
    }

    /// A complete message arrived. It borrows the reactor's read buffer (or
    /// the connection's assembly buffer) and is valid for this call only.
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>);

    /// A pong arrived (the answer to a heartbeat or [`Ctx::ping`], or
    /// unsolicited).
    fn on_pong(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {
        let _ = (ctx, payload);
    }

    /// The connection ended; called once for every connection that was
    /// opened. `code` is the peer's close code (1005 if its close carried
    /// none), the code we closed or failed the connection with, or 1006 if
    /// the transport ended without a close frame. `ctx.id()` is the
    /// connection that ended: its own sends fail, its subscriptions are
    /// already gone, every other connection is reachable.
    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        let _ = (ctx, code, reason);
    }

    /// A client connection could not be established: the TCP connect or
    /// the opening handshake failed or timed out. `on_close` is not called
    /// for it.
    fn on_connect_failed(&mut self, ctl: &mut Control<'_>, id: ConnId, reason: &str) {
        let _ = (ctl, id, reason);
    }

    /// A plain HTTP request (not an upgrade) on a path other than
    /// `/healthz` and the metrics path, e.g. to serve a page. `None` (the
    /// default): 426, this is a WebSocket endpoint.
    fn on_http(&mut self, req: &PlainHttp<'_>) -> Option<HttpResponse> {
        let _ = req;
        None
    }

    /// `/metrics` is being answered: append the application's own metrics
    /// (Prometheus text) to `out`. With several reactors, only the handler
    /// of the reactor that answers the request is asked (the server's own
    /// metrics are summed over the reactors, the application's are not).
    fn on_metrics(&mut self, out: &mut String) {
        let _ = out;
    }

    /// Another thread called [`Remote::wake`].
    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        let _ = ctl;
    }

    /// A timer set with [`Control::set_timer`] is due.
    fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) {
        let _ = (ctl, token);
    }
}

/// A plain HTTP answer from [`Handler::on_http`]: sent with
/// `Connection: close`; `HEAD` gets it without the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status (e.g. 200, 404).
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: std::borrow::Cow<'static, [u8]>,
}

/// What to do with a connection whose queued output would pass its limit.
/// In every case the send that hit the limit returns
/// [`SendError::Overflow`](crate::proto::SendError::Overflow) and queues
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Only refuse the message; the connection stays (the application
    /// decides, e.g. to drop messages for a slow consumer).
    Refuse,
    /// Start the close handshake with this code (1008 policy violation, or
    /// 1013 try again later).
    Close(u16),
    /// Drop the connection at once, without a close frame.
    Drop,
}

/// What to do with a subscriber whose queued output would pass
/// [`ServerConfig::max_subscriber_backlog`] when a publish reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Skip this delivery (counted in `deliveries_dropped_total`); later
    /// ones are delivered again once the backlog has drained.
    Drop,
    /// Start the close handshake with this code (the default, 1008 "slow
    /// subscriber": the subscriber learns that it missed messages and can
    /// reconnect and recover, rather than see a silent gap).
    Close(u16),
}

/// Reactor settings, for accepted and outgoing connections alike. Every
/// field says its default and what it protects against.
///
/// A plain struct: change what you need and take the rest from
/// `Default`.
///
/// ```
/// use std::time::Duration;
/// use wsreactor::{OverflowPolicy, ServerConfig};
///
/// let mut config = ServerConfig {
///     // Browsers from elsewhere get 403.
///     allowed_origins: Some(vec!["https://app.example.com".into()]),
///     // Find dead peers sooner than the 30 s default.
///     ping_interval: Some(Duration::from_secs(10)),
///     idle_timeout: Some(Duration::from_secs(300)),
///     // A client that cannot keep up is told to come back later.
///     on_overflow: OverflowPolicy::Close(1013),
///     max_connections: 10_000,
///     ..ServerConfig::default()
/// };
/// // Messages up to 1 MiB (1009 beyond).
/// config.protocol.max_message_size = 1 << 20;
/// config.protocol.max_frame_size = 1 << 20;
/// # assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Frame, message and fragment limits of the protocol core (16 MiB,
    /// 64 MiB, 131072; see [`proto::Config`]).
    pub protocol: proto::Config,
    /// Header block limits of the opening handshake (8 KiB, 64 headers).
    pub handshake: Limits,
    /// permessage-deflate (RFC 7692): offered by clients and accepted by
    /// servers when `enabled` and the crate is built with the `deflate`
    /// feature. Default: disabled (each compressing connection costs tens
    /// to hundreds of KiB while its contexts are alive; see
    /// [`DeflateConfig`]).
    pub deflate: DeflateConfig,
    /// Time to complete the opening handshake (for a client: connect plus
    /// handshake); then the connection is dropped. Default 5 s: a slow
    /// dribble (slowloris) cannot hold a connection open. Zero disables it.
    pub handshake_timeout: Duration,
    /// Time we wait for the peer's close frame after sending ours, and for
    /// TCP to end after the close handshake. Default 5 s: a peer that never
    /// answers cannot keep the connection. Zero disables it.
    pub close_timeout: Duration,
    /// Send a ping this long after the last one (or the open). Default 30 s;
    /// `None` disables heartbeats. Finds peers that vanished without a FIN.
    pub ping_interval: Option<Duration>,
    /// A pong must arrive this long after our ping, or the connection is
    /// failed with close code 1001. Default 10 s. Zero disables the
    /// deadline (pings are still sent, one outstanding at a time).
    pub pong_timeout: Duration,
    /// Close (1001, "idle timeout") a connection from which nothing was
    /// received for this long. Default `None` (off): heartbeats already find
    /// dead peers, and a quiet but healthy subscriber is normal.
    pub idle_timeout: Option<Duration>,
    /// On shutdown, time given to the close handshakes before the loop
    /// returns anyway. Default 5 s.
    pub shutdown_timeout: Duration,
    /// If set, only upgrade requests whose `Origin` is in this list (exact,
    /// ASCII case-insensitive) are accepted; others get 403. Requests
    /// without `Origin` (non-browser clients) are accepted. Default `None`
    /// (any origin): set it in production for browser-facing services
    /// (RFC 6455 §10.2, cross-site WebSocket hijacking).
    pub allowed_origins: Option<Vec<String>>,
    /// Path answering plain `GET` with Prometheus text metrics. Default
    /// `Some("/metrics")`; `None` disables it. `GET /healthz` always answers
    /// 200.
    pub metrics_path: Option<String>,
    /// Size of the one read buffer the whole reactor shares. Default 64 KiB.
    pub read_buffer_size: usize,
    /// Reading from a connection pauses while more than this much output is
    /// queued for it, and resumes once it drains below half. Default 1 MiB:
    /// a peer that sends but never reads what we answer holds about this
    /// much of our memory, not more. Larger messages still pass (an echo of
    /// a 16 MiB message is queued whole); reading only waits for the peer
    /// to take it.
    pub max_pending_output: usize,
    /// Hard limit on the output queued for one connection. A send that would
    /// pass it is not queued and [`ServerConfig::on_overflow`] applies.
    /// Default 128 MiB (twice the largest message): a peer that stops
    /// reading while we keep sending cannot exhaust memory.
    pub max_queued_output: usize,
    /// What happens to a connection whose send would pass
    /// `max_queued_output`. Default [`OverflowPolicy::Close`] with 1008.
    pub on_overflow: OverflowPolicy,
    /// A publish is not queued for a subscriber that already has this much
    /// output queued; [`ServerConfig::on_slow_subscriber`] applies instead.
    /// Default 1 MiB: a subscriber that reads slowly or not at all holds at
    /// most this much memory, and never slows the publisher or the others.
    pub max_subscriber_backlog: usize,
    /// What happens to a slow subscriber. Default [`SlowPolicy::Close`]
    /// with 1008.
    pub on_slow_subscriber: SlowPolicy,
    /// Connections held at once; beyond it an accepted socket gets a `503`
    /// and is closed (lingering like any close, in a few extra slots, so the
    /// client reads the answer rather than a reset). Default 100 000. Bounds memory and file descriptors.
    pub max_connections: usize,
    /// Serve TLS (`wss://`) on the listener: every accepted connection
    /// starts with a TLS handshake (counted in `handshake_timeout`) under
    /// the acceptor's configuration at that moment. Default `None` (plain).
    #[cfg(feature = "tls")]
    pub tls: Option<crate::net::tls::TlsAcceptor>,
    /// Client configuration for `wss://` URLs. Default `None`: Mozilla's
    /// roots (webpki-roots), TLS 1.3 and 1.2, certificates always verified.
    #[cfg(feature = "tls")]
    pub tls_client: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            protocol: proto::Config::default(),
            handshake: Limits::default(),
            deflate: DeflateConfig::default(),
            handshake_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(10),
            idle_timeout: None,
            shutdown_timeout: Duration::from_secs(5),
            allowed_origins: None,
            metrics_path: Some("/metrics".to_string()),
            read_buffer_size: 64 * 1024,
            max_pending_output: 1 << 20,
            max_queued_output: 128 << 20,
            on_overflow: OverflowPolicy::Close(1008),
            max_subscriber_backlog: 1 << 20,
            on_slow_subscriber: SlowPolicy::Close(1008),
            max_connections: 100_000,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_client: None,
        }
    }
}
