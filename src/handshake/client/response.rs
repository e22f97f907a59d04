//! Checking the server's answer to the opening handshake (RFC 6455 §4.1).

use std::fmt;

use httparse::Header;

use crate::handshake::headers::{self, HeaderValues};
use crate::handshake::{Limits, Status};

/// The server's accepted handshake.
#[derive(Debug, Clone, Copy)]
pub struct Response<'h, 'b> {
    /// The subprotocol the server chose, one of those offered.
    pub protocol: Option<&'b str>,
    /// Response headers in the order received.
    pub headers: &'h [Header<'b>],
    /// Length of the header block in bytes. Bytes from here on are the
    /// server's first frames and must not be dropped.
    pub len: usize,
}

impl<'h, 'b> Response<'h, 'b> {
    /// Value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        headers::header(self.headers, name)
    }

    /// Raw values of every `Sec-WebSocket-Extensions` header. Checking
    /// them against what was offered is the caller's job (§4.1: the
    /// client MUST fail the connection on an extension it did not offer).
    pub fn extensions(&self) -> HeaderValues<'h, 'b> {
        headers::header_values(self.headers, "Sec-WebSocket-Extensions")
    }
}

/// Why the server's answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientHandshakeError {
    /// Header block larger than [`Limits::max_header_bytes`].
    HeaderTooLarge,
    /// More headers than [`Limits::max_headers`].
    TooManyHeaders,
    /// Not parseable as an HTTP/1.x response.
    Malformed,
    /// The server answered with this status instead of 101.
    Status(u16),
    /// `Upgrade` missing or lacking `websocket`.
    UpgradeHeader,
    /// `Connection` missing or lacking `upgrade`.
    ConnectionHeader,
    /// `Sec-WebSocket-Accept` missing, repeated or wrong.
    Accept,
    /// `Sec-WebSocket-Protocol` not one of those offered, or more than one.
    Protocol,
}

impl fmt::Display for ClientHandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeaderTooLarge => f.write_str("handshake response header block too large"),
            Self::TooManyHeaders => f.write_str("too many handshake response headers"),
            Self::Malformed => f.write_str("malformed HTTP response"),
            Self::Status(code) => write!(f, "server answered {code} instead of 101"),
            Self::UpgradeHeader => f.write_str("response Upgrade header lacks websocket"),
            Self::ConnectionHeader => f.write_str("response Connection header lacks upgrade"),
            Self::Accept => f.write_str("missing or wrong Sec-WebSocket-Accept"),
            Self::Protocol => f.write_str("server chose a subprotocol that was not offered"),
        }
    }
}

impl std::error::Error for ClientHandshakeError {}

