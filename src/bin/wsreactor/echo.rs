//! `wsreactor echo` / `wsreactor serve`: the echo service with every server
//! setting on the command line, token auth and graceful shutdown on
//! SIGINT/SIGTERM, TLS with certificate reload on SIGHUP. `wsreactor
//! broadcast` is the same server with another handler (every message to
//! every open connection), `wsreactor serve` with the rooms gateway's.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::args;
use wsreactor::handshake::server::{PlainHttp, Upgrade};
use wsreactor::{
    Accept, Cluster, ConnId, Control, Ctx, Decision, Handler, HttpResponse, Message, ServerConfig,
};

const USAGE: &str = "\
wsreactor echo: a WebSocket echo service (every text and binary message back unchanged)

USAGE:
    wsreactor echo [OPTIONS]        (`wsreactor serve` is the same command)

OPTIONS:
    --addr ADDR                 Listen address [default: 127.0.0.1:9001]
    --threads N                 Reactors, one thread each; 1 is a single
                                reactor [default: the available parallelism;
                                serve: 1, the only value it accepts]
    --accept reuseport|handoff  With several threads: each reactor its own
                                SO_REUSEPORT listener (the kernel spreads
                                connections), or one acceptor dealing them round
                                robin [default: reuseport]
    --auth-token TOKEN          Require `Authorization: Bearer TOKEN` (else 401)
    --allow-origin ORIGIN       Accept only this Origin (repeatable; else 403);
                                requests without Origin are accepted [default: any]
    --protocol NAME             Subprotocol we speak (repeatable); the first the
                                client offers is selected [default: none]
    --max-connections N         Beyond this, answer 503 (over all threads)
                                [default: 100000]
    --max-frame SIZE            Largest frame payload (1009) [default: 16MiB]
    --max-message SIZE          Largest message (1009) [default: 64MiB]
    --max-fragments N           Most frames per message (1008) [default: 131072]
    --max-header-bytes SIZE     Largest handshake header block (431), 256 to 1MiB
                                [default: 8KiB]
    --max-headers N             Most handshake headers (431), 5 to 256
                                [default: 64]
    --max-pending-output SIZE   Pause reading above this much queued output
                                [default: 1MiB]
    --max-subscriber-backlog SIZE
                                A publish finding this much queued for a
                                subscriber is not queued [default: 1MiB]
    --slow-subscriber close|drop
                                Then close it (1008) or skip the delivery
                                [default: close]
    --handshake-timeout SECS    Time to finish the handshake, 0 = off [default: 5]
    --close-timeout SECS        Time to finish the close handshake, 0 = off
                                [default: 5]
    --ping-interval SECS        Heartbeat ping period, 0 disables [default: 30]
    --pong-timeout SECS         Pong deadline, then close 1001; 0 = off [default: 10]
    --idle-timeout SECS         Close after this long without input, 0 = off
                                [default: 0]
    --shutdown-timeout SECS     Graceful shutdown limit [default: 5]
    --no-metrics                Do not serve GET /metrics
    --deflate                   Accept permessage-deflate (RFC 7692); needs a
                                build with --features deflate
    --tls-cert FILE             Serve wss:// (TLS 1.3 and 1.2, ALPN http/1.1)
                                with this PEM certificate chain (leaf first);
                                needs a build with --features tls
    --tls-key FILE              The PEM private key of --tls-cert
    -h, --help                  Print this help

SIZE is bytes, or a number with K, M or G (powers of 1024, any case, an
optional iB): 16M = 16MiB = 16777216. SECS may have fractions (0.5).

SIGINT or SIGTERM: stop accepting, close every connection with 1001, wait for
the close handshakes (up to --shutdown-timeout), exit 0. A second signal exits
at once. SIGHUP (with --tls-cert): load the certificate and key again for new
connections (on every reactor); open ones keep theirs, and a file that fails
to load leaves the current certificate in place. /healthz answers 200 (503 if
a reactor failed or is stuck) and /metrics Prometheus text summed over the
reactors (GET or HEAD, any query); other plain HTTP gets 426.

With several threads, topics span the reactors: every subscriber of a topic
sees its messages in one order (each topic is sequenced by one reactor). A
reactor whose handler panics shuts the whole server down (exit 1).
";

