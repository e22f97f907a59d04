//! Starting the `wsreactor` binary as a server process in a test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Spawn `cmd` (a `wsreactor` serving subcommand listening on port 0) with
/// info logs on a pipe, and wait for it to log `listening on
/// {scheme}://ADDR`. Returns the process and ADDR. A process that does not
/// say within 10 s is killed (by PID) before the test fails, so a failing
/// test leaves no server behind.
pub fn spawn_listening(mut cmd: Command, scheme: &str) -> (Child, SocketAddr) {
    let mut child = cmd
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsreactor");
    let stderr = child.stderr.take().unwrap();
    let marker = format!("listening on {scheme}://");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Some(i) = line.find(&marker) {
                let _ = tx.send(line[i + marker.len()..].trim().to_string());
            }
        }
    });
    let Ok(addr) = rx.recv_timeout(Duration::from_secs(10)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not log its {scheme}:// address");
    };
    let addr = addr.parse().expect("a socket address");
    (child, addr)
}
