//! Gateway authentication: every way a JWT fails at the handshake and on
//! `refresh`, the `rooms` claim, expiry while connected (close 4001), and
//! the three algorithms. Keys: an HS256 secret made here, RS256 and ES256
//! test-only PEM keys in tests/data/gateway (see its README).
#![cfg(feature = "gateway")]

mod gateway_support;

use base64::Engine as _;
use gateway_support::Harness;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use wsreactor::gateway::{Action, Auth, Encoding, GatewayConfig, JwtVerifier, CLOSE_TOKEN_EXPIRED};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
const NOW_S: u64 = 1_700_000_000;
const NOW_MS: u64 = NOW_S * 1000;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/gateway/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn hs(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

fn signed(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn claims(sub: &str, exp_in_s: i64) -> Value {
    json!({"sub": sub, "exp": (NOW_S as i64 + exp_in_s)})
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// A token with this header and claims and a junk signature.
fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(b"sig")
    )
}

fn hs_gateway() -> Harness {
    let mut h = Harness::new(
        GatewayConfig::default(),
        Auth::Jwt(JwtVerifier::hs256(SECRET).unwrap()),
    );
    h.now = NOW_MS;
    h
}

fn label(h: &mut Harness, target: &str, bearer: Option<&str>) -> &'static str {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &[u8])> = auth
        .iter()
        .map(|a| ("Authorization", a.as_bytes()))
        .collect();
    match h.gw.authenticate(target, headers, h.now) {
        Ok(id) => panic!("accepted {id:?}"),
        Err(e) => {
            assert_eq!(e.http_status(), 401, "{e}");
            e.label()
        }
    }
}

#[test]
fn hs256_token_from_header_or_query() {
    let mut h = hs_gateway();
    let t = hs(&claims("alice", 60));
    let id =
        h.gw.authenticate(
            "/ws",
            [("authorization", format!("Bearer {t}").as_bytes())],
            h.now,
        )
        .unwrap();
    assert_eq!(&*id.user, "alice");
    assert_eq!(id.expires_ms, Some(NOW_MS + 60_000));
    assert!(id.rooms.is_none());
    let id =
        h.gw.authenticate(&format!("/ws?token={t}"), [], h.now)
            .unwrap();
    assert_eq!(&*id.user, "alice");
    // The user is `from` on messages; `?name=` is ignored with a key.
    let id =
        h.gw.authenticate(&format!("/ws?name=mallory&token={t}"), [], h.now)
            .unwrap();
    h.gw.open(1, id, Encoding::Json, h.now);
    h.enc.insert(1, Encoding::Json);
    h.join(1, "r");
    assert_eq!(h.publish(1, "r", json!(1)).one(1)["from"], "alice");
}

