//! `wsreactor echo` as a process: signals end it gracefully, and it runs
//! one thread per reactor (no signal thread).
#![cfg(target_os = "linux")]

mod common;
mod process_support;

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus};

use std::time::{Duration, Instant};

use common::{close_payload, WsClient, OP_CLOSE, OP_TEXT};
use process_support::spawn_listening;

/// A running `wsreactor echo` on an ephemeral loopback port.
struct Echo {
    child: Child,
    addr: SocketAddr,
}

impl Echo {
    fn spawn(args: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsreactor"));
        cmd.args(["echo", "--addr", "127.0.0.1:0"]).args(args);
        let (child, addr) = spawn_listening(cmd, "ws");
        Self { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// The exit status, if the process ends within `limit`.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
}

fn echo_once(client: &mut WsClient) {
    client.send(OP_TEXT, b"hello");
    let f = client.recv();
    assert_eq!((f.opcode, f.payload.as_slice()), (OP_TEXT, &b"hello"[..]));
}

#[test]
fn the_echo_server_runs_one_thread_per_reactor() {
    for n in [1usize, 2, 3] {
        let server = Echo::spawn(&["--threads", &n.to_string()]);
        let mut client = WsClient::connect(server.addr);
        echo_once(&mut client);
        assert_eq!(threads(server.pid()), n);
    }
}

#[test]
fn sigterm_closes_every_connection_with_1001_then_exits_0() {
    for (signal, threads) in [("TERM", "1"), ("INT", "1"), ("TERM", "2")] {
        let mut server = Echo::spawn(&["--shutdown-timeout", "30", "--threads", threads]);
        let mut a = WsClient::connect(server.addr);
        let mut b = WsClient::connect(server.addr);
        echo_once(&mut a);
        echo_once(&mut b);
        server.signal(signal);
        let going_away = close_payload(1001, b"server shutting down");
        for client in [&mut a, &mut b] {
            client.expect_close(&going_away);
            client.send(OP_CLOSE, &close_payload(1001, b""));
            client.expect_eof();
        }
        // Clients close on EOF; the server waits for that (up to the close
        // timeout) before it lets a connection go.
        drop((a, b));
        // Every close handshake completed: no need to wait for the limit.
        let status = server.wait(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "SIG{signal}: {status:?}"
        );
    }
}

#[test]
fn a_second_signal_stops_at_once() {
    let mut server = Echo::spawn(&["--shutdown-timeout", "60"]);
    let mut client = WsClient::connect(server.addr);
    echo_once(&mut client);
    server.signal("TERM");
    client.expect_close(&close_payload(1001, b"server shutting down"));
    // The client never answers, so the graceful shutdown would wait 60 s.
    assert_eq!(server.wait(Duration::from_millis(300)), None);
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
