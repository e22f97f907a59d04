//! One connection's reaction to readiness and to its deadline: flush, read,
//! decode, dispatch, then settle its state and deadline.

use std::io::{self, Read};
use std::net::Shutdown;

use super::conn::{Conn, Flag, State};
use super::control::{Control, Ctx, Own};
use super::ctx::{flush, ConnId};
use super::hub::Hub;
use super::inplace::InPlace;
use super::logs::Peer;
use super::metrics::Metrics;
use super::timer::{Tick, Timers};
use crate::ext::DeflateParams;
use crate::handshake::client::parse_response;
use crate::handshake::server::{
    answer_plain, classify, is_health_check, parse_request, write_accept, write_head_response,
    write_reject, write_response, Outcome, PlainAnswer, Upgrade,
};
use crate::handshake::Status;
use crate::proto::{CloseState, Event, Role};
use crate::server::{Decision, Handler, ServerConfig};

/// Headers of our plain-text HTTP error answers (the connection closes after).
const PLAIN_CLOSE: &[(&str, &str)] = &[
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Connection", "close"),
];
const PLAIN_CLOSE_BEARER: &[(&str, &str)] = &[
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Connection", "close"),
    ("WWW-Authenticate", "Bearer"),
];

/// Header slots offered to httparse; `Limits::max_headers` picks how many are used.
const HEADER_SLOTS: usize = 256;

/// The loop-wide things every connection step uses.
pub(crate) struct Shared<'a, H> {
    pub(crate) rbuf: &'a mut [u8],
    pub(crate) handler: &'a mut H,
    /// Everything else of the reactor (the connection driven is out of its
    /// slab meanwhile).
    pub(crate) hub: &'a mut Hub,
    /// Connections that asked for `/metrics` (`true`: with `HEAD`):
    /// answered after the events, when the gauges over all connections can
    /// be computed.
    pub(crate) metrics_requests: &'a mut Vec<(ConnId, bool)>,
    pub(crate) now: Tick,
}

/// `now + d`, or `None` when `d` is zero: a zero timeout is disabled.
pub(crate) fn after(now: Tick, d: std::time::Duration) -> Option<Tick> {
    (!d.is_zero()).then(|| now + d)
}

/// Make `when` the connection's deadline, exactly (handshake, close): an
/// entry queued for another time becomes stale. Called once when the
/// connection is created and once when it starts closing (heartbeats go
/// through `arm`), so stale entries cannot pile up.
pub(crate) fn set_deadline(conn: &mut Conn, key: usize, timers: &mut Timers, when: Tick) {
    if conn.deadline != Some(when) {
        conn.deadline = Some(when);
        timers.push_conn(when, key, conn.generation);
    }
}

/// Have `expire` called at `when` or earlier, for a heartbeat or idle check
/// (`expire` re-derives what is due and re-arms). An entry already queued
/// no later than `when` serves, so a deadline moving later pushes nothing;
/// only an earlier one pushes and leaves the old entry stale (at the open,
/// if the handshake timeout is longer than the first heartbeat or idle
/// check; see `schedule_heartbeat` for why not later).
fn arm(conn: &mut Conn, key: usize, timers: &mut Timers, when: Tick) {
    match conn.deadline {
        Some(queued) if queued <= when => {}
        _ => set_deadline(conn, key, timers, when),
    }
}

/// How a connection became ready.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Readiness {
    pub(crate) readable: bool,
    /// The peer's FIN (or an error) is already known: read until EOF even
    /// after a short read, since no further edge will come.
    pub(crate) read_closed: bool,
}

/// Handle readiness of one connection; `false` means drop it.
pub(crate) fn drive<H: Handler>(
    conn: &mut Conn,
    key: usize,
    ready: Readiness,
    sh: &mut Shared<'_, H>,
) -> bool {
    let mut readable = ready.readable || ready.read_closed;
    let id = ConnId {
        key,
        generation: conn.generation,
    };
    if conn.state == State::Connecting && !connected(conn, id, sh) {
        return !conn.broken;
    }
    flush(&mut conn.stream, conn.proto.sender(), &mut conn.broken);
    if conn.flags.contains(Flag::ReadPaused)
        && conn.proto.sender().pending_len() <= sh.hub.config.max_pending_output / 2
    {
        conn.flags.remove(Flag::ReadPaused);
        readable = true;
    }
    if readable {
        read_loop(conn, id, sh, ready.read_closed);
    }
    settle(conn, key, sh)
}

