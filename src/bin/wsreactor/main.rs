//! `wsreactor`: the command-line front end. Each subcommand lives in its
//! own module.

use std::process::ExitCode;

mod args;
mod autobahn_client;
#[cfg(feature = "loadgen")]
mod bench;
mod client;
mod deflate;
mod echo;
mod tls;

const USAGE: &str = "\
wsreactor: an RFC 6455 WebSocket server and client on a single-threaded mio reactor

USAGE:
    wsreactor <COMMAND> [OPTIONS]

COMMANDS:
    echo      Echo service: every text and binary message back unchanged,
              with every server setting as an option (see echo --help)
    serve     The real-time rooms gateway: rooms, history, JWT, JSON or
              Protobuf, a browser client at / (built with --features gateway)
    broadcast Every message any client sends goes to every open connection,
              the sender included (the same options as echo)
    client    Interactive client: stdin lines -> messages, messages -> stdout
    autobahn-client
              Run the Autobahn|Testsuite client cases (autobahn/run.sh client)
    bench     Closed-loop echo load generator (built with --features loadgen)
    help      Print this help (also: wsreactor <COMMAND> --help)
    version   Print the version (also: -V, --version)

Logging goes to stderr through env_logger; set RUST_LOG (e.g. RUST_LOG=debug).
";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args_os().skip(1);
    let cmd = args.next();
    let rest: Vec<std::ffi::OsString> = args.collect();
    let result = match cmd.as_ref().and_then(|c| c.to_str()) {
        None | Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some("-V" | "--version" | "version") => {
            println!("wsreactor {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("echo") => echo::run(rest),
        Some("serve") => echo::run_service(rest, echo::Service::Gateway),
        Some("broadcast") => echo::run_service(rest, echo::Service::Broadcast),
        Some("client") => client::run(rest),
        Some("autobahn-client") => autobahn_client::run(rest),
        #[cfg(feature = "loadgen")]
        Some("bench") => bench::run(rest),
        #[cfg(not(feature = "loadgen"))]
        Some("bench") => Err("bench is built only with the loadgen feature: cargo build --release --features loadgen".into()),
        Some(other) => Err(format!("unknown command '{other}' (see --help)")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("wsreactor: {msg}");
            ExitCode::FAILURE
        }
    }
}
