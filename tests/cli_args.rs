//! The binary's arguments: `--version`, sizes with suffixes, and bad values
//! refused at once with one line naming the option.

mod client_support;
mod common;

use std::process::Command;

use client_support::EchoProcess;
use common::{close_payload, WsClient, OP_BINARY};

fn wsreactor(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wsreactor"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run wsreactor");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version() {
    let want = format!("wsreactor {}\n", env!("CARGO_PKG_VERSION"));
    for flag in ["--version", "-V", "version"] {
        assert_eq!(wsreactor(&[flag]), (Some(0), want.clone(), String::new()));
    }
    let (_, help, _) = wsreactor(&["--help"]);
    assert!(help.contains("--version"), "{help}");
}

#[test]
fn bad_echo_values_name_their_option() {
    let cases: [(&[&str], &str); 17] = [
        (
            &["--max-frame", "0"],
            "--max-frame: '0' is out of range (1 to ",
        ),
        (
            &["--max-frame", "16MB"],
            "--max-frame: '16MB' is not a size (bytes, or with K, M, G: 16M = 16MiB = 16777216)",
        ),
        (&["--max-frame", "-5"], "--max-frame: '-5' is not a size"),
        (
            &["--max-message", "99999999999G"],
            "--max-message: '99999999999G' is not a size",
        ),
        (
            &["--max-fragments", "0"],
            "--max-fragments: '0' is out of range (1 to 4294967295)",
        ),
        (
            &["--max-connections", "1k"],
            "--max-connections: '1k' is not a whole number",
        ),
        (
            &["--max-headers", "300"],
            "--max-headers: '300' is out of range (5 to 256)",
        ),
        (
            &["--max-header-bytes", "100"],
            "--max-header-bytes: '100' is out of range (256 to 1048576)",
        ),
        (
            &["--max-pending-output", "0"],
            "--max-pending-output: '0' is out of range (1 to ",
        ),
        (
            &["--close-timeout", "-1"],
            "--close-timeout: '-1' is out of range (0 to 31536000 seconds)",
        ),
        (
            &["--ping-interval", "often"],
            "--ping-interval: 'often' is not a number of seconds",
        ),
        (&["--auth-token", ""], "--auth-token: the value is empty"),
        (
            &["--threads", "0"],
            "--threads: '0' is out of range (1 to 1024)",
        ),
        (
            &["--threads", "two"],
            "--threads: 'two' is not a whole number",
        ),
        (
            &["--accept", "magic"],
            "--accept: 'magic' is not reuseport or handoff",
        ),
        (&["--max-frame"], "--max-frame: missing argument"),
        (
            &["--frobnicate"],
            "invalid option '--frobnicate' (see wsreactor echo --help)",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["echo", "--addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let (code, _, stderr) = wsreactor(&all);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("wsreactor: {want}")),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn sizes_take_suffixes() {
    let (_, help, _) = wsreactor(&["echo", "--help"]);
    assert!(help.contains("16M = 16MiB = 16777216"), "{help}");
    let server = EchoProcess::spawn(&["--max-frame", "1KiB", "--max-message", "2k"]);
    let mut c = WsClient::connect(server.addr);
    c.send(OP_BINARY, &[7; 1024]);
    assert_eq!(c.recv().payload.len(), 1024);
    c.send(OP_BINARY, &[7; 1025]);
    let close = c.recv();
    assert_eq!(close.payload[..2], close_payload(1009, b"")[..2]);
}
