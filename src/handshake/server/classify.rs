//! Deciding what a parsed request is: a valid upgrade, an invalid upgrade
//! attempt, or plain HTTP (RFC 6455 §4.2.1).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::reject::RejectReason;
use super::request::Request;
use super::upgrade::{Outcome, PlainHttp, Upgrade};
use crate::handshake::headers;
use crate::handshake::WS_VERSION;

/// Classifies a parsed request.
///
/// A request with neither `Upgrade` nor `Sec-WebSocket-Key` is plain HTTP.
/// Anything else is an upgrade attempt and must pass every rule of RFC 6455
/// §4.2.1 or is rejected; see [`RejectReason`] for the codes. Rules are
/// checked in the order of §4.2.1, except that the version check comes
/// before the key check so a client of another protocol version gets the
/// 426 it needs to retry with version 13.
pub fn classify<'h, 'b>(req: &Request<'h, 'b>) -> Outcome<'h, 'b> {
    let is_attempt = req.header("Upgrade").is_some() || req.header("Sec-WebSocket-Key").is_some();
    if !is_attempt {
        // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request)
        // status code to any HTTP/1.1 request message that lacks a Host
        // header field and to any that contains more than one Host header
        // field line".
        if req.version >= 1 {
            if let Err(reason) = single(req, "Host", RejectReason::MissingHost) {
                return Outcome::Reject(reason.into());
            }
        }
        return Outcome::Http(PlainHttp {
            method: req.method,
            path: req.path,
        });
    }
    match check_upgrade(req) {
        Ok(u) => Outcome::Upgrade(u),
        Err(reason) => Outcome::Reject(reason.into()),
    }
}

fn check_upgrade<'h, 'b>(req: &Request<'h, 'b>) -> Result<Upgrade<'h, 'b>, RejectReason> {
    // §4.1: "The method of the request MUST be GET, and the HTTP version
    // MUST be at least 1.1."
    if req.method != "GET" {
        return Err(RejectReason::Method);
    }
    if req.version < 1 {
        return Err(RejectReason::HttpVersion);
    }
    // §4.2.1 item 2: "A |Host| header field containing the server's
    // authority."
    let host = single(req, "Host", RejectReason::MissingHost)?;
    // §4.2.1 item 3: "An |Upgrade| header field containing the value
    // "websocket", treated as an ASCII case-insensitive value."
    if !any_token(req, "Upgrade", "websocket") {
        return Err(RejectReason::UpgradeHeader);
    }
    // §4.2.1 item 4: "A |Connection| header field that includes the token
    // "Upgrade", treated as an ASCII case-insensitive value."
    if !any_token(req, "Connection", "upgrade") {
        return Err(RejectReason::ConnectionHeader);
    }
    // §4.2.2: "If this version does not match a version understood by the
    // server, the server MUST abort the WebSocket handshake ... and instead
    // send an appropriate HTTP error code (such as 426 Upgrade Required)".
    // §11.3.5: the header "MUST NOT appear more than once in an HTTP
    // request".
    let version = single(req, "Sec-WebSocket-Version", RejectReason::BadWsVersion)?;
    if headers::trim_ows(version) != WS_VERSION.as_bytes() {
        return Err(RejectReason::BadWsVersion);
    }
    // §11.3.1: "The |Sec-WebSocket-Key| header field MUST NOT appear more
    // than once in an HTTP request."
    let key = headers::trim_ows(single(req, "Sec-WebSocket-Key", RejectReason::BadKey)?);
    if !is_valid_key(key) {
        return Err(RejectReason::BadKey);
    }
    let origin = optional_single(req, "Origin")?;
    Ok(Upgrade {
        path: req.path,
        host,
        key,
        origin,
        headers: req.headers,
    })
}

/// §4.2.1 item 5: "A |Sec-WebSocket-Key| header field with a
/// base64-encoded ... value that, when decoded, is 16 bytes in length."
fn is_valid_key(key: &[u8]) -> bool {
    // 16 bytes encode to exactly 24 characters; checking the length first
    // also bounds the decode buffer. 17 bytes encode to 24 too, hence the
    // decoded-length check.
    if key.len() != 24 {
        return false;
    }
    let mut out = [0u8; 24];
    matches!(STANDARD.decode_slice(key, &mut out), Ok(16))
}