#[test]
fn every_handshake_failure_is_401_with_its_reason() {
    let mut h = hs_gateway();
    let good = claims("alice", 60);
    let rsa = EncodingKey::from_rsa_pem(&data("rsa_private.pem")).unwrap();
    let hs384 = encode(
        &Header::new(Algorithm::HS384),
        &good,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    let other_secret = encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(b"another secret, also long enough!!").unwrap(),
    )
    .unwrap();
    let valid = hs(&good);
    let (head, rest) = valid.split_once('.').unwrap();
    let tampered_claims = format!(
        "{head}.{}.{}",
        b64(claims("root", 60).to_string().as_bytes()),
        rest.split_once('.').unwrap().1
    );
    let cases: Vec<(String, Option<String>, &str)> = vec![
        ("/ws".into(), None, "missing"),
        ("/ws?token=".into(), None, "missing"),
        ("/ws".into(), Some(String::new()), "missing"),
        ("/ws?token=garbage".into(), None, "malformed"),
        ("/ws?token=a.b".into(), None, "malformed"),
        ("/ws?token=a.b.c.d".into(), None, "malformed"),
        ("/ws?token=!!!.e30.e30".into(), None, "malformed"),
        (
            format!("/ws?token={}", unsigned(&json!("x"), &good)),
            None,
            "malformed",
        ),
        (
            format!("/ws?token={}", unsigned(&json!({"typ": "JWT"}), &good)),
            None,
            "malformed",
        ),
        // Signed, but the claims are not an object.
        (format!("/ws?token={}", hs(&json!([1]))), None, "malformed"),
        // Not signed with the key: the signature is checked before the claims.
        (
            format!(
                "/ws?token={}",
                unsigned(&json!({"alg": "HS256"}), &json!([1]))
            ),
            None,
            "bad_signature",
        ),
        (
            format!("/ws?token={}", unsigned(&json!({"alg": "none"}), &good)),
            None,
            "alg_none",
        ),
        (
            format!("/ws?token={}", unsigned(&json!({"alg": "None"}), &good)),
            None,
            "alg_none",
        ),
        // alg none with the signature left empty, as such tokens usually come.
        (
            format!(
                "/ws?token={}.{}.",
                b64(br#"{"alg":"none"}"#),
                b64(good.to_string().as_bytes())
            ),
            None,
            "alg_none",
        ),
        (format!("/ws?token={hs384}"), None, "wrong_alg"),
        (
            "/ws".into(),
            Some(signed(Algorithm::RS256, &rsa, &good)),
            "wrong_alg",
        ),
        (format!("/ws?token={other_secret}"), None, "bad_signature"),
        (
            format!("/ws?token={tampered_claims}"),
            None,
            "bad_signature",
        ),
        (
            format!("/ws?token={}", hs(&claims("alice", 0))),
            None,
            "expired",
        ),
        (
            format!("/ws?token={}", hs(&claims("alice", -3600))),
            None,
            "expired",
        ),
        (
            format!("/ws?token={}", hs(&json!({"sub": "alice"}))),
            None,
            "claims",
        ),
        (
            format!("/ws?token={}", hs(&json!({"sub": "alice", "exp": "soon"}))),
            None,
            "claims",
        ),
        (
            format!("/ws?token={}", hs(&json!({"exp": NOW_S + 60}))),
            None,
            "claims",
        ),
        (
            format!("/ws?token={}", hs(&json!({"sub": 5, "exp": NOW_S + 60}))),
            None,
            "claims",
        ),
        (
            format!("/ws?token={}", hs(&json!({"sub": "", "exp": NOW_S + 60}))),
            None,
            "claims",
        ),
        (
            format!(
                "/ws?token={}",
                hs(&json!({"sub": "a", "exp": NOW_S + 60, "rooms": "lobby"}))
            ),
            None,
            "claims",
        ),
        (
            format!(
                "/ws?token={}",
                hs(&json!({"sub": "a", "exp": NOW_S + 60, "rooms": ["bad room"]}))
            ),
            None,
            "claims",
        ),
        (
            format!(
                "/ws?token={}",
                hs(&json!({"sub": "a", "exp": NOW_S + 60, "nbf": NOW_S + 10}))
            ),
            None,
            "not_yet_valid",
        ),
    ];
    let n = cases.len() as u64;
    for (target, bearer, want) in cases {
        assert_eq!(
            label(&mut h, &target, bearer.as_deref()),
            want,
            "{target} {bearer:?}"
        );
    }
    // Basic auth is not a token.
    let e =
        h.gw.authenticate("/ws", [("Authorization", &b"Basic YTpi"[..])], h.now)
            .unwrap_err();
    assert_eq!(e.label(), "malformed");
    let m = h.gw.metrics();
    assert_eq!(m.auth_failures.iter().sum::<u64>(), n + 1);
    assert_eq!(m.auth_failures_for("alg_none"), 3);
    assert_eq!(m.auth_failures_for("expired"), 2);
}

#[test]
fn rs256_and_es256_from_pem_public_keys() {
    let rsa = EncodingKey::from_rsa_pem(&data("rsa_private.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&data("ec_private.pem")).unwrap();
    let ec_other = EncodingKey::from_ec_pem(&data("ec_other_private.pem")).unwrap();
    let good = claims("bob", 60);

    let v = JwtVerifier::public_key_pem(&data("rsa_public.pem")).unwrap();
    assert_eq!(v.algorithm(), "RS256");
    assert_eq!(
        &*v.verify(&signed(Algorithm::RS256, &rsa, &good), NOW_MS)
            .unwrap()
            .user,
        "bob"
    );
    assert_eq!(
        v.verify(&signed(Algorithm::ES256, &ec, &good), NOW_MS)
            .unwrap_err()
            .label(),
        "wrong_alg"
    );
    // Algorithm confusion: HS256 keyed with the RSA public key's PEM text.
    let forged = signed(
        Algorithm::HS256,
        &EncodingKey::from_secret(&data("rsa_public.pem")).unwrap(),
        &good,
    );
    assert_eq!(v.verify(&forged, NOW_MS).unwrap_err().label(), "wrong_alg");
    assert_eq!(
        v.verify(&signed(Algorithm::RS256, &rsa, &claims("bob", -1)), NOW_MS)
            .unwrap_err()
            .label(),
        "expired"
    );

    let v = JwtVerifier::public_key_pem(&data("ec_public.pem")).unwrap();
    assert_eq!(v.algorithm(), "ES256");
    assert_eq!(
        &*v.verify(&signed(Algorithm::ES256, &ec, &good), NOW_MS)
            .unwrap()
            .user,
        "bob"
    );
    assert_eq!(
        v.verify(&signed(Algorithm::ES256, &ec_other, &good), NOW_MS)
            .unwrap_err()
            .label(),
        "bad_signature"
    );
    assert_eq!(
        v.verify(&signed(Algorithm::RS256, &rsa, &good), NOW_MS)
            .unwrap_err()
            .label(),
        "wrong_alg"
    );
    let forged = signed(
        Algorithm::HS256,
        &EncodingKey::from_secret(&data("ec_public.pem")).unwrap(),
        &good,
    );
    assert_eq!(v.verify(&forged, NOW_MS).unwrap_err().label(), "wrong_alg");

    // Private keys are refused as verification keys.
    assert!(JwtVerifier::public_key_pem(&data("ec_private.pem")).is_err());
    let dir = std::env::temp_dir().join(format!("wsreactor-gw-key-{}", std::process::id()));
    std::fs::write(&dir, [SECRET, b"\n"].concat()).unwrap();
    let v = JwtVerifier::hs256_file(&dir).unwrap();
    std::fs::remove_file(&dir).unwrap();
    assert!(
        v.verify(&hs(&good), NOW_MS).is_ok(),
        "the trailing newline is not part of the secret"
    );
}

#[test]
fn rooms_claim_limits_joins() {
    let mut h = hs_gateway();
    let t = hs(&json!({"sub": "carol", "exp": NOW_S + 60, "rooms": ["lobby", "team:*"]}));
    let id =
        h.gw.authenticate(&format!("/ws?token={t}"), [], h.now)
            .unwrap();
    h.gw.open(1, id, Encoding::Protobuf, h.now);
    h.enc.insert(1, Encoding::Protobuf);
    assert_eq!(h.join(1, "lobby").one(1)["type"], "joined");
    assert_eq!(h.join(1, "team:red").one(1)["type"], "joined");
    for denied in ["lobby2", "team", "teams:red", "other"] {
        assert_eq!(h.join(1, denied).error_code(1), "forbidden", "{denied}");
    }
    assert_eq!(h.gw.rooms_of(1).len(), 2);
}

fn connect_with(h: &mut Harness, conn: u64, claims: &Value) {
    let id =
        h.gw.authenticate(&format!("/ws?token={}", hs(claims)), [], h.now)
            .unwrap();
    h.gw.open(conn, id, Encoding::Json, h.now);
    h.enc.insert(conn, Encoding::Json);
    h.flush();
}

#[test]
fn expiry_while_connected_closes_with_4001() {
    let mut h = hs_gateway();
    connect_with(&mut h, 1, &claims("alice", 10));
    connect_with(&mut h, 2, &claims("bob", 3600));
    h.join(1, "r");
    h.join(2, "r");
    assert_eq!(h.gw.next_deadline(), Some(NOW_MS + 10_000));
    h.gw.tick(NOW_MS + 9_999);
    assert!(h.gw.actions().next().is_none());
    h.now = NOW_MS + 10_000;
    h.gw.tick(h.now);
    let actions: Vec<Action<u64>> = h.gw.actions().collect();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Unsubscribe { conn: 1, .. })));
    assert!(matches!(
        actions.last(),
        Some(Action::Close {
            conn: 1,
            code: CLOSE_TOKEN_EXPIRED,
            ..
        })
    ));
    h.fan.apply(actions, &mut Vec::new());
    // Out of the room at once: no more messages, not in presence, and its
    // frames until the transport closes it are ignored.
    let e = h.publish(2, "r", json!(1));
    assert!(e.of(1).is_empty());
    assert_eq!(
        h.req(2, json!({"op": "presence", "room": "r"})).one(2)["users"],
        json!(["bob"])
    );
    assert!(h.publish(1, "r", json!(1)).is_empty());
    // Next: the room's history (5 minutes after the message), before bob's expiry.
    assert_eq!(h.gw.next_deadline(), Some(h.now + 300_000));
    h.close(1);
    assert_eq!(h.gw.metrics().expired, 1);
    assert_eq!(h.gw.connections(), 1);
}

