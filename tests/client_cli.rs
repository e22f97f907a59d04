//! The interactive client binary end to end: `wsreactor client` against
//! in-test servers on loopback, driven through its stdin and stdout.

mod client_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use client_support::{wait_for, EchoProcess, EchoServer, Seen, Silent, SilentServer};

/// A running `wsreactor client`.
struct Cli {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Receiver<String>,
}

impl Cli {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsreactor"))
            .arg("client")
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("CLI_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsreactor client");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (etx, stderr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            let _ = stderr.read_to_string(&mut all);
            let _ = etx.send(all);
        });
        Self {
            child,
            stdin,
            lines,
            stderr: stderr_rx,
        }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn line(&mut self) -> String {
        match self.lines.recv_timeout(Duration::from_secs(3)) {
            Ok(line) => line,
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self
                    .stderr
                    .recv_timeout(Duration::from_secs(2))
                    .unwrap_or_default();
                panic!("no line on stdout within 3 s; stderr:\n{stderr}");
            }
        }
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Wait for the exit (killing the client after `timeout`); returns the
    /// status and everything it wrote to stderr.
    fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("wsreactor client did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Exit after EOF includes waiting for the server to end TCP (bounded by the
/// 5 s close timeout).
const EXIT_TIMEOUT: Duration = Duration::from_secs(8);

#[test]
fn lines_go_out_echoes_come_back_and_eof_closes_with_1000() {
    let server = EchoServer::start("127.0.0.1:0");
    let url = format!("ws://{}/", server.addr);
    let mut cli = Cli::spawn(&[&url]);
    cli.send_line("hello\n");
    assert_eq!(cli.line(), "hello");
    // \r\n endings are stripped too; UTF-8 goes through; empty lines are
    // empty messages.
    cli.send_line("wörld\r\n\nlast\n");
    assert_eq!(cli.line(), "wörld");
    assert_eq!(cli.line(), "");
    assert_eq!(cli.line(), "last");
    cli.close_stdin();
    let (status, stderr) = cli.wait(EXIT_TIMEOUT);
    assert!(status.success(), "{status:?}: {stderr}");
    server.expect(&Seen::Text("wörld".into()), Duration::from_secs(1));
    server.expect(&Seen::Close(1000), Duration::from_secs(1));
}

#[test]
fn binary_mode_sends_binary_and_prints_hex() {
    let server = EchoServer::start("127.0.0.1:0");
    let url = format!("ws://{}/x?y=1", server.addr);
    let mut cli = Cli::spawn(&["--binary", &url]);
    // Not UTF-8: fine in binary mode.
    cli.stdin.as_mut().unwrap().write_all(b"ab\xff\n").unwrap();
    assert_eq!(cli.line(), "6162ff");
    cli.close_stdin();
    let (status, stderr) = cli.wait(EXIT_TIMEOUT);
    assert!(status.success(), "{status:?}: {stderr}");
    server.expect(&Seen::Binary(b"ab\xff".to_vec()), Duration::from_secs(1));
}

#[test]
fn input_before_the_connection_opens_is_sent_in_order() {
    let server = EchoServer::start("127.0.0.1:0");
    let url = format!("ws://{}/", server.addr);
    let mut cli = Cli::spawn(&[&url]);
    // Everything, EOF included, may arrive before the handshake is done.
    cli.send_line("1\n2\n3\n");
    cli.close_stdin();
    assert_eq!([cli.line(), cli.line(), cli.line()], ["1", "2", "3"]);
    let (status, stderr) = cli.wait(EXIT_TIMEOUT);
    assert!(status.success(), "{status:?}: {stderr}");
}

#[test]
fn connection_refused_is_a_one_line_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cli = Cli::spawn(&[&format!("ws://127.0.0.1:{port}/")]);
    let (status, stderr) = cli.wait(Duration::from_secs(5));
    assert!(!status.success());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "wsreactor: cannot connect to ws://127.0.0.1:{port}/:"
        )),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_fail() {
    let cases: [&[&str]; 4] = [
        &["http://127.0.0.1/"],
        &["--reconnect", "ws://[::1/"],
        &[],
        &["--ping-interval", "x", "ws://a/"],
    ];
    for args in cases {
        let (status, stderr) = Cli::spawn(args).wait(Duration::from_secs(5));
        assert!(!status.success(), "{args:?}");
        assert!(stderr.starts_with("wsreactor: "), "{args:?}: {stderr}");
    }
}

/// Each bad value fails at once with one line naming its option.
#[test]
fn bad_values_name_their_option() {
    let cases: [(&[&str], &str); 10] = [
        (
            &["--header", "NoColon"],
            "--header: 'NoColon' is not 'NAME: VALUE'",
        ),
        (
            &["--header", "Bad Name: x"],
            "--header: 'Bad Name: x': a header name must be a token",
        ),
        (
            &["--header", "X: a\rHost: evil"],
            "--header: 'X: a\rHost: evil': a header value must not contain control characters",
        ),
        (
            &["--header", "Sec-WebSocket-Key: x"],
            "--header: 'Sec-WebSocket-Key: x': the handshake sets this header itself",
        ),
        (
            &["--protocol", "a b"],
            "--protocol: 'a b': a subprotocol must be a token",
        ),
        (&["--auth-token", ""], "--auth-token: the value is empty"),
        (
            &["--ping-interval", "-1"],
            "--ping-interval: '-1' is out of range",
        ),
        (
            &["--pong-timeout", "soon"],
            "--pong-timeout: 'soon' is not a number of seconds",
        ),
        (
            &["--backoff-initial", "0"],
            "--backoff-initial: must be more than 0",
        ),
        (
            &["--backoff-initial", "5", "--backoff-max", "1"],
            "--backoff-max: 1s is less than --backoff-initial (5s)",
        ),
    ];
    for (args, want) in cases {
        let mut all = args.to_vec();
        all.push("ws://127.0.0.1:9/");
        let (status, stderr) = Cli::spawn(&all).wait(Duration::from_secs(5));
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("wsreactor: {want}")),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}

