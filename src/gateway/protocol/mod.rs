//! The gateway's wire protocol: requests parsed and validated, events
//! encoded, in JSON (text frames) or Protobuf (binary frames).
//!
//! Both encodings carry the same requests and events (docs/gateway.md).
//! Parsing is strict: an unknown op, a missing or extra field, a wrong type,
//! an invalid room name or oversized data is an error with a code the
//! client sees in an `error` event; nothing here panics on any input.

pub mod json;
pub mod pb;
mod proto;

use std::fmt;

use super::room::RoomName;

/// The encoding a connection speaks, chosen by its subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// One JSON object per text frame (`wsreactor.v1.json` or no subprotocol).
    Json,
    /// One Protobuf message per binary frame (`wsreactor.v1.proto`).
    Protobuf,
}

/// The JSON subprotocol name.
pub const SUBPROTOCOL_JSON: &str = "wsreactor.v1.json";
/// The Protobuf subprotocol name.
pub const SUBPROTOCOL_PROTO: &str = "wsreactor.v1.proto";

impl Encoding {
    /// Both encodings, for tables indexed by [`Encoding::index`].
    pub const ALL: [Encoding; 2] = [Encoding::Json, Encoding::Protobuf];

    /// Whether frames of this encoding are binary (else text).
    pub fn is_binary(self) -> bool {
        self == Encoding::Protobuf
    }

    /// 0 for JSON, 1 for Protobuf.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short name (`json`, `proto`) for logs and topic names.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Protobuf => "proto",
        }
    }

    /// Choose from the values of the client's `Sec-WebSocket-Protocol`
    /// headers: the first of ours in the client's order wins. Returns the
    /// encoding and the subprotocol to answer with (`None`: the client
    /// offered none of ours, so JSON without a subprotocol; a client that
    /// offered only others is still served JSON, and gets no subprotocol as
    /// RFC 6455 allows).
    pub fn negotiate<'a, I>(offered: I) -> (Encoding, Option<&'static str>)
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        for value in offered {
            for token in value.split(|&b| b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(SUBPROTOCOL_JSON.as_bytes()) {
                    return (Encoding::Json, Some(SUBPROTOCOL_JSON));
                }
                if t.eq_ignore_ascii_case(SUBPROTOCOL_PROTO.as_bytes()) {
                    return (Encoding::Protobuf, Some(SUBPROTOCOL_PROTO));
                }
            }
        }
        (Encoding::Json, None)
    }
}

/// Limits on requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest `data`, in bytes of JSON text (Protobuf: the `data` field).
    /// Default 64 KiB; longer gets `too_large`.
    pub max_data: usize,
    /// Longest request frame. Default `max_data + 4096`; longer gets
    /// `too_large` without being parsed.
    pub max_request: usize,
    /// Longest token in `refresh`, in bytes. Default 8 KiB.
    pub max_token: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_data: 64 * 1024,
            max_request: 64 * 1024 + 4096,
            max_token: 8 * 1024,
        }
    }
}

/// A request's `id`, echoed in its answer: JSON keeps the value's raw text
/// (a string or a number, at most [`MAX_ID_LEN`] bytes), Protobuf a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    /// The JSON text of the id, as sent.
    Json(Box<str>),
    /// The Protobuf id.
    Proto(Box<str>),
}

/// Longest request id, in bytes (JSON: of its text).
pub const MAX_ID_LEN: usize = 64;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Join a room, recovering the messages after `since`.
    Join {
        /// The room.
        room: RoomName,
        /// Last seq the client saw.
        since: Option<u64>,
    },
    /// Leave a room.
    Leave {
        /// The room.
        room: RoomName,
    },
    /// Publish to a room.
    Publish {
        /// The room.
        room: RoomName,
        /// A JSON value, as text (validated).
        data: Box<str>,
    },
    /// Ask who is in a room.
    Presence {
        /// The room.
        room: RoomName,
    },
    /// Replace the connection's token with a later one.
    Refresh {
        /// The new token.
        token: String,
    },
}

/// A parsed, valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its id, if it carried one.
    pub id: Option<RequestId>,
    /// What it asks.
    pub op: Op,
}

/// The error codes of `error` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed or invalid request.
    BadRequest,
    /// Not allowed (the token's `rooms` claim, limits, a rejected refresh).
    Forbidden,
    /// The room was not joined.
    NotJoined,
    /// The connection's rate limit was exceeded.
    RateLimited,
    /// The request or its data is too large.
    TooLarge,
    /// The shared broker (Redis) is unreachable: the publish was not
    /// sequenced and nobody got it.
    Unavailable,
}

impl ErrorCode {
    /// The code as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// A request that could not be served: the `error` event's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// The code.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
    /// The request's id, when it could be read.
    pub id: Option<RequestId>,
}

