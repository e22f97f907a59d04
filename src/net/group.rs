//! Reactors that serve as one: N reactors, one thread each, share nothing
//! on the per-message path. What crosses between them goes through a
//! per-reactor inbox (a `Mutex<Vec<Item>>` plus the reactor's `mio::Waker`):
//! publishes to topics with subscribers elsewhere, sockets handed over by
//! an acceptor, and `/metrics` scrapes. A reactor collects what it sends
//! during a round in one outbox per peer and posts each at the end of the
//! round: one lock per peer and round, and one wake only when the peer's
//! inbox goes from empty to not empty, however many items a burst holds.
//!
//! Topics: every publish of a topic goes through the topic's owner reactor
//! (a fixed hash of the name), which delivers it to its own subscribers and
//! forwards it, in the order it sequenced it, to every other reactor
//! (the publisher's included). Each inbox is FIFO and every item of a topic
//! comes from its one owner, so every subscriber of a topic, on whatever
//! reactor, sees that topic's messages in one order. The price: a publish
//! from a reactor that does not own the topic reaches even its own
//! subscribers only after a round trip through the owner. Order across
//! different topics is not kept.
//!
//! With one reactor none of this runs: `Peers::spans` is false and the
//! reactor behaves exactly as a lone one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mio::Waker;

use super::control::Control;
use super::ctx::ConnId;
use super::hub::{Flags, Hub};
use super::metrics::Metrics;
use super::timer::Tick;
use crate::proto::{Message, SharedFrame};
use crate::topics::MAX_TOPIC_LEN;

/// A reactor that has not come back to its poll for this long is reported
/// unhealthy by `/healthz` (a handler stuck in a callback).
pub(crate) const STALL_AFTER_MS: u64 = 10_000;

/// How long a `/metrics` answer waits for the other reactors' parts; then
/// it goes out with the parts that came, naming the reactors missing.
pub(crate) const SCRAPE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Topic names kept interned per reactor before the cache is cleared.
const NAMES_KEPT: usize = 4096;

/// A connection a publish skips: the reactor it lives on and its id there.
pub(crate) type Except = Option<(usize, ConnId)>;

/// What one reactor hands another.
#[derive(Debug)]
pub(crate) enum Item {
    /// To the topic's owner: sequence this publish.
    Route {
        topic: Arc<str>,
        frame: SharedFrame,
        except: Except,
    },
    /// From the topic's owner: deliver to the subscribers here.
    Deliver {
        topic: Arc<str>,
        frame: SharedFrame,
        except: Except,
    },
    /// From the acceptor: serve this socket.
    Adopt(mio::net::TcpStream, SocketAddr),
    /// `/metrics` asked on reactor `from`: send it this reactor's part.
    Scrape { from: usize, id: ConnId },
    /// A part of the scrape for connection `id`.
    Scraped { id: ConnId, part: Box<Part> },
}

/// One reactor's share of a `/metrics` answer.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) index: usize,
    pub(crate) metrics: Metrics,
    pub(crate) queued: usize,
    pub(crate) held: usize,
}

impl Part {
    pub(crate) fn of(hub: &mut Hub) -> Self {
        hub.metrics.topics = hub.topics.len() as u64;
        hub.metrics.subscriptions = hub.topics.subscriptions() as u64;
        Self {
            index: hub.peers.index,
            metrics: hub.metrics.clone(),
            queued: hub.conns.iter().map(|(_, c)| c.proto.pending_len()).sum(),
            held: hub.conns.len(),
        }
    }
}

/// A `/metrics` request waiting for the other reactors' parts.
#[derive(Debug)]
pub(crate) struct Scrape {
    pub(crate) id: ConnId,
    /// A `HEAD` request.
    pub(crate) head: bool,
    pub(crate) parts: Vec<Part>,
    /// Answered with what came by then.
    pub(crate) deadline: Tick,
}

/// A reactor's mailbox and liveness, reachable from every thread.
#[derive(Debug)]
struct Post {
    waker: Waker,
    /// `Remote::wake` asked for `on_wake` (an inbox wake does not).
    app: AtomicBool,
    inbox: Mutex<Vec<Item>>,
    /// When the reactor came out of its poll (a `Tick` in ms), 0 while it
    /// waits in it.
    busy_since: AtomicU64,
}

/// The reactors of one server.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) flags: Arc<Flags>,
    posts: Box<[Post]>,
    /// Connections held by all reactors (refused ones not counted): the
    /// global `max_connections`.
    pub(crate) held: AtomicUsize,
    /// Why a reactor ended abnormally (the first one).
    failed: Mutex<Option<String>>,
}

