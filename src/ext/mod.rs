//! WebSocket extensions (RFC 6455 §9): the `Sec-WebSocket-Extensions` header
//! and permessage-deflate (RFC 7692).
//!
//! - [`header`] parses extension lists as sent on the wire (several offers,
//!   comma-separated, across several header lines; parameters with and
//!   without values, quoted or not). Sans-IO and always built.
//! - [`DeflateConfig`] is the local policy. [`DeflateConfig::negotiate`]
//!   (server) picks the first acceptable offer and writes the answer;
//!   [`DeflateConfig::offer`] and [`DeflateConfig::accept_response`] (client)
//!   write the offer and check the server's answer. Both end in
//!   [`DeflateParams`], the agreement. Always built: a server without the
//!   codec simply never enables it.
//! - `deflate` (feature `deflate`) is the codec itself; the protocol core
//!   uses it once [`Connection::enable_deflate`](crate::proto::Connection)
//!   has been called with the agreement.
//!
//! ```text
//!  server: Upgrade::extensions() ─► DeflateConfig::negotiate ─► Agreement
//!            Agreement.response ─► write_accept(.., Some(response))
//!            Agreement.params   ─► Connection::enable_deflate
//!  client: DeflateConfig::offer ─► write_request(.., Some(offer))
//!            Response::extensions() ─► DeflateConfig::accept_response
//!            Ok(Some(params))   ─► Connection::enable_deflate
//! ```

#[cfg(feature = "deflate")]
pub mod deflate;
pub mod header;
mod negotiate;

pub use negotiate::{Agreement, DeflateConfig, DeflateParams, ExtensionError, ExtensionHeader};

/// The registered name of the extension (RFC 7692 §7).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";
