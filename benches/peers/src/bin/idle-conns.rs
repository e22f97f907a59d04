//! `idle-conns --addr A --count N [--sources K] [--raw] [--hold SECS]
//! [--tls-ca FILE]`: open N
//! connections to a server, complete the WebSocket opening handshake on each
//! (unless `--raw`), print `ready N` on stdout, and hold them idle for SECS
//! seconds (default 60), or until killed. Used to measure what an idle
//! connection costs a server: RSS with the connections held minus RSS before,
//! divided by N.
//!
//! The connections come from K source addresses, 127.0.0.2 .. 127.0.0.(K+1)
//! (default 10), so that N is far from the ephemeral port range of any one
//! address even with sockets of earlier runs still in TIME_WAIT.
//!
//! `--tls-ca FILE`: over TLS (tokio-rustls, ring), verifying the server's
//! certificate for `localhost` against the PEM CA in FILE.
//!
//! A tokio current_thread runtime, one connection after the other: the
//! server's accept path is exercised the same way for every server, and the
//! order does not matter for memory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

struct Options {
    addr: SocketAddr,
    count: usize,
    sources: u8,
    raw: bool,
    hold: Duration,
    tls: Option<TlsConnector>,
}

/// A held connection.
#[allow(dead_code)] // held only to be kept open
enum Held {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

fn connector(ca: &str) -> TlsConnector {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read --tls-ca") {
        roots.add(cert.expect("a PEM certificate")).expect("a CA certificate");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

fn usage_exit(code: i32) -> ! {
    println!(
        "usage: idle-conns --addr IP:PORT --count N [--sources K (1-250, default 10)] [--raw] [--hold SECS (default 60)]"
    );
    std::process::exit(code)
}

fn parse() -> Options {
    let mut o = Options {
        addr: "127.0.0.1:9001".parse().expect("default address"),
        count: 10_000,
        sources: 10,
        raw: false,
        hold: Duration::from_secs(60),
        tls: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage_exit(2));
        match a.as_str() {
            "--addr" => o.addr = value().parse().unwrap_or_else(|_| usage_exit(2)),
            "--count" => o.count = value().parse().unwrap_or_else(|_| usage_exit(2)),
            "--sources" => o.sources = value().parse().unwrap_or_else(|_| usage_exit(2)),
            "--hold" => {
                o.hold = Duration::from_secs_f64(value().parse().unwrap_or_else(|_| usage_exit(2)))
            }
            "--raw" => o.raw = true,
            "--tls-ca" => o.tls = Some(connector(&value())),
            "-h" | "--help" => usage_exit(0),
            other => {
                eprintln!("idle-conns: unknown option '{other}'");
                usage_exit(2)
            }
        }
    }
    if o.sources == 0 || o.sources > 250 {
        usage_exit(2);
    }
    o
}

fn main() {
    let o = parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(run(o));
    std::process::exit(code)
}

async fn run(o: Options) -> i32 {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        o.addr
    );
    let start = Instant::now();
    let mut held: Vec<Held> = Vec::with_capacity(o.count);
    for i in 0..o.count {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % o.sources as usize) as u8));
        match tokio::time::timeout(Duration::from_secs(10), open(&o, source, &request)).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(e)) => {
                eprintln!("idle-conns: connection {i} from {source}: {e}");
                return 1;
            }
            Err(_) => {
                eprintln!("idle-conns: connection {i} from {source}: timed out");
                return 1;
            }
        }
    }
    println!("ready {}", held.len());
    eprintln!(
        "idle-conns: {} connections open in {:.2} s; holding them for {:?}",
        held.len(),
        start.elapsed().as_secs_f64(),
        o.hold
    );
    tokio::time::sleep(o.hold).await;
    0
}

async fn open(o: &Options, source: IpAddr, request: &str) -> std::io::Result<Held> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let mut stream = socket.connect(o.addr).await?;
    stream.set_nodelay(true)?;
    if o.raw {
        return Ok(Held::Plain(stream));
    }
    if let Some(tls) = &o.tls {
        let name = ServerName::try_from("localhost").expect("a server name");
        let mut stream = tls.connect(name, stream).await?;
        upgrade(&mut stream, request).await?;
        return Ok(Held::Tls(Box::new(stream)));
    }
    upgrade(&mut stream, request).await?;
    Ok(Held::Plain(stream))
}

async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &str,
) -> std::io::Result<()> {
    stream.write_all(request.as_bytes()).await?;
    // Read the response header block (nothing follows it: the server sends
    // no frames on an idle connection).
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("server closed during the handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 8192 {
            return Err(std::io::Error::other("response header block too long"));
        }
    }
    if !buf.starts_with(b"HTTP/1.1 101") {
        let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(std::io::Error::other(format!(
            "not upgraded: {}",
            String::from_utf8_lossy(line)
        )));
    }
    Ok(())
}
