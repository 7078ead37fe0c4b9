//! RFC 6455 framing for both ends: [`Decoder`] turns what a peer sent into messages and
//! control frames, holding it to the protocol's rules (each broken rule has its Close code),
//! and [`write_head`] writes the bytes that go before an outgoing payload.
//!
//! The decoder reads into one buffer, which grows for the frame in hand (what its header
//! says, bounded by the message limit) and is let go once nothing partial is left: an idle
//! connection holds no buffer. A whole frame's payload is split off that buffer and unmasked
//! in place, so an unfragmented message reaches the application without a copy; only the
//! fragments of a fragmented message are assembled into a buffer of their own. Text is
//! checked as UTF-8 once, fragment by fragment.
//!
//! Lenient on one point: a length written in more bytes than it needs (the 16-bit form for 5
//! bytes, the 64-bit form for 300) is accepted. RFC 6455 §5.2 asks senders for the minimal
//! form but gives receivers no rule, and such a length is not ambiguous.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::mask;
use super::utf8::Utf8Stream;
use crate::link::Kind;
use crate::server::ReadReady;

/// Which end of the connection we are: a server receives masked frames and sends plain ones,
/// a client the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The end that accepted the connection.
    Server,
    /// The end that opened it (`Iodine.connect`).
    Client,
}

/// Opcode of a continuation frame.
pub const CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const BINARY: u8 = 0x2;
/// Opcode of a Close frame.
pub const CLOSE: u8 = 0x8;
/// Opcode of a Ping frame.
pub const PING: u8 = 0x9;
/// Opcode of a Pong frame.
pub const PONG: u8 = 0xA;

/// The most bytes a frame head takes: 2, 8 of extended length, 4 of masking key.
pub const MAX_HEAD: usize = 14;

/// The room a read offers when no frame is in hand, at least (a small message, or several,
/// fits; below glibc's per-thread cache limit)...
const MIN_READ: usize = 1024;
/// ... and at most: it doubles while reads fill it, and halves when they use little of it.
const MAX_READ: usize = 64 * 1024;

/// A broken protocol rule: the connection closes with `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The Close code: 1002 (protocol error), 1007 (invalid text) or 1009 (too big).
    pub code: u16,
    /// What was wrong, for the debug log.
    pub why: &'static str,
}

impl Violation {
    const fn protocol(why: &'static str) -> Self {
        Violation { code: 1002, why }
    }

    const fn invalid_text(why: &'static str) -> Self {
        Violation { code: 1007, why }
    }

    const TOO_BIG: Violation = Violation {
        code: 1009,
        why: "message over the size limit",
    };
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.why, self.code)
    }
}

/// What the peer sent, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A whole message (text is valid UTF-8).
    Message {
        /// The payload, unmasked; fragments joined.
        data: Bytes,
        /// Binary, or text (ASCII only or not).
        kind: Kind,
    },
    /// A Ping with its payload (answered with a Pong carrying it).
    Ping(Bytes),
    /// A Pong.
    Pong(Bytes),
    /// A Close with its code, already checked (none: the frame had no payload).
    Close(Option<u16>),
}

/// A frame header.
#[derive(Clone, Copy, Debug)]
struct Head {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Payload bytes.
    len: u64,
    /// Header bytes.
    size: usize,
}

/// A fragmented message being assembled.
struct Partial {
    data: BytesMut,
    text: bool,
    utf8: Utf8Stream,
}

/// The receiving half of a WebSocket connection: its read buffer and the message in
/// progress.
pub struct Decoder {
    buf: BytesMut,
    /// Boxed: most connections never see a fragment, and an idle one pays for its size.
    partial: Option<Box<Partial>>,
    role: Role,
    max_msg: usize,
    /// Bytes the frame in hand needs in all, header included (0: no header yet).
    wanted: usize,
    /// Room a read offers when no frame is in hand.
    read_size: usize,
}

