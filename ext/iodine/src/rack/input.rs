//! `rack.input`: `Iodine::Base::RackIO`, a rewindable reader over the received body
//! (memory or the spilled temporary file).

use std::cell::RefCell;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use iodine_engine::http::RequestBody;
use magnus::{method, prelude::*, Error, RModule, RString, Ruby, Value};

use crate::errors;

/// Longest line `gets` returns before splitting it.
const MAX_LINE: usize = 1024 * 1024;

/// The Rack input stream of one request.
#[magnus::wrap(class = "Iodine::Base::RackIO", free_immediately, size)]
pub struct RackIO(RefCell<Input>);

struct Input {
    body: RequestBody,
    pos: u64,
}

impl RackIO {
    /// Wraps a received body.
    pub fn new(body: RequestBody) -> Self {
        RackIO(RefCell::new(Input { body, pos: 0 }))
    }

    /// `read(length = nil, buffer = nil)` with Rack semantics.
    fn read(ruby: &Ruby, rb_self: &Self, args: &[Value]) -> Result<Option<RString>, Error> {
        let args =
            magnus::scan_args::scan_args::<(), (Option<Value>, Option<RString>), (), (), (), ()>(
                args,
            )?;
        let (len, buffer) = args.optional;
        let len = match len {
            None => None,
            Some(v) if v.is_nil() => None,
            Some(v) => {
                // Ruby's own TypeError (or whatever the app's `to_int` raised, jumps too)
                // goes to the caller as it is.
                let n = i64::try_convert(v)?;
                if n < 0 {
                    return Err(errors::exception(
                        ruby.exception_range_error(),
                        "negative length",
                    ));
                }
                Some(n as usize)
            }
        };
        // The borrow ends before any Ruby call below: the empty input is shared by requests
        // on several threads, and Ruby may switch threads inside a method call.
        let data = {
            let mut input = rb_self.0.borrow_mut();
            match len {
                Some(0) => Some(Bytes::new()),
                Some(n) => {
                    let d = input.take(n).map_err(|e| io_error(ruby, e))?;
                    (!d.is_empty()).then_some(d)
                }
                None => Some(input.take(usize::MAX).map_err(|e| io_error(ruby, e))?),
            }
        };
        match (data, buffer) {
            (None, Some(buf)) => {
                crate::gvl::fill_str(buf, b"")?;
                Ok(None)
            }
            (None, None) => Ok(None),
            (Some(d), Some(buf)) => {
                crate::gvl::fill_str(buf, &d)?;
                buf.enc_associate(ruby.ascii8bit_encindex())?;
                Ok(Some(buf))
            }
            (Some(d), None) => Ok(Some(ruby.str_from_slice(&d))),
        }
    }

    /// `gets`: the next line (with its `\n`), nil at the end.
    fn gets(ruby: &Ruby, rb_self: &Self) -> Result<Option<RString>, Error> {
        let line = rb_self
            .0
            .borrow_mut()
            .line()
            .map_err(|e| io_error(ruby, e))?;
        Ok(line.map(|l| ruby.str_from_slice(&l)))
    }

    /// `each { |line| }`: every remaining line.
    fn each(ruby: &Ruby, rb_self: &Self) -> Result<(), Error> {
        loop {
            let line = rb_self
                .0
                .borrow_mut()
                .line()
                .map_err(|e| io_error(ruby, e))?;
            match line {
                Some(l) => {
                    let _: Value = ruby.yield_value(ruby.str_from_slice(&l))?;
                }
                None => return Ok(()),
            }
        }
    }

    /// `rewind`: back to the start; returns 0.
    fn rewind(&self) -> i64 {
        self.0.borrow_mut().pos = 0;
        0
    }

    /// `close`: frees the body (later reads return nothing).
    fn close(&self) {
        self.release();
    }

    /// Frees the body now (a spilled body's temporary file with it); the server calls this
    /// when the response is finished, so the file never waits for a GC.
    pub fn release(&self) {
        // No borrow outlives a method call (none is held across Ruby code), so this only
        // fails if called from inside one; the GC then frees the body later.
        // jump-safe: a RefCell borrow (Rust), no Ruby call.
        if let Ok(mut input) = self.0.try_borrow_mut() {
            input.body = RequestBody::Empty;
            input.pos = 0;
        }
    }

    /// `size`: the body's length.
    fn size(&self) -> u64 {
        self.0.borrow().body.len()
    }
}

impl Input {
    /// Up to `max` bytes from the current position.
    fn take(&mut self, max: usize) -> std::io::Result<Bytes> {
        let remaining = self.body.len().saturating_sub(self.pos);
        let n = (remaining.min(max as u64)) as usize;
        let start = self.pos;
        let data = match &self.body {
            RequestBody::Empty => Bytes::new(),
            RequestBody::Memory(b) => b.slice(start as usize..start as usize + n),
            RequestBody::File(f, _) => {
                let mut buf = vec![0u8; n];
                f.read_exact_at(&mut buf, start)?;
                Bytes::from(buf)
            }
        };
        self.pos += data.len() as u64;
        Ok(data)
    }

    /// The next line, or None at the end.
    fn line(&mut self) -> std::io::Result<Option<Bytes>> {
        let remaining = self.body.len().saturating_sub(self.pos);
        if remaining == 0 {
            return Ok(None);
        }
        match &self.body {
            RequestBody::Memory(b) => {
                let rest = &b[self.pos as usize..];
                let end = rest
                    .iter()
                    .take(MAX_LINE)
                    .position(|&c| c == b'\n')
                    .map_or(rest.len().min(MAX_LINE), |i| i + 1);
                let line = b.slice(self.pos as usize..self.pos as usize + end);
                self.pos += end as u64;
                Ok(Some(line))
            }
            RequestBody::File(f, _) => {
                let mut line = Vec::new();
                let mut chunk = [0u8; 8192];
                let mut at = self.pos;
                while line.len() < MAX_LINE && at < self.body.len() {
                    let want = ((self.body.len() - at) as usize).min(chunk.len());
                    f.read_exact_at(&mut chunk[..want], at)?;
                    match chunk[..want].iter().position(|&c| c == b'\n') {
                        Some(i) => {
                            line.extend_from_slice(&chunk[..=i]);
                            break;
                        }
                        None => line.extend_from_slice(&chunk[..want]),
                    }
                    at += want as u64;
                }
                self.pos += line.len() as u64;
                Ok(Some(Bytes::from(line)))
            }
            RequestBody::Empty => Ok(None),
        }
    }
}

fn io_error(ruby: &Ruby, e: std::io::Error) -> Error {
    errors::exception(ruby.exception_io_error(), format!("rack.input: {e}"))
}

/// Defines `Iodine::Base::RackIO`.
pub fn init(ruby: &Ruby, base: RModule) -> Result<(), Error> {
    let class = base.define_class("RackIO", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_method("read", method!(RackIO::read, -1))?;
    class.define_method("gets", method!(RackIO::gets, 0))?;
    class.define_method("each", method!(RackIO::each, 0))?;
    class.define_method("rewind", method!(RackIO::rewind, 0))?;
    class.define_method("close", method!(RackIO::close, 0))?;
    class.define_method("size", method!(RackIO::size, 0))?;
    Ok(())
}