impl RequestError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RequestError {
            code,
            message: message.into(),
            id: None,
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// Parse one frame from a connection speaking `encoding`; `binary` says
/// which frame type it came in (a text frame on a Protobuf connection, or a
/// binary one on a JSON connection, is a `bad_request`).
pub fn parse(
    encoding: Encoding,
    frame: &[u8],
    binary: bool,
    limits: &Limits,
) -> Result<Request, RequestError> {
    if frame.len() > limits.max_request {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!("request larger than {} bytes", limits.max_request),
        ));
    }
    match (encoding, binary) {
        (Encoding::Json, false) => match std::str::from_utf8(frame) {
            Ok(text) => json::parse(text, limits),
            Err(_) => Err(RequestError::bad("text frame is not UTF-8")),
        },
        (Encoding::Json, true) => Err(RequestError::bad(
            "binary frame on a JSON connection (use subprotocol wsreactor.v1.proto)",
        )),
        (Encoding::Protobuf, true) => proto::parse(frame, limits),
        (Encoding::Protobuf, false) => Err(RequestError::bad(
            "text frame on a Protobuf connection (send binary frames)",
        )),
    }
}

pub(crate) fn room(name: &str) -> Result<RoomName, RequestError> {
    RoomName::new(name).map_err(|e| RequestError::bad(e.to_string()))
}

/// Deepest nesting of arrays and objects in `data`. The gateway never
/// recurses into data, but its members' JSON parsers may (serde_json
/// stops at 128 levels).
pub const MAX_DATA_DEPTH: usize = 64;

pub(crate) fn check_data(data: &str, limits: &Limits) -> Result<(), RequestError> {
    if data.len() > limits.max_data {
        return Err(data_too_large(limits));
    }
    if json_depth(data) > MAX_DATA_DEPTH {
        return Err(RequestError::bad(format!(
            "data nested deeper than {MAX_DATA_DEPTH} levels"
        )));
    }
    Ok(())
}

pub(crate) fn data_too_large(limits: &Limits) -> RequestError {
    RequestError::new(
        ErrorCode::TooLarge,
        format!("data larger than {} bytes", limits.max_data),
    )
}

/// Nesting depth of valid JSON text (brackets outside strings).
fn json_depth(s: &str) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for b in s.bytes() {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

pub(crate) fn check_token(token: &str, limits: &Limits) -> Result<(), RequestError> {
    if token.is_empty() {
        return Err(RequestError::bad("token is empty"));
    }
    if token.len() > limits.max_token {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!("token larger than {} bytes", limits.max_token),
        ));
    }
    Ok(())
}

/// An event to one connection (message events are [`super::Outgoing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// `joined`: the room's last seq and whether `since` was recovered.
    Joined {
        /// The room.
        room: &'a str,
        /// Its last seq.
        seq: u64,
        /// Whether the missed messages follow.
        recovered: bool,
    },
    /// `left`.
    Left {
        /// The room.
        room: &'a str,
    },
    /// `presence`: the distinct users in the room.
    Presence {
        /// The room.
        room: &'a str,
        /// Its users, sorted (the first ones, if cut to the limit).
        users: Vec<&'a str>,
        /// How many users there are, when `users` was cut.
        total: Option<usize>,
    },
    /// `ack` of a publish that carried an id.
    Ack,
    /// `error`.
    Error {
        /// Its code.
        code: ErrorCode,
        /// Its text.
        message: &'a str,
    },
}

/// Encode `event` (with the id it answers) in `encoding`.
pub fn encode_event(encoding: Encoding, event: &Event<'_>, id: Option<&RequestId>) -> Vec<u8> {
    match encoding {
        Encoding::Json => json::encode_event(event, id),
        Encoding::Protobuf => proto::encode_event(event, id),
    }
}

/// The fields of a published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFields<'a> {
    /// The room.
    pub room: &'a str,
    /// Its seq in the room.
    pub seq: u64,
    /// The publishing user.
    pub from: &'a str,
    /// When it was published, ms since the Unix epoch.
    pub ts: u64,
    /// The JSON value, as text.
    pub data: &'a str,
}

/// Encode a `message` event in `encoding`.
pub fn encode_message(encoding: Encoding, m: &MessageFields<'_>) -> Vec<u8> {
    match encoding {
        Encoding::Json => json::encode_message(m),
        Encoding::Protobuf => proto::encode_message(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        let n = |v: &[&str]| Encoding::negotiate(v.iter().map(|s| s.as_bytes()));
        assert_eq!(n(&[]), (Encoding::Json, None));
        assert_eq!(n(&["chat"]), (Encoding::Json, None));
        assert_eq!(
            n(&["chat, wsreactor.v1.proto"]),
            (Encoding::Protobuf, Some(SUBPROTOCOL_PROTO))
        );
        assert_eq!(
            n(&["wsreactor.v1.json", "wsreactor.v1.proto"]),
            (Encoding::Json, Some(SUBPROTOCOL_JSON))
        );
        assert_eq!(
            n(&[" WSREACTOR.V1.PROTO "]),
            (Encoding::Protobuf, Some(SUBPROTOCOL_PROTO))
        );
    }

    #[test]
    fn depth() {
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth("[[],{\"a\":[1]}]"), 3);
        assert_eq!(json_depth("\"[[[\\\"[\""), 0);
        assert_eq!(json_depth("[\"\\\\\",[1]]"), 2);
    }

    #[test]
    fn frame_type_must_match_the_encoding() {
        let l = Limits::default();
        let e = parse(Encoding::Json, b"{}", true, &l).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = parse(Encoding::Protobuf, b"", false, &l).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = parse(Encoding::Json, b"\xff", false, &l).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let big = vec![b' '; l.max_request + 1];
        let e = parse(Encoding::Json, &big, false, &l).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
    }
}
