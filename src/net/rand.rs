//! The reactor's random source (the protocol core has none: it is handed
//! seeds and keys).
//!
//! `RandomState` is seeded from the OS once per thread and gives a new
//! SipHash key per instance; hashing a counter through it yields
//! unpredictable 64-bit values with no syscall per call and no extra crate.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// An unpredictable 64-bit value.
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// 16 unpredictable bytes (a `Sec-WebSocket-Key` nonce).
pub(crate) fn random_16() -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&random_u64().to_ne_bytes());
    out[8..].copy_from_slice(&random_u64().to_ne_bytes());
    out
}
