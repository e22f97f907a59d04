//! The Protobuf messages of `proto/wsreactor.v1.proto`, written by hand with
//! `prost` derives (no build script, no protoc). `tests` below checks every
//! field's number, name and type against the .proto text.

#![allow(missing_docs)]

/// A client request (one per binary frame).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(string, optional, tag = "1")]
    pub id: Option<String>,
    #[prost(oneof = "request::Op", tags = "2, 3, 4, 5, 6")]
    pub op: Option<request::Op>,
}

/// The `op` oneof of [`Request`].
pub mod request {
    /// What the request asks.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Op {
        #[prost(message, tag = "2")]
        Join(super::Join),
        #[prost(message, tag = "3")]
        Leave(super::Leave),
        #[prost(message, tag = "4")]
        Publish(super::Publish),
        #[prost(message, tag = "5")]
        Presence(super::PresenceRequest),
        #[prost(message, tag = "6")]
        Refresh(super::Refresh),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Join {
    #[prost(string, tag = "1")]
    pub room: String,
    #[prost(uint64, optional, tag = "2")]
    pub since: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Leave {
    #[prost(string, tag = "1")]
    pub room: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Publish {
    #[prost(string, tag = "1")]
    pub room: String,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PresenceRequest {
    #[prost(string, tag = "1")]
    pub room: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Refresh {
    #[prost(string, tag = "1")]
    pub token: String,
}

/// A server event (one per binary frame).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(string, optional, tag = "1")]
    pub id: Option<String>,
    #[prost(oneof = "event::Kind", tags = "2, 3, 4, 5, 6, 7")]
    pub kind: Option<event::Kind>,
}

/// The `kind` oneof of [`Event`].
pub mod event {
    /// Which event.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "2")]
        Joined(super::Joined),
        #[prost(message, tag = "3")]
        Message(super::Message),
        #[prost(message, tag = "4")]
        Left(super::Left),
        #[prost(message, tag = "5")]
        Presence(super::Presence),
        #[prost(message, tag = "6")]
        Ack(super::Ack),
        #[prost(message, tag = "7")]
        Error(super::Error),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Joined {
    #[prost(string, tag = "1")]
    pub room: String,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    #[prost(bool, tag = "3")]
    pub recovered: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(string, tag = "1")]
    pub room: String,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    #[prost(string, tag = "3")]
    pub from: String,
    #[prost(uint64, tag = "4")]
    pub ts: u64,
    #[prost(bytes = "vec", tag = "5")]
    pub data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Left {
    #[prost(string, tag = "1")]
    pub room: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Presence {
    #[prost(string, tag = "1")]
    pub room: String,
    #[prost(string, repeated, tag = "2")]
    pub users: Vec<String>,
    #[prost(uint64, optional, tag = "3")]
    pub total: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ack {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Error {
    #[prost(string, tag = "1")]
    pub code: String,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[cfg(test)]
mod tests {
    //! The .proto file is the contract other languages compile; these tests
    //! read it and compare each message's fields with this file's
    //! `#[prost(...)]` attributes (also read as text, so nothing is listed
    //! twice by hand).

    use std::collections::BTreeMap;

    const PROTO: &str = include_str!("../../../proto/wsreactor.v1.proto");
    const RUST: &str = include_str!("pb.rs");

    /// (message, field number) -> (proto type, label, field name).
    type Fields = BTreeMap<(String, u32), (String, String, String)>;

    fn proto_fields() -> Fields {
        let mut out = Fields::new();
        let mut message = String::new();
        for line in PROTO.lines() {
            let line = line.split("//").next().unwrap().trim();
            if line.starts_with("syntax") || line.starts_with("package") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("message ") {
                message = rest.trim_end_matches('{').trim().to_owned();
                continue;
            }
            let Some((lhs, num)) = line.strip_suffix(';').and_then(|l| l.split_once('=')) else {
                continue;
            };
            let words: Vec<&str> = lhs.split_whitespace().collect();
            let (label, ty, name) = match words.as_slice() {
                [label @ ("optional" | "repeated"), ty, name] => (*label, *ty, *name),
                [ty, name] => ("", *ty, *name),
                other => panic!("unexpected field line {other:?}"),
            };
            let n: u32 = num.trim().parse().unwrap();
            let prev = out.insert(
                (message.clone(), n),
                (ty.to_owned(), label.to_owned(), name.to_owned()),
            );
            assert!(prev.is_none(), "{message} has field {n} twice");
        }
        out
    }

    fn snake(s: &str) -> String {
        let mut o = String::new();
        for (i, c) in s.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    o.push('_');
                }
                o.push(c.to_ascii_lowercase());
            } else {
                o.push(c);
            }
        }
        o
    }

    fn rust_fields() -> Fields {
        let src = RUST.split("#[cfg(test)]").next().unwrap();
        let mut out = Fields::new();
        let mut message = String::new();
        let mut attr: Option<String> = None;
        for line in src.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("pub struct ") {
                message = rest.split_whitespace().next().unwrap().to_owned();
            } else if line.starts_with("#[prost(") && !line.contains("oneof") {
                attr = Some(line.to_owned());
            } else if let Some(a) = attr.take() {
                let tag: u32 = a
                    .split("tag = \"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                let kind = a
                    .trim_start_matches("#[prost(")
                    .split([',', ' '])
                    .next()
                    .unwrap();
                let label = if a.contains("optional") {
                    "optional"
                } else if a.contains("repeated") {
                    "repeated"
                } else {
                    ""
                };
                // `pub name: T,` in a struct, `Variant(super::Type),` in a oneof.
                let (name, ty) = if let Some(f) = line.strip_prefix("pub ") {
                    (f.split(':').next().unwrap().to_owned(), kind.to_owned())
                } else {
                    let variant = line.split('(').next().unwrap();
                    let ty = line.split("super::").nth(1).unwrap().trim_end_matches("),");
                    (snake(variant), ty.to_owned())
                };
                // Oneof variants belong to the message that declares the oneof.
                let owner = if line.starts_with("pub ") {
                    message.clone()
                } else {
                    oneof_owner(src, line)
                };
                out.insert((owner, tag), (ty, label.to_owned(), name));
            }
        }
        out
    }

    fn oneof_owner(src: &str, variant_line: &str) -> String {
        // `pub mod request` holds Request's oneof, `pub mod event` Event's.
        let at = src.find(variant_line).unwrap();
        let module = src[..at].rsplit("pub mod ").next().unwrap();
        let m = module.split_whitespace().next().unwrap();
        let mut c = m.chars();
        c.next().unwrap().to_ascii_uppercase().to_string() + c.as_str()
    }

    #[test]
    fn rust_types_match_the_proto_file() {
        let proto = proto_fields();
        let rust = rust_fields();
        assert!(proto.len() > 20, "parsed only {} fields", proto.len());
        assert_eq!(proto, rust);
    }
}
