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

    /// Memory this message holds, for the history's byte budget (the
    /// frames are not counted: at most twice the fields, built on demand).
    pub fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.data.len() + self.from.len()
    }
}
