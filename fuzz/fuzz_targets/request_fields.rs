//! `handshake::client::check_header` and `check_protocol` (what a client
//! refuses to put in its opening handshake) against an oracle written from
//! RFC 9110 §5.6.2 and §5.5, and what they let through read back by the
//! server's own parser as exactly the fields written.
//!
//! - a header passes exactly when its name is a non-empty token that the
//!   handshake does not set itself and its value has no control character
//!   but tab; a subprotocol passes exactly when it is a token;
//! - a request written with fields that pass is one complete, valid
//!   upgrade (`parse_request` + `classify`) of exactly the written length,
//!   with the extra header present once, its value as written (less the
//!   surrounding whitespace HTTP drops), and the subprotocol offered alone.
//!
//! Input layout: one byte `n` (name length), one byte `p` (protocol
//! length), then the name, the protocol and the value (UTF-8, else the
//! input is skipped).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsreactor::handshake::client::{check_header, check_protocol, write_request};
use wsreactor::handshake::server::{classify, parse_request, Outcome};
use wsreactor::handshake::{Limits, Status};

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(tchar)
}

fn reserved(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "host" | "upgrade" | "connection" | "content-length" | "transfer-encoding"
    ) || n.starts_with("sec-websocket-")
}

fuzz_target!(|data: &[u8]| {
    let [n, p, rest @ ..] = data else { return };
    let (n, p) = (usize::from(*n), usize::from(*p));
    if rest.len() < n + p {
        return;
    }
    let (Ok(name), Ok(protocol), Ok(value)) = (
        std::str::from_utf8(&rest[..n]),
        std::str::from_utf8(&rest[n..n + p]),
        std::str::from_utf8(&rest[n + p..]),
    ) else {
        return;
    };

    let value_ok = value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    let header_ok = token(name) && !reserved(name) && value_ok;
    assert_eq!(
        check_header(name, value).is_ok(),
        header_ok,
        "{name:?}: {value:?}"
    );
    assert_eq!(
        check_protocol(protocol).is_ok(),
        token(protocol),
        "{protocol:?}"
    );
    if !header_ok || !token(protocol) {
        return;
    }

    let mut out = Vec::new();
    let key = write_request(
        &mut out,
        "h",
        "/",
        &[7; 16],
        &[protocol],
        None,
        &[(name, value)],
    );
    let mut slots = [httparse::EMPTY_HEADER; 16];
    let req = match parse_request(&out, &mut slots, &Limits::default()) {
        Ok(Status::Complete(req)) => req,
        // A value longer than the header limit is the only refusal.
        Err(_) if out.len() > Limits::default().max_header_bytes => return,
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(&out)),
    };
    assert_eq!(req.len, out.len());
    let Outcome::Upgrade(up) = classify(&req) else {
        panic!("not an upgrade: {:?}", String::from_utf8_lossy(&out));
    };
    assert_eq!(
        wsreactor::handshake::accept_key(up.key),
        key.expected_accept()
    );
    let offered: Vec<&[u8]> = up.protocols().collect();
    assert_eq!(offered, [protocol.as_bytes()]);
    let ours: Vec<&[u8]> = up
        .headers()
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect();
    assert_eq!(ours, [value.trim_matches([' ', '\t']).as_bytes()]);
});
