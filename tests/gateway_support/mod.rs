//! A gateway with the in-memory fan-out, and every frame delivered decoded
//! into one JSON shape (Protobuf events converted field by field) so tests
//! assert on both encodings alike.
#![allow(dead_code)]

use std::collections::HashMap;

use prost::Message as _;
use serde_json::{json, Value};
use wsreactor::gateway::protocol::pb::{self, event::Kind, request::Op};
use wsreactor::gateway::{Action, Auth, Delivery, Encoding, Gateway, GatewayConfig, LocalFanout};

pub struct Harness {
    pub gw: Gateway<u64>,
    pub fan: LocalFanout<u64>,
    pub enc: HashMap<u64, Encoding>,
    /// Raw frames per connection, in order.
    pub frames: HashMap<u64, Vec<Delivery<u64>>>,
    /// Every Publish action seen: (encode count after fan-out, message).
    pub published: Vec<std::rc::Rc<wsreactor::gateway::Outgoing>>,
    pub now: u64,
}

impl Harness {
    pub fn new(config: GatewayConfig, auth: Auth) -> Self {
        Harness {
            gw: Gateway::new(config, auth),
            fan: LocalFanout::new(),
            enc: HashMap::new(),
            frames: HashMap::new(),
            published: Vec::new(),
            now: 1_700_000_000_000,
        }
    }

    pub fn anonymous() -> Self {
        Self::new(GatewayConfig::default(), Auth::Anonymous)
    }

    /// Apply pending actions; return the frames they produced.
    pub fn flush(&mut self) -> Vec<Delivery<u64>> {
        let actions: Vec<Action<u64>> = self.gw.actions().collect();
        for a in &actions {
            if let Action::Publish { message, .. } = a {
                self.published.push(message.clone());
            }
        }
        let mut out = Vec::new();
        self.fan.apply(actions, &mut out);
        for d in &out {
            self.frames.entry(d.conn).or_default().push(d.clone());
        }
        out
    }

    /// Connect `conn` anonymously as `name`.
    pub fn connect(&mut self, conn: u64, name: &str, enc: Encoding) {
        let target = format!("/ws?name={name}");
        let id = self
            .gw
            .authenticate(&target, [], self.now)
            .expect("anonymous auth");
        self.gw.open(conn, id, enc, self.now);
        self.enc.insert(conn, enc);
        self.flush();
    }

    /// Send a raw frame from `conn`; return the decoded events per connection.
    pub fn raw(&mut self, conn: u64, bytes: &[u8], binary: bool) -> Events {
        self.gw.on_frame(conn, bytes, binary, self.now);
        Events(self.flush().iter().map(|d| (d.conn, decode(d))).collect())
    }

    /// Send a request given as JSON; a Protobuf connection gets it converted.
    pub fn req(&mut self, conn: u64, v: Value) -> Events {
        match self.enc[&conn] {
            Encoding::Json => self.raw(conn, v.to_string().as_bytes(), false),
            Encoding::Protobuf => self.raw(conn, &to_proto(&v), true),
        }
    }

    pub fn join(&mut self, conn: u64, room: &str) -> Events {
        self.req(conn, json!({"op": "join", "room": room}))
    }

    pub fn publish(&mut self, conn: u64, room: &str, data: Value) -> Events {
        self.req(conn, json!({"op": "publish", "room": room, "data": data}))
    }

    pub fn close(&mut self, conn: u64) {
        self.gw.on_close(conn);
        self.flush();
    }
}

/// Events delivered by one call: (connection, event).
#[derive(Debug, Clone)]
pub struct Events(pub Vec<(u64, Value)>);

impl Events {
    /// The events for `conn`.
    pub fn of(&self, conn: u64) -> Vec<Value> {
        self.0
            .iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The single event for `conn`.
    pub fn one(&self, conn: u64) -> Value {
        let v = self.of(conn);
        assert_eq!(v.len(), 1, "expected one event for {conn}, got {v:?}");
        v.into_iter().next().unwrap()
    }

    /// The single error event's code, for `conn`.
    pub fn error_code(&self, conn: u64) -> String {
        let e = self.one(conn);
        assert_eq!(e["type"], "error", "{e}");
        e["code"].as_str().unwrap().to_owned()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A delivered frame as the JSON event it stands for.
pub fn decode(d: &Delivery<u64>) -> Value {
    if !d.binary {
        return serde_json::from_slice(&d.bytes).expect("server JSON is valid");
    }
    let e = pb::Event::decode(&d.bytes[..]).expect("server Protobuf is valid");
    let mut v = match e.kind.expect("event has a kind") {
        Kind::Joined(j) => {
            json!({"type": "joined", "room": j.room, "seq": j.seq, "recovered": j.recovered})
        }
        Kind::Message(m) => json!({
            "type": "message", "room": m.room, "seq": m.seq, "from": m.from, "ts": m.ts,
            "data": serde_json::from_slice::<Value>(&m.data).expect("data is JSON"),
        }),
        Kind::Left(l) => json!({"type": "left", "room": l.room}),
        Kind::Presence(p) => match p.total {
            None => json!({"type": "presence", "room": p.room, "users": p.users}),
            Some(t) => json!({"type": "presence", "room": p.room, "users": p.users, "total": t}),
        },
        Kind::Ack(_) => json!({"type": "ack"}),
        Kind::Error(e) => json!({"type": "error", "code": e.code, "message": e.message}),
    };
    if let Some(id) = e.id {
        v["id"] = Value::String(id);
    }
    v
}

/// A JSON request as the Protobuf request with the same fields (a
/// non-string id becomes its text).
pub fn to_proto(v: &Value) -> Vec<u8> {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let op = match v["op"].as_str().unwrap() {
        "join" => Op::Join(pb::Join {
            room: s("room"),
            since: v["since"].as_u64(),
        }),
        "leave" => Op::Leave(pb::Leave { room: s("room") }),
        "publish" => Op::Publish(pb::Publish {
            room: s("room"),
            data: v["data"].to_string().into_bytes(),
        }),
        "presence" => Op::Presence(pb::PresenceRequest { room: s("room") }),
        "refresh" => Op::Refresh(pb::Refresh { token: s("token") }),
        other => panic!("no Protobuf form for {other}"),
    };
    let id = match &v["id"] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    pb::Request { id, op: Some(op) }.encode_to_vec()
}
