//! JSON (RFC 8259) without Ruby: a strict parser that feeds a [`Sink`] (no intermediate
//! tree), a [`Tape`] that records a parse to replay it later (so a large document can be
//! tokenized on a thread that may not touch Ruby objects and built into them afterwards),
//! [`ShortKey`] for caches of object keys, and the writers `Iodine::JSON.generate` uses
//! (strings escaped and floats printed as Ruby's json gem does).
//!
//! Decisions where the RFC leaves a choice (JSONTestSuite's `i_` cases):
//! - numbers: any size; an integer that does not fit `i64` goes to [`Sink::big_integer`] as
//!   text, a float out of range becomes an infinity and one too small becomes zero (correctly
//!   rounded otherwise), as the json gem does;
//! - text must be UTF-8: invalid bytes, a byte-order mark or UTF-16 are errors;
//! - a `\u` escape of a lone or misordered surrogate becomes U+FFFD, so every string is
//!   valid UTF-8;
//! - nesting is bounded by [`Options::max_nesting`]; the parser never recurses, so even an
//!   unbounded parse of 100,000 opening brackets only costs memory.
#![forbid(unsafe_code)]

mod error;
mod parser;
mod short_key;
mod sink;
mod write;

#[cfg(test)]
mod tests;

pub use error::{Error, ErrorKind};
pub use parser::{parse, Options};
pub use short_key::{ShortKey, SHORT_KEY_LEN};
pub use sink::{Sink, Stop, Tape};
pub use write::{write_f64, write_str};
