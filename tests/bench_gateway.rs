//! `wsreactor bench --gateway` as a process against `wsreactor serve`
//! processes (JSON and Protobuf, stepped clients and rates, two gateways),
//! against servers that are not gateways or not there, and against a
//! gateway in this process that loses, duplicates or reorders one delivery:
//! each of those must fail the run.
#![cfg(all(target_os = "linux", feature = "loadgen", feature = "gateway"))]

mod process_support;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Output};
use std::thread;

use process_support::spawn_listening;
use serde_json::Value;
use wsreactor::{ConnId, Ctx, Handler, Message, Server, ServerConfig};

/// A `wsreactor` server process on an ephemeral loopback port, killed (by
/// PID) when dropped.
struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Proc {
    fn spawn(cmd: &str) -> Self {
        Self::spawn_with(cmd, &[])
    }

    fn spawn_with(cmd: &str, args: &[&str]) -> Self {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wsreactor"));
        c.args([cmd, "--addr", "127.0.0.1:0"]).args(args);
        let (child, addr) = spawn_listening(c, "ws");
        Self { child, addr }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wsreactor"))
        .args(["bench", "--gateway", "--json", "-q", "--warmup", "0.2"])
        .args(args)
        .output()
        .expect("run wsreactor bench")
}

/// The JSON lines of a run: the step rows, then the summary.
fn lines(out: &Output) -> (Vec<Value>, Value) {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = v.pop().expect("a summary line");
    assert_eq!(summary["summary"], true, "{text}");
    (v, summary)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_clean(summary: &Value) {
    for k in ["lost", "duplicates", "out_of_order", "corrupt"] {
        assert_eq!(summary["faults"][k], 0, "{k}: {summary}");
    }
}

#[test]
fn json_clients_step_up() {
    let gw = Proc::spawn("serve");
    let pid = gw.child.id().to_string();
    let url = gw.url();
    let out = bench(&[
        "--url",
        &url,
        "--conns",
        "40",
        "--rooms",
        "4",
        "--rate",
        "80",
        "--step-every",
        "1",
        "--step-conns",
        "40",
        "--steps",
        "2",
        "--server-pid",
        &pid,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (rows, summary) = lines(&out);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["members"], 40);
    assert_eq!(rows[1]["members"], 80, "{rows:?}");
    for r in &rows {
        // 80/s over rooms of 10 then 20 members.
        let d = r["deliveries_per_s"].as_f64().unwrap();
        assert!(d > 400.0, "{r}");
        assert!(r["latency_us"]["p99"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["error_rate"], 0.0, "{r}");
        assert!(r["server_cpu_pct"].is_number(), "{r}");
        assert!(r["server_rss_kib"].as_u64().unwrap() > 0, "{r}");
    }
    assert!(rows[1]["deliveries"].as_u64() > rows[0]["deliveries"].as_u64());
    assert_eq!(summary["encoding"], "json");
    assert_clean(&summary);
}

#[test]
fn protobuf_rate_steps_up() {
    let gw = Proc::spawn("serve");
    let url = gw.url();
    let out = bench(&[
        "--url",
        &url,
        "--conns",
        "30",
        "--rooms",
        "3",
        "--encoding",
        "proto",
        "--rate",
        "50",
        "--step-every",
        "1",
        "--step-rate",
        "50",
        "--steps",
        "2",
        "--name",
        "b",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (rows, summary) = lines(&out);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["offered_per_s"], 50.0);
    assert_eq!(rows[1]["offered_per_s"], 100.0);
    let p1 = rows[1]["publishes_per_s"].as_f64().unwrap();
    assert!((80.0..=120.0).contains(&p1), "{}", rows[1]);
    assert!(rows[1]["deliveries_per_s"].as_f64().unwrap() > 600.0);
    assert_eq!(summary["encoding"], "proto");
    assert_clean(&summary);
}

/// Clients alternate over two gateways; with an even number of rooms each
/// room lives on one of them and the run is clean. With one room, members
/// on one gateway never hear the other's publishers (nothing links them):
/// the run fails with the losses, although every member's seqs are
/// consecutive.
#[test]
fn clients_spread_over_several_urls() {
    let (a, b) = (Proc::spawn("serve"), Proc::spawn("serve"));
    let urls = format!("{},{}", a.url(), b.url());
    let out = bench(&[
        "--url",
        &urls,
        "--conns",
        "20",
        "--rooms",
        "2",
        "--rate",
        "40",
        "--duration",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, summary) = lines(&out);
    assert_eq!(summary["urls"].as_array().unwrap().len(), 2);
    assert_clean(&summary);
    let out = bench(&[
        "--url",
        &a.url(),
        "--url",
        &b.url(),
        "--conns",
        "20",
        "--rooms",
        "1",
        "--rate",
        "40",
        "--publishers",
        "4",
        "--duration",
        "1",
    ]);
    assert!(!out.status.success());
    let (_, summary) = lines(&out);
    assert!(summary["faults"]["lost"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["faults"]["duplicates"], 0);
    assert!(
        stderr(&out).contains("publishes sent after its join never came"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_server_that_is_not_a_gateway_fails_clearly() {
    let echo = Proc::spawn("echo");
    let out = bench(&[
        "--url",
        &echo.url(),
        "--conns",
        "3",
        "--rate",
        "10",
        "--duration",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not answer a join like a wsreactor gateway"),
        "{}",
        stderr(&out)
    );
    // In Protobuf an echoed join reads as a `joined`: the publishes show it.
    let out = bench(&[
        "--url",
        &echo.url(),
        "--conns",
        "3",
        "--rate",
        "10",
        "--duration",
        "1",
        "--encoding",
        "proto",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no message was delivered at all: is"),
        "{}",
        stderr(&out)
    );
    let gw = Proc::spawn("serve");
    let wrong = format!("ws://{}/elsewhere", gw.addr);
    let out = bench(&[
        "--url",
        &wrong,
        "--conns",
        "3",
        "--rate",
        "10",
        "--duration",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
}

#[test]
fn a_server_that_is_not_there_fails_clearly() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("ws://127.0.0.1:{port}/ws");
    let out = bench(&[
        "--url",
        &url,
        "--conns",
        "3",
        "--rate",
        "10",
        "--duration",
        "1",
    ]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("cannot connect to") && e.contains("refused"),
        "{e}"
    );
}

#[test]
fn bad_options_fail_before_connecting() {
    let out = bench(&[
        "--url",
        "ws://127.0.0.1:9/ws",
        "--conns",
        "2",
        "--rate",
        "1000",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("per-connection limit"),
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------
// A small JSON rooms gateway in this process that can misdeliver one
// message, to show the bench notices.

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Member 1 of the room never gets seq 3.
    Lose,
    /// Member 0 gets seq 3 twice.
    Duplicate,
    /// Member 0 gets seq 3 after seq 4.
    Reorder,
}

struct Faulty {
    fault: Fault,
    rooms: HashMap<String, (u64, Vec<ConnId>)>,
    held: Option<(ConnId, String)>,
}

impl Handler for Faulty {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        let Message::Text(t) = msg else { return };
        let v: Value = serde_json::from_str(t).unwrap();
        let room = v["room"].as_str().unwrap().to_string();
        let entry = self.rooms.entry(room.clone()).or_default();
        match v["op"].as_str().unwrap() {
            "join" => {
                entry.1.push(ctx.id());
                let joined = format!(r#"{{"type":"joined","room":"{room}","seq":{}}}"#, entry.0);
                let _ = ctx.send_text(&joined);
            }
            "publish" => {
                entry.0 += 1;
                let seq = entry.0;
                let m = format!(
                    r#"{{"type":"message","room":"{room}","seq":{seq},"from":"x","ts":0,"data":{}}}"#,
                    v["data"]
                );
                let members = entry.1.clone();
                let ctl = ctx.control();
                for (i, id) in members.into_iter().enumerate() {
                    match (self.fault, seq, i) {
                        (Fault::Lose, 3, 1) => continue,
                        (Fault::Duplicate, 3, 0) => {
                            let _ = ctl.send(id, Message::Text(&m));
                        }
                        (Fault::Reorder, 3, 0) => {
                            self.held = Some((id, m.clone()));
                            continue;
                        }
                        _ => {}
                    }
                    let _ = ctl.send(id, Message::Text(&m));
                    if self.fault == Fault::Reorder && seq == 4 && i == 0 {
                        if let Some((id, held)) = self.held.take() {
                            let _ = ctl.send(id, Message::Text(&held));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn faulty(fault: Fault) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let handler = Faulty {
            fault,
            rooms: HashMap::new(),
            held: None,
        };
        let server = Server::bind("127.0.0.1:0", ServerConfig::default(), handler).unwrap();
        tx.send(server.local_addr()).unwrap();
        server.run().unwrap();
    });
    rx.recv().unwrap()
}

#[test]
fn every_delivery_fault_fails_the_run() {
    for (fault, key) in [
        (Fault::None, ""),
        (Fault::Lose, "lost"),
        (Fault::Duplicate, "duplicates"),
        (Fault::Reorder, "out_of_order"),
    ] {
        let url = format!("ws://{}/ws", faulty(fault));
        let out = bench(&[
            "--url",
            &url,
            "--conns",
            "4",
            "--rate",
            "20",
            "--duration",
            "1",
        ]);
        let (_, summary) = lines(&out);
        if fault == Fault::None {
            assert!(out.status.success(), "{}", stderr(&out));
            assert_clean(&summary);
            continue;
        }
        assert!(!out.status.success(), "{key}: {summary}");
        assert!(
            summary["faults"][key].as_u64().unwrap() > 0,
            "{key}: {summary}"
        );
        assert!(stderr(&out).contains("delivery faults"), "{}", stderr(&out));
    }
}

/// With a JWT key: a token from a file (or the option) that grants the
/// bench's rooms passes; one for other rooms fails on the join, none at the
/// handshake.
#[test]
fn tokens_reach_the_gateway() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let secret = b"0123456789abcdef0123456789abcdef-bench-secret";
    let dir = std::env::temp_dir().join(format!("wsreactor-bench-gw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, secret).unwrap();
    let token = |rooms: &str| {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let claims = serde_json::json!({"sub": "bench", "exp": exp, "rooms": [rooms]});
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    };
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{}\n", token("bench:*"))).unwrap();
    let gw = Proc::spawn_with(
        "serve",
        &["--jwt-secret-file", secret_file.to_str().unwrap()],
    );
    let url = gw.url();
    let base = [
        "--url",
        &url,
        "--conns",
        "6",
        "--rooms",
        "2",
        "--rate",
        "20",
        "--duration",
        "1",
    ];
    let out = bench(&[&base[..], &["--token-file", token_file.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_clean(&lines(&out).1);
    let other = token("other:*");
    let out = bench(&[&base[..], &["--token", &other]].concat());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("forbidden"), "{}", stderr(&out));
    let out = bench(&base);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}
