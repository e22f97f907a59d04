//! Incremental UTF-8 validation across fragments and reads.
//!
//! RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but
//! finds that the byte stream is not, in fact, a valid UTF-8 stream, that
//! endpoint MUST _Fail the WebSocket Connection_." We fail at the first invalid
//! byte, even when the rest of the frame has not arrived yet (Autobahn 6.4.*).
//!
//! The bulk work is done by `std::str::from_utf8`, which reports exactly where
//! the input stops being a valid prefix; only a code point cut by a chunk
//! boundary (at most three bytes) is carried between calls.

/// The input is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates a byte stream fed in arbitrary pieces.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Validator {
    /// Bytes of a code point whose remaining bytes have not arrived yet.
    partial: [u8; 4],
    len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a stream.
    pub const fn new() -> Self {
        Self {
            partial: [0; 4],
            len: 0,
        }
    }

    /// Feed the next piece of the stream.
    ///
    /// # Errors
    /// `InvalidUtf8` as soon as the stream so far cannot be a prefix of valid
    /// UTF-8.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.len > 0 {
            // Complete the carried code point one byte at a time.
            let need = sequence_len(self.partial[0]);
            while (self.len as usize) < need {
                let Some((&b, rest)) = bytes.split_first() else {
                    return Ok(());
                };
                self.partial[self.len as usize] = b;
                self.len += 1;
                bytes = rest;
                match std::str::from_utf8(&self.partial[..self.len as usize]) {
                    Ok(_) => break,
                    Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                    Err(_) => {}
                }
            }
            self.len = 0;
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                // A valid but unfinished code point at the end: carry it.
                let tail = &bytes[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// The stream ended: valid only if no code point is left unfinished.
    ///
    /// # Errors
    /// `InvalidUtf8` if the stream stops inside a code point.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let ok = self.len == 0;
        self.len = 0;
        if ok {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// Forget any carried state (start of a new message).
    pub fn reset(&mut self) {
        self.len = 0;
    }
}

/// Length of the sequence a valid lead byte starts (only called on bytes that
/// `from_utf8` accepted as the start of an unfinished code point).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all_splits(input: &[u8]) {
        let expect = std::str::from_utf8(input).is_ok();
        for cut1 in 0..=input.len() {
            for cut2 in cut1..=input.len() {
                let mut v = Utf8Validator::new();
                let r = v
                    .feed(&input[..cut1])
                    .and_then(|_| v.feed(&input[cut1..cut2]))
                    .and_then(|_| v.feed(&input[cut2..]))
                    .and_then(|_| v.finish());
                assert_eq!(r.is_ok(), expect, "{input:x?} cuts {cut1} {cut2}");
            }
        }
    }

    #[test]
    fn matches_std_for_every_split() {
        let samples: &[&[u8]] = &[
            b"",
            b"Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
            "κόσμε".as_bytes(),
            b"\xf0\x9f\x98\x80 grin",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xed\xbf\xbf",
            b"\xf8\x88\x80\x80\x80",
            b"abc\xff",
            b"\xf0\x9f\x98",
            b"\xe2\x82",
        ];
        for s in samples {
            check_all_splits(s);
        }
    }

    #[test]
    fn fails_fast_before_the_rest_arrives() {
        // Autobahn 6.4.1: the code point F4 90 80 80 is beyond U+10FFFF;
        // the second byte already proves it, before 80 80 arrive.
        let mut v = Utf8Validator::new();
        assert!(v.feed("κόσμε".as_bytes()).is_ok());
        assert!(v.feed(b"\xf4").is_ok());
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
        // A surrogate (ED A0 ..) is known bad at its second byte.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xed\xa0"), Err(InvalidUtf8));
    }

    #[test]
    fn unfinished_stream_fails_at_finish() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xe2\x82").is_ok());
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }
}
