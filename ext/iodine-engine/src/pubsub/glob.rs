//! Redis-style glob patterns for `subscribe(…, match: :redis)`: `*` any run of bytes, `?` one
//! byte, `[abc]`, `[a-z]` and `[^…]` classes, `\` escapes the next byte. Channels are bytes
//! (binary-safe); the matcher works on bytes too.

/// Whether `channel` matches `pattern`.
pub fn matches(pattern: &[u8], channel: &[u8]) -> bool {
    // Iterative matcher with one backtrack point (the last `*`): linear in practice, and no
    // recursion for a hostile pattern to blow up.
    let (mut p, mut c) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while c < channel.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, c));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    c += 1;
                    continue;
                }
                b'[' => {
                    if let Some((hit, next)) = class(pattern, p, channel[c]) {
                        if hit {
                            p = next;
                            c += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == channel[c] {
                        p += 2;
                        c += 1;
                        continue;
                    }
                }
                byte => {
                    if byte == channel[c] {
                        p += 1;
                        c += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            // Let the last `*` take one more byte and try again from there.
            Some((sp, sc)) => {
                star = Some((sp, sc + 1));
                p = sp + 1;
                c = sc + 1;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Matches `byte` against the class starting at `pattern[at] == b'['`: `(hit, index after
/// the class)`, or None for an unterminated class (then `[` is an ordinary byte).
fn class(pattern: &[u8], at: usize, byte: u8) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < pattern.len() && (pattern[i] != b']' || first) {
        first = false;
        let mut lo = pattern[i];
        if lo == b'\\' && i + 1 < pattern.len() {
            i += 1;
            lo = pattern[i];
        }
        if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let hi = pattern[i + 2];
            let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            hit |= (lo..=hi).contains(&byte);
            i += 3;
        } else {
            hit |= lo == byte;
            i += 1;
        }
    }
    if i >= pattern.len() {
        if pattern[at] == byte {
            return Some((true, at + 1));
        }
        return None;
    }
    Some((hit != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn m(p: &str, c: &str) -> bool {
        matches(p.as_bytes(), c.as_bytes())
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(m("news.*", "news.sport"));
        assert!(m("news.*", "news."));
        assert!(!m("news.*", "new"));
        assert!(m("*", ""));
        assert!(m("h?llo", "hello") && !m("h?llo", "hllo"));
        assert!(m("a*b*c", "axxbyyc") && !m("a*b*c", "axxbyy"));
        assert!(m("*.log", "a.b.log"));
    }

    #[test]
    fn classes_ranges_negation_and_escapes() {
        assert!(m("h[ae]llo", "hallo") && m("h[ae]llo", "hello") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-c]llo", "hbllo") && !m("h[a-c]llo", "hdllo"));
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(m("a[", "a[") && !m("a[", "ab"));
    }

    #[test]
    fn a_hostile_pattern_is_fast() {
        let pattern = "*a".repeat(50) + "b";
        let channel = "a".repeat(5000);
        assert!(!matches(pattern.as_bytes(), channel.as_bytes()));
    }
}
