//! Replying with a received message without copying it.
//!
//! A message that arrived whole in the read buffer is unmasked where it lies,
//! right behind its own frame header. When the handler sends it back on the
//! same connection (an echo, the commonest reply), the reply's header is
//! written over those consumed header bytes and header and payload go out as
//! one contiguous write: no copy into a scratch buffer, and no two-part
//! `writev`, which costs the kernel more than a plain write (measured at
//! 16 KiB). A server's header is always at least 4 bytes shorter than the
//! masked client header it replaces, so it always fits.

use std::ptr::NonNull;

/// Where the message being handled lies in the read buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InPlace {
    /// First of the consumed bytes that precede the payload.
    base: NonNull<u8>,
    /// How many consumed bytes precede the payload.
    room: usize,
    /// Payload length.
    len: usize,
}

impl InPlace {
    /// Record that `payload` lies inside `base..base + input_len`; `None` if
    /// it does not (an assembled message lives in another buffer).
    ///
    /// # Safety
    /// `base` must come from a mutable borrow of `base..base + input_len`
    /// that is not used mutably again while this value, or a frame it
    /// returned, is in use; and the bytes before `payload` must be consumed
    /// input that nothing borrows: the only borrow into the range may be
    /// shared ones of the payload (`drive::frames` takes `base`, then lends
    /// the input to the event only).
    #[allow(unsafe_code)]
    pub(crate) unsafe fn new(base: *mut u8, input_len: usize, payload: &[u8]) -> Option<Self> {
        let offset = (payload.as_ptr() as usize).checked_sub(base as usize)?;
        if offset.checked_add(payload.len())? > input_len {
            return None;
        }
        Some(Self {
            base: NonNull::new(base)?,
            room: offset,
            len: payload.len(),
        })
    }

    /// The frame `head` + `payload`, assembled in place, if `payload` is (a
    /// prefix of) the recorded payload and `head` fits in front of it. For
    /// writing out at once: its header bytes stay valid only as long as
    /// `new`'s contract holds.
    pub(crate) fn frame<'p>(&self, head: &[u8], payload: &'p [u8]) -> Option<&'p [u8]> {
        let start = self.room.checked_sub(head.len())?;
        if payload.len() > self.len || !std::ptr::eq(payload.as_ptr(), self.payload()) {
            return None;
        }
        #[allow(unsafe_code)]
        // SAFETY: by `new`'s contract `base..base + room + len` is valid for
        // writes and reads, and `base + start..base + room` are consumed bytes
        // no reference points into, so writing `head` there aliases nothing.
        // `payload` starts at `base + room` (checked above) and is at most
        // `len` long, so the result covers `head`'s new bytes then exactly
        // `payload`, both inside the range. It is only read, while the shared
        // borrow `payload` (lifetime 'p) keeps the buffer from being written
        // through any other path.
        unsafe {
            let at = self.base.as_ptr().add(start);
            // A server header is 2, 4 or 10 bytes: constant-size copies
            // compile to moves, a variable one to a call to memcpy.
            match head.len() {
                2 => std::ptr::copy_nonoverlapping(head.as_ptr(), at, 2),
                4 => std::ptr::copy_nonoverlapping(head.as_ptr(), at, 4),
                n => std::ptr::copy_nonoverlapping(head.as_ptr(), at, n),
            }
            Some(std::slice::from_raw_parts(at, head.len() + payload.len()))
        }
    }

    fn payload(&self) -> *const u8 {
        self.base.as_ptr().wrapping_add(self.room)
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::InPlace;
    use crate::proto::Connection;
    use crate::proto::{encode_header, Event, OpCode, Sender};

    /// Decode a masked frame in a buffer the way the reactor does, then
    /// build the reply in place. Run under Miri too (`cargo +nightly miri
    /// test --lib --no-default-features --features net inplace`): it checks
    /// the borrows against Stacked Borrows, not just the bytes.
    fn echo_in_place(payload: &[u8], text: bool) -> Vec<u8> {
        let mut client = Sender::new(Some(7));
        let op = if text { OpCode::Text } else { OpCode::Binary };
        client.send(op, payload).unwrap();
        let mut buf = client.pending().to_vec();
        buf.extend_from_slice(b"next frame");
        let mut server = Connection::server(Default::default());
        let (rx, tx) = server.split();
        let input = &mut buf[..];
        let input_len = input.len();
        let (consumed, ready) = rx.decode(input, tx).unwrap();
        let base = input.as_mut_ptr();
        // SAFETY: `ready` is from the `decode` just made on `input`.
        let Event::Message(msg) = (unsafe { rx.event(ready.unwrap(), input) }) else {
            panic!("no message")
        };
        // SAFETY: as in `drive::frames`: `input` is only shared with `msg`.
        let spot = unsafe { InPlace::new(base, input_len, msg.as_bytes()) }.unwrap();
        let head = encode_header(true, 0, msg.opcode(), None, msg.as_bytes().len() as u64);
        let frame = spot
            .frame(head.as_slice(), msg.as_bytes())
            .unwrap()
            .to_vec();
        // The message is still intact after its header was overwritten.
        assert_eq!(msg.as_bytes(), payload);
        assert_eq!(&buf[consumed..], b"next frame");
        frame
    }

    #[test]
    fn reply_is_header_then_payload_at_every_header_size() {
        // Every header size; Miri gets the small ones (it is ~1000x slower).
        let lens: &[usize] = if cfg!(miri) {
            &[0, 1, 125, 126, 1000]
        } else {
            &[0, 1, 125, 126, 1000, 65535, 65536, 70000]
        };
        for &len in lens {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let frame = echo_in_place(&payload, false);
            let mut expected = encode_header(true, 0, OpCode::Binary, None, len as u64)
                .as_slice()
                .to_vec();
            expected.extend_from_slice(&payload);
            assert_eq!(frame, expected, "len {len}");
            // And a client decodes it back.
            let mut c = Connection::client(Default::default(), 1);
            let mut f = frame.clone();
            let r = c.read(&mut f).unwrap();
            assert!(matches!(r.event, Some(Event::Message(m)) if m.as_bytes() == &payload[..]));
        }
        assert_eq!(&echo_in_place(b"hi", true)[..2], [0x81, 2]);
    }

    #[test]
    fn refuses_other_slices_and_headers_that_do_not_fit() {
        let mut buf = *b"HEADpayload!rest";
        let base = buf.as_mut_ptr();
        // Only shared borrows of the payload follow, as in `drive::frames`.
        let payload = &buf[4..12];
        // SAFETY: `buf` is not used mutably while `spot` is.
        let spot = unsafe { InPlace::new(base, 16, payload) }.unwrap();
        // Another slice, a longer one, and a header longer than the room.
        assert!(spot.frame(b"h", &buf[5..12]).is_none());
        assert!(spot.frame(b"h", &buf[4..13]).is_none());
        assert!(spot.frame(b"12345", payload).is_none());
        // A prefix of the payload is fine.
        assert_eq!(spot.frame(b"ab", &payload[..3]).unwrap(), b"abpay");
        // A payload outside the input is never recorded.
        let other = [0u8; 4];
        // SAFETY: not dereferenced: `new` returns None.
        assert!(unsafe { InPlace::new(base, 16, &other) }.is_none());
    }
}
