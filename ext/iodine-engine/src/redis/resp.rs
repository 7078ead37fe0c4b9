//! RESP, the Redis wire format: the replies as iodine hands them to the app ([`Reply`]), the
//! encoder for commands, and an incremental decoder (the subscriber connection's frames,
//! and replies carried between processes).
//!
//! Sizes are bounded ([`MAX_BULK`], [`MAX_ITEMS`], [`MAX_DEPTH`]): a peer that announces
//! more is broken, never trusted to allocate without limit.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Longest bulk string accepted (Redis' own `proto-max-bulk-len` default).
pub const MAX_BULK: usize = 512 * 1024 * 1024;
/// Most elements announced for one array.
pub const MAX_ITEMS: usize = 16 * 1024 * 1024;
/// Deepest nesting of arrays accepted.
pub const MAX_DEPTH: usize = 64;

/// A reply from Redis, as the app gets it (section 6.6: bulk → String, integer → Integer,
/// array → Array, nil → nil, status → String, error → an exception object).
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// Nil (a missing key, a RESP3 null).
    Nil,
    /// An integer (RESP3 booleans become 0 and 1).
    Integer(i64),
    /// A double (RESP3).
    Double(f64),
    /// A bulk string: binary.
    Bulk(Bytes),
    /// A status line (`OK`, `PONG`).
    Status(Bytes),
    /// An error: from Redis, or iodine's own when a command could not be sent.
    Error(Bytes),
    /// An array (RESP3 maps, sets and pushes are flattened into arrays).
    Array(Vec<Reply>),
}

impl Reply {
    /// iodine's own error reply (a command that was never answered by Redis).
    pub fn failure(text: impl Into<String>) -> Reply {
        Reply::Error(Bytes::from(text.into()))
    }

    /// The bytes of a bulk string or a status line.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Reply::Bulk(b) | Reply::Status(b) => Some(b),
            _ => None,
        }
    }

    /// Appends the reply in RESP to `out` (doubles as RESP3 `,`, nil as `_`).
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Reply::Nil => out.put_slice(b"_\r\n"),
            Reply::Integer(n) => line(out, b':', n.to_string().as_bytes()),
            Reply::Double(d) => line(out, b',', d.to_string().as_bytes()),
            Reply::Bulk(b) => bulk(out, b),
            Reply::Status(s) => line(out, b'+', &one_line(s)),
            Reply::Error(s) => line(out, b'-', &one_line(s)),
            Reply::Array(items) => {
                line(out, b'*', items.len().to_string().as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }

    /// The reply as RESP bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// A status or error text on one line (a line break would end the frame early).
fn one_line(text: &[u8]) -> Vec<u8> {
    text.iter()
        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect()
}

fn line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(kind);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, data: &[u8]) {
    line(out, b'$', data.len().to_string().as_bytes());
    out.reserve(data.len() + 2);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    line(out, b'*', args.len().to_string().as_bytes());
    for arg in args {
        bulk(out, arg.as_ref());
    }
}

/// Bytes that are not RESP: the peer is broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Reads replies out of the bytes received so far.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The buffer to read into.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete reply, None when more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ProtocolError> {
        let mut at = 0;
        match parse(&self.buf, &mut at, 0)? {
            Some(reply) => {
                self.buf.advance(at);
                Ok(Some(reply))
            }
            None => Ok(None),
        }
    }
}

/// Decodes one whole reply (a Reply carried between processes).
pub fn decode(bytes: &[u8]) -> Result<Reply, ProtocolError> {
    let mut at = 0;
    match parse(bytes, &mut at, 0)? {
        Some(reply) if at == bytes.len() => Ok(reply),
        Some(_) => Err(ProtocolError("bytes after the reply".into())),
        None => Err(ProtocolError("a truncated reply".into())),
    }
}

/// The line starting at `*at` (without its CRLF), None if it is not complete yet.
fn read_line<'a>(buf: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, ProtocolError> {
    let rest = &buf[*at..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) => {
            *at += end + 2;
            Ok(Some(&rest[..end]))
        }
        None if rest.len() > 64 * 1024 => Err(ProtocolError("a line over 64 KiB".into())),
        None => Ok(None),
    }
}

fn number(text: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtocolError(format!("not a number: {:?}", String::from_utf8_lossy(text))))
}

/// A length (-1 means nil); over `max` is an error.
fn length(text: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    match number(text)? {
        -1 => Ok(None),
        n if n < 0 || n as u64 > max as u64 => Err(ProtocolError(format!("a length of {n}"))),
        n => Ok(Some(n as usize)),
    }
}

