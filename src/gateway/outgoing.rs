//! A published message, encoded lazily: at most once per encoding, however
//! many members receive it and however often history replays it.

use std::cell::{Cell, OnceCell};
use std::rc::Rc;

use super::protocol::{encode_message, Encoding, MessageFields};
use super::room::RoomName;

/// One message of a room: its fields, and its frames in each encoding,
/// built on first use and then shared by every member and every replay.
#[derive(Debug)]
pub struct Outgoing {
    room: RoomName,
    seq: u64,
    from: Rc<str>,
    ts: u64,
    data: Box<str>,
    frames: [OnceCell<Box<[u8]>>; 2],
    encodes: Cell<u32>,
}

impl Outgoing {
    /// A message; `data` is a JSON value's text.
    pub fn new(room: RoomName, seq: u64, from: Rc<str>, ts: u64, data: Box<str>) -> Self {
        Outgoing {
            room,
            seq,
            from,
            ts,
            data,
            frames: [OnceCell::new(), OnceCell::new()],
            encodes: Cell::new(0),
        }
    }

    /// The frame payload in `encoding`, encoded now if it is the first use.
    pub fn bytes(&self, encoding: Encoding) -> &[u8] {
        self.frames[encoding.index()].get_or_init(|| {
            self.encodes.set(self.encodes.get() + 1);
            encode_message(
                encoding,
                &MessageFields {
                    room: &self.room,
                    seq: self.seq,
                    from: &self.from,
                    ts: self.ts,
                    data: &self.data,
                },
            )
            .into_boxed_slice()
        })
    }

    /// How many times this message was serialized (at most one per encoding).
    pub fn encode_count(&self) -> u32 {
        self.encodes.get()
    }

    /// The room.
    pub fn room(&self) -> &RoomName {
        &self.room
    }

    /// Its seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The publishing user.
    pub fn from(&self) -> &str {
        &self.from
    }

    /// Publication time, ms since the Unix epoch.
    pub fn ts(&self) -> u64 {
        self.ts
    }

    /// The data's JSON text.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// Memory this message may hold, for the history's byte budget: its
    /// fields, and both frames counted before they are built (each is the
    /// fields plus under 100 bytes of framing; JSON escaping at most
    /// doubles `from`, which holds no control characters).
    pub fn size(&self) -> usize {
        let fields = self.data.len() + self.room.len();
        std::mem::size_of::<Self>() + 3 * fields + 4 * self.from.len() + 256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_covers_both_frames() {
        for (from, data) in [
            ("u", "1"),
            ("\"\\\"\\", "[\"\\u0000\"]"),
            ("Jörg", "{\"text\":\"hello\"}"),
        ] {
            let room = RoomName::new(&"r".repeat(128)).unwrap();
            let m = Outgoing::new(room, u64::MAX, Rc::from(from), u64::MAX, data.into());
            let held = std::mem::size_of::<Outgoing>()
                + m.data().len()
                + m.from().len()
                + m.bytes(Encoding::Json).len()
                + m.bytes(Encoding::Protobuf).len();
            assert!(held <= m.size(), "{held} > {}", m.size());
            assert_eq!(m.encode_count(), 2);
            // Cached: asking again encodes nothing.
            m.bytes(Encoding::Json);
            assert_eq!(m.encode_count(), 2);
        }
    }
}
