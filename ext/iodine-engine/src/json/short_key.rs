//! [`ShortKey`]: an object key of up to 32 bytes as four words, the entry of a cache of keys
//! already made (the Ruby binding's `Iodine::JSON` keeps one: API payloads repeat the same few
//! keys). Building one is a few loads straight from the key's bytes; comparing two is five
//! integer compares; no pointer to chase and no `memcmp`.

/// The longest key a [`ShortKey`] holds.
pub const SHORT_KEY_LEN: usize = 32;

/// A key's bytes as four little-endian words, zero-padded, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortKey {
    words: [u64; 4],
    /// The length, or `u8::MAX` for [`ShortKey::EMPTY`] (no key is that long).
    len: u8,
}

impl ShortKey {
    /// A value equal to no key's (an empty cache slot).
    pub const EMPTY: ShortKey = ShortKey {
        words: [0; 4],
        len: u8::MAX,
    };

    /// `key` as a `ShortKey`, if it is at most [`SHORT_KEY_LEN`] bytes.
    #[inline]
    pub fn of(key: &[u8]) -> Option<ShortKey> {
        if key.len() > SHORT_KEY_LEN {
            return None;
        }
        // Each word computed in a register: an array written at a variable index and then
        // read whole would stall on store forwarding.
        Some(ShortKey {
            words: [word(key, 0), word(key, 1), word(key, 2), word(key, 3)],
            len: key.len() as u8,
        })
    }

    /// Its slot in a table of `1 << bits` slots (`bits` from 1 to 63): a multiply per word in
    /// use, the top bits as the index.
    #[inline]
    pub fn slot(&self, bits: u32) -> usize {
        let used = usize::from(self.len).div_ceil(8).min(4);
        let mut hash = u64::from(self.len);
        for word in &self.words[..used] {
            hash = (hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
        (hash >> (64 - bits.clamp(1, 63))) as usize
    }
}

/// Word `i` of `key` zero-padded to 32 bytes (little-endian): a full word is one load; the
/// partial last one comes from loads that end at the key's end.
#[inline(always)]
fn word(key: &[u8], i: usize) -> u64 {
    let len = key.len();
    let from = 8 * i;
    if from + 8 <= len {
        eight_at(key, from)
    } else if from >= len {
        0
    } else if len >= 8 {
        // The last eight bytes, shifted down past the ones in the full words before.
        eight_at(key, len - 8) >> (8 * (8 - (len - from)))
    } else if len >= 4 {
        // Two overlapping four-byte loads; the bytes both hold are the same.
        u64::from(four_at(key, 0)) | u64::from(four_at(key, len - 4)) << (8 * (len - 4))
    } else {
        u64::from(key[0])
            | u64::from(key[len / 2]) << (8 * (len / 2))
            | u64::from(key[len - 1]) << (8 * (len - 1))
    }
}

/// The little-endian word of the eight bytes at `at` (the caller checked they are there).
#[inline(always)]
fn eight_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The little-endian value of the four bytes at `at` (the caller checked they are there).
#[inline(always)]
fn four_at(bytes: &[u8], at: usize) -> u32 {
    let mut four = [0u8; 4];
    four.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(four)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `of` must give: the bytes copied into a zeroed 32-byte buffer, read as words.
    fn padded(key: &[u8]) -> [u64; 4] {
        let mut bytes = [0u8; SHORT_KEY_LEN];
        bytes[..key.len()].copy_from_slice(key);
        let mut words = [0u64; 4];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(chunk);
            *w = u64::from_le_bytes(eight);
        }
        words
    }

    #[test]
    fn every_length_reads_the_bytes_of_a_padded_copy() {
        let source: Vec<u8> = (1..=40u8).map(|b| b.wrapping_mul(37) | 0x80).collect();
        for len in 0..=SHORT_KEY_LEN {
            for start in 0..4 {
                let key = &source[start..start + len];
                let short = ShortKey::of(key).expect("short enough");
                assert_eq!(short.words, padded(key), "length {len} at {start}");
                assert_eq!(short.len as usize, len);
            }
        }
        assert_eq!(ShortKey::of(&source[..SHORT_KEY_LEN + 1]), None);
    }

    #[test]
    fn keys_differing_in_one_byte_or_a_trailing_zero_differ() {
        let a = ShortKey::of(b"user_id");
        assert_eq!(a, ShortKey::of(b"user_id"));
        assert_ne!(a, ShortKey::of(b"user_ie"));
        assert_ne!(a, ShortKey::of(b"user_id\0"), "the length tells them apart");
        assert_ne!(ShortKey::of(b""), Some(ShortKey::EMPTY));
        assert_ne!(
            ShortKey::of(b"abcdefghijklmnopqrstuvwxyz012345"),
            ShortKey::of(b"abcdefghijklmnopqrstuvwxyz012346")
        );
    }

    #[test]
    fn slots_stay_in_the_table_and_spread() {
        let mut used = std::collections::HashSet::new();
        for i in 0..400 {
            let key = format!("key_{i}");
            let slot = ShortKey::of(key.as_bytes()).map(|k| k.slot(9));
            assert!(slot.is_some_and(|s| s < 512));
            used.extend(slot);
        }
        assert!(used.len() > 250, "400 keys in {} of 512 slots", used.len());
        assert_eq!(ShortKey::EMPTY.slot(9), ShortKey::EMPTY.slot(9));
    }
}
