//! Rack 3 streaming bodies: a body that answers `call` (and not `each`) is called with an
//! `Iodine::Base::Stream`, whose writes go to the client as they happen, from any thread,
//! until the app closes it (or the stream object is garbage collected).

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use iodine_engine::http::BodySender;
use magnus::{method, prelude::*, Error, RModule, Ruby, Value};
use parking_lot::Mutex;

use super::response::{send_from, to_bytes, Outcome};
use crate::errors;

/// The stream handed to a streaming body.
#[magnus::wrap(class = "Iodine::Base::Stream", free_immediately, size)]
pub struct Stream {
    sender: Mutex<Option<BodySender>>,
    /// Set once a write found the client gone.
    client_left: AtomicBool,
}

impl Stream {
    /// A stream writing into `sender`.
    pub fn new(sender: BodySender) -> Self {
        Stream {
            sender: Mutex::new(Some(sender)),
            client_left: AtomicBool::new(false),
        }
    }

    /// `write(data)`: sends `data.to_s`; returns its byte size. Raises `IOError` once the
    /// stream is closed or the client went away. An interrupt that arrives while the write
    /// waits for a slow client (`Timeout`, `Thread#raise`, `Thread#kill`) is delivered as Ruby
    /// would, and aborts the response: the client sees it cut, never complete.
    fn write(ruby: &Ruby, rb_self: &Self, data: Value) -> Result<usize, Error> {
        let bytes = to_bytes(data)?;
        let len = bytes.len();
        if len == 0 && rb_self.sender.lock().is_some() {
            return Ok(0);
        }
        match send_from(ruby, &rb_self.sender, bytes)? {
            Outcome::Sent => Ok(len),
            Outcome::Closed => Err(errors::exception(
                ruby.exception_io_error(),
                "closed stream",
            )),
            Outcome::ClientGone => {
                rb_self.client_left.store(true, Ordering::Release);
                Err(errors::exception(
                    ruby.exception_io_error(),
                    "the client closed the connection",
                ))
            }
        }
    }

    /// Whether a write found the client gone.
    pub fn client_left(&self) -> bool {
        self.client_left.load(Ordering::Acquire)
    }

    /// `<<(data)`: `write`, returning the stream.
    fn append(
        ruby: &Ruby,
        rb_self: magnus::typed_data::Obj<Self>,
        data: Value,
    ) -> Result<Value, Error> {
        Self::write(ruby, &rb_self, data)?;
        Ok(rb_self.as_value())
    }

    /// Ends the response as incomplete (the connection is cut, not finished cleanly).
    pub fn abort(&self, why: &str) {
        if let Some(sender) = self.sender.lock().take() {
            sender.abort(why);
        }
    }

    /// `close` / `close_write`: ends the response.
    fn close(&self) {
        self.sender.lock().take();
    }

    /// `closed?`
    fn is_closed(&self) -> bool {
        self.sender.lock().as_ref().is_none_or(|s| s.is_closed())
    }

    /// `read`: a response stream has nothing to read.
    fn read(&self, _args: &[Value]) -> Option<Bytes> {
        None
    }

    /// `flush`: writes are already on their way.
    fn flush(rb_self: magnus::typed_data::Obj<Self>) -> magnus::typed_data::Obj<Self> {
        rb_self
    }
}

/// Defines `Iodine::Base::Stream`.
pub fn init(ruby: &Ruby, base: RModule) -> Result<(), Error> {
    let class = base.define_class("Stream", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_method("write", method!(Stream::write, 1))?;
    class.define_method("<<", method!(Stream::append, 1))?;
    class.define_method("close", method!(Stream::close, 0))?;
    class.define_method("close_write", method!(Stream::close, 0))?;
    class.define_method("close_read", method!(Stream::flush, 0))?;
    class.define_method("closed?", method!(Stream::is_closed, 0))?;
    class.define_method("read", method!(Stream::read, -1))?;
    class.define_method("flush", method!(Stream::flush, 0))?;
    Ok(())
}
