//! A server on every core: N reactors, one thread each, one handler each
//! (built by a factory), serving one address. See `group` for what crosses
//! between them (topics, handed-over sockets, metrics).

use std::any::Any;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::{Poll, Waker};

use super::control::Control;
use super::group::{Group, Peers};
use super::reactor::{Reactor, Remote, Stopper, WAKER};
use crate::server::{Handler, ServerConfig};

/// How the reactors of a [`Cluster`] get their connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accept {
    /// Every reactor accepts on its own listening socket bound to the same
    /// address with `SO_REUSEPORT`; the kernel spreads connections by a
    /// hash of their addresses (Linux; elsewhere this is `Handoff`). No
    /// thread ever touches another's sockets.
    ///
    /// Beware: any process of the same user can bind the same port with
    /// `SO_REUSEPORT` too and will then get a share of the connections.
    #[default]
    ReusePort,
    /// Reactor 0 accepts every connection and deals them round robin, the
    /// socket handed over through the other reactor's inbox: an even
    /// spread whatever the clients' addresses, one hop per connection.
    Handoff,
}

/// A WebSocket server on `threads` reactors, one per thread, each with its
/// own poll, connections, timers, buffers and handler; nothing on the
/// per-message path is shared or locked.
///
/// - Topics span the reactors: a publish reaches the subscribers of every
///   reactor, and all of them see a topic's messages in one order (each
///   topic is sequenced by one owner reactor; see
///   [`Control::publish`]). [`ConnId`](super::ConnId)s, `send` and timers
///   stay per reactor.
/// - `max_connections` is global, `/metrics` sums every reactor (with a few
///   series per reactor, label `reactor`; a reactor that does not answer
///   within 1 s is left out and named), `/healthz` answers 503 if a
///   reactor failed or has been stuck in a callback for 10 s.
/// - [`Cluster::stopper`] reaches every reactor: a graceful shutdown closes
///   every connection of every reactor with 1001 and waits for all of
///   them.
/// - A reactor whose handler panics takes the whole server down cleanly
///   rather than leaving it serving on fewer cores: its own connections
///   are dropped (their sockets closed, no close frame: its state is not
///   trusted), every other reactor shuts down gracefully (1001), and
///   [`Cluster::run`] returns an error naming the reactor and the panic.
///
/// With one thread it is exactly a [`Server`](super::Server) (a panic in
/// its handler unwinds out of [`Cluster::run`] as it does out of
/// `Server::run`).
///
/// ```no_run
/// use wsreactor::{Cluster, Ctx, Handler, Message, ServerConfig};
///
/// struct Room;
/// impl Handler for Room {
///     fn on_open(&mut self, ctx: &mut Ctx<'_>) {
///         let _ = ctx.subscribe("room");
///     }
///     fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
///         ctx.publish("room", msg);
///     }
/// }
///
/// let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
/// let server = Cluster::bind("127.0.0.1:9001", ServerConfig::default(), threads, |_| Room)?;
/// server.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Cluster<H> {
    reactors: Vec<Reactor<H>>,
    local_addr: SocketAddr,
    remote: Remote,
}

/// The accept backlog of each `ReusePort` listener: as long as the system
/// allows (`net.core.somaxconn` caps it), as std's `TcpListener::bind`
/// asks on Linux; a short one drops connection bursts.
const BACKLOG: i32 = i32::MAX;