/// The one value of `name`; `missing` if absent, `DuplicateHeader` (or
/// `missing` for the WebSocket headers, whose reason covers repeats) if
/// repeated.
fn single<'b>(
    req: &Request<'_, 'b>,
    name: &str,
    missing: RejectReason,
) -> Result<&'b [u8], RejectReason> {
    let mut values = req.header_values(name);
    let first = values.next().ok_or(missing)?;
    if values.next().is_some() {
        return Err(match missing {
            RejectReason::MissingHost => RejectReason::DuplicateHeader,
            other => other,
        });
    }
    Ok(first)
}

/// Like [`single`] for an optional header: repeats are refused so a check
/// on the first value cannot be bypassed by a second.
fn optional_single<'b>(
    req: &Request<'_, 'b>,
    name: &str,
) -> Result<Option<&'b [u8]>, RejectReason> {
    let mut values = req.header_values(name);
    let first = values.next();
    if values.next().is_some() {
        return Err(RejectReason::DuplicateHeader);
    }
    Ok(first)
}

fn any_token(req: &Request<'_, '_>, name: &str, token: &str) -> bool {
    req.header_values(name)
        .any(|v| headers::has_token(v, token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::server::{parse_request, write_reject, Reject};
    use crate::handshake::{Limits, Status};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// The RFC §4.1 sample handshake as (name, value) pairs.
    fn rfc_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("Host", "server.example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Origin", "http://example.com"),
            ("Sec-WebSocket-Protocol", "chat, superchat"),
            ("Sec-WebSocket-Version", "13"),
        ]
    }

    fn build(request_line: &str, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = format!("{request_line}\r\n").into_bytes();
        for (n, v) in headers {
            buf.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        buf
    }

    /// Parses and classifies; upgrades and plain requests are reduced to
    /// their path so the borrow of the local buffer can end.
    fn run(buf: &[u8]) -> Result<String, Reject> {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let req = match parse_request(buf, &mut hs, &Limits::default())? {
            Status::Complete(r) => r,
            Status::Partial => panic!("partial"),
        };
        match classify(&req) {
            Outcome::Upgrade(u) => Ok(format!("upgrade {}", u.path)),
            Outcome::Http(p) => Ok(format!("http {} {}", p.method, p.path)),
            Outcome::Reject(r) => Err(r),
        }
    }

    fn with(change: &[(&str, Option<&str>)]) -> Vec<(&'static str, String)> {
        let mut hs: Vec<(&str, String)> = rfc_headers()
            .into_iter()
            .map(|(n, v)| (n, v.to_string()))
            .collect();
        for (name, value) in change {
            let i = hs.iter().position(|(n, _)| n == name).unwrap();
            match value {
                Some(v) => hs[i].1 = v.to_string(),
                None => {
                    hs.remove(i);
                }
            }
        }
        hs
    }

    fn reject_with(line: &str, change: &[(&str, Option<&str>)]) -> Reject {
        let hs = with(change);
        let pairs: Vec<(&str, &str)> = hs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        run(&build(line, &pairs)).unwrap_err()
    }

    fn reject(change: &[(&str, Option<&str>)]) -> (u16, RejectReason) {
        let r = reject_with("GET /chat HTTP/1.1", change);
        (r.status, r.reason)
    }

    #[test]
    fn rfc_sample_is_an_upgrade() {
        let buf = build("GET /chat HTTP/1.1", &rfc_headers());
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let req = parse_request(&buf, &mut hs, &Limits::default())
            .unwrap()
            .complete()
            .unwrap();
        let Outcome::Upgrade(u) = classify(&req) else {
            panic!("not an upgrade");
        };
        assert_eq!(u.path, "/chat");
        assert_eq!(u.key, KEY.as_bytes());
        assert_eq!(u.host, b"server.example.com");
        assert_eq!(u.origin, Some(&b"http://example.com"[..]));
        let p: Vec<&[u8]> = u.protocols().collect();
        assert_eq!(p, [&b"chat"[..], b"superchat"]);
        assert_eq!(u.extensions().count(), 0);
        assert_eq!(u.headers().len(), 7);
    }

    #[test]
    fn protocols_and_extensions_across_repeated_headers() {
        let mut hs = rfc_headers();
        hs.push(("Sec-WebSocket-Protocol", "v3"));
        hs.push(("Sec-WebSocket-Extensions", "permessage-deflate; a=1, x"));
        hs.push(("Sec-WebSocket-Extensions", "y"));
        let buf = build("GET /chat HTTP/1.1", &hs);
        let mut h = [httparse::EMPTY_HEADER; 64];
        let req = parse_request(&buf, &mut h, &Limits::default())
            .unwrap()
            .complete()
            .unwrap();
        let Outcome::Upgrade(u) = classify(&req) else {
            panic!("not an upgrade");
        };
        let p: Vec<&[u8]> = u.protocols().collect();
        assert_eq!(p, [&b"chat"[..], b"superchat", b"v3"]);
        let e: Vec<&[u8]> = u.extensions().collect();
        assert_eq!(e, [&b"permessage-deflate; a=1, x"[..], b"y"]);
    }

    #[test]
    fn lenient_where_the_rfc_is() {
        // Token lists, case, surrounding whitespace, no Origin.
        let ok = [
            vec![("Connection", Some("keep-alive, Upgrade"))],
            vec![("Connection", Some("UPGRADE"))],
            vec![("Upgrade", Some("WebSocket"))],
            vec![("Upgrade", Some("h2c, websocket"))],
            vec![("Sec-WebSocket-Key", Some("  dGhlIHNhbXBsZSBub25jZQ==\t"))],
            vec![("Origin", None), ("Sec-WebSocket-Protocol", None)],
        ];
        for change in ok {
            let hs = with(&change);
            let pairs: Vec<(&str, &str)> = hs.iter().map(|(n, v)| (*n, v.as_str())).collect();
            assert_eq!(
                run(&build("GET /chat HTTP/1.1", &pairs)).unwrap(),
                "upgrade /chat"
            );
        }
        // Connection split over two lines.
        let mut hs = rfc_headers();
        hs[2] = ("Connection", "keep-alive");
        hs.push(("Connection", "upgrade"));
        assert_eq!(
            run(&build("GET /chat HTTP/1.1", &hs)).unwrap(),
            "upgrade /chat"
        );
    }

    #[test]
    fn method_and_http_version() {
        let r = reject_with("POST /chat HTTP/1.1", &[]);
        assert_eq!((r.status, r.reason), (405, RejectReason::Method));
        let r = reject_with("get /chat HTTP/1.1", &[]);
        assert_eq!((r.status, r.reason), (405, RejectReason::Method));
        let r = reject_with("GET /chat HTTP/1.0", &[]);
        assert_eq!((r.status, r.reason), (400, RejectReason::HttpVersion));
    }

    #[test]
    fn host() {
        assert_eq!(reject(&[("Host", None)]), (400, RejectReason::MissingHost));
        let mut hs = rfc_headers();
        hs.push(("Host", "evil.example"));
        let r = run(&build("GET /chat HTTP/1.1", &hs)).unwrap_err();
        assert_eq!((r.status, r.reason), (400, RejectReason::DuplicateHeader));
    }

    #[test]
    fn upgrade_and_connection() {
        let upgrade = (400, RejectReason::UpgradeHeader);
        assert_eq!(reject(&[("Upgrade", None)]), upgrade);
        assert_eq!(reject(&[("Upgrade", Some("h2c"))]), upgrade);
        assert_eq!(reject(&[("Upgrade", Some("websocket2"))]), upgrade);
        assert_eq!(reject(&[("Upgrade", Some(""))]), upgrade);
        let connection = (400, RejectReason::ConnectionHeader);
        assert_eq!(reject(&[("Connection", None)]), connection);
        assert_eq!(reject(&[("Connection", Some("keep-alive"))]), connection);
        assert_eq!(reject(&[("Connection", Some("upgraded"))]), connection);
    }

    #[test]
    fn key() {
        let bad = (400, RejectReason::BadKey);
        assert_eq!(reject(&[("Sec-WebSocket-Key", None)]), bad);
        assert_eq!(reject(&[("Sec-WebSocket-Key", Some(""))]), bad);
        // Not base64 (24 chars, '!' is outside the alphabet).
        assert_eq!(
            reject(&[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZQ!!"))]),
            bad
        );
        // URL-safe alphabet is not the RFC 4648 §4 alphabet.
        assert_eq!(
            reject(&[("Sec-WebSocket-Key", Some("_____________________w=="))]),
            bad
        );
        // Unpadded 16 bytes.
        assert_eq!(
            reject(&[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZQ"))]),
            bad
        );
        // 15 bytes and 17 bytes.
        assert_eq!(
            reject(&[("Sec-WebSocket-Key", Some("AAAAAAAAAAAAAAAAAAAA"))]),
            bad
        );
        assert_eq!(
            reject(&[("Sec-WebSocket-Key", Some("AAAAAAAAAAAAAAAAAAAAAAA="))]),
            bad
        );
        // Duplicated, even with the same value.
        let mut hs = rfc_headers();
        hs.push(("Sec-WebSocket-Key", KEY));
        let r = run(&build("GET /chat HTTP/1.1", &hs)).unwrap_err();
        assert_eq!((r.status, r.reason), bad);
        // A key alone (no Upgrade header) is still an upgrade attempt.
        let r = run(&build(
            "GET / HTTP/1.1",
            &[("Host", "h"), ("Sec-WebSocket-Key", KEY)],
        ));
        assert_eq!(r.unwrap_err().reason, RejectReason::UpgradeHeader);
    }

    #[test]
    fn version_is_426_with_header_in_response() {
        for change in [None, Some("8"), Some("14"), Some(""), Some("13, 8")] {
            let r = reject_with("GET /chat HTTP/1.1", &[("Sec-WebSocket-Version", change)]);
            assert_eq!(
                (r.status, r.reason),
                (426, RejectReason::BadWsVersion),
                "{change:?}"
            );
            let mut out = Vec::new();
            write_reject(&mut out, &r);
            assert!(out.starts_with(b"HTTP/1.1 426 Upgrade Required\r\n"));
            assert!(out
                .windows(27)
                .any(|w| w == b"\r\nSec-WebSocket-Version: 13"));
        }
        let mut hs = rfc_headers();
        hs.push(("Sec-WebSocket-Version", "13"));
        let r = run(&build("GET /chat HTTP/1.1", &hs)).unwrap_err();
        assert_eq!(r.reason, RejectReason::BadWsVersion);
    }

    #[test]
    fn duplicate_origin_is_refused() {
        let mut hs = rfc_headers();
        hs.push(("Origin", "http://evil.example"));
        let r = run(&build("GET /chat HTTP/1.1", &hs)).unwrap_err();
        assert_eq!((r.status, r.reason), (400, RejectReason::DuplicateHeader));
    }

    #[test]
    fn plain_http() {
        let h = [("Host", "x")];
        assert_eq!(
            run(&build("GET /healthz HTTP/1.1", &h)).unwrap(),
            "http GET /healthz"
        );
        assert_eq!(run(&build("POST /x HTTP/1.1", &h)).unwrap(), "http POST /x");
        // HTTP/1.0 needs no Host; HTTP/1.1 does.
        assert_eq!(run(&build("GET / HTTP/1.0", &[])).unwrap(), "http GET /");
        let r = run(&build("GET / HTTP/1.1", &[])).unwrap_err();
        assert_eq!((r.status, r.reason), (400, RejectReason::MissingHost));
        // Other Sec-WebSocket-* headers alone do not make an attempt.
        let v = [("Host", "x"), ("Sec-WebSocket-Version", "13")];
        assert_eq!(run(&build("GET / HTTP/1.1", &v)).unwrap(), "http GET /");
    }

    #[test]
    fn key_check_edges() {
        assert!(is_valid_key(KEY.as_bytes()));
        assert!(is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAA=="));
        // Non-zero trailing bits are not canonical base64.
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAB=="));
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAA=A"));
        assert!(!is_valid_key(b""));
    }
}
