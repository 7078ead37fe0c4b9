//! The parser: one pass over the bytes, no recursion (an explicit stack of open
//! containers), strings copied only when they hold escapes.

use super::error::{Error, ErrorKind};
use super::sink::{Sink, Stop};

/// How strict a parse is beyond the RFC's grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The deepest nesting of arrays and objects allowed; 0 for no limit. Default 100 (the
    /// json gem's).
    pub max_nesting: usize,
    /// Accept `NaN`, `Infinity` and `-Infinity` (not JSON; the json gem's `allow_nan`).
    pub allow_nan: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_nesting: 100,
            allow_nan: false,
        }
    }
}

/// Parses `input` (one JSON value, whitespace around it allowed) into `sink`.
///
/// On error nothing tells the sink: it may hold the values of a half-built document, which
/// it drops.
pub fn parse<S: Sink>(input: &[u8], options: &Options, sink: &mut S) -> Result<(), Error> {
    Parser {
        input,
        pos: 0,
        scratch: Vec::new(),
        options: *options,
        // One check of the whole input (SIMD, several GB/s) is cheaper than one per string
        // holding non-ASCII text; only a document that fails it checks string by string, so
        // its error names the string and the byte.
        check_strings: simdutf8::basic::from_utf8(input).is_err(),
    }
    .run(sink)
}

/// An open container: whether it is an object, and how many values (pairs) it holds so far.
struct Frame {
    object: bool,
    count: usize,
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    /// Unescaped text of the string being read (reused).
    scratch: Vec<u8>,
    options: Options,
    /// Whether strings need their own UTF-8 check (the input as a whole is not UTF-8).
    check_strings: bool,
}

/// `Stop` from the sink, as an error at `offset`.
fn stopped(offset: usize) -> impl Fn(Stop) -> Error {
    move |_| Error::new(ErrorKind::Stopped, offset)
}

