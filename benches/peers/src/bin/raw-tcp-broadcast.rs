//! `raw-tcp-broadcast --addr A --size BYTES`: the physical limit of a
//! broadcast on this machine, the reference the fan-out benchmarks state
//! their ratios to.
//!
//! Messages are fixed-size (`--size`, default 20), without framing. Every
//! message read from any connection is written to every connection, the
//! sender included, in the order it was read. What it does per readiness of
//! a connection, and nothing more:
//!
//! - `read` into one loop-wide 64 KiB buffer until drained (edge-triggered,
//!   as raw-tcp-echo and wsreactor: skip the extra `read` after a short one);
//! - the whole messages of each read (a message split across reads is held
//!   per connection until complete) go to every connection in one `write`
//!   per connection, sent directly; only what the kernel refuses is queued,
//!   and a connection with a queue gets later messages appended to it (so
//!   order holds), flushed on WRITABLE;
//! - a connection whose queue passes 64 MiB is not reading and is dropped
//!   (memory stays bounded; a benchmark generator never gets there).
//!
//! No encoding, no per-message allocation, no copy except into the queue of
//! a connection the kernel refused: what a WebSocket broadcast server cannot
//! do with less work at the socket.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX - 1);
/// The loop-wide read buffer: the same size as wsreactor's default.
const READ_BUF: usize = 64 * 1024;
/// A connection with more queued output than this is dropped.
const MAX_QUEUE: usize = 64 << 20;

struct Conn {
    stream: TcpStream,
    /// What the kernel refused to take; empty in steady state.
    pending: Vec<u8>,
    /// The start of a message whose rest has not arrived yet.
    partial: Vec<u8>,
    dead: bool,
}

fn main() {
    let (addr, size) = args();
    if let Err(e) = run(addr, size) {
        eprintln!("raw-tcp-broadcast: {e}");
        std::process::exit(1);
    }
}

fn usage_exit(code: i32) -> ! {
    println!("usage: raw-tcp-broadcast [--addr IP:PORT (default 127.0.0.1:9012)] [--size BYTES (default 20)]");
    std::process::exit(code)
}

fn args() -> (SocketAddr, usize) {
    let mut addr: SocketAddr = "127.0.0.1:9012".parse().expect("default address");
    let mut size = 20;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage_exit(2));
        match a.as_str() {
            "--addr" => addr = value().parse().unwrap_or_else(|_| usage_exit(2)),
            "--size" => size = value().parse().unwrap_or_else(|_| usage_exit(2)),
            "-h" | "--help" => usage_exit(0),
            other => {
                eprintln!("raw-tcp-broadcast: unknown option '{other}'");
                usage_exit(2)
            }
        }
    }
    if size == 0 || size > READ_BUF {
        eprintln!("raw-tcp-broadcast: --size must be between 1 and {READ_BUF}");
        std::process::exit(2);
    }
    (addr, size)
}

fn run(addr: SocketAddr, size: usize) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!(
        "raw-tcp-broadcast listening on {} ({size}-byte messages)",
        listener.local_addr()?
    );
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; READ_BUF].into_boxed_slice();
    let mut stash = Vec::with_capacity(size);
    let mut dead: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => accept(&mut listener, &poll, &mut conns)?,
                Token(key) => {
                    let Some(conn) = conns.get_mut(key) else {
                        continue; // a stale event for a closed connection
                    };
                    if event.is_writable() && !conn.pending.is_empty() {
                        flush(conn);
                        if conn.dead {
                            dead.push(key);
                        }
                    }
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        read(key, &mut conns, &mut buf, &mut stash, size, &mut dead);
                    }
                }
            }
            // Dead connections go after each event, so no write reaches a
            // closed socket and keys are not reused mid-broadcast.
            for key in dead.drain(..) {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

fn accept(listener: &mut TcpListener, poll: &Poll, conns: &mut Slab<Conn>) -> io::Result<()> {
    loop {
        let (mut stream, _) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("accept: {e}");
                return Ok(());
            }
        };
        let _ = stream.set_nodelay(true);
        let entry = conns.vacant_entry();
        poll.registry().register(
            &mut stream,
            Token(entry.key()),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Conn {
            stream,
            pending: Vec::new(),
            partial: Vec::new(),
            dead: false,
        });
    }
}

/// Read connection `key` until drained; every whole message goes to every
/// connection.
fn read(
    key: usize,
    conns: &mut Slab<Conn>,
    buf: &mut [u8],
    stash: &mut Vec<u8>,
    size: usize,
    dead: &mut Vec<usize>,
) {
    loop {
        let conn = &mut conns[key];
        if conn.dead {
            return;
        }
        let n = match conn.stream.read(buf) {
            Ok(n @ 1..) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => {
                conn.dead = true;
                dead.push(key);
                return;
            }
        };
        let mut data = &buf[..n];
        // Complete a message an earlier read split.
        if !conn.partial.is_empty() {
            let take = data.len().min(size - conn.partial.len());
            conn.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if conn.partial.len() == size {
                stash.clear();
                stash.append(&mut conn.partial);
                broadcast(conns, stash, dead);
            }
        }
        let whole = data.len() / size * size;
        if whole > 0 {
            broadcast(conns, &data[..whole], dead);
        }
        if whole < data.len() {
            conns[key].partial.extend_from_slice(&data[whole..]);
        }
        if n < buf.len() {
            return; // drained: the next byte raises a new edge
        }
    }
}

/// One write of `data` on every connection; queue what the kernel refuses.
fn broadcast(conns: &mut Slab<Conn>, data: &[u8], dead: &mut Vec<usize>) {
    for (key, c) in conns.iter_mut() {
        if c.dead {
            continue;
        }
        if !c.pending.is_empty() {
            c.pending.extend_from_slice(data);
        } else {
            match c.stream.write(data) {
                Ok(w) => c.pending.extend_from_slice(&data[w..]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    c.pending.extend_from_slice(data)
                }
                Err(_) => c.dead = true,
            }
        }
        if c.pending.len() > MAX_QUEUE {
            c.dead = true;
        }
        if c.dead {
            dead.push(key);
        }
    }
}

/// Write queued output until it is gone or the kernel refuses more.
fn flush(conn: &mut Conn) {
    let mut done = 0;
    while done < conn.pending.len() {
        match conn.stream.write(&conn.pending[done..]) {
            Ok(0) => {
                conn.dead = true;
                break;
            }
            Ok(w) => done += w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                conn.dead = true;
                break;
            }
        }
    }
    conn.pending.drain(..done);
    if conn.pending.is_empty() {
        // Don't keep a large buffer on an idle connection.
        conn.pending = Vec::new();
    }
}
