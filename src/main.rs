//! `wsreactor`: the command-line front end.

use std::process::ExitCode;

use wsreactor::{Ctx, Handler, Message, Server, ServerConfig};

const USAGE: &str = "\
wsreactor: an RFC 6455 WebSocket server on a single-threaded mio reactor

USAGE:
    wsreactor echo [--addr ADDR]

COMMANDS:
    echo    Echo every text and binary message back unchanged.

OPTIONS:
    --addr ADDR    Address to listen on [default: 127.0.0.1:9001]
    -h, --help     Print this help

Logging goes to stderr through env_logger; set RUST_LOG (e.g. RUST_LOG=debug).
";

/// Echo every message back unchanged.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        // A send only fails once the close handshake started; nothing to do then.
        let _ = ctx.send(msg);
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("wsreactor: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let mut it = args.iter();
    let cmd = match it.next().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return Ok(());
        }
        Some(cmd) => cmd,
    };
    let mut addr = "127.0.0.1:9001".to_string();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--addr" => addr = it.next().ok_or("--addr needs a value")?.clone(),
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown option '{other}' (see --help)")),
        }
    }
    match cmd {
        "echo" => {
            let server = Server::bind(addr.as_str(), ServerConfig::default(), Echo)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            log::info!("echo server listening on ws://{}", server.local_addr());
            server
                .run()
                .map_err(|e| format!("event loop failed: {e}"))?;
            Ok(())
        }
        other => Err(format!("unknown command '{other}' (see --help)")),
    }
}
