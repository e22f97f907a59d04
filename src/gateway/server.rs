//! The gateway on the reactor: a [`Handler`] that feeds [`Gateway`] and
//! carries out its actions, with one topic per room and encoding so that
//! each message is framed once per encoding for all the room's members.
//!
//! The WebSocket endpoint is `/ws`; `GET /` serves the browser client;
//! `/metrics` carries the gateway's metrics after the reactor's.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{
    Action, Broker, Encoding, Gateway, GatewayConfig, Identity, MemoryBroker, RoomName, INDEX_HTML,
};
use crate::handshake::server::{PlainHttp, Upgrade};
use crate::server::{Decision, Handler, HttpResponse};
use crate::{ConnId, Control, Ctx, Message};

/// The WebSocket endpoint's path.
pub const WS_PATH: &str = "/ws";

/// The timer token the gateway's deadlines (token expiries) use.
const TICK: u64 = 0x6761_7465;

/// Milliseconds since the Unix epoch (message timestamps, JWT `exp`).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The topic of `room` for members speaking `encoding`.
fn topic(room: &RoomName, encoding: Encoding) -> String {
    let tag = if encoding.is_binary() { "pb" } else { "json" };
    // A NUL cannot occur in a room name (see `RoomName`): no collisions.
    format!("{}\0{tag}", room.as_str())
}

/// `wsreactor serve`'s handler.
///
/// With a broker that answers from another thread (Redis), that thread
/// wakes the reactor through a [`crate::Remote`]; `on_wake` then takes the
/// broker's answers ([`Gateway::poll_broker`]).
#[derive(Debug)]
pub struct GatewayHandler<B: Broker = MemoryBroker> {
    gw: Gateway<ConnId, B>,
    /// Accepted upgrades waiting for `on_open`.
    pending: HashMap<ConnId, (Identity, Encoding)>,
    /// When the armed timer fires (ms since the epoch), if one is armed.
    armed: Option<u64>,
    /// `deliveries_dropped_total` as last seen, to count the gateway's drops.
    dropped_seen: u64,
}

impl GatewayHandler {
    /// A handler around a gateway with `config` and `auth`.
    pub fn new(config: GatewayConfig, auth: super::Auth) -> Self {
        Self::with_broker(Gateway::new(config, auth))
    }
}

impl<B: Broker> GatewayHandler<B> {
    /// A handler around `gw` (e.g. one made with [`Gateway::with_broker`]).
    pub fn with_broker(gw: Gateway<ConnId, B>) -> Self {
        Self {
            gw,
            pending: HashMap::new(),
            armed: None,
            dropped_seen: 0,
        }
    }

    /// The gateway (metrics, rooms).
    pub fn gateway(&mut self) -> &mut Gateway<ConnId, B> {
        &mut self.gw
    }

    /// Carry out what the gateway asked for, then arm its next deadline.
    fn apply(&mut self, ctl: &mut Control<'_>) {
        let actions: Vec<Action<ConnId>> = self.gw.actions().collect();
        for action in actions {
            match action {
                Action::Send { conn, .. } => {
                    let binary =
                        matches!(&action, Action::Send { encoding, .. } if encoding.is_binary());
                    let Some(bytes) = action.send_bytes() else {
                        continue;
                    };
                    // A send fails only for a connection already closing.
                    let _ = send(ctl, conn, bytes, binary);
                }
                Action::Subscribe {
                    conn,
                    room,
                    encoding,
                } => {
                    let _ = ctl.subscribe(conn, &topic(&room, encoding));
                }
                Action::Unsubscribe {
                    conn,
                    room,
                    encoding,
                } => {
                    ctl.unsubscribe(conn, &topic(&room, encoding));
                }
                Action::Publish { room, message } => {
                    for encoding in [Encoding::Json, Encoding::Protobuf] {
                        let t = topic(&room, encoding);
                        if ctl.subscribers(&t) == 0 {
                            continue;
                        }
                        let bytes = message.bytes(encoding);
                        if encoding.is_binary() {
                            ctl.publish(&t, Message::Binary(bytes));
                        } else if let Ok(text) = std::str::from_utf8(bytes) {
                            ctl.publish(&t, Message::Text(text));
                        }
                    }
                }
                Action::Close { conn, code, reason } => {
                    let _ = ctl.close(conn, code, reason);
                }
            }
        }
        let dropped = ctl.metrics().deliveries_dropped_total;
        if dropped > self.dropped_seen {
            self.gw.record_drops(dropped - self.dropped_seen);
            self.dropped_seen = dropped;
        }
        if let Some(due) = self.gw.next_deadline() {
            if self.armed.is_none_or(|armed| due < armed) {
                let delay = due.saturating_sub(now_ms());
                ctl.set_timer(Duration::from_millis(delay), TICK);
                self.armed = Some(due);
            }
        }
    }
}

fn send(
    ctl: &mut Control<'_>,
    conn: ConnId,
    bytes: &[u8],
    binary: bool,
) -> Result<crate::Sent, crate::proto::SendError> {
    if binary {
        ctl.send_binary(conn, bytes)
    } else {
        match std::str::from_utf8(bytes) {
            Ok(text) => ctl.send_text(conn, text),
            Err(_) => ctl.send_binary(conn, bytes),
        }
    }
}

impl<B: Broker> Handler for GatewayHandler<B> {
    fn on_handshake<'b>(&mut self, id: ConnId, req: &Upgrade<'_, 'b>) -> Decision<'b> {
        let path = req.path.split(['?', '#']).next().unwrap_or("");
        if path != WS_PATH {
            return Decision::Reject {
                status: 404,
                reason: "the WebSocket endpoint is /ws",
            };
        }
        let headers = req.headers().iter().map(|h| (h.name, h.value));
        match self.gw.authenticate(req.path, headers, now_ms()) {
            Ok(identity) => {
                let (encoding, protocol) = Encoding::negotiate(req.protocols());
                self.pending.insert(id, (identity, encoding));
                Decision::Accept { protocol }
            }
            Err(e) => Decision::Reject {
                status: e.http_status(),
                reason: e.label(),
            },
        }
    }

    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let Some((identity, encoding)) = self.pending.remove(&ctx.id()) else {
            // Not ours (a client connection of the same reactor).
            return;
        };
        self.gw.open(ctx.id(), identity, encoding, now_ms());
        self.apply(ctx.control());
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        let binary = matches!(msg, Message::Binary(_));
        self.gw.on_frame(ctx.id(), msg.as_bytes(), binary, now_ms());
        self.apply(ctx.control());
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, _code: u16, _reason: &str) {
        self.pending.remove(&ctx.id());
        self.gw.on_close(ctx.id());
        self.apply(ctx.control());
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) {
        if token != TICK {
            return;
        }
        self.armed = None;
        self.gw.tick(now_ms());
        self.apply(ctl);
    }

    fn on_http(&mut self, req: &PlainHttp<'_>) -> Option<HttpResponse> {
        let path = req.path.split(['?', '#']).next().unwrap_or("");
        if path != "/" && path != "/index.html" {
            return None;
        }
        if req.method != "GET" && req.method != "HEAD" {
            return Some(HttpResponse {
                status: 405,
                content_type: "text/plain; charset=utf-8",
                body: b"method not allowed\n".as_slice().into(),
            });
        }
        Some(HttpResponse {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: INDEX_HTML.as_bytes().into(),
        })
    }

    fn on_metrics(&mut self, out: &mut String) {
        out.push_str(&self.gw.metrics().render());
        self.gw.broker().render_metrics(out);
    }

    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        self.gw.poll_broker();
        self.apply(ctl);
    }
}
