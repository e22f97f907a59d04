//! Certificates made at test time (rcgen) and a blocking TLS WebSocket
//! client written by hand on rustls, for the `wss://` tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use wsreactor::net::tls::{client_config, server_config, TlsAcceptor};
use wsreactor::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use wsreactor::rustls::{ClientConfig, ClientConnection, ServerConfig, StreamOwned};

use crate::common::{frame, parse_frame, upgrade_request, WireFrame};

/// A root CA and an intermediate under it; leaves are issued by the
/// intermediate and served with it (a full chain), clients trust the root.
pub struct Pki {
    pub root_pem: String,
    pub root_der: CertificateDer<'static>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate with its chain and key.
pub struct Leaf {
    /// Leaf then intermediate, PEM.
    pub chain_pem: String,
    pub key_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

impl Pki {
    pub fn new() -> Self {
        let root = CertifiedIssuer::self_signed(
            ca_params("wsreactor test root"),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("wsreactor test intermediate"),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        Self {
            root_pem: root.pem(),
            root_der: root.der().clone(),
            intermediate,
        }
    }

    /// A leaf for `names` (DNS names or IP addresses); `expired`: valid
    /// only in 2001.
    pub fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "wsreactor test leaf");
        if expired {
            p.not_before = rcgen::date_time_ymd(2001, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 12, 31);
        }
        let cert = p.signed_by(&key, &self.intermediate).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.intermediate.pem()),
            key_pem: key.serialize_pem(),
            chain: vec![cert.der().clone(), self.intermediate.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// A client configuration trusting this root (and Mozilla's).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::new(client_config(std::slice::from_ref(&self.root_der)).unwrap())
    }
}

impl Leaf {
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::new(server_config(self.chain.clone(), self.key.clone_key(), None).unwrap())
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::new(self.server_config())
    }

    /// Write `cert.pem` and `key.pem` into `dir`.
    pub fn write(&self, dir: &Path) {
        std::fs::write(dir.join("cert.pem"), &self.chain_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &self.key_pem).unwrap();
    }
}

/// A fresh empty directory under the target's temporary directory.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wsreactor-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A blocking `wss://` client: rustls over a std socket, frames by hand.
pub struct TlsWs {
    pub stream: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
    keys: u32,
}

impl TlsWs {
    /// TLS then the opening handshake (asserting a 101).
    pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> Self {
        let mut s = Self::tls(addr, config, name);
        s.stream.write_all(&upgrade_request("/chat")).unwrap();
        let head = s.read_head();
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        s
    }

    /// Only TLS, handshake completed, nothing sent.
    pub fn tls(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> Self {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        let conn = ClientConnection::new(config, name).unwrap();
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        Self {
            stream,
            buf: Vec::new(),
            keys: 0,
        }
    }

    /// Read an HTTP header block; what follows stays buffered.
    pub fn read_head(&mut self) -> Vec<u8> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = self.buf.split_off(i + 4);
                return std::mem::replace(&mut self.buf, rest);
            }
            self.fill();
        }
    }

    fn fill(&mut self) {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).expect("read");
        assert!(n > 0, "EOF");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.keys = self.keys.wrapping_add(1);
        let key = (self.keys.wrapping_mul(0x9e37_79b9) | 0x0101_0101).to_be_bytes();
        let f = frame(fin, 0, opcode, Some(key), payload);
        self.stream.write_all(&f).unwrap();
    }

    pub fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.send_frame(true, opcode, payload);
    }

    pub fn recv(&mut self) -> WireFrame {
        loop {
            if let Some((f, n)) = parse_frame(&self.buf) {
                self.buf.drain(..n);
                assert_eq!(f.mask, None, "the server masked a frame");
                return f;
            }
            self.fill();
        }
    }
}
