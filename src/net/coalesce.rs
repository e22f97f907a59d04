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
/// that its buffer stays in the frame pool.
const RUN_MAX: usize = FramePool::MAX_KEPT;

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