/// The connection's live heap entry fired; `false` means drop it.
///
/// An open connection's deadline serves the heartbeat and the idle timeout,
/// and may come early (see `arm`): what is due is checked against the
/// clock. Any other deadline (handshake, close) is exact and ends the
/// connection.
pub(crate) fn expire<H: Handler>(conn: &mut Conn, key: usize, sh: &mut Shared<'_, H>) -> bool {
    // The entry that called us has left the heap.
    conn.deadline = None;
    let id = ConnId {
        key,
        generation: conn.generation,
    };
    if conn.state != State::Open || conn.flags.contains(Flag::FinalDeadline) {
        log::debug!(
            "{id} from {}: deadline passed in state {:?}",
            Peer::of(&conn.stream),
            conn.state
        );
        return false;
    }
    let cfg = &sh.hub.config;
    let now = sh.now;
    let outstanding = conn.flags.contains(Flag::PingOutstanding);
    if outstanding && after(conn.heartbeat, cfg.pong_timeout).is_some_and(|due| now >= due) {
        // The peer is gone or stuck: fail the connection.
        conn.proto.sender().fail(1001);
        closed(conn, id, sh, 1001, "pong timeout");
        return settle(conn, key, sh);
    }
    if let Some(idle) = cfg.idle_timeout {
        if now >= conn.last_read + idle {
            let _ = conn.proto.sender().close(1001, "idle timeout");
            closed(conn, id, sh, 1001, "idle timeout");
            return settle(conn, key, sh);
        }
    }
    ping_if_due(conn, cfg, now);
    schedule_heartbeat(conn, key, sh);
    settle(conn, key, sh)
}

/// Send the heartbeat ping if it is due and none is outstanding.
fn ping_if_due(conn: &mut Conn, cfg: &ServerConfig, now: Tick) {
    let Some(interval) = cfg.ping_interval else {
        return;
    };
    if conn.flags.contains(Flag::PingOutstanding) || now < conn.heartbeat {
        return;
    }
    if conn.proto.sender().ping(b"").is_ok() {
        // The next one is due at `heartbeat + interval`, once the pong is in.
        conn.flags.insert(Flag::PingOutstanding);
        conn.heartbeat = now;
    } else {
        conn.heartbeat = now + interval;
    }
}

/// A pong arrived: the next ping is due one interval after the last one
/// was sent, or at once if that time has passed.
fn pong_arrived<H>(conn: &mut Conn, key: usize, sh: &mut Shared<'_, H>) {
    if conn.flags.contains(Flag::PingOutstanding) {
        conn.flags.remove(Flag::PingOutstanding);
        if let Some(interval) = sh.hub.config.ping_interval {
            conn.heartbeat = conn.heartbeat + interval;
        }
    }
    if conn.state == State::Open && !conn.flags.contains(Flag::FinalDeadline) {
        // A ping due now is sent here, not by a deadline at `now`: that
        // would need a second heap entry (see `schedule_heartbeat`).
        ping_if_due(conn, &sh.hub.config, sh.now);
        schedule_heartbeat(conn, key, sh);
    }
}

/// Arm an open connection for its next heartbeat or idle check.
///
/// The queued entry is never later than anything an event can make due
/// before it fires, so `arm` never needs to push a second one: input only
/// moves the idle check later, and a pong makes the next ping due one
/// interval after the last (or at once, sent by `pong_arrived`). So while a
/// ping is outstanding the connection also wakes at that time, or one
/// interval from now once it has passed.
fn schedule_heartbeat<H>(conn: &mut Conn, key: usize, sh: &mut Shared<'_, H>) {
    let cfg = &sh.hub.config;
    let now = sh.now;
    let outstanding = conn.flags.contains(Flag::PingOutstanding);
    let ping = cfg.ping_interval.map(|interval| {
        if !outstanding {
            conn.heartbeat
        } else if conn.heartbeat + interval > now {
            conn.heartbeat + interval
        } else {
            now + interval
        }
    });
    let candidates = [
        after(conn.heartbeat, cfg.pong_timeout).filter(|_| outstanding),
        ping,
        cfg.idle_timeout.map(|idle| conn.last_read + idle),
    ];
    match candidates.into_iter().flatten().min() {
        Some(when) => arm(conn, key, &mut sh.hub.timers, when),
        // Nothing to wait for: a queued entry is left stale.
        None => conn.deadline = None,
    }
}

