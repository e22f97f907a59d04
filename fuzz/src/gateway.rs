//! The body of the `gateway` target: random client requests from several
//! connections against a model of the rooms (see the README).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost::Message as _;
use serde_json::Value;
use wsreactor::gateway::protocol::pb::{self, event::Kind, request::Op};
use wsreactor::gateway::{
    Action, Auth, Encoding, Gateway, GatewayConfig, HistoryConfig, Payload, Rate,
};

use crate::Cursor;

const CONNS: u64 = 4;
const ROOMS: [&str; 4] = ["a", "b", "ns:c", "d"];

/// A server event, decoded from either encoding.
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Joined {
        room: String,
        seq: u64,
        recovered: bool,
    },
    Message {
        room: String,
        seq: u64,
        from: String,
        data: Value,
    },
    Left(String),
    Presence {
        room: String,
        users: Vec<String>,
    },
    Ack,
    Error(String),
}

fn decode(binary: bool, bytes: &[u8]) -> Ev {
    if binary {
        let e = pb::Event::decode(bytes).expect("server Protobuf decodes");
        return match e.kind.expect("event kind") {
            Kind::Joined(j) => Ev::Joined {
                room: j.room,
                seq: j.seq,
                recovered: j.recovered,
            },
            Kind::Message(m) => Ev::Message {
                room: m.room,
                seq: m.seq,
                from: m.from,
                data: serde_json::from_slice(&m.data).expect("data is JSON"),
            },
            Kind::Left(l) => Ev::Left(l.room),
            Kind::Presence(p) => Ev::Presence {
                room: p.room,
                users: p.users,
            },
            Kind::Ack(_) => Ev::Ack,
            Kind::Error(e) => Ev::Error(e.code),
        };
    }
    let v: Value = serde_json::from_slice(bytes).expect("server JSON parses");
    let s = |k: &str| v[k].as_str().expect("string field").to_owned();
    let n = |k: &str| v[k].as_u64().expect("number field");
    match v["type"].as_str().expect("type") {
        "joined" => Ev::Joined {
            room: s("room"),
            seq: n("seq"),
            recovered: v["recovered"].as_bool().unwrap(),
        },
        "message" => Ev::Message {
            room: s("room"),
            seq: n("seq"),
            from: s("from"),
            data: v["data"].clone(),
        },
        "left" => Ev::Left(s("room")),
        "presence" => Ev::Presence {
            room: s("room"),
            users: v["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap().to_owned())
                .collect(),
        },
        "ack" => Ev::Ack,
        "error" => Ev::Error(s("code")),
        t => panic!("unknown event type {t}"),
    }
}

#[derive(Debug, Default)]
struct ConnModel {
    open: bool,
    enc: Option<Encoding>,
    name: String,
    rooms: BTreeSet<String>,
    /// Last message seq seen per room (strictly increasing while joined).
    seen: HashMap<String, u64>,
}

struct World {
    gw: Gateway<u64>,
    now: u64,
    conns: Vec<ConnModel>,
    /// The room's last seq as the model knows it.
    last: HashMap<String, u64>,
}

/// A structured request, as JSON; sent in the connection's encoding.
fn request(
    op: &str,
    room: &str,
    since: Option<u64>,
    data: Option<&Value>,
    id: Option<u8>,
) -> Value {
    let mut v = serde_json::json!({"op": op, "room": room});
    if let Some(s) = since {
        v["since"] = s.into();
    }
    if let Some(d) = data {
        v["data"] = d.clone();
    }
    if let Some(i) = id {
        v["id"] = i.into();
    }
    v
}

fn encode(enc: Encoding, v: &Value) -> Vec<u8> {
    if enc == Encoding::Json {
        return v.to_string().into_bytes();
    }
    let room = v["room"].as_str().unwrap_or_default().to_owned();
    let op = match v["op"].as_str().unwrap() {
        "join" => Op::Join(pb::Join {
            room,
            since: v["since"].as_u64(),
        }),
        "leave" => Op::Leave(pb::Leave { room }),
        "publish" => Op::Publish(pb::Publish {
            room,
            data: v["data"].to_string().into_bytes(),
        }),
        _ => Op::Presence(pb::PresenceRequest { room }),
    };
    let id = v.get("id").map(|i| i.to_string());
    pb::Request { id, op: Some(op) }.encode_to_vec()
}

impl World {
    /// Apply the gateway's actions as a transport would, checking each
    /// against the model; returns the events per connection.
    fn settle(&mut self) -> BTreeMap<u64, Vec<Ev>> {
        let actions: Vec<Action<u64>> = self.gw.actions().collect();
        let mut out: BTreeMap<u64, Vec<Ev>> = BTreeMap::new();
        for a in actions {
            match a {
                Action::Send {
                    conn,
                    encoding,
                    ref payload,
                } => {
                    let m = &self.conns[conn as usize];
                    assert!(m.open, "send to closed {conn}");
                    assert_eq!(Some(encoding), m.enc);
                    let ev = decode(encoding.is_binary(), a.send_bytes().unwrap());
                    if let Payload::Message(msg) = payload {
                        // A replay: after the joined event, in order, no newer than the room.
                        assert!(
                            msg.seq() <= self.last.get(msg.room().as_str()).copied().unwrap_or(0)
                        );
                    }
                    out.entry(conn).or_default().push(ev);
                }
                Action::Subscribe { conn, encoding, .. } => {
                    assert_eq!(Some(encoding), self.conns[conn as usize].enc);
                }
                // (A reopened id unsubscribes in its old encoding.)
                Action::Unsubscribe { .. } => {}
                Action::Publish { room, message } => {
                    let last = self.last.entry(room.to_string()).or_default();
                    assert_eq!(message.seq(), *last + 1, "seq in {room}");
                    assert!(self
                        .conns
                        .iter()
                        .any(|m| m.open && m.rooms.contains(room.as_str())));
                    *last = message.seq();
                    // Exactly the members get it, each in its encoding.
                    for (i, m) in self.conns.iter().enumerate() {
                        if m.open && m.rooms.contains(room.as_str()) {
                            let enc = m.enc.unwrap();
                            let ev = decode(enc.is_binary(), message.bytes(enc));
                            out.entry(i as u64).or_default().push(ev);
                        }
                    }
                    assert!(message.encode_count() <= 2);
                }
                Action::Close { .. } => panic!("anonymous connections never expire"),
            }
        }
        // Message seqs per room only go up, for every connection.
        for (conn, evs) in &out {
            for ev in evs {
                if let Ev::Joined { room, seq, .. } = ev {
                    let active = self.conns.iter().any(|m| m.open && m.rooms.contains(room));
                    let last = self.last.entry(room.clone()).or_default();
                    if active {
                        assert_eq!(seq, last, "a room with members keeps its seq");
                    } else {
                        // A room without members may have been forgotten.
                        *last = *seq;
                    }
                }
            }
            let m = &mut self.conns[*conn as usize];
            for ev in evs {
                if let Ev::Joined { room, .. } = ev {
                    // A (re)join starts a replay: seqs go up from here.
                    m.seen.insert(room.clone(), 0);
                }
                if let Ev::Message { room, seq, .. } = ev {
                    let s = m.seen.entry(room.clone()).or_default();
                    assert!(*seq > *s, "conn {conn} room {room}: seq {seq} after {s}");
                    *s = *seq;
                }
            }
        }
        out
    }

    fn check_state(&self) {
        let open = self.conns.iter().filter(|c| c.open).count();
        assert_eq!(self.gw.connections(), open);
        for (i, m) in self.conns.iter().enumerate() {
            let got: BTreeSet<&str> = self
                .gw
                .rooms_of(i as u64)
                .iter()
                .map(|r| r.as_str())
                .collect();
            let want: BTreeSet<&str> = if m.open {
                m.rooms.iter().map(String::as_str).collect()
            } else {
                BTreeSet::new()
            };
            assert_eq!(got, want, "rooms of {i}");
        }
    }
}

/// Run one input (layout in fuzz/README.md).
pub fn drive_gateway(data: &[u8]) {
    let mut c = Cursor(data);
    let config = GatewayConfig {
        history: HistoryConfig {
            max_messages: 8,
            max_age_ms: 10_000,
            max_bytes: 4096,
        },
        // Rate limits off: the model does not follow the clock's buckets.
        publish_rate: Rate {
            rate_per_s: 1_000_000,
            burst: 1_000_000,
        },
        request_rate: Rate {
            rate_per_s: 1_000_000,
            burst: 1_000_000,
        },
        ..Default::default()
    };
    let mut w = World {
        gw: Gateway::new(config, Auth::Anonymous),
        now: 1_000_000,
        conns: (0..CONNS).map(|_| ConnModel::default()).collect(),
        last: HashMap::new(),
    };
    let mut steps = 0;
    while let Some(op) = c.u8() {
        steps += 1;
        if steps > 512 {
            break;
        }
        let conn = u64::from(op >> 5) % CONNS;
        let ci = conn as usize;
        match op & 7 {
            0 => {
                let enc = if op & 8 != 0 {
                    Encoding::Protobuf
                } else {
                    Encoding::Json
                };
                let name = format!("u{}", op >> 6);
                let id =
                    w.gw.authenticate(&format!("/ws?name={name}"), [], w.now)
                        .unwrap();
                w.gw.open(conn, id, enc, w.now);
                let m = &mut w.conns[ci];
                *m = ConnModel {
                    open: true,
                    enc: Some(enc),
                    name,
                    ..Default::default()
                };
                let evs = w.settle();
                assert!(evs.is_empty());
            }
            1 => {
                w.gw.on_close(conn);
                w.conns[ci] = ConnModel::default();
                w.settle();
            }
            2 => {
                // Raw bytes, either frame type: anything may happen but a
                // panic; membership follows the events it answers with.
                let Some(bytes) = c.short() else { break };
                if !w.conns[ci].open {
                    continue;
                }
                w.gw.on_frame(conn, bytes, op & 8 != 0, w.now);
                let evs = w.settle();
                if let Some(mine) = evs.get(&conn) {
                    for ev in mine {
                        match ev {
                            Ev::Joined { room, .. } => {
                                w.conns[ci].rooms.insert(room.clone());
                            }
                            Ev::Left(room) => {
                                w.conns[ci].rooms.remove(room.as_str());
                            }
                            _ => {}
                        }
                    }
                }
            }
            3..=6 => {
                let Some(arg) = c.u8() else { break };
                if !w.conns[ci].open {
                    continue;
                }
                let room = ROOMS[usize::from(arg & 3)];
                let id = (arg & 4 != 0).then_some(arg);
                let enc = w.conns[ci].enc.unwrap();
                let member = w.conns[ci].rooms.contains(room);
                let tag = if op & 7 == 5 { c.u8().unwrap_or(0) } else { 0 };
                let data = Value::from(format!("{}:{tag}", w.conns[ci].name));
                let req = match op & 7 {
                    3 => request(
                        "join",
                        room,
                        (arg & 8 != 0).then(|| u64::from(arg >> 4)),
                        None,
                        id,
                    ),
                    4 => request("leave", room, None, None, id),
                    5 => request("publish", room, None, Some(&data), id),
                    _ => request("presence", room, None, None, id),
                };
                let members_before: Vec<bool> = w
                    .conns
                    .iter()
                    .map(|m| m.open && m.rooms.contains(room))
                    .collect();
                w.gw.on_frame(conn, &encode(enc, &req), enc.is_binary(), w.now);
                let evs = w.settle();
                let mine = evs.get(&conn).cloned().unwrap_or_default();
                match op & 7 {
                    3 => {
                        let Some(Ev::Joined {
                            room: r,
                            seq,
                            recovered,
                        }) = mine.first()
                        else {
                            panic!("join answered {mine:?}")
                        };
                        assert_eq!(r, room);
                        let replay: Vec<u64> = mine[1..]
                            .iter()
                            .map(|e| match e {
                                Ev::Message { room: mr, seq, .. } if mr == room => *seq,
                                e => panic!("after joined: {e:?}"),
                            })
                            .collect();
                        if let Some(since) = req["since"].as_u64().filter(|_| *recovered) {
                            let want: Vec<u64> = (since + 1..=*seq).collect();
                            assert_eq!(replay, want, "replay after {since}");
                        } else {
                            assert!(replay.is_empty());
                        }
                        w.conns[ci].rooms.insert(room.to_owned());
                    }
                    4 => {
                        if member {
                            assert_eq!(mine, [Ev::Left(room.to_owned())]);
                        } else {
                            assert_eq!(mine, [Ev::Error("not_joined".into())]);
                        }
                        w.conns[ci].rooms.remove(room);
                    }
                    5 => {
                        if !member {
                            assert_eq!(mine, [Ev::Error("not_joined".into())]);
                            assert!(evs.len() == 1);
                            continue;
                        }
                        // Every member, and nobody else, got exactly this message.
                        let seq = w.last[room];
                        for (i, was) in members_before.iter().enumerate() {
                            let got: Vec<&Ev> = evs
                                .get(&(i as u64))
                                .map(|v| {
                                    v.iter()
                                        .filter(|e| matches!(e, Ev::Message { .. }))
                                        .collect()
                                })
                                .unwrap_or_default();
                            if *was {
                                let want = Ev::Message {
                                    room: room.to_owned(),
                                    seq,
                                    from: w.conns[ci].name.clone(),
                                    data: data.clone(),
                                };
                                assert_eq!(got, [&want], "member {i}");
                            } else {
                                assert!(got.is_empty(), "non-member {i} got {got:?}");
                            }
                        }
                        assert_eq!(mine.last() == Some(&Ev::Ack), id.is_some());
                    }
                    _ => {
                        if member {
                            let users: BTreeSet<String> = w
                                .conns
                                .iter()
                                .filter(|m| m.open && m.rooms.contains(room))
                                .map(|m| m.name.clone())
                                .collect();
                            let users: Vec<String> = users.into_iter().collect();
                            assert_eq!(
                                mine,
                                [Ev::Presence {
                                    room: room.to_owned(),
                                    users
                                }]
                            );
                        } else {
                            assert_eq!(mine, [Ev::Error("not_joined".into())]);
                        }
                    }
                }
            }
            _ => {
                let Some(dt) = c.u16() else { break };
                w.now += u64::from(dt);
                w.gw.tick(w.now);
                w.settle();
                if let Some(d) = w.gw.next_deadline() {
                    assert!(d > w.now, "a deadline already due after tick");
                }
            }
        }
        w.check_state();
    }
    // Everyone leaves: nothing remains.
    for conn in 0..CONNS {
        w.gw.on_close(conn);
        w.conns[conn as usize] = ConnModel::default();
    }
    w.settle();
    w.check_state();
    let m = w.gw.metrics();
    assert_eq!((m.connections, m.rooms, m.members), (0, 0, 0));
}
