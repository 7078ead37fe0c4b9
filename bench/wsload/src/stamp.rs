//! The fan-out modes' messages: each carries the time it was published and its sequence
//! number, so a subscriber can time its delivery and spot a gap. The publisher and the
//! subscribers run in this one process, so the time is simply nanoseconds since `CLOCK`'s start.
//!
//! A message is `STAMP` then `SEQ` (16 decimal digits each, zero-padded), then letters up to
//! the requested size: plain ASCII with no newline, valid as a WebSocket text message and as
//! one SSE `data:` line. It is never shorter than `MIN_SIZE`. Subscribers read millions of
//! them a second on one core, so the digits are read 8 at a time.

use std::sync::OnceLock;
use std::time::Instant;

/// Digits of the publish time and of the sequence number (16 digits of nanoseconds: 115 days).
const DIGITS: usize = 16;
/// The shortest message: the time and the sequence number.
pub const MIN_SIZE: usize = 2 * DIGITS;
/// 10^16: the numbers wrap around there.
const LIMIT: u64 = 10_000_000_000_000_000;

/// The instant every time is counted from.
static CLOCK: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process.
pub fn now_ns() -> u64 {
    let start = *CLOCK.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The text of message `seq`, published now: at least `size` bytes (and at least `MIN_SIZE`).
pub fn text(seq: u64, size: usize) -> String {
    let mut text = format!("{:016}{:016}", now_ns() % LIMIT, seq % LIMIT);
    text.extend(
        (b'a'..=b'z')
            .cycle()
            .take(size.saturating_sub(MIN_SIZE))
            .map(char::from),
    );
    text
}

/// The publish time and sequence number at the start of `payload`; `None` if it has none.
pub fn parse(payload: &[u8]) -> Option<(u64, u64)> {
    let head: &[u8; MIN_SIZE] = payload.get(..MIN_SIZE)?.try_into().ok()?;
    let eights: [Option<u64>; 4] = std::array::from_fn(|i| {
        let chunk: [u8; 8] = head[i * 8..i * 8 + 8].try_into().unwrap_or_default();
        eight_digits(chunk)
    });
    Some((
        eights[0]? * 100_000_000 + eights[1]?,
        eights[2]? * 100_000_000 + eights[3]?,
    ))
}

/// The value of 8 ASCII decimal digits (most significant first), all at once; `None` if one
/// of them is not a digit.
fn eight_digits(chunk: [u8; 8]) -> Option<u64> {
    let v = u64::from_le_bytes(chunk);
    let all = 0x0101_0101_0101_0101_u64;
    // Every byte is 0x30..=0x3f, and its low nibble plus 6 stays below 16: '0'..='9'.
    let low = v & (0x0f * all);
    if v & (0xf0 * all) != 0x30 * all || (low + 6 * all) & (0xf0 * all) != 0 {
        return None;
    }
    // Pairs, then quads, then all eight (the first byte is the most significant digit).
    let pairs = (low.wrapping_mul(10 * 256 + 1) >> 8) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs.wrapping_mul(100 * 65_536 + 1) >> 16) & 0x0000_ffff_0000_ffff;
    Some(quads.wrapping_mul(10_000 * (1 << 32) + 1) >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let before = now_ns();
        let text = text(7, 40);
        assert_eq!(text.len(), 40);
        let (stamp, seq) = parse(text.as_bytes()).unwrap();
        assert!(stamp >= before && stamp <= now_ns());
        assert_eq!(seq, 7);
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn never_shorter_than_the_stamp() {
        assert_eq!(text(1, 8).len(), MIN_SIZE);
        assert_eq!(parse(text(123_456, 0).as_bytes()).unwrap().1, 123_456);
    }

    #[test]
    fn rejects_other_payloads() {
        assert_eq!(parse(b"ready"), None);
        assert_eq!(parse(&[b'x'; 40]), None);
        assert_eq!(parse(b"0000000000000000001x000000000001"), None);
        for bad in [b'/', b':', b'@', b' ', 0x80, 0xb3] {
            for at in 0..MIN_SIZE {
                let mut text = *b"12345678901234567890123456789012";
                text[at] = bad;
                assert_eq!(parse(&text), None, "{bad:#x} at {at}");
            }
        }
    }

    #[test]
    fn reads_eight_digits_at_once() {
        for n in [0, 1, 9, 10, 12_345_678, 99_999_999, 10_000_000, 90_807_060] {
            let text = format!("{n:08}");
            assert_eq!(eight_digits(text.as_bytes().try_into().unwrap()), Some(n));
        }
        assert_eq!(
            parse(b"12345678901234560000000000000042"),
            Some((1_234_567_890_123_456, 42))
        );
    }
}
