//! `handshake::server::parse_request` + `classify` on arbitrary header
//! blocks, under the default limits and under tight ones.
//!
//! - nothing panics, the response writers included;
//! - `Partial` only while the block is within `max_header_bytes`; a
//!   complete block is within it and within `max_headers`;
//! - `Outcome::Upgrade` only for a request that passes every rule of RFC
//!   6455 §4.2.1, checked here independently: GET, HTTP/1.1, one Host,
//!   Upgrade lists `websocket`, Connection lists `upgrade`, exactly one
//!   Sec-WebSocket-Version equal to `13`, exactly one Sec-WebSocket-Key
//!   that is canonical base64 of 16 bytes;
//! - the 101 written for an upgrade is accepted by the client's
//!   `parse_response`, and every other response carries the status the
//!   outcome named;
//! - a block accepted under tight limits is classified the same under the
//!   default ones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsreactor::handshake::server::{answer_plain, PlainAnswer};
use wsreactor::handshake::{
    accept_key, classify, default_http_response, parse_request, parse_response, reason_phrase,
    write_accept, write_reject, write_response, ClientHandshakeError, ClientKey, Limits, Outcome,
    Request, Status,
};
use wsreactor_fuzz::{base64_decode_strict, list_has_token, trim_ows};

/// What a parse and classification came to, without borrows.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Partial,
    Refused(u16),
    Upgrade(usize),
    Http(usize),
}

fuzz_target!(|data: &[u8]| {
    let default = check(data, &Limits::default(), 64);
    let tight = check(
        data,
        &Limits {
            max_header_bytes: 512,
            max_headers: 8,
        },
        64,
    );
    // The `headers` array caps the count too.
    check(data, &Limits::default(), 3);
    if matches!(tight, Verdict::Upgrade(_) | Verdict::Http(_)) {
        assert_eq!(tight, default, "loosening the limits changed the verdict");
    }
    // Any status the server may write parses back as that status.
    if let [a, b, ..] = *data {
        let status = 100 + u16::from_le_bytes([a, b]) % 500;
        let mut out = Vec::new();
        let body: &[u8] = match status {
            100..=199 | 204 | 304 => b"",
            _ => b"body",
        };
        write_response(&mut out, status, &[("X-Test", "1")], body);
        let _ = reason_phrase(status);
        assert_status(&out, status);
    }
});

