//! Loopback tests of keeping a client connected: the [`Reconnector`] brings
//! the connection back after the server is killed and restarted on the same
//! port, within the backoff bound; the reactor's heartbeat fails a
//! connection whose pong is overdue (and the reconnector reconnects it), and
//! leaves a connection that answers alone.

mod client_support;

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use client_support::{wait_for, EchoServer, Seen, Silent, SilentServer};
use wsreactor::client::{Jitter, ReconnectPolicy, Reconnector};
use wsreactor::{ConnId, Control, Ctx, Handler, Message, Reactor, Remote, ServerConfig};

const RECONNECT: u64 = 7;

/// What the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Open,
    Echo(String),
    Closed(u16, String),
    Failed,
    Pong,
}

/// Sends "hello N" on every open and reports everything.
struct App {
    link: Reconnector,
    opens: usize,
    events: Sender<(Instant, Ev)>,
}

impl App {
    fn report(&self, ev: Ev) {
        let _ = self.events.send((Instant::now(), ev));
    }
}

impl Handler for App {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        if self.link.on_open(ctx.id()) {
            self.opens += 1;
            self.report(Ev::Open);
            ctx.send_text(&format!("hello {}", self.opens)).unwrap();
        }
    }

    fn on_message(&mut self, _ctx: &mut Ctx<'_>, msg: Message<'_>) {
        if let Message::Text(t) = msg {
            self.report(Ev::Echo(t.to_string()));
        }
    }

    fn on_pong(&mut self, _ctx: &mut Ctx<'_>, _payload: &[u8]) {
        self.report(Ev::Pong);
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        let id = ctx.id();
        if self.link.on_close(ctx.control(), id) {
            self.report(Ev::Closed(code, reason.to_string()));
        }
    }

    fn on_connect_failed(&mut self, ctl: &mut Control<'_>, id: ConnId, _reason: &str) {
        if self.link.on_connect_failed(ctl, id) {
            self.report(Ev::Failed);
        }
    }

    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        self.link.on_wake(ctl);
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) {
        self.link.on_timer(ctl, token);
    }
}

struct Client {
    remote: Remote,
    events: Receiver<(Instant, Ev)>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    fn start(url: String, policy: ReconnectPolicy, config: ServerConfig) -> Self {
        let (tx, events) = mpsc::channel();
        let (rtx, rrx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let app = App {
                link: Reconnector::new(url, policy, RECONNECT),
                opens: 0,
                events: tx,
            };
            let mut reactor = Reactor::new(config, app).unwrap();
            let remote = reactor.remote();
            reactor.handler_mut().link.start(remote.clone());
            rtx.send(remote).unwrap();
            reactor.run().unwrap();
        });
        Self {
            remote: rrx.recv().unwrap(),
            events,
            thread: Some(thread),
        }
    }

    fn wait(&self, timeout: Duration, what: &str, pred: impl FnMut(&Ev) -> bool) -> Instant {
        wait_for(&self.events, timeout, what, pred).0
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.remote.stop();
            let _ = t.join();
        }
    }
}

fn no_heartbeat() -> ServerConfig {
    ServerConfig {
        ping_interval: None,
        ..ServerConfig::default()
    }
}

/// Small delays so the test is quick; equal jitter as by default.
fn fast_policy() -> ReconnectPolicy {
    ReconnectPolicy {
        initial_delay: Duration::from_millis(40),
        factor: 2.0,
        max_delay: Duration::from_millis(160),
        jitter: Jitter::Equal,
        reset_after: Duration::from_secs(10),
    }
}

/// Slack for scheduling and a loopback connect + handshake.
const SLACK: Duration = Duration::from_millis(300);

