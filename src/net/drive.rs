//! One connection's reaction to readiness: flush, read, decode, dispatch,
//! then settle its state and deadline.

use std::io::{self, Read};
use std::net::Shutdown;
use std::time::Instant;

use super::conn::{Conn, State};
use super::ctx::{flush, ConnId, Ctx};
use super::timer::{Target, Timers};
use crate::handshake::client::parse_response;
use crate::handshake::server::{
    classify, default_http_response, parse_request, write_accept, write_reject, Outcome,
};
use crate::handshake::Status;
use crate::proto::{CloseState, Event, Read as ProtoRead, Role};
use crate::server::{Handler, ServerConfig};

/// Header slots offered to httparse; `Limits::max_headers` picks how many are used.
const HEADER_SLOTS: usize = 256;

/// The loop-wide things every connection step uses.
pub(crate) struct Shared<'a, H> {
    pub(crate) rbuf: &'a mut [u8],
    pub(crate) handler: &'a mut H,
    pub(crate) config: &'a ServerConfig,
    pub(crate) timers: &'a mut Timers,
    pub(crate) now: Instant,
}

pub(crate) fn set_deadline(conn: &mut Conn, key: usize, timers: &mut Timers, when: Instant) {
    conn.deadline = Some(when);
    timers.push(when, Target::Conn(key, conn.generation));
}

/// Handle readiness of one connection; `false` means drop it.
pub(crate) fn drive<H: Handler>(
    conn: &mut Conn,
    key: usize,
    mut readable: bool,
    sh: &mut Shared<'_, H>,
) -> bool {
    let id = ConnId {
        key,
        generation: conn.generation,
    };
    if conn.state == State::Connecting && !connected(conn, id, sh) {
        return !conn.broken;
    }
    flush(&mut conn.stream, conn.proto.sender(), &mut conn.broken);
    if conn.read_paused && conn.proto.sender().pending_len() <= sh.config.max_pending_output / 2 {
        conn.read_paused = false;
        readable = true;
    }
    if readable {
        read_loop(conn, id, sh);
    }
    settle(conn, key, sh)
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
        log::debug!("{id:?}: set_nodelay: {e}");
    }
    conn.state = State::Handshake;
    if let Some(setup) = conn.client.as_mut() {
        let request = std::mem::take(&mut setup.request);
        conn.proto.sender().queue_raw(&request);
    }
    true
}

pub(crate) fn connect_failed<H: Handler>(
    conn: &mut Conn,
    id: ConnId,
    sh: &mut Shared<'_, H>,
    why: &str,
) {
    log::debug!("{id:?}: {why}");
    conn.broken = true;
    conn.client = None;
    sh.handler.on_connect_failed(id, why);
}