impl<'a> Parser<'a> {
    fn run<S: Sink>(&mut self, sink: &mut S) -> Result<(), Error> {
        let mut stack: Vec<Frame> = Vec::new();
        self.skip_whitespace();
        'value: loop {
            let at = self.pos;
            let Some(&byte) = self.input.get(at) else {
                return Err(Error::new(ErrorKind::UnexpectedEnd, at));
            };
            match byte {
                b'[' | b'{' => {
                    let object = byte == b'{';
                    let depth = stack.len() + 1;
                    if self.options.max_nesting != 0 && depth > self.options.max_nesting {
                        return Err(Error::new(ErrorKind::TooDeep(depth), at));
                    }
                    self.pos += 1;
                    if object {
                        sink.begin_object().map_err(stopped(at))?;
                    } else {
                        sink.begin_array().map_err(stopped(at))?;
                    }
                    self.skip_whitespace();
                    let close = if object { b'}' } else { b']' };
                    if self.input.get(self.pos) == Some(&close) {
                        self.pos += 1;
                        if object {
                            sink.end_object(0).map_err(stopped(at))?;
                        } else {
                            sink.end_array(0).map_err(stopped(at))?;
                        }
                    } else {
                        stack.push(Frame { object, count: 0 });
                        if object {
                            self.key(sink)?;
                        }
                        continue 'value;
                    }
                }
                b'"' => {
                    let value = self.string()?;
                    sink.string(value).map_err(stopped(at))?;
                }
                b't' => {
                    self.literal(b"true")?;
                    sink.boolean(true).map_err(stopped(at))?;
                }
                b'f' => {
                    self.literal(b"false")?;
                    sink.boolean(false).map_err(stopped(at))?;
                }
                b'n' => {
                    self.literal(b"null")?;
                    sink.null().map_err(stopped(at))?;
                }
                b'-' | b'0'..=b'9' => self.number(sink)?,
                b'N' if self.options.allow_nan => {
                    self.literal(b"NaN")?;
                    sink.float(f64::NAN).map_err(stopped(at))?;
                }
                b'I' if self.options.allow_nan => {
                    self.literal(b"Infinity")?;
                    sink.float(f64::INFINITY).map_err(stopped(at))?;
                }
                _ => return Err(Error::new(ErrorKind::UnexpectedByte(byte), at)),
            }
            // A value ended: a separator, the end of its container(s), or the document's end.
            loop {
                self.skip_whitespace();
                let Some(frame) = stack.last_mut() else {
                    break 'value;
                };
                frame.count += 1;
                let at = self.pos;
                match self.input.get(at) {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_whitespace();
                        if frame.object {
                            self.key(sink)?;
                        }
                        continue 'value;
                    }
                    Some(b']') if !frame.object => {
                        self.pos += 1;
                        let len = frame.count;
                        stack.pop();
                        sink.end_array(len).map_err(stopped(at))?;
                    }
                    Some(b'}') if frame.object => {
                        self.pos += 1;
                        let pairs = frame.count;
                        stack.pop();
                        sink.end_object(pairs).map_err(stopped(at))?;
                    }
                    Some(&other) => {
                        return Err(Error::new(ErrorKind::UnexpectedByte(other), at));
                    }
                    None => return Err(Error::new(ErrorKind::UnexpectedEnd, at)),
                }
            }
        }
        if self.pos != self.input.len() {
            return Err(Error::new(ErrorKind::TrailingData, self.pos));
        }
        Ok(())
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    /// An object key at `pos`, its colon, and the whitespace before its value.
    fn key<S: Sink>(&mut self, sink: &mut S) -> Result<(), Error> {
        let at = self.pos;
        match self.input.get(at) {
            Some(b'"') => {}
            Some(&other) => return Err(Error::new(ErrorKind::UnexpectedByte(other), at)),
            None => return Err(Error::new(ErrorKind::UnexpectedEnd, at)),
        }
        let key = self.string()?;
        sink.key(key).map_err(stopped(at))?;
        self.skip_whitespace();
        match self.input.get(self.pos) {
            Some(b':') => {
                self.pos += 1;
                self.skip_whitespace();
                Ok(())
            }
            Some(&other) => Err(Error::new(ErrorKind::UnexpectedByte(other), self.pos)),
            None => Err(Error::new(ErrorKind::UnexpectedEnd, self.pos)),
        }
    }

    /// `word` at `pos` (its first byte already matched).
    fn literal(&mut self, word: &[u8]) -> Result<(), Error> {
        let rest = &self.input[self.pos..];
        if rest.starts_with(word) {
            self.pos += word.len();
            return Ok(());
        }
        let same = rest.iter().zip(word).take_while(|(a, b)| a == b).count();
        let at = self.pos + same;
        Err(match self.input.get(at) {
            Some(&other) => Error::new(ErrorKind::UnexpectedByte(other), at),
            None => Error::new(ErrorKind::UnexpectedEnd, at),
        })
    }

    /// The text of the string whose opening quote is at `pos` (valid UTF-8); leaves `pos`
    /// after its closing quote. Text without escapes is a slice of the input; with escapes it
    /// is built in `scratch`.
    fn string(&mut self) -> Result<&[u8], Error> {
        let input = self.input;
        let start = self.pos + 1;
        let mut run = start;
        let mut escaped = false;
        let mut high = false;
        loop {
            let (end, run_high) = plain_run(input, run);
            high |= run_high;
            match input.get(end) {
                Some(b'"') => {
                    self.pos = end + 1;
                    let text = if escaped {
                        self.scratch.extend_from_slice(&input[run..end]);
                        &self.scratch[..]
                    } else {
                        &input[start..end]
                    };
                    // Escapes wrote UTF-8; only runs with non-ASCII bytes need a check.
                    if high && self.check_strings {
                        utf8(text, start)?;
                    }
                    return Ok(text);
                }
                Some(b'\\') => {
                    if !escaped {
                        self.scratch.clear();
                        escaped = true;
                    }
                    self.scratch.extend_from_slice(&input[run..end]);
                    run = self.escape(end)?;
                }
                Some(_) => return Err(Error::new(ErrorKind::ControlCharacter, end)),
                None => return Err(Error::new(ErrorKind::UnexpectedEnd, end)),
            }
        }
    }

    /// The escape whose backslash is at `at`, decoded onto `scratch`; the index after it.
    fn escape(&mut self, at: usize) -> Result<usize, Error> {
        let input = self.input;
        let Some(&kind) = input.get(at + 1) else {
            return Err(Error::new(ErrorKind::UnexpectedEnd, input.len()));
        };
        let byte = match kind {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let mut next = at + 6;
                let unit = hex4(input, at + 2).ok_or(Error::new(ErrorKind::InvalidEscape, at))?;
                let c = match unit {
                    0xD800..=0xDBFF => match low_surrogate(input, next) {
                        Some(low) => {
                            next += 6;
                            let code =
                                0x10000 + ((unit as u32 - 0xD800) << 10) + (low as u32 - 0xDC00);
                            char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
                        }
                        None => char::REPLACEMENT_CHARACTER,
                    },
                    0xDC00..=0xDFFF => char::REPLACEMENT_CHARACTER,
                    _ => char::from_u32(unit as u32).unwrap_or(char::REPLACEMENT_CHARACTER),
                };
                let mut buf = [0u8; 4];
                self.scratch
                    .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                return Ok(next);
            }
            _ => return Err(Error::new(ErrorKind::InvalidEscape, at)),
        };
        self.scratch.push(byte);
        Ok(at + 2)
    }

    /// The number at `pos` (a `-` or a digit), to the sink.
    fn number<S: Sink>(&mut self, sink: &mut S) -> Result<(), Error> {
        let input = self.input;
        let start = self.pos;
        let mut i = start;
        let negative = input[i] == b'-';
        if negative {
            i += 1;
            if self.options.allow_nan && input[i..].starts_with(b"Infinity") {
                self.pos = i + 8;
                return sink.float(f64::NEG_INFINITY).map_err(stopped(start));
            }
        }
        match input.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(input, i + 1),
            Some(_) => return Err(Error::new(ErrorKind::InvalidNumber, i)),
            None => return Err(Error::new(ErrorKind::UnexpectedEnd, i)),
        }
        let int_end = i;
        let mut float = false;
        if input.get(i) == Some(&b'.') {
            float = true;
            i += 1;
            if !input.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(Error::new(ErrorKind::InvalidNumber, i));
            }
            i = digits(input, i);
        }
        if let Some(b'e' | b'E') = input.get(i) {
            float = true;
            i += 1;
            if let Some(b'+' | b'-') = input.get(i) {
                i += 1;
            }
            if !input.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(Error::new(ErrorKind::InvalidNumber, i));
            }
            i = digits(input, i);
        }
        self.pos = i;
        let int_digits = &input[start + negative as usize..int_end];
        if !float && int_digits.len() <= 18 {
            let magnitude = int_digits
                .iter()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
            let value = if negative { -magnitude } else { magnitude };
            return sink.integer(value).map_err(stopped(start));
        }
        // The bytes are ASCII by construction.
        let text = std::str::from_utf8(&input[start..i])
            .map_err(|_| Error::new(ErrorKind::InvalidNumber, start))?;
        if float {
            let value: f64 = text
                .parse()
                .map_err(|_| Error::new(ErrorKind::InvalidNumber, start))?;
            sink.float(value).map_err(stopped(start))
        } else {
            match text.parse::<i64>() {
                Ok(value) => sink.integer(value),
                Err(_) => sink.big_integer(text),
            }
            .map_err(stopped(start))
        }
    }
}

