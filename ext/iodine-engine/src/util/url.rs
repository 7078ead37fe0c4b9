//! Percent-decoding of URL parts, bytes in and bytes out (the result may be invalid UTF-8).
//!
//! - [`decode_url`]: query strings and form values: `+` is a space, `%XX` is the byte `0xXX`.
//! - [`decode_path`]: paths: only `%XX` (a `+` stays a `+`).
//! - [`decode_in_place`]: either, in the caller's buffer (no allocation).
//!
//! A `%` that is not followed by two hex digits is an error ([`MalformedEscape`]): Rack's
//! `unescape` refuses such input too, and guessing would hide broken clients.

use std::fmt;

/// A `%` not followed by two hex digits, at byte `offset` of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedEscape {
    /// Where the `%` is, in bytes from the start of the input.
    pub offset: usize,
}

impl fmt::Display for MalformedEscape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed %-escape at byte {}", self.offset)
    }
}

impl std::error::Error for MalformedEscape {}

/// The value of each byte as a hex digit, or `NOT_HEX`.
const NOT_HEX: u8 = 0xff;
const HEX: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes a query string or form component: `+` → space, `%XX` → byte.
pub fn decode_url(input: &[u8]) -> Result<Vec<u8>, MalformedEscape> {
    let mut buf = input.to_vec();
    decode_in_place(&mut buf, true)?;
    Ok(buf)
}

/// Decodes a path: `%XX` → byte; `+` is kept.
pub fn decode_path(input: &[u8]) -> Result<Vec<u8>, MalformedEscape> {
    let mut buf = input.to_vec();
    decode_in_place(&mut buf, false)?;
    Ok(buf)
}

/// Decodes `buf` in place (`plus`: whether `+` means a space) and shortens it to the
/// decoded length; no allocation. On error `buf` is left partially decoded.
///
/// The decoding is never longer than its source, so the byte written at `write` was always
/// read already (`write <= read`).
pub fn decode_in_place(buf: &mut Vec<u8>, plus: bool) -> Result<(), MalformedEscape> {
    // Most inputs start with a run of plain bytes that stays where it is.
    let Some(first) = buf.iter().position(|&b| b == b'%' || (plus && b == b'+')) else {
        return Ok(());
    };
    let mut read = first;
    let mut write = first;
    while read < buf.len() {
        let byte = match buf[read] {
            b'%' => {
                let decoded = escaped_byte(buf, read)?;
                read += 3;
                decoded
            }
            b'+' if plus => {
                read += 1;
                b' '
            }
            other => {
                read += 1;
                other
            }
        };
        buf[write] = byte;
        write += 1;
    }
    buf.truncate(write);
    Ok(())
}

/// The byte encoded by the `%XX` at `at`.
fn escaped_byte(input: &[u8], at: usize) -> Result<u8, MalformedEscape> {
    let digit = |k: usize| match input.get(at + k) {
        Some(&b) if HEX[b as usize] != NOT_HEX => Some(HEX[b as usize]),
        _ => None,
    };
    match (digit(1), digit(2)) {
        (Some(high), Some(low)) => Ok(high << 4 | low),
        _ => Err(MalformedEscape { offset: at }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_plus() {
        assert_eq!(decode_url(b"a+b%20c%2Bd").unwrap(), b"a b c+d");
        assert_eq!(decode_url(b"%C3%A9t%c3%a9").unwrap(), "été".as_bytes());
        assert_eq!(decode_url(b"").unwrap(), b"");
        assert_eq!(decode_url(b"plain").unwrap(), b"plain");
        assert_eq!(decode_url(b"%25%2525").unwrap(), b"%%25");
        assert_eq!(decode_url(b"+++").unwrap(), b"   ");
    }

    #[test]
    fn path_keeps_plus() {
        assert_eq!(decode_path(b"/a+b/%2Fc%20d").unwrap(), b"/a+b//c d");
        assert_eq!(decode_path(b"/").unwrap(), b"/");
    }

    #[test]
    fn bytes_in_bytes_out() {
        assert_eq!(decode_url(b"%FF%00%80").unwrap(), [0xff, 0, 0x80]);
        assert_eq!(
            decode_path(&[0xff, b'%', b'4', b'1']).unwrap(),
            [0xff, b'A']
        );
    }

    #[test]
    fn malformed_escapes_are_errors() {
        for (input, offset) in [
            (&b"%"[..], 0),
            (b"%4", 0),
            (b"%zz", 0),
            (b"%%", 0),
            (b"ab%4g", 2),
            (b"%41%", 3),
            (b"%g1", 0),
            (b"x%+1", 1),
        ] {
            assert_eq!(
                decode_url(input),
                Err(MalformedEscape { offset }),
                "{input:?}"
            );
            assert_eq!(
                decode_path(input),
                Err(MalformedEscape { offset }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let encoded: String = all.iter().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(decode_url(encoded.as_bytes()).unwrap(), all);
        assert_eq!(decode_path(encoded.to_lowercase().as_bytes()).unwrap(), all);
    }

    #[test]
    fn decodes_in_place() {
        let mut buf = b"plain+%41%42c".to_vec();
        decode_in_place(&mut buf, true).unwrap();
        assert_eq!(buf, b"plain ABc");
        let mut buf = b"/a+%2f".to_vec();
        decode_in_place(&mut buf, false).unwrap();
        assert_eq!(buf, b"/a+/");
        let mut untouched = b"nothing-to-do".to_vec();
        decode_in_place(&mut untouched, true).unwrap();
        assert_eq!(untouched, b"nothing-to-do");
    }
}