/// `wsreactor echo --auth-token` is reachable with `--auth-token` or the
/// same `--header`, and not without; `--protocol` is offered and the
/// server's choice accepted.
#[test]
fn auth_token_header_and_protocol_reach_a_protected_server() {
    let server = EchoProcess::spawn(&["--auth-token", "s3cret", "--protocol", "chat"]);
    let url = format!("ws://{}/", server.addr);
    let (status, stderr) = Cli::spawn(&[&url]).wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot connect") && stderr.contains("401"),
        "{stderr}"
    );
    let (status, stderr) =
        Cli::spawn(&["--auth-token", "wrong", &url]).wait(Duration::from_secs(5));
    assert!(stderr.contains("401"), "{status:?}: {stderr}");

    let token_flags: [&[&str]; 2] = [
        &["--auth-token", "s3cret"],
        &["--header", "authorization:  Bearer s3cret "],
    ];
    for flags in token_flags {
        let mut args = flags.to_vec();
        args.extend([
            "--protocol",
            "other",
            "--protocol",
            "chat",
            "--header",
            "X-Trace: 1",
        ]);
        args.push(&url);
        let mut cli = Cli::spawn(&args);
        cli.send_line("through\n");
        assert_eq!(cli.line(), "through");
        cli.close_stdin();
        let (status, stderr) = cli.wait(EXIT_TIMEOUT);
        assert!(status.success(), "{flags:?}: {status:?}: {stderr}");
    }
}

/// With --reconnect, end of input while no connection is open (the server
/// is down) ends the program instead of waiting for a server forever.
#[test]
fn reconnect_exits_at_end_of_input_while_disconnected() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cli = Cli::spawn(&[
        "--reconnect",
        "--backoff-initial",
        "0.05",
        "--backoff-max",
        "0.2",
        &format!("ws://127.0.0.1:{port}/"),
    ]);
    std::thread::sleep(Duration::from_millis(300));
    cli.send_line("never sent\n");
    cli.close_stdin();
    let (status, stderr) = cli.wait(Duration::from_secs(3));
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("1 lines not sent"), "{stderr}");
}

#[test]
fn server_close_with_an_error_code_exits_1() {
    let server = EchoServer::start_with("127.0.0.1:0", Some(4000));
    let mut cli = Cli::spawn(&[&format!("ws://{}/", server.addr)]);
    cli.send_line("bye?\n");
    let (status, stderr) = cli.wait(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("connection closed: 4000"), "{stderr}");
}

#[test]
fn server_close_with_1000_exits_0() {
    let server = EchoServer::start_with("127.0.0.1:0", Some(1000));
    let mut cli = Cli::spawn(&[&format!("ws://{}/", server.addr)]);
    cli.send_line("bye?\n");
    let (status, stderr) = cli.wait(EXIT_TIMEOUT);
    assert!(status.success(), "{status:?}: {stderr}");
}

#[test]
fn reconnect_resumes_after_server_restart() {
    let server = EchoServer::start("127.0.0.1:0");
    let addr = server.addr;
    let mut cli = Cli::spawn(&[
        "--reconnect",
        "--backoff-initial",
        "0.02",
        "--backoff-max",
        "0.1",
        &format!("ws://{addr}/"),
    ]);
    cli.send_line("before\n");
    assert_eq!(cli.line(), "before");
    server.kill();
    // Typed while the server is down: sent once the client is back.
    std::thread::sleep(Duration::from_millis(200));
    cli.send_line("after\n");
    let server = EchoServer::start(&addr.to_string());
    assert_eq!(cli.line(), "after");
    server.expect(&Seen::Text("after".into()), Duration::from_secs(1));
    cli.close_stdin();
    let (status, stderr) = cli.wait(EXIT_TIMEOUT);
    assert!(status.success(), "{status:?}: {stderr}");
}

#[test]
fn missing_pongs_fail_the_session() {
    let silent = SilentServer::start();
    let cli = Cli::spawn(&[
        "--ping-interval",
        "0.1",
        "--pong-timeout",
        "0.2",
        &format!("ws://{}/", silent.addr),
    ]);
    wait_for(&silent.seen, Duration::from_secs(2), "ping", |e| {
        *e == Silent::Frame(0, 0x9)
    });
    let (status, stderr) = cli.wait(Duration::from_secs(3));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("connection closed: 1001"), "{stderr}");
}

#[test]
fn ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let server = EchoServer::start("[::1]:0");
    let mut cli = Cli::spawn(&[&format!("ws://{}/v6", server.addr)]);
    cli.send_line("over v6\n");
    assert_eq!(cli.line(), "over v6");
    cli.close_stdin();
    let (status, stderr) = cli.wait(EXIT_TIMEOUT);
    assert!(status.success(), "{status:?}: {stderr}");
}