/// Poisoning only means another reactor panicked while holding the lock,
/// which it cannot do (nothing in the critical sections panics).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Group {
    pub(crate) fn new(wakers: Vec<Waker>) -> Arc<Self> {
        Arc::new(Self {
            flags: Arc::default(),
            posts: wakers
                .into_iter()
                .map(|waker| Post {
                    waker,
                    app: AtomicBool::new(false),
                    inbox: Mutex::new(Vec::new()),
                    busy_since: AtomicU64::new(0),
                })
                .collect(),
            held: AtomicUsize::new(0),
            failed: Mutex::new(None),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.posts.len()
    }

    /// Wake every reactor for its handler's `on_wake`.
    pub(crate) fn wake_all(&self) {
        for post in self.posts.iter() {
            post.app.store(true, Ordering::SeqCst);
            if let Err(e) = post.waker.wake() {
                log::warn!("cannot wake the reactor: {e}");
            }
        }
    }

    /// Wake every reactor but `me`, without `on_wake` (to see a flag).
    pub(crate) fn nudge_others(&self, me: usize) {
        for (i, post) in self.posts.iter().enumerate() {
            if i != me {
                let _ = post.waker.wake();
            }
        }
    }

    /// Did `Remote::wake` ask reactor `i` for `on_wake`? Clears the request.
    pub(crate) fn take_app_wake(&self, i: usize) -> bool {
        self.posts[i].app.swap(false, Ordering::SeqCst)
    }

    /// Append `items` to reactor `to`'s inbox, waking it if the inbox was
    /// empty (else a wake is already pending: it has not drained since).
    fn post(&self, to: usize, items: &mut Vec<Item>) {
        let post = &self.posts[to];
        let was_empty = {
            let mut inbox = lock(&post.inbox);
            let was_empty = inbox.is_empty();
            inbox.append(items);
            was_empty
        };
        if was_empty {
            if let Err(e) = post.waker.wake() {
                log::warn!("cannot wake reactor {to}: {e}");
            }
        }
    }

    /// Swap reactor `i`'s inbox with `into` (empty, its capacity kept).
    pub(crate) fn take_inbox(&self, i: usize, into: &mut Vec<Item>) {
        std::mem::swap(&mut *lock(&self.posts[i].inbox), into);
    }

    /// Reactor `i` left its poll at `now` (`Some`) or is about to wait.
    #[inline]
    pub(crate) fn busy(&self, i: usize, now: Option<Tick>) {
        let ms = now.map_or(0, Tick::millis);
        self.posts[i].busy_since.store(ms, Ordering::Relaxed);
    }

    /// `Err(why)` if a reactor failed or is stuck in a callback.
    pub(crate) fn health(&self, now: Tick) -> Result<(), String> {
        if let Some(why) = lock(&self.failed).as_ref() {
            return Err(why.clone());
        }
        let now = now.millis();
        for (i, post) in self.posts.iter().enumerate() {
            let since = post.busy_since.load(Ordering::Relaxed);
            if since != 0 && now.saturating_sub(since) > STALL_AFTER_MS {
                return Err(format!("reactor {i} busy for {} s", (now - since) / 1000));
            }
        }
        Ok(())
    }

    /// Reactor `i` ended abnormally: record why and shut every reactor
    /// down gracefully.
    pub(crate) fn fail(&self, i: usize, why: String) {
        log::error!("reactor {i} failed: {why}; shutting the server down");
        lock(&self.failed).get_or_insert(format!("reactor {i}: {why}"));
        self.flags.shutdown.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// Why a reactor failed, if one did.
    pub(crate) fn failure(&self) -> Option<String> {
        lock(&self.failed).clone()
    }
}

/// A reactor's side of its group: its index, its outboxes and caches.
#[derive(Debug)]
pub(crate) struct Peers {
    pub(crate) group: Arc<Group>,
    pub(crate) index: usize,
    /// Only the acceptor (reactor 0) listens; it deals sockets round robin.
    pub(crate) handoff: bool,
    next_handoff: usize,
    outbox: Vec<Vec<Item>>,
    /// Topic names shared with the items that carry them (an `Arc` clone
    /// per item, no allocation per publish).
    names: HashSet<Arc<str>>,
    /// The drained inbox's buffer, kept for its capacity.
    pub(crate) spare: Vec<Item>,
    /// `/metrics` answers waiting for the other reactors' parts.
    pub(crate) scrapes: Vec<Scrape>,
}

impl Peers {
    pub(crate) fn new(group: Arc<Group>, index: usize, handoff: bool) -> Self {
        let n = group.len();
        Self {
            group,
            index,
            handoff,
            next_handoff: index,
            outbox: (0..n).map(|_| Vec::new()).collect(),
            names: HashSet::new(),
            spare: Vec::new(),
            scrapes: Vec::new(),
        }
    }

    /// A reactor on its own (its waker registered in `poll`).
    pub(crate) fn lone(poll: &mio::Poll) -> std::io::Result<Self> {
        let waker = Waker::new(poll.registry(), super::reactor::WAKER)?;
        Ok(Self::new(Group::new(vec![waker]), 0, false))
    }

    /// Is there more than this reactor?
    #[inline]
    pub(crate) fn spans(&self) -> bool {
        self.outbox.len() > 1
    }

    pub(crate) fn len(&self) -> usize {
        self.outbox.len()
    }

    /// Queue `item` for reactor `to` (posted at the end of the round).
    pub(crate) fn send(&mut self, to: usize, item: Item) {
        self.outbox[to].push(item);
    }

    /// Post every outbox: one lock (and at most one wake) per peer.
    pub(crate) fn flush(&mut self) {
        for (to, items) in self.outbox.iter_mut().enumerate() {
            if !items.is_empty() {
                self.group.post(to, items);
            }
        }
    }

    /// The reactor that serves the next handed-over socket.
    pub(crate) fn next_target(&mut self) -> usize {
        let t = self.next_handoff;
        self.next_handoff = (t + 1) % self.len();
        t
    }

    fn name(&mut self, topic: &str) -> Arc<str> {
        if let Some(name) = self.names.get(topic) {
            return Arc::clone(name);
        }
        if self.names.len() >= NAMES_KEPT {
            self.names.clear();
        }
        let name: Arc<str> = topic.into();
        self.names.insert(Arc::clone(&name));
        name
    }

    /// Count a connection in the global limit.
    pub(crate) fn count_in(&self) {
        if self.spans() {
            self.group.held.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A counted connection is gone.
    pub(crate) fn count_out(&self) {
        if self.spans() {
            self.group.held.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The reactor that sequences `topic` among `n`: FNV-1a, the same in every
/// reactor and every run.
pub(crate) fn owner(topic: &str, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in topic.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

/// `Control::publish_except` when the reactor has peers. Returns the
/// deliveries queued on this reactor at once (those elsewhere, or routed
/// through the owner, are not counted).
pub(crate) fn publish(
    ctl: &mut Control<'_>,
    topic: &str,
    msg: Message<'_>,
    except: Option<ConnId>,
) -> usize {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        // No reactor can have a subscriber to it.
        return 0;
    }
    let hub = &mut *ctl.hub;
    let frame = SharedFrame::new_in(&mut hub.frames, msg.opcode(), msg.as_bytes());
    let me = hub.peers.index;
    let except = except.map(|id| (me, id));
    let name = hub.peers.name(topic);
    let owner = owner(topic, hub.peers.len());
    if owner == me {
        let corked = ctl.own.as_ref().is_some_and(|o| o.cork);
        sequence(ctl, name, frame, except, corked)
    } else {
        hub.peers.send(
            owner,
            Item::Route {
                topic: name,
                frame,
                except,
            },
        );
        0
    }
}

/// The owner's step: forward to every other reactor, deliver here.
pub(crate) fn sequence(
    ctl: &mut Control<'_>,
    topic: Arc<str>,
    frame: SharedFrame,
    except: Except,
    corked: bool,
) -> usize {
    let hub = &mut *ctl.hub;
    hub.metrics.publishes_total += 1;
    for to in 0..hub.peers.len() {
        if to != hub.peers.index {
            hub.peers.send(
                to,
                Item::Deliver {
                    topic: Arc::clone(&topic),
                    frame: frame.clone(),
                    except,
                },
            );
        }
    }
    deliver_here(ctl, &topic, &frame, except, corked)
}

/// Hand `frame` to this reactor's subscribers of `topic`, as a local
/// publish is (`Control::fan_out`); `corked` when more deliveries follow in
/// this round, so that a burst leaves in one writev per subscriber.
pub(crate) fn deliver_here(
    ctl: &mut Control<'_>,
    topic: &str,
    frame: &SharedFrame,
    except: Except,
    corked: bool,
) -> usize {
    let me = ctl.hub.peers.index;
    let except = except.filter(|&(r, _)| r == me).map(|(_, id)| id);
    ctl.fan_out(topic, except, corked, |_| frame.clone())
        .unwrap_or(0)
}

/// The `/metrics` text of a whole group: every counter summed, plus a few
/// series per reactor (label `reactor`).
pub(crate) fn render(parts: &mut [Part], reactors: usize) -> String {
    use std::fmt::Write as _;
    parts.sort_by_key(|p| p.index);
    let missing: Vec<String> = (0..reactors)
        .filter(|i| !parts.iter().any(|p| p.index == *i))
        .map(|i| i.to_string())
        .collect();
    let mut sum = Metrics::default();
    for p in parts.iter() {
        sum.absorb(&p.metrics);
    }
    let queued = parts.iter().map(|p| p.queued).sum();
    let held = parts.iter().map(|p| p.held).sum();
    let mut s = sum.render(queued, held);
    if !missing.is_empty() {
        // A stuck reactor must not hang the scrape; the sums lack its part.
        let _ = writeln!(
            s,
            "# wsreactor: no answer from reactor {} within {:?}; its counters are not included",
            missing.join(", "),
            SCRAPE_WAIT
        );
    }
    type Series = (&'static str, &'static str, &'static str, fn(&Part) -> u64);
    let series: [Series; 5] = [
        (
            "reactor_connections_open",
            "gauge",
            "WebSocket connections open, per reactor.",
            |p| p.metrics.connections_open,
        ),
        (
            "reactor_connections_held",
            "gauge",
            "TCP connections held, per reactor.",
            |p| p.held as u64,
        ),
        (
            "reactor_messages_in_total",
            "counter",
            "Messages received, per reactor.",
            |p| p.metrics.messages_in,
        ),
        (
            "reactor_deliveries_total",
            "counter",
            "Publish deliveries queued, per reactor.",
            |p| p.metrics.deliveries_total,
        ),
        (
            "reactor_loop_iterations_total",
            "counter",
            "Event loop iterations, per reactor.",
            |p| p.metrics.loop_iterations,
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(
            s,
            "# HELP wsreactor_{name} {help}\n# TYPE wsreactor_{name} {kind}"
        );
        for p in parts.iter() {
            let _ = writeln!(s, "wsreactor_{name}{{reactor=\"{}\"}} {}", p.index, get(p));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_stable_and_spread() {
        assert_eq!(owner("room", 1), 0);
        assert_eq!(owner("room", 4), owner("room", 4));
        let mut seen = [0usize; 4];
        for i in 0..4000 {
            seen[owner(&format!("topic-{i}"), 4)] += 1;
        }
        for n in seen {
            assert!((800..1200).contains(&n), "{seen:?}");
        }
    }

    #[test]
    fn one_wake_per_burst() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), mio::Token(7)).unwrap();
        let group = Group::new(vec![waker]);
        let frame = SharedFrame::new(crate::proto::OpCode::Text, b"x");
        let item = || Item::Deliver {
            topic: "t".into(),
            frame: frame.clone(),
            except: None,
        };
        let mut burst = vec![item(), item()];
        group.post(0, &mut burst);
        let mut more = vec![item()];
        group.post(0, &mut more);
        let mut events = mio::Events::with_capacity(8);
        poll.poll(&mut events, Some(std::time::Duration::from_millis(100)))
            .unwrap();
        assert_eq!(events.iter().count(), 1);
        let mut got = Vec::new();
        group.take_inbox(0, &mut got);
        assert_eq!(got.len(), 3);
        // Drained: the next post wakes again.
        let mut again = vec![item()];
        group.post(0, &mut again);
        poll.poll(&mut events, Some(std::time::Duration::from_millis(100)))
            .unwrap();
        assert_eq!(events.iter().count(), 1);
    }

    #[test]
    fn a_failure_or_a_stall_is_unhealthy() {
        let poll = mio::Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), mio::Token(7)).unwrap();
        let group = Group::new(vec![waker]);
        let now = Tick::now();
        assert!(group.health(now).is_ok());
        group.busy(0, Some(now));
        assert!(group.health(now).is_ok());
        let later = now + std::time::Duration::from_millis(STALL_AFTER_MS + 10);
        assert!(group.health(later).unwrap_err().contains("reactor 0 busy"));
        group.busy(0, None);
        assert!(group.health(later).is_ok());
        group.fail(0, "handler panicked".into());
        assert!(group.health(later).unwrap_err().contains("panicked"));
        assert!(group.flags.shutdown.load(Ordering::SeqCst));
    }
}