fn check(data: &[u8], limits: &Limits, array: usize) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let headers = &mut headers[..array];
    let req = match parse_request(data, headers, limits) {
        Ok(Status::Partial) => {
            assert!(
                data.len() <= limits.max_header_bytes,
                "Partial past the limit"
            );
            return Verdict::Partial;
        }
        Ok(Status::Complete(req)) => req,
        Err(reject) => {
            assert_eq!(reject.status, reject.reason.status());
            let mut out = Vec::new();
            write_reject(&mut out, &reject);
            assert_status(&out, reject.status);
            return Verdict::Refused(reject.status);
        }
    };
    assert!(req.len <= data.len() && req.len <= limits.max_header_bytes);
    assert!(req.headers.len() <= limits.max_headers.min(array));
    // The block alone parses the same: trailing bytes are not part of it.
    let mut again = [httparse::EMPTY_HEADER; 64];
    let block = parse_request(&data[..req.len], &mut again[..array], limits);
    assert!(
        matches!(block, Ok(Status::Complete(ref r)) if r.len == req.len),
        "the block alone: {block:?}"
    );
    match classify(&req) {
        Outcome::Upgrade(u) => {
            let key = must_be_upgrade(&req);
            assert_eq!(u.key, trim_ows(key));
            assert_eq!(u.path, req.path);
            // The key is canonical base64 of these 16 bytes, so a client
            // holding them computes the same accept value.
            let raw = base64_decode_strict(u.key).expect("checked above");
            let raw: [u8; 16] = raw.try_into().expect("checked above");
            let client = ClientKey::new(&raw);
            assert_eq!(client.key().as_bytes(), u.key);
            let offered: Vec<&str> = u
                .protocols()
                .filter_map(|p| std::str::from_utf8(p).ok())
                .collect();
            let chosen = offered.first().copied();
            let mut out = Vec::new();
            write_accept(&mut out, u.key, chosen, None);
            let mut hs = [httparse::EMPTY_HEADER; 16];
            let r = parse_response(
                &out,
                &mut hs,
                client.expected_accept(),
                &offered,
                &Limits::default(),
            );
            match r {
                Ok(Status::Complete(r)) => {
                    assert_eq!(r.len, out.len());
                    assert_eq!(r.protocol, chosen);
                }
                other => panic!("our own 101 was refused: {other:?}"),
            }
            assert_eq!(accept_key(u.key), client.expected_accept());
            Verdict::Upgrade(req.len)
        }
        Outcome::Reject(reject) => {
            let mut out = Vec::new();
            write_reject(&mut out, &reject);
            assert_status(&out, reject.status);
            Verdict::Refused(reject.status)
        }
        Outcome::Http(p) => {
            assert_eq!((p.method, p.path), (req.method, req.path));
            let mut out = Vec::new();
            default_http_response(&mut out, &p);
            // Routed by path, whatever the query: /healthz and the metrics
            // path take GET and HEAD (else 405), the rest is told to upgrade.
            let path = p.path.split(['?', '#']).next().unwrap_or("");
            let read = matches!(p.method, "GET" | "HEAD");
            let status = match (path == "/healthz", read) {
                (false, _) => 426,
                (true, true) => 200,
                (true, false) => 405,
            };
            assert_status(&out, status);
            out.clear();
            let answer = answer_plain(&mut out, &p, Some("/metrics"));
            if path == "/metrics" && read {
                let head = p.method == "HEAD";
                assert_eq!(answer, PlainAnswer::Metrics { head });
                assert!(out.is_empty());
            } else {
                assert_eq!(answer, PlainAnswer::Written);
                assert_status(&out, if path == "/metrics" { 405 } else { status });
            }
            Verdict::Http(req.len)
        }
    }
}

/// The §4.2.1 rules, checked on the parsed fields without the crate's
/// helpers. Returns the raw Sec-WebSocket-Key value.
fn must_be_upgrade<'b>(req: &Request<'_, 'b>) -> &'b [u8] {
    let values = |name: &str| -> Vec<&'b [u8]> {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    assert_eq!(req.method, "GET", "upgrade of a {} request", req.method);
    assert_eq!(req.version, 1, "upgrade of an HTTP/1.0 request");
    assert_eq!(values("host").len(), 1, "upgrade without exactly one Host");
    assert!(
        values("upgrade")
            .iter()
            .any(|v| list_has_token(v, "websocket")),
        "upgrade without Upgrade: websocket"
    );
    assert!(
        values("connection")
            .iter()
            .any(|v| list_has_token(v, "upgrade")),
        "upgrade without Connection: upgrade"
    );
    let version = values("sec-websocket-version");
    assert!(
        version.len() == 1 && trim_ows(version[0]) == b"13",
        "upgrade with Sec-WebSocket-Version {version:?}"
    );
    let key = values("sec-websocket-key");
    assert_eq!(key.len(), 1, "upgrade with {} keys", key.len());
    let decoded = base64_decode_strict(trim_ows(key[0]));
    assert!(
        decoded.as_ref().is_some_and(|k| k.len() == 16),
        "upgrade with key {:?} decoding to {decoded:?}",
        key[0]
    );
    key[0]
}

/// `out` is a complete HTTP response with status `status`.
fn assert_status(out: &[u8], status: u16) {
    let mut hs = [httparse::EMPTY_HEADER; 16];
    let r = parse_response(out, &mut hs, "x", &[], &Limits::default());
    match (status, r) {
        (101, Err(ClientHandshakeError::UpgradeHeader)) => {}
        (_, Err(ClientHandshakeError::Status(s))) => assert_eq!(s, status),
        (_, r) => panic!("response for {status} parsed as {r:?}"),
    }
}
