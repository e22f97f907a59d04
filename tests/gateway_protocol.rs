//! The gateway's protocol rules, end to end through `Gateway` and the
//! in-memory fan-out: joins, publishes, leaves, presence, acks, errors,
//! limits, history and recovery, mixed encodings.
#![cfg(feature = "gateway")]

mod gateway_support;

use gateway_support::{decode, Harness};
use serde_json::{json, Value};
use wsreactor::gateway::{
    Action, Auth, Encoding, ErrorCode, GatewayConfig, HistoryConfig, Limits, Rate,
};

const J: Encoding = Encoding::Json;
const P: Encoding = Encoding::Protobuf;

#[test]
fn join_answers_with_the_last_seq_and_echoes_the_id() {
    let mut h = Harness::anonymous();
    h.connect(1, "ann", J);
    let e = h.req(1, json!({"op": "join", "room": "lobby", "id": 7}));
    assert_eq!(
        e.one(1),
        json!({"type": "joined", "room": "lobby", "seq": 0, "recovered": true, "id": 7})
    );
    h.publish(1, "lobby", json!("hi"));
    h.connect(2, "bob", J);
    let e = h.req(2, json!({"op": "join", "room": "lobby", "id": "j-1"}));
    assert_eq!(
        e.one(2),
        json!({"type": "joined", "room": "lobby", "seq": 1, "recovered": true, "id": "j-1"})
    );
    assert_eq!(h.gw.room_count(), 1);
}

#[test]
fn messages_reach_exactly_the_members_with_seq_from_and_ts() {
    let mut h = Harness::anonymous();
    for (c, n) in [(1, "ann"), (2, "bob"), (3, "cy")] {
        h.connect(c, n, J);
    }
    h.join(1, "lobby");
    h.join(2, "lobby");
    h.join(3, "other");
    for i in 1..=3u64 {
        h.now += 10;
        let e = h.publish(2, "lobby", json!({"n": i, "s": "x\"y"}));
        let expect = json!({"type": "message", "room": "lobby", "seq": i, "from": "bob", "ts": h.now, "data": {"n": i, "s": "x\"y"}});
        assert_eq!(e.one(1), expect);
        // The publisher is a member: it gets the message too (no ack without id).
        assert_eq!(e.one(2), expect);
        assert!(e.of(3).is_empty());
    }
    // Seqs are per room.
    let e = h.publish(3, "other", json!(null));
    assert_eq!(e.one(3)["seq"], 1);
    assert!(e.of(1).is_empty() && e.of(2).is_empty());
}

#[test]
fn publish_with_an_id_is_acked_after_the_message() {
    let mut h = Harness::anonymous();
    h.connect(1, "ann", J);
    h.join(1, "r");
    let e = h.req(
        1,
        json!({"op": "publish", "room": "r", "data": 1, "id": "p1"}),
    );
    let v = e.of(1);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["type"], "message");
    assert_eq!(v[1], json!({"type": "ack", "id": "p1"}));
}

