//! `Server::shutdown_on_signals`: a library server ends like `wsreactor
//! echo` does. SIGTERM closes every connection with 1001 and `run`
//! returns once the close handshakes are done; while one is still
//! pending, a second signal returns at once.
//!
//! One test: signals are process-wide.
#![cfg(all(feature = "signals", target_os = "linux"))]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{client_frame, read_http_head, tcp, upgrade_request, OP_CLOSE};
use wsreactor::{Ctx, Handler, Message, Server, ServerConfig};

struct Echo;
impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        let _ = ctx.send(msg);
    }
}

fn signal(name: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &std::process::id().to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{name} failed");
}

fn open(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = tcp(addr);
    s.write_all(&upgrade_request("/")).unwrap();
    let head = read_http_head(&mut s, &mut Vec::new());
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s
}

/// The server's close frame: its code and reason.
fn close_frame(s: &mut TcpStream) -> (u16, String) {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    let mut payload = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut payload).unwrap();
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8(payload[2..].to_vec()).unwrap())
}

/// A server with the signal handlers, running in a thread.
fn start(
    shutdown_timeout: Duration,
) -> (
    std::net::SocketAddr,
    std::thread::JoinHandle<std::io::Result<Echo>>,
    wsreactor::ShutdownSignals,
) {
    let config = ServerConfig {
        shutdown_timeout,
        ..ServerConfig::default()
    };
    let server = Server::bind("127.0.0.1:0", config, Echo).unwrap();
    let addr = server.local_addr();
    let signals = server.shutdown_on_signals().unwrap();
    (addr, std::thread::spawn(move || server.run()), signals)
}

#[test]
fn sigterm_closes_with_1001_and_a_second_signal_stops_at_once() {
    // The close handshake completes: run returns, the process lives on.
    let (addr, thread, signals) = start(Duration::from_secs(10));
    let mut s = open(addr);
    let started = Instant::now();
    signal("TERM");
    assert_eq!(close_frame(&mut s), (1001, "server shutting down".into()));
    s.write_all(&client_frame(OP_CLOSE, &1001u16.to_be_bytes()))
        .unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after the close: {rest:?}");
    drop(s);
    thread.join().unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    // No new connection is accepted once shut down.
    assert!(std::net::TcpStream::connect(addr).is_err());
    signals.remove();

    // A peer that never answers: the first signal starts the shutdown, the
    // second ends it long before the 10 s timeout.
    let (addr, thread, signals) = start(Duration::from_secs(10));
    let mut s = open(addr);
    signal("INT");
    assert_eq!(close_frame(&mut s).0, 1001);
    let second = Instant::now();
    signal("INT");
    thread.join().unwrap().unwrap();
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "stopped after {:?}",
        second.elapsed()
    );
    signals.remove();
}
