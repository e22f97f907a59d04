//! The real-time rooms gateway behind `wsreactor serve`, without I/O.
//!
//! Clients join rooms, publish JSON values to them and receive every
//! message of the rooms they are in, each with a per-room `seq`; a rejoin
//! with `since` recovers missed messages from the room's recent history.
//! Connections speak JSON (text frames) or Protobuf (binary frames, the
//! `wsreactor.v1.proto` subprotocol, `proto/wsreactor.v1.proto`), and
//! authenticate with a JWT or, without a key, by name. docs/gateway.md is
//! the protocol reference.
//!
//! [`Gateway`] is a state machine: the transport hands it connection ids,
//! frames and the time, and applies the [`Action`]s it returns (send,
//! subscribe to or publish on a room's topic, close). A room's message is
//! an [`Outgoing`], encoded at most once per encoding for all its members
//! and replays. Sequencing and history live behind [`Broker`]
//! ([`MemoryBroker`] here), so a broker shared between instances can take
//! their place.

pub mod auth;
pub mod broker;
mod core;
pub mod fanout;
pub mod metrics;
pub mod outgoing;
pub mod protocol;
pub mod ratelimit;
#[cfg(feature = "redis")]
pub mod redis;
pub mod room;
#[cfg(feature = "net")]
pub mod server;
pub mod shared;

pub use self::auth::{Auth, AuthError, Identity, JwtVerifier};
pub use self::broker::{Broker, Completion, HistoryConfig, MemoryBroker, Recovery, Sequencing};
pub use self::core::{Action, Gateway, GatewayConfig, Payload, CLOSE_TOKEN_EXPIRED};
pub use self::fanout::{Delivery, LocalFanout};
pub use self::metrics::GatewayMetrics;
pub use self::outgoing::Outgoing;
pub use self::protocol::{Encoding, ErrorCode, Limits};
pub use self::ratelimit::Rate;
pub use self::room::RoomName;

/// The browser client served at `GET /`: one self-contained page (HTML,
/// CSS and JavaScript, no external resources) speaking the JSON protocol
/// to `/ws` on the same host.
pub const INDEX_HTML: &str = include_str!("static/index.html");
