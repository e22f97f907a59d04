//! A server frame encoded once and sent to many connections.
//!
//! A publish to a topic builds its frame here, once; every subscriber's
//! [`Sender`](super::Sender) queues a reference to it (a reference-count
//! increment, never a copy of the bytes), and the transport writes each
//! subscriber's references with one `writev`. The count is atomic so that a
//! frame can be handed to another thread's reactor as it is.

use std::collections::VecDeque;
use std::sync::Arc;

use super::frame::{encode_header, OpCode};

/// An unmasked, unfragmented, uncompressed server data frame: header and
/// payload in one shared allocation.
#[derive(Debug, Clone)]
pub struct SharedFrame {
    bytes: Arc<Vec<u8>>,
    /// `bytes[at..end]` is this frame: a frame of a [`FrameRun`] shares the
    /// run's buffer.
    at: usize,
    end: usize,
    /// Header length (2, 4 or 10).
    head: u8,
    opcode: OpCode,
}

impl SharedFrame {
    /// Encode `payload` as one server frame (FIN set, no mask, no RSV bits).
    /// `opcode` should be [`OpCode::Text`] or [`OpCode::Binary`]; the caller
    /// vouches for a text payload's UTF-8.
    pub fn new(opcode: OpCode, payload: &[u8]) -> Self {
        let head = encode_header(true, 0, opcode, None, payload.len() as u64);
        let head = head.as_slice();
        let mut bytes = Vec::with_capacity(head.len() + payload.len());
        bytes.extend_from_slice(head);
        bytes.extend_from_slice(payload);
        let end = bytes.len();
        Self {
            bytes: Arc::new(bytes),
            at: 0,
            end,
            head: head.len() as u8,
            opcode,
        }
    }

    /// [`SharedFrame::new`], reusing a buffer from `pool` when one is free.
    pub fn new_in(pool: &mut FramePool, opcode: OpCode, payload: &[u8]) -> Self {
        let head = encode_header(true, 0, opcode, None, payload.len() as u64);
        let head = head.as_slice();
        let mut bytes = pool.take(head.len() + payload.len());
        let buf = Arc::get_mut(&mut bytes).expect("a pooled buffer is unique");
        buf.extend_from_slice(head);
        buf.extend_from_slice(payload);
        let end = bytes.len();
        let frame = Self {
            bytes,
            at: 0,
            end,
            head: head.len() as u8,
            opcode,
        };
        pool.keep(&frame);
        frame
    }

    /// `bytes[at..end]`, a frame of `head` header bytes, as a shared frame.
    pub(crate) fn view(
        bytes: &Arc<Vec<u8>>,
        at: usize,
        end: usize,
        head: u8,
        opcode: OpCode,
    ) -> Self {
        Self {
            bytes: Arc::clone(bytes),
            at,
            end,
            head,
            opcode,
        }
    }

    /// The whole frame, as it goes on the wire.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[self.at..self.end]
    }

    /// The message payload.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.at + usize::from(self.head)..self.end]
    }

    /// The message's opcode.
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }

    /// The frame's length on the wire.
    pub fn len(&self) -> usize {
        self.end - self.at
    }

    /// Never true: a frame has at least a header.
    pub fn is_empty(&self) -> bool {
        self.end == self.at
    }

    /// The shared buffer and where in it this frame lies.
    pub(crate) fn share(&self) -> (Arc<Vec<u8>>, usize, usize) {
        (Arc::clone(&self.bytes), self.at, self.end)
    }
}

/// The compressed forms of one published frame, for the subscribers whose
/// permessage-deflate agreement lets them share one: without context
/// takeover on the server's side a message is compressed from an empty
/// window, so every subscriber with the same window size gets the same
/// bytes. Built at the first such subscriber of a publish and reused by the
/// rest; a subscriber with context takeover compresses for itself.
#[derive(Debug, Default)]
pub struct DeflatedForms {
    /// By window bits 9..=15: not built yet (`None`), incompressible
    /// (`Some(None)`: the plain frame goes out), or the compressed frame.
    #[cfg(feature = "deflate")]
    pub(crate) forms: [Option<Option<Arc<Vec<u8>>>>; 7],
}

