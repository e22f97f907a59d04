//! A chat room: every connection joins one topic, and every message is
//! published to all members but its sender. The frame is encoded once and
//! shared by every member's queue.
//!
//!     cargo run --example chat            # ws://127.0.0.1:9002
//!
//! Try it with two terminals of `cargo run -- client ws://127.0.0.1:9002/`.

use wsreactor::{Ctx, Handler, Message, Server, ServerConfig};

const ROOM: &str = "lobby";

struct Chat;

impl Handler for Chat {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        // Fails only for a connection that is not open; this one is.
        let _ = ctx.subscribe(ROOM);
        let members = ctx.control().subscribers(ROOM);
        let _ = ctx.send_text(&format!("welcome: {members} in the room"));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        ctx.publish_others(ROOM, msg);
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, _code: u16, _reason: &str) {
        // Already out of the room; tell the others.
        let left = format!("connection {} left", ctx.id().index());
        ctx.control().publish(ROOM, Message::Text(&left));
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9002".into());
    let server = Server::bind(addr.as_str(), ServerConfig::default(), Chat)?;
    println!("chat room on ws://{}/", server.local_addr());
    server.run()?;
    Ok(())
}