/// The index of the first digit-free byte at or after `i`.
fn digits(input: &[u8], mut i: usize) -> usize {
    while input.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// Checks that `bytes` (a string's text starting at input offset `start`) are UTF-8.
fn utf8(bytes: &[u8], start: usize) -> Result<(), Error> {
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::new(ErrorKind::InvalidUtf8, start + e.valid_up_to())),
    }
}

/// The four hex digits at `i` as a UTF-16 unit.
fn hex4(input: &[u8], i: usize) -> Option<u16> {
    let digits = input.get(i..i + 4)?;
    digits.iter().try_fold(0u16, |unit, &d| {
        let value = (d as char).to_digit(16)?;
        Some(unit << 4 | value as u16)
    })
}

/// A `\uDC00`–`\uDFFF` escape at `i`.
fn low_surrogate(input: &[u8], i: usize) -> Option<u16> {
    if input.get(i..i + 2)? != b"\\u" {
        return None;
    }
    hex4(input, i + 2).filter(|unit| (0xDC00..=0xDFFF).contains(unit))
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` that ends a plain run (`"`, `\\` or a control
/// character); bits above the lowest one may be false (borrows), the lowest one is exact.
fn special_bytes(word: u64) -> u64 {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    (below_space
        | (quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash))
        & HIGHS
}

/// The index of the first `"`, `\\` or control character at or after `i` (or the end), and
/// whether the bytes before it may include non-ASCII ones (true only if they do, or if the
/// 8-byte word holding the end does).
fn plain_run(input: &[u8], mut i: usize) -> (usize, bool) {
    let mut seen = 0u64;
    while let Some(chunk) = input.get(i..i + 8) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        let special = special_bytes(word);
        if special != 0 {
            seen |= word;
            return (
                i + (special.trailing_zeros() / 8) as usize,
                seen & HIGHS != 0,
            );
        }
        seen |= word;
        i += 8;
    }
    while let Some(&b) = input.get(i) {
        if matches!(b, b'"' | b'\\' | 0..=0x1f) {
            break;
        }
        seen |= u64::from(b);
        i += 1;
    }
    (i, seen & HIGHS != 0)
}

#[cfg(test)]
mod tests {
    use super::plain_run;

    /// The word-at-a-time scan finds what a byte-at-a-time one finds, at every offset and
    /// with the special byte at every position of a word (including after bytes whose
    /// subtraction borrows).
    #[test]
    fn plain_run_matches_a_byte_scan() {
        let alphabet: &[u8] = &[
            b'a', b' ', b'"', b'\\', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xa9, 0xff, b'!',
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let len = (seed % 24) as usize;
            let mut input = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Mostly plain bytes, so runs are long enough to span words.
                let pick = (seed % 40) as usize;
                input.push(if pick < alphabet.len() {
                    alphabet[pick]
                } else {
                    b'x'
                });
            }
            for start in 0..=input.len() {
                let end = input[start..]
                    .iter()
                    .position(|&b| matches!(b, b'"' | b'\\' | 0..=0x1f))
                    .map_or(input.len(), |p| start + p);
                let high = input[start..end].iter().any(|&b| b >= 0x80);
                let (at, seen_high) = plain_run(&input, start);
                assert_eq!(at, end, "{input:?} from {start}");
                // It may say "high" when the word holding the end has a high byte after it.
                assert!(seen_high || !high, "{input:?} from {start}");
            }
        }
    }
}
