//! `wsreactor bench` as a process, closed and open loop, against an echo
//! server in this process; and the failures it must report.
#![cfg(all(target_os = "linux", feature = "loadgen"))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::thread;

use wsreactor::{Ctx, Handler, Message, Server, ServerConfig};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        let _ = ctx.send(msg);
    }
}

/// A WebSocket echo server on an ephemeral port, for the rest of the test
/// process.
fn ws_echo() -> SocketAddr {
    let server = Server::bind("127.0.0.1:0", ServerConfig::default(), Echo).unwrap();
    let addr = server.local_addr();
    thread::spawn(move || server.run());
    addr
}

/// A raw TCP server: a thread per connection that echoes what it reads, or
/// with `echo == false` reads and never answers.
fn tcp_server(echo: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    if echo && s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wsreactor"))
        .arg("bench")
        .args(["--json", "-q"])
        .args(args)
        .output()
        .expect("run wsreactor bench")
}

/// A number field of the one-object JSON report (`None` for null).
fn field(json: &str, name: &str) -> Option<f64> {
    let key = format!("\"{name}\":");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + key.len();
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].parse().ok()
}

/// The report of a run that must succeed.
fn report(args: &[&str]) -> String {
    let out = bench(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn assert_near(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= want * 0.1,
        "{what}: {got}, expected {want} within 10%"
    );
}

#[test]
fn closed_loop_echoes_and_checks() {
    let url = format!("ws://{}/", ws_echo());
    for kind in ["--binary", "--text"] {
        let json = report(&[
            "--url",
            &url,
            kind,
            "--connections",
            "4",
            "--size",
            // 1 KiB: sizes take suffixes.
            "1K",
            "--duration",
            "0.3",
            "--warmup",
            "0.1",
        ]);
        assert!(field(&json, "messages").unwrap() > 0.0, "{json}");
        assert_eq!(field(&json, "rate"), None, "{json}");
    }
}

#[test]
fn open_loop_keeps_the_rate_in_both_modes() {
    let ws = format!("ws://{}/", ws_echo());
    let tcp = tcp_server(true).to_string();
    for (url, mode) in [(ws.as_str(), "ws"), (tcp.as_str(), "tcp")] {
        let json = report(&[
            "--url",
            url,
            "--mode",
            mode,
            "--connections",
            "5",
            "--size",
            "40",
            "--rate",
            "2000",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
        ]);
        assert_eq!(field(&json, "rate"), Some(2000.0), "{json}");
        assert_near(field(&json, "sent_per_s").unwrap(), 2000.0, "sent/s");
        assert_near(field(&json, "msg_per_s").unwrap(), 2000.0, "echoes/s");
    }
}

#[test]
fn open_loop_fails_when_the_server_falls_behind() {
    // The server reads everything and answers nothing: the backlog of
    // unanswered messages reaches the limit within a fraction of a second.
    let silent = tcp_server(false).to_string();
    let out = bench(&[
        "--url",
        &silent,
        "--mode",
        "tcp",
        "--connections",
        "1",
        "--size",
        "20",
        "--rate",
        "50000",
        "--duration",
        "5",
        "--warmup",
        "0",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not sustain --rate"), "{stderr}");
}

#[test]
fn rate_options_are_checked() {
    for (args, expect) in [
        (&["--rate", "0"][..], "--rate must be a positive"),
        (&["--rate", "-5"][..], "--rate must be a positive"),
        (&["--rate", "fast"][..], "not a valid number"),
        (&["--size", "2T"][..], "--size: '2T' is not a size"),
        (
            &["--size", "2G"][..],
            "--size: '2G' is out of range (0 to 1073741824)",
        ),
        (
            &["--rate", "100", "--pipeline", "2"][..],
            "--pipeline is for the closed loop",
        ),
    ] {
        let mut all = vec!["--url", "ws://127.0.0.1:9/"];
        all.extend_from_slice(args);
        let out = bench(&all);
        assert!(!out.status.success(), "{args:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}
