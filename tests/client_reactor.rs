//! Client connections on the reactor: a client and an echo server in one
//! loop, and a client against a server in another thread.

use std::time::Duration;

use wsreactor::{ConnId, Control, Ctx, Handler, Message, Reactor, Remote, ServerConfig};

/// Echoes on server connections; on client connections sends `count`
/// messages one after the other (closed loop), then closes with 1000.
#[derive(Default)]
struct Both {
    client: Option<ConnId>,
    count: usize,
    received: Vec<String>,
    closes: Vec<(bool, u16)>,
    failed: Vec<String>,
    /// Stops the loop once both ends saw the close.
    remote: Option<Remote>,
}

impl Handler for Both {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        if Some(ctx.id()) == self.client {
            ctx.send_text("msg 0").unwrap();
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        if Some(ctx.id()) != self.client {
            ctx.send(msg).unwrap();
            return;
        }
        let Message::Text(t) = msg else {
            panic!("binary echo")
        };
        self.received.push(t.to_string());
        if self.received.len() < self.count {
            ctx.send_text(&format!("msg {}", self.received.len()))
                .unwrap();
        } else {
            ctx.close(1000, "done").unwrap();
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, _reason: &str) {
        let id = ctx.id();
        self.closes.push((Some(id) == self.client, code));
        if self.closes.len() == 2 {
            if let Some(r) = &self.remote {
                r.stop();
            }
        }
    }

    fn on_connect_failed(&mut self, _ctl: &mut Control<'_>, _id: ConnId, reason: &str) {
        self.failed.push(reason.to_string());
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, _token: u64) {
        ctl.stop();
    }
}

#[test]
fn client_and_server_in_one_loop() {
    let mut reactor = Reactor::new(
        ServerConfig::default(),
        Both {
            count: 50,
            ..Both::default()
        },
    )
    .unwrap();
    let addr = reactor.listen("127.0.0.1:0").unwrap();
    let id = reactor.connect(&format!("ws://{addr}/echo")).unwrap();
    reactor.handler_mut().client = Some(id);
    reactor.handler_mut().remote = Some(reactor.remote());
    let h = reactor.run().unwrap();
    let expected: Vec<String> = (0..50).map(|i| format!("msg {i}")).collect();
    assert_eq!(h.received, expected);
    // Both ends saw the close handshake with the client's code.
    let mut closes = h.closes.clone();
    closes.sort();
    assert_eq!(closes, vec![(false, 1000), (true, 1000)]);
    assert!(h.failed.is_empty());
}

#[test]
fn connect_to_a_closed_port_reports_failure() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut reactor = Reactor::new(ServerConfig::default(), Both::default()).unwrap();
    reactor.connect(&format!("ws://127.0.0.1:{port}/")).unwrap();
    let remote = reactor.remote();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        remote.stop();
    });
    let h = reactor.run().unwrap();
    t.join().unwrap();
    assert_eq!(h.failed.len(), 1, "{:?}", h.failed);
    assert!(h.failed[0].contains("connect"), "{:?}", h.failed);
    assert!(h.closes.is_empty());
}

#[test]
fn bad_urls_are_refused() {
    let mut reactor = Reactor::new(ServerConfig::default(), Both::default()).unwrap();
    let mut urls = vec!["http://127.0.0.1/", "ws://127.0.0.1:notaport/"];
    // Without TLS built in, wss:// is refused before anything is tried.
    if cfg!(not(feature = "tls")) {
        urls.push("wss://127.0.0.1/");
    }
    for url in urls {
        let e = reactor.connect(url).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{url}");
    }
}

/// `Both`, plus a socket the test made itself, handed to the reactor with
/// `Control::connect_stream` when the loop first wakes.
struct Adopt {
    both: Both,
    stream: Option<std::net::TcpStream>,
}

impl Handler for Adopt {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        self.both.on_open(ctx)
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        self.both.on_message(ctx, msg)
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        self.both.on_close(ctx, code, reason)
    }
    fn on_connect_failed(&mut self, ctl: &mut Control<'_>, id: ConnId, reason: &str) {
        self.both.on_connect_failed(ctl, id, reason);
        stop(&self.both.remote);
    }
    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        if let Some(s) = self.stream.take() {
            let id = ctl.connect_stream(s, "localhost", "/").unwrap();
            self.both.client = Some(id);
            ctl.set_timer(Duration::from_secs(5), 0);
        }
    }
    fn on_timer(&mut self, ctl: &mut Control<'_>, _token: u64) {
        ctl.stop();
    }
}

fn stop(remote: &Option<Remote>) {
    if let Some(r) = remote {
        r.stop();
    }
}

/// Runs `Adopt` over the stream `connect` makes (given the reactor's own
/// listening address with `listen`).
fn adopt(
    listen: bool,
    connect: impl FnOnce(Option<std::net::SocketAddr>) -> std::net::TcpStream,
) -> Both {
    let mut reactor = Reactor::new(
        ServerConfig::default(),
        Adopt {
            both: Both {
                count: 20,
                ..Both::default()
            },
            stream: None,
        },
    )
    .unwrap();
    let addr = listen.then(|| reactor.listen("127.0.0.1:0").unwrap());
    // On loopback a blocking connect completes in the kernel's backlog,
    // before the loop accepts.
    reactor.handler_mut().stream = Some(connect(addr));
    reactor.handler_mut().both.remote = Some(reactor.remote());
    reactor.remote().wake();
    reactor.run().unwrap().both
}

#[test]
fn connect_stream_adopts_a_socket_made_by_the_caller() {
    let h = adopt(true, |addr| {
        std::net::TcpStream::connect(addr.unwrap()).unwrap()
    });
    let expected: Vec<String> = (0..20).map(|i| format!("msg {i}")).collect();
    assert_eq!(h.received, expected);
    assert!(h.failed.is_empty(), "{:?}", h.failed);
}

#[test]
fn connect_stream_to_a_peer_that_is_not_websocket_fails() {
    // The peer answers the upgrade with a plain HTTP response.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    });
    let h = adopt(false, |_| std::net::TcpStream::connect(addr).unwrap());
    assert_eq!(h.failed.len(), 1, "{:?}", h.failed);
    assert!(h.received.is_empty());
}
