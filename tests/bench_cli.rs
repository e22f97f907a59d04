//! `wsreactor bench` as a process, closed and open loop, against an echo
//! server in this process; `bench --fanout` against broadcast servers in
//! this process (a correct one, and ones that lose, duplicate, reorder or
//! corrupt a delivery); and the failures it must report.
#![cfg(all(target_os = "linux", feature = "loadgen"))]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;

use wsreactor::{ConnId, Control, Ctx, Handler, Message, Remote, Server, ServerConfig};

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

// ---------------------------------------------------------------------------
// Fan-out: `bench --fanout` against broadcast servers.

/// What a test broadcast server does wrong, once, to the last connection
/// it accepted, at the 20th broadcast that is not a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// That connection never gets it.
    Drop,
    /// That connection gets it twice.
    Duplicate,
    /// That connection gets it after the next one.
    Reorder,
    /// One byte of its payload is flipped for that connection.
    Corrupt,
}

/// The broadcast the fault hits (counting only non-probe messages; the
/// generator's probes carry publisher u32::MAX in their first 4 bytes).
const FAULT_AT: u64 = 20;

/// Decides, per broadcast, what the victim connection gets: the messages
/// to send it now, in order.
struct Faulty {
    fault: Fault,
    seen: u64,
    held: Option<Vec<u8>>,
}

impl Faulty {
    fn new(fault: Fault) -> Self {
        Self {
            fault,
            seen: 0,
            held: None,
        }
    }

    fn for_victim(&mut self, msg: &[u8]) -> Vec<Vec<u8>> {
        if msg.len() >= 4 && msg[..4] == [0xff; 4] {
            return vec![msg.to_vec()];
        }
        self.seen += 1;
        if let Some(held) = self.held.take() {
            return vec![msg.to_vec(), held];
        }
        if self.seen != FAULT_AT {
            return vec![msg.to_vec()];
        }
        match self.fault {
            Fault::None => vec![msg.to_vec()],
            Fault::Drop => vec![],
            Fault::Duplicate => vec![msg.to_vec(), msg.to_vec()],
            Fault::Reorder => {
                self.held = Some(msg.to_vec());
                vec![]
            }
            Fault::Corrupt => {
                let mut bad = msg.to_vec();
                *bad.last_mut().unwrap() ^= 1;
                vec![bad]
            }
        }
    }
}

/// A WebSocket broadcast server on wsreactor's library API: `on_message`
/// queues each message and wakes the loop, `on_wake` sends the queue to
/// every open connection (the sender included) in order through `Control`.
struct Broadcast {
    ids: Vec<ConnId>,
    queue: Vec<Vec<u8>>,
    remote: Option<Remote>,
    faulty: Faulty,
}

impl Handler for Broadcast {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        self.ids.push(ctx.id());
    }

    fn on_message(&mut self, _ctx: &mut Ctx<'_>, msg: Message<'_>) {
        if self.queue.is_empty() {
            if let Some(r) = &self.remote {
                r.wake();
            }
        }
        self.queue.push(msg.as_bytes().to_vec());
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, _code: u16, _reason: &str) {
        let id = ctx.id();
        self.ids.retain(|&x| x != id);
    }

    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        for msg in std::mem::take(&mut self.queue) {
            let Some((&victim, rest)) = self.ids.split_last() else {
                continue;
            };
            for &id in rest {
                let _ = ctl.send(id, Message::Binary(&msg));
            }
            for m in self.faulty.for_victim(&msg) {
                let _ = ctl.send(victim, Message::Binary(&m));
            }
        }
    }
}

fn ws_broadcast(fault: Fault) -> SocketAddr {
    let handler = Broadcast {
        ids: Vec::new(),
        queue: Vec::new(),
        remote: None,
        faulty: Faulty::new(fault),
    };
    let mut server = Server::bind("127.0.0.1:0", ServerConfig::default(), handler).unwrap();
    let remote = server.stopper();
    server.reactor_mut().handler_mut().remote = Some(remote);
    let addr = server.local_addr();
    thread::spawn(move || server.run());
    addr
}

/// A raw TCP broadcast server of `size`-byte messages: a thread per
/// connection reads whole messages and writes each to every connection
/// under one lock (so every connection sees one order). Returns its address
/// and the source addresses of the connections it accepted.
fn tcp_broadcast(size: usize, fault: Fault) -> (SocketAddr, Arc<Mutex<HashSet<IpAddr>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sources = Arc::new(Mutex::new(HashSet::new()));
    let seen = sources.clone();
    let all: Arc<Mutex<(Vec<TcpStream>, Faulty)>> =
        Arc::new(Mutex::new((Vec::new(), Faulty::new(fault))));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let _ = s.set_nodelay(true);
            seen.lock().unwrap().insert(s.peer_addr().unwrap().ip());
            all.lock().unwrap().0.push(s.try_clone().unwrap());
            let all = all.clone();
            thread::spawn(move || {
                let mut msg = vec![0u8; size];
                while s.read_exact(&mut msg).is_ok() {
                    let mut guard = all.lock().unwrap();
                    let (conns, faulty) = &mut *guard;
                    let Some((victim, rest)) = conns.split_last_mut() else {
                        continue;
                    };
                    for c in rest {
                        let _ = c.write_all(&msg);
                    }
                    for m in faulty.for_victim(&msg) {
                        let _ = victim.write_all(&m);
                    }
                }
            });
        }
    });
    (addr, sources)
}

