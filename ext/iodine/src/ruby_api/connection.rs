//! `Iodine::Connection`: the object every callback of a WebSocket or SSE handler gets
//! (section 3.1 of the API). Methods on a closed connection answer as the C gem did (`nil`,
//! `-1`) and never raise for it. `subscribe`, `publish` and `pubsub?` are in
//! lib/iodine/connection.rb, on top of the native `__subscribe`.

use std::sync::Arc;

use iodine_engine::link::{Outgoing, Protocol};
use magnus::encoding::EncodingCapable;
use magnus::{method, prelude::*, Error, RClass, RHash, RModule, RString, Ruby, Value};

use crate::connection::{sse_event, Conn};
use crate::errors::exception;

/// The Ruby object; a `Connection.new` made from Ruby has no connection and acts closed.
#[derive(Default)]
#[magnus::wrap(class = "Iodine::Connection", free_immediately, size)]
pub struct Connection(Option<Arc<Conn>>);

impl Connection {
    /// The object for `conn`.
    pub fn new(conn: Arc<Conn>) -> Self {
        Connection(Some(conn))
    }

    /// The connection while it is open, in the process that serves it (in a process forked
    /// while it was open, it is the parent's: closed here).
    fn open(&self) -> Option<&Arc<Conn>> {
        // Whose first: a parent's copy is never touched (its locks may be copied held).
        self.0.as_ref().filter(|c| c.is_ours() && c.is_open())
    }
}

/// `write(data)`, `write(data, event:, id:, retry:)` or `write(data, {event: …})` (SSE
/// fields). True when queued, nil when the connection is closed.
fn write(ruby: &Ruby, rb_self: &Connection, args: &[Value]) -> Result<Option<bool>, Error> {
    if args.is_empty() || args.len() > 2 {
        return Err(exception(
            ruby.exception_arg_error(),
            format!(
                "wrong number of arguments (given {}, expected 1..2)",
                args.len()
            ),
        ));
    }
    let data = to_string(ruby, args[0])?;
    // Whether it is still open is the link's to say, when the message is queued (a copy a
    // fork made of the parent's connection is closed here, and never touched).
    let Some(conn) = rb_self.0.as_ref().filter(|c| c.is_ours()) else {
        return Ok(None);
    };
    let message = match conn.link().protocol() {
        Protocol::Raw => Outgoing::Raw(data.to_bytes()),
        Protocol::WebSocket => {
            // Text only when it is valid UTF-8 (Ruby knows: the String's code range); the
            // session then sends it as it is.
            if data.enc_get() == ruby.utf8_encindex() && crate::gvl::valid_encoding(data) {
                Outgoing::Text(data.to_bytes())
            } else {
                Outgoing::Binary(data.to_bytes())
            }
        }
        Protocol::Sse => {
            let fields = match args.get(1) {
                Some(v) if !v.is_nil() => Some(RHash::try_convert(*v)?),
                _ => None,
            };
            let field = |name: &str| -> Result<Option<bytes::Bytes>, Error> {
                let Some(h) = fields else { return Ok(None) };
                let v: Option<Value> = h.lookup(ruby.to_symbol(name))?;
                match v {
                    Some(v) if !v.is_nil() => Ok(Some(to_string(ruby, v)?.to_bytes())),
                    _ => Ok(None),
                }
            };
            let (event, id) = (field("event")?, field("id")?);
            let retry = match fields {
                Some(h) => h.lookup::<_, Option<u64>>(ruby.to_symbol("retry"))?,
                None => None,
            };
            let bytes = data.to_bytes();
            match sse_event(&bytes, event.as_deref(), id.as_deref(), retry) {
                Some(event) => Outgoing::Raw(event),
                None => return Ok(conn.is_open().then_some(true)), // nothing to send
            }
        }
    };
    Ok(conn.write(message).then_some(true))
}

/// A String as is; anything else through `to_s`, with the C gem's warning.
fn to_string(ruby: &Ruby, v: Value) -> Result<RString, Error> {
    if let Some(s) = RString::from_value(v) {
        return Ok(s);
    }
    iodine_engine::warning!("Iodine::Connection#write: the data is not a String, using to_s");
    let s: Value = v.funcall("to_s", ())?;
    RString::from_value(s)
        .ok_or_else(|| exception(ruby.exception_type_error(), "data must be a String"))
}

/// `close`: after the queued writes. Always nil.
fn close(rb_self: &Connection) {
    if let Some(conn) = rb_self.open() {
        conn.link().close(None);
    }
}

/// `open?`
fn is_open(rb_self: &Connection) -> bool {
    rb_self.open().is_some()
}

/// `pending`: messages queued or being written; -1 once closed.
fn pending(rb_self: &Connection) -> i64 {
    match rb_self.open() {
        Some(conn) => conn.link().pending().max(0),
        None => -1,
    }
}

