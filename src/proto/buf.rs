//! A byte buffer that costs one pointer while it holds nothing.

/// A `Vec<u8>` boxed on first use and freed by [`LazyBuf::release`].
///
/// For buffers that every connection has but that are empty on an idle one
/// (the receiver's assembly buffer, the reactor's bytes of an unfinished
/// frame): the owning struct pays 8 bytes instead of a `Vec`'s 24. The price
/// is paid only when the buffer comes into use: two allocations (the box and
/// the bytes) instead of one.
#[derive(Debug, Default)]
// The extra allocation clippy warns of is the point: one word, not three.
#[allow(clippy::box_collection)]
pub(crate) struct LazyBuf(Option<Box<Vec<u8>>>);

impl LazyBuf {
    /// An empty buffer; allocates nothing.
    pub(crate) const fn new() -> Self {
        Self(None)
    }

    /// The bytes held.
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The vector itself, allocated now if it was not.
    pub(crate) fn vec_mut(&mut self) -> &mut Vec<u8> {
        self.0.get_or_insert_with(Box::default)
    }

    /// Append `bytes`; allocates nothing for an empty slice.
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.vec_mut().extend_from_slice(bytes);
        }
    }

    /// Hold exactly `bytes`, reusing the memory already held; hold no memory
    /// if `bytes` is empty.
    ///
    /// Inlined for its common case, nothing to hold and nothing held.
    #[cfg(feature = "net")]
    #[inline]
    pub(crate) fn replace(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            if self.0.is_some() {
                self.release();
            }
        } else {
            let v = self.vec_mut();
            v.clear();
            v.extend_from_slice(bytes);
        }
    }

    /// Free the bytes and the box.
    pub(crate) fn release(&mut self) {
        self.0 = None;
    }

    /// Bytes allocated for (0 when released).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.0.as_deref().map_or(0, Vec::capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::LazyBuf;

    #[test]
    fn one_pointer_and_nothing_allocated_until_used() {
        assert_eq!(std::mem::size_of::<LazyBuf>(), std::mem::size_of::<usize>());
        let mut b = LazyBuf::new();
        b.extend_from_slice(&[]);
        assert_eq!((b.as_slice().len(), b.capacity()), (0, 0));
        b.extend_from_slice(b"abc");
        b.vec_mut().extend_from_slice(b"de");
        assert_eq!(b.as_slice(), b"abcde");
        b.release();
        assert_eq!((b.as_slice(), b.capacity()), (&b""[..], 0));
    }

    #[cfg(feature = "net")]
    #[test]
    fn replace_reuses_memory_and_releases_when_empty() {
        let mut b = LazyBuf::new();
        b.replace(b"0123456789");
        let cap = b.capacity();
        b.replace(b"xy");
        assert_eq!((b.as_slice(), b.capacity()), (&b"xy"[..], cap));
        b.replace(b"");
        assert_eq!(b.capacity(), 0);
    }
}