/// Client: has the TCP connect finished? Sends the request once it has.
fn connected<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>) -> bool {
    match conn.stream.take_error() {
        Ok(None) => {}
        Ok(Some(e)) | Err(e) => {
            connect_failed(conn, id, sh, &format!("connect: {e}"));
            return false;
        }
    }
    match conn.stream.peer_addr() {
        Ok(_) => {}
        // Not yet: a spurious wake-up; the writable edge will come.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
        Err(e) => {
            connect_failed(conn, id, sh, &format!("connect: {e}"));
            return false;
        }
    }
    if let Err(e) = conn.stream.set_nodelay(true) {
        log::debug!("{id}: set_nodelay: {e}");
    }
    conn.state = State::Handshake;
    if let Some(setup) = conn.client.as_mut() {
        let request = std::mem::take(&mut setup.request);
        conn.proto.sender().queue_raw(&request);
    }
    true
}

fn connect_failed<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>, why: &str) {
    log::debug!("{id} to {}: {why}", Peer::of(&conn.stream));
    conn.broken = true;
    conn.client = None;
    let mut ctl = Control::new(sh.hub, None, sh.now);
    sh.handler.on_connect_failed(&mut ctl, id, why);
}

/// The WebSocket connection ended for the application: `on_close`, once.
pub(crate) fn closed<H: Handler>(
    conn: &mut Conn,
    id: ConnId,
    sh: &mut Shared<'_, H>,
    code: u16,
    reason: &str,
) {
    if conn.flags.contains(Flag::Opened) {
        conn.flags.remove(Flag::Opened);
        sh.hub.metrics.connections_open -= 1;
        log::debug!("{id} {}: closed {code} {reason}", Peer::of(&conn.stream));
        // Gone from every topic before the application hears of it.
        sh.hub.topics.remove_conn(id);
        let mut ctx = Ctx {
            id,
            ctl: Control::new(sh.hub, None, sh.now),
        };
        sh.handler.on_close(&mut ctx, code, reason);
    }
}

fn read_loop<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>, read_closed: bool) {
    while !conn.broken && !conn.flags.contains(Flag::Eof) {
        if conn.proto.sender().pending_len() > sh.hub.config.max_pending_output {
            // Flush first: pausing is only safe once the kernel refused
            // bytes, because that guarantees a writable edge to resume on.
            flush(&mut conn.stream, conn.proto.sender(), &mut conn.broken);
            if conn.proto.sender().pending_len() > sh.hub.config.max_pending_output {
                // Backpressure: the peer is not reading what we send.
                conn.flags.insert(Flag::ReadPaused);
                return;
            }
        }
        let p = conn.partial.as_slice().len();
        // Usually nothing is left over: skip the call to memcpy.
        if p > 0 {
            sh.rbuf[..p].copy_from_slice(conn.partial.as_slice());
        }
        let room = sh.rbuf.len() - p;
        match conn.stream.read(&mut sh.rbuf[p..]) {
            Ok(0) => conn.flags.insert(Flag::Eof),
            Ok(n) => {
                conn.last_read = sh.now;
                process(conn, id, sh, p + n);
                // A short read drained the socket; new data raises a new edge.
                // A FIN already seen raises none, so then read on to EOF.
                if n < room && !read_closed {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::debug!("{id}: read: {e}");
                // A client still connecting says why (a TLS certificate
                // refused, say) rather than only that the connection was lost.
                if conn.client.is_some() {
                    connect_failed(conn, id, sh, &format!("read: {e}"));
                }
                conn.broken = true;
            }
        }
    }
}

/// Consume `sh.rbuf[..len]` according to the connection's state.
fn process<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>, len: usize) {
    match (conn.state, conn.proto.role()) {
        (State::Handshake, Role::Server) => server_handshake(conn, id, sh, len),
        (State::Handshake, Role::Client) => client_handshake(conn, id, sh, len),
        (State::Open, _) => frames(conn, id, sh, 0, len),
        (State::Closing | State::Connecting | State::Answering, _) => conn.partial.release(),
    }
}

