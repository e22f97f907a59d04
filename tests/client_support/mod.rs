//! Servers for the client loopback tests (`client_reconnect`, `client_cli`):
//! a wsreactor echo server in a thread, and a hand-written server that
//! completes the handshake and then never answers (no pong, no close).
//!
//! Each test binary uses a different subset, hence the `dead_code` allow.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wsreactor::{Ctx, Handler, Message, Remote, Server, ServerConfig};

#[path = "../process_support/mod.rs"]
mod process_support;

/// What the echo server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Open,
    Text(String),
    Binary(Vec<u8>),
    Close(u16),
}

/// Echoes every message; closes with `close_with` on the first message
/// instead, if set.
pub struct Echo {
    pub seen: Sender<Seen>,
    pub close_with: Option<u16>,
}

impl Handler for Echo {
    fn on_open(&mut self, _ctx: &mut Ctx<'_>) {
        let _ = self.seen.send(Seen::Open);
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        let _ = self.seen.send(match msg {
            Message::Text(t) => Seen::Text(t.to_string()),
            Message::Binary(b) => Seen::Binary(b.to_vec()),
        });
        match self.close_with {
            Some(code) => {
                let _ = ctx.close(code, "told to");
            }
            None => {
                let _ = ctx.send(msg);
            }
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, code: u16, _reason: &str) {
        let _ = self.seen.send(Seen::Close(code));
    }
}

/// A running echo server.
pub struct EchoServer {
    pub addr: SocketAddr,
    pub seen: Receiver<Seen>,
    remote: Remote,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Start on `addr` (`127.0.0.1:0` for any port).
    pub fn start(addr: &str) -> Self {
        Self::start_with(addr, None)
    }

    /// Start a server that closes with `code` on the first message.
    pub fn start_with(addr: &str, close_with: Option<u16>) -> Self {
        let (tx, seen) = mpsc::channel();
        let server = Server::bind(
            addr,
            ServerConfig::default(),
            Echo {
                seen: tx,
                close_with,
            },
        )
        .expect("bind");
        let addr = server.local_addr();
        let remote = server.stopper();
        let thread = std::thread::spawn(move || {
            server.run().expect("server loop");
        });
        Self {
            addr,
            seen,
            remote,
            thread: Some(thread),
        }
    }

    /// Stop abruptly (sockets closed without a close handshake) and wait.
    pub fn kill(mut self) {
        self.stop_and_join();
    }

    /// The next event within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Seen> {
        self.seen.recv_timeout(timeout).ok()
    }

    /// Wait for `want` (skipping other events) within `timeout`.
    pub fn expect(&self, want: &Seen, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(ref got) if got == want => return,
                Ok(_) => {}
                Err(_) => panic!("server did not see {want:?} within {timeout:?}"),
            }
        }
    }

    fn stop_and_join(&mut self) {
        if let Some(t) = self.thread.take() {
            self.remote.stop();
            t.join().expect("server thread");
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// What the silent server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Silent {
    /// A handshake was answered (connection number, from 0).
    Upgraded(usize),
    /// A frame header arrived on connection `.0` with opcode `.1`.
    Frame(usize, u8),
    /// Connection `.0` ended.
    Eof(usize),
}

/// A server that answers the opening handshake and then reads frames
/// without ever answering them: pings get no pong, closes no close.
pub struct SilentServer {
    pub addr: SocketAddr,
    pub seen: Receiver<(Instant, Silent)>,
}

impl SilentServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::channel();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let tx = tx.clone();
                std::thread::spawn(move || silent_conn(n, stream, &tx));
            }
        });
        Self { addr, seen }
    }
}

fn silent_conn(n: usize, mut s: TcpStream, tx: &Sender<(Instant, Silent)>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .expect("request without Sec-WebSocket-Key");
    let accept = wsreactor::handshake::accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if s.write_all(response.as_bytes()).is_err() {
        return;
    }
    let _ = tx.send((Instant::now(), Silent::Upgraded(n)));
    // Report each frame's opcode; client frames are masked, lengths < 126
    // here (pings, closes, short test messages).
    buf.drain(..head_end);
    loop {
        while buf.len() >= 2 {
            let len = usize::from(buf[1] & 0x7f);
            let masked = buf[1] & 0x80 != 0;
            let total = 2 + if masked { 4 } else { 0 } + len;
            if len >= 126 || buf.len() < total {
                break;
            }
            let _ = tx.send((Instant::now(), Silent::Frame(n, buf[0] & 0x0f)));
            buf.drain(..total);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => {
                let _ = tx.send((Instant::now(), Silent::Eof(n)));
                return;
            }
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

/// Wait for an event matching `pred` within `timeout`; returns it with its
/// time.
pub fn wait_for<T: std::fmt::Debug>(
    rx: &Receiver<(Instant, T)>,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&T) -> bool,
) -> (Instant, T) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((t, ev)) if pred(&ev) => return (t, ev),
            Ok(_) => {}
            Err(_) => panic!("no {what} within {timeout:?}"),
        }
    }
}

/// A `wsreactor echo` process on an ephemeral loopback port.
pub struct EchoProcess {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl EchoProcess {
    /// Start `wsreactor echo --addr 127.0.0.1:0 ARGS` and wait for the
    /// address it logs.
    pub fn spawn(args: &[&str]) -> Self {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wsreactor"));
        cmd.args(["echo", "--addr", "127.0.0.1:0"]).args(args);
        let (child, addr) = process_support::spawn_listening(cmd, "ws");
        Self { child, addr }
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
