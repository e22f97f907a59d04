//! TLS for the reactor (feature `tls`): rustls driven by hand over a
//! non-blocking socket, and the configurations it needs.
//!
//! The reactor calls a `TlsStream` through its transport like a socket:
//! `read` decrypts into the loop's shared buffer, `write` hands plaintext to
//! rustls and pushes the records out. The crypto provider is rustls's `ring`
//! one (see the README for why).
//!
//! A server is given a [`TlsAcceptor`] in
//! [`ServerConfig::tls`](crate::ServerConfig::tls); its configuration can be
//! swapped at any time (certificate reload): connections already open keep
//! the one they started with. Clients use
//! [`ServerConfig::tls_client`](crate::ServerConfig::tls_client) for
//! `wss://` URLs, or Mozilla's roots (webpki-roots) when it is `None`.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig};
use rustls::{ServerConnection, SupportedProtocolVersion};

/// The protocol versions offered and accepted: TLS 1.3 and 1.2.
const VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// WebSocket runs over HTTP/1.1 (RFC 6455); browsers offer it in ALPN.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Server-side TLS 1.2 sessions remembered for resumption (TLS 1.3 uses
/// stateless tickets, which cost the server no memory per session).
const SESSION_CACHE: usize = 4096;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(e: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Every certificate in a PEM file, in order (leaf first for a chain).
///
/// # Errors
/// The file cannot be read, is not PEM, or holds no certificate.
pub fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
///
/// # Errors
/// The file cannot be read or holds no key.
pub fn load_private_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// A server configuration: TLS 1.3 and 1.2 with the `ring` provider, ALPN
/// `http/1.1`, resumption by TLS 1.3 tickets and a TLS 1.2 session cache.
/// Pass `previous` on a reload so sessions resumed across it still work.
///
/// # Errors
/// The key does not match the certificate or is of an unsupported type.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    previous: Option<&ServerConfig>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    match previous {
        Some(prev) => {
            config.session_storage = prev.session_storage.clone();
            config.ticketer = prev.ticketer.clone();
        }
        None => {
            config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
            config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        }
    }
    Ok(config)
}

/// [`server_config`] from a PEM certificate chain and a PEM key file.
///
/// # Errors
/// A file cannot be read or parsed, or the key does not fit.
pub fn server_config_from_pem(
    cert: &Path,
    key: &Path,
    previous: Option<&ServerConfig>,
) -> io::Result<Arc<ServerConfig>> {
    let certs = load_certs(cert)?;
    let key = load_private_key(key)?;
    server_config(certs, key, previous)
        .map(Arc::new)
        .map_err(|e| invalid(format!("{}: {e}", cert.display())))
}

/// A client configuration trusting Mozilla's roots (webpki-roots) plus
/// `extra` (e.g. a private CA), with ALPN `http/1.1`. Certificates are
/// always verified.
///
/// # Errors
/// An `extra` certificate is not a valid trust anchor.
pub fn client_config(extra: &[CertificateDer<'_>]) -> Result<ClientConfig, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra {
        roots.add(cert.clone())?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(config)
}

/// [`client_config`] trusting also every certificate of a PEM file.
///
/// # Errors
/// The file cannot be read, or a certificate in it is not a valid anchor.
pub fn client_config_with_ca(ca: &Path) -> io::Result<Arc<ClientConfig>> {
    let extra = load_certs(ca)?;
    client_config(&extra)
        .map(Arc::new)
        .map_err(|e| invalid(format!("{}: {e}", ca.display())))
}

/// The client configuration used when none is set: Mozilla's roots.
pub(crate) fn default_client_config() -> Arc<ClientConfig> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            // Mozilla's roots are valid anchors, and the provider supports
            // the versions: this cannot fail.
            Arc::new(client_config(&[]).expect("client config from webpki-roots"))
        })
        .clone()
}

