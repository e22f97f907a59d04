//! The gateway on the shared broker's loop side (`SharedBroker`), with the
//! test answering for the store: joins that complete later (the member is
//! subscribed only after its replay), publishes acknowledged only once
//! sequenced or refused with `unavailable`, answers for connections that
//! left in the meantime dropped. Sans-IO: channels, no Redis.
#![cfg(feature = "gateway")]

use std::sync::mpsc::{channel, Receiver, Sender};

use serde_json::{json, Value};
use wsreactor::gateway::shared::{Command, Entry, ReadFor, ReadResult, Reply, SharedBroker};
use wsreactor::gateway::{
    Action, Auth, Encoding, Gateway, GatewayConfig, HistoryConfig, LocalFanout,
};

struct Rig {
    gw: Gateway<u64, SharedBroker>,
    fan: LocalFanout<u64>,
    cmds: Receiver<Command>,
    store: Sender<Reply>,
}

impl Rig {
    fn new() -> Self {
        let (ctx, cmds) = channel();
        let (store, rrx) = channel();
        let broker = SharedBroker::new(HistoryConfig::default(), ctx, rrx);
        let gw = Gateway::with_broker(GatewayConfig::default(), Auth::Anonymous, broker);
        Rig {
            gw,
            fan: LocalFanout::new(),
            cmds,
            store,
        }
    }

    fn open(&mut self, conn: u64) {
        let id = self
            .gw
            .authenticate(&format!("/ws?name=u{conn}"), [], 0)
            .unwrap();
        self.gw.open(conn, id, Encoding::Json, 0);
    }

    fn frame(&mut self, conn: u64, v: Value) {
        self.gw.on_frame(conn, v.to_string().as_bytes(), false, 0);
    }

    /// Apply the actions: the events each connection got, and whether a
    /// Subscribe was among them.
    fn flush(&mut self) -> (Vec<(u64, Value)>, bool) {
        let actions: Vec<Action<u64>> = self.gw.actions().collect();
        let subscribed = actions
            .iter()
            .any(|a| matches!(a, Action::Subscribe { .. }));
        let mut out = Vec::new();
        self.fan.apply(actions, &mut out);
        let evs = out
            .into_iter()
            .map(|d| (d.conn, serde_json::from_slice(&d.bytes).unwrap()))
            .collect();
        (evs, subscribed)
    }

    fn reply(&mut self, r: Reply) -> Vec<(u64, Value)> {
        self.store.send(r).unwrap();
        self.gw.poll_broker();
        self.flush().0
    }

    fn commands(&mut self) -> Vec<Command> {
        self.cmds.try_iter().collect()
    }
}

fn entry(seq: u64, data: &str) -> Entry {
    Entry {
        seq,
        ts: 5,
        from: "u9".into(),
        data: data.into(),
    }
}

