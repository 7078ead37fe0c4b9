//! Masking (RFC 6455 §5.3): the XOR with a frame's 4-byte key, eight bytes at a time, and the
//! client's source of fresh keys.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// XORs `data` with `key` repeated, `data[0]` with `key[0]` (masking and unmasking are the
/// same operation). A word at a time: the key is widened to eight bytes, and eight is a
/// multiple of four, so the key lines up again for the bytes left at the end.
pub fn apply(data: &mut [u8], key: [u8; 4]) {
    if key == [0; 4] {
        return; // a zero mask changes nothing
    }
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = data.chunks_exact_mut(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// The masking keys of a client's frames: xorshift64*, seeded per connection from the
/// process's hash keys and a counter. Cheap, and unpredictable enough for its purpose (RFC
/// 6455 §10.3 guards against scripts in browsers steering proxies; no script picks our
/// payloads).
#[derive(Clone, Debug)]
pub struct MaskKeys(u64);

impl MaskKeys {
    /// A generator seeded differently for every call.
    pub fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        // xorshift never leaves zero: make sure it doesn't start there.
        MaskKeys(hasher.finish() | 1)
    }

    /// The next key.
    pub fn next_key(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let out = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let [a, b, c, d, ..] = (out >> 32).to_le_bytes();
        [a, b, c, d]
    }
}

impl Default for MaskKeys {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time definition the fast version must match.
    fn slow(data: &mut [u8], key: [u8; 4]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }

    #[test]
    fn matches_the_definition_at_every_length_and_offset() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let source: Vec<u8> = (0..100u8).collect();
        for start in 0..8 {
            for len in 0..(100 - start) {
                let mut fast = source[start..start + len].to_vec();
                let mut reference = fast.clone();
                apply(&mut fast, key);
                slow(&mut reference, key);
                assert_eq!(fast, reference, "start {start} len {len}");
            }
        }
    }

    #[test]
    fn masking_twice_gives_the_data_back_and_a_zero_key_changes_nothing() {
        let mut data = b"Hello, WebSocket!".to_vec();
        apply(&mut data, [9, 8, 7, 6]);
        assert_ne!(&data[..], b"Hello, WebSocket!");
        apply(&mut data, [9, 8, 7, 6]);
        assert_eq!(&data[..], b"Hello, WebSocket!");
        apply(&mut data, [0; 4]);
        assert_eq!(&data[..], b"Hello, WebSocket!");
    }

    #[test]
    fn keys_vary_within_and_between_generators() {
        let mut a = MaskKeys::new();
        let mut b = MaskKeys::new();
        let from_a: Vec<[u8; 4]> = (0..64).map(|_| a.next_key()).collect();
        let from_b: Vec<[u8; 4]> = (0..64).map(|_| b.next_key()).collect();
        assert_ne!(from_a, from_b);
        let mut distinct = from_a.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 60, "{distinct:?}");
    }
}