/// A server's TLS configuration, shared by every clone of the handle and
/// swappable while the reactor runs (certificate reload): each accepted
/// connection takes the configuration current at its accept.
#[derive(Clone)]
pub struct TlsAcceptor {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl TlsAcceptor {
    /// An acceptor for `config`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            current: Arc::new(RwLock::new(config)),
        }
    }

    /// The configuration new connections get.
    pub fn config(&self) -> Arc<ServerConfig> {
        // A panic while holding the lock cannot leave a torn `Arc`.
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Use `config` for connections accepted from now on; open ones keep
    /// theirs.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

/// One TLS connection over a non-blocking socket.
#[derive(Debug)]
pub(crate) struct TlsStream {
    tcp: TcpStream,
    tls: Connection,
    /// The socket said end of file: nothing more to read from it.
    eof: bool,
}

impl TlsStream {
    pub(crate) fn server(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let tls = ServerConnection::new(config).map_err(invalid)?;
        Ok(Self {
            tcp,
            tls: tls.into(),
            eof: false,
        })
    }

    pub(crate) fn client(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<Self> {
        let tls = ClientConnection::new(config, name).map_err(invalid)?;
        Ok(Self {
            tcp,
            tls: tls.into(),
            eof: false,
        })
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub(crate) fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// Records to send, or a handshake still under way: plaintext written
    /// meanwhile (a 503 to a refused client, say) waits in rustls until it
    /// completes, so our side must not be shut down yet.
    pub(crate) fn holds_output(&self) -> bool {
        self.tls.wants_write() || self.tls.is_handshaking()
    }

    /// Write pending records until none is left or the socket would block.
    pub(crate) fn push(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Take plaintext into rustls (pushing records first, to make room,
    /// and after). Nothing taken is `WouldBlock`: rustls's buffer limit is
    /// reached, which only happens once the socket refused bytes.
    fn write_with(
        &mut self,
        write: impl FnOnce(&mut rustls::Writer<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        self.push()?;
        let n = write(&mut self.tls.writer())?;
        self.push()?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.write_with(|w| w.write(buf))
    }

    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        self.write_with(|w| w.write_vectored(bufs))
    }

    /// Decrypt into `buf`. Fills it unless the socket would block (or
    /// ended) with all decrypted plaintext taken, so a short read means
    /// drained, as for plain TCP. `Ok(0)`: the peer's end (with or without
    /// `close_notify`: the WebSocket close handshake says whether the
    /// stream was complete).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            if filled == buf.len() {
                return Ok(filled);
            }
            match self.tls.reader().read(&mut buf[filled..]) {
                Ok(0) => return Ok(filled),
                Ok(n) => {
                    filled += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(filled);
            }
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 { Ok(filled) } else { Err(e) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.tls.process_new_packets() {
                // rustls queued the alert that says why: send it (best
                // effort) before the connection is dropped.
                let _ = self.push();
                return Err(invalid(format!("TLS: {e}")));
            }
            // Handshake messages, tickets, key updates.
            self.push()?;
        }
    }

    pub(crate) fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        self.tls.send_close_notify();
        // Best effort: the socket's buffer is empty at a close, so this
        // small record goes out.
        self.push()?;
        self.tcp.shutdown(how)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use rustls::pki_types::PrivatePkcs8KeyDer;

    use super::*;

    /// A server `TlsStream` over loopback with its handshake done, and a
    /// channel to tell the client thread how much to write: the client
    /// answers once all of it is written.
    fn pair() -> (TlsStream, mpsc::Sender<usize>, mpsc::Receiver<()>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().clone();
        let server = server_config(
            vec![der.clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            None,
        )
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (ask, asked) = mpsc::channel::<usize>();
        let (done, written) = mpsc::channel();
        std::thread::spawn(move || {
            let config = Arc::new(client_config(&[der]).unwrap());
            let name = ServerName::try_from("localhost").unwrap();
            let conn = ClientConnection::new(config, name).unwrap();
            let mut s = rustls::StreamOwned::new(conn, std::net::TcpStream::connect(addr).unwrap());
            while s.conn.is_handshaking() {
                s.conn.complete_io(&mut s.sock).unwrap();
            }
            done.send(()).unwrap();
            for n in asked {
                s.write_all(&vec![7u8; n]).unwrap();
                s.flush().unwrap();
                done.send(()).unwrap();
            }
        });
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_nonblocking(true).unwrap();
        let mut t = TlsStream::server(TcpStream::from_std(tcp), Arc::new(server)).unwrap();
        while t.tls.is_handshaking() {
            match t.read(&mut [0u8; 16]) {
                Ok(n) => assert_eq!(n, 0, "data before the handshake ended"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        written.recv().unwrap();
        (t, ask, written)
    }

    /// Wait until the socket holds `n` bytes (50 000 of plaintext arrive as
    /// four TLS 1.3 records: 50 088 bytes).
    fn arrived(t: &TlsStream, n: usize) {
        let mut buf = vec![0u8; n];
        for _ in 0..5000 {
            if t.tcp.peek(&mut buf).unwrap_or(0) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("{n} bytes did not arrive");
    }

    /// The reactor's contract: a read returns less than its room only when
    /// both the socket and rustls are drained, and a full read leaves the
    /// rest for the next read (no edge needed).
    #[test]
    fn a_short_read_means_drained() {
        let (mut t, ask, written) = pair();
        // 50 000 bytes: four records, more than a dozen 4 KiB socket reads.
        ask.send(50_000).unwrap();
        written.recv().unwrap();
        arrived(&t, 50_088);
        let mut buf = vec![0u8; 64 * 1024];
        assert_eq!(t.read(&mut buf).unwrap(), 50_000, "one read takes it all");
        let e = t.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);

        ask.send(50_000).unwrap();
        written.recv().unwrap();
        arrived(&t, 50_088);
        let mut small = [0u8; 1000];
        for i in 0..50 {
            assert_eq!(t.read(&mut small).unwrap(), 1000, "read {i} not full");
        }
        let e = t.read(&mut small).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(!t.holds_output());
    }
}
