//! An echo server: every text and binary message goes back unchanged.
//! Ctrl-C (or SIGTERM) closes every connection with 1001 and exits once the
//! close handshakes are done (a second Ctrl-C exits at once).
//!
//!     cargo run --example echo                 # ws://127.0.0.1:9001
//!     cargo run --example echo -- 127.0.0.1:0  # any free port
//!
//! Try it with `cargo run --example client -- ws://127.0.0.1:9001/`.

use wsreactor::{Ctx, Handler, Message, Server, ServerConfig};

/// One handler serves every connection of the loop.
struct Echo {
    served: u64,
}

impl Handler for Echo {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        println!("{} open", ctx.id());
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        self.served += 1;
        // `msg` borrows the read buffer: sending it back copies nothing.
        // A send fails only once the close handshake has started.
        let _ = ctx.send(msg);
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        let id = ctx.id();
        println!("{id} closed: {code} {reason}");
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let server = Server::bind(addr, ServerConfig::default(), Echo { served: 0 })?;
    // Opt-in (feature `signals`): without it, Ctrl-C ends the process with
    // no close frames.
    let _signals = server.shutdown_on_signals()?;
    println!("listening on ws://{}/", server.local_addr());
    let echo = server.run()?;
    println!("done: {} messages echoed", echo.served);
    Ok(())
}
