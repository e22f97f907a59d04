//! `raw-tcp-echo --addr A`: the physical limit of an echo on this machine.
//!
//! A single-threaded mio loop that does exactly what a WebSocket echo server
//! must do at the socket and nothing more: one `read` into one loop-wide
//! buffer, one `write` of what was read, and a queue only for what the kernel
//! refuses. No framing, no unmasking, no UTF-8. Every echo benchmark states
//! its result as a ratio to this server.
//!
//! It follows the same edge-triggered discipline as wsreactor's reactor:
//! accept/read/write until `WouldBlock`, retry on `Interrupted`, treat events
//! as hints, ignore unknown tokens, and skip the extra `read` after one that
//! returned less than the room it was given (the socket is drained; new data
//! raises a new edge). Both interests are registered once; a connection with
//! queued output stops reading until the queue drains (backpressure), then
//! resumes reading itself, since the readable edge may already be spent.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX - 1);
/// The loop-wide read buffer: the same size as wsreactor's default.
const READ_BUF: usize = 64 * 1024;

struct Conn {
    stream: TcpStream,
    /// What the kernel refused to take; empty in steady state.
    pending: Vec<u8>,
    /// Stopped reading because `pending` is not empty.
    read_paused: bool,
}

fn main() {
    let addr = wsreactor_peers::addr_arg("raw-tcp-echo", "127.0.0.1:9002");
    if let Err(e) = run(addr) {
        eprintln!("raw-tcp-echo: {e}");
        std::process::exit(1);
    }
}

fn run(addr: SocketAddr) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!("raw-tcp-echo listening on {}", listener.local_addr()?);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; READ_BUF].into_boxed_slice();
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
                    let mut alive = true;
                    if event.is_writable() && !conn.pending.is_empty() {
                        alive = flush(conn);
                    }
                    let readable = event.is_readable()
                        || event.is_read_closed()
                        || event.is_error()
                        // The queue just drained: resume the reads we paused.
                        || (conn.read_paused && conn.pending.is_empty());
                    if alive && readable {
                        alive = echo(conn, &mut buf);
                    }
                    if !alive {
                        let mut conn = conns.remove(key);
                        let _ = poll.registry().deregister(&mut conn.stream);
                    }
                }
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
        // Same as wsreactor: small echoes must not wait for Nagle.
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
            read_paused: false,
        });
    }
}

/// Read and echo until the socket is drained. Returns `false` once the
/// connection is finished (EOF or error).
fn echo(conn: &mut Conn, buf: &mut [u8]) -> bool {
    conn.read_paused = false;
    loop {
        if !conn.pending.is_empty() {
            // Backpressure: the peer is not reading; wait for WRITABLE.
            conn.read_paused = true;
            return true;
        }
        let n = match conn.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        // Exactly one write of what was read; queue only the refused rest.
        match conn.stream.write(&buf[..n]) {
            Ok(w) => conn.pending.extend_from_slice(&buf[w..n]),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                conn.pending.extend_from_slice(&buf[..n]);
            }
            Err(_) => return false,
        }
        if n < buf.len() {
            return true; // drained: the next byte raises a new edge
        }
    }
}

/// Write queued output until it is gone or the kernel refuses more.
fn flush(conn: &mut Conn) -> bool {
    let mut done = 0;
    let alive = loop {
        if done == conn.pending.len() {
            break true;
        }
        match conn.stream.write(&conn.pending[done..]) {
            Ok(0) => break false,
            Ok(w) => done += w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break false,
        }
    };
    conn.pending.drain(..done);
    if conn.pending.is_empty() {
        // Don't keep a large buffer on an idle connection.
        conn.pending = Vec::new();
    }
    alive
}
