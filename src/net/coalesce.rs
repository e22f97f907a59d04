//! A connection's pipelined publishes to one topic, delivered as one run.
//!
//! While more input from the publishing connection waits in the same read
//! ("corked"), consecutive publishes to the same topic with the same
//! exception are appended to one pending [`FrameRun`] instead of being
//! queued message by message: every subscriber then queues one reference to
//! the whole burst and the kernel gets one contiguous slice, as a raw
//! broadcast server would send it.
//!
//! At most one run is pending. It is delivered ("drained") before anything
//! that could be ordered against it reaches another connection: a publish
//! to another topic or with another exception, a send, ping or close to any
//! connection but the publisher, a subscribe or unsubscribe to its topic,
//! the publisher's last frame of the read, and the end of the round. The
//! publisher itself, when subscribed, gets each message at once as before:
//! its queue also takes its pongs and its own sends. So every subscriber
//! sees exactly the order it would without coalescing.

use std::io::Write;

use super::conn::State;
use super::control::Control;
use super::ctx::{write_once, ConnId};
use super::hub::{deliver, Hub, Publication};
use super::metrics::Metrics;
use crate::proto::{DeflatedForms, FramePool, Message, SharedFrame};
use crate::server::ServerConfig;

/// The pending run and what it is for.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    run: crate::proto::FrameRun,
    topic: String,
    except: Option<ConnId>,
    /// The publishing connection: served at once, never from the run.
    own: Option<ConnId>,
    own_subscribed: bool,
    /// Compressed forms, per message, for permessage-deflate subscribers.
    forms: Vec<DeflatedForms>,
    /// What a publish into the run returns: the topic's subscribers but
    /// `except`.
    reach: usize,
}

/// A run grows to at most this many bytes (then the next one starts), so
/// that its buffer stays in the frame pool...
const RUN_MAX: usize = FramePool::MAX_KEPT;
/// ...and to this many messages, which bounds the boundaries kept.
const RUN_MESSAGES: usize = 256;

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.run.is_empty()
    }

    /// Whether something sent to `id` must wait for the run (it is pending
    /// and `id` is not the publisher).
    pub(crate) fn holds_for(&self, id: ConnId) -> bool {
        !self.run.is_empty() && self.own != Some(id)
    }

    /// Whether the run is pending for `topic`.
    pub(crate) fn holds_topic(&self, topic: &str) -> bool {
        !self.run.is_empty() && self.topic == topic
    }

    fn takes(&self, topic: &str, except: Option<ConnId>, own: Option<ConnId>, len: usize) -> bool {
        own.is_some()
            && self.own == own
            && self.except == except
            && self.topic == topic
            && self.run.len() + len + 10 <= RUN_MAX
            && self.run.messages() < RUN_MESSAGES
    }
}

/// Publish `msg` by coalescing, if this publish can be: `None` for the
/// usual path. Drains a pending run the publish cannot join.
pub(crate) fn publish(
    ctl: &mut Control<'_>,
    topic: &str,
    msg: &Message<'_>,
    except: Option<ConnId>,
) -> Option<usize> {
    let own = ctl.own.as_ref().map(|o| o.id);
    let corked = ctl.own.as_ref().is_some_and(|o| o.cork);
    let hub = &mut *ctl.hub;
    let len = msg.as_bytes().len();
    if !hub.pending.is_empty() {
        if hub.pending.takes(topic, except, own, len) {
            return Some(append(ctl, msg, corked));
        }
        drain(hub, false);
    }
    if !corked {
        return None;
    }
    let subscribers = hub.topics.subscribers(topic).len();
    if subscribers == 0 {
        return None;
    }
    let p = &mut hub.pending;
    let except_subscribed = except.is_some_and(|e| hub.topics.is_subscribed(e, topic));
    p.reach = subscribers - usize::from(except_subscribed);
    p.own_subscribed = own.is_some_and(|o| Some(o) != except && hub.topics.is_subscribed(o, topic));
    p.topic.clear();
    p.topic.push_str(topic);
    p.except = except;
    p.own = own;
    Some(append(ctl, msg, corked))
}

