//! A burst of publishes to one topic as one shared buffer.
//!
//! When a connection pipelines several publishes to one topic, each
//! subscriber would queue one [`SharedFrame`] per message: one queue entry
//! and one `iovec` each. A [`FrameRun`] holds the burst's frames back to
//! back in one pooled buffer, so a subscriber queues one reference to all of
//! them ([`Sender::queue_run`](super::Sender::queue_run)) and the kernel gets
//! one contiguous slice. The message boundaries are kept: a subscriber that
//! cannot take the run as it is (permessage-deflate, a client connection),
//! and the backlog limit, work message by message through
//! [`FrameRun::frame`].

use std::sync::Arc;

use super::frame::{encode_header, OpCode};
use super::shared::{FramePool, SharedFrame};

/// Several unmasked, unfragmented, uncompressed server frames in one
/// buffer (see the module documentation).
#[derive(Debug, Default)]
pub struct FrameRun {
    /// Unshared while the run grows; `None` until the first frame.
    bytes: Option<Arc<Vec<u8>>>,
    parts: Vec<Part>,
}

/// Where one frame of a run ends, and what it is.
#[derive(Debug, Clone, Copy)]
struct Part {
    end: usize,
    head: u8,
    opcode: OpCode,
}

/// Room a run's buffer starts with: a burst of small messages then fills
/// one pooled buffer without growing it.
const START: usize = 512;

impl FrameRun {
    /// An empty run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append `payload` as one frame. The buffer comes from `pool` at the
    /// first frame.
    ///
    /// # Panics
    /// If a frame of this run is still shared: append only to a run no
    /// queue holds yet (between [`FrameRun::finish`] calls, before it is
    /// delivered).
    pub fn push(&mut self, pool: &mut FramePool, opcode: OpCode, payload: &[u8]) {
        let head = encode_header(true, 0, opcode, None, payload.len() as u64);
        let head = head.as_slice();
        let len = head.len() + payload.len();
        let bytes = self.bytes.get_or_insert_with(|| pool.take(len.max(START)));
        let buf = Arc::get_mut(bytes).expect("a growing run is not shared");
        buf.extend_from_slice(head);
        buf.extend_from_slice(payload);
        self.parts.push(Part {
            end: buf.len(),
            head: head.len() as u8,
            opcode,
        });
    }

    /// Frames in the run.
    pub fn messages(&self) -> usize {
        self.parts.len()
    }

    /// Bytes in the run.
    pub fn len(&self) -> usize {
        self.prefix_len(self.parts.len())
    }

    /// No frame yet.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The bytes of the first `frames` frames.
    pub fn prefix_len(&self, frames: usize) -> usize {
        match frames.checked_sub(1) {
            Some(last) => self.parts[last].end,
            None => 0,
        }
    }

    /// How many leading frames fit in `room` bytes.
    pub fn fitting(&self, room: usize) -> usize {
        self.parts.partition_point(|p| p.end <= room)
    }

    /// The whole run, as it goes on the wire.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Some(b) => &b[..self.len()],
            None => &[],
        }
    }

    /// Frame `i`'s opcode and payload length.
    pub fn message(&self, i: usize) -> (OpCode, usize) {
        let p = self.parts[i];
        let at = self.prefix_len(i);
        (p.opcode, p.end - at - usize::from(p.head))
    }

    /// Frame `i` as a shared frame: a reference into the run's buffer, not
    /// a copy.
    pub fn frame(&self, i: usize) -> SharedFrame {
        let p = self.parts[i];
        let bytes = self.bytes.as_ref().expect("a run with frames has a buffer");
        SharedFrame::view(bytes, self.prefix_len(i), p.end, p.head, p.opcode)
    }

    pub(crate) fn buffer(&self) -> Option<&Arc<Vec<u8>>> {
        self.bytes.as_ref()
    }

    /// Empty the run: its buffer goes back to `pool`, to be reused once
    /// every queue that holds it has let go.
    pub fn finish(&mut self, pool: &mut FramePool) {
        if let Some(bytes) = self.bytes.take() {
            pool.keep_buf(&bytes);
        }
        self.parts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_back_to_back_with_their_boundaries() {
        let mut pool = FramePool::new();
        let mut run = FrameRun::new();
        assert!(run.is_empty());
        assert_eq!(run.bytes(), b"");
        run.push(&mut pool, OpCode::Text, b"one");
        run.push(&mut pool, OpCode::Binary, &[9; 200]);
        run.push(&mut pool, OpCode::Text, b"");
        assert_eq!(run.messages(), 3);
        assert_eq!(run.len(), 5 + 204 + 2);
        assert_eq!(&run.bytes()[..5], b"\x81\x03one");
        assert_eq!(&run.bytes()[5..9], &[0x82, 126, 0, 200]);
        assert_eq!(&run.bytes()[209..], b"\x81\x00");
        assert_eq!(run.prefix_len(1), 5);
        assert_eq!(run.fitting(4), 0);
        assert_eq!(run.fitting(5), 1);
        assert_eq!(run.fitting(210), 2);
        assert_eq!(run.fitting(211), 3);
        assert_eq!(run.message(1), (OpCode::Binary, 200));
        let f = run.frame(1);
        assert_eq!(f.payload(), &[9; 200]);
        assert_eq!(f.len(), 204);
        assert_eq!(f.opcode(), OpCode::Binary);
        assert_eq!(run.frame(2).bytes(), b"\x81\x00");
    }

    #[test]
    fn a_finished_run_reuses_its_buffer_once_let_go() {
        let mut pool = FramePool::new();
        let mut run = FrameRun::new();
        run.push(&mut pool, OpCode::Text, b"a");
        let ptr = run.bytes().as_ptr();
        let held = run.frame(0);
        run.finish(&mut pool);
        assert!(run.is_empty());
        run.push(&mut pool, OpCode::Text, b"b");
        assert_ne!(run.bytes().as_ptr(), ptr, "still held: not reused");
        assert_eq!(held.bytes(), b"\x81\x01a");
        drop(held);
        run.finish(&mut pool);
        run.push(&mut pool, OpCode::Text, b"c");
        assert_eq!(run.bytes().as_ptr(), ptr);
        assert_eq!(run.bytes(), b"\x81\x01c");
    }
}
