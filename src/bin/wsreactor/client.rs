//! `wsreactor client`: an interactive client, used the way websocat is.
//!
//! A thread reads stdin line by line into a bounded channel and wakes the
//! reactor ([`Remote::wake`]); the handler drains the channel from
//! `on_wake` (or `on_open`) while the connection is open. Lines typed while
//! no connection is open wait in the channel, whose bound then blocks the
//! stdin thread.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::time::Duration;

use crate::args;
use wsreactor::client::{ConnectOptions, ReconnectPolicy, ReconnectState, Reconnector};
use wsreactor::handshake::client::{check_header, check_protocol};
use wsreactor::net::WsUrl;
use wsreactor::proto::SendError;
use wsreactor::{ConnId, Control, Ctx, Handler, Message, Reactor, Remote, ServerConfig};

const USAGE: &str = "\
wsreactor client: an interactive WebSocket client

USAGE:
    wsreactor client [OPTIONS] <URL>

Each line read from stdin is sent as one text message (without its line
ending, \\n or \\r\\n); every message received is written to stdout followed by
a newline: text as is, binary as lowercase hex. End of input (Ctrl-D) closes
the connection with 1000 and exits 0 once the close handshake is done.

ARGS:
    <URL>    ws://host[:port][/path], or wss:// for TLS (needs a build with
             --features tls; the server's certificate is always verified)

OPTIONS:
    --header 'NAME: VALUE' Send this header with the upgrade request
                           (repeatable), e.g. --header 'Cookie: a=b'
    --auth-token TOKEN     Send `Authorization: Bearer TOKEN` (what
                           `wsreactor echo --auth-token` requires)
    --protocol NAME        Offer this subprotocol (repeatable, in order of
                           preference); the server may select one
    --binary               Send each line as a binary message instead
    --ping-interval SECS   Ping the server every SECS seconds (fractions
                           allowed; 0 disables) [default: 30]
    --pong-timeout SECS    Fail the connection when a pong is this late
                           [default: 10]
    --reconnect            Reconnect after the connection ends or cannot be
                           made, with exponential backoff and jitter;
                           otherwise exit. End of input while disconnected
                           exits too (lines not yet sent are dropped)
    --backoff-initial SECS First reconnect delay [default: 1]
    --backoff-max SECS     Largest reconnect delay [default: 60]
    --deflate              Offer permessage-deflate (RFC 7692); needs a build
                           with --features deflate
    --ca FILE              For wss://, also trust the PEM certificates in FILE
                           (a private CA) besides Mozilla's roots
    -h, --help             Print this help

EXIT STATUS:
    0 after end of input, or when the server closed with 1000 (or no code);
    1 when the connection cannot be made, fails, or the server closed with
    another code (without --reconnect).
";

/// Timer token of the reconnector.
const RECONNECT_TOKEN: u64 = 1;
/// Timer token that only makes the loop go round once more.
const NUDGE_TOKEN: u64 = 2;
/// Lines read ahead of the connection before the stdin thread blocks.
const INPUT_BOUND: usize = 64;

struct Options {
    url: String,
    connect: ConnectOptions,
    binary: bool,
    ping_interval: Option<Duration>,
    pong_timeout: Option<Duration>,
    reconnect: bool,
    deflate: bool,
    ca: Option<std::path::PathBuf>,
    policy: ReconnectPolicy,
}

fn secs(parser: &mut lexopt::Parser, name: &str) -> Result<Duration, String> {
    let name = name.trim_start_matches('-');
    args::seconds(name, &args::value(parser, name)?)
}

/// `NAME: VALUE`, checked as the request will carry it.
fn header(parser: &mut lexopt::Parser) -> Result<(String, String), String> {
    let v = args::value(parser, "header")?;
    let (name, value) = v
        .split_once(':')
        .ok_or_else(|| format!("--header: '{v}' is not 'NAME: VALUE'"))?;
    let (name, value) = (name.trim(), value.trim());
    check_header(name, value).map_err(|e| format!("--header: '{v}': {e}"))?;
    Ok((name.to_string(), value.to_string()))
}