/// Add `msg` to the pending run (the publisher gets it at once); deliver
/// the run unless more input follows.
fn append(ctl: &mut Control<'_>, msg: &Message<'_>, corked: bool) -> usize {
    let hub = &mut *ctl.hub;
    let p = &mut hub.pending;
    p.run.push(&mut hub.frames, msg.opcode(), msg.as_bytes());
    p.forms.push(DeflatedForms::new());
    hub.metrics.publishes_total += 1;
    let mut reach = p.reach;
    if p.own_subscribed {
        if let Some(own) = ctl.own.as_mut() {
            let mut publication = Publication {
                frame: SharedFrame::new_in(&mut hub.frames, msg.opcode(), msg.as_bytes()),
                forms: DeflatedForms::new(),
            };
            let ok = deliver(
                own.id,
                own.tx,
                &mut publication,
                &hub.config,
                &mut hub.metrics,
                &mut hub.dirty,
                &mut hub.touched,
            );
            // Counted in `reach` already; a refusal is not a delivery.
            reach -= usize::from(ok.is_err());
        }
    }
    if !corked {
        drain(hub, true);
    }
    reach
}

/// Deliver the pending run to its subscribers (the publisher, if it is
/// still out of the slab, is not reached and already has every message).
/// `direct`: the burst is over, so an idle subscriber is written at once;
/// otherwise every delivery is queued for the end-of-round writev.
pub(crate) fn drain(hub: &mut Hub, direct: bool) {
    let p = &mut hub.pending;
    if p.run.is_empty() {
        return;
    }
    let n = p.run.messages();
    for &id in hub.topics.subscribers(&p.topic) {
        if Some(id) == p.except || Some(id) == p.own {
            continue;
        }
        let c = match hub.conns.get_id(id) {
            Some(c) if c.state == State::Open => c,
            _ => continue,
        };
        let tx = c.proto.sender();
        if direct
            && !c.broken
            && tx.pending_len() == 0
            && p.run.len() <= hub.config.max_subscriber_backlog
            && tx.takes_run(&p.run)
        {
            let bytes = p.run.bytes();
            match write_once(&mut c.stream, |s| s.write(bytes)) {
                Some(w) => {
                    if w < bytes.len() {
                        // As for a lone publish: the rest is queued and
                        // flushed at the end of the round.
                        tx.queue_run(&p.run, n, w);
                        hub.dirty.push(id);
                    }
                    hub.metrics.deliveries_total += n as u64;
                }
                None => {
                    c.broken = true;
                    hub.touched.push(id);
                }
            }
            continue;
        }
        deliver_run(
            id,
            tx,
            p,
            &hub.config,
            &mut hub.metrics,
            &mut hub.dirty,
            &mut hub.touched,
        );
    }
    p.run.finish(&mut hub.frames);
    p.forms.clear();
}

