//! A client that sends and never reads what it is sent back holds a bounded
//! amount of the server's memory: measured from outside, on the real
//! `wsreactor echo` binary with its defaults, as the server's RSS.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn start_echo() -> (Server, std::net::SocketAddr) {
    // A free port: bind, read it, release it for the server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_wsreactor"))
        .args(["echo", "--addr", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wsreactor echo");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, addr)
}

/// 50 MB of 64 KiB messages from a client that never reads: the server
/// pauses reading once 1 MiB of echoes is queued, so its RSS grows by a few
/// MiB at most, not by what the client tried to send.
#[test]
fn a_client_that_never_reads_costs_the_server_under_4_mib() {
    let (server, addr) = start_echo();
    let pid = server.0.id();
    let mut c = WsClient::connect(addr);
    // Warm: one echo read, so the read buffer and the code are resident.
    c.send(OP_BINARY, &[1u8; 1024]);
    assert_eq!(c.recv().payload.len(), 1024);
    std::thread::sleep(Duration::from_millis(100));
    let before = rss_kib(pid);

    let message = c.frame(true, OP_BINARY, &vec![0x42u8; 64 * 1024]);
    c.stream.set_nonblocking(true).unwrap();
    let total = 50_000_000usize;
    let mut sent = 0usize;
    let mut at = 0usize;
    let mut stalled_since: Option<Instant> = None;
    while sent < total {
        match c.stream.write(&message[at..]) {
            Ok(n) => {
                sent += n;
                at = (at + n) % message.len();
                stalled_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // The server stopped reading: it stays stopped while we
                // never read. Give it time to (wrongly) grow, then measure.
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    let after = rss_kib(pid);
    let grown = after.saturating_sub(before);
    eprintln!(
        "sent {sent} bytes without reading; server RSS {before} KiB -> {after} KiB (+{grown} KiB)"
    );
    assert!(sent > 4 << 20, "only {sent} bytes could be sent");
    assert!(grown < 4096, "the server's RSS grew by {grown} KiB");

    // The connection still works once the client reads: every echo arrives.
    c.stream.set_nonblocking(false).unwrap();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = vec![0u8; 1 << 20];
    let mut drained = 0usize;
    // Finish the partial frame so the server sees whole messages.
    if at != 0 {
        c.stream.write_all(&message[at..]).ok();
    }
    while drained < (sent / 4) {
        match c.stream.read(&mut sink) {
            Ok(0) => break,
            Ok(n) => drained += n,
            Err(e) => panic!("read after resuming: {e}"),
        }
    }
    assert!(drained >= sent / 4, "echoes resumed: {drained} bytes");
}