#[test]
fn data_is_any_json_value_kept_verbatim() {
    let mut h = Harness::anonymous();
    h.connect(1, "ann", J);
    h.join(1, "r");
    for data in [
        "null",
        "true",
        "-1.5e3",
        "\"é\\u0000\"",
        "[1,[2,{}]]",
        "{\"a\":{\"b\":[]}}",
    ] {
        let text = format!(r#"{{"op":"publish","room":"r","data":{data}}}"#);
        h.gw.on_frame(1, text.as_bytes(), false, h.now);
        let out = h.flush();
        let s = std::str::from_utf8(&out[0].bytes).unwrap();
        assert!(s.ends_with(&format!(",\"data\":{data}}}")), "{s}");
    }
}

#[test]
fn leave_stops_delivery_and_repeats_are_not_joined() {
    let mut h = Harness::anonymous();
    h.connect(1, "ann", J);
    h.connect(2, "bob", J);
    h.join(1, "r");
    h.join(2, "r");
    let e = h.req(1, json!({"op": "leave", "room": "r", "id": 3}));
    assert_eq!(e.one(1), json!({"type": "left", "room": "r", "id": 3}));
    let e = h.publish(2, "r", json!(1));
    assert!(e.of(1).is_empty());
    assert_eq!(e.one(2)["type"], "message");
    assert_eq!(
        h.req(1, json!({"op": "leave", "room": "r"})).error_code(1),
        "not_joined"
    );
    assert_eq!(h.publish(1, "r", json!(1)).error_code(1), "not_joined");
    assert_eq!(
        h.req(1, json!({"op": "presence", "room": "r"}))
            .error_code(1),
        "not_joined"
    );
    // Joining twice is one membership: one message per publish.
    h.join(2, "r");
    let e = h.publish(2, "r", json!(2));
    assert_eq!(e.of(2).len(), 1);
}

#[test]
fn presence_counts_each_user_once() {
    let mut h = Harness::anonymous();
    h.connect(1, "zed", J);
    h.connect(2, "ann", J);
    h.connect(3, "ann", P);
    h.connect(4, "bob", J);
    for c in 1..=3 {
        h.join(c, "r");
    }
    h.join(4, "elsewhere");
    let e = h.req(1, json!({"op": "presence", "room": "r", "id": 1}));
    assert_eq!(
        e.one(1),
        json!({"type": "presence", "room": "r", "users": ["ann", "zed"], "id": 1})
    );
    // One of ann's two connections leaves: ann is still there.
    h.req(2, json!({"op": "leave", "room": "r"}));
    let e = h.req(3, json!({"op": "presence", "room": "r"}));
    assert_eq!(e.one(3)["users"], json!(["ann", "zed"]));
    // The other one closes: ann is gone.
    h.close(3);
    let e = h.req(1, json!({"op": "presence", "room": "r"}));
    assert_eq!(e.one(1)["users"], json!(["zed"]));
    assert_eq!(h.gw.metrics().members, 2);
    assert_eq!(h.gw.metrics().connections, 3);
}

#[test]
fn close_unsubscribes_and_empties_rooms() {
    let mut h = Harness::anonymous();
    h.connect(1, "ann", J);
    h.connect(2, "bob", P);
    h.join(1, "a");
    h.join(1, "b");
    h.join(2, "a");
    assert_eq!(h.fan.topic_count(), 3);
    h.close(1);
    assert_eq!(h.fan.topic_count(), 1);
    assert_eq!(h.gw.room_count(), 1);
    h.close(2);
    assert_eq!(h.fan.topic_count(), 0);
    assert_eq!(h.gw.room_count(), 0);
    let m = h.gw.metrics();
    assert_eq!((m.connections, m.rooms, m.members), (0, 0, 0));
    // Frames from a closed connection are ignored.
    h.gw.on_frame(1, b"{}", false, h.now);
    assert!(h.flush().is_empty());
}

/// (frame, expected code, expected id echoed).
fn malformed_cases() -> Vec<(String, &'static str, Option<Value>)> {
    let long = "a".repeat(129);
    let mut v: Vec<(String, &'static str, Option<Value>)> = vec![
        ("not json".into(), "bad_request", None),
        ("".into(), "bad_request", None),
        ("[1,2]".into(), "bad_request", None),
        ("\"join\"".into(), "bad_request", None),
        ("{} trailing".into(), "bad_request", None),
        ("{}".into(), "bad_request", None),
        (
            r#"{"op":"dance","id":1}"#.into(),
            "bad_request",
            Some(json!(1)),
        ),
        (
            r#"{"op":5,"id":"x"}"#.into(),
            "bad_request",
            Some(json!("x")),
        ),
        (
            r#"{"op":"join","id":2}"#.into(),
            "bad_request",
            Some(json!(2)),
        ),
        (r#"{"op":"join","room":5}"#.into(), "bad_request", None),
        (r#"{"op":"join","room":null}"#.into(), "bad_request", None),
        (r#"{"op":"join","room":""}"#.into(), "bad_request", None),
        (
            format!(r#"{{"op":"join","room":"{long}","id":3}}"#),
            "bad_request",
            Some(json!(3)),
        ),
        (r#"{"op":"join","room":"a b"}"#.into(), "bad_request", None),
        (r#"{"op":"join","room":"a*"}"#.into(), "bad_request", None),
        (
            r#"{"op":"join","room":"r","since":-1}"#.into(),
            "bad_request",
            None,
        ),
        (
            r#"{"op":"join","room":"r","since":1.5}"#.into(),
            "bad_request",
            None,
        ),
        (
            r#"{"op":"join","room":"r","since":"3"}"#.into(),
            "bad_request",
            None,
        ),
        (
            r#"{"op":"join","room":"r","since":18446744073709551616}"#.into(),
            "bad_request",
            None,
        ),
        (
            r#"{"op":"join","room":"r","extra":1,"id":4}"#.into(),
            "bad_request",
            Some(json!(4)),
        ),
        (
            r#"{"op":"leave","room":"r","since":1}"#.into(),
            "bad_request",
            None,
        ),
        (
            r#"{"op":"join","room":"r","room":"s"}"#.into(),
            "bad_request",
            None,
        ),
        (r#"{"op":"publish","room":"r"}"#.into(), "bad_request", None),
        (r#"{"op":"publish","data":1}"#.into(), "bad_request", None),
        (r#"{"op":"presence"}"#.into(), "bad_request", None),
        (r#"{"op":"refresh"}"#.into(), "bad_request", None),
        (r#"{"op":"refresh","token":7}"#.into(), "bad_request", None),
        (
            r#"{"op":"join","room":"r","id":{"a":1}}"#.into(),
            "bad_request",
            None,
        ),
        (
            r#"{"op":"join","room":"r","id":[1]}"#.into(),
            "bad_request",
            None,
        ),
        (
            r#"{"op":"join","room":"r","id":true}"#.into(),
            "bad_request",
            None,
        ),
        (
            format!(r#"{{"op":"join","room":"r","id":"{}"}}"#, "i".repeat(80)),
            "bad_request",
            None,
        ),
        (
            r#"{"op":"publish","room":"r","data":[1,}"#.into(),
            "bad_request",
            None,
        ),
        (
            format!("{}{}", "[".repeat(200), "]".repeat(200)),
            "bad_request",
            None,
        ),
        (
            format!(
                r#"{{"op":"publish","room":"r","data":[{}1{}]}}"#,
                "[".repeat(300),
                "]".repeat(300)
            ),
            "bad_request",
            None,
        ),
    ];
    let big = format!(
        r#"{{"op":"publish","room":"r","data":"{}","id":9}}"#,
        "x".repeat(64 * 1024)
    );
    v.push((big, "too_large", Some(json!(9))));
    v.push((" ".repeat(70 * 1024), "too_large", None));
    v
}

#[test]
fn malformed_json_gets_an_error_and_the_connection_stays() {
    let mut h = Harness::anonymous();
    h.connect(1, "ann", J);
    h.join(1, "r");
    for (frame, code, id) in malformed_cases() {
        let e = h.raw(1, frame.as_bytes(), false);
        let ev = e.one(1);
        let shown: String = frame.chars().take(60).collect();
        assert_eq!(ev["type"], "error", "{shown}");
        assert_eq!(ev["code"], code, "{shown}: {ev}");
        assert_eq!(ev.get("id").cloned(), id, "{shown}: {ev}");
        assert!(ev["message"].as_str().is_some_and(|m| !m.is_empty()));
        // Still a member, still served.
        let e = h.publish(1, "r", json!("ok"));
        assert_eq!(e.one(1)["type"], "message", "after {shown}");
    }
    assert!(h.gw.metrics().errors_for(ErrorCode::BadRequest) > 30);
}

#[test]
fn malformed_protobuf_and_wrong_frame_types() {
    let mut h = Harness::anonymous();
    h.connect(1, "ann", J);
    h.connect(2, "bob", P);
    h.join(2, "r");
    // A binary frame on a JSON connection, a text frame on a Protobuf one.
    assert_eq!(
        h.raw(1, b"\x12\x03\x0a\x01r", true).error_code(1),
        "bad_request"
    );
    assert_eq!(
        h.raw(2, br#"{"op":"join","room":"r"}"#, false)
            .error_code(2),
        "bad_request"
    );
    // Not Protobuf, an empty request (no op), a truncated one.
    for bytes in [&b"\xff\xff\xff"[..], b"", b"\x12\x05\x0a\x01"] {
        assert_eq!(
            h.raw(2, bytes, true).error_code(2),
            "bad_request",
            "{bytes:?}"
        );
    }
    for (req, code) in [
        (
            json!({"op": "join", "room": "bad room", "id": "q"}),
            "bad_request",
        ),
        (
            json!({"op": "publish", "room": "r", "data": "x".repeat(64 * 1024)}),
            "too_large",
        ),
        (json!({"op": "leave", "room": "nope"}), "not_joined"),
    ] {
        let e = h.req(2, req.clone());
        assert_eq!(e.error_code(2), code, "{req}");
        if req.get("id").is_some() {
            assert_eq!(e.one(2)["id"], "q");
        }
    }
    // Publish data that is not one JSON value.
    let pb = wsreactor::gateway::protocol::pb::Request {
        id: Some("d".into()),
        op: Some(wsreactor::gateway::protocol::pb::request::Op::Publish(
            wsreactor::gateway::protocol::pb::Publish {
                room: "r".into(),
                data: b"{nope".to_vec(),
            },
        )),
    };
    let e = h.raw(2, &prost::Message::encode_to_vec(&pb), true);
    assert_eq!(e.one(2)["code"], "bad_request");
    assert_eq!(e.one(2)["id"], "d");
    // Still working.
    assert_eq!(h.publish(2, "r", json!([1])).one(2)["data"], json!([1]));
}

#[test]
fn publish_rate_limit_is_a_token_bucket() {
    let mut h = Harness::anonymous();
    h.connect(1, "ann", J);
    h.join(1, "r");
    for i in 0..40 {
        assert_eq!(
            h.publish(1, "r", json!(i)).one(1)["type"],
            "message",
            "publish {i}"
        );
    }
    let e = h.req(
        1,
        json!({"op": "publish", "room": "r", "data": 0, "id": "over"}),
    );
    assert_eq!(e.error_code(1), "rate_limited");
    assert_eq!(e.one(1)["id"], "over");
    // Other requests are not publishes.
    assert_eq!(
        h.req(1, json!({"op": "presence", "room": "r"})).one(1)["type"],
        "presence"
    );
    // 20/s: one more token after 50 ms, not before.
    h.now += 49;
    assert_eq!(h.publish(1, "r", json!(0)).error_code(1), "rate_limited");
    h.now += 1;
    assert_eq!(h.publish(1, "r", json!(0)).one(1)["type"], "message");
    assert_eq!(h.publish(1, "r", json!(0)).error_code(1), "rate_limited");
    // Per connection: another one has its own bucket.
    h.connect(2, "bob", J);
    h.join(2, "r");
    assert_eq!(h.publish(2, "r", json!(0)).one(2)["type"], "message");
    let m = h.gw.metrics();
    assert_eq!(m.rate_limited, 3);
    assert_eq!(m.errors_for(ErrorCode::RateLimited), 3);
    // The rejected publishes got no seq: seqs have no holes.
    let seqs: Vec<u64> = h.published.iter().map(|m| m.seq()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

#[test]
fn request_rate_limit_covers_every_request() {
    let cfg = GatewayConfig {
        request_rate: Rate {
            rate_per_s: 10,
            burst: 5,
        },
        ..Default::default()
    };
    let mut h = Harness::new(cfg, Auth::Anonymous);
    h.connect(1, "ann", J);
    h.join(1, "r");
    for _ in 0..4 {
        assert_eq!(
            h.req(1, json!({"op": "presence", "room": "r"})).one(1)["type"],
            "presence"
        );
    }
    // Malformed requests count too, and keep their id when it was readable.
    let e = h.raw(1, br#"{"op":"nope","id":5}"#, false);
    assert_eq!(e.error_code(1), "rate_limited");
    assert_eq!(e.one(1)["id"], 5);
    h.now += 100;
    assert_eq!(
        h.req(1, json!({"op": "presence", "room": "r"})).one(1)["type"],
        "presence"
    );
}

#[test]
fn room_limits() {
    let cfg = GatewayConfig {
        max_rooms_per_conn: 2,
        max_rooms: 3,
        ..Default::default()
    };
    let mut h = Harness::new(cfg, Auth::Anonymous);
    h.connect(1, "ann", J);
    h.connect(2, "bob", J);
    h.join(1, "a");
    h.join(1, "b");
    assert_eq!(h.join(1, "c").error_code(1), "forbidden");
    // Rejoining a room already joined is fine at the limit.
    assert_eq!(h.join(1, "a").one(1)["type"], "joined");
    h.join(2, "c");
    assert_eq!(h.join(2, "d").error_code(2), "forbidden");
    // An existing room is no new room.
    assert_eq!(h.join(2, "a").one(2)["type"], "joined");
}

#[test]
fn refresh_on_an_anonymous_gateway_is_a_bad_request() {
    let mut h = Harness::anonymous();
    h.connect(1, "ann", J);
    let e = h.req(1, json!({"op": "refresh", "token": "a.b.c", "id": 1}));
    assert_eq!(e.error_code(1), "bad_request");
    assert_eq!(e.one(1)["id"], 1);
}

#[test]
fn recovery_replays_what_is_newer_in_order() {
    let mut h = Harness::anonymous();
    h.connect(1, "ann", J);
    h.connect(2, "bob", P);
    h.join(1, "r");
    for i in 1..=5 {
        h.publish(1, "r", json!(i));
    }
    let e = h.req(2, json!({"op": "join", "room": "r", "since": 2, "id": "x"}));
    let v = e.of(2);
    assert_eq!(
        v[0],
        json!({"type": "joined", "room": "r", "seq": 5, "recovered": true, "id": "x"})
    );
    let replay: Vec<(u64, Value)> = v[1..]
        .iter()
        .map(|m| (m["seq"].as_u64().unwrap(), m["data"].clone()))
        .collect();
    assert_eq!(replay, [(3, json!(3)), (4, json!(4)), (5, json!(5))]);
    assert!(e.of(1).is_empty());
    // Up to date: nothing replayed. Rejoining is allowed (recovery again).
    let e = h.req(2, json!({"op": "join", "room": "r", "since": 5}));
    assert_eq!(
        e.of(2),
        [json!({"type": "joined", "room": "r", "seq": 5, "recovered": true})]
    );
    // Ahead of the room (it was forgotten and started again): not recovered.
    let e = h.req(2, json!({"op": "join", "room": "r", "since": 9}));
    assert_eq!(
        e.of(2),
        [json!({"type": "joined", "room": "r", "seq": 5, "recovered": false})]
    );
    let m = h.gw.metrics();
    assert_eq!((m.history_hits, m.history_misses), (2, 1));
    // Live messages continue after the replay.
    assert_eq!(h.publish(1, "r", json!(6)).one(2)["seq"], 6);
}

#[test]
fn recovery_fails_when_history_no_longer_reaches_back() {
    let cfg = GatewayConfig {
        history: HistoryConfig {
            max_messages: 3,
            max_age_ms: 60_000,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut h = Harness::new(cfg, Auth::Anonymous);
    h.connect(1, "ann", J);
    h.connect(2, "bob", J);
    h.join(1, "r");
    for i in 1..=5 {
        h.publish(1, "r", json!(i));
    }
    // Kept: 3, 4, 5. since 2 needs 3.. : recovered; since 1 needs 2: not.
    let e = h.req(2, json!({"op": "join", "room": "r", "since": 2}));
    assert_eq!(e.of(2).len(), 4);
    let e = h.req(2, json!({"op": "join", "room": "r", "since": 1}));
    assert_eq!(
        e.of(2),
        [json!({"type": "joined", "room": "r", "seq": 5, "recovered": false})]
    );
    // By age: a minute later everything expired.
    h.now += 60_000;
    assert_eq!(h.gw.next_deadline(), Some(h.now - 60_000 + 60_000));
    h.gw.tick(h.now);
    h.flush();
    let e = h.req(2, json!({"op": "join", "room": "r", "since": 4}));
    assert_eq!(e.one(2)["recovered"], false);
    assert_eq!(e.one(2)["seq"], 5, "members keep the room's seq");
    assert_eq!(h.gw.metrics().history_bytes, 0);
}

#[test]
fn each_publish_is_encoded_at_most_once_per_encoding() {
    let mut h = Harness::anonymous();
    let (json_members, proto_members) = ([1, 2, 3], [4, 5]);
    for c in json_members {
        h.connect(c, &format!("j{c}"), J);
        h.join(c, "mixed");
    }
    for c in proto_members {
        h.connect(c, &format!("p{c}"), P);
        h.join(c, "mixed");
    }
    // From a Protobuf member, then from a JSON member.
    for from in [4, 1] {
        let out = {
            h.publish(from, "mixed", json!({"from": from}));
            h.frames.clone()
        };
        let msg = h.published.last().unwrap().clone();
        assert_eq!(msg.encode_count(), 2, "one JSON and one Protobuf encoding");
        for (conns, enc) in [(&json_members[..], J), (&proto_members[..], P)] {
            for c in conns {
                let last = out[c].last().unwrap();
                assert_eq!(last.binary, enc == P);
                assert_eq!(last.bytes, msg.bytes(enc), "conn {c}");
                assert_eq!(decode(last)["data"], json!({"from": from}));
                assert_eq!(decode(last)["seq"], msg.seq());
            }
        }
    }
    // Only JSON members: the Protobuf form is never built.
    h.connect(9, "solo", J);
    h.join(9, "plain");
    h.publish(9, "plain", json!(1));
    let msg = h.published.last().unwrap().clone();
    assert_eq!(msg.encode_count(), 1);
    // Replays reuse the stored message: a Protobuf member recovering it
    // builds that form once, a second one builds nothing.
    h.connect(10, "late", P);
    h.req(10, json!({"op": "join", "room": "plain", "since": 0}));
    assert_eq!(msg.encode_count(), 2);
    h.connect(11, "later", P);
    h.req(11, json!({"op": "join", "room": "plain", "since": 0}));
    h.connect(12, "last", J);
    h.req(12, json!({"op": "join", "room": "plain", "since": 0}));
    assert_eq!(msg.encode_count(), 2);
    assert_eq!(decode(h.frames[&11].last().unwrap())["data"], json!(1));
}

#[test]
fn no_publish_action_for_a_room_without_members_here() {
    let mut h = Harness::anonymous();
    h.connect(1, "ann", J);
    h.join(1, "r");
    h.gw.on_frame(1, br#"{"op":"publish","room":"r","data":1}"#, false, h.now);
    let actions: Vec<Action<u64>> = h.gw.actions().collect();
    assert!(matches!(&actions[..], [Action::Publish { .. }]));
    assert_eq!(h.gw.metrics().deliveries, 1);
}

#[test]
fn limits_are_configurable() {
    let cfg = GatewayConfig {
        limits: Limits {
            max_data: 10,
            max_request: 100,
            max_token: 10,
        },
        ..Default::default()
    };
    let mut h = Harness::new(cfg, Auth::Anonymous);
    h.connect(1, "ann", J);
    h.join(1, "r");
    assert_eq!(
        h.publish(1, "r", json!("12345678")).one(1)["type"],
        "message"
    );
    assert_eq!(
        h.publish(1, "r", json!("123456789")).error_code(1),
        "too_large"
    );
    let e = h.raw(
        1,
        format!(r#"{{"op":"join","room":"{}"}}"#, "r".repeat(100)).as_bytes(),
        false,
    );
    assert_eq!(e.error_code(1), "too_large");
}

#[test]
fn generated_guest_names_and_metrics_text() {
    let mut h = Harness::anonymous();
    let a = h.gw.authenticate("/ws", [], 0).unwrap();
    let b = h.gw.authenticate("/ws", [], 0).unwrap();
    assert!(a.user.starts_with("guest-") && b.user.starts_with("guest-"));
    assert_ne!(a.user, b.user);
    assert_eq!(
        h.gw.authenticate("/ws?name=bad%20name", [], 0)
            .unwrap_err()
            .label(),
        "bad_name"
    );
    h.connect(1, "ann", J);
    h.join(1, "r");
    h.publish(1, "r", json!(1));
    let text = h.gw.metrics().render();
    for line in [
        "wsreactor_gateway_connections 1",
        "wsreactor_gateway_rooms 1",
        "wsreactor_gateway_members 1",
        "wsreactor_gateway_publishes_total 1",
        "wsreactor_gateway_deliveries_total 1",
        "wsreactor_gateway_auth_failures_total{reason=\"bad_name\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
}

#[test]
fn the_browser_page_is_self_contained() {
    let page = wsreactor::gateway::INDEX_HTML;
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("<script>") && page.contains("<style>"));
    for external in ["src=\"http", "href=\"http", "src=\"//", "@import", "cdn"] {
        assert!(!page.to_ascii_lowercase().contains(external), "{external}");
    }
    assert!(page.contains("location.host") && page.contains("/ws"));
}

/// Metric families in a text: every `wsreactor_gateway_*` name.
fn families(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("wsreactor_gateway_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboard_and_docs_name_exactly_the_rendered_metrics() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut text = wsreactor::gateway::GatewayMetrics::default().render();
    // And the shared (Redis) broker's, which `--redis` adds.
    let (tx, _cmds) = std::sync::mpsc::channel();
    let (_replies, rx) = std::sync::mpsc::channel();
    let shared = wsreactor::gateway::shared::SharedBroker::new(Default::default(), tx, rx);
    wsreactor::gateway::Broker::render_metrics(&shared, &mut text);
    let rendered = families(&text);
    assert!(rendered.len() >= 22, "{rendered:?}");
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/docs/grafana-gateway.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = String::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    assert_eq!(families(&exprs), rendered, "dashboard vs /metrics");
    // The docs table names each family without the prefix.
    let doc = std::fs::read_to_string(format!("{root}/docs/gateway.md")).unwrap();
    for f in &rendered {
        let short = f.trim_start_matches("wsreactor_gateway_");
        assert!(
            doc.contains(&format!("`{short}`")) || doc.contains(&format!("`{short}{{")),
            "{short} not documented"
        );
    }
}

/// A broker that sequences later, as one shared between instances does:
/// `publish` queues, `release` hands the messages back through `deliver`.
#[derive(Default)]
struct Deferred {
    inner: wsreactor::gateway::MemoryBroker,
    queue: Vec<(
        wsreactor::gateway::RoomName,
        std::rc::Rc<str>,
        Box<str>,
        u64,
    )>,
}

impl wsreactor::gateway::Broker for Deferred {
    fn publish(
        &mut self,
        room: &wsreactor::gateway::RoomName,
        from: &std::rc::Rc<str>,
        data: Box<str>,
        now_ms: u64,
    ) -> Option<std::rc::Rc<wsreactor::gateway::Outgoing>> {
        self.queue.push((room.clone(), from.clone(), data, now_ms));
        None
    }
    fn recover(
        &mut self,
        room: &wsreactor::gateway::RoomName,
        since: Option<u64>,
        now_ms: u64,
    ) -> wsreactor::gateway::Recovery {
        self.inner.recover(room, since, now_ms)
    }
    fn set_active(&mut self, room: &wsreactor::gateway::RoomName, active: bool) {
        self.inner.set_active(room, active)
    }
    fn expire(&mut self, now_ms: u64) {
        self.inner.expire(now_ms)
    }
    fn next_expiry(&self) -> Option<u64> {
        self.inner.next_expiry()
    }
    fn rooms(&self) -> usize {
        self.inner.rooms()
    }
    fn history_bytes(&self) -> usize {
        self.inner.history_bytes()
    }
}

#[test]
fn a_broker_that_sequences_later_delivers_through_deliver() {
    use wsreactor::gateway::{Broker, Gateway, LocalFanout};
    let mut gw: Gateway<u64, Deferred> = Gateway::with_broker(
        GatewayConfig::default(),
        Auth::Anonymous,
        Deferred::default(),
    );
    let mut fan = LocalFanout::new();
    let mut out = Vec::new();
    for (c, enc) in [(1, J), (2, P)] {
        let id = gw.authenticate(&format!("/ws?name=u{c}"), [], 0).unwrap();
        gw.open(c, id, enc, 0);
        let join = json!({"op": "join", "room": "r"});
        match enc {
            J => gw.on_frame(c, join.to_string().as_bytes(), false, 0),
            P => gw.on_frame(c, &gateway_support::to_proto(&join), true, 0),
        }
    }
    fan.apply(gw.actions(), &mut out);
    out.clear();
    gw.on_frame(
        1,
        br#"{"op":"publish","room":"r","data":"later","id":1}"#,
        false,
        5,
    );
    fan.apply(gw.actions(), &mut out);
    // Acked at once, delivered once sequenced.
    assert_eq!(out.len(), 1);
    assert_eq!(decode(&out[0]), json!({"type": "ack", "id": 1}));
    out.clear();
    let queued = std::mem::take(&mut gw.broker_mut().queue);
    for (room, from, data, ts) in queued {
        let m = gw
            .broker_mut()
            .inner
            .publish(&room, &from, data, ts)
            .unwrap();
        gw.deliver(m);
    }
    fan.apply(gw.actions(), &mut out);
    let got: Vec<(u64, Value)> = out.iter().map(|d| (d.conn, decode(d))).collect();
    let want =
        json!({"type": "message", "room": "r", "seq": 1, "from": "u1", "ts": 5, "data": "later"});
    assert_eq!(got, [(1, want.clone()), (2, want)]);
    assert_eq!(gw.metrics().publishes, 1);
}

#[test]
fn presence_lists_at_most_the_limit_with_the_total() {
    let cfg = GatewayConfig {
        max_presence_users: 3,
        ..Default::default()
    };
    let mut h = Harness::new(cfg, Auth::Anonymous);
    for (c, n) in [(1, "e"), (2, "b"), (3, "d"), (4, "a"), (5, "c")] {
        h.connect(c, n, if c % 2 == 0 { P } else { J });
        h.join(c, "r");
    }
    for c in [1, 2] {
        let e = h.req(c, json!({"op": "presence", "room": "r"}));
        assert_eq!(
            e.one(c),
            json!({"type": "presence", "room": "r", "users": ["a", "b", "c"], "total": 5})
        );
    }
    h.close(5);
    h.close(4);
    let e = h.req(1, json!({"op": "presence", "room": "r"}));
    assert_eq!(
        e.one(1),
        json!({"type": "presence", "room": "r", "users": ["b", "d", "e"]})
    );
}