#[test]
fn reconnects_after_server_restart_within_the_backoff_bound() {
    let server = EchoServer::start("127.0.0.1:0");
    let addr = server.addr;
    let policy = fast_policy();
    let client = Client::start(format!("ws://{addr}/"), policy.clone(), no_heartbeat());

    client.wait(Duration::from_secs(2), "first open", |e| *e == Ev::Open);
    client.wait(Duration::from_secs(2), "first echo", |e| {
        *e == Ev::Echo("hello 1".into())
    });
    server.expect(&Seen::Text("hello 1".into()), Duration::from_secs(1));

    // Kill the server: the client sees the transport end (1006).
    server.kill();
    client.wait(Duration::from_secs(2), "close after the kill", |e| {
        matches!(e, Ev::Closed(1006, _))
    });

    // While the port is closed, attempts fail; the gaps between them follow
    // the backoff: each within [base/2, base] of its attempt (equal jitter),
    // never above the cap.
    let mut failures = Vec::new();
    while failures.len() < 4 {
        failures.push(client.wait(Duration::from_secs(2), "failed attempt", |e| {
            *e == Ev::Failed
        }));
    }
    for (i, pair) in failures.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        // Attempt i+1 after failure i+1 waits base(i+1) with jitter.
        let base = (policy.initial_delay * 2u32.pow(i as u32 + 1)).min(policy.max_delay);
        assert!(
            gap >= base / 2 - Duration::from_millis(5) && gap <= base + SLACK,
            "gap {i}: {gap:?} for base {base:?}"
        );
    }

    // Restart on the same port: the client is back within the largest delay.
    let server = EchoServer::start(&addr.to_string());
    let restarted = Instant::now();
    let back = client.wait(policy.max_delay + SLACK + SLACK, "reopen", |e| {
        *e == Ev::Open
    });
    let took = back.saturating_duration_since(restarted);
    assert!(
        took <= policy.max_delay + SLACK,
        "back after {took:?}, bound {:?}",
        policy.max_delay
    );
    client.wait(Duration::from_secs(2), "second echo", |e| {
        *e == Ev::Echo("hello 2".into())
    });
    server.expect(&Seen::Text("hello 2".into()), Duration::from_secs(1));
}

#[test]
fn overdue_pong_fails_the_connection_and_the_client_reconnects() {
    let silent = SilentServer::start();
    let interval = Duration::from_millis(100);
    let pong_timeout = Duration::from_millis(200);
    let config = ServerConfig {
        ping_interval: Some(interval),
        pong_timeout,
        ..ServerConfig::default()
    };
    let client = Client::start(format!("ws://{}/", silent.addr), fast_policy(), config);

    let opened = client.wait(Duration::from_secs(2), "open", |e| *e == Ev::Open);
    // The ping goes out after the interval and is never answered.
    let (pinged, _) = wait_for(&silent.seen, Duration::from_secs(2), "ping", |e| {
        *e == Silent::Frame(0, 0x9)
    });
    let since_open = pinged.saturating_duration_since(opened);
    assert!(
        since_open + Duration::from_millis(20) >= interval && since_open <= interval + SLACK,
        "ping {since_open:?} after open"
    );
    let failed = client.wait(Duration::from_secs(2), "pong timeout", |e| {
        matches!(e, Ev::Closed(1001, _))
    });
    let waited = failed.saturating_duration_since(pinged);
    assert!(
        waited + Duration::from_millis(20) >= pong_timeout && waited <= pong_timeout + SLACK,
        "failed {waited:?} after the ping"
    );
    // The reconnector brings up a new connection (at most 40 ms later).
    wait_for(
        &silent.seen,
        Duration::from_secs(2),
        "second connection",
        |e| *e == Silent::Upgraded(1),
    );
    client.wait(Duration::from_secs(2), "reopen", |e| *e == Ev::Open);
}

#[test]
fn answered_pings_keep_the_connection() {
    let server = EchoServer::start("127.0.0.1:0");
    let config = ServerConfig {
        ping_interval: Some(Duration::from_millis(30)),
        pong_timeout: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let client = Client::start(format!("ws://{}/", server.addr), fast_policy(), config);
    client.wait(Duration::from_secs(2), "open", |e| *e == Ev::Open);
    // About 15 ping/pong rounds: nothing may close.
    std::thread::sleep(Duration::from_millis(500));
    let mut pongs = 0;
    for (_, ev) in client.events.try_iter() {
        match ev {
            Ev::Pong => pongs += 1,
            Ev::Echo(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        pongs >= 5,
        "only {pongs} pongs in 500 ms at a 30 ms interval"
    );
}