fn parse(args: Vec<OsString>) -> Result<Option<Options>, String> {
    use lexopt::prelude::*;
    let mut url = None;
    let mut binary = false;
    let mut ping_interval = None;
    let mut pong_timeout = None;
    let mut reconnect = false;
    let mut deflate = false;
    let mut ca = None;
    let mut policy = ReconnectPolicy::default();
    let mut connect = ConnectOptions::default();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("header") => connect.headers.push(header(&mut parser)?),
            Long("auth-token") => {
                let token = args::value(&mut parser, "auth-token")?;
                if token.is_empty() {
                    return Err("--auth-token: the value is empty".into());
                }
                let bearer = format!("Bearer {token}");
                check_header("Authorization", &bearer).map_err(|e| format!("--auth-token: {e}"))?;
                connect.headers.push(("Authorization".into(), bearer));
            }
            Long("protocol") => {
                let p = args::value(&mut parser, "protocol")?;
                check_protocol(&p).map_err(|e| format!("--protocol: '{p}': {e}"))?;
                connect.protocols.push(p);
            }
            Long("binary") => binary = true,
            Long("ping-interval") => {
                // 0 disables heartbeats.
                ping_interval = Some(secs(&mut parser, "--ping-interval")?);
            }
            Long("pong-timeout") => pong_timeout = Some(secs(&mut parser, "--pong-timeout")?),
            Long("reconnect") => reconnect = true,
            Long("deflate") => deflate = true,
            Long("ca") => {
                ca = Some(std::path::PathBuf::from(
                    parser.value().map_err(|e| e.to_string())?,
                ))
            }
            Long("backoff-initial") => {
                policy.initial_delay = secs(&mut parser, "--backoff-initial")?;
            }
            Long("backoff-max") => policy.max_delay = secs(&mut parser, "--backoff-max")?,
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(None);
            }
            Value(v) if url.is_none() => {
                url = Some(v.into_string().map_err(|_| "the URL is not UTF-8")?);
            }
            other => {
                return Err(format!(
                    "{} (see wsreactor client --help)",
                    other.unexpected()
                ))
            }
        }
    }
    let url = url.ok_or("missing URL (see wsreactor client --help)")?;
    if policy.initial_delay.is_zero() {
        return Err("--backoff-initial: must be more than 0".into());
    }
    if policy.max_delay < policy.initial_delay {
        return Err(format!(
            "--backoff-max: {:?} is less than --backoff-initial ({:?})",
            policy.max_delay, policy.initial_delay
        ));
    }
    Ok(Some(Options {
        url,
        connect,
        binary,
        ping_interval,
        pong_timeout,
        reconnect,
        deflate,
        ca,
        policy,
    }))
}

/// What the stdin thread sends.
enum Input {
    Line(Vec<u8>),
    Eof,
}

struct Client {
    url: String,
    binary: bool,
    input: Receiver<Input>,
    /// Lines taken from `input` that could not be sent yet, with their
    /// line numbers.
    outbox: VecDeque<(u64, Vec<u8>)>,
    /// The open connection.
    conn: Option<ConnId>,
    /// `Some` with `--reconnect`.
    reconnector: Option<Reconnector>,
    /// Set before the loop runs.
    remote: Option<Remote>,
    /// Input ended and our close was sent.
    closing: bool,
    /// The session is over: shut the reactor down (after TCP has ended).
    finished: bool,
    /// Lines read so far (for messages about bad lines).
    line_no: u64,
    result: Result<(), String>,
}

/// Where a line goes: the `Ctx` of `on_open` or the `Control` of `on_wake`.
trait Sink {
    fn send_msg(&mut self, msg: Message<'_>) -> Result<(), SendError>;
    fn close_1000(&mut self) -> Result<(), SendError>;
}

impl Sink for Ctx<'_> {
    fn send_msg(&mut self, msg: Message<'_>) -> Result<(), SendError> {
        self.send(msg).map(drop)
    }
    fn close_1000(&mut self) -> Result<(), SendError> {
        self.close(1000, "").map(drop)
    }
}

struct ControlSink<'c, 'a> {
    ctl: &'c mut Control<'a>,
    id: ConnId,
}

impl Sink for ControlSink<'_, '_> {
    fn send_msg(&mut self, msg: Message<'_>) -> Result<(), SendError> {
        self.ctl.send(self.id, msg).map(drop)
    }
    fn close_1000(&mut self) -> Result<(), SendError> {
        self.ctl.close(self.id, 1000, "").map(drop)
    }
}

