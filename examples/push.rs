//! A periodic push: a timer set before the loop runs, then re-armed from
//! its own callback, publishes the time to every subscriber once a second.
//! Clients subscribe by sending the text "subscribe".
//!
//!     cargo run --example push            # ws://127.0.0.1:9003

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wsreactor::{Control, Ctx, Handler, Message, Reactor, ServerConfig};

const TICK: u64 = 1;
const TOPIC: &str = "clock";

struct Push;

impl Handler for Push {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        if msg == Message::Text("subscribe") {
            let _ = ctx.subscribe(TOPIC);
        }
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) {
        if token == TICK {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            ctl.publish(TOPIC, Message::Text(&format!("{{\"now_ms\":{ms}}}")));
            ctl.set_timer(Duration::from_secs(1), TICK);
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9003".into());
    let mut reactor = Reactor::new(ServerConfig::default(), Push)?;
    let local = reactor.listen(addr.as_str())?;
    // The first tick, armed before the loop starts.
    reactor.control().set_timer(Duration::from_secs(1), TICK);
    println!("clock push on ws://{local}/ (send \"subscribe\")");
    reactor.run()?;
    Ok(())
}
