//! The public server API: a [`Handler`] for the application, a plain
//! [`ServerConfig`] and the [`Server`] that binds and runs the reactor.

use std::time::Duration;

use crate::ext::DeflateConfig;
use crate::handshake::server::Upgrade;
use crate::handshake::Limits;
use crate::proto::{self, Message};

pub use crate::net::{ConnId, Control, Ctx, Metrics, Reactor, Remote, Sent, Server, Stopper};

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
    /// the transport ended without a close frame.
    fn on_close(&mut self, id: ConnId, code: u16, reason: &str) {
        let _ = (id, code, reason);
    }

    /// A client connection could not be established: the TCP connect or
    /// the opening handshake failed or timed out. `on_close` is not called
    /// for it.
    fn on_connect_failed(&mut self, id: ConnId, reason: &str) {
        let _ = (id, reason);
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

/// Reactor settings, for accepted and outgoing connections alike. Every
/// field says its default and what it protects against.
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
    /// Reading from a connection pauses while this much output is queued for
    /// it, and resumes once it drains below half. Default 32 MiB (twice the
    /// largest frame, so an echo of one maximal message never stalls): a peer
    /// that stops reading cannot make us buffer without bound.
    pub max_pending_output: usize,
    /// Hard limit on the output queued for one connection. A send that would
    /// pass it is not queued and [`ServerConfig::on_overflow`] applies.
    /// Default 128 MiB (twice the largest message): a peer that stops
    /// reading while we keep sending cannot exhaust memory.
    pub max_queued_output: usize,
    /// What happens to a connection whose send would pass
    /// `max_queued_output`. Default [`OverflowPolicy::Close`] with 1008.
    pub on_overflow: OverflowPolicy,
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
            max_pending_output: 32 << 20,
            max_queued_output: 128 << 20,
            on_overflow: OverflowPolicy::Close(1008),
            max_connections: 100_000,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_client: None,
        }
    }
}
