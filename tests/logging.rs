//! What the reactor logs, captured with a logger of the test's own: the
//! listening address and limits at startup, opens and closes (with the
//! compact id, the peer address and the close code) at debug, rejected
//! handshakes at info with their status and reason and at most ten a
//! second, and how a graceful shutdown ended.
//!
//! One test: the logger is global to the test binary.

mod common;

use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{client_frame, close_payload, read_http_head, tcp, upgrade_request, OP_CLOSE};
use wsreactor::{Ctx, Handler, Message, Server, ServerConfig};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("wsreactor")
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            LINES.lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
}

/// Lines logged since the last call.
fn take() -> Vec<String> {
    std::mem::take(&mut *LINES.lock().unwrap())
}

/// Wait until a line matching `f` is logged; return all lines so far.
fn wait_for(what: &str, f: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = LINES.lock().unwrap().clone();
        if lines.iter().any(|l| f(l)) {
            return take();
        }
        assert!(Instant::now() < deadline, "no {what} logged in: {lines:#?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Echo;
impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        let _ = ctx.send(msg);
    }
}

fn open(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let mut s = tcp(addr);
    s.write_all(&upgrade_request("/")).unwrap();
    let head = read_http_head(&mut s, &mut Vec::new());
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s
}

/// A request with a bad `Sec-WebSocket-Version`: 426.
fn rejected(addr: std::net::SocketAddr) {
    let mut s = tcp(addr);
    let req = String::from_utf8(upgrade_request("/"))
        .unwrap()
        .replace("Version: 13", "Version: 8");
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 426"));
}

#[test]
fn the_reactor_logs_opens_closes_rejections_startup_and_shutdown() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Debug);

    let config = ServerConfig {
        shutdown_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = Server::bind("127.0.0.1:0", config, Echo).unwrap();
    let addr = server.local_addr();
    let remote = server.stopper();
    let startup = take();
    assert!(
        startup.contains(&format!("INFO listening on ws://{addr}")),
        "{startup:#?}"
    );
    assert!(
        startup.iter().any(|l| l.starts_with("INFO limits: 100000 connections, frame 16 MiB, message 64 MiB")),
        "{startup:#?}"
    );
    let thread = std::thread::spawn(move || server.run().unwrap());

    // Open and close: debug lines with `#slot.generation`, the peer and the code.
    let mut s = open(addr);
    let peer = s.local_addr().unwrap();
    let lines = wait_for("the open", |l| l.contains(" open from "));
    let open_line = lines.iter().find(|l| l.contains(" open from ")).unwrap();
    assert!(open_line.starts_with("DEBUG #"), "{open_line}");
    assert!(
        open_line.ends_with(&format!(" open from {peer}")),
        "{open_line}"
    );
    let id = open_line["DEBUG ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let (slot, generation) = id[1..].split_once('.').unwrap();
    assert!(
        slot.parse::<u32>().is_ok() && generation.parse::<u32>().is_ok(),
        "{id}"
    );
    s.write_all(&client_frame(OP_CLOSE, &close_payload(4001, b"bye")))
        .unwrap();
    let lines = wait_for("the close", |l| l.contains(": closed "));
    let want = format!("DEBUG {id} {peer}: closed 4001 bye");
    assert!(lines.contains(&want), "{want} not in {lines:#?}");
    drop(s);

    // Rejections: info, with status and reason, ten a second at most, then
    // a count of the rest.
    for _ in 0..15 {
        rejected(addr);
    }
    std::thread::sleep(Duration::from_millis(100));
    let lines = take();
    let rejections: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("handshake rejected"))
        .collect();
    assert_eq!(rejections.len(), 10, "{lines:#?}");
    for l in &rejections {
        assert!(l.starts_with("INFO #"), "{l}");
        assert!(
            l.contains(": handshake rejected with 426: Sec-WebSocket-Version must be 13"),
            "{l}"
        );
        assert!(l.contains(" from 127.0.0.1:"), "{l}");
    }
    std::thread::sleep(Duration::from_millis(1000));
    rejected(addr);
    let lines = wait_for("the summary", |l| l.contains("more rejections"));
    assert!(
        lines.contains(&"INFO 5 more rejections not logged (at most 10 a second)".to_string()),
        "{lines:#?}"
    );

    // Shutdown: one connection answers its close, one never does, so the
    // timeout is hit and said to be.
    let mut polite = open(addr);
    let _rude = open(addr);
    wait_for("two opens", |_| {
        LINES
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(" open from "))
            .count()
            >= 2
    });
    remote.shutdown();
    let mut head = [0u8; 2];
    polite.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x88);
    let mut payload = vec![0u8; usize::from(head[1])];
    polite.read_exact(&mut payload).unwrap();
    polite
        .write_all(&client_frame(OP_CLOSE, &payload[..2]))
        .unwrap();
    // The server ends TCP first; then we do.
    let mut rest = Vec::new();
    polite.read_to_end(&mut rest).unwrap();
    drop(polite);
    thread.join().unwrap();
    let lines = take();
    assert!(
        lines.contains(
            &"INFO shutting down: closing 2 connections with 1001 (timeout 300ms)".to_string()
        ),
        "{lines:#?}"
    );
    assert!(
        lines.contains(
            &"WARN shutdown timeout (300ms) hit: 1 of 2 connections still closing, dropped"
                .to_string()
        ),
        "{lines:#?}"
    );

    // A refusal at max_connections: a warning naming the peer, and the 503.
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let server = Server::bind("127.0.0.1:0", config, Echo).unwrap();
    let addr = server.local_addr();
    let remote = server.stopper();
    let thread = std::thread::spawn(move || server.run().unwrap());
    let _held = open(addr);
    let mut refused = tcp(addr);
    let peer = refused.local_addr().unwrap();
    let mut answer = Vec::new();
    refused.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 503"));
    let lines = wait_for("the refusal", |l| l.contains("refusing"));
    let want = format!("WARN refusing {peer} with 503: 1 connections held");
    assert!(lines.contains(&want), "{want} not in {lines:#?}");
    remote.stop();
    thread.join().unwrap();
}
