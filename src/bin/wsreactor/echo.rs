//! `wsreactor echo`: the echo server.

use std::ffi::OsString;

use wsreactor::{Ctx, Handler, Message, Server, ServerConfig};

const USAGE: &str = "\
wsreactor echo: echo every text and binary message back unchanged

USAGE:
    wsreactor echo [--addr ADDR]

OPTIONS:
    --addr ADDR    Address to listen on [default: 127.0.0.1:9001]
    -h, --help     Print this help
";

/// Echo every message back unchanged.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        // A send only fails once the close handshake started; nothing to do then.
        let _ = ctx.send(msg);
    }
}

pub fn run(args: Vec<OsString>) -> Result<(), String> {
    use lexopt::prelude::*;
    let mut addr = "127.0.0.1:9001".to_string();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("addr") => {
                addr = parser
                    .value()
                    .map_err(|e| e.to_string())?
                    .string()
                    .map_err(|e| e.to_string())?
            }
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(());
            }
            other => {
                return Err(format!(
                    "{} (see wsreactor echo --help)",
                    other.unexpected()
                ))
            }
        }
    }
    let server = Server::bind(addr.as_str(), ServerConfig::default(), Echo)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    log::info!("echo server listening on ws://{}", server.local_addr());
    server
        .run()
        .map_err(|e| format!("event loop failed: {e}"))?;
    Ok(())
}
