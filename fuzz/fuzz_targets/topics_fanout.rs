//! Topics and shared-frame delivery against a model: random subscribe,
//! unsubscribe, publish (with and without the sender), pipelined publishes
//! coalesced into one `FrameRun` per topic, direct sends, partial transport
//! writes and closes over a few connections.
//!
//! - the registry's cross-references hold after every step
//!   (`Topics::check_invariants`), and its subscriber sets equal the model's;
//! - every connection's output, however it is drained (whole runs, vectored
//!   slices, byte counts cutting frames anywhere), is exactly the messages
//!   the model says it was sent, in order: publishes while subscribed, its
//!   own direct sends, nothing after it left a topic or closed, nothing
//!   twice; a coalesced run is delivered (whole, as a prefix plus single
//!   frames, or after a direct write took part of it) before anything else
//!   reaches its subscribers;
//! - the shared frames' and runs' bytes are never changed by a delivery.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::io::IoSlice;

use libfuzzer_sys::fuzz_target;
use wsreactor::proto::{
    decode_header, Config, Connection, DeflatedForms, FramePool, FrameRun, OpCode, Sender,
    SharedFrame, Status,
};
use wsreactor::topics::Topics;

const CONNS: usize = 4;
const TOPICS: [&str; 3] = ["a", "b", "c"];

struct Conn {
    tx: Connection,
    /// Bytes the "transport" took.
    wire: Vec<u8>,
    /// Message ids the model expects on the wire, in order.
    expected: Vec<u32>,
    /// Generation: a closed connection comes back as a new one.
    generation: u32,
}

impl Conn {
    fn new(generation: u32) -> Self {
        Self {
            tx: Connection::server(Config::default()),
            wire: Vec::new(),
            expected: Vec::new(),
            generation,
        }
    }

    fn sender(&mut self) -> &mut Sender {
        self.tx.sender()
    }

    /// Take up to `n` bytes the way a transport would.
    fn drain(&mut self, n: usize, vectored: bool) {
        let tx = self.tx.sender();
        let take = n.min(tx.pending_len());
        if take == 0 {
            return;
        }
        if vectored {
            let mut iov = [IoSlice::new(&[]); 3];
            let k = tx.pending_slices(&mut iov);
            let mut left = take;
            for s in &iov[..k] {
                let part = left.min(s.len());
                self.wire.extend_from_slice(&s[..part]);
                left -= part;
                if left == 0 {
                    break;
                }
            }
            let got = take - left;
            tx.consume(got);
        } else {
            let first = tx.pending();
            let part = take.min(first.len());
            self.wire.extend_from_slice(&first[..part]);
            tx.consume(part);
        }
    }

    /// Everything left, then check the wire against the model.
    fn finish(&mut self) {
        while self.tx.pending_len() > 0 {
            self.drain(usize::MAX, true);
        }
        let mut at = 0;
        let mut ids = Vec::new();
        while at < self.wire.len() {
            let Ok(Status::Complete((h, n))) = decode_header(&self.wire[at..]) else {
                panic!("a cut frame on the wire");
            };
            assert!(h.fin && h.mask.is_none() && h.rsv == 0);
            let body = &self.wire[at + n..at + n + h.len as usize];
            ids.push(u32::from_be_bytes(body[..4].try_into().unwrap()));
            assert!(
                body[4..].iter().all(|&b| b == body[0] ^ 0x5a),
                "payload changed"
            );
            at += n + h.len as usize;
        }
        assert_eq!(
            ids, self.expected,
            "delivered messages differ from the model"
        );
    }
}

/// Pipelined publishes from one connection to one topic, not delivered yet.
struct Pending {
    run: FrameRun,
    topic: &'static str,
    skip: Option<(usize, u32)>,
    ids: Vec<u32>,
}

impl Pending {
    /// Deliver the run to the topic's subscribers but `skip`, each in one
    /// of the ways the reactor does (`cut` chooses).
    fn drain(
        &mut self,
        topics: &Topics<(usize, u32)>,
        conns: &mut [Conn],
        pool: &mut FramePool,
        cut: u8,
    ) {
        if self.run.is_empty() {
            return;
        }
        let before = self.run.bytes().to_vec();
        let n = self.run.messages();
        for &sub in topics.subscribers(self.topic) {
            if Some(sub) == self.skip {
                continue;
            }
            let conn = &mut conns[sub.0];
            assert!(conn.sender().takes_run(&self.run));
            if conn.sender().pending_len() == 0 && cut & 1 == 1 {
                // A direct write that the kernel took `w` bytes of.
                let w = (usize::from(cut) * 13) % (self.run.len() + 1);
                conn.wire.extend_from_slice(&self.run.bytes()[..w]);
                conn.sender().queue_run(&self.run, n, w);
            } else {
                // The frames that fit a backlog limit as one entry, the rest
                // one by one.
                let k = self.run.fitting(usize::from(cut) * 11);
                conn.sender().queue_run(&self.run, k, 0);
                for i in k..n {
                    conn.sender()
                        .send_shared(&self.run.frame(i), &mut DeflatedForms::new())
                        .unwrap();
                }
            }
            conn.expected.extend_from_slice(&self.ids);
        }
        assert_eq!(self.run.bytes(), &before[..], "a run changed");
        self.run.finish(pool);
        self.ids.clear();
    }
}

