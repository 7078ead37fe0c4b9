//! Writing JSON text as Ruby's json gem writes it (its `generate` with default options).

use std::io::Write as _;

/// Which bytes a string escapes: 0 for none, else the letter after the backslash (`u` for
/// `\u00XX`).
const ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `value` as a JSON string, quotes included: `"` and `\` get a backslash, control
/// characters become `\b \t \n \f \r` or `\u00xx`, everything else (`/`, DEL, non-ASCII,
/// U+2028) is copied as is.
pub fn write_str(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape = ESCAPES[byte as usize];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[copied..i]);
        copied = i + 1;
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(byte >> 4) as usize]);
            out.push(HEX[(byte & 15) as usize]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// Formats `value` with `{:e}` (or, with `precision`, `{:.precision$e}`) into `buf`; the
/// length written.
fn format_exp(buf: &mut [u8; 40], value: f64, precision: Option<usize>) -> usize {
    let mut cursor = &mut buf[..];
    let written = match precision {
        Some(p) => write!(cursor, "{value:.p$e}"),
        None => write!(cursor, "{value:e}"),
    };
    if written.is_err() {
        return 0; // can't happen: 40 bytes hold any f64 in this form
    }
    40 - cursor.len()
}

/// The significant digits of `{:e}` text (sign stripped) and its decimal exponent.
fn split_exp(text: &[u8], digits: &mut [u8; 24]) -> (usize, i32) {
    let e = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
    let exponent: i32 = std::str::from_utf8(text.get(e + 1..).unwrap_or(b"0"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut count = 0;
    for &b in &text[..e] {
        if b != b'.' && count < digits.len() {
            digits[count] = b;
            count += 1;
        }
    }
    (count, exponent)
}

/// Appends a finite `value` as Ruby's `Float#to_s` prints it (what the json gem writes):
/// the shortest digits that read back to the same float (of two equally near, the even
/// one), as `123.45`, `100.0`, `0.0001`, `1000000000000000.5`, or as `1.0e+15`, `2.5e-05`
/// below 1e-4 and for whole numbers from 1e15 up. NaN and the infinities are the caller's
/// to refuse or spell.
pub fn write_f64(out: &mut Vec<u8>, value: f64) {
    let negative = value.is_sign_negative();
    let magnitude = value.abs();
    // Rust's `{:e}` gives the shortest round-trip digits: `1.2345e-7`, `1e20`, `0e0`.
    let mut buf = [0u8; 40];
    let len = format_exp(&mut buf, magnitude, None);
    let mut digits = [0u8; 24];
    let (mut count, mut exponent) = split_exp(&buf[..len], &mut digits);
    if count >= 15 {
        // Two texts this long may both read back; Ruby's dtoa picks the nearer (the even
        // one on a tie), which is the correctly rounded text of that length.
        let len = format_exp(&mut buf, magnitude, Some(count - 1));
        (count, exponent) = split_exp(&buf[..len], &mut digits);
    }
    let digits = &digits[..count];
    if negative {
        out.push(b'-');
    }
    let fixed = (-4..15).contains(&exponent) || exponent == 15 && digits.len() > 16;
    if fixed {
        if exponent >= 0 {
            let whole = exponent as usize + 1;
            if digits.len() > whole {
                out.extend_from_slice(&digits[..whole]);
                out.push(b'.');
                out.extend_from_slice(&digits[whole..]);
            } else {
                out.extend_from_slice(digits);
                out.resize(out.len() + whole - digits.len(), b'0');
                out.extend_from_slice(b".0");
            }
        } else {
            out.extend_from_slice(b"0.");
            out.resize(out.len() + (-exponent - 1) as usize, b'0');
            out.extend_from_slice(digits);
        }
    } else {
        out.push(digits.first().copied().unwrap_or(b'0'));
        out.push(b'.');
        if digits.len() > 1 {
            out.extend_from_slice(&digits[1..]);
        } else {
            out.push(b'0');
        }
        // The exponent: a sign and at least two digits (`e+20`, `e-05`, `e+308`).
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.abs());
    }
}
