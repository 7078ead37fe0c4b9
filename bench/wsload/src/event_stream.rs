//! Incremental parsing of an SSE response body: the chunked transfer-coding (when the server
//! uses it) and the event stream itself. Neither allocates: both keep a few bytes of state.

use memchr::memchr2;

/// Bytes kept of a line's start: `data: ` and a message's stamp (`stamp::MIN_SIZE`).
const KEPT: usize = 40;

/// Splits an event stream into events: counts the events that carry data (comments such as
/// `: ping` and `retry:` blocks are not events) once the first `data: ready` event went by,
/// and passes the start of each one's first data line on.
pub struct EventParser {
    /// The first bytes of the current line: enough for `data: ready` and a message's stamp.
    start: [u8; KEPT],
    /// The current line's length so far (it may be longer than `start`).
    len: usize,
    /// The last byte was `\r`, so a `\n` right after it ends nothing more.
    after_cr: bool,
    /// The current event has a data field.
    has_data: bool,
    /// The start of the current event's first data line's value, and its length.
    first: [u8; KEPT],
    first_len: usize,
    /// The current event has the line `data: ready`.
    is_ready: bool,
    /// The ready event ended: events from now on are counted.
    ready: bool,
}

impl Default for EventParser {
    fn default() -> EventParser {
        EventParser {
            start: [0; KEPT],
            len: 0,
            after_cr: false,
            has_data: false,
            first: [0; KEPT],
            first_len: 0,
            is_ready: false,
            ready: false,
        }
    }
}

impl EventParser {
    /// Whether the `data: ready` event has been seen.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Reads the next bytes of the stream; returns how many counted events they completed,
    /// and calls `each` with the start (up to 40 bytes less `data: `) of each one's data.
    pub fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(&[u8])) -> u64 {
        let mut events = 0;
        if self.after_cr && !bytes.is_empty() {
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
            self.after_cr = false;
        }
        // Lines end with "\r\n", "\n" or "\r".
        while let Some(end) = memchr2(b'\r', b'\n', bytes) {
            self.extend(&bytes[..end]);
            events += self.end_line(&mut each);
            let crlf = bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n');
            self.after_cr = bytes[end] == b'\r' && end + 1 == bytes.len();
            bytes = &bytes[end + 1 + usize::from(crlf)..];
        }
        self.extend(bytes);
        events
    }

    /// Adds part of the current line.
    fn extend(&mut self, part: &[u8]) {
        if self.len < self.start.len() {
            let take = part.len().min(self.start.len() - self.len);
            self.start[self.len..self.len + take].copy_from_slice(&part[..take]);
        }
        self.len += part.len();
    }

    /// Ends the current line; returns 1 when it was the blank line ending a counted event
    /// (and calls `each` with that event's data).
    fn end_line(&mut self, each: &mut impl FnMut(&[u8])) -> u64 {
        let len = std::mem::take(&mut self.len);
        if len == 0 {
            let counted = self.ready && self.has_data;
            if counted {
                each(&self.first[..self.first_len]);
            }
            self.ready |= self.is_ready;
            self.has_data = false;
            self.is_ready = false;
            return u64::from(counted);
        }
        let line = &self.start[..len.min(self.start.len())];
        let is_data = line == b"data" || line.starts_with(b"data:");
        if is_data && !self.has_data {
            // The value: after `data:` and one optional space.
            let value = &line[line.len().min(5)..];
            let value = value.strip_prefix(b" ").unwrap_or(value);
            self.first[..value.len()].copy_from_slice(value);
            self.first_len = value.len();
        }
        self.has_data |= is_data;
        self.is_ready |=
            len <= self.start.len() && (line == b"data: ready" || line == b"data:ready");
        0
    }
}

/// Removes the chunked transfer-coding framing, passing the payload on.
pub struct Chunked {
    state: State,
}

/// Where the chunked decoder is.
#[derive(Clone, Copy)]
enum State {
    /// Reading a chunk's hex size (the value so far).
    Size(u64),
    /// Skipping a chunk extension, up to the end of the size line.
    Extension(u64),
    /// After the size line's `\r`.
    SizeLf(u64),
    /// Inside a chunk's data (bytes left).
    Data(u64),
    /// After a chunk's data: expecting `\r\n`.
    DataEnd,
    /// After a chunk's data and `\r`.
    DataLf,
    /// The last (empty) chunk came: the body is over.
    Done,
}

