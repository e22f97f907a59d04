//! `handshake::client::parse_response` on arbitrary bytes with a fixed
//! expected accept value (the RFC 6455 §1.3 example) and two offered
//! subprotocols, under the default limits and under tight ones.
//!
//! - nothing panics; `Partial` only within `max_header_bytes`;
//! - an accepted response is checked again on its raw bytes, without the
//!   crate or httparse: the status line says 101, exactly one
//!   Sec-WebSocket-Accept with exactly the expected value, Upgrade lists
//!   `websocket`, Connection lists `upgrade`, and the subprotocol (if any)
//!   is one that was offered;
//! - a response accepted under tight limits is accepted the same under the
//!   default ones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsreactor::handshake::{parse_response, Limits, Status};
use wsreactor_fuzz::{list_has_token, trim_ows};

const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const OFFERED: [&str; 2] = ["chat", "superchat"];

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
    check(data, &Limits::default(), 3);
    if tight.is_some() {
        assert_eq!(tight, default, "loosening the limits changed the verdict");
    }
});

/// The accepted header block's length and subprotocol, if accepted.
fn check(data: &[u8], limits: &Limits, array: usize) -> Option<(usize, Option<String>)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let r = match parse_response(data, &mut headers[..array], ACCEPT, &OFFERED, limits) {
        Ok(Status::Complete(r)) => r,
        Ok(Status::Partial) => {
            assert!(
                data.len() <= limits.max_header_bytes,
                "Partial past the limit"
            );
            return None;
        }
        Err(_) => return None,
    };
    assert!(r.len <= data.len() && r.len <= limits.max_header_bytes);
    assert!(r.headers.len() <= limits.max_headers.min(array));
    if let Some(p) = r.protocol {
        assert!(OFFERED.contains(&p), "chose {p:?}, not offered");
    }
    let protocol = must_be_accepted(&data[..r.len]);
    assert_eq!(r.protocol, protocol.as_deref());
    Some((r.len, protocol))
}

/// The block's lines, CR LF or bare LF terminated.
fn lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    block
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// RFC 6455 §4.1's checks on the raw header block; returns the chosen
/// subprotocol.
fn must_be_accepted(block: &[u8]) -> Option<String> {
    let mut lines = lines(block).skip_while(|l| l.is_empty());
    let status = lines.next().expect("no status line");
    let code = status
        .strip_prefix(b"HTTP/1.")
        .and_then(|rest| rest.get(1..))
        .map(|rest| rest.iter().skip_while(|&&b| b == b' ').take(3).copied())
        .map(Vec::from_iter);
    assert_eq!(
        code.as_deref(),
        Some(&b"101"[..]),
        "accepted status line {:?}",
        String::from_utf8_lossy(status)
    );
    let fields: Vec<(&[u8], &[u8])> = lines
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let colon = l
                .iter()
                .position(|&b| b == b':')
                .expect("field without colon");
            (&l[..colon], trim_ows(&l[colon + 1..]))
        })
        .collect();
    let values = |name: &str| -> Vec<&[u8]> {
        fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
            .collect()
    };
    assert_eq!(
        values("sec-websocket-accept"),
        [ACCEPT.as_bytes()],
        "accepted with the wrong Sec-WebSocket-Accept"
    );
    assert!(values("upgrade")
        .iter()
        .any(|v| list_has_token(v, "websocket")));
    assert!(values("connection")
        .iter()
        .any(|v| list_has_token(v, "upgrade")));
    match values("sec-websocket-protocol")[..] {
        [] => None,
        [p] => {
            assert!(OFFERED.iter().any(|o| o.as_bytes() == p), "protocol {p:?}");
            Some(String::from_utf8(p.to_vec()).expect("offered names are ASCII"))
        }
        ref many => panic!("accepted {} subprotocol headers", many.len()),
    }
}