/// What to answer an upgrade request with.
enum Answer {
    /// 101 written; the header block was this long; permessage-deflate was
    /// agreed with these parameters.
    Upgraded(usize, Option<DeflateParams>),
    /// An HTTP answer written; close after it.
    Http,
    /// An upgrade refused with this HTTP status and reason (written);
    /// close after it.
    Rejected(u16, &'static str),
    /// `GET` (`false`) or `HEAD` (`true`) of the metrics path: answered
    /// after the events.
    Metrics(bool),
}

fn server_handshake<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>, len: usize) {
    let limits = &sh.hub.config.handshake;
    let mut headers = [httparse::EMPTY_HEADER; HEADER_SLOTS];
    let slots = limits.max_headers.min(HEADER_SLOTS);
    let mut response = Vec::new();
    let answer = match parse_request(&sh.rbuf[..len], &mut headers[..slots], limits) {
        Ok(Status::Partial) => {
            conn.partial.replace(&sh.rbuf[..len]);
            return;
        }
        Ok(Status::Complete(req)) => match classify(&req) {
            Outcome::Upgrade(up) => upgrade(
                &up,
                id,
                sh.handler,
                &sh.hub.config,
                &mut sh.hub.metrics,
                &mut response,
                req.len,
            ),
            Outcome::Reject(reject) => {
                sh.hub.metrics.rejected(reject.reason.as_str());
                write_reject(&mut response, &reject);
                Answer::Rejected(reject.status, reject.reason.message())
            }
            Outcome::Http(plain) if sh.hub.peers.spans() && is_health_check(&plain) => {
                // Several reactors: healthy only if every one of them is.
                let (status, body) = match sh.hub.peers.group.health(sh.now) {
                    Ok(()) => (200, "ok\n".to_string()),
                    Err(why) => (503, format!("{why}\n")),
                };
                if plain.method == "HEAD" {
                    write_head_response(&mut response, status, PLAIN_CLOSE, body.as_bytes());
                } else {
                    write_response(&mut response, status, PLAIN_CLOSE, body.as_bytes());
                }
                Answer::Http
            }
            Outcome::Http(plain) => {
                let metrics_path = sh.hub.config.metrics_path.as_deref();
                let builtin = {
                    let path = plain.path.split(['?', '#']).next().unwrap_or("");
                    path == "/healthz" || metrics_path == Some(path)
                };
                let page = if builtin {
                    None
                } else {
                    sh.handler.on_http(&plain)
                };
                if let Some(page) = page {
                    let headers = [("Content-Type", page.content_type), ("Connection", "close")];
                    if plain.method == "HEAD" {
                        write_head_response(&mut response, page.status, &headers, &page.body);
                    } else {
                        write_response(&mut response, page.status, &headers, &page.body);
                    }
                    Answer::Http
                } else {
                    match answer_plain(&mut response, &plain, metrics_path) {
                        PlainAnswer::Written => Answer::Http,
                        PlainAnswer::Metrics { head } => Answer::Metrics(head),
                    }
                }
            }
        },
        Err(reject) => {
            sh.hub.metrics.rejected(reject.reason.as_str());
            write_reject(&mut response, &reject);
            Answer::Rejected(reject.status, reject.reason.message())
        }
    };
    conn.partial.release();
    conn.proto.sender().queue_raw(&response);
    match answer {
        Answer::Upgraded(req_len, deflate) => {
            // Before `open`: it decodes frames that came behind the request.
            enable_deflate(conn, deflate.as_ref(), &sh.hub.config);
            open(conn, id, sh, req_len, len)
        }
        Answer::Http => conn.state = State::Closing,
        Answer::Rejected(status, reason) => {
            let peer = Peer::of(&conn.stream);
            sh.hub.rejects.rejected(sh.now, id, peer, status, reason);
            conn.state = State::Closing;
        }
        Answer::Metrics(head) => {
            conn.state = State::Answering;
            sh.metrics_requests.push((id, head));
        }
    }
}

/// Built-in checks, then the handler's decision; writes the response.
fn upgrade<H: Handler>(
    up: &Upgrade<'_, '_>,
    id: ConnId,
    handler: &mut H,
    config: &ServerConfig,
    metrics: &mut Metrics,
    response: &mut Vec<u8>,
    req_len: usize,
) -> Answer {
    if let (Some(allowed), Some(origin)) = (&config.allowed_origins, up.origin) {
        if !allowed
            .iter()
            .any(|a| a.as_bytes().eq_ignore_ascii_case(origin))
        {
            metrics.rejected("origin");
            write_response(response, 403, PLAIN_CLOSE, b"origin not allowed\n");
            return Answer::Rejected(403, "origin not allowed");
        }
    }
    match handler.on_handshake(id, up) {
        Decision::Accept { protocol } => {
            if let Some(p) = protocol {
                // RFC 6455 §4.2.2: the selected subprotocol must be one the
                // client offered.
                if !up.protocols().any(|offered| offered == p.as_bytes()) {
                    log::error!(
                        "{id}: handler chose subprotocol {p:?}, which the client did not offer"
                    );
                    metrics.rejected("handler_error");
                    write_response(response, 500, PLAIN_CLOSE, b"internal error\n");
                    return Answer::Rejected(500, "internal error");
                }
            }
            let agreed = config.deflate.negotiate(up.extensions());
            write_accept(
                response,
                up.key,
                protocol,
                agreed.as_ref().map(|a| a.response.as_str()),
            );
            Answer::Upgraded(req_len, agreed.map(|a| a.params))
        }
        Decision::Reject { status, reason } => {
            metrics.rejected("handler");
            let mut body = Vec::with_capacity(reason.len() + 1);
            body.extend_from_slice(reason.as_bytes());
            body.push(b'\n');
            // RFC 9110 §15.5.2: a 401 names the scheme; Bearer is the one
            // the handshake hook is meant for (RFC 6750).
            let headers: &[(&str, &str)] = if status == 401 {
                PLAIN_CLOSE_BEARER
            } else {
                PLAIN_CLOSE
            };
            write_response(response, status, headers, &body);
            Answer::Rejected(status, reason)
        }
    }
}

