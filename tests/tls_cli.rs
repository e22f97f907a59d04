//! The binary over TLS: `wsreactor echo --tls-cert/--tls-key` with
//! certificate reload on SIGHUP, `wsreactor client --ca` and
//! `wsreactor bench --ca` against it.
#![cfg(target_os = "linux")]

mod common;
mod process_support;
mod tls_support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use common::OP_TEXT;
use process_support::spawn_listening;
use tls_support::{temp_dir, Pki, TlsWs};

struct Echo {
    child: Child,
    addr: SocketAddr,
}

impl Echo {
    fn spawn(dir: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsreactor"));
        // Two reactors, connections dealt round robin: consecutive
        // connections alternate between them.
        cmd.args(["echo", "--addr", "127.0.0.1:0", "--threads", "2"])
            .args(["--accept", "handoff", "--tls-cert"])
            .arg(dir.join("cert.pem"))
            .arg("--tls-key")
            .arg(dir.join("key.pem"));
        let (child, addr) = spawn_listening(cmd, "wss");
        Self { child, addr }
    }

    fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -HUP failed");
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn echo_once(c: &mut TlsWs, text: &[u8]) {
    c.send(OP_TEXT, text);
    let f = c.recv();
    assert_eq!((f.opcode, f.payload.as_slice()), (OP_TEXT, text));
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let pki = Pki::new();
    let first = pki.leaf(&["localhost"], false);
    let second = pki.leaf(&["localhost"], false);
    let dir = temp_dir("reload");
    first.write(&dir);
    let server = Echo::spawn(&dir);
    let leaf_of = |c: &TlsWs| c.stream.conn.peer_certificates().unwrap()[0].clone();

    // One open connection on each reactor.
    let mut open = TlsWs::connect(server.addr, pki.client_config(), "localhost");
    let mut open2 = TlsWs::connect(server.addr, pki.client_config(), "localhost");
    for c in [&mut open, &mut open2] {
        assert_eq!(leaf_of(c), first.chain[0]);
        echo_once(c, b"before");
    }

    second.write(&dir);
    server.hup();
    // The reload happens in the loop after the signal: poll for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fresh = loop {
        let c = TlsWs::connect(server.addr, pki.client_config(), "localhost");
        if leaf_of(&c) == second.chain[0] {
            break c;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(20));
    };
    echo_once(&mut fresh, b"new certificate");
    // Every reactor serves the new one (the next connections alternate).
    for _ in 0..4 {
        let mut c = TlsWs::connect(server.addr, pki.client_config(), "localhost");
        assert_eq!(leaf_of(&c), second.chain[0]);
        echo_once(&mut c, b"new certificate, every reactor");
    }
    // The connections opened before the reload still work.
    echo_once(&mut open, b"after");
    echo_once(&mut open2, b"after");

    // A broken file on reload keeps the current certificate.
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    server.hup();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..2 {
        let mut c = TlsWs::connect(server.addr, pki.client_config(), "localhost");
        assert_eq!(leaf_of(&c), second.chain[0]);
        echo_once(&mut c, b"still serving");
    }
    echo_once(&mut open, b"still open");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_client_and_the_load_generator_speak_wss_with_a_private_ca() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"], false);
    let dir = temp_dir("cli");
    leaf.write(&dir);
    std::fs::write(dir.join("ca.pem"), &pki.root_pem).unwrap();
    let server = Echo::spawn(&dir);
    let url = format!("wss://localhost:{}/", server.addr.port());

    // wsreactor client: a line out, its echo back, EOF closes with 1000.
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsreactor"))
        .args(["client", "--ca"])
        .arg(dir.join("ca.pem"))
        .arg(&url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello tls\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello tls\n");

    // Without --ca the private CA is not trusted: a one-line error.
    let out = Command::new(env!("CARGO_BIN_EXE_wsreactor"))
        .args(["client", &url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");

    // wsreactor bench over wss:// (built with loadgen only).
    if cfg!(feature = "loadgen") {
        let out = Command::new(env!("CARGO_BIN_EXE_wsreactor"))
            .args([
                "bench",
                "--json",
                "-q",
                "--connections",
                "4",
                "--duration",
                "0.5",
            ])
            .args(["--warmup", "0.1", "--url", &url, "--ca"])
            .arg(dir.join("ca.pem"))
            .output()
            .unwrap();
        let json = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{json} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(json.contains("\"messages\":"), "{json}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_options_are_checked() {
    let out = Command::new(env!("CARGO_BIN_EXE_wsreactor"))
        .args([
            "echo",
            "--addr",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent.pem",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("go together"));
    let out = Command::new(env!("CARGO_BIN_EXE_wsreactor"))
        .args(["echo", "--addr", "127.0.0.1:0"])
        .args([
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            "/nonexistent.pem",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.pem"));
}
