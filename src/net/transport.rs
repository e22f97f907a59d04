//! A connection's byte stream: plain TCP or, with the `tls` feature, TLS
//! over TCP. The reactor reads plaintext into its shared buffer and writes
//! plaintext through the same calls for both, so the frame path is one.
//!
//! The contract the reactor's edge-triggered loop relies on holds for both
//! arms: a read that returns less than the room it was given has drained
//! everything (socket and, with TLS, decrypted plaintext), and a write that
//! takes nothing returns `WouldBlock` only after the socket refused bytes,
//! so a writable edge follows.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::server::ServerConfig;

#[cfg(feature = "tls")]
use super::tls::TlsStream;

/// Plain TCP, or TLS whose state (tens of KiB while active) is boxed so an
/// idle plain connection pays nothing for it.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

impl From<TcpStream> for Transport {
    fn from(stream: TcpStream) -> Self {
        Self::Plain(stream)
    }
}

impl Transport {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            #[cfg(feature = "tls")]
            Self::Tls(t) => t.tcp(),
        }
    }

    /// Send what TLS holds encrypted (records of earlier writes, handshake
    /// messages, alerts) until done or the socket would block. Plain TCP
    /// holds nothing.
    #[inline]
    pub(crate) fn push(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(_) => Ok(()),
            #[cfg(feature = "tls")]
            Self::Tls(t) => t.push(),
        }
    }

    /// Output held below the sender's queue (TLS records not yet sent, or
    /// plaintext waiting for the TLS handshake).
    #[inline]
    pub(crate) fn holds_output(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            #[cfg(feature = "tls")]
            Self::Tls(t) => t.holds_output(),
        }
    }

    /// End our side: for TLS a `close_notify` alert first (best effort),
    /// then the TCP write side in both cases.
    pub(crate) fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown(how),
            #[cfg(feature = "tls")]
            Self::Tls(t) => t.shutdown(how),
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.tcp().take_error()
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    pub(crate) fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp().set_nodelay(on)
    }
}

impl Read for Transport {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Self::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Transport {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Self::Tls(t) => t.write(buf),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Self::Tls(t) => t.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push()
    }
}

impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.register(registry, token, interests),
            #[cfg(feature = "tls")]
            Self::Tls(t) => t.tcp_mut().register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.reregister(registry, token, interests),
            #[cfg(feature = "tls")]
            Self::Tls(t) => t.tcp_mut().reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.deregister(registry),
            #[cfg(feature = "tls")]
            Self::Tls(t) => t.tcp_mut().deregister(registry),
        }
    }
}

impl Transport {
    /// Does the reactor serve TLS on its listener?
    pub(crate) fn serves_tls(config: &ServerConfig) -> bool {
        #[cfg(feature = "tls")]
        return config.tls.is_some();
        #[cfg(not(feature = "tls"))]
        {
            let _ = config;
            false
        }
    }

    /// An accepted socket: TLS when the reactor serves it.
    pub(crate) fn accepted(stream: TcpStream, config: &ServerConfig) -> io::Result<Self> {
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &config.tls {
            return TlsStream::server(stream, acceptor.config()).map(|t| Self::Tls(Box::new(t)));
        }
        let _ = config;
        Ok(Self::Plain(stream))
    }

    /// An outgoing socket: TLS for `wss://`, verifying `host`.
    pub(crate) fn connecting(
        stream: TcpStream,
        tls_host: Option<&str>,
        config: &ServerConfig,
    ) -> io::Result<Self> {
        let Some(host) = tls_host else {
            return Ok(Self::Plain(stream));
        };
        #[cfg(feature = "tls")]
        {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
            let tls_config = config
                .tls_client
                .clone()
                .unwrap_or_else(super::tls::default_client_config);
            TlsStream::client(stream, tls_config, name).map(|t| Self::Tls(Box::new(t)))
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (stream, host, config);
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "wss:// needs a build with the tls feature",
            ))
        }
    }
}
