//! What the peer binaries share: the `--addr` option.

use std::net::SocketAddr;

/// Parse `[--addr ADDR]` from the command line (default `default`); exits
/// with a usage line on `--help` or an unknown option.
pub fn addr_arg(name: &str, default: &str) -> SocketAddr {
    let mut args = std::env::args().skip(1);
    let mut addr = default.to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => match args.next() {
                Some(v) => addr = v,
                None => usage_exit(name, default, 2),
            },
            "-h" | "--help" => usage_exit(name, default, 0),
            other => {
                eprintln!("{name}: unknown option '{other}'");
                usage_exit(name, default, 2)
            }
        }
    }
    match addr.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("{name}: --addr must be IP:PORT, got '{addr}'");
            std::process::exit(2)
        }
    }
}

fn usage_exit(name: &str, default: &str, code: i32) -> ! {
    println!("usage: {name} [--addr ADDR]   (default {default})");
    std::process::exit(code)
}