fn client_handshake<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>, len: usize) {
    let limits = &sh.hub.config.handshake;
    let mut headers = [httparse::EMPTY_HEADER; HEADER_SLOTS];
    let slots = limits.max_headers.min(HEADER_SLOTS);
    let Some(setup) = conn.client.as_ref() else {
        connect_failed(conn, id, sh, "handshake state lost");
        return;
    };
    let offered: Vec<&str> = setup.protocols.iter().map(String::as_str).collect();
    match parse_response(
        &sh.rbuf[..len],
        &mut headers[..slots],
        &setup.expected_accept,
        &offered,
        limits,
    ) {
        Ok(Status::Partial) => {
            conn.partial.replace(&sh.rbuf[..len]);
        }
        Ok(Status::Complete(resp)) => {
            let resp_len = resp.len;
            if let Some(p) = resp.protocol {
                log::debug!("{id}: the server chose subprotocol {p:?}");
            }
            // RFC 6455 §4.1: an extension we did not offer fails the
            // connection; an agreed one is set up before any frame is read.
            let agreed = match sh.hub.config.deflate.accept_response(resp.extensions()) {
                Ok(agreed) => agreed,
                Err(e) => return connect_failed(conn, id, sh, &format!("handshake: {e}")),
            };
            enable_deflate(conn, agreed.as_ref(), &sh.hub.config);
            conn.partial.release();
            conn.client = None;
            // Bytes behind the 101 are the server's first frames.
            open(conn, id, sh, resp_len, len);
        }
        Err(e) => connect_failed(conn, id, sh, &format!("handshake: {e}")),
    }
}

/// Switch the connection's codec on if permessage-deflate was agreed.
fn enable_deflate(conn: &mut Conn, params: Option<&DeflateParams>, config: &ServerConfig) {
    #[cfg(feature = "deflate")]
    if let Some(p) = params {
        conn.proto.enable_deflate(p, &config.deflate);
    }
    #[cfg(not(feature = "deflate"))]
    let _ = (conn, params, config);
}

/// The handshake succeeded: start the heartbeat, tell the handler, then
/// decode any frames that arrived behind the header block
/// (`sh.rbuf[head_len..len]`).
fn open<H: Handler>(
    conn: &mut Conn,
    id: ConnId,
    sh: &mut Shared<'_, H>,
    head_len: usize,
    len: usize,
) {
    conn.state = State::Open;
    conn.flags.insert(Flag::Opened);
    sh.hub.metrics.connections_open += 1;
    let side = match conn.proto.role() {
        Role::Server => "from",
        Role::Client => "to",
    };
    log::debug!("{id} open {side} {}", Peer::of(&conn.stream));
    sh.hub.metrics.connections_total += 1;
    if let Some(interval) = sh.hub.config.ping_interval {
        conn.heartbeat = sh.now + interval;
    }
    // The handshake deadline's entry, if still queued and not later than
    // the first heartbeat, serves as its wake-up (`arm`): no second entry.
    schedule_heartbeat(conn, id.key, sh);
    flush(&mut conn.stream, conn.proto.sender(), &mut conn.broken);
    {
        let (_, tx) = conn.proto.split();
        let own = Own {
            id,
            tx,
            stream: &mut conn.stream,
            broken: &mut conn.broken,
            in_place: None,
            cork: false,
        };
        let mut ctx = Ctx {
            id,
            ctl: Control::new(sh.hub, Some(own), sh.now),
        };
        sh.handler.on_open(&mut ctx);
    }
    // Server: lenient on purpose, frames sent right behind the request
    // (before our 101 arrived) are processed, not dropped.
    if head_len < len {
        frames(conn, id, sh, head_len, len);
    }
}