impl<H: Handler + Send + 'static> Cluster<H> {
    /// Bind `threads` reactors to `addr` (the first address it resolves
    /// to) with [`Accept::default`]; `factory(i)` builds reactor `i`'s
    /// handler.
    ///
    /// # Errors
    /// `threads` is 0, or the address does not resolve or cannot be bound.
    pub fn bind(
        addr: impl ToSocketAddrs,
        config: ServerConfig,
        threads: usize,
        factory: impl FnMut(usize) -> H,
    ) -> io::Result<Self> {
        Self::bind_with(addr, config, threads, Accept::default(), factory)
    }

    /// [`Cluster::bind`] with a choice of how connections are accepted.
    ///
    /// # Errors
    /// As [`Cluster::bind`].
    pub fn bind_with(
        addr: impl ToSocketAddrs,
        config: ServerConfig,
        threads: usize,
        accept: Accept,
        mut factory: impl FnMut(usize) -> H,
    ) -> io::Result<Self> {
        if threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a cluster needs at least one thread",
            ));
        }
        if threads == 1 {
            let mut reactor = Reactor::new(config, factory(0))?;
            let local_addr = reactor.listen(addr)?;
            let remote = reactor.remote();
            return Ok(Self {
                reactors: vec![reactor],
                local_addr,
                remote,
            });
        }
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "address did not resolve"))?;
        let reuseport = accept == Accept::ReusePort && cfg!(target_os = "linux");
        let mut polls = Vec::with_capacity(threads);
        let mut wakers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let poll = Poll::new()?;
            wakers.push(Waker::new(poll.registry(), WAKER)?);
            polls.push(poll);
        }
        let group = Group::new(wakers);
        let mut reactors = Vec::with_capacity(threads);
        for (i, poll) in polls.into_iter().enumerate() {
            let peers = Peers::new(Arc::clone(&group), i, !reuseport);
            reactors.push(Reactor::in_group(config.clone(), factory(i), poll, peers));
        }
        let mut local_addr = addr;
        for (i, reactor) in reactors.iter_mut().enumerate() {
            if i > 0 && !reuseport {
                break;
            }
            let listener = if reuseport {
                // Port 0 resolves on the first bind; the others share it.
                bind_reuseport(local_addr)?
            } else {
                std::net::TcpListener::bind(addr)?
            };
            local_addr = reactor.listen_on(listener)?;
        }
        let how = if reuseport { "SO_REUSEPORT" } else { "handoff" };
        log::info!("{threads} reactors, connections by {how}");
        Ok(Self {
            remote: reactors[0].remote(),
            reactors,
            local_addr,
        })
    }

    /// The address the listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops, shuts down or wakes every reactor.
    pub fn stopper(&self) -> Stopper {
        self.remote.clone()
    }

    /// Number of reactors.
    pub fn threads(&self) -> usize {
        self.reactors.len()
    }

    /// Reactor `i` (to open client connections or set timers before the
    /// run).
    ///
    /// # Panics
    /// `i` is not below [`Cluster::threads`].
    pub fn reactor_mut(&mut self, i: usize) -> &mut Reactor<H> {
        &mut self.reactors[i]
    }

    /// [`Remote::shutdown_on_signals`] for every reactor.
    ///
    /// # Errors
    /// The handlers cannot be installed.
    #[cfg(feature = "signals")]
    pub fn shutdown_on_signals(&self) -> io::Result<super::ShutdownSignals> {
        self.remote.shutdown_on_signals()
    }

    /// Run every reactor (reactor 0 on the calling thread) until stopped or
    /// shut down; returns the handlers in reactor order.
    ///
    /// # Errors
    /// A thread cannot be started, a poll fails, or a handler panicked (the
    /// error says which reactor and the panic's message; the other
    /// reactors were shut down gracefully first).
    pub fn run(self) -> io::Result<Vec<H>> {
        let group = Arc::clone(&self.remote.group);
        let mut reactors = self.reactors.into_iter();
        let first = reactors.next().expect("at least one reactor");
        if reactors.len() == 0 {
            return first.run().map(|h| vec![h]);
        }
        let mut threads: Vec<JoinHandle<Option<H>>> = Vec::new();
        for (i, reactor) in reactors.enumerate() {
            let index = i + 1;
            let shared = Arc::clone(&group);
            let spawned = std::thread::Builder::new()
                .name(format!("wsreactor-{index}"))
                .spawn(move || run_one(reactor, index, &shared));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    group.flags.stop.store(true, Ordering::SeqCst);
                    group.wake_all();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        let mut handlers = Vec::with_capacity(threads.len() + 1);
        handlers.extend(run_one(first, 0, &group));
        for t in threads {
            // `run_one` catches the handler's panics.
            handlers.extend(t.join().ok().flatten());
        }
        match group.failure() {
            Some(why) => Err(io::Error::other(why)),
            None => Ok(handlers),
        }
    }
}

/// Run one reactor; a panic or a failed poll shuts the others down.
fn run_one<H: Handler>(reactor: Reactor<H>, index: usize, group: &Group) -> Option<H> {
    match catch_unwind(AssertUnwindSafe(|| reactor.run())) {
        Ok(Ok(handler)) => Some(handler),
        Ok(Err(e)) => {
            group.fail(index, format!("event loop failed: {e}"));
            None
        }
        Err(panic) => {
            group.fail(
                index,
                format!("handler panicked: {}", panic_message(&*panic)),
            );
            None
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(not a string)"
    }
}

/// A listening socket on `addr` that others may share (`SO_REUSEPORT`).
#[cfg(target_os = "linux")]
fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(not(target_os = "linux"))]
fn bind_reuseport(_addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let _ = BACKLOG;
    unreachable!("ReusePort falls back to Handoff off Linux")
}

impl Control<'_> {
    /// This reactor's number in its [`Cluster`] (0 for a lone reactor).
    pub fn reactor(&self) -> usize {
        self.hub.peers.index
    }

    /// Number of reactors of the server (1 for a lone reactor).
    pub fn reactors(&self) -> usize {
        self.hub.peers.len()
    }
}