#[test]
fn joins_and_publishes_complete_when_the_store_answers() {
    let mut rig = Rig::new();
    rig.open(1);
    rig.frame(1, json!({"op": "join", "room": "r", "since": 1, "id": "j"}));
    let (evs, subscribed) = rig.flush();
    assert!(
        evs.is_empty() && !subscribed,
        "nothing before the store answers"
    );
    let cmds = rig.commands();
    let Some(Command::Subscribe { generation, .. }) = cmds.first().cloned() else {
        panic!("{cmds:?}")
    };
    // Subscribed, then the room's seq (3), then the range after 1.
    assert!(rig
        .reply(Reply::Subscribed {
            room: "r".into(),
            generation
        })
        .is_empty());
    let sync = Reply::Read {
        room: "r".into(),
        purpose: ReadFor::Sync,
        result: Ok(ReadResult {
            last_seq: 3,
            entries: vec![],
            truncated: false,
        }),
    };
    assert!(rig.reply(sync).is_empty());
    let read = rig.commands().into_iter().find(|c| {
        matches!(
            c,
            Command::Read {
                purpose: ReadFor::Recover { .. },
                ..
            }
        )
    });
    let Some(Command::Read {
        purpose, after: 1, ..
    }) = read
    else {
        panic!("{read:?}")
    };
    // A live message arrives before the recovery: not yet for conn 1.
    assert!(rig
        .reply(Reply::Message {
            room: "r".into(),
            entry: entry(4, "\"live\"")
        })
        .is_empty());
    rig.store
        .send(Reply::Read {
            room: "r".into(),
            purpose,
            result: Ok(ReadResult {
                last_seq: 4,
                entries: vec![entry(2, "2"), entry(3, "3"), entry(4, "\"live\"")],
                truncated: false,
            }),
        })
        .unwrap();
    rig.gw.poll_broker();
    let (evs, subscribed) = rig.flush();
    assert!(subscribed);
    let seqs: Vec<Value> = evs.iter().map(|(_, v)| v["seq"].clone()).collect();
    assert_eq!(evs[0].1["type"], "joined");
    assert_eq!(evs[0].1["id"], "j");
    assert_eq!(evs[0].1["recovered"], true);
    assert_eq!(seqs, [json!(4), json!(2), json!(3), json!(4)]);

    // A publish: acknowledged only once sequenced, refused when down.
    rig.frame(1, json!({"op": "publish", "room": "r", "data": 7, "id": 1}));
    rig.frame(1, json!({"op": "publish", "room": "r", "data": 8, "id": 2}));
    assert!(rig.flush().0.is_empty());
    let mut tickets = Vec::new();
    for c in rig.commands() {
        if let Command::Publish {
            ticket,
            floor,
            entry,
            ..
        } = c
        {
            assert_eq!(floor, 4);
            tickets.push((ticket, entry));
        }
    }
    assert_eq!(tickets.len(), 2);
    let (t1, e1) = tickets[0].clone();
    let evs = rig.reply(Reply::Published {
        ticket: t1,
        room: "r".into(),
        entry: e1,
        result: Ok(5),
    });
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert_eq!(evs[0].1["seq"], 5);
    assert_eq!(evs[0].1["data"], 7);
    assert_eq!(evs[1].1, json!({"type": "ack", "id": 1}));
    let (t2, e2) = tickets[1].clone();
    let evs = rig.reply(Reply::Published {
        ticket: t2,
        room: "r".into(),
        entry: e2,
        result: Err("redis unavailable".into()),
    });
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].1["type"], "error");
    assert_eq!(evs[0].1["code"], "unavailable");
    assert_eq!(evs[0].1["id"], 2);
    // The channel's copy of seq 5 is a duplicate.
    assert!(rig
        .reply(Reply::Message {
            room: "r".into(),
            entry: entry(5, "7")
        })
        .is_empty());
    assert_eq!(rig.gw.broker().stats().duplicates, 1);
    assert_eq!(rig.gw.broker().stats().refused, 1);
}

#[test]
fn answers_for_connections_that_left_are_dropped() {
    let mut rig = Rig::new();
    rig.open(1);
    rig.open(2);
    rig.frame(2, json!({"op": "join", "room": "q"}));
    rig.frame(1, json!({"op": "join", "room": "q"}));
    rig.flush();
    let generation = rig
        .commands()
        .into_iter()
        .find_map(|c| match c {
            Command::Subscribe { generation, .. } => Some(generation),
            _ => None,
        })
        .unwrap();
    // Conn 1 leaves before its join completes; conn 2 stays.
    rig.frame(1, json!({"op": "leave", "room": "q"}));
    rig.flush();
    rig.reply(Reply::Subscribed {
        room: "q".into(),
        generation,
    });
    let evs = rig.reply(Reply::Read {
        room: "q".into(),
        purpose: ReadFor::Sync,
        result: Ok(ReadResult {
            last_seq: 0,
            entries: vec![],
            truncated: false,
        }),
    });
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].0, 2);
    assert_eq!(evs[0].1["type"], "joined");
    // A publish whose connection closed before the answer: no ack to a
    // later connection with the same id.
    rig.frame(2, json!({"op": "publish", "room": "q", "data": 1, "id": 9}));
    rig.flush();
    let (ticket, entry) = rig
        .commands()
        .into_iter()
        .find_map(|c| match c {
            Command::Publish { ticket, entry, .. } => Some((ticket, entry)),
            _ => None,
        })
        .unwrap();
    rig.gw.on_close(2);
    rig.flush();
    rig.open(2);
    let evs = rig.reply(Reply::Published {
        ticket,
        room: "q".into(),
        entry,
        result: Ok(1),
    });
    assert!(evs.is_empty(), "{evs:?}");
}
