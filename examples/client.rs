//! A client on the reactor (`Reactor::connect`): sends a few messages,
//! prints what comes back, closes with 1000 and exits.
//!
//!     cargo run --example client -- ws://127.0.0.1:9001/   # a running server
//!     cargo run --example client                          # its own echo server
//!
//! Without a URL it starts an echo server in a thread first, so it runs
//! anywhere (CI runs it that way). Exits 1 if the connection fails or
//! closes with an error code.

use std::collections::VecDeque;
use std::time::Duration;

use wsreactor::{ConnId, Control, Ctx, Handler, Message, Reactor, Remote, Server, ServerConfig};

struct Client {
    /// Messages still to send, one per echo.
    to_send: VecDeque<Message<'static>>,
    /// Stops the loop once the connection is over (set before it runs).
    remote: Option<Remote>,
    /// What ended the session.
    outcome: Result<(), String>,
}

impl Client {
    fn stop(&self) {
        if let Some(remote) = &self.remote {
            remote.stop();
        }
    }

    /// Send the next message, or close once everything came back.
    fn next(&mut self, ctx: &mut Ctx<'_>) {
        let sent = match self.to_send.pop_front() {
            Some(msg) => ctx.send(msg),
            None => ctx.close(1000, "done"),
        };
        if let Err(e) = sent {
            self.outcome = Err(format!("send: {e}"));
        }
    }
}

impl Handler for Client {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        println!("connected ({})", ctx.id());
        self.next(ctx);
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        match msg {
            Message::Text(text) => println!("< {text}"),
            Message::Binary(bytes) => println!("< {} bytes: {bytes:02x?}", bytes.len()),
        }
        self.next(ctx);
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        println!("closed: {code} {reason}");
        if !matches!(code, 1000 | 1005) && self.outcome.is_ok() {
            self.outcome = Err(format!("closed with {code} {reason}"));
        }
        self.stop();
    }

    fn on_connect_failed(&mut self, _ctl: &mut Control<'_>, _id: ConnId, reason: &str) {
        self.outcome = Err(format!("cannot connect: {reason}"));
        self.stop();
    }
}

/// Echo every message (the server when no URL is given).
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        let _ = ctx.send(msg);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, server) = match std::env::args().nth(1) {
        Some(url) => (url, None),
        None => {
            let server = Server::bind("127.0.0.1:0", ServerConfig::default(), Echo)?;
            let url = format!("ws://{}/", server.local_addr());
            let stopper = server.stopper();
            let thread = std::thread::spawn(move || server.run());
            (url, Some((stopper, thread)))
        }
    };

    let config = ServerConfig {
        // A client waits this long at most for the connect and handshake.
        handshake_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let mut reactor = Reactor::new(
        config,
        Client {
            to_send: VecDeque::from([
                Message::Text("hello"),
                Message::Text("wörld"),
                Message::Binary(&[0xde, 0xad, 0xbe, 0xef]),
            ]),
            remote: None,
            outcome: Ok(()),
        },
    )?;
    reactor.handler_mut().remote = Some(reactor.remote());
    println!("connecting to {url}");
    reactor.connect(&url)?;
    let client = reactor.run()?;

    if let Some((stopper, thread)) = server {
        stopper.stop();
        thread.join().expect("server thread")?;
    }
    client.outcome.map_err(Into::into)
}