fn parse(buf: &[u8], at: &mut usize, depth: usize) -> Result<Option<Reply>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("arrays nested too deep".into()));
    }
    if *at >= buf.len() {
        return Ok(None);
    }
    let kind = buf[*at];
    *at += 1;
    let Some(text) = read_line(buf, at)? else {
        return Ok(None);
    };
    let reply = match kind {
        b'+' => Reply::Status(Bytes::copy_from_slice(text)),
        b'-' => Reply::Error(Bytes::copy_from_slice(text)),
        b':' => Reply::Integer(number(text)?),
        b',' => Reply::Double(
            std::str::from_utf8(text)
                .ok()
                .and_then(|s| match s {
                    "inf" => Some(f64::INFINITY),
                    "-inf" => Some(f64::NEG_INFINITY),
                    _ => s.parse().ok(),
                })
                .ok_or_else(|| ProtocolError("not a double".into()))?,
        ),
        b'#' => Reply::Integer((text == b"t") as i64),
        b'_' => Reply::Nil,
        b'(' => Reply::Bulk(Bytes::copy_from_slice(text)),
        b'$' | b'=' | b'!' => {
            let Some(len) = length(text, MAX_BULK)? else {
                return Ok(Some(Reply::Nil));
            };
            if buf.len() < *at + len + 2 {
                return Ok(None);
            }
            if &buf[*at + len..*at + len + 2] != b"\r\n" {
                return Err(ProtocolError("a bulk string without its CRLF".into()));
            }
            let data = Bytes::copy_from_slice(&buf[*at..*at + len]);
            *at += len + 2;
            match kind {
                b'!' => Reply::Error(data),
                // A verbatim string starts with its format ("txt:").
                b'=' if data.len() >= 4 => Reply::Bulk(data.slice(4..)),
                _ => Reply::Bulk(data),
            }
        }
        b'*' | b'~' | b'>' | b'%' => {
            let Some(mut n) = length(text, MAX_ITEMS)? else {
                return Ok(Some(Reply::Nil));
            };
            if kind == b'%' {
                n = n.saturating_mul(2); // a map: keys and values, in order
            }
            // Not `with_capacity(n)`: the count is the peer's word, the items are not here yet.
            let mut items = Vec::new();
            for _ in 0..n {
                match parse(buf, at, depth + 1)? {
                    Some(item) => items.push(item),
                    None => return Ok(None),
                }
            }
            Reply::Array(items)
        }
        other => {
            return Err(ProtocolError(format!(
                "unknown RESP type {:?}",
                other as char
            )))
        }
    };
    Ok(Some(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies() -> Vec<Reply> {
        vec![
            Reply::Status(Bytes::from("OK")),
            Reply::Error(Bytes::from("ERR wrong")),
            Reply::Integer(-42),
            Reply::Bulk(Bytes::from(vec![0u8, 13, 10, 255])),
            Reply::Nil,
            Reply::Double(1.5),
            Reply::Array(vec![
                Reply::Bulk(Bytes::from("message")),
                Reply::Array(vec![]),
                Reply::Nil,
                Reply::Integer(7),
            ]),
        ]
    }

    #[test]
    fn replies_survive_any_split_of_the_stream() {
        let mut wire = BytesMut::new();
        for r in replies() {
            r.encode(&mut wire);
        }
        for chunk in [1, 2, 5, 64] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                d.push(piece);
                while let Some(r) = d.next_reply().unwrap() {
                    got.push(r);
                }
            }
            assert_eq!(got, replies(), "chunks of {chunk}");
        }
    }

    #[test]
    fn redis_own_frames_decode() {
        let wire = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$-1\r\n*-1\r\n#t\r\n%1\r\n+a\r\n:1\r\n=8\r\ntxt:hola\r\n";
        let mut d = Decoder::new();
        d.push(wire);
        assert_eq!(
            d.next_reply().unwrap(),
            Some(Reply::Array(vec![
                Reply::Bulk(Bytes::from("message")),
                Reply::Bulk(Bytes::from("ch")),
                Reply::Nil,
            ]))
        );
        assert_eq!(d.next_reply().unwrap(), Some(Reply::Nil));
        assert_eq!(d.next_reply().unwrap(), Some(Reply::Integer(1)));
        assert_eq!(
            d.next_reply().unwrap(),
            Some(Reply::Array(vec![
                Reply::Status(Bytes::from("a")),
                Reply::Integer(1)
            ]))
        );
        assert_eq!(
            d.next_reply().unwrap(),
            Some(Reply::Bulk(Bytes::from("hola")))
        );
        assert_eq!(d.next_reply().unwrap(), None);
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_command(&[&b"SET"[..], b"k", b"\r\n"], &mut out);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\r\n\r\n");
    }

    #[test]
    fn garbage_and_oversized_lengths_are_refused() {
        for wire in [
            &b"?x\r\n"[..],
            b"$9999999999\r\n",
            b"*-5\r\n",
            b":abc\r\n",
            b"$1\r\nab\r\n",
        ] {
            let mut d = Decoder::new();
            d.push(wire);
            assert!(
                d.next_reply().is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(decode(deep.as_bytes()).is_err());
    }

    #[test]
    fn a_status_with_a_line_break_stays_one_line() {
        let r = Reply::Error(Bytes::from("bad\r\nthing"));
        assert_eq!(
            decode(&r.to_bytes()).unwrap(),
            Reply::Error(Bytes::from("bad  thing"))
        );
    }
}