fn read_loop<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>) {
    while !conn.broken && !conn.eof {
        if conn.proto.sender().pending_len() > sh.config.max_pending_output {
            // Backpressure: the peer is not reading what we send.
            conn.read_paused = true;
            return;
        }
        let p = conn.partial.len();
        sh.rbuf[..p].copy_from_slice(&conn.partial);
        let room = sh.rbuf.len() - p;
        match conn.stream.read(&mut sh.rbuf[p..]) {
            Ok(0) => conn.eof = true,
            Ok(n) => {
                process(conn, id, sh, p + n);
                if n < room {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::debug!("{id:?}: read: {e}");
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
        (State::Closing | State::Connecting, _) => conn.partial = Vec::new(),
    }
}

fn server_handshake<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>, len: usize) {
    let limits = &sh.config.handshake;
    let mut headers = [httparse::EMPTY_HEADER; HEADER_SLOTS];
    let slots = limits.max_headers.min(HEADER_SLOTS);
    let mut response = Vec::new();
    let upgraded_len = match parse_request(&sh.rbuf[..len], &mut headers[..slots], limits) {
        Ok(Status::Partial) => {
            conn.partial.clear();
            conn.partial.extend_from_slice(&sh.rbuf[..len]);
            return;
        }
        Ok(Status::Complete(req)) => match classify(&req) {
            Outcome::Upgrade(up) => {
                write_accept(&mut response, up.key, None, None);
                Some(req.len)
            }
            Outcome::Reject(reject) => {
                log::debug!("{id:?}: handshake rejected: {:?}", reject.reason);
                write_reject(&mut response, &reject);
                None
            }
            Outcome::Http(plain) => {
                default_http_response(&mut response, &plain);
                None
            }
        },
        Err(reject) => {
            log::debug!("{id:?}: handshake rejected: {:?}", reject.reason);
            write_reject(&mut response, &reject);
            None
        }
    };
    conn.partial = Vec::new();
    conn.proto.sender().queue_raw(&response);
    match upgraded_len {
        Some(req_len) => open(conn, id, sh, req_len, len),
        None => conn.state = State::Closing,
    }
}

fn client_handshake<H: Handler>(conn: &mut Conn, id: ConnId, sh: &mut Shared<'_, H>, len: usize) {
    let limits = &sh.config.handshake;
    let mut headers = [httparse::EMPTY_HEADER; HEADER_SLOTS];
    let slots = limits.max_headers.min(HEADER_SLOTS);
    let Some(setup) = conn.client.as_ref() else {
        connect_failed(conn, id, sh, "handshake state lost");
        return;
    };
    match parse_response(
        &sh.rbuf[..len],
        &mut headers[..slots],
        &setup.expected_accept,
        &[],
        limits,
    ) {
        Ok(Status::Partial) => {
            conn.partial.clear();
            conn.partial.extend_from_slice(&sh.rbuf[..len]);
        }
        Ok(Status::Complete(resp)) => {
            let resp_len = resp.len;
            conn.partial = Vec::new();
            conn.client = None;
            // Bytes behind the 101 are the server's first frames.
            open(conn, id, sh, resp_len, len);
        }
        Err(e) => connect_failed(conn, id, sh, &format!("handshake: {e}")),
    }
}

/// The handshake succeeded: tell the handler, then decode any frames that
/// arrived behind the header block (`sh.rbuf[head_len..len]`).
fn open<H: Handler>(
    conn: &mut Conn,
    id: ConnId,
    sh: &mut Shared<'_, H>,
    head_len: usize,
    len: usize,
) {
    conn.state = State::Open;
    conn.deadline = None;
    conn.opened = true;
    flush(&mut conn.stream, conn.proto.sender(), &mut conn.broken);
    {
        let (_, tx) = conn.proto.split();
        let mut ctx = Ctx {
            id,
            tx,
            stream: &mut conn.stream,
            cork: false,
            broken: &mut conn.broken,
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
    let (rx, tx) = conn.proto.split();
    loop {
        let input = &mut sh.rbuf[off..len];
        let input_len = input.len();
        match rx.read(input, tx) {
            Ok(ProtoRead {
                consumed,
                event: None,
            }) => {
                off += consumed;
                break;
            }
            Ok(ProtoRead {
                consumed,
                event: Some(event),
            }) => {
                off += consumed;
                let cork = consumed < input_len;
                let mut ctx = Ctx {
                    id,
                    tx,
                    stream: &mut conn.stream,
                    cork,
                    broken: &mut conn.broken,
                };
                match event {
                    Event::Message(msg) => sh.handler.on_message(&mut ctx, msg),
                    Event::Ping(_) => {}
                    Event::Pong(payload) => sh.handler.on_pong(&mut ctx, payload),
                    Event::Close(frame) => {
                        if conn.opened {
                            conn.opened = false;
                            let (code, reason) = frame.map_or((1005, ""), |f| (f.code, f.reason));
                            sh.handler.on_close(id, code, reason);
                        }
                    }
                }
            }
            Err(e) => {
                log::debug!("{id:?}: failing the connection: {e}");
                if conn.opened {
                    conn.opened = false;
                    sh.handler.on_close(id, e.close_code(), e.detail());
                }
                off = len;
                break;
            }
        }
    }
    if off < len {
        conn.partial.clear();
        conn.partial.extend_from_slice(&sh.rbuf[off..len]);
    } else {
        conn.partial = Vec::new();
    }
}

/// After I/O: flush, move between states, set deadlines. `false`: drop.
pub(crate) fn settle<H>(conn: &mut Conn, key: usize, sh: &mut Shared<'_, H>) -> bool {
    flush(&mut conn.stream, conn.proto.sender(), &mut conn.broken);
    if conn.broken || conn.eof {
        return false;
    }
    if conn.state == State::Open {
        match conn.proto.sender().state() {
            CloseState::Closed => conn.state = State::Closing,
            CloseState::CloseSent if conn.deadline.is_none() => {
                set_deadline(conn, key, sh.timers, sh.now + sh.config.close_timeout);
            }
            _ => {}
        }
    }
    if conn.state == State::Closing {
        if conn.deadline.is_none() {
            set_deadline(conn, key, sh.timers, sh.now + sh.config.close_timeout);
        }
        // RFC 6455 §7.1.1: the server closes TCP first; the client waits for
        // it (until the deadline).
        let server = conn.proto.role() == Role::Server;
        if server && !conn.shut_write && conn.proto.sender().pending_len() == 0 {
            conn.shut_write = true;
            if let Err(e) = conn.stream.shutdown(Shutdown::Write) {
                log::debug!("shutdown: {e}");
                return false;
            }
        }
    }
    true
}
