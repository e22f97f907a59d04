//! permessage-deflate negotiation (RFC 7692 §5, §7.1) on arbitrary
//! `Sec-WebSocket-Extensions` values, both sides, with fuzzed local
//! policies (window bits passed raw, so the clamping is exercised too):
//!
//! - `DeflateConfig::negotiate` (server) never panics, agrees to nothing
//!   when disabled, and an agreement stays within the policy and RFC 7692:
//!   the server's window is 9..=15 (8 is declined: zlib cannot produce it)
//!   and at most our limit, the client's 8..=15 (a client may promise 8;
//!   it is then inflated with 9) and at most our limit, every window
//!   actually used (`compress_window_bits`, `decompress_window_bits`) is
//!   9..=15, and "no context takeover" is there wherever the policy asks
//!   for it;
//! - its response is a plain ASCII header value holding exactly one
//!   well-formed `permessage-deflate` element, and a client that made the
//!   accepted offer (no parameters of its own; its own window the one the
//!   server recorded) reads it back as the same agreement;
//! - `DeflateConfig::accept_response` (client) never panics; `Ok(None)`
//!   exactly when the values hold no element; an accepted answer has
//!   windows in 8..=15, no larger than we offered, the "no context
//!   takeover" we asked for, and usable windows of 9..=15;
//! - our client's own offer is always accepted by our server, and the
//!   answer read back by that client is the same agreement.
//!
//! Input layout: 6 bytes of policy (server: flags with bit 0
//! server_no_context_takeover, bit 1 client_no_context_takeover, bit 2
//! disabled; its server_max_window_bits; its client_max_window_bits; then
//! the same three for the client), then header values separated by `\n`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsreactor::ext::header::extensions;
use wsreactor::ext::{DeflateConfig, DeflateParams, PERMESSAGE_DEFLATE};
use wsreactor::proto::Role;

fn policy(flags: u8, server_bits: u8, client_bits: u8) -> DeflateConfig {
    DeflateConfig {
        enabled: flags & 4 == 0,
        server_no_context_takeover: flags & 1 != 0,
        client_no_context_takeover: flags & 2 != 0,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        ..DeflateConfig::default()
    }
}

/// Window bits as the crate documents the clamping: into 9..=15.
fn clamp(bits: u8) -> u8 {
    bits.clamp(9, 15)
}

/// The windows both ends actually compress and inflate with.
fn usable_windows(p: &DeflateParams, role: Role) {
    let d = p.decompress_window_bits(role);
    assert!((9..=15).contains(&d), "{role:?} inflates with {d}: {p:?}");
    if let Some(c) = p.compress_window_bits(role) {
        assert!((9..=15).contains(&c), "{role:?} compresses with {c}: {p:?}");
    }
}

/// The server side on `values`.
fn server(cfg: &DeflateConfig, values: &[&[u8]]) {
    let Some(agreed) = cfg.negotiate(values.iter().copied()) else {
        return;
    };
    assert!(cfg.enabled, "disabled, yet agreed to {values:?}");
    let p = agreed.params;
    let (s, c) = (p.server_max_window_bits, p.client_max_window_bits);
    assert!((9..=15).contains(&s), "server window {s}: {p:?}");
    assert!(s <= clamp(cfg.server_max_window_bits), "{p:?} for {cfg:?}");
    assert!((8..=15).contains(&c), "client window {c}: {p:?}");
    assert!(c <= clamp(cfg.client_max_window_bits), "{p:?} for {cfg:?}");
    assert!(p.server_no_context_takeover || !cfg.server_no_context_takeover);
    assert!(p.client_no_context_takeover || !cfg.client_no_context_takeover);
    assert!(p.compress_window_bits(Role::Server).is_some());
    usable_windows(&p, Role::Server);
    usable_windows(&p, Role::Client);

    // The response: ASCII, one well-formed permessage-deflate element.
    let response = agreed.response.as_str();
    assert!(
        response.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
        "{response:?}"
    );
    let elements: Vec<_> = extensions([response.as_bytes()]).collect();
    assert_eq!(elements.len(), 1, "{response:?}");
    let element = elements[0].as_ref().expect("well-formed response");
    assert_eq!(element.name, PERMESSAGE_DEFLATE.as_bytes());

    // The client that made the accepted offer reads the same agreement. It
    // asked for nothing (parameters it asked for only narrow what it
    // accepts), and its own window is what the server recorded: the
    // promise of its offer, or the server's limit. A promise of 8 is the
    // one thing a `DeflateConfig` cannot state (it clamps to 9..=15).
    let client = DeflateConfig {
        enabled: true,
        client_max_window_bits: c.max(9),
        ..DeflateConfig::default()
    };
    let read_back = client
        .accept_response([response.as_bytes()])
        .unwrap_or_else(|e| panic!("client refused {response:?}: {e}"))
        .expect("client sees the agreement");
    let want = DeflateParams {
        client_max_window_bits: c.max(9),
        ..p
    };
    assert_eq!(read_back, want, "{response:?}");
}

/// The client side on `values`.
fn client(cfg: &DeflateConfig, values: &[&[u8]]) {
    let result = cfg.accept_response(values.iter().copied());
    let elements = extensions(values.iter().copied()).count();
    match result {
        Ok(None) => assert_eq!(elements, 0, "{values:?} ignored"),
        Ok(Some(p)) => {
            assert!(cfg.enabled, "disabled, yet accepted {values:?}");
            assert_eq!(elements, 1, "{values:?}");
            let (s, c) = (p.server_max_window_bits, p.client_max_window_bits);
            assert!((8..=15).contains(&s), "server window {s}: {p:?}");
            assert!(s <= clamp(cfg.server_max_window_bits), "{p:?} for {cfg:?}");
            assert!((8..=15).contains(&c), "client window {c}: {p:?}");
            assert!(c <= clamp(cfg.client_max_window_bits), "{p:?} for {cfg:?}");
            assert!(p.server_no_context_takeover || !cfg.server_no_context_takeover);
            assert!(p.client_no_context_takeover || !cfg.client_no_context_takeover);
            usable_windows(&p, Role::Client);
            usable_windows(&p, Role::Server);
        }
        Err(_) => assert!(elements > 0, "refused an empty answer {values:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let &[sf, ss, sc, cf, cs, cc, ref rest @ ..] = data else {
        return;
    };
    let server_cfg = policy(sf, ss, sc);
    let client_cfg = policy(cf, cs, cc);
    let values: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
    server(&server_cfg, &values);
    client(&client_cfg, &values);

    // Our own client and server always agree.
    let Some(offer) = client_cfg.offer() else {
        assert!(!client_cfg.enabled);
        return;
    };
    let agreed = server_cfg.negotiate([offer.as_str().as_bytes()]);
    let Some(agreed) = agreed else {
        assert!(!server_cfg.enabled, "{offer} declined by {server_cfg:?}");
        return;
    };
    server(&server_cfg, &[offer.as_str().as_bytes()]);
    let read_back = client_cfg.accept_response([agreed.response.as_str().as_bytes()]);
    assert_eq!(
        read_back,
        Ok(Some(agreed.params)),
        "{offer} -> {}",
        agreed.response
    );
});