impl Decoder {
    /// A decoder for `role`'s end, refusing messages over `max_msg` bytes. Holds no buffer
    /// yet.
    pub fn new(role: Role, max_msg: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            partial: None,
            role,
            max_msg,
            wanted: 0,
            read_size: MIN_READ,
        }
    }

    /// Which end this decoder is for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The next message or control frame among the bytes read; `Ok(None)` when more are
    /// needed. A violation is reported as soon as the header shows it (a frame too large is
    /// refused before its payload is read).
    pub fn decode(&mut self) -> Result<Option<Incoming>, Violation> {
        loop {
            let Some(head) = parse_head(&self.buf, self.role)? else {
                self.wanted = 0;
                return Ok(None);
            };
            let len = self.admit(&head)?;
            let total = head.size + len;
            if self.buf.len() < total {
                self.wanted = total;
                return Ok(None);
            }
            self.wanted = 0;
            self.buf.advance(head.size);
            let mut payload = self.buf.split_to(len);
            if let Some(key) = head.mask {
                mask::apply(&mut payload, key);
            }
            if let Some(incoming) = self.complete(head, payload)? {
                return Ok(Some(incoming));
            }
        }
    }

    /// Reads what the peer sent: room for the rest of the frame in hand, or for the usual
    /// read when none is. With nothing partial in hand, a buffer is taken only once the
    /// socket has something, and a read that finds nothing lets an empty one go: a
    /// connection waiting for its peer holds none.
    pub fn poll_read<S>(&mut self, io: &mut S, cx: &mut Context<'_>) -> Poll<io::Result<usize>>
    where
        S: AsyncRead + ReadReady + Unpin,
    {
        if self.buf.is_empty() {
            match io.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.buf = BytesMut::new(); // what is left of the last read's room
                    return Poll::Pending;
                }
            }
        }
        let need = self.wanted.saturating_sub(self.buf.len());
        let spare = self.buf.capacity() - self.buf.len();
        // What is left after the last frames may do for the next small ones.
        if spare < need || spare < self.read_size / 2 {
            if self.buf.is_empty() {
                self.buf = BytesMut::new(); // don't copy nothing into a new allocation
            }
            self.buf.reserve(need.max(self.read_size));
        }
        let offered = self.buf.capacity() - self.buf.len();
        let read = pin!(io.read_buf(&mut self.buf)).poll(cx);
        match &read {
            Poll::Ready(Ok(n)) if need == 0 => {
                if *n >= offered {
                    self.read_size = (self.read_size * 2).min(MAX_READ);
                } else if *n < self.read_size / 4 {
                    self.read_size = (self.read_size / 2).max(MIN_READ);
                }
            }
            Poll::Pending if self.buf.is_empty() => self.buf = BytesMut::new(),
            _ => {}
        }
        read
    }

    /// Bytes of buffer held (capacity), for tests and memory checks.
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Checks a header against the message in progress and the size limit; the payload
    /// length.
    fn admit(&self, head: &Head) -> Result<usize, Violation> {
        let so_far = match (head.opcode, &self.partial) {
            (CONTINUATION, None) => return Err(Violation::protocol("continuation of nothing")),
            (CONTINUATION, Some(partial)) => partial.data.len(),
            (TEXT | BINARY, Some(_)) => {
                return Err(Violation::protocol("a new message inside a fragmented one"))
            }
            (TEXT | BINARY, None) => 0,
            // Control frames (at most 125 bytes) are not messages: no limit but their own.
            _ => return Ok(head.len as usize),
        };
        let room = self.max_msg.saturating_sub(so_far);
        match usize::try_from(head.len) {
            Ok(len) if len <= room => Ok(len),
            _ => Err(Violation::TOO_BIG),
        }
    }

    /// A whole frame, unmasked: what it completes, if anything.
    fn complete(&mut self, head: Head, payload: BytesMut) -> Result<Option<Incoming>, Violation> {
        let text = head.opcode == TEXT;
        match head.opcode {
            TEXT | BINARY if head.fin => {
                let kind = if text {
                    Kind::of_text(&payload)
                        .ok_or_else(|| Violation::invalid_text("a text message is not UTF-8"))?
                } else {
                    Kind::Binary
                };
                Ok(Some(Incoming::Message {
                    data: payload.freeze(),
                    kind,
                }))
            }
            TEXT | BINARY => {
                let mut utf8 = Utf8Stream::default();
                if text {
                    utf8.feed(&payload).map_err(|_| split_text())?;
                }
                self.partial = Some(Box::new(Partial {
                    data: payload,
                    text,
                    utf8,
                }));
                Ok(None)
            }
            CONTINUATION => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(Violation::protocol("continuation of nothing"));
                };
                if partial.text {
                    partial.utf8.feed(&payload).map_err(|_| split_text())?;
                }
                partial.data.extend_from_slice(&payload);
                if !head.fin {
                    return Ok(None);
                }
                let Some(done) = self.partial.take() else {
                    return Ok(None); // just matched above
                };
                if done.text && !done.utf8.is_complete() {
                    return Err(Violation::invalid_text("text ends inside a character"));
                }
                // Checked piece by piece: only whether it is all ASCII is left to learn.
                let kind = match (done.text, done.data.is_ascii()) {
                    (false, _) => Kind::Binary,
                    (true, true) => Kind::Ascii,
                    (true, false) => Kind::Text,
                };
                Ok(Some(Incoming::Message {
                    data: done.data.freeze(),
                    kind,
                }))
            }
            PING => Ok(Some(Incoming::Ping(payload.freeze()))),
            PONG => Ok(Some(Incoming::Pong(payload.freeze()))),
            _ => close_frame(&payload).map(Some),
        }
    }

    /// Adds bytes as if read (tests drive the decoder without a socket).
    #[cfg(test)]
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("role", &self.role)
            .field("buffered", &self.buf.len())
            .field("fragmented", &self.partial.is_some())
            .finish()
    }
}