/// Decode frames from `sh.rbuf[start..len]` and dispatch their events.
fn frames<H: Handler>(
    conn: &mut Conn,
    id: ConnId,
    sh: &mut Shared<'_, H>,
    start: usize,
    len: usize,
) {
    let mut off = start;
    let mut ended: Option<(u16, String)> = None;
    let mut pong = false;
    {
        let (rx, tx) = conn.proto.split();
        loop {
            if off == len {
                // Decoding nothing would only do this (and cost a call that
                // saves a dozen registers, on every message).
                rx.end_of_input();
                break;
            }
            let input = &mut sh.rbuf[off..len];
            let input_len = input.len();
            match rx.decode(input, tx) {
                Ok((consumed, None)) => {
                    off += consumed;
                    break;
                }
                Ok((consumed, Some(ready))) => {
                    off += consumed;
                    let cork = consumed < input_len;
                    // Taken before the event shares `input`, for `InPlace`.
                    let base = input.as_mut_ptr();
                    #[allow(unsafe_code)]
                    // SAFETY: `ready` is from the `decode` just made on `input`.
                    let event = unsafe { rx.event(ready, input) };
                    let in_place = match event {
                        #[allow(unsafe_code)]
                        // SAFETY: `base..base + input_len` is `input`, a
                        // mutable borrow of the read buffer that is not used
                        // mutably again: after `base` was taken, `input` was
                        // only shared with the event, and a message shares
                        // just its payload. `ctx` (with the `InPlace`) is
                        // dropped before the next iteration borrows the
                        // buffer again.
                        Event::Message(msg) => unsafe {
                            InPlace::new(base, input_len, msg.as_bytes())
                        },
                        _ => None,
                    };
                    let own = Own {
                        id,
                        tx: &mut *tx,
                        stream: &mut conn.stream,
                        broken: &mut conn.broken,
                        in_place,
                        cork,
                    };
                    match event {
                        Event::Message(msg) => {
                            sh.hub.metrics.messages_in += 1;
                            // Payload, as `bytes_out` counts it.
                            sh.hub.metrics.bytes_in += msg.as_bytes().len() as u64;
                            let mut ctx = Ctx {
                                id,
                                ctl: Control::new(sh.hub, Some(own), sh.now),
                            };
                            sh.handler.on_message(&mut ctx, msg);
                        }
                        Event::Ping(_) => {}
                        Event::Pong(payload) => {
                            pong = true;
                            let mut ctx = Ctx {
                                id,
                                ctl: Control::new(sh.hub, Some(own), sh.now),
                            };
                            sh.handler.on_pong(&mut ctx, payload);
                        }
                        Event::Close(frame) => {
                            let (code, reason) = frame.map_or((1005, ""), |f| (f.code, f.reason));
                            *sh.hub.metrics.close_codes_received.entry(code).or_default() += 1;
                            ended = Some((code, reason.to_string()));
                        }
                    }
                }
                Err(e) => {
                    log::debug!("{id}: failing the connection: {e}");
                    ended = Some((e.close_code(), e.detail().to_string()));
                    off = len;
                    break;
                }
            }
        }
    }
    // The burst is over: its publishes leave now, before anything else of
    // this connection's reaches other connections.
    super::coalesce::drain(sh.hub, true);
    if pong {
        pong_arrived(conn, id.key, sh);
    }
    if let Some((code, reason)) = ended {
        closed(conn, id, sh, code, &reason);
    }
    // Empty when the input ended on a frame boundary: then no memory is held.
    conn.partial.replace(&sh.rbuf[off..len]);
}

