//! Containing Ruby errors raised by app code: exceptions are logged with their backtrace and
//! the server goes on; only jumps (`Thread#kill`, `throw`) keep propagating.

use magnus::error::ErrorType;
use magnus::{prelude::*, Error, Ruby, Value};

/// Logs an exception as the C gem does; returns `Err` only for non-exception jumps, which
/// must reach Ruby (magnus resumes them once the Rust frames are gone).
pub fn contain(ruby: &Ruby, e: Error) -> Result<(), Error> {
    match e.error_type() {
        ErrorType::Jump(_) => Err(e),
        _ => {
            log_exception(ruby, &e);
            Ok(())
        }
    }
}

/// Writes `Iodine caught an unprotected exception - Class: message` and the backtrace.
pub fn log_exception(_ruby: &Ruby, e: &Error) {
    let Some(exc) = e.value() else {
        iodine_engine::error!("Iodine caught an unprotected exception - {e}");
        return;
    };
    let class = exc.class().inspect();
    let message: String = exc
        .funcall::<_, _, Value>("message", ())
        .map(|m| m.to_string())
        .unwrap_or_default();
    let backtrace: Vec<String> = exc
        .funcall::<_, _, Option<Vec<String>>>("backtrace", ())
        .ok()
        .flatten()
        .unwrap_or_default();
    iodine_engine::error!("Iodine caught an unprotected exception - {class}: {message}");
    if iodine_engine::log::enabled(iodine_engine::log::Level::Error) {
        for line in backtrace.iter().take(64) {
            iodine_engine::log::raw_line(format!("\t{line}"));
        }
    }
}