fn split_text() -> Violation {
    Violation::invalid_text("a fragmented text message is not UTF-8")
}

/// Whether a peer may send `code` in a Close frame (RFC 6455 §7.4 and the IANA registry:
/// 1004-1006 and 1015 are reserved for reports, 1016-2999 for future use).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A Close frame's payload: nothing, or a valid code and a UTF-8 reason.
fn close_frame(payload: &[u8]) -> Result<Incoming, Violation> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(Violation::protocol("a close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(Violation::protocol("an invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Violation::invalid_text("a close reason is not UTF-8"));
            }
            Ok(Incoming::Close(Some(code)))
        }
    }
}

/// The header at the start of `buf`: None until all of it is there; a violation as soon as
/// the bytes that show it are.
fn parse_head(buf: &[u8], role: Role) -> Result<Option<Head>, Violation> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(Violation::protocol(
            "reserved bits set (no extension was agreed)",
        ));
    }
    let opcode = b0 & 0x0f;
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(Violation::protocol("unknown opcode"));
    }
    let fin = b0 & 0x80 != 0;
    let control = opcode & 0x08 != 0;
    if control && !fin {
        return Err(Violation::protocol("a fragmented control frame"));
    }
    match (role, b1 & 0x80 != 0) {
        (Role::Server, false) => return Err(Violation::protocol("an unmasked client frame")),
        (Role::Client, true) => return Err(Violation::protocol("a masked server frame")),
        _ => {}
    }
    let (len, mut size) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 4),
            _ => return Ok(None),
        },
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            let len = u64::from_be_bytes(word);
            if len >> 63 != 0 {
                return Err(Violation::protocol("a 64-bit length with its top bit set"));
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    if control && len > 125 {
        return Err(Violation::protocol("a control frame over 125 bytes"));
    }
    let mask = match role {
        Role::Client => None,
        Role::Server => {
            let Some(&[a, b, c, d]) = buf.get(size..size + 4) else {
                return Ok(None);
            };
            size += 4;
            Some([a, b, c, d])
        }
    };
    Ok(Some(Head {
        fin,
        opcode,
        mask,
        len,
        size,
    }))
}

/// Writes the head of a whole frame (FIN set) with `opcode` and `len` payload bytes into
/// `out`, masked with `mask` when given (a client's frames); returns its length. Lengths take
/// the minimal form.
pub fn write_head(
    out: &mut [u8; MAX_HEAD],
    opcode: u8,
    len: usize,
    mask: Option<[u8; 4]>,
) -> usize {
    out[0] = 0x80 | opcode;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut size = match len {
        0..=125 => {
            out[1] = mask_bit | len as u8;
            2
        }
        126..=0xffff => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    if let Some(key) = mask {
        out[size..size + 4].copy_from_slice(&key);
        size += 4;
    }
    size
}

/// A Close frame's payload for `code` (none: empty).
pub fn close_payload(code: Option<u16>) -> Bytes {
    match code {
        Some(code) => Bytes::copy_from_slice(&code.to_be_bytes()),
        None => Bytes::new(),
    }
}

#[cfg(test)]
mod tests;
