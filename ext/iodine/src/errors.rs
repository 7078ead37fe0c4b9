//! Containing Ruby errors raised by app code: exceptions are logged with their backtrace and
//! the server goes on; only jumps (`Thread#kill`, `throw`) keep propagating.
//!
//! After a jump has been caught (as an `Err` from a magnus call) this thread must not call
//! Ruby again until the jump reached Ruby: the VM's error state still belongs to the jump,
//! and the next protected call that raised would find it there. So jumps are returned at once,
//! and exceptions are built eagerly ([`exception`]).

use std::sync::OnceLock;

use magnus::error::ErrorType;
use magnus::exception::ExceptionClass;
use magnus::value::Opaque;
use magnus::{prelude::*, Error, RModule, RString, Ruby};

/// `Iodine::Base::ClientGone`: raised inside a streamed body's `each` when the client left,
/// to end the iteration (an `Exception`, not a `StandardError`, so `rescue => e` in the app
/// lets it through). The server rescues it; apps never see it escape.
static CLIENT_GONE: OnceLock<Opaque<ExceptionClass>> = OnceLock::new();

/// Logs an exception as the C gem does; returns `Err` only for non-exception jumps, which
/// must reach Ruby (magnus resumes them once the Rust frames are gone).
pub fn contain(ruby: &Ruby, e: Error) -> Result<(), Error> {
    match e.error_type() {
        ErrorType::Jump(_) => Err(e),
        _ if is_client_gone(ruby, &e) => {
            iodine_engine::debug!("the client left while its response streamed");
            Ok(())
        }
        _ => log_exception(ruby, &e),
    }
}

/// Whether `e` is a jump (`Thread#kill`, `throw`, `break`), not an exception.
pub fn is_jump(e: &Error) -> bool {
    matches!(e.error_type(), ErrorType::Jump(_))
}

/// An exception of `class`, built now. magnus builds `Error::new` lazily, when the method
/// returns to Ruby; an interrupt pending then (a `Thread#raise` or `kill` that arrived
/// meanwhile) would run inside that construction and abort the process. Built here, under
/// `rb_protect`, such an interrupt comes back as its own `Err`, which is returned instead.
pub fn exception(class: ExceptionClass, message: impl AsRef<str>) -> Error {
    let ruby = Ruby::get_with(class);
    match class.new_instance((ruby.str_new(message.as_ref()),)) {
        Ok(e) => e.into(),
        Err(e) => e,
    }
}

/// `v.inspect` for an error message, at most `max` characters. An exception raised by an
/// app's `inspect` gives `#<ClassName>`; a jump comes back as `Err` (magnus'
/// `Value::inspect` would swallow both, falling back to `rb_any_to_s`).
pub fn inspect(v: magnus::Value, max: usize) -> Result<String, Error> {
    match v.funcall::<_, _, RString>("inspect", ()) {
        Ok(s) => Ok(String::from_utf8_lossy(&s.to_bytes())
            .chars()
            .take(max)
            .collect()),
        Err(e) if is_jump(&e) => Err(e),
        // jump-safe: jumps were returned by the arm above; an app's inspect that raised gets the class name.
        Err(_) => Ok(format!("#<{}>", crate::gvl::class_name(v))),
    }
}

/// Whether `e` is an exception of `class` (never a jump).
pub fn is_a(e: &Error, class: ExceptionClass) -> bool {
    !is_jump(e) && e.is_kind_of(class)
}

/// The exception that ends a streamed body's iteration when the client left.
pub fn client_gone(ruby: &Ruby) -> Error {
    exception(client_gone_class(ruby), "the client closed the connection")
}

fn client_gone_class(ruby: &Ruby) -> ExceptionClass {
    // Set by `init`, which runs when the extension loads, before any request exists.
    ruby.get_inner(
        *CLIENT_GONE
            .get()
            .expect("iodine: ClientGone used before init"),
    )
}

/// Whether `e` is [`client_gone`]'s exception.
pub fn is_client_gone(ruby: &Ruby, e: &Error) -> bool {
    !is_jump(e) && e.is_kind_of(client_gone_class(ruby))
}

/// Writes `Iodine caught an unprotected exception - Class: message` and the backtrace.
/// Returns `Err` only when a jump interrupted the logging (it must reach Ruby).
pub fn log_exception(ruby: &Ruby, e: &Error) -> Result<(), Error> {
    // An error built in Rust (a failed conversion, say) holds its class, not an instance:
    // its own text says what happened.
    let Some(exc) = e
        .value()
        .filter(|v| v.is_kind_of(ruby.exception_exception()))
    else {
        iodine_engine::error!("Iodine caught an unprotected exception - {e}");
        return Ok(());
    };
    let class = crate::gvl::class_name(exc);
    let message = match exc.funcall::<_, _, RString>("message", ()) {
        Ok(m) => String::from_utf8_lossy(&m.to_bytes()).into_owned(),
        Err(e) if is_jump(&e) => return Err(e),
        // jump-safe: jumps were returned by the arm above; a message that raised is logged empty.
        Err(_) => String::new(),
    };
    let backtrace = match exc.funcall::<_, _, Option<Vec<String>>>("backtrace", ()) {
        // jump-safe: an Option (a nil backtrace), no Ruby call.
        Ok(lines) => lines.unwrap_or_default(),
        Err(e) if is_jump(&e) => return Err(e),
        // jump-safe: jumps were returned by the arm above; a backtrace that raised is logged empty.
        Err(_) => Vec::new(),
    };
    iodine_engine::error!("Iodine caught an unprotected exception - {class}: {message}");
    if iodine_engine::log::enabled(iodine_engine::log::Level::Error) {
        for line in backtrace.iter().take(64) {
            iodine_engine::log::raw_line(format!("\t{line}"));
        }
    }
    Ok(())
}

/// Defines `Iodine::Base::ClientGone`.
pub fn init(ruby: &Ruby, base: RModule) -> Result<(), Error> {
    let class = base.define_class("ClientGone", ruby.exception_exception().as_r_class())?;
    ruby.gc_register_mark_object(class);
    let class = ExceptionClass::from_value(class.as_value()).ok_or_else(|| {
        exception(
            ruby.exception_type_error(),
            "ClientGone is not an exception",
        )
    })?;
    // jump-safe: OnceLock::set (Rust): a second init changes nothing.
    let _ = CLIENT_GONE.set(Opaque::from(class));
    Ok(())
}
