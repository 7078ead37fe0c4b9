//! HTML escaping exactly as the Mustache spec defines it.

/// Append `text` to `out`, replacing `&`, `<`, `>`, `"` and `'` with their HTML entities.
///
/// Only these five bytes change, matching the spec byte for byte; other bytes (including
/// non-ASCII UTF-8) are copied untouched.
pub fn escape_html(text: &[u8], out: &mut Vec<u8>) {
    // Most text needs few or no replacements, so copy whole runs between special bytes
    // instead of pushing byte by byte.
    out.reserve(text.len());
    let mut run_start = 0;
    for (i, &byte) in text.iter().enumerate() {
        let entity: &[u8] = match byte {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            b'\'' => b"&#39;",
            _ => continue,
        };
        out.extend_from_slice(&text[run_start..i]);
        out.extend_from_slice(entity);
        run_start = i + 1;
    }
    out.extend_from_slice(&text[run_start..]);
}