impl Chunked {
    /// A decoder at the start of a body.
    pub fn new() -> Chunked {
        Chunked {
            state: State::Size(0),
        }
    }

    /// Decodes `bytes`, calling `out` with each run of payload; `Err` on broken framing.
    pub fn feed(&mut self, mut bytes: &[u8], mut out: impl FnMut(&[u8])) -> Result<(), String> {
        while let Some(&byte) = bytes.first() {
            if let State::Data(left) = self.state {
                let take = bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                out(&bytes[..take]);
                bytes = &bytes[take..];
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataEnd
                } else {
                    State::Data(left)
                };
                continue;
            }
            self.state = match (self.state, byte) {
                (State::Size(n), b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let digit = u64::from((byte as char).to_digit(16).unwrap_or(0));
                    State::Size(n.checked_mul(16).ok_or("chunk size overflow")? + digit)
                }
                (State::Size(n), b';' | b' ' | b'\t') => State::Extension(n),
                (State::Size(n) | State::Extension(n), b'\r') => State::SizeLf(n),
                (State::Size(n) | State::Extension(n) | State::SizeLf(n), b'\n') => {
                    if n == 0 {
                        State::Done
                    } else {
                        State::Data(n)
                    }
                }
                (State::Extension(n), _) => State::Extension(n),
                (State::DataEnd, b'\r') => State::DataLf,
                (State::DataEnd | State::DataLf, b'\n') => State::Size(0),
                (State::Done, _) => return Ok(()),
                _ => return Err(format!("bad chunked framing at byte {byte:#04x}")),
            };
            bytes = &bytes[1..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the events counted.
    fn events(input: &[u8], step: usize) -> (u64, bool) {
        let mut parser = EventParser::default();
        let counted = input
            .chunks(step)
            .map(|piece| parser.feed(piece, |_| {}))
            .sum();
        (counted, parser.ready())
    }

    #[test]
    fn counts_data_events_after_ready() {
        let stream = b"retry: 5000\r\n\r\ndata: ready\r\n\r\ndata: a\r\n\r\n: ping\n\ndata: b\ndata: c\n\ndata\r\rdata: x\r\n\r\n";
        for step in 1..=stream.len() {
            assert_eq!(events(stream, step), (4, true), "step {step}");
        }
    }

    #[test]
    fn waits_for_ready() {
        assert_eq!(events(b"data: hello\r\n\r\ndata: a\r\n\r\n", 3), (0, false));
        assert_eq!(
            events(b"data: readyish\r\n\r\ndata: a\r\n\r\n", 3),
            (0, false)
        );
        assert_eq!(events(b"data:ready\n\ndata: a\n\n", 1), (1, true));
    }

    #[test]
    fn long_lines_count_once() {
        let mut stream = b"data: ready\n\ndata: ".to_vec();
        stream.extend(std::iter::repeat_n(b'x', 5000));
        stream.extend(b"\n\n");
        assert_eq!(events(&stream, 7), (1, true));
    }

    #[test]
    fn passes_each_events_data_on() {
        let mut stream = b"data: ready\r\n\r\ndata: one\r\ndata: two\r\n\r\ndata:".to_vec();
        stream.extend(std::iter::repeat_n(b'7', 50));
        stream.extend(b"\n\n: ping\n\ndata\n\n");
        for step in 1..=stream.len() {
            let mut parser = EventParser::default();
            let mut seen = Vec::new();
            for piece in stream.chunks(step) {
                parser.feed(piece, |data| seen.push(data.to_vec()));
            }
            assert_eq!(
                seen,
                [b"one".to_vec(), vec![b'7'; KEPT - 5], Vec::new()],
                "step {step}"
            );
        }
    }

    /// Decodes `input` in pieces of `step` bytes.
    fn dechunk(input: &[u8], step: usize) -> Result<Vec<u8>, String> {
        let mut decoder = Chunked::new();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            decoder.feed(piece, |data| out.extend_from_slice(data))?;
        }
        Ok(out)
    }

    #[test]
    fn removes_chunked_framing() {
        let body = b"5\r\nhello\r\n1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        for step in 1..=body.len() {
            assert_eq!(
                dechunk(body, step).unwrap(),
                b"helloabcdefghijklmnopqrstuvwxyz",
                "step {step}"
            );
        }
        assert!(dechunk(b"zz\r\n", 4).is_err());
        assert!(dechunk(b"2\r\nabX", 7).is_err());
    }
}