impl Client {
    /// Send what stdin has produced, up to its end.
    fn drain(&mut self, sink: &mut dyn Sink) {
        if self.closing {
            return;
        }
        loop {
            if let Some((n, line)) = self.outbox.pop_front() {
                let sent = if self.binary {
                    sink.send_msg(Message::Binary(&line))
                } else if let Ok(text) = std::str::from_utf8(&line) {
                    sink.send_msg(Message::Text(text))
                } else {
                    log::warn!("line {n} is not UTF-8; not sent (use --binary)");
                    continue;
                };
                if let Err(e) = sent {
                    // The connection is closing: keep the line for the next one.
                    log::debug!("send: {e}");
                    self.outbox.push_front((n, line));
                    return;
                }
                continue;
            }
            match self.input.try_recv() {
                Ok(Input::Line(line)) => {
                    self.line_no += 1;
                    self.outbox.push_back((self.line_no, line));
                }
                Ok(Input::Eof) | Err(TryRecvError::Disconnected) => {
                    self.closing = true;
                    if let Some(r) = self.reconnector.as_mut() {
                        r.stop();
                    }
                    if let Err(e) = sink.close_1000() {
                        log::debug!("close: {e}");
                    }
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    /// Reconnecting, and no attempt under way (an attempt in progress may
    /// still carry the input).
    fn between_attempts(&self) -> bool {
        self.reconnector.as_ref().is_some_and(|r| match r.state() {
            ReconnectState::Waiting(_) => true,
            ReconnectState::Due(delay) => !delay.is_zero(),
            _ => false,
        })
    }

    /// Disconnected (reconnecting): read ahead up to the input bound, and
    /// end the session if the input ends; the lines read but not sent are
    /// dropped (there may never be a connection to send them on).
    fn input_ended_while_disconnected(&mut self) -> bool {
        while self.outbox.len() < INPUT_BOUND {
            match self.input.try_recv() {
                Ok(Input::Line(line)) => {
                    self.line_no += 1;
                    self.outbox.push_back((self.line_no, line));
                }
                Ok(Input::Eof) | Err(TryRecvError::Disconnected) => {
                    if !self.outbox.is_empty() {
                        log::warn!(
                            "end of input while disconnected: {} lines not sent",
                            self.outbox.len()
                        );
                    } else {
                        log::info!("end of input while disconnected");
                    }
                    self.closing = true;
                    self.finished = true;
                    if let Some(r) = self.reconnector.as_mut() {
                        r.stop();
                    }
                    return true;
                }
                Err(TryRecvError::Empty) => return false,
            }
        }
        false
    }

    fn print(&mut self, msg: Message<'_>) {
        let mut out = io::stdout().lock();
        let written = match msg {
            Message::Text(t) => out.write_all(t.as_bytes()),
            Message::Binary(b) => b.iter().try_for_each(|byte| write!(out, "{byte:02x}")),
        }
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
        if let Err(e) = written {
            self.end(Err(format!("cannot write to stdout: {e}")));
        }
    }

    /// The session is over with `result`: shut down once TCP has ended.
    fn end(&mut self, result: Result<(), String>) {
        if !self.finished {
            self.finished = true;
            self.result = result;
            if let Some(r) = self.reconnector.as_mut() {
                r.stop();
            }
            // Handler callbacks without a Control reach on_wake this way.
            if let Some(remote) = &self.remote {
                remote.wake();
            }
        }
    }
}

impl Handler for Client {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(r) = self.reconnector.as_mut() {
            if !r.on_open(ctx.id()) {
                return;
            }
        }
        log::info!("connected to {}", self.url);
        self.conn = Some(ctx.id());
        self.drain(ctx);
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        if Some(ctx.id()) == self.conn {
            self.print(msg);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        let id = ctx.id();
        if self.conn != Some(id) {
            return;
        }
        self.conn = None;
        if self.closing {
            if code == 1006 {
                // Our close was not answered in time, or TCP ended first.
                log::warn!("the server did not complete the close handshake ({reason})");
            }
            self.end(Ok(()));
            return;
        }
        let why = if reason.is_empty() {
            format!("connection closed: {code}")
        } else {
            format!("connection closed: {code} {reason}")
        };
        if let Some(r) = self.reconnector.as_mut() {
            log::warn!("{why}");
            r.on_close(ctx.control(), id);
        } else if matches!(code, 1000 | 1005) {
            log::info!("{why}");
            self.end(Ok(()));
        } else {
            self.end(Err(why));
        }
    }

    fn on_connect_failed(&mut self, ctl: &mut Control<'_>, id: ConnId, reason: &str) {
        match self.reconnector.as_mut() {
            Some(r) => {
                if r.on_connect_failed(ctl, id) {
                    log::warn!("cannot connect to {}: {reason}", self.url);
                }
            }
            None => self.end(Err(format!("cannot connect to {}: {reason}", self.url))),
        }
    }

    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        if self.finished {
            // A failed session has nothing left to wait for.
            if self.result.is_err() || ctl.connections() == 0 {
                ctl.stop();
                return;
            }
            // Waits for the connection's TCP to end, then run() returns.
            ctl.shutdown();
            // The loop looks at the shutdown flag only after its next poll;
            // a due timer keeps that poll from blocking.
            ctl.set_timer(Duration::from_millis(1), NUDGE_TOKEN);
            return;
        }
        if let Some(id) = self.conn {
            self.drain(&mut ControlSink { ctl, id });
        } else if self.between_attempts() && self.input_ended_while_disconnected() {
            ctl.stop();
            return;
        }
        if let Some(r) = self.reconnector.as_mut() {
            r.on_wake(ctl);
        }
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) {
        if let Some(r) = self.reconnector.as_mut() {
            if let Some(Err(e)) = r.on_timer(ctl, token) {
                log::warn!("cannot connect to {}: {e}", self.url);
            }
        }
    }
}

/// Read stdin into `tx`, waking the reactor after each line.
fn read_stdin(tx: std::sync::mpsc::SyncSender<Input>, remote: Remote) {
    let mut stdin = io::stdin().lock();
    loop {
        let mut line = Vec::new();
        let item = match stdin.read_until(b'\n', &mut line) {
            Ok(0) => Input::Eof,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                Input::Line(line)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("stdin: {e}");
                Input::Eof
            }
        };
        let eof = matches!(item, Input::Eof);
        if tx.send(item).is_err() {
            return;
        }
        remote.wake();
        if eof {
            return;
        }
    }
}

pub fn run(args: Vec<OsString>) -> Result<(), String> {
    let Some(opts) = parse(args)? else {
        return Ok(());
    };
    // A bad URL fails at once, also with --reconnect.
    WsUrl::parse(&opts.url).map_err(|e| format!("{}: {e}", opts.url))?;
    let mut config = ServerConfig::default();
    if opts.deflate {
        crate::deflate::enable(&mut config)?;
    }
    if let Some(ca) = &opts.ca {
        crate::tls::trust(&mut config, ca)?;
    }
    if let Some(interval) = opts.ping_interval {
        config.ping_interval = Some(interval).filter(|d| !d.is_zero());
    }
    if let Some(timeout) = opts.pong_timeout {
        config.pong_timeout = timeout;
    }
    // The session ends once the close handshake is done and TCP has ended;
    // close_timeout already bounds that wait.
    config.shutdown_timeout = config.close_timeout;

    let (tx, rx) = sync_channel(INPUT_BOUND);
    let mut reactor = Reactor::new(
        config,
        Client {
            url: opts.url.clone(),
            binary: opts.binary,
            input: rx,
            outbox: VecDeque::new(),
            conn: None,
            reconnector: None,
            remote: None,
            closing: false,
            finished: false,
            line_no: 0,
            result: Ok(()),
        },
    )
    .map_err(|e| format!("cannot start the event loop: {e}"))?;
    let remote = reactor.remote();
    reactor.handler_mut().remote = Some(remote.clone());
    if opts.reconnect {
        let mut r = Reconnector::new(opts.url.clone(), opts.policy, RECONNECT_TOKEN)
            .with_options(opts.connect.clone());
        r.start(remote.clone());
        reactor.handler_mut().reconnector = Some(r);
    } else {
        // A bad URL or a name that does not resolve fails here, at once.
        reactor
            .connect_with(&opts.url, &opts.connect)
            .map_err(|e| format!("cannot connect to {}: {e}", opts.url))?;
    }
    let stdin_remote = remote.clone();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_stdin(tx, stdin_remote))
        .map_err(|e| format!("cannot start the stdin thread: {e}"))?;
    let client = reactor
        .run()
        .map_err(|e| format!("event loop failed: {e}"))?;
    client.result
}
