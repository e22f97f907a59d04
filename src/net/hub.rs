//! The reactor's loop-wide state that every callback can reach through a
//! [`Control`](super::Control): the connections, timers, topics, metrics and
//! the per-round lists of connections to flush and to settle.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mio::Poll;
use slab::Slab;

use super::coalesce::Pending;
use super::conn::Conn;
use super::ctx::{flush, ConnId};
use super::group::Peers;
use super::logs::RejectLog;
use super::metrics::Metrics;
use super::timer::Timers;
use crate::proto::{CloseState, DeflatedForms, FramePool, SendError, Sender, SharedFrame};
use crate::server::{ServerConfig, SlowPolicy};
use crate::topics::Topics;

/// Stop and shutdown requests, shared with [`Remote`](super::Remote)s.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    pub(crate) stop: AtomicBool,
    pub(crate) shutdown: AtomicBool,
}

/// The connections. A slot is `None` while its connection is being driven:
/// the reactor takes it out so that the connection's callbacks can reach
/// every other connection through the slab, and the occupied slot keeps its
/// key from being handed to a connection opened meanwhile. (`Option<Conn>`
/// costs nothing: `Conn` has a niche.)
#[derive(Debug)]
pub(crate) struct Conns {
    slab: Slab<Option<Conn>>,
}

impl Conns {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            slab: Slab::with_capacity(n),
        }
    }

    pub(crate) fn get(&self, key: usize) -> Option<&Conn> {
        self.slab.get(key).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut Conn> {
        self.slab.get_mut(key).and_then(Option::as_mut)
    }

    /// The connection `id` if it is still that connection.
    pub(crate) fn get_id(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.get_mut(id.key)
            .filter(|c| c.generation == id.generation)
    }

    /// Take connection `key` out, leaving its slot occupied.
    #[inline]
    pub(crate) fn take(&mut self, key: usize) -> Option<Conn> {
        self.slab.get_mut(key).and_then(Option::take)
    }

    /// Put a taken connection back.
    #[inline]
    pub(crate) fn put(&mut self, key: usize, conn: Conn) {
        self.slab[key] = Some(conn);
    }

    /// Free slot `key` (its connection taken or not).
    pub(crate) fn remove(&mut self, key: usize) -> Option<Conn> {
        self.slab.try_remove(key).flatten()
    }

    pub(crate) fn insert(&mut self, conn: Conn) -> usize {
        self.slab.insert(Some(conn))
    }

    pub(crate) fn vacant_key(&self) -> usize {
        self.slab.vacant_key()
    }

    /// Connections held, a taken one included.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Conn)> {
        self.slab
            .iter()
            .filter_map(|(k, c)| c.as_ref().map(|c| (k, c)))
    }

    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.iter()
            .map(|(key, c)| ConnId {
                key,
                generation: c.generation,
            })
            .collect()
    }
}

/// Everything of the reactor but its handler, its listener and its buffers.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) conns: Conns,
    pub(crate) poll: Poll,
    pub(crate) timers: Timers,
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Metrics,
    pub(crate) next_generation: u32,
    pub(crate) flags: Arc<Flags>,
    /// Where a client masks what it sends; grows to the largest message.
    pub(crate) scratch: Vec<u8>,
    pub(crate) topics: Topics<ConnId>,
    /// Connections a callback acted on (other than its own): settled (and
    /// dropped if broken) at the end of the round.
    pub(crate) touched: Vec<ConnId>,
    /// Connections whose output queue went from empty to not empty by a
    /// publish: written (one `writev` each) at the end of the round.
    pub(crate) dirty: Vec<ConnId>,
    /// Frame buffers of recent publishes, reused once delivered.
    pub(crate) frames: FramePool,
    /// Rate limit of the rejected-handshake log lines.
    pub(crate) rejects: RejectLog,
    /// The other reactors of the server, if any.
    pub(crate) peers: Peers,
    /// A burst of publishes to one topic, delivered as one run.
    pub(crate) pending: Pending,
}

/// One publish: its frame, and the compressed forms built for it so far.
#[derive(Debug)]
pub(crate) struct Publication {
    pub(crate) frame: SharedFrame,
    pub(crate) forms: DeflatedForms,
}

/// What a publish does to one subscriber's queue.
pub(crate) fn deliver(
    id: ConnId,
    tx: &mut Sender,
    publication: &mut Publication,
    config: &ServerConfig,
    metrics: &mut Metrics,
    dirty: &mut Vec<ConnId>,
    touched: &mut Vec<ConnId>,
) -> Result<(), SendError> {
    let before = tx.pending_len();
    if before + publication.frame.len() > config.max_subscriber_backlog {
        // A slow subscriber: it never holds more than its backlog limit,
        // and never slows the publisher or the others.
        return Err(match config.on_slow_subscriber {
            SlowPolicy::Drop => {
                metrics.deliveries_dropped_total += 1;
                SendError::Overflow
            }
            SlowPolicy::Close(code) => {
                if tx.state() == CloseState::Open {
                    metrics.slow_subscribers_closed_total += 1;
                    let _ = tx.close(code, "slow subscriber");
                    touched.push(id);
                }
                metrics.deliveries_dropped_total += 1;
                SendError::Overflow
            }
        });
    }
    tx.send_shared(&publication.frame, &mut publication.forms)?;
    metrics.deliveries_total += 1;
    if before == 0 {
        dirty.push(id);
    }
    Ok(())
}

impl Hub {
    pub(crate) fn new(config: ServerConfig, poll: Poll, peers: Peers) -> Self {
        // Address space for the configured connections (slots and timer
        // entries), reserved up front (up to 64 Ki): pages are touched only
        // as they are used, so memory grows with the connections actually
        // held, and nothing is copied while growing to that size (a copy's
        // old pages would stay resident).
        let reserved = config.max_connections.min(1 << 16);
        Self {
            conns: Conns::with_capacity(reserved),
            poll,
            timers: Timers::with_capacity(reserved),
            config,
            metrics: Metrics::default(),
            next_generation: 0,
            flags: Arc::clone(&peers.group.flags),
            scratch: Vec::new(),
            topics: Topics::new(),
            touched: Vec::new(),
            dirty: Vec::new(),
            frames: FramePool::new(),
            rejects: RejectLog::default(),
            peers,
            pending: Pending::default(),
        }
    }

    /// Connections held against `max_connections`: this reactor's, or the
    /// whole server's when it has several.
    pub(crate) fn held(&self) -> usize {
        if self.peers.spans() {
            self.peers
                .group
                .held
                .load(std::sync::atomic::Ordering::SeqCst)
        } else {
            self.conns.len()
        }
    }

    /// Write what publishes queued this round, one vectored write per
    /// connection; connections that broke, or whose close was queued, are
    /// handed to `touched` for settling.
    pub(crate) fn flush_dirty(&mut self) {
        super::coalesce::drain(self, false);
        if self.dirty.is_empty() {
            return;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            let Some(conn) = self.conns.get_id(id) else {
                continue;
            };
            flush(&mut conn.stream, conn.proto.sender(), &mut conn.broken);
            if conn.broken || conn.proto.sender().state() != CloseState::Open {
                self.touched.push(id);
            }
        }
        dirty.clear();
        // Kept: its capacity serves the next round.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        } else {
            self.dirty.append(&mut dirty);
        }
    }
}
