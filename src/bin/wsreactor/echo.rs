//! `wsreactor echo` / `wsreactor serve`: the echo service with every server
//! setting on the command line, token auth, TLS with certificate reload on
//! SIGHUP, and graceful shutdown on SIGINT/SIGTERM.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use wsreactor::handshake::server::Upgrade;
use wsreactor::{ConnId, Control, Ctx, Decision, Handler, Message, Server, ServerConfig};

use crate::tls::{Acceptor, ServerFiles};

const USAGE: &str = "\
wsreactor echo: a WebSocket echo service (every text and binary message back unchanged)

USAGE:
    wsreactor echo [OPTIONS]        (`wsreactor serve` is the same command)

OPTIONS:
    --addr ADDR                 Listen address [default: 127.0.0.1:9001]
    --auth-token TOKEN          Require `Authorization: Bearer TOKEN` (else 401)
    --allow-origin ORIGIN       Accept only this Origin (repeatable; else 403);
                                requests without Origin are accepted [default: any]
    --protocol NAME             Subprotocol we speak (repeatable); the first the
                                client offers is selected [default: none]
    --max-connections N         Beyond this, answer 503 [default: 100000]
    --max-frame BYTES           Largest frame payload (1009) [default: 16777216]
    --max-message BYTES         Largest message (1009) [default: 67108864]
    --max-fragments N           Most frames per message (1008) [default: 131072]
    --max-header-bytes BYTES    Largest handshake header block (431) [default: 8192]
    --max-headers N             Most handshake headers (431) [default: 64]
    --max-pending-output BYTES  Pause reading above this much queued output
                                [default: 33554432]
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

SIGINT or SIGTERM: stop accepting, close every connection with 1001, wait for
the close handshakes (up to --shutdown-timeout), exit 0. A second signal exits
at once. SIGHUP (with --tls-cert): load the certificate and key again for new
connections; open ones keep theirs, and a file that fails to load leaves the
current certificate in place. GET /healthz answers 200; GET /metrics
Prometheus text.
";

/// Echo every message back; check the token and pick the subprotocol at the
/// handshake.
struct Echo {
    token: Option<String>,
    protocols: Vec<String>,
    /// With TLS: what SIGHUP reloads, and into what.
    tls: Option<(Acceptor, ServerFiles)>,
}

/// Set by SIGHUP, taken by the next `on_wake`.
static RELOAD: AtomicBool = AtomicBool::new(false);

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

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        // A send only fails once the close handshake started; nothing to do then.
        let _ = ctx.send(msg);
    }

    fn on_wake(&mut self, _ctl: &mut Control<'_>) {
        if RELOAD.swap(false, Ordering::SeqCst) {
            if let Some((acceptor, files)) = &self.tls {
                crate::tls::reload(acceptor, files);
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
    use lexopt::prelude::*;
    let mut addr = "127.0.0.1:9001".to_string();
    let mut cfg = ServerConfig::default();
    let mut handler = Echo {
        token: None,
        protocols: Vec::new(),
        tls: None,
    };
    let mut origins = Vec::new();
    let (mut tls_cert, mut tls_key) = (None::<PathBuf>, None::<PathBuf>);
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let name = match arg {
            Short('h') | Long("help") => {
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
        let mut value = || -> Result<String, String> {
            let v = parser.value().map_err(|e| e.to_string())?;
            v.string().map_err(|e| e.to_string())
        };
        match name.as_str() {
            "addr" => addr = value()?,
            "auth-token" => handler.token = Some(value()?),
            "allow-origin" => origins.push(value()?),
            "protocol" => handler.protocols.push(value()?),
            "max-connections" => cfg.max_connections = number(&value()?)?,
            "max-frame" => cfg.protocol.max_frame_size = number(&value()?)?,
            "max-message" => cfg.protocol.max_message_size = number(&value()?)?,
            "max-fragments" => cfg.protocol.max_fragments = number(&value()?)?,
            "max-header-bytes" => cfg.handshake.max_header_bytes = number(&value()?)?,
            "max-headers" => cfg.handshake.max_headers = number(&value()?)?,
            "max-pending-output" => cfg.max_pending_output = number(&value()?)?,
            "handshake-timeout" => cfg.handshake_timeout = seconds(&value()?)?,
            "close-timeout" => cfg.close_timeout = seconds(&value()?)?,
            "ping-interval" => {
                cfg.ping_interval = Some(seconds(&value()?)?).filter(|d| !d.is_zero())
            }
            "pong-timeout" => cfg.pong_timeout = seconds(&value()?)?,
            "idle-timeout" => cfg.idle_timeout = Some(seconds(&value()?)?).filter(|d| !d.is_zero()),
            "shutdown-timeout" => cfg.shutdown_timeout = seconds(&value()?)?,
            "no-metrics" => cfg.metrics_path = None,
            "deflate" => crate::deflate::enable(&mut cfg)?,
            "tls-cert" => tls_cert = Some(value()?.into()),
            "tls-key" => tls_key = Some(value()?.into()),
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
    if let Some(files) = crate::tls::server_files(tls_cert, tls_key)? {
        let acceptor = crate::tls::serve(&mut cfg, &files)?;
        handler.tls = Some((acceptor, files));
    }
    let scheme = if handler.tls.is_some() { "wss" } else { "ws" };
    let reload = handler.tls.is_some();
    let server = Server::bind(addr.as_str(), cfg, handler)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    log::info!(
        "echo server listening on {scheme}://{}",
        server.local_addr()
    );
    install_signal_handlers(server.stopper(), reload)?;
    server
        .run()
        .map_err(|e| format!("event loop failed: {e}"))?;
    log::info!("stopped");
    Ok(())
}

/// SIGINT/SIGTERM: the first asks for a graceful shutdown, a second stops
/// at once. Handled in the signal handler itself rather than on a signal
/// thread: a second thread makes glibc take its multi-threaded path (a
/// cancellation check around every `recv`, `writev` and `epoll_wait`),
/// which measurably costs the echo loop.
///
/// SIGHUP (with TLS) sets `RELOAD` and wakes the loop, whose `on_wake`
/// reads the files: nothing of that is async-signal-safe.
fn install_signal_handlers(remote: wsreactor::Remote, reload: bool) -> Result<(), String> {
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    if reload {
        let remote = remote.clone();
        // SAFETY: an atomic store and one write(2) to the reactor's eventfd,
        // as for the handlers below.
        let registered = unsafe {
            signal_hook::low_level::register(signal_hook::consts::SIGHUP, move || {
                RELOAD.store(true, Ordering::SeqCst);
                remote.wake();
            })
        };
        registered.map_err(|e| format!("cannot install the SIGHUP handler: {e}"))?;
    }
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let remote = remote.clone();
        // SAFETY: the handler is async-signal-safe: an atomic increment,
        // atomic stores, and one write(2) to the reactor's eventfd (mio's
        // `Waker`); no allocation and no lock. (`Remote::wake` logs only if
        // that write fails, which a live eventfd does not do: mio resets a
        // full counter and retries.) The reactor logs the shutdown itself.
        let registered = unsafe {
            signal_hook::low_level::register(signal, move || {
                if SEEN.fetch_add(1, Ordering::SeqCst) == 0 {
                    remote.shutdown();
                } else {
                    remote.stop();
                }
            })
        };
        registered.map_err(|e| format!("cannot install signal handlers: {e}"))?;
    }
    Ok(())
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not a valid number"))
}

fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is not a valid duration"))
}
