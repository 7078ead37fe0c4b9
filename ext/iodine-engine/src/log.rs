//! Leveled logging to stderr, with the C gem's levels and line prefixes.
//!
//! Levels: 0 none, 1 fatal, 2 error, 3 warning, 4 info (default), 5 debug. One `write` per
//! line so lines from several threads never interleave.
//!
//! While the server runs ([`start_writer`] … [`stop_writer`]) lines go through a bounded
//! queue to a thread of their own, so a stalled stderr (a pipe nobody reads) never blocks an
//! IO thread or a Ruby worker: when the queue is full, lines are dropped and counted, and the
//! count is reported once stderr moves again. Outside that window (boot, shutdown, a forking
//! master that must have no threads) lines are written directly.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Lines queued for the writer thread before new ones are dropped.
const QUEUE: usize = 8192;

/// The writer thread and its queue, while running.
struct Writer {
    queue: SyncSender<String>,
    thread: JoinHandle<()>,
}

static WRITER: Mutex<Option<Writer>> = Mutex::new(None);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Forks this process image went through ([`after_fork`]).
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The [`GENERATION`] `WRITER` belongs to: in a forked child they differ, and the writer
/// (its thread gone, its lock perhaps copied while held) is never touched again.
static WRITER_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Tells the log it runs in a freshly forked child (async-signal-safe: one atomic add, for a
/// `pthread_atfork` handler). Lines are written directly until [`start_writer`] runs here.
pub fn after_fork() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Whether `WRITER` is a parent's copy.
fn inherited() -> bool {
    WRITER_GENERATION.load(Ordering::Acquire) != GENERATION.load(Ordering::Acquire)
}

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
    if inherited() {
        return write_out(&line);
    }
    let queued = match WRITER.lock().as_ref() {
        Some(w) => w.queue.try_send(line),
        None => Err(TrySendError::Disconnected(line)),
    };
    match queued {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Err(TrySendError::Disconnected(line)) => write_out(&line),
    }
}

/// Log lines dropped so far because stderr did not keep up.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Starts the writer thread (idempotent); lines are queued from now on.
pub fn start_writer() {
    let mut writer = if inherited() {
        // A forked child: the parent's writer is forgotten (never joined). Its lock was
        // copied as it was: if a thread held it then, this process keeps writing directly.
        let Some(mut writer) = WRITER.try_lock() else {
            return;
        };
        std::mem::forget(writer.take());
        WRITER_GENERATION.store(GENERATION.load(Ordering::Acquire), Ordering::Release);
        writer
    } else {
        WRITER.lock()
    };
    if writer.is_some() {
        return;
    }
    let (queue, lines) = mpsc::sync_channel(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("iodine-log".into())
        .spawn(move || drain(lines));
    if let Ok(thread) = spawned {
        *writer = Some(Writer { queue, thread });
    }
}

/// Writes what is queued (waiting at most `limit` for a slow stderr), then stops the writer
/// thread; lines are written directly again. A writer stuck on stderr is left behind.
pub fn stop_writer(limit: Duration) {
    if inherited() {
        return;
    }
    let Some(Writer { queue, thread }) = WRITER.lock().take() else {
        return;
    };
    drop(queue); // the thread ends once it wrote what is queued
    let deadline = Instant::now() + limit;
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    if thread.is_finished() {
        let _ = thread.join();
    }
}

fn drain(lines: Receiver<String>) {
    let mut reported = 0;
    for line in lines {
        let dropped = DROPPED.load(Ordering::Relaxed);
        if dropped != reported {
            write_out(&format!(
                "WARNING: {} log lines dropped: stderr was not keeping up\n",
                dropped - reported
            ));
            reported = dropped;
        }
        write_out(&line);
    }
}

fn write_out(line: &str) {
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