const BROADCAST_USAGE: &str = "\
wsreactor broadcast: every text or binary message any client sends goes to every
open connection, the sender included, in publish order (the contract of
uWebSockets' benchmarks/broadcast_test). Each message is framed once and shared
by every connection's queue.

USAGE:
    wsreactor broadcast [OPTIONS]   (the options of `wsreactor echo --help`)
";

const GATEWAY_USAGE: &str = "\
wsreactor serve: the real-time rooms gateway (docs/gateway.md). WebSocket
endpoint /ws (JSON, or Protobuf with the wsreactor.v1.proto subprotocol);
GET / serves the browser client; /metrics adds the gateway's metrics.

USAGE:
    wsreactor serve [OPTIONS]       (build with --features gateway)

GATEWAY OPTIONS:
    --jwt-secret-file FILE      Require a JWT signed with this HS256 secret
                                (Authorization: Bearer, or ?token=)
    --jwt-public-key FILE       Require a JWT signed with this RS256 or ES256
                                public key (PEM)
                                [default: anonymous, ?name= or a guest name]
    --history-messages N        Messages kept per room [default: 1000]
    --history-age SECS          Oldest message kept [default: 300]
    --redis URL                 Share rooms with other instances through the
                                Redis at redis://HOST:PORT (built with
                                --features redis; docs/gateway.md, Redis);
                                given several times, rooms are spread over
                                them by hash (same list on every instance)

The server options of `wsreactor echo --help` apply too (--max-message
defaults to 1MiB here: requests are small). serve runs on one reactor
(--threads 1): a room's sequence numbers and history live in one handler, and
several reactors would split every room; run more instances instead.
";

/// Which service the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Every message back to its sender.
    Echo,
    /// Every message to every open connection.
    Broadcast,
    /// The rooms gateway (`serve`).
    Gateway,
}

/// The topic every connection of `wsreactor broadcast` joins.
const EVERYONE: &str = "all";

/// Echo (or broadcast) every message; check the token and pick the
/// subprotocol at the handshake.
#[derive(Clone)]
struct Echo {
    token: Option<String>,
    protocols: Vec<String>,
    service: Service,
}

impl Handler for Echo {
    fn on_handshake<'b>(&mut self, _id: ConnId, req: &Upgrade<'_, 'b>) -> Decision<'b> {
        if let Some(token) = &self.token {
            if !bearer_matches(req, token) {
                return Decision::Reject {
                    status: 401,
                    reason: "missing or invalid bearer token",
                };
            }
        }
        let protocol = req
            .protocols()
            .find(|offered| self.protocols.iter().any(|p| p.as_bytes() == *offered));
        Decision::Accept {
            protocol: protocol.and_then(|p| std::str::from_utf8(p).ok()),
        }
    }

    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        if self.service == Service::Broadcast {
            // Only fails for a connection that is not open; this one is.
            let _ = ctx.subscribe(EVERYONE);
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        match self.service {
            // A send only fails once the close handshake started; nothing to do then.
            Service::Echo | Service::Gateway => {
                let _ = ctx.send(msg);
            }
            Service::Broadcast => {
                ctx.publish(EVERYONE, msg);
            }
        }
    }
}