/// `protocol`: `:websocket`, `:sse` or `:raw` until `on_close` returned (in `on_close` too, as
/// the C gem), then nil.
fn protocol(ruby: &Ruby, rb_self: &Connection) -> Option<magnus::Symbol> {
    let attached = rb_self
        .0
        .as_ref()
        .filter(|c| c.is_ours() && c.is_attached());
    attached.map(|c| match c.link().protocol() {
        Protocol::WebSocket => ruby.to_symbol("websocket"),
        Protocol::Sse => ruby.to_symbol("sse"),
        Protocol::Raw => ruby.to_symbol("raw"),
    })
}

/// `timeout`: the ping (WebSocket, SSE) or quiet (raw) interval in effect, in seconds: the
/// connection's own when set, else its listener's (as the C gem); nil once closed.
fn timeout(rb_self: &Connection) -> Option<u32> {
    rb_self.open().map(|c| c.link().effective_timeout())
}

/// `timeout=(seconds)`: 0..255.
fn set_timeout(ruby: &Ruby, rb_self: &Connection, seconds: Value) -> Result<Value, Error> {
    let Some(n) = magnus::Integer::from_value(seconds) else {
        return Err(exception(
            ruby.exception_type_error(),
            "timeout must be an Integer",
        ));
    };
    let n = n
        .to_i64()
        // jump-safe: an Integer's to_i64 (a Bignum's RangeError, no Ruby code runs).
        .ok()
        .filter(|n| (0..=255).contains(n))
        .ok_or_else(|| exception(ruby.exception_range_error(), "timeout out of range."))?;
    match rb_self.open() {
        Some(conn) => {
            conn.link().set_timeout(n as u32);
            Ok(seconds)
        }
        None => Ok(ruby.qnil().as_value()),
    }
}

/// `env`: the Rack env of the upgrade request; nil after `on_close`.
fn env(ruby: &Ruby, rb_self: &Connection) -> Option<Value> {
    rb_self.0.as_ref().and_then(|c| c.env(ruby))
}

/// `handler`: nil once closed.
fn handler(ruby: &Ruby, rb_self: &Connection) -> Option<Value> {
    rb_self.0.as_ref().and_then(|c| c.handler(ruby))
}

/// `handler=(new)`: nil/false closes; otherwise the old handler's `on_close`, then the new
/// one's `on_open`.
fn set_handler(ruby: &Ruby, rb_self: &Connection, new: Value) -> Result<Value, Error> {
    let Some(conn) = rb_self.open() else {
        return Ok(ruby.qnil().as_value());
    };
    if !new.to_bool() {
        conn.link().close(None);
        return Ok(new);
    }
    conn.swap_handler(ruby, new)?;
    Ok(new)
}

/// `__subscribe(name, pattern, binary, callable_or_nil)`: true when subscribed.
fn subscribe(
    ruby: &Ruby,
    rb_self: &Connection,
    name: RString,
    pattern: bool,
    binary: bool,
    callable: Option<Value>,
) -> Result<bool, Error> {
    super::pubsub::channel_fits(ruby, &name.to_bytes())?;
    match rb_self.open() {
        Some(conn) => conn.subscribe(ruby, name.to_bytes(), pattern, binary, callable),
        None => Ok(false),
    }
}

/// `unsubscribe(name)`: true / false, nil once closed.
fn unsubscribe(ruby: &Ruby, rb_self: &Connection, name: Value) -> Result<Option<bool>, Error> {
    let name = if let Some(s) = magnus::Symbol::from_value(name) {
        s.name()?.into_owned().into_bytes()
    } else if let Some(s) = RString::from_value(name) {
        s.to_bytes().to_vec()
    } else {
        return Err(exception(
            ruby.exception_type_error(),
            "channel must be a String or Symbol",
        ));
    };
    Ok(rb_self.open().map(|c| c.unsubscribe(ruby, &name)))
}

/// Defines `Iodine::Connection`.
pub fn init(ruby: &Ruby, iodine: RModule) -> Result<RClass, Error> {
    let class = iodine.define_class("Connection", ruby.class_object())?;
    class.define_alloc_func::<Connection>();
    class.define_method("write", method!(write, -1))?;
    class.define_method("close", method!(close, 0))?;
    class.define_method("open?", method!(is_open, 0))?;
    class.define_method("pending", method!(pending, 0))?;
    class.define_method("protocol", method!(protocol, 0))?;
    class.define_method("timeout", method!(timeout, 0))?;
    class.define_method("timeout=", method!(set_timeout, 1))?;
    class.define_method("env", method!(env, 0))?;
    class.define_method("handler", method!(handler, 0))?;
    class.define_method("handler=", method!(set_handler, 1))?;
    class.define_method("__subscribe", method!(subscribe, 4))?;
    class.define_method("unsubscribe", method!(unsubscribe, 1))?;
    Ok(class)
}
