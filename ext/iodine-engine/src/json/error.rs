//! Parse errors: what went wrong and at which byte.

use std::fmt;

/// What made a document malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The document ended where more was needed.
    UnexpectedEnd,
    /// A byte that can't appear here (shown in the message).
    UnexpectedByte(u8),
    /// Bytes that are not UTF-8 inside a string.
    InvalidUtf8,
    /// A control character (below U+0020) inside a string.
    ControlCharacter,
    /// A backslash escape JSON does not have, or a bad `\u` escape.
    InvalidEscape,
    /// A number that does not follow JSON's grammar.
    InvalidNumber,
    /// Containers nested deeper than allowed (the depth reached).
    TooDeep(usize),
    /// Something after the end of the document's value.
    TrailingData,
    /// The sink asked to stop (it keeps its own reason).
    Stopped,
}

/// A parse error at a byte offset of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    offset: usize,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, offset: usize) -> Self {
        Error { kind, offset }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The 0-based byte offset of the problem in the input.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::UnexpectedEnd => {
                write!(f, "unexpected end of input at byte {}", self.offset)
            }
            ErrorKind::UnexpectedByte(b) if b.is_ascii_graphic() => {
                write!(f, "unexpected '{}' at byte {}", b as char, self.offset)
            }
            ErrorKind::UnexpectedByte(b) => {
                write!(f, "unexpected byte 0x{b:02x} at byte {}", self.offset)
            }
            ErrorKind::InvalidUtf8 => write!(f, "invalid UTF-8 at byte {}", self.offset),
            ErrorKind::ControlCharacter => {
                write!(
                    f,
                    "unescaped control character in a string at byte {}",
                    self.offset
                )
            }
            ErrorKind::InvalidEscape => write!(f, "invalid escape at byte {}", self.offset),
            ErrorKind::InvalidNumber => write!(f, "invalid number at byte {}", self.offset),
            ErrorKind::TooDeep(depth) => {
                write!(
                    f,
                    "nesting of {depth} is too deep (at byte {})",
                    self.offset
                )
            }
            ErrorKind::TrailingData => {
                write!(f, "unexpected data after the value at byte {}", self.offset)
            }
            ErrorKind::Stopped => write!(f, "stopped at byte {}", self.offset),
        }
    }
}

impl std::error::Error for Error {}
