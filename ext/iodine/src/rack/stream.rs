//! Rack 3 streaming bodies: a body that answers `call` (and not `each`) is called with an
//! `Iodine::Base::Stream`, whose writes go to the client as they happen, from any thread,
//! until the app closes it (or the stream object is garbage collected).

use bytes::Bytes;
use iodine_engine::http::BodySender;
use magnus::{method, prelude::*, Error, RModule, Ruby, Value};
use parking_lot::Mutex;

/// The stream handed to a streaming body.
#[magnus::wrap(class = "Iodine::Base::Stream", free_immediately, size)]
pub struct Stream(Mutex<Option<BodySender>>);

impl Stream {
    /// A stream writing into `sender`.
    pub fn new(sender: BodySender) -> Self {
        Stream(Mutex::new(Some(sender)))
    }

    /// `write(data)`: sends `data.to_s`; returns its byte size. Raises IOError once closed
    /// or when the client went away.
    fn write(ruby: &Ruby, rb_self: &Self, data: Value) -> Result<usize, Error> {
        let bytes = super::response::to_bytes(data)?;
        let len = bytes.len();
        let sender = rb_self.0.lock().clone();
        let Some(sender) = sender else {
            return Err(Error::new(ruby.exception_io_error(), "closed stream"));
        };
        if len > 0 && !super::response::send(&sender, bytes) {
            rb_self.0.lock().take();
            return Err(Error::new(
                ruby.exception_io_error(),
                "the client closed the connection",
            ));
        }
        Ok(len)
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
        if let Some(sender) = self.0.lock().take() {
            sender.abort(why);
        }
    }

    /// `close` / `close_write`: ends the response.
    fn close(&self) {
        self.0.lock().take();
    }

    /// `closed?`
    fn is_closed(&self) -> bool {
        self.0.lock().as_ref().is_none_or(|s| s.is_closed())
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
