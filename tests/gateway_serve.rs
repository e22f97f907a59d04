//! `wsreactor serve`'s handler on the real reactor over loopback: the
//! endpoint and the page, JSON and Protobuf members of one room getting the
//! same messages (each framed once per encoding), acks, history recovery on
//! a new connection, JWT at the handshake, and the gateway's metrics.
#![cfg(feature = "gateway")]

mod common;
mod process_support;

use std::io::{Read, Write};
use std::net::SocketAddr;

use common::*;
use prost::Message as _;
use serde_json::{json, Value};
use wsreactor::gateway::protocol::pb;
use wsreactor::gateway::server::GatewayHandler;
use wsreactor::gateway::{Auth, GatewayConfig, JwtVerifier};
use wsreactor::{Server, ServerConfig};

/// The gateway's handler is not `Send` (it shares encoded messages with
/// `Rc`): it is made on the reactor's own thread.
struct Gateway {
    addr: SocketAddr,
    stopper: wsreactor::Stopper,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    fn stop(mut self) {
        self.stopper.stop();
        self.thread.take().unwrap().join().unwrap();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stopper.stop();
        }
    }
}

fn gateway(auth: Auth) -> Gateway {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let handler = GatewayHandler::new(GatewayConfig::default(), auth);
        let server = Server::bind("127.0.0.1:0", ServerConfig::default(), handler).unwrap();
        tx.send((server.local_addr(), server.stopper())).unwrap();
        server.run().unwrap();
    });
    let (addr, stopper) = rx.recv().unwrap();
    Gateway {
        addr,
        stopper,
        thread: Some(thread),
    }
}

/// Upgrade at `target` offering `protocol`; the raw answer's head, and the
/// client if it was a 101.
fn upgrade(
    addr: SocketAddr,
    target: &str,
    protocol: Option<&str>,
    extra: &str,
) -> (String, Option<WsClient>) {
    let mut s = tcp(addr);
    let proto = protocol.map_or(String::new(), |p| {
        format!("Sec-WebSocket-Protocol: {p}\r\n")
    });
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{proto}{extra}\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let head = lossy(&read_http_head(&mut s, &mut buf));
    if head.starts_with("HTTP/1.1 101") {
        (head, Some(WsClient::from_parts(s, buf)))
    } else {
        (head, None)
    }
}

fn json_client(addr: SocketAddr, query: &str) -> WsClient {
    let (head, c) = upgrade(addr, &format!("/ws{query}"), Some("wsreactor.v1.json"), "");
    assert!(
        head.contains("Sec-WebSocket-Protocol: wsreactor.v1.json"),
        "{head}"
    );
    c.expect("101")
}

fn send_json(c: &mut WsClient, v: Value) {
    c.send(OP_TEXT, v.to_string().as_bytes());
}

fn recv_json(c: &mut WsClient) -> (Vec<u8>, Value) {
    let f = c.recv();
    assert_eq!(f.opcode, OP_TEXT, "{f:?}");
    let v = serde_json::from_slice(&f.payload).unwrap();
    (f.payload, v)
}

fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = tcp(addr);
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    lossy(&out)
}