/// What the run does to one subscriber's queue: exactly what its messages
/// one by one would ([`deliver`]), but the leading ones that fit its
/// backlog limit are queued as one reference.
fn deliver_run(
    id: ConnId,
    tx: &mut crate::proto::Sender,
    p: &mut Pending,
    config: &ServerConfig,
    metrics: &mut Metrics,
    dirty: &mut Vec<ConnId>,
    touched: &mut Vec<ConnId>,
) {
    let n = p.run.messages();
    let mut from = 0;
    if tx.takes_run(&p.run) {
        let before = tx.pending_len();
        let room = config.max_subscriber_backlog.saturating_sub(before);
        from = p.run.fitting(room);
        if from > 0 {
            tx.queue_run(&p.run, from, 0);
            metrics.deliveries_total += from as u64;
            if before == 0 {
                dirty.push(id);
            }
        }
    }
    for i in from..n {
        let mut publication = Publication {
            frame: p.run.frame(i),
            forms: std::mem::take(&mut p.forms[i]),
        };
        let _ = deliver(id, tx, &mut publication, config, metrics, dirty, touched);
        p.forms[i] = publication.forms;
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use super::*;
    use crate::proto::{Config, Connection, OpCode, Sender};
    use crate::server::SlowPolicy;

    /// Everything pending, taken the way a transport would, and how many
    /// runs it was in.
    fn wire(tx: &mut Sender) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut runs = 0;
        while tx.pending_len() > 0 {
            let mut iov = [IoSlice::new(&[]); 4];
            let n = tx.pending_slices(&mut iov);
            let took: usize = iov[..n].iter().map(|s| s.len()).sum();
            for s in &iov[..n] {
                out.extend_from_slice(s);
            }
            runs += n;
            tx.consume(took);
        }
        (out, runs)
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// A server connection, with permessage-deflate (no server context
    /// takeover, so compressed forms are shared) if `deflate`.
    fn conn(deflate: bool) -> Connection {
        let c = Connection::server(Config::default());
        #[cfg(feature = "deflate")]
        let c = {
            use crate::ext::deflate::{Compressor, Decompressor};
            let mut c = c;
            if deflate {
                let z = Compressor::new(15, 6, true);
                c.sender()
                    .enable_deflate(Some(z), Decompressor::new(15, true), 64);
            }
            c
        };
        let _ = deflate;
        c
    }

    /// The backlog limit and both slow policies, plain and deflate
    /// subscribers, output already queued or not: a run leaves exactly the
    /// bytes, counts, dirty and touched lists that its messages delivered
    /// one by one leave, in fewer queue entries.
    #[test]
    fn a_run_does_to_a_queue_what_its_messages_one_by_one_would() {
        let id = ConnId {
            key: 3,
            generation: 1,
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut pool = FramePool::new();
        let (mut cut, mut fewer) = (0, 0);
        for case in 0..3000 {
            let config = ServerConfig {
                max_subscriber_backlog: rng.below(700),
                on_slow_subscriber: if rng.below(2) == 0 {
                    SlowPolicy::Drop
                } else {
                    SlowPolicy::Close(1008)
                },
                ..ServerConfig::default()
            };
            let deflate = cfg!(feature = "deflate") && rng.below(3) == 0;
            let (mut a, mut b) = (conn(deflate), conn(deflate));
            let pre = rng.below(3) * rng.below(200);
            if pre > 0 {
                let filler = vec![b'x'; pre];
                a.sender().send(OpCode::Binary, &filler).unwrap();
                b.sender().send(OpCode::Binary, &filler).unwrap();
            }
            let mut p = Pending::default();
            let payloads: Vec<Vec<u8>> = (0..1 + rng.below(6))
                .map(|i| {
                    let len = rng.below(3) * rng.below(150);
                    (0..len).map(|j| b'a' + ((i + j / 16) % 3) as u8).collect()
                })
                .collect();
            for m in &payloads {
                p.run.push(&mut pool, OpCode::Binary, m);
                p.forms.push(DeflatedForms::new());
            }
            if p.run.len() + pre > config.max_subscriber_backlog {
                cut += 1;
            }
            let (mut ma, mut da, mut ta) = (Metrics::default(), Vec::new(), Vec::new());
            deliver_run(id, a.sender(), &mut p, &config, &mut ma, &mut da, &mut ta);
            let (mut mb, mut db, mut tb) = (Metrics::default(), Vec::new(), Vec::new());
            for m in &payloads {
                let mut one = Publication {
                    frame: SharedFrame::new(OpCode::Binary, m),
                    forms: DeflatedForms::new(),
                };
                let _ = deliver(id, b.sender(), &mut one, &config, &mut mb, &mut db, &mut tb);
            }
            let what = format!("case {case}: {config:?} deflate {deflate} pre {pre}");
            let (state_a, state_b) = (a.sender().state(), b.sender().state());
            let ((wire_a, runs_a), (wire_b, runs_b)) = (wire(a.sender()), wire(b.sender()));
            assert_eq!(wire_a, wire_b, "{what}");
            assert!(runs_a <= runs_b, "{what}");
            fewer += usize::from(runs_a < runs_b);
            assert_eq!(ma.deliveries_total, mb.deliveries_total, "{what}");
            assert_eq!(
                ma.deliveries_dropped_total, mb.deliveries_dropped_total,
                "{what}"
            );
            assert_eq!(
                ma.slow_subscribers_closed_total, mb.slow_subscribers_closed_total,
                "{what}"
            );
            assert_eq!((da, ta), (db, tb), "{what}");
            assert_eq!(state_a, state_b, "{what}");
            p.run.finish(&mut pool);
        }
        assert!(cut > 500, "the limit cut {cut} runs");
        assert!(fewer > 500, "{fewer} runs took fewer queue entries");
    }
}