fn fanout(args: &[&str]) -> Output {
    let mut all = vec!["--fanout", "--duration", "0.4", "--warmup", "0.1"];
    all.extend_from_slice(args);
    bench(&all)
}

/// A fault count of a report.
fn fault(json: &str, name: &str) -> f64 {
    field(json, name).unwrap_or_else(|| panic!("{name} is null in {json}"))
}

#[test]
fn fanout_closed_and_open_loop_over_websocket() {
    let url = format!("ws://{}/", ws_broadcast(Fault::None));
    for extra in [
        &["--publishers", "1", "--inflight", "1"][..],
        &["--publishers", "3", "--inflight", "4", "--size", "1024"][..],
        &["--publishers", "2", "--rate", "400", "--sources", "3"][..],
    ] {
        let mut args = vec!["--url", &url, "--connections", "12"];
        args.extend_from_slice(extra);
        let out = fanout(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {stderr}");
        let json = String::from_utf8(out.stdout).unwrap();
        let deliveries = field(&json, "deliveries").unwrap();
        let broadcasts = field(&json, "broadcasts").unwrap();
        assert!(broadcasts > 0.0, "{json}");
        // Every broadcast reaches all 12 connections (those in flight at
        // either end of the measurement are counted in part).
        assert_near(deliveries, broadcasts * 12.0, "deliveries");
        for name in ["lost", "duplicates", "out_of_order", "corrupt"] {
            assert_eq!(fault(&json, name), 0.0, "{name}: {json}");
        }
        if extra.contains(&"--rate") {
            assert_near(
                field(&json, "published_per_s").unwrap(),
                400.0,
                "publishes/s",
            );
        }
    }
}

#[test]
fn fanout_raw_tcp_from_several_sources() {
    let (addr, sources) = tcp_broadcast(32, Fault::None);
    let addr = addr.to_string();
    let out = fanout(&[
        "--url",
        &addr,
        "--mode",
        "tcp",
        "--connections",
        "9",
        "--publishers",
        "2",
        "--inflight",
        "2",
        "--size",
        "32",
        "--sources",
        "3",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(field(&json, "broadcasts").unwrap() > 0.0, "{json}");
    let seen = sources.lock().unwrap().clone();
    let want: HashSet<IpAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(seen, want);
    // Open loop: the schedule alone publishes.
    let json = report(&[
        "--fanout",
        "--url",
        &addr,
        "--mode",
        "tcp",
        "--connections",
        "4",
        "--publishers",
        "2",
        "--size",
        "32",
        "--rate",
        "500",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
    ]);
    assert_near(
        field(&json, "published_per_s").unwrap(),
        500.0,
        "publishes/s",
    );
    assert_near(
        field(&json, "broadcasts_per_s").unwrap(),
        500.0,
        "broadcasts/s",
    );
}

/// Each fault, in each mode, fails the run with a nonzero exit and is
/// counted under its own name.
#[test]
fn fanout_fails_on_lost_duplicated_reordered_or_corrupt_deliveries() {
    let cases = [
        (Fault::Drop, "lost"),
        (Fault::Duplicate, "duplicates"),
        (Fault::Reorder, "out_of_order"),
        (Fault::Corrupt, "corrupt"),
    ];
    let mut runs = Vec::new();
    for (f, name) in cases {
        let ws = format!("ws://{}/", ws_broadcast(f));
        let (tcp, _) = tcp_broadcast(20, f);
        for (url, mode) in [(ws, "ws"), (tcp.to_string(), "tcp")] {
            // In parallel: a lost delivery costs the 2 s drain grace.
            runs.push(thread::spawn(move || {
                // Two in flight, so a held (reordered) broadcast is
                // released by the next one.
                let out = fanout(&[
                    "--url",
                    &url,
                    "--mode",
                    mode,
                    "--connections",
                    "5",
                    "--inflight",
                    "2",
                ]);
                (f, name, mode, out)
            }));
        }
    }
    for run in runs {
        let (f, name, mode, out) = run.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{f:?} {mode}: the run passed");
        assert!(stderr.contains("delivery faults"), "{f:?} {mode}: {stderr}");
        let json = String::from_utf8(out.stdout).unwrap();
        assert!(fault(&json, name) >= 1.0, "{f:?} {mode}: {json}");
    }
}