fn payload(id: u32, extra: usize) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    let fill = p[0] ^ 0x5a;
    p.resize(4 + extra, fill);
    p
}

fuzz_target!(|data: &[u8]| {
    let mut topics: Topics<(usize, u32)> = Topics::new();
    let mut model: BTreeMap<&str, BTreeSet<(usize, u32)>> = BTreeMap::new();
    let mut conns: Vec<Conn> = (0..CONNS).map(|_| Conn::new(0)).collect();
    let mut pool = FramePool::new();
    let mut held: Vec<SharedFrame> = Vec::new();
    let mut next_id = 0u32;
    let mut pending = Pending {
        run: FrameRun::new(),
        topic: TOPICS[0],
        skip: None,
        ids: Vec::new(),
    };
    for op in data.chunks_exact(3) {
        let c = usize::from(op[1]) % CONNS;
        let t = TOPICS[usize::from(op[1] >> 4) % TOPICS.len()];
        let id = (c, conns[c].generation);
        let kind = op[0] % 8;
        let skip = (op[2] & 2 != 0).then_some(id);
        let joins = kind == 7
            && pending.topic == t
            && pending.skip == skip
            && pending.run.len() < 64 * 1024;
        if !joins {
            // Anything else first delivers the pending run.
            pending.drain(&topics, &mut conns, &mut pool, op[2]);
        }
        match kind {
            7 => {
                // A pipelined publish from `c`: joins the pending run.
                next_id += 1;
                let extra = usize::from(op[2]) * if op[2] > 250 { 300 } else { 1 };
                pending.topic = t;
                pending.skip = skip;
                pending
                    .run
                    .push(&mut pool, OpCode::Binary, &payload(next_id, extra));
                pending.ids.push(next_id);
            }
            0 => {
                let fresh = topics.subscribe(id, t).unwrap();
                assert_eq!(fresh, model.entry(t).or_default().insert(id));
            }
            1 => {
                let was = topics.unsubscribe(id, t);
                assert_eq!(was, model.entry(t).or_default().remove(&id));
            }
            2 | 3 => {
                // Publish, from `c`; op 3 skips the sender.
                let skip = (kind == 3).then_some(id);
                next_id += 1;
                let extra = usize::from(op[2]) * if op[2] > 250 { 300 } else { 1 };
                let frame =
                    SharedFrame::new_in(&mut pool, OpCode::Binary, &payload(next_id, extra));
                let before = frame.bytes().to_vec();
                let mut forms = DeflatedForms::new();
                for &sub in topics.subscribers(t) {
                    if Some(sub) == skip {
                        continue;
                    }
                    conns[sub.0]
                        .sender()
                        .send_shared(&frame, &mut forms)
                        .unwrap();
                    conns[sub.0].expected.push(next_id);
                }
                let mut want: Vec<_> = model
                    .get(t)
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|s| Some(*s) != skip)
                    .collect();
                let mut got: Vec<_> = topics
                    .subscribers(t)
                    .iter()
                    .copied()
                    .filter(|s| Some(*s) != skip)
                    .collect();
                want.sort_unstable();
                got.sort_unstable();
                assert_eq!(got, want);
                assert_eq!(frame.bytes(), &before[..]);
                if op[2] & 1 == 1 {
                    // Keep some frames alive longer than their queues do.
                    held.push(frame);
                }
            }
            4 => {
                // A direct send on `c`, between shared frames.
                next_id += 1;
                conns[c]
                    .sender()
                    .send(OpCode::Binary, &payload(next_id, usize::from(op[2])))
                    .unwrap();
                conns[c].expected.push(next_id);
            }
            5 => conns[c].drain(usize::from(op[2]) * 7, op[2] & 1 == 1),
            _ => {
                // Close: the connection leaves every topic; its output is
                // checked and a new connection takes the slot.
                let n = topics.remove_conn(id);
                let mut m = 0;
                for set in model.values_mut() {
                    m += usize::from(set.remove(&id));
                }
                assert_eq!(n, m);
                conns[c].finish();
                let generation = conns[c].generation + 1;
                conns[c] = Conn::new(generation);
            }
        }
        topics.check_invariants();
        if held.len() > 8 {
            held.clear();
        }
    }
    pending.drain(&topics, &mut conns, &mut pool, 0);
    for c in &mut conns {
        c.finish();
    }
});