/// Parses and validates the server's answer at the start of `buf`.
///
/// Call again with the whole accumulated buffer while it returns
/// [`Status::Partial`]; the same [`Limits`] as on the server bound the
/// header block. `expected_accept` is [`ClientKey::expected_accept`](super::ClientKey::expected_accept);
/// `offered_protocols` what was passed to
/// [`write_request`](super::write_request).
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    expected_accept: &str,
    offered_protocols: &[&str],
    limits: &Limits,
) -> Result<Status<Response<'h, 'b>>, ClientHandshakeError> {
    use ClientHandshakeError as E;
    let cap = limits.max_headers.min(headers.len());
    let (headers, _) = headers.split_at_mut(cap);
    let mut res = httparse::Response::new(headers);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_header_bytes => {
            return Err(E::HeaderTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Status::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(E::TooManyHeaders),
        Err(_) => return Err(E::Malformed),
    };
    if len > limits.max_header_bytes {
        return Err(E::HeaderTooLarge);
    }
    let code = res.code.ok_or(E::Malformed)?;
    let hs: &'h [Header<'b>] = res.headers;
    // §4.1: "If the status code received from the server is not 101, the
    // client handles the response per HTTP [RFC2616] procedures."
    if code != 101 {
        return Err(E::Status(code));
    }
    // §4.1: "If the response lacks an |Upgrade| header field or the
    // |Upgrade| header field contains a value that is not an ASCII
    // case-insensitive match for the value "websocket", the client MUST
    // _Fail the WebSocket Connection_."
    if !headers::header_values(hs, "Upgrade").any(|v| headers::has_token(v, "websocket")) {
        return Err(E::UpgradeHeader);
    }
    // §4.1: "If the response lacks a |Connection| header field or the
    // |Connection| header field doesn't contain a token that is an ASCII
    // case-insensitive match for the value "Upgrade", the client MUST
    // _Fail the WebSocket Connection_."
    if !headers::header_values(hs, "Connection").any(|v| headers::has_token(v, "upgrade")) {
        return Err(E::ConnectionHeader);
    }
    // §4.1: "If the response lacks a |Sec-WebSocket-Accept| header field or
    // the |Sec-WebSocket-Accept| contains a value other than the
    // base64-encoded SHA-1 of ... but ignoring any leading and trailing
    // whitespace, the client MUST _Fail the WebSocket Connection_."
    let mut accepts = headers::header_values(hs, "Sec-WebSocket-Accept");
    match (accepts.next(), accepts.next()) {
        (Some(v), None) if headers::trim_ows(v) == expected_accept.as_bytes() => {}
        _ => return Err(E::Accept),
    }
    // §4.1: "If the response includes a |Sec-WebSocket-Protocol| header
    // field and this header field indicates the use of a subprotocol that
    // was not present in the client's handshake ... the client MUST _Fail
    // the WebSocket Connection_." The server picks one (§4.2.2), so a
    // list or a repeated header is refused too.
    let mut protocols = headers::header_values(hs, "Sec-WebSocket-Protocol");
    let protocol = match (protocols.next(), protocols.next()) {
        (None, _) => None,
        (Some(v), None) => {
            let v = headers::trim_ows(v);
            if !offered_protocols.iter().any(|p| p.as_bytes() == v) {
                return Err(E::Protocol);
            }
            Some(std::str::from_utf8(v).map_err(|_| E::Protocol)?)
        }
        (Some(_), Some(_)) => return Err(E::Protocol),
    };
    Ok(Status::Complete(Response {
        protocol,
        headers: hs,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::client::write_request;
    use crate::handshake::server::{classify, parse_request, write_accept, Outcome};

    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn response(headers: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
        for (n, v) in headers {
            buf.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        buf
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", ACCEPT),
        ]
    }

    /// Parses and reduces the result to (len, protocol) so the borrow of
    /// the local buffer can end.
    fn check(
        buf: &[u8],
        offered: &[&str],
    ) -> Result<Status<(usize, Option<String>)>, ClientHandshakeError> {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let st = parse_response(buf, &mut hs, ACCEPT, offered, &Limits::default())?;
        Ok(match st {
            Status::Complete(r) => Status::Complete((r.len, r.protocol.map(str::to_owned))),
            Status::Partial => Status::Partial,
        })
    }

    #[test]
    fn round_trip_through_the_server() {
        let mut req = Vec::new();
        let k = write_request(&mut req, "h", "/x", &[7; 16], &["b", "a"], None, &[]);
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let r = parse_request(&req, &mut hs, &Limits::default())
            .unwrap()
            .complete()
            .unwrap();
        let Outcome::Upgrade(u) = classify(&r) else {
            panic!("server refused our request");
        };
        assert_eq!(u.key, k.key().as_bytes());
        let mut res = Vec::new();
        write_accept(&mut res, u.key, Some("a"), None);
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let st = parse_response(
            &res,
            &mut hs,
            k.expected_accept(),
            &["b", "a"],
            &Limits::default(),
        );
        let r = st.unwrap().complete().unwrap();
        assert_eq!((r.len, r.protocol), (res.len(), Some("a")));
    }

    #[test]
    fn accepts_good_response_and_reports_len() {
        let mut buf = response(&good());
        let head = buf.len();
        assert_eq!(check(&buf, &[]), Ok(Status::Complete((head, None))));
        // A frame sent right behind the 101 stays outside `len`.
        buf.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        assert_eq!(check(&buf, &[]), Ok(Status::Complete((head, None))));
        // Token lists, case, whitespace around the accept value.
        let buf = response(&[
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, upgrade"),
            ("sec-websocket-accept", " s3pPLMBiTxaQ9kYGzzhZRbK+xOo= "),
            ("Sec-WebSocket-Extensions", "x"),
        ]);
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let r = parse_response(&buf, &mut hs, ACCEPT, &[], &Limits::default())
            .unwrap()
            .complete()
            .unwrap();
        assert_eq!(r.extensions().collect::<Vec<_>>(), [&b"x"[..]]);
        assert_eq!(r.header("UPGRADE"), Some(&b"WebSocket"[..]));
    }

    #[test]
    fn every_proper_prefix_is_partial() {
        let mut g = good();
        g.push(("Sec-WebSocket-Protocol", "chat"));
        let buf = response(&g);
        for i in 0..buf.len() {
            assert_eq!(
                check(&buf[..i], &["chat"]),
                Ok(Status::Partial),
                "split at {i}"
            );
        }
        let whole = check(&buf, &["chat"]);
        assert_eq!(
            whole,
            Ok(Status::Complete((buf.len(), Some("chat".into()))))
        );
    }

    #[test]
    fn non_101_carries_the_code() {
        let buf = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(check(buf, &[]), Err(ClientHandshakeError::Status(403)));
        let buf = b"HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(check(buf, &[]), Err(ClientHandshakeError::Status(200)));
        assert_eq!(
            ClientHandshakeError::Status(403).to_string(),
            "server answered 403 instead of 101"
        );
    }

    #[test]
    fn header_rules() {
        use ClientHandshakeError as E;
        let cases: [(&str, Option<&str>, E); 7] = [
            ("Upgrade", None, E::UpgradeHeader),
            ("Upgrade", Some("h2c"), E::UpgradeHeader),
            ("Connection", None, E::ConnectionHeader),
            ("Connection", Some("close"), E::ConnectionHeader),
            ("Sec-WebSocket-Accept", None, E::Accept),
            (
                "Sec-WebSocket-Accept",
                Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo"),
                E::Accept,
            ),
            (
                "Sec-WebSocket-Accept",
                Some("S3PPLMBITXAQ9KYGZZHZRBK+XOO="),
                E::Accept,
            ),
        ];
        for (name, value, want) in cases {
            let mut g = good();
            let i = g.iter().position(|(n, _)| *n == name).unwrap();
            match value {
                Some(v) => g[i].1 = v,
                None => {
                    g.remove(i);
                }
            }
            assert_eq!(check(&response(&g), &[]), Err(want), "{name}: {value:?}");
        }
        let mut g = good();
        g.push(("Sec-WebSocket-Accept", ACCEPT));
        assert_eq!(check(&response(&g), &[]), Err(E::Accept));
    }

    #[test]
    fn protocol_must_be_one_offered() {
        use ClientHandshakeError as E;
        let with = |v: &'static str| {
            let mut g = good();
            g.push(("Sec-WebSocket-Protocol", v));
            response(&g)
        };
        assert_eq!(
            check(&with("chat"), &["x", "chat"]),
            Ok(Status::Complete((with("chat").len(), Some("chat".into()))))
        );
        assert_eq!(check(&with("chat"), &[]), Err(E::Protocol));
        assert_eq!(check(&with("other"), &["chat"]), Err(E::Protocol));
        assert_eq!(check(&with("chat, x"), &["chat", "x"]), Err(E::Protocol));
        assert_eq!(check(&with("CHAT"), &["chat"]), Err(E::Protocol));
        let mut g = good();
        g.push(("Sec-WebSocket-Protocol", "chat"));
        g.push(("Sec-WebSocket-Protocol", "chat"));
        assert_eq!(check(&response(&g), &["chat"]), Err(E::Protocol));
    }

    #[test]
    fn limits_and_garbage() {
        use ClientHandshakeError as E;
        let mut buf = b"HTTP/1.1 101 Switching Protocols\r\nX: ".to_vec();
        buf.resize(8192, b'a');
        assert_eq!(check(&buf, &[]), Ok(Status::Partial));
        buf.push(b'a');
        assert_eq!(check(&buf, &[]), Err(E::HeaderTooLarge));
        let mut buf = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
        for i in 0..65 {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(check(&buf, &[]), Err(E::TooManyHeaders));
        assert_eq!(check(b"\x00garbage\r\n\r\n", &[]), Err(E::Malformed));
        assert_eq!(check(b"HTTP/1.1 abc\r\n\r\n", &[]), Err(E::Malformed));
    }
}
