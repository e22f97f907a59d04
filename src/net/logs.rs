//! What the reactor logs about connections: a peer address that prints
//! even when the socket no longer knows it, and a per-reactor limit on the
//! info lines for rejected handshakes (a scanner or a misconfigured client
//! must not flood the log).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::transport::Transport;

use super::ctx::ConnId;
use super::timer::Tick;
use crate::server::ServerConfig;

/// A connection's peer address for a log line: asked of the socket at log
/// time (connections do not store it), `?` once the socket has lost it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(Option<SocketAddr>);

impl Peer {
    pub(crate) fn of(stream: &Transport) -> Self {
        Peer(stream.peer_addr().ok())
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("?"),
        }
    }
}

/// At most this many rejection lines per window; the rest are counted and
/// summed up in one line when the next window opens.
const LINES_PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(1);

/// Rate limit of the lines for rejected handshakes and refused
/// connections, one per reactor.
#[derive(Debug, Default)]
pub(crate) struct RejectLog {
    window_start: Option<Tick>,
    lines: u32,
    suppressed: u64,
}

impl RejectLog {
    /// Log a rejected handshake (HTTP `status`, `reason`) at info, unless
    /// this window's lines are used up.
    pub(crate) fn rejected(&mut self, now: Tick, id: ConnId, peer: Peer, status: u16, why: &str) {
        self.log(
            now,
            log::Level::Info,
            format_args!("{id} from {peer}: handshake rejected with {status}: {why}"),
        );
    }

    /// Log a connection refused at `max_connections` (503) at warn, under
    /// the same limit.
    pub(crate) fn refused(&mut self, now: Tick, peer: SocketAddr, held: usize) {
        self.log(
            now,
            log::Level::Warn,
            format_args!("refusing {peer} with 503: {held} connections held"),
        );
    }

    fn log(&mut self, now: Tick, level: log::Level, line: fmt::Arguments<'_>) {
        if self
            .window_start
            .is_none_or(|start| now.since(start) >= WINDOW)
        {
            if self.suppressed > 0 {
                log::info!(
                    "{} more rejections not logged (at most {LINES_PER_WINDOW} a second)",
                    self.suppressed
                );
            }
            *self = RejectLog {
                window_start: Some(now),
                lines: 0,
                suppressed: 0,
            };
        }
        if self.lines < LINES_PER_WINDOW {
            self.lines += 1;
            log::log!(level, "{line}");
        } else {
            self.suppressed += 1;
        }
    }
}

/// The startup line with a server's main limits.
#[derive(Debug)]
pub(crate) struct Limits<'a>(pub(crate) &'a ServerConfig);

impl fmt::Display for Limits<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        write!(
            f,
            "limits: {} connections, frame {}, message {}, header block {} / {} headers, \
             handshake timeout {:?}, ",
            c.max_connections,
            Bytes(c.protocol.max_frame_size),
            Bytes(c.protocol.max_message_size),
            Bytes(c.handshake.max_header_bytes as u64),
            c.handshake.max_headers,
            c.handshake_timeout,
        )?;
        match c.ping_interval {
            Some(p) => write!(f, "ping every {p:?} (pong timeout {:?})", c.pong_timeout)?,
            None => f.write_str("no heartbeat")?,
        }
        match c.idle_timeout {
            Some(i) => write!(f, ", idle timeout {i:?}")?,
            None => f.write_str(", no idle timeout")?,
        }
        write!(f, ", queued output {}", Bytes(c.max_queued_output as u64))
    }
}

/// A byte count in the largest binary unit that divides it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bytes(pub(crate) u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n != 0 && n % (1u64 << shift) == 0 {
                return write!(f, "{} {unit}", n >> shift);
            }
        }
        write!(f, "{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_in_the_largest_unit_that_divides() {
        let s = |n| Bytes(n).to_string();
        assert_eq!(s(0), "0 B");
        assert_eq!(s(1000), "1000 B");
        assert_eq!(s(8192), "8 KiB");
        assert_eq!(s(16 << 20), "16 MiB");
        assert_eq!(s((1 << 30) + 1024), "1048577 KiB");
        assert_eq!(s(3 << 30), "3 GiB");
    }

    #[test]
    fn limits_line_names_the_defaults() {
        let line = Limits(&ServerConfig::default()).to_string();
        assert!(line.contains("100000 connections"), "{line}");
        assert!(line.contains("frame 16 MiB, message 64 MiB"), "{line}");
        assert!(line.contains("ping every 30s (pong timeout 10s)"), "{line}");
    }
}
