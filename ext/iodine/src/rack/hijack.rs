//! `env['rack.hijack']`: one shared callable (`Iodine::Base::Hijack`) that takes the socket
//! of the request running on the calling thread. Rack only allows hijacking inside
//! `app.call`, which runs on this worker thread, so a thread-local names the request and no
//! object is allocated per request.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, IntoRawFd};

use iodine_engine::http::Hijack;
use magnus::value::Opaque;
use magnus::{function, prelude::*, Error, RHash, RModule, Ruby, Value};

use crate::errors;

thread_local! {
    static CURRENT: RefCell<Option<(Hijack, Opaque<RHash>)>> = const { RefCell::new(None) };
}

/// Marks `env`'s request as the one `rack.hijack` takes while `f` runs (the app call).
pub fn during<R>(hijack: Option<Hijack>, env: RHash, f: impl FnOnce() -> R) -> R {
    let Some(hijack) = hijack else {
        return f();
    };
    CURRENT.with(|c| *c.borrow_mut() = Some((hijack, Opaque::from(env))));
    let result = f();
    CURRENT.with(|c| *c.borrow_mut() = None);
    result
}

/// `Iodine::Base::Hijack.__take`, which `env['rack.hijack'].call` (lib/iodine/hijack.rb)
/// runs with asynchronous interrupts deferred: the socket as an IO (also stored in
/// `rack.hijack_io`). Raises `IOError` when the client has already closed the connection.
///
/// Deferred interrupts are what makes the descriptor's ownership exact: an interrupt (a
/// `Thread#raise`, `Timeout`, `Thread#kill`) delivered as `for_fd` returned would come back
/// here as an error although the new IO owns the descriptor, and closing it here would close a
/// number the IO closes again later, maybe by then another file's. Deferred, it is delivered
/// once the IO is in `rack.hijack_io`; an error from `for_fd` itself means it took nothing.
fn take(ruby: &Ruby) -> Result<Value, Error> {
    let current = CURRENT.with(|c| c.borrow().clone());
    let Some((hijack, env)) = current else {
        return Err(errors::exception(
            ruby.exception_io_error(),
            "rack.hijack can only be called while the app handles its request",
        ));
    };
    let env = ruby.get_inner(env);
    if hijack.is_taken() {
        return env.aref("rack.hijack_io");
    }
    let fd = match hijack.with_fd(crate::gvl::dup_fd) {
        Some(Ok(fd)) => fd,
        Some(Err(e)) => {
            return Err(errors::exception(
                ruby.exception_io_error(),
                format!("rack.hijack: {e}"),
            ))
        }
        None => {
            return Err(errors::exception(
                ruby.exception_io_error(),
                "rack.hijack: the client closed the connection",
            ))
        }
    };
    let class = if hijack.is_unix() {
        "UNIXSocket"
    } else {
        "TCPSocket"
    };
    let io = ruby
        .class_object()
        .const_get::<_, Value>(class)
        .and_then(|class| class.funcall::<_, _, Value>("for_fd", (fd.as_raw_fd(),)));
    let io = match io {
        Ok(io) => {
            let _owned_by_io = fd.into_raw_fd(); // the IO closes it now
            io
        }
        Err(e) if errors::is_jump(&e) => {
            // An interrupt ran after `for_fd` may already have given the descriptor to an IO
            // (which will close it): leaking it is safer than closing a number twice.
            // jump-safe: leaking the number on purpose (see above), no Ruby call.
            let _ = fd.into_raw_fd();
            return Err(e);
        }
        Err(e) => return Err(e), // `fd` is closed as it drops: nothing else owns it
    };
    hijack.mark_taken();
    env.aset("rack.hijack_io", io)?;
    Ok(io)
}

/// Defines `Iodine::Base::Hijack` (the object every env's `rack.hijack` points to; its
/// `call` is in lib/iodine/hijack.rb).
pub fn init(_ruby: &Ruby, base: RModule) -> Result<Value, Error> {
    let module = base.define_module("Hijack")?;
    module.define_singleton_method("__take", function!(take, 0))?;
    Ok(module.as_value())
}