impl DeflatedForms {
    /// None built yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many compressed forms were built (for tests and metrics).
    pub fn built(&self) -> usize {
        #[cfg(feature = "deflate")]
        return self
            .forms
            .iter()
            .filter(|f| matches!(f, Some(Some(_))))
            .count();
        #[cfg(not(feature = "deflate"))]
        0
    }
}

/// Frame buffers kept for reuse, so that publishing allocates nothing in
/// steady state: the pool keeps a reference to each recent frame and hands
/// its buffer out again once every queue that held it has let go.
///
/// A ring of at most [`FramePool::SLOTS`] buffers, checked oldest first:
/// O(1) per publish. Buffers above [`FramePool::MAX_KEPT`] bytes are not
/// kept (a large message is rare and its memory is given back).
#[derive(Debug, Default)]
pub struct FramePool {
    ring: VecDeque<Arc<Vec<u8>>>,
}

impl FramePool {
    /// Buffers kept at most.
    pub const SLOTS: usize = 64;
    /// Largest buffer kept, in bytes.
    pub const MAX_KEPT: usize = 64 * 1024;

    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty, unshared buffer with room for `len` bytes.
    pub(crate) fn take(&mut self, len: usize) -> Arc<Vec<u8>> {
        if let Some(oldest) = self.ring.front_mut() {
            if let Some(buf) = Arc::get_mut(oldest) {
                buf.clear();
                buf.reserve(len);
                return self.ring.pop_front().expect("just seen");
            }
            if self.ring.len() >= Self::SLOTS {
                // Still queued for a slow subscriber: let it go.
                self.ring.pop_front();
            }
        }
        Arc::new(Vec::with_capacity(len))
    }

    fn keep(&mut self, frame: &SharedFrame) {
        self.keep_buf(&frame.bytes);
    }

    pub(crate) fn keep_buf(&mut self, bytes: &Arc<Vec<u8>>) {
        if bytes.capacity() <= Self::MAX_KEPT {
            self.ring.push_back(Arc::clone(bytes));
        }
    }

    /// Buffers held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// No buffer held.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_payload_in_one_buffer() {
        let f = SharedFrame::new(OpCode::Text, b"hello");
        assert_eq!(f.bytes(), b"\x81\x05hello");
        assert_eq!(f.payload(), b"hello");
        let big = vec![7u8; 70_000];
        let f = SharedFrame::new(OpCode::Binary, &big);
        assert_eq!(&f.bytes()[..2], &[0x82, 127]);
        assert_eq!(f.payload().len(), 70_000);
        assert_eq!(f.len(), 70_010);
    }

    #[test]
    fn the_pool_reuses_buffers_no_queue_holds() {
        let mut pool = FramePool::new();
        let a = SharedFrame::new_in(&mut pool, OpCode::Text, b"one");
        let ptr = a.bytes().as_ptr();
        let held = a.clone();
        drop(a);
        // Still held (a queue's reference): not reused.
        let b = SharedFrame::new_in(&mut pool, OpCode::Text, b"two");
        assert_ne!(b.bytes().as_ptr(), ptr);
        assert_eq!(held.payload(), b"one");
        drop(held);
        drop(b);
        let c = SharedFrame::new_in(&mut pool, OpCode::Binary, b"three");
        assert_eq!(c.bytes().as_ptr(), ptr, "the oldest free buffer is reused");
        assert_eq!(c.bytes(), b"\x82\x05three");
        assert!(pool.len() <= 2);
    }

    #[test]
    fn the_pool_is_bounded() {
        let mut pool = FramePool::new();
        let held: Vec<SharedFrame> = (0..200)
            .map(|i| SharedFrame::new_in(&mut pool, OpCode::Binary, &[i as u8; 10]))
            .collect();
        assert!(pool.len() <= FramePool::SLOTS);
        assert_eq!(held[199].payload(), &[199u8; 10]);
        let big = SharedFrame::new_in(&mut pool, OpCode::Binary, &vec![0; 100_000]);
        assert!(pool.len() <= FramePool::SLOTS);
        assert!(!pool.ring.iter().any(|b| b.len() == big.len()));
    }
}