#[test]
fn page_endpoint_and_metrics() {
    let server = gateway(Auth::Anonymous);
    let page = http(server.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Content-Type: text/html"));
    assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"));
    let head = http(server.addr, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let other = http(server.addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 426"), "{other}");
    // Upgrades elsewhere than /ws are refused.
    let (head, c) = upgrade(server.addr, "/chat", None, "");
    assert!(c.is_none() && head.starts_with("HTTP/1.1 404"), "{head}");

    let mut a = json_client(server.addr, "?name=alice");
    send_json(&mut a, json!({"op":"join","room":"r"}));
    assert_eq!(recv_json(&mut a).1["type"], "joined");
    let metrics = http(server.addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        metrics.contains("wsreactor_connections_open 1"),
        "{metrics}"
    );
    assert!(metrics.contains("wsreactor_gateway_"), "{metrics}");
    assert!(metrics.contains("wsreactor_subscriptions 1"), "{metrics}");
    server.stop();
}

#[test]
fn json_and_protobuf_members_share_a_room() {
    let server = gateway(Auth::Anonymous);
    let mut a = json_client(server.addr, "?name=alice");
    let mut b = json_client(server.addr, "?name=bob");
    let (_, p) = upgrade(server.addr, "/ws?name=pat", Some("wsreactor.v1.proto"), "");
    let mut p = p.expect("101");
    for c in [&mut a, &mut b] {
        send_json(c, json!({"op":"join","room":"lobby"}));
        let (_, v) = recv_json(c);
        assert_eq!(
            (v["type"].as_str(), v["seq"].as_u64()),
            (Some("joined"), Some(0))
        );
    }
    let join = pb::Request {
        id: None,
        op: Some(pb::request::Op::Join(pb::Join {
            room: "lobby".into(),
            since: None,
        })),
    };
    p.send(OP_BINARY, &join.encode_to_vec());
    let ev = pb::Event::decode(p.recv().payload.as_slice()).unwrap();
    assert!(
        matches!(ev.kind, Some(pb::event::Kind::Joined(_))),
        "{ev:?}"
    );

    send_json(
        &mut a,
        json!({"op":"publish","room":"lobby","data":{"text":"hi"},"id":7}),
    );
    let (ack, message) = {
        let first = recv_json(&mut a);
        let second = recv_json(&mut a);
        if first.1["type"] == "ack" {
            (first, second)
        } else {
            (second, first)
        }
    };
    assert_eq!(ack.1, json!({"type":"ack","id":7}));
    assert_eq!(message.1["type"], "message");
    assert_eq!(message.1["seq"], 1);
    assert_eq!(message.1["from"], "alice");
    assert_eq!(message.1["data"], json!({"text":"hi"}));
    // The same bytes for every JSON member: framed once.
    let (bytes_b, _) = recv_json(&mut b);
    assert_eq!(bytes_b, message.0);
    let f = p.recv();
    assert_eq!(f.opcode, OP_BINARY);
    let ev = pb::Event::decode(f.payload.as_slice()).unwrap();
    match ev.kind {
        Some(pb::event::Kind::Message(m)) => {
            assert_eq!(
                (m.room.as_str(), m.seq, m.from.as_str()),
                ("lobby", 1, "alice")
            );
            assert_eq!(
                serde_json::from_slice::<Value>(&m.data).unwrap(),
                json!({"text":"hi"})
            );
        }
        other => panic!("{other:?}"),
    }
    // Bad input: an error event, the connection stays.
    b.send(OP_TEXT, b"not json");
    assert_eq!(recv_json(&mut b).1["code"], "bad_request");
    send_json(&mut b, json!({"op":"publish","room":"elsewhere","data":1}));
    assert_eq!(recv_json(&mut b).1["code"], "not_joined");

    // A member that leaves (closes) misses messages; a new connection
    // recovers them from history with `since`.
    drop(b);
    for i in 0..3 {
        send_json(&mut a, json!({"op":"publish","room":"lobby","data":i}));
        assert_eq!(recv_json(&mut a).1["seq"], 2 + i);
    }
    let mut b2 = json_client(server.addr, "?name=bob");
    send_json(&mut b2, json!({"op":"join","room":"lobby","since":1}));
    let (_, joined) = recv_json(&mut b2);
    assert_eq!(
        joined,
        json!({"type":"joined","room":"lobby","seq":4,"recovered":true})
    );
    for i in 0..3u64 {
        let (_, m) = recv_json(&mut b2);
        assert_eq!(
            (m["seq"].as_u64(), m["data"].as_u64()),
            (Some(2 + i), Some(i))
        );
    }
    server.stop();
}

#[test]
fn a_jwt_is_required_when_a_key_is_set() {
    let secret = b"test secret for the gateway handshake";
    let dir = std::env::temp_dir().join(format!("wsr-gw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret");
    std::fs::write(&path, secret).unwrap();
    let verifier = JwtVerifier::hs256_file(&path).unwrap();
    let server = gateway(Auth::Jwt(verifier));
    let (head, c) = upgrade(server.addr, "/ws", Some("wsreactor.v1.json"), "");
    assert!(c.is_none() && head.starts_with("HTTP/1.1 401"), "{head}");
    let (head, c) = upgrade(
        server.addr,
        "/ws",
        None,
        "Authorization: Bearer not.a.jwt\r\n",
    );
    assert!(c.is_none() && head.starts_with("HTTP/1.1 401"), "{head}");

    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub":"carol","exp":exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap();
    let mut c = json_client(server.addr, &format!("?token={token}"));
    send_json(&mut c, json!({"op":"join","room":"r"}));
    assert_eq!(recv_json(&mut c).1["type"], "joined");
    send_json(&mut c, json!({"op":"publish","room":"r","data":"x"}));
    assert_eq!(recv_json(&mut c).1["from"], "carol");
    server.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// `wsreactor serve` runs on one reactor (a room's sequence and history live
/// in one handler): it is the default, and more threads are refused rather
/// than splitting rooms.
#[test]
fn serve_runs_on_one_reactor_and_refuses_more() {
    let bin = env!("CARGO_BIN_EXE_wsreactor");
    let out = std::process::Command::new(bin)
        .args(["serve", "--addr", "127.0.0.1:0", "--threads", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("wsreactor: --threads 2: serve runs on one reactor"),
        "{stderr}"
    );
    for threads in [None, Some("1")] {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["serve", "--addr", "127.0.0.1:0"]);
        if let Some(n) = threads {
            cmd.args(["--threads", n]);
        }
        let (mut child, addr) = process_support::spawn_listening(cmd, "ws");
        let metrics = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let _ = child.kill();
        let _ = child.wait();
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("wsreactor_gateway_"), "{metrics}");
        // Several reactors would add series labelled by reactor.
        assert!(!metrics.contains("reactor=\""), "{threads:?}: {metrics}");
    }
}