#[test]
fn refresh_extends_and_bad_refreshes_change_nothing() {
    let mut h = hs_gateway();
    connect_with(&mut h, 1, &claims("alice", 10));
    h.join(1, "r");
    let later = hs(&json!({"sub": "alice", "exp": NOW_S + 100, "rooms": ["r", "s"]}));
    for (token, why) in [
        (hs(&claims("mallory", 100)), "other_user"),
        (hs(&claims("alice", -1)), "expired"),
        (
            unsigned(&json!({"alg": "none"}), &claims("alice", 100)),
            "alg_none",
        ),
        ("x".into(), "malformed"),
    ] {
        let e = h.req(1, json!({"op": "refresh", "token": token, "id": why}));
        assert_eq!(e.error_code(1), "forbidden", "{why}");
        assert_eq!(e.one(1)["id"], why);
        assert!(e.one(1)["message"]
            .as_str()
            .unwrap()
            .starts_with("refresh rejected"));
        assert_eq!(h.gw.metrics().auth_failures_for(why), 1, "{why}");
    }
    assert_eq!(h.gw.next_deadline(), Some(NOW_MS + 10_000));
    let e = h.req(1, json!({"op": "refresh", "token": later, "id": 1}));
    assert_eq!(e.one(1), json!({"type": "ack", "id": 1}));
    assert_eq!(h.gw.next_deadline(), Some(NOW_MS + 100_000));
    h.gw.tick(NOW_MS + 10_000);
    assert!(
        h.gw.actions().next().is_none(),
        "the old expiry is disarmed"
    );
    // The new token's rooms claim applies to later joins.
    assert_eq!(h.join(1, "s").one(1)["type"], "joined");
    assert_eq!(h.join(1, "t").error_code(1), "forbidden");
    h.gw.tick(NOW_MS + 100_000);
    let actions: Vec<Action<u64>> = h.gw.actions().collect();
    assert!(matches!(
        actions.last(),
        Some(Action::Close {
            conn: 1,
            code: 4001,
            ..
        })
    ));
}
