//! Writing the client's opening handshake request (RFC 6455 §4.1).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::handshake::{accept_key, WS_VERSION};

/// The key a client sent and the `Sec-WebSocket-Accept` it must get back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    key: String,
    accept: String,
}

impl ClientKey {
    /// Encodes 16 caller-chosen random bytes. RFC 6455 §4.1: "The nonce
    /// MUST be selected randomly for each connection."
    pub fn new(raw: &[u8; 16]) -> Self {
        let key = STANDARD.encode(raw);
        let accept = accept_key(key.as_bytes());
        ClientKey { key, accept }
    }

    /// The `Sec-WebSocket-Key` value sent (24 base64 characters).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `Sec-WebSocket-Accept` value the server must answer with; pass
    /// it to [`parse_response`](super::parse_response).
    pub fn expected_accept(&self) -> &str {
        &self.accept
    }
}

/// Appends an opening handshake request and returns the key it carries.
///
/// `host` is `host[:port]` exactly as it should appear in `Host`; `path`
/// is the request target (`/` when empty). `protocols` are offered in
/// order of preference; `extensions` is a ready-made
/// `Sec-WebSocket-Extensions` value. `extra_headers` (e.g. `Origin`,
/// cookies) follow the WebSocket ones. No value may contain CR or LF.
pub fn write_request(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    key: &[u8; 16],
    protocols: &[&str],
    extensions: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> ClientKey {
    let key = ClientKey::new(key);
    // §4.1: "the path component ... (or "/" if the path component is
    // empty)".
    let path = if path.is_empty() { "/" } else { path };
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_header(out, "Host", host);
    push_header(out, "Upgrade", "websocket");
    push_header(out, "Connection", "Upgrade");
    push_header(out, "Sec-WebSocket-Key", key.key());
    push_header(out, "Sec-WebSocket-Version", WS_VERSION);
    if !protocols.is_empty() {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        for (i, p) in protocols.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(p.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(e) = extensions {
        push_header(out, "Sec-WebSocket-Extensions", e);
    }
    for (name, value) in extra_headers {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    key
}

/// Why an extra header or a subprotocol cannot go into a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFieldError {
    /// A header name that is not an RFC 9110 token.
    HeaderName,
    /// A header value with a control character (CR, LF, NUL...).
    HeaderValue,
    /// A header the handshake itself sets (`Host`, `Upgrade`,
    /// `Connection`, `Sec-WebSocket-*`).
    Reserved,
    /// A subprotocol that is not a token (RFC 6455 §4.1).
    Protocol,
}

impl std::fmt::Display for RequestFieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::HeaderName => "a header name must be a token (letters, digits, !#$%&'*+-.^_`|~)",
            Self::HeaderValue => "a header value must not contain control characters",
            Self::Reserved => "the handshake sets this header itself",
            Self::Protocol => "a subprotocol must be a token (letters, digits, !#$%&'*+-.^_`|~)",
        })
    }
}

impl std::error::Error for RequestFieldError {}

/// Check an extra header for [`write_request`]: a token name that the
/// handshake does not set itself, and a value without control characters
/// (tabs allowed), so it cannot split or forge request lines.
///
/// # Errors
/// What is wrong with it.
pub fn check_header(name: &str, value: &str) -> Result<(), RequestFieldError> {
    if !is_token(name) {
        return Err(RequestFieldError::HeaderName);
    }
    let reserved = [
        "host",
        "upgrade",
        "connection",
        "content-length",
        "transfer-encoding",
    ];
    let lower = name.to_ascii_lowercase();
    if reserved.contains(&lower.as_str()) || lower.starts_with("sec-websocket-") {
        return Err(RequestFieldError::Reserved);
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(RequestFieldError::HeaderValue);
    }
    Ok(())
}

/// Check a subprotocol for [`write_request`]: a token (RFC 6455 §4.1).
///
/// # Errors
/// [`RequestFieldError::Protocol`].
pub fn check_protocol(protocol: &str) -> Result<(), RequestFieldError> {
    if is_token(protocol) {
        Ok(())
    } else {
        Err(RequestFieldError::Protocol)
    }
}

/// RFC 9110 §5.6.2: `token = 1*tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    debug_assert!(!value.contains(['\r', '\n']), "CR/LF in {name}");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: [u8; 16] = *b"the sample nonce";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    #[test]
    fn extra_headers_and_protocols_are_checked() {
        assert_eq!(check_header("Authorization", "Bearer abc.def"), Ok(()));
        assert_eq!(check_header("X-Trace", "a\tb, \u{e9}"), Ok(()));
        assert_eq!(check_header("X-Empty", ""), Ok(()));
        for (name, value, err) in [
            ("", "x", RequestFieldError::HeaderName),
            ("Bad Name", "x", RequestFieldError::HeaderName),
            ("X:Y", "x", RequestFieldError::HeaderName),
            ("X", "a\r\nHost: evil", RequestFieldError::HeaderValue),
            ("X", "a\nb", RequestFieldError::HeaderValue),
            ("X", "a\0", RequestFieldError::HeaderValue),
            ("host", "x", RequestFieldError::Reserved),
            ("Sec-WebSocket-Protocol", "x", RequestFieldError::Reserved),
            ("Connection", "close", RequestFieldError::Reserved),
        ] {
            assert_eq!(check_header(name, value), Err(err), "{name:?}: {value:?}");
        }
        assert_eq!(check_protocol("chat.v2"), Ok(()));
        for p in ["", "a b", "a,b", "a/b"] {
            assert_eq!(check_protocol(p), Err(RequestFieldError::Protocol), "{p:?}");
        }
    }

    /// Whatever passes the checks reads back as exactly the headers and
    /// protocols written: nothing can forge another line.
    #[test]
    fn checked_fields_read_back_unchanged() {
        use proptest::prelude::*;
        // Mostly valid fields (the invalid ones are the test above's).
        let token = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}";
        let text = "(\\PC|\t){0,24}";
        proptest!(|(name in token, value in text, protocol in token)| {
            prop_assume!(check_header(&name, &value).is_ok() && check_protocol(&protocol).is_ok());
            let mut out = Vec::new();
            write_request(&mut out, "h", "/", &RAW, &[&protocol], None, &[(&name, &value)]);
            let mut hs = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut hs);
            prop_assert!(req.parse(&out).unwrap().is_complete());
            prop_assert_eq!(req.headers.len(), 7);
            let got = &req.headers[6];
            prop_assert_eq!(got.name, name.as_str());
            // httparse trims the value's surrounding whitespace.
            prop_assert_eq!(got.value, value.trim_matches([' ', '\t']).as_bytes());
            prop_assert_eq!(req.headers[5].value, protocol.as_bytes());
        });
    }

    #[test]
    fn rfc_sample_key() {
        let k = ClientKey::new(&RAW);
        assert_eq!(k.key(), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(k.expected_accept(), ACCEPT);
    }

    #[test]
    fn request_bytes() {
        let mut out = Vec::new();
        let k = write_request(
            &mut out,
            "server.example.com",
            "/chat",
            &RAW,
            &["chat", "superchat"],
            None,
            &[("Origin", "http://example.com")],
        );
        assert_eq!(k.expected_accept(), ACCEPT);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "GET /chat HTTP/1.1\r\n\
             Host: server.example.com\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\
             Origin: http://example.com\r\n\
             \r\n"
        );
        out.clear();
        write_request(
            &mut out,
            "h:9001",
            "",
            &RAW,
            &[],
            Some("permessage-deflate"),
            &[],
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "GET / HTTP/1.1\r\n\
             Host: h:9001\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: permessage-deflate\r\n\
             \r\n"
        );
    }
}
