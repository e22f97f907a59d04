//! A server frame encoded once and sent to many connections.
//!
//! A publish to a topic builds its frame here, once; every subscriber's
//! [`Sender`](super::Sender) queues a reference to it (a reference-count
//! increment, never a copy of the bytes), and the transport writes each
//! subscriber's references with one `writev`. The count is atomic so that a
//! frame can be handed to another thread's reactor as it is.

use std::sync::Arc;

use super::frame::{encode_header, OpCode};

/// An unmasked, unfragmented, uncompressed server data frame: header and
/// payload in one shared allocation.
#[derive(Debug, Clone)]
pub struct SharedFrame {
    bytes: Arc<Vec<u8>>,
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
        Self {
            bytes: Arc::new(bytes),
            head: head.len() as u8,
            opcode,
        }
    }

    /// The whole frame, as it goes on the wire.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The message payload.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[usize::from(self.head)..]
    }

    /// The message's opcode.
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }

    /// The frame's length on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a frame has at least a header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn share(&self) -> Arc<Vec<u8>> {
        Arc::clone(&self.bytes)
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
}
