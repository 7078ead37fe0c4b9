//! Leveled logging to stderr, with the C gem's levels and line prefixes.
//!
//! Levels: 0 none, 1 fatal, 2 error, 3 warning, 4 info (default), 5 debug. One `write` per
//! line so lines from several threads never interleave.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// Longest log line written, in bytes (the C gem's `FIO_LOG_LENGTH_LIMIT`).
pub const MAX_LINE: usize = 2048;

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// A log level; higher is more verbose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Unrecoverable errors.
    Fatal = 1,
    /// Errors that were contained (an app exception, a failed write).
    Error = 2,
    /// Something unexpected that the server worked around.
    Warning = 3,
    /// Start-up and shutdown messages.
    Info = 4,
    /// Details for debugging.
    Debug = 5,
}

impl Level {
    fn prefix(self) -> &'static str {
        match self {
            Level::Fatal => "FATAL: ",
            Level::Error => "ERROR: ",
            Level::Warning => "WARNING: ",
            Level::Info => "INFO: ",
            Level::Debug => "DEBUG: ",
        }
    }
}

/// Sets the level (values above 5 behave as 5).
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// The current level.
pub fn level() -> u8 {
    LEVEL.load(Ordering::Relaxed)
}

/// Whether messages of `level` are written.
pub fn enabled(level: Level) -> bool {
    (level as u8) <= self::level()
}

/// Writes one prefixed line if `level` is enabled.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if enabled(level) {
        let mut line = String::with_capacity(128);
        line.push_str(level.prefix());
        let _ = fmt::write(&mut line, args);
        raw_line(line);
    }
}

/// Writes a line as it is (no prefix, no level check), cut at [`MAX_LINE`] bytes.
pub fn raw_line(mut line: String) {
    if line.len() > MAX_LINE - 1 {
        let mut cut = MAX_LINE - 1;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line.push('\n');
    // Nothing useful can be done when stderr is gone.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Logs at ERROR level: `error!("bad {}", x)`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}

/// Logs at WARNING level.
#[macro_export]
macro_rules! warning {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warning, format_args!($($arg)*)) };
}

/// Logs at INFO level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}

/// Logs at DEBUG level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_by_verbosity() {
        assert!(Level::Fatal < Level::Debug);
        assert_eq!(Level::Warning.prefix(), "WARNING: ");
    }
}