/// `Authorization: Bearer <token>`, compared in constant time.
fn bearer_matches(req: &Upgrade<'_, '_>, token: &str) -> bool {
    let Some(value) = req
        .headers()
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
    else {
        return false;
    };
    let value = value.value;
    let Some(got) = value
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
        .map(|_| &value[7..])
    else {
        return false;
    };
    let got = got.trim_ascii();
    got.len() == token.len()
        && got
            .iter()
            .zip(token.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

pub fn run(args: Vec<OsString>) -> Result<(), String> {
    run_service(args, Service::Echo)
}

pub fn run_service(args: Vec<OsString>, service: Service) -> Result<(), String> {
    use lexopt::prelude::*;
    let mut addr = "127.0.0.1:9001".to_string();
    let mut cfg = ServerConfig::default();
    let mut handler = Echo {
        token: None,
        protocols: Vec::new(),
        service,
    };
    let mut origins = Vec::new();
    // None: the default of the service (see below).
    let mut threads: Option<usize> = None;
    let mut accept = Accept::default();
    let (mut tls_cert, mut tls_key) = (None::<PathBuf>, None::<PathBuf>);
    #[cfg(feature = "gateway")]
    let mut gateway = Gateway::default();
    if service == Service::Gateway {
        #[cfg(not(feature = "gateway"))]
        return Err(
            "serve (the rooms gateway) is built only with the gateway feature: \
cargo build --release --features gateway (or use echo)"
                .into(),
        );
        // Requests are small JSON or Protobuf objects (docs/gateway.md).
        #[cfg(feature = "gateway")]
        {
            cfg.protocol.max_message_size = 1 << 20;
            cfg.protocol.max_frame_size = 1 << 20;
        }
    }
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let name = match arg {
            Short('h') | Long("help") => {
                match service {
                    Service::Broadcast => println!("{BROADCAST_USAGE}"),
                    Service::Gateway => println!("{GATEWAY_USAGE}"),
                    Service::Echo => {}
                }
                print!("{USAGE}");
                return Ok(());
            }
            Long(name) => name.to_string(),
            other => {
                return Err(format!(
                    "{} (see wsreactor echo --help)",
                    other.unexpected()
                ))
            }
        };
        let n = name.as_str();
        let mut value = || args::value(&mut parser, n);
        // The largest 64-bit length a frame header may carry.
        const LEN_MAX: u64 = i64::MAX as u64;
        let usize_max = usize::MAX as u64;
        match n {
            "addr" => addr = value()?,
            "threads" => threads = Some(args::count(n, &value()?, 1..=1024)? as usize),
            "accept" => {
                accept = match value()?.as_str() {
                    "reuseport" => Accept::ReusePort,
                    "handoff" => Accept::Handoff,
                    other => {
                        return Err(format!("--accept: '{other}' is not reuseport or handoff"))
                    }
                }
            }
            "auth-token" => handler.token = Some(non_empty(n, value()?)?),
            "allow-origin" => origins.push(non_empty(n, value()?)?),
            "protocol" => handler.protocols.push(non_empty(n, value()?)?),
            "max-connections" => {
                cfg.max_connections = args::count(n, &value()?, 1..=100_000_000)? as usize
            }
            "max-frame" => cfg.protocol.max_frame_size = args::size(n, &value()?, 1..=LEN_MAX)?,
            "max-message" => cfg.protocol.max_message_size = args::size(n, &value()?, 1..=LEN_MAX)?,
            "max-fragments" => {
                cfg.protocol.max_fragments = args::count(n, &value()?, 1..=u32::MAX.into())? as u32
            }
            "max-header-bytes" => {
                cfg.handshake.max_header_bytes = args::size(n, &value()?, 256..=1 << 20)? as usize
            }
            "max-headers" => {
                cfg.handshake.max_headers = args::count(n, &value()?, 5..=256)? as usize
            }
            "max-pending-output" => {
                cfg.max_pending_output = args::size(n, &value()?, 1..=usize_max)? as usize
            }
            "max-subscriber-backlog" => {
                cfg.max_subscriber_backlog = args::size(n, &value()?, 1..=usize_max)? as usize
            }
            "slow-subscriber" => {
                cfg.on_slow_subscriber = match value()?.as_str() {
                    "close" => wsreactor::SlowPolicy::Close(1008),
                    "drop" => wsreactor::SlowPolicy::Drop,
                    other => {
                        return Err(format!("--slow-subscriber: '{other}' is not close or drop"))
                    }
                }
            }
            "handshake-timeout" => cfg.handshake_timeout = args::seconds(n, &value()?)?,
            "close-timeout" => cfg.close_timeout = args::seconds(n, &value()?)?,
            "ping-interval" => {
                cfg.ping_interval = Some(args::seconds(n, &value()?)?).filter(|d| !d.is_zero())
            }
            "pong-timeout" => cfg.pong_timeout = args::seconds(n, &value()?)?,
            "idle-timeout" => {
                cfg.idle_timeout = Some(args::seconds(n, &value()?)?).filter(|d| !d.is_zero())
            }
            "shutdown-timeout" => cfg.shutdown_timeout = args::seconds(n, &value()?)?,
            "no-metrics" => cfg.metrics_path = None,
            "deflate" => crate::deflate::enable(&mut cfg)?,
            "tls-cert" => tls_cert = Some(value()?.into()),
            "tls-key" => tls_key = Some(value()?.into()),
            #[cfg(feature = "gateway")]
            "jwt-secret-file" | "jwt-public-key" | "history-messages" | "history-age" | "redis"
                if service == Service::Gateway =>
            {
                gateway.option(n, value()?)?
            }
            _ => {
                return Err(format!(
                    "invalid option '--{name}' (see wsreactor echo --help)"
                ))
            }
        }
    }
    if !origins.is_empty() {
        cfg.allowed_origins = Some(origins);
    }
    let tls = match crate::tls::server_files(tls_cert, tls_key)? {
        Some(files) => Some((crate::tls::serve(&mut cfg, &files)?, files)),
        None => None,
    };
    let threads = threads_for(service, threads)?;
    #[cfg(feature = "gateway")]
    if service == Service::Gateway {
        if !gateway.redis.is_empty() {
            let urls = std::mem::take(&mut gateway.redis);
            return serve_redis(&addr, cfg, gateway, &urls, tls);
        }
        return serve_one(&addr, cfg, gateway.handler()?, tls, None);
    }
    serve(&addr, cfg, threads, accept, tls, |_| handler.clone())
}

/// The gateway sharing rooms through Redis: the bridge threads wake the
/// reactor through its `Remote`, known once the server is bound.
#[cfg(feature = "redis")]
fn serve_redis(
    addr: &str,
    cfg: ServerConfig,
    gateway: Gateway,
    urls: &[String],
    tls: Option<(crate::tls::Acceptor, crate::tls::ServerFiles)>,
) -> Result<(), String> {
    use std::sync::{Arc, OnceLock};
    let slot: Arc<OnceLock<wsreactor::Remote>> = Arc::new(OnceLock::new());
    let wake = {
        let slot = slot.clone();
        Arc::new(move || {
            if let Some(r) = slot.get() {
                r.wake();
            }
        })
    };
    let instance = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let (config, auth) = gateway.parts()?;
    let broker = wsreactor::gateway::redis::start(urls, config.history.clone(), instance, wake)?;
    let gw = wsreactor::gateway::Gateway::with_broker(config, auth, broker);
    log::info!("rooms shared through {}", urls.join(", "));
    serve_one(
        addr,
        cfg,
        wsreactor::gateway::server::GatewayHandler::with_broker(gw),
        tls,
        Some(slot),
    )
}

#[cfg(all(feature = "gateway", not(feature = "redis")))]
fn serve_redis(
    _addr: &str,
    _cfg: ServerConfig,
    _gateway: Gateway,
    _urls: &[String],
    _tls: Option<(crate::tls::Acceptor, crate::tls::ServerFiles)>,
) -> Result<(), String> {
    Err("--redis needs a build with --features redis".into())
}

/// The reactors to run: `--threads`, else the available parallelism. The
/// rooms gateway keeps each room's sequence numbers and history in one
/// handler, so it runs on one reactor: several would split every room.
fn threads_for(service: Service, threads: Option<usize>) -> Result<usize, String> {
    match (service, threads) {
        (Service::Gateway, Some(n)) if n > 1 => Err(format!(
            "--threads {n}: serve runs on one reactor (a room's sequence and history \
live in one handler; several reactors would split rooms); use --threads 1 and \
run more instances behind a load balancer"
        )),
        (Service::Gateway, _) => Ok(1),
        (_, Some(n)) => Ok(n),
        (_, None) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Bind `threads` reactors (`factory(i)` builds reactor `i`'s handler),
/// stop gracefully on SIGINT/SIGTERM (and reload the certificate on SIGHUP),
/// run.
fn serve<H: Handler + Send + 'static>(
    addr: &str,
    cfg: ServerConfig,
    threads: usize,
    accept: Accept,
    tls: Option<(crate::tls::Acceptor, crate::tls::ServerFiles)>,
    mut factory: impl FnMut(usize) -> H,
) -> Result<(), String> {
    // Every reactor's acceptor is the same shared one: whichever reactor
    // wakes first reloads it for all.
    let reload = tls.is_some();
    let server = Cluster::bind_with(addr, cfg, threads, accept, |i| Reloading {
        inner: factory(i),
        tls: tls.clone(),
    })
    .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    server
        .shutdown_on_signals()
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    reload_on_sighup(server.stopper(), reload)?;
    server.run().map_err(|e| format!("server failed: {e}"))?;
    log::info!("stopped");
    Ok(())
}

/// [`serve`] on one reactor, for a handler that cannot move to another
/// thread (the rooms gateway).
#[cfg(feature = "gateway")]
fn serve_one<H: Handler>(
    addr: &str,
    cfg: ServerConfig,
    handler: H,
    tls: Option<(crate::tls::Acceptor, crate::tls::ServerFiles)>,
    remote: Option<std::sync::Arc<std::sync::OnceLock<wsreactor::Remote>>>,
) -> Result<(), String> {
    let reload = tls.is_some();
    let handler = Reloading {
        inner: handler,
        tls,
    };
    let server = wsreactor::Server::bind(addr, cfg, handler)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    if let Some(slot) = remote {
        let _ = slot.set(server.stopper());
    }
    server
        .shutdown_on_signals()
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    reload_on_sighup(server.stopper(), reload)?;
    server
        .run()
        .map_err(|e| format!("event loop failed: {e}"))?;
    log::info!("stopped");
    Ok(())
}

/// With TLS, SIGHUP reloads the certificate (`Reloading::on_wake`).
fn reload_on_sighup(remote: wsreactor::Stopper, reload: bool) -> Result<(), String> {
    if !reload {
        return Ok(());
    }
    // SAFETY: an atomic store and one write(2) per reactor to its eventfd
    // (mio's `Waker`): async-signal-safe, no allocation, no lock. The files
    // are read later, on a loop, by `Reloading::on_wake`.
    let registered = unsafe {
        signal_hook::low_level::register(signal_hook::consts::SIGHUP, move || {
            RELOAD.store(true, Ordering::SeqCst);
            remote.wake();
        })
    };
    registered.map_err(|e| format!("cannot install the SIGHUP handler: {e}"))?;
    Ok(())
}

/// `serve`'s own options.
#[cfg(feature = "gateway")]
#[derive(Default)]
struct Gateway {
    jwt_secret: Option<String>,
    jwt_public_key: Option<String>,
    config: wsreactor::gateway::GatewayConfig,
    redis: Vec<String>,
}

#[cfg(feature = "gateway")]
impl Gateway {
    fn option(&mut self, n: &str, value: String) -> Result<(), String> {
        match n {
            "jwt-secret-file" => self.jwt_secret = Some(non_empty(n, value)?),
            "jwt-public-key" => self.jwt_public_key = Some(non_empty(n, value)?),
            "redis" => self.redis.push(non_empty(n, value)?),
            "history-messages" => {
                self.config.history.max_messages = args::count(n, &value, 0..=10_000_000)? as usize
            }
            "history-age" => {
                self.config.history.max_age_ms =
                    args::seconds(n, &value)?.as_millis().min(u64::MAX as u128) as u64
            }
            _ => unreachable!("only gateway options are routed here"),
        }
        Ok(())
    }

    fn handler(self) -> Result<wsreactor::gateway::server::GatewayHandler, String> {
        let (config, auth) = self.parts()?;
        Ok(wsreactor::gateway::server::GatewayHandler::new(
            config, auth,
        ))
    }

    fn parts(
        self,
    ) -> Result<(wsreactor::gateway::GatewayConfig, wsreactor::gateway::Auth), String> {
        use wsreactor::gateway::{Auth, JwtVerifier};
        let auth = match (self.jwt_secret, self.jwt_public_key) {
            (Some(_), Some(_)) => {
                return Err("--jwt-secret-file and --jwt-public-key exclude each other".into())
            }
            (Some(f), None) => Auth::Jwt(
                JwtVerifier::hs256_file(std::path::Path::new(&f))
                    .map_err(|e| format!("--jwt-secret-file: {e}"))?,
            ),
            (None, Some(f)) => Auth::Jwt(
                JwtVerifier::public_key_file(std::path::Path::new(&f))
                    .map_err(|e| format!("--jwt-public-key: {e}"))?,
            ),
            (None, None) => Auth::Anonymous,
        };
        let mut config = self.config;
        config.name_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok((config, auth))
    }
}

/// Set by SIGHUP, taken by the next `on_wake`.
static RELOAD: AtomicBool = AtomicBool::new(false);

/// Any service's handler, plus the TLS certificate reload SIGHUP asks for
/// (done on the loop, in `on_wake`).
struct Reloading<H> {
    inner: H,
    tls: Option<(crate::tls::Acceptor, crate::tls::ServerFiles)>,
}

impl<H: Handler> Handler for Reloading<H> {
    fn on_handshake<'b>(&mut self, id: ConnId, req: &Upgrade<'_, 'b>) -> Decision<'b> {
        self.inner.on_handshake(id, req)
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        self.inner.on_open(ctx)
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        self.inner.on_message(ctx, msg)
    }
    fn on_pong(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {
        self.inner.on_pong(ctx, payload)
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        self.inner.on_close(ctx, code, reason)
    }
    fn on_connect_failed(&mut self, ctl: &mut Control<'_>, id: ConnId, reason: &str) {
        self.inner.on_connect_failed(ctl, id, reason)
    }
    fn on_http(&mut self, req: &PlainHttp<'_>) -> Option<HttpResponse> {
        self.inner.on_http(req)
    }
    fn on_metrics(&mut self, out: &mut String) {
        self.inner.on_metrics(out)
    }
    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        if RELOAD.swap(false, Ordering::SeqCst) {
            if let Some((acceptor, files)) = &self.tls {
                crate::tls::reload(acceptor, files);
            }
        }
        self.inner.on_wake(ctl)
    }
    fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) {
        self.inner.on_timer(ctl, token)
    }
}

/// Values that mean nothing empty (a token, an origin, a subprotocol).
fn non_empty(name: &str, v: String) -> Result<String, String> {
    if v.trim().is_empty() {
        Err(format!("--{name}: the value is empty"))
    } else {
        Ok(v)
    }
}
