//! The JSON encoding: one object per text frame.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    check_data, check_token, room, ErrorCode, Event, Limits, MessageFields, Op, Request,
    RequestError, RequestId, MAX_ID_LEN,
};

/// The members of one JSON object, in order, values kept as raw text.
/// Written by hand (rather than a map type) to refuse duplicate keys.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, &'de RawValue)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!("duplicate field {key:?}")));
                    }
                    if out.len() == 8 {
                        return Err(serde::de::Error::custom("too many fields"));
                    }
                    out.push((key, map.next_value()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Members<'a> {
    fn take(&mut self, key: &str) -> Option<&'a RawValue> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(i).1)
    }
}

fn string(v: &RawValue, field: &str) -> Result<String, RequestError> {
    serde_json::from_str::<String>(v.get())
        .map_err(|_| RequestError::bad(format!("\"{field}\" must be a string")))
}

fn request_id(v: &RawValue) -> Result<RequestId, RequestError> {
    let text = v.get();
    let first = text.as_bytes().first().copied().unwrap_or(b'{');
    let ok = first == b'"' || first == b'-' || first.is_ascii_digit();
    if !ok || text.len() > MAX_ID_LEN {
        return Err(RequestError::bad(format!(
            "\"id\" must be a string or a number of at most {MAX_ID_LEN} bytes"
        )));
    }
    Ok(RequestId::Json(text.into()))
}

/// Parse a request from a text frame.
pub fn parse(text: &str, limits: &Limits) -> Result<Request, RequestError> {
    let mut m: Members<'_> = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) if e.is_data() => return Err(RequestError::bad(format!("not a request: {e}"))),
        Err(e) => return Err(RequestError::bad(format!("not JSON: {e}"))),
    };
    // The id first, so every later error can carry it.
    let id = match m.take("id") {
        Some(v) => Some(request_id(v)?),
        None => None,
    };
    parse_op(&mut m, limits)
        .map(|op| Request { id: id.clone(), op })
        .map_err(|mut e| {
            e.id = id;
            e
        })
}

fn parse_op(m: &mut Members<'_>, limits: &Limits) -> Result<Op, RequestError> {
    let op = match m.take("op") {
        Some(v) => string(v, "op")?,
        None => return Err(RequestError::bad("missing \"op\"")),
    };
    let mut need = |key: &str| {
        m.take(key)
            .ok_or_else(|| RequestError::bad(format!("\"{op}\" needs \"{key}\"")))
    };
    let parsed = match op.as_str() {
        "join" => {
            let r = room(&string(need("room")?, "room")?)?;
            let since =
                match m.take("since") {
                    Some(v) => Some(serde_json::from_str::<u64>(v.get()).map_err(|_| {
                        RequestError::bad("\"since\" must be a non-negative integer")
                    })?),
                    None => None,
                };
            Op::Join { room: r, since }
        }
        "leave" => Op::Leave {
            room: room(&string(need("room")?, "room")?)?,
        },
        "presence" => Op::Presence {
            room: room(&string(need("room")?, "room")?)?,
        },
        "publish" => {
            let r = room(&string(need("room")?, "room")?)?;
            let data = need("data")?.get();
            check_data(data, limits)?;
            Op::Publish {
                room: r,
                data: data.into(),
            }
        }
        "refresh" => {
            let token = string(need("token")?, "token")?;
            check_token(&token, limits)?;
            Op::Refresh { token }
        }
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(RequestError::bad(format!("unknown op {shown:?}")));
        }
    };
    if let Some((k, _)) = m.0.first() {
        let shown: String = k.chars().take(32).collect();
        return Err(RequestError::bad(format!(
            "unexpected field {shown:?} for \"{op}\""
        )));
    }
    Ok(parsed)
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push_id(out: &mut Vec<u8>, id: Option<&super::RequestId>) {
    if let Some(RequestId::Json(raw)) = id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(raw.as_bytes());
    }
}

/// Encode an event to one connection.
pub fn encode_event(event: &Event<'_>, id: Option<&RequestId>) -> Vec<u8> {
    let mut o = Vec::with_capacity(64);
    match event {
        Event::Joined {
            room,
            seq,
            recovered,
        } => {
            o.extend_from_slice(b"{\"type\":\"joined\",\"room\":");
            push_str(&mut o, room);
            o.extend_from_slice(format!(",\"seq\":{seq},\"recovered\":{recovered}").as_bytes());
        }
        Event::Left { room } => {
            o.extend_from_slice(b"{\"type\":\"left\",\"room\":");
            push_str(&mut o, room);
        }
        Event::Presence { room, users, total } => {
            o.extend_from_slice(b"{\"type\":\"presence\",\"room\":");
            push_str(&mut o, room);
            o.extend_from_slice(b",\"users\":[");
            for (i, u) in users.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                push_str(&mut o, u);
            }
            o.push(b']');
            if let Some(t) = total {
                o.extend_from_slice(format!(",\"total\":{t}").as_bytes());
            }
        }
        Event::Ack => o.extend_from_slice(b"{\"type\":\"ack\""),
        Event::Error { code, message } => {
            o.extend_from_slice(b"{\"type\":\"error\",\"code\":\"");
            o.extend_from_slice(code.as_str().as_bytes());
            o.extend_from_slice(b"\",\"message\":");
            push_str(&mut o, message);
        }
    }
    push_id(&mut o, id);
    o.push(b'}');
    o
}

/// Encode a `message` event; `data` is copied in as the JSON text it is.
pub fn encode_message(m: &MessageFields<'_>) -> Vec<u8> {
    let mut o = Vec::with_capacity(80 + m.room.len() + m.from.len() + m.data.len());
    o.extend_from_slice(b"{\"type\":\"message\",\"room\":");
    push_str(&mut o, m.room);
    o.extend_from_slice(format!(",\"seq\":{},\"from\":", m.seq).as_bytes());
    push_str(&mut o, m.from);
    o.extend_from_slice(format!(",\"ts\":{},\"data\":", m.ts).as_bytes());
    o.extend_from_slice(m.data.as_bytes());
    o.push(b'}');
    o
}

/// The error code of a JSON error event's text, for tests and clients.
pub fn error_code_of(code: &str) -> Option<ErrorCode> {
    [
        ErrorCode::BadRequest,
        ErrorCode::Forbidden,
        ErrorCode::NotJoined,
        ErrorCode::RateLimited,
        ErrorCode::TooLarge,
        ErrorCode::Unavailable,
    ]
    .into_iter()
    .find(|c| c.as_str() == code)
}
