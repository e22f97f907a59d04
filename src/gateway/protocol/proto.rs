//! The Protobuf encoding: one message per binary frame.

use prost::Message as _;

use super::pb::{self, event::Kind, request::Op as PbOp};
use super::{
    check_data, check_token, room, Event, Limits, MessageFields, Op, Request, RequestError,
    RequestId, MAX_ID_LEN,
};

/// Parse a request from a binary frame.
pub fn parse(frame: &[u8], limits: &Limits) -> Result<Request, RequestError> {
    let req = pb::Request::decode(frame)
        .map_err(|e| RequestError::bad(format!("not a wsreactor.v1.Request: {e}")))?;
    let id = match req.id {
        Some(id) if id.len() > MAX_ID_LEN => {
            return Err(RequestError::bad(format!(
                "\"id\" longer than {MAX_ID_LEN} bytes"
            )))
        }
        Some(id) => Some(RequestId::Proto(id.into())),
        None => None,
    };
    let op = match req.op {
        None => Err(RequestError::bad("missing op")),
        Some(PbOp::Join(j)) => room(&j.room).map(|room| Op::Join {
            room,
            since: j.since,
        }),
        Some(PbOp::Leave(l)) => room(&l.room).map(|room| Op::Leave { room }),
        Some(PbOp::Presence(p)) => room(&p.room).map(|room| Op::Presence { room }),
        Some(PbOp::Publish(p)) => publish(p, limits),
        Some(PbOp::Refresh(r)) => {
            check_token(&r.token, limits).map(|()| Op::Refresh { token: r.token })
        }
    };
    match op {
        Ok(op) => Ok(Request { id, op }),
        Err(mut e) => {
            e.id = id;
            Err(e)
        }
    }
}

fn publish(p: pb::Publish, limits: &Limits) -> Result<Op, RequestError> {
    let r = room(&p.room)?;
    if p.data.len() > limits.max_data {
        // Refused before the UTF-8 and JSON passes over it.
        return Err(super::data_too_large(limits));
    }
    let text = std::str::from_utf8(&p.data)
        .map_err(|_| RequestError::bad("data must be JSON text (UTF-8)"))?;
    check_data(text, limits)?;
    // JSON members receive the value as it is: it must be one JSON value.
    let raw: &serde_json::value::RawValue = serde_json::from_str(text)
        .map_err(|e| RequestError::bad(format!("data must be one JSON value: {e}")))?;
    Ok(Op::Publish {
        room: r,
        data: raw.get().into(),
    })
}

fn id_of(id: Option<&RequestId>) -> Option<String> {
    match id {
        Some(RequestId::Proto(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// Encode an event to one connection.
pub fn encode_event(event: &Event<'_>, id: Option<&RequestId>) -> Vec<u8> {
    let kind = match event {
        Event::Joined {
            room,
            seq,
            recovered,
        } => Kind::Joined(pb::Joined {
            room: room.to_string(),
            seq: *seq,
            recovered: *recovered,
        }),
        Event::Left { room } => Kind::Left(pb::Left {
            room: room.to_string(),
        }),
        Event::Presence { room, users, total } => Kind::Presence(pb::Presence {
            room: room.to_string(),
            users: users.iter().map(|u| u.to_string()).collect(),
            total: total.map(|t| t as u64),
        }),
        Event::Ack => Kind::Ack(pb::Ack {}),
        Event::Error { code, message } => Kind::Error(pb::Error {
            code: code.as_str().to_owned(),
            message: message.to_string(),
        }),
    };
    pb::Event {
        id: id_of(id),
        kind: Some(kind),
    }
    .encode_to_vec()
}

/// Encode a `message` event.
pub fn encode_message(m: &MessageFields<'_>) -> Vec<u8> {
    pb::Event {
        id: None,
        kind: Some(Kind::Message(pb::Message {
            room: m.room.to_owned(),
            seq: m.seq,
            from: m.from.to_owned(),
            ts: m.ts,
            data: m.data.as_bytes().to_vec(),
        })),
    }
    .encode_to_vec()
}