/// After I/O: flush, move between states, set deadlines. `false`: drop.
pub(crate) fn settle<H>(conn: &mut Conn, key: usize, sh: &mut Shared<'_, H>) -> bool {
    flush(&mut conn.stream, conn.proto.sender(), &mut conn.broken);
    if !conn.flags.contains(Flag::CloseCounted) {
        if let Some(code) = conn.proto.sender().sent_close_code() {
            conn.flags.insert(Flag::CloseCounted);
            *sh.hub.metrics.close_codes_sent.entry(code).or_default() += 1;
        }
    }
    if conn.broken || conn.flags.contains(Flag::Eof) {
        return false;
    }
    if conn.state == State::Open && conn.proto.sender().state() == CloseState::Closed {
        conn.state = State::Closing;
    }
    let closing = conn.state == State::Closing || conn.proto.sender().state() != CloseState::Open;
    if closing && !conn.flags.contains(Flag::FinalDeadline) {
        conn.flags.insert(Flag::FinalDeadline);
        match after(sh.now, sh.hub.config.close_timeout) {
            Some(when) => set_deadline(conn, key, &mut sh.hub.timers, when),
            None => conn.deadline = None,
        }
    }
    if conn.state == State::Closing {
        // RFC 6455 §7.1.1: the server closes TCP first; the client waits for
        // it (until the deadline).
        let server = conn.proto.role() == Role::Server;
        if server
            && !conn.flags.contains(Flag::ShutWrite)
            && conn.proto.sender().pending_len() == 0
            && !conn.stream.holds_output()
        {
            conn.flags.insert(Flag::ShutWrite);
            if let Err(e) = conn.stream.shutdown(Shutdown::Write) {
                log::debug!("shutdown: {e}");
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proto::Connection;
    use crate::Message;

    struct Quiet;
    impl Handler for Quiet {
        fn on_message(&mut self, _ctx: &mut Ctx<'_>, _msg: Message<'_>) {}
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// An open server connection over loopback (the peer end is returned to
    /// keep it alive).
    fn open_conn(now: Tick) -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let stream = mio::net::TcpStream::from_std(ours);
        let proto = Connection::server(crate::proto::Config::default());
        let mut conn = Conn::new(stream, 1, proto, State::Open, now);
        conn.flags.insert(Flag::Opened);
        (conn, peer)
    }

    /// The loop's state for one connection, with a clock set by hand.
    struct Bench {
        hub: Hub,
        handler: Quiet,
        rbuf: Vec<u8>,
        /// Entries that fired (`expire` called) and that were stale.
        fired: usize,
        stale: usize,
    }

    impl Bench {
        fn new(config: ServerConfig) -> Self {
            let poll = mio::Poll::new().unwrap();
            let peers = crate::net::group::Peers::lone(&poll).unwrap();
            let mut hub = Hub::new(config, poll, peers);
            hub.timers = Timers::default();
            // The one connection, open.
            hub.metrics.connections_open = 1;
            Self {
                hub,
                handler: Quiet,
                rbuf: vec![0; 1024],
                fired: 0,
                stale: 0,
            }
        }

        fn with<R>(&mut self, now: Tick, f: impl FnOnce(&mut Shared<'_, Quiet>) -> R) -> R {
            let mut requests = Vec::new();
            let mut sh = Shared {
                rbuf: &mut self.rbuf,
                handler: &mut self.handler,
                hub: &mut self.hub,
                metrics_requests: &mut requests,
                now,
            };
            f(&mut sh)
        }

        /// What the reactor's loop does at `now`: fire the live entries due,
        /// drop the stale ones. Returns whether the connection is kept.
        fn run_timers(&mut self, conn: &mut Conn, now: Tick) -> bool {
            while let Some((when, target)) = self.hub.timers.pop_due(now) {
                assert_eq!(
                    target,
                    super::super::timer::Target::Conn(0, conn.generation)
                );
                if conn.deadline != Some(when) {
                    self.stale += 1;
                    continue;
                }
                assert!(when <= now, "fired early");
                self.fired += 1;
                if !self.with(now, |sh| expire(conn, 0, sh)) {
                    return false;
                }
            }
            true
        }

        fn pong(&mut self, conn: &mut Conn, now: Tick) {
            self.with(now, |sh| pong_arrived(conn, 0, sh));
        }
    }

    #[test]
    fn moving_later_pushes_nothing_and_earlier_pushes_once() {
        let t0 = Tick::now();
        let (mut conn, _peer) = open_conn(t0);
        let mut timers = Timers::default();
        arm(&mut conn, 0, &mut timers, t0 + ms(10));
        arm(&mut conn, 0, &mut timers, t0 + ms(20));
        assert_eq!(
            (timers.conn_entries(), conn.deadline),
            (1, Some(t0 + ms(10)))
        );
        arm(&mut conn, 0, &mut timers, t0 + ms(5));
        assert_eq!(
            (timers.conn_entries(), conn.deadline),
            (2, Some(t0 + ms(5)))
        );
        // Exact deadlines push unless already queued for that time.
        set_deadline(&mut conn, 0, &mut timers, t0 + ms(5));
        assert_eq!(timers.conn_entries(), 2);
        set_deadline(&mut conn, 0, &mut timers, t0 + ms(30));
        assert_eq!(
            (timers.conn_entries(), conn.deadline),
            (3, Some(t0 + ms(30)))
        );
    }

    /// Ping every 100 ms, pong timeout 1 s, with pongs on time, late and
    /// missing: one live entry throughout, no ping a tick early, and the
    /// connection failed exactly at the pong timeout. (`t + ms(n)` is
    /// exact arithmetic on ticks, so "one tick before `t + ms(100)`" is
    /// `t + ms(99)`.)
    #[test]
    fn heartbeat_cycles_keep_one_entry_and_never_fire_early() {
        let t0 = Tick::now();
        let mut b = Bench::new(ServerConfig {
            ping_interval: Some(ms(100)),
            pong_timeout: ms(1000),
            ..ServerConfig::default()
        });
        let (mut conn, _peer) = open_conn(t0);
        // As `open` leaves it with a 5 s handshake timeout: that entry still
        // queued, and the first ping (earlier) pushed.
        let handshake = t0 + ms(5000);
        set_deadline(&mut conn, 0, &mut b.hub.timers, handshake);
        conn.heartbeat = t0 + ms(100);
        b.with(t0, |sh| schedule_heartbeat(&mut conn, 0, sh));
        assert_eq!(b.hub.timers.conn_entries(), 2);

        assert!(b.run_timers(&mut conn, t0 + ms(99)));
        assert!(!conn.flags.contains(Flag::PingOutstanding), "a ping early");
        assert!(b.run_timers(&mut conn, t0 + ms(100)));
        assert!(conn.flags.contains(Flag::PingOutstanding));
        let mut sent = conn.heartbeat;
        for cycle in 0..60 {
            // Pongs on time (after 10 ms) and late (150 ms: past the next
            // ping's time, which then goes out with the pong), alternately.
            let late = cycle % 2 == 1;
            let now = sent + ms(if late { 150 } else { 10 });
            assert!(b.run_timers(&mut conn, now));
            b.pong(&mut conn, now);
            if late {
                assert!(
                    conn.flags.contains(Flag::PingOutstanding),
                    "no ping with the pong"
                );
                assert_eq!(conn.heartbeat, now);
            } else {
                assert!(b.run_timers(&mut conn, sent + ms(99)));
                assert!(!conn.flags.contains(Flag::PingOutstanding), "a ping early");
                assert!(b.run_timers(&mut conn, sent + ms(100)));
                assert!(conn.flags.contains(Flag::PingOutstanding));
                assert_eq!(conn.heartbeat, sent + ms(100));
            }
            sent = conn.heartbeat;
            // The live entry, plus the stale handshake entry until it pops.
            let stale = usize::from(sent < handshake);
            let entries = b.hub.timers.conn_entries();
            assert!(entries <= 1 + stale, "cycle {cycle}: {entries} entries");
        }
        assert!(sent > handshake, "the stale entry was seen to go");
        assert_eq!(b.stale, 1);
        // No pong: failed at `sent + 1 s`, not a tick before.
        assert!(b.run_timers(&mut conn, sent + ms(999)));
        assert_eq!(conn.state, State::Open);
        assert!(b.run_timers(&mut conn, sent + ms(1000)));
        assert_eq!(conn.state, State::Closing);
        assert_eq!(conn.proto.sender().sent_close_code(), Some(1001));
        assert!(b.fired > 60, "{} entries fired", b.fired);
    }

    /// The last frame of a fragmented message ends the read: `frames` stops
    /// without decoding the empty rest, and must still release the assembly
    /// buffer the message was lent from (an idle connection holds none).
    #[test]
    fn assembly_buffer_released_when_the_input_ends_on_the_message() {
        let now = Tick::now();
        let (mut conn, _peer) = open_conn(now);
        let mut b = Bench::new(ServerConfig::default());
        let mut client = crate::proto::Sender::new(Some(9));
        client
            .send_fragmented(crate::proto::OpCode::Binary, &[7u8; 200], 100)
            .unwrap();
        let wire = client.pending().to_vec();
        b.rbuf[..wire.len()].copy_from_slice(&wire);
        b.with(now, |sh| {
            frames(
                &mut conn,
                ConnId {
                    key: 0,
                    generation: 1,
                },
                sh,
                0,
                wire.len(),
            )
        });
        assert_eq!(b.hub.metrics.messages_in, 1);
        assert_eq!(conn.proto.receiver().assembly_capacity(), 0);
        assert!(conn.partial.as_slice().is_empty());
    }
}
