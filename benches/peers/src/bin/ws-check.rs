//! `ws-check`: does an echo server echo? And a rough closed-loop load.
//!
//! ```text
//! ws-check --addr A                     conformance smoke test of a WebSocket echo
//! ws-check --addr A --load [--raw] [--conns C] [--size S] [--secs T]
//! ```
//!
//! The check uses tungstenite's synchronous client (not wsreactor's code, so it
//! checks the servers independently): masked text and binary messages at the
//! length-encoding boundaries (0, 125, 126, 65535, 65536 bytes and 1 MiB),
//! multibyte UTF-8, a ping that must come back as a pong with the same
//! payload, then the close handshake, which the server must answer with a
//! close frame before it ends TCP.
//!
//! `--load` is a closed loop of C threads (default 1), each with its own
//! connection sending one S-byte message (default 14) and waiting for its
//! echo, for T seconds (default 5). With `--raw` it speaks plain TCP, for
//! `raw-tcp-echo`. It is a sanity check, not the benchmark: one blocking
//! thread per connection spends most of its time in the scheduler, so it
//! cannot saturate a server; `wsreactor bench` is the load generator.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Bytes, Message};

const USAGE: &str = "ws-check --addr A [--load [--raw] [--conns C] [--size S] [--secs T]]";

struct Opts {
    addr: SocketAddr,
    load: bool,
    raw: bool,
    conns: usize,
    size: usize,
    secs: f64,
}

fn main() -> ExitCode {
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ws-check: {e}");
            return ExitCode::from(2);
        }
    };
    let result = if opts.load {
        load(&opts)
    } else {
        check(opts.addr)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws-check: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        addr: "127.0.0.1:9001".parse().expect("literal"),
        load: false,
        raw: false,
        conns: 1,
        size: 14,
        secs: 5.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => o.addr = value(&mut args, &a)?,
            "--load" => o.load = true,
            "--raw" => o.raw = true,
            "--conns" => o.conns = value(&mut args, &a)?,
            "--size" => o.size = value(&mut args, &a)?,
            "--secs" => o.secs = value(&mut args, &a)?,
            "-h" | "--help" => {
                println!("usage: {USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option '{other}'; usage: {USAGE}")),
        }
    }
    if o.raw && !o.load {
        return Err("--raw only applies to --load".into());
    }
    if o.conns == 0 || o.size == 0 && o.raw {
        return Err("--conns must be > 0 (and --size > 0 with --raw)".into());
    }
    Ok(o)
}

/// The value after option `name`, parsed.
fn value<T>(args: &mut impl Iterator<Item = String>, name: &str) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let v = args.next().ok_or(format!("{name} needs a value"))?;
    v.parse().map_err(|e| format!("{name} {v}: {e}"))
}

type Ws = tungstenite::WebSocket<TcpStream>;

fn connect(addr: SocketAddr) -> Result<Ws, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let url = format!("ws://{addr}/");
    let (ws, resp) =
        tungstenite::client(url.as_str(), tcp).map_err(|e| format!("handshake: {e}"))?;
    if resp.status().as_u16() != 101 {
        return Err(format!("handshake status {}", resp.status()));
    }
    Ok(ws)
}

/// Read until a data or pong frame arrives (skipping pings, which tungstenite
/// answers itself).
fn next(ws: &mut Ws) -> Result<Message, String> {
    loop {
        match ws.read().map_err(|e| format!("read: {e}"))? {
            Message::Ping(_) => continue,
            m => return Ok(m),
        }
    }
}

fn check(addr: SocketAddr) -> Result<(), String> {
    let mut ws = connect(addr)?;
    let mut n = 0;
    for len in [0usize, 1, 14, 125, 126, 127, 65535, 65536, 1 << 20] {
        let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let bin: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        for msg in [Message::text(text), Message::binary(bin)] {
            ws.send(msg.clone()).map_err(|e| format!("send: {e}"))?;
            let back = next(&mut ws)?;
            if back != msg {
                return Err(format!(
                    "{len}-byte {} message not echoed intact",
                    kind(&msg)
                ));
            }
            n += 1;
        }
    }
    let utf8 = Message::text("κόσμε · 日本語 · 🦀 · ascii");
    ws.send(utf8.clone()).map_err(|e| format!("send: {e}"))?;
    if next(&mut ws)? != utf8 {
        return Err("multibyte UTF-8 text not echoed intact".into());
    }
    n += 1;
    let ping = Bytes::from_static(b"are you there");
    ws.send(Message::Ping(ping.clone()))
        .map_err(|e| format!("send ping: {e}"))?;
    match next(&mut ws)? {
        Message::Pong(p) if p == ping => {}
        other => return Err(format!("ping answered with {other:?}")),
    }
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .map_err(|e| format!("close: {e}"))?;
    // The server's close frame arrives as Message::Close; the next read then
    // reports the closed connection.
    let mut got_close = false;
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => {
                got_close = true;
                if let Some(f) = frame {
                    if f.code != CloseCode::Normal {
                        return Err(format!("close echoed with code {}", u16::from(f.code)));
                    }
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => return Err(format!("waiting for the close: {e}")),
        }
    }
    if !got_close {
        return Err("no close frame from the server".into());
    }
    println!("ok: {addr}: {n} messages echoed intact, ping answered, close handshake completed");
    Ok(())
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Text(_) => "text",
        _ => "binary",
    }
}

fn load(o: &Opts) -> Result<(), String> {
    let deadline = Duration::from_secs_f64(o.secs);
    let handles: Vec<_> = (0..o.conns)
        .map(|_| {
            let (addr, raw, size) = (o.addr, o.raw, o.size);
            std::thread::spawn(move || -> Result<u64, String> {
                if raw {
                    load_raw(addr, size, deadline)
                } else {
                    load_ws(addr, size, deadline)
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut total = 0u64;
    for h in handles {
        total += h.join().map_err(|_| "load thread panicked".to_string())??;
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = total as f64 / secs;
    println!(
        "{addr} {what} conns={c} size={s}: {total} echoes in {secs:.2} s = {rate:.0} msg/s, \
         mean round trip {rtt:.1} us",
        addr = o.addr,
        what = if o.raw { "raw-tcp" } else { "websocket" },
        c = o.conns,
        s = o.size,
        rtt = 1e6 * o.conns as f64 / rate,
    );
    Ok(())
}

fn load_ws(addr: SocketAddr, size: usize, deadline: Duration) -> Result<u64, String> {
    let mut ws = connect(addr)?;
    let msg = Message::text("x".repeat(size));
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < deadline {
        ws.send(msg.clone()).map_err(|e| format!("send: {e}"))?;
        match next(&mut ws)? {
            Message::Text(t) if t.len() == size => n += 1,
            other => return Err(format!("unexpected reply {other:?}")),
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
    Ok(n)
}

fn load_raw(addr: SocketAddr, size: usize, deadline: Duration) -> Result<u64, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let out = vec![b'x'; size];
    let mut back = vec![0u8; size];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < deadline {
        s.write_all(&out).map_err(|e| format!("write: {e}"))?;
        s.read_exact(&mut back).map_err(|e| format!("read: {e}"))?;
        n += 1;
    }
    Ok(n)
}
