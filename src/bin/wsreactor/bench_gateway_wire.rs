//! The wire of `bench --gateway`: the requests it sends (join, publish)
//! and the events it reads, in JSON or Protobuf (docs/gateway.md).

use std::borrow::Cow;

use prost::Message as _;
use wsreactor::gateway::protocol::pb;
use wsreactor::Message;

use super::track::Stamp;

/// The subprotocol the bench speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Proto,
}

/// A JSON event, as far as the bench reads it.
#[derive(serde::Deserialize)]
struct JsonEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    data: Option<Stamp>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

#[derive(Debug, PartialEq)]
pub enum Event {
    Joined {
        seq: u64,
    },
    Message {
        room: String,
        seq: u64,
        stamp: Stamp,
    },
    Error {
        code: String,
        message: String,
    },
    /// Anything else: what it was.
    Other(String),
}

pub fn decode(encoding: Encoding, msg: &Message<'_>) -> Result<Event, String> {
    match (encoding, msg) {
        (Encoding::Json, Message::Text(t)) => {
            let e: JsonEvent<'_> =
                serde_json::from_str(t).map_err(|e| format!("not a gateway event ({e})"))?;
            Ok(match e.kind.as_ref() {
                "joined" => Event::Joined {
                    seq: e.seq.ok_or("a joined event without seq")?,
                },
                "message" => Event::Message {
                    room: e.room.ok_or("a message without room")?.into_owned(),
                    seq: e.seq.ok_or("a message without seq")?,
                    stamp: e.data.ok_or("a message without data")?,
                },
                "error" => Event::Error {
                    code: e.code.unwrap_or_default().into_owned(),
                    message: e.message.unwrap_or_default().into_owned(),
                },
                other => Event::Other(format!("a {other:?} event")),
            })
        }
        (Encoding::Proto, Message::Binary(b)) => {
            let e = pb::Event::decode(*b).map_err(|e| format!("not a gateway event ({e})"))?;
            use pb::event::Kind;
            Ok(match e.kind {
                Some(Kind::Joined(j)) => Event::Joined { seq: j.seq },
                Some(Kind::Message(m)) => Event::Message {
                    room: m.room,
                    seq: m.seq,
                    stamp: serde_json::from_slice(&m.data)
                        .map_err(|e| format!("a message whose data is not a stamp ({e})"))?,
                },
                Some(Kind::Error(e)) => Event::Error {
                    code: e.code,
                    message: e.message,
                },
                Some(other) => Event::Other(format!("{other:?}")),
                None => Event::Other("an event without a kind".into()),
            })
        }
        (Encoding::Json, Message::Binary(_)) => Err("a binary frame on a JSON connection".into()),
        (Encoding::Proto, Message::Text(_)) => Err("a text frame on a Protobuf connection".into()),
    }
}

pub fn join_request(encoding: Encoding, room: &str) -> Vec<u8> {
    match encoding {
        Encoding::Json => format!("{{\"op\":\"join\",\"room\":\"{room}\"}}").into_bytes(),
        Encoding::Proto => pb::Request {
            id: None,
            op: Some(pb::request::Op::Join(pb::Join {
                room: room.to_string(),
                since: None,
            })),
        }
        .encode_to_vec(),
    }
}

pub fn publish_request(encoding: Encoding, room: &str, stamp: &Stamp, buf: &mut String) -> Vec<u8> {
    buf.clear();
    stamp.write(buf);
    match encoding {
        Encoding::Json => {
            format!("{{\"op\":\"publish\",\"room\":\"{room}\",\"data\":{buf}}}").into_bytes()
        }
        Encoding::Proto => pb::Request {
            id: None,
            op: Some(pb::request::Op::Publish(pb::Publish {
                room: room.to_string(),
                data: buf.as_bytes().to_vec(),
            })),
        }
        .encode_to_vec(),
    }
}

pub fn frame(encoding: Encoding, bytes: &[u8]) -> Message<'_> {
    match encoding {
        // Our own ASCII JSON.
        Encoding::Json => Message::Text(std::str::from_utf8(bytes).unwrap_or("")),
        Encoding::Proto => Message::Binary(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_decode_in_both_encodings() {
        let t = r#"{"type":"message","room":"r1","seq":5,"from":"a","ts":1,"data":{"p":1,"n":2,"t":3}}"#;
        let want = Event::Message {
            room: "r1".into(),
            seq: 5,
            stamp: Stamp { p: 1, n: 2, t: 3 },
        };
        assert_eq!(decode(Encoding::Json, &Message::Text(t)).unwrap(), want);
        let b = pb::Event {
            id: None,
            kind: Some(pb::event::Kind::Message(pb::Message {
                room: "r1".into(),
                seq: 5,
                from: "a".into(),
                ts: 1,
                data: br#"{"p":1,"n":2,"t":3}"#.to_vec(),
            })),
        }
        .encode_to_vec();
        assert_eq!(decode(Encoding::Proto, &Message::Binary(&b)).unwrap(), want);
        let j = r#"{"type":"joined","room":"r1","seq":9,"recovered":false}"#;
        assert_eq!(
            decode(Encoding::Json, &Message::Text(j)).unwrap(),
            Event::Joined { seq: 9 }
        );
        // What an echo server sends back, and other garbage.
        for bad in [
            r#"{"op":"join","room":"r1"}"#,
            "hello",
            r#"{"type":"message","room":"r1","seq":5,"data":"x"}"#,
            r#"{"type":"message","room":"r1","data":{"p":1,"n":2,"t":3}}"#,
        ] {
            assert!(
                decode(Encoding::Json, &Message::Text(bad)).is_err(),
                "{bad}"
            );
        }
        assert!(decode(Encoding::Json, &Message::Binary(b"x")).is_err());
        assert!(decode(Encoding::Proto, &Message::Text("x")).is_err());
        assert!(decode(Encoding::Proto, &Message::Binary(&[0xff, 0xff])).is_err());
    }

    #[test]
    fn requests_are_what_the_gateway_parses() {
        use wsreactor::gateway::protocol::{parse as gw_parse, Encoding as GwEnc, Op};
        use wsreactor::gateway::Limits;
        let stamp = Stamp { p: 3, n: 4, t: 5 };
        let mut buf = String::new();
        for (enc, gw) in [
            (Encoding::Json, GwEnc::Json),
            (Encoding::Proto, GwEnc::Protobuf),
        ] {
            let j = join_request(enc, "bench:1-0");
            let r = gw_parse(gw, &j, enc == Encoding::Proto, &Limits::default()).unwrap();
            assert!(matches!(r.op, Op::Join { .. }), "{:?}", r.op);
            let p = publish_request(enc, "bench:1-0", &stamp, &mut buf);
            let r = gw_parse(gw, &p, enc == Encoding::Proto, &Limits::default()).unwrap();
            assert!(matches!(r.op, Op::Publish { .. }), "{:?}", r.op);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Any frame decodes to an event or an error, never a panic.
        #[test]
        fn any_frame_decodes_or_is_refused(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96),
            text in ".{0,96}",
        ) {
            for enc in [Encoding::Json, Encoding::Proto] {
                let _ = decode(enc, &Message::Binary(&bytes));
                let _ = decode(enc, &Message::Text(&text));
            }
        }
    }
}
