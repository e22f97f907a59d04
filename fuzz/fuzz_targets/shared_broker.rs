//! The shared (Redis) broker's loop side against its promise, and the
//! parser of what it reads from Redis.
//!
//! The input is split: the first part goes to `shared::decode` (a message
//! from a channel or stream: must not panic, and what it accepts encodes
//! back to the same bytes); the rest drives a `SharedBroker` with replies
//! in any order (channel messages, own publish answers, stream reads,
//! subscriptions, outages) for two rooms going active and inactive.
//! Whatever comes, each room's deliveries have strictly increasing seqs
//! (each seq at most once, in order) and nothing panics.
#![no_main]

use std::collections::HashMap;
use std::sync::mpsc::channel;

use libfuzzer_sys::fuzz_target;
use wsreactor::gateway::shared::{
    decode, encode, Command, Entry, ReadFor, ReadResult, Reply, SharedBroker,
};
use wsreactor::gateway::{Broker, Completion, HistoryConfig, RoomName};

const ROOMS: [&str; 2] = ["a", "b"];

fn entry(seq: u64) -> Entry {
    Entry {
        seq,
        ts: 1,
        from: "u".into(),
        data: "1".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (raw, ops) = rest.split_at((split as usize).min(rest.len()));
    if let Ok(e) = decode(raw) {
        assert_eq!(encode(&e), raw);
    }

    let (ctx, crx) = channel();
    let (rtx, rrx) = channel();
    let history = HistoryConfig {
        max_messages: 8,
        ..Default::default()
    };
    let mut b = SharedBroker::new(history, ctx, rrx);
    let rooms: Vec<RoomName> = ROOMS.iter().map(|r| RoomName::new(r).unwrap()).collect();
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut generation: HashMap<String, u64> = HashMap::new();
    let mut ticket = 0u64;
    let mut out = Vec::new();
    for op in ops.chunks(3) {
        let [k, x, y] = *op else { break };
        let ri = usize::from(k & 1);
        let room = ROOMS[ri].to_string();
        let seq = u64::from(x % 24);
        match k >> 1 & 15 {
            0 => b.set_active(&rooms[ri], true),
            1 => {
                b.set_active(&rooms[ri], false);
                last.remove(&room);
            }
            2..=4 => rtx
                .send(Reply::Message {
                    room,
                    entry: entry(seq),
                })
                .unwrap(),
            5 => {
                ticket += 1;
                rtx.send(Reply::Published {
                    ticket,
                    room,
                    entry: entry(0),
                    result: if y & 1 == 0 {
                        Ok(seq.max(1))
                    } else {
                        Err("down".into())
                    },
                })
                .unwrap()
            }
            6 | 7 => {
                let n = u64::from(y % 6);
                let entries = (seq + 1..=seq + n)
                    .filter(|s| s % 5 != y as u64 % 5)
                    .map(entry)
                    .collect();
                rtx.send(Reply::Read {
                    room,
                    purpose: ReadFor::Sync,
                    result: Ok(ReadResult {
                        last_seq: seq + n,
                        entries,
                        truncated: y & 64 != 0,
                    }),
                })
                .unwrap()
            }
            8 => {
                let g = generation.get(&room).copied().unwrap_or(0);
                rtx.send(Reply::Subscribed {
                    room,
                    generation: g,
                })
                .unwrap()
            }
            9 => rtx
                .send(Reply::Down {
                    shard: usize::from(y % 3),
                })
                .unwrap(),
            10 => rtx
                .send(Reply::Up {
                    shard: usize::from(y % 3),
                })
                .unwrap(),
            11 => {
                ticket += 1;
                let _ = b.recover_ticketed(ticket, &rooms[ri], Some(seq), 0);
            }
            12 => {
                let since = u64::from(y % 24);
                rtx.send(Reply::Read {
                    room,
                    purpose: ReadFor::Recover { ticket, since },
                    result: Ok(ReadResult {
                        last_seq: seq,
                        entries: (since + 1..=seq).map(entry).collect(),
                        truncated: false,
                    }),
                })
                .unwrap()
            }
            13 => rtx
                .send(Reply::Read {
                    room,
                    purpose: ReadFor::Sync,
                    result: Err("down".into()),
                })
                .unwrap(),
            _ => rtx.send(Reply::Bad).unwrap(),
        }
        // Learn the generations the broker subscribed with.
        while let Ok(c) = crx.try_recv() {
            if let Command::Subscribe {
                room,
                generation: g,
            } = c
            {
                generation.insert(room, g);
            }
        }
        b.poll(&mut out);
        for c in out.drain(..) {
            if let Completion::Deliver(m) = c {
                let l = last.entry(m.room().to_string()).or_insert(0);
                assert!(m.seq() > *l, "seq {} after {}", m.seq(), l);
                *l = m.seq();
            }
        }
    }
});
