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
