//! Turning the app's `[status, headers, body]` into an owned [`Response`].
//!
//! Arrays (and `to_ary` bodies) are joined into one buffer and sent with a Content-Length;
//! `to_path` bodies are opened here and sent by the IO threads; other `each` bodies stream,
//! chunk by chunk, as the app yields them. `close` is called exactly once on every path: here
//! for complete bodies and invalid responses, and from a Ruby `ensure`
//! (`Iodine::Base::RackBody`) for bodies that run app code while they are sent, so that
//! whatever ends them (an exception, the client leaving, `Thread#kill`, `throw`) closes them.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use iodine_engine::http::{stream_channel, Body, BodySender, Response};
use magnus::rb_sys::AsRawValue;
use magnus::value::{LazyId, Opaque};
use magnus::{prelude::*, Error, RArray, RHash, RModule, RString, Ruby, Value};
use parking_lot::Mutex;

use crate::{errors, gvl};

/// `Iodine::Base::RackBody` (lib/iodine/rack_body.rb): `each`/`call` with `close` in `ensure`.
static RACK_BODY: OnceLock<Opaque<RModule>> = OnceLock::new();
static EACH: LazyId = LazyId::new("each");
static CALL: LazyId = LazyId::new("call");

/// What to do after the response head was handed over.
pub enum Rest {
    /// Nothing: the body was complete (and closed).
    Done,
    /// Iterate `body.each` into `sender`, then close the body.
    Stream(Value, BodySender),
    /// A Rack 3 streaming body: `body.call(stream)`; the app closes the stream.
    Call(Value, BodySender),
}

/// Why the app's answer could not be used (the client gets a 500).
pub enum Invalid {
    /// Not a valid Rack response (logged by the caller).
    Response(String),
    /// App code raised while it was read (`to_ary`, `to_s`, …), or a jump went through it.
    Ruby(Error),
}

impl From<Error> for Invalid {
    fn from(e: Error) -> Self {
        Invalid::Ruby(e)
    }
}

/// Converts the app's return value; the body is closed on every error path (unless a jump is
/// on its way: then no Ruby may run before it reached Ruby).
pub fn convert(
    ruby: &Ruby,
    result: Value,
    head_request: bool,
) -> Result<(Response, Rest), Invalid> {
    let Some(triple) = RArray::from_value(result).filter(|a| a.len() == 3) else {
        return Err(Invalid::Response(format!(
            "the app returned {} instead of [status, headers, body]",
            inspect(result)?
        )));
    };
    let [status, headers, body] = triple.to_value_array::<3>()?;
    match convert_parts(ruby, status, headers, body, head_request) {
        Ok(done) => Ok(done),
        Err(Invalid::Ruby(e)) if errors::is_jump(&e) => Err(Invalid::Ruby(e)),
        Err(invalid) => {
            close(body)?;
            Err(invalid)
        }
    }
}

fn convert_parts(
    ruby: &Ruby,
    status: Value,
    headers: Value,
    body: Value,
    head_request: bool,
) -> Result<(Response, Rest), Invalid> {
    // jump-safe: u16::try_from (Rust); status_number's Err left through `?`.
    let Some(status) = status_number(status)?.and_then(|n| u16::try_from(n).ok()) else {
        return Err(Invalid::Response(format!(
            "invalid status {}",
            inspect(status)?
        )));
    };
    let headers = collect_headers(headers)?;
    let (headers, body) = unwrap_rack_chunked(headers, body)?;
    let status_has_body = status >= 200 && status != 204 && status != 304;

    if !status_has_body || head_request {
        let mut headers = headers;
        if head_request && status_has_body {
            head_length(body, &mut headers);
        }
        close(body)?;
        return Ok((
            Response {
                status,
                headers,
                body: Body::Empty,
            },
            Rest::Done,
        ));
    }
    if let Some(s) = RString::from_value(body) {
        // Not Rack-legal, but the C gem accepted a bare String.
        return Ok((Response::new(status, headers, s.to_bytes()), Rest::Done));
    }
    let array = match RArray::from_value(body) {
        Some(a) => Some(a),
        // `to_ary` may answer nil for "not an Array" (Rails' response body does).
        None if body.respond_to("to_ary", false)? => {
            body.funcall::<_, _, Option<RArray>>("to_ary", ())?
        }
        None => None,
    };
    if let Some(parts) = array {
        let joined = join(ruby, parts);
        close(body)?;
        return Ok((Response::new(status, headers, joined), Rest::Done));
    }
    if body.respond_to("to_path", false)? {
        if let Some(file) = open_path(ruby, body)? {
            close(body)?;
            return Ok((
                Response {
                    status,
                    headers,
                    body: file,
                },
                Rest::Done,
            ));
        }
    }
    let streams: Option<fn(Value, BodySender) -> Rest> = if body.respond_to("each", false)? {
        Some(Rest::Stream)
    } else if body.respond_to("call", false)? {
        Some(Rest::Call)
    } else {
        None
    };
    if let Some(rest) = streams {
        let (sender, stream) = stream_channel();
        let response = Response {
            status,
            headers,
            body: stream,
        };
        return Ok((response, rest(body, sender)));
    }
    Err(Invalid::Response(format!(
        "the response body {} responds to neither each, to_path nor call",
        inspect(body)?
    )))
}

/// Rack 2's `Rack::Chunked` middleware chunk-encodes the body itself and says so with
/// `Transfer-Encoding: chunked`; the server frames responses on its own, so such a body is
/// unwrapped to the app's body inside it (whose `close` the wrapper's would only forward to)
/// and the header dropped. Any other app `Transfer-Encoding` is dropped by the engine.
fn unwrap_rack_chunked(
    mut headers: Vec<(Bytes, Bytes)>,
    body: Value,
) -> Result<(Vec<(Bytes, Bytes)>, Value), Error> {
    let is_te = |n: &Bytes| n.eq_ignore_ascii_case(b"transfer-encoding");
    if !headers.iter().any(|(n, _)| is_te(n)) {
        return Ok((headers, body));
    }
    let class = gvl::class_name(body);
    if class != "Rack::Chunked::Body" && class != "Rack::Chunked::TrailerBody" {
        return Ok((headers, body));
    }
    let Some(wrapper) = magnus::RObject::from_value(body) else {
        return Ok((headers, body));
    };
    let inner: Value = wrapper.ivar_get("@body")?;
    headers.retain(|(n, _)| !is_te(n));
    Ok((headers, inner))
}

/// For HEAD: the Content-Length a GET would get, when the body is an Array or String and the
/// app set none (the body itself is never sent).
fn head_length(body: Value, headers: &mut Vec<(Bytes, Bytes)>) {
    if headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(b"content-length"))
    {
        return;
    }
    let len = if let Some(s) = RString::from_value(body) {
        s.len()
    } else if let Some(parts) = RArray::from_value(body) {
        parts
            .into_iter()
            .filter_map(RString::from_value)
            .map(|s| s.len())
            .sum()
    } else {
        return;
    };
    headers.push((
        Bytes::from_static(b"content-length"),
        Bytes::from(len.to_string()),
    ));
}

/// Streams `body.each` into `sender` on this Ruby thread; the body is closed (by
/// `RackBody.each`'s `ensure`) however the iteration ends. A client that leaves ends the
/// iteration with `ClientGone` (rescued here); an interrupt while waiting for a slow client is
/// delivered in the app's thread and aborts the response, so a cut body never looks complete.
pub fn stream(ruby: &Ruby, body: Value, sender: BodySender) -> Result<(), Error> {
    // The block's closure lives as long as the Proc (until GC), so it must not own the
    // sender: the response ends only when the last sender is dropped, right after `each`.
    let shared = Arc::new(Mutex::new(Some(sender)));
    let in_block = Arc::clone(&shared);
    let block = ruby.proc_from_fn(move |ruby, args, _| -> Result<(), Error> {
        let Some(chunk) = args.first().and_then(|v| RString::from_value(*v)) else {
            iodine_engine::error!("(Iodine) response body not a String");
            return Ok(());
        };
        if chunk.is_empty() {
            return Ok(());
        }
        match send_from(ruby, &in_block, chunk.to_bytes())? {
            Outcome::Sent => Ok(()),
            // Client gone, or an earlier interrupt aborted the response: end the iteration.
            Outcome::ClientGone | Outcome::Closed => Err(errors::client_gone(ruby)),
        }
    });
    let result =
        rack_body(ruby).funcall::<_, _, Value>(LazyId::get_inner_with(&EACH, ruby), (body, block));
    let sender = shared.lock().take();
    match result {
        Ok(_) => Ok(()), // dropping the last sender ends the body
        Err(e) => {
            if let Some(sender) = sender {
                sender.abort("the body's each raised");
            }
            Err(e)
        }
    }
}

/// Runs a Rack 3 streaming body (`body.call(stream)`), then closes it (from an `ensure`).
pub fn call(ruby: &Ruby, body: Value, stream: Value) -> Result<(), Error> {
    rack_body(ruby)
        .funcall::<_, _, Value>(LazyId::get_inner_with(&CALL, ruby), (body, stream))
        .map(|_| ())
}

/// What became of a chunk sent with [`send_from`].
pub enum Outcome {
    /// Handed to the connection.
    Sent,
    /// The client is gone (the slot is now empty).
    ClientGone,
    /// The slot was empty: the stream was closed or aborted before.
    Closed,
}

/// Sends `chunk` through the sender in `slot` (shared by a streamed body and whoever writes to
/// it). The slot is emptied once the client is gone, and on an interrupt, which also aborts
/// the response (a cut body never looks complete) and comes back as `Err` for Ruby.
pub fn send_from(
    ruby: &Ruby,
    slot: &Mutex<Option<BodySender>>,
    chunk: Bytes,
) -> Result<Outcome, Error> {
    let Some(sender) = slot.lock().clone() else {
        return Ok(Outcome::Closed);
    };
    match send(ruby, &sender, chunk) {
        Ok(true) => Ok(Outcome::Sent),
        Ok(false) => {
            slot.lock().take();
            Ok(Outcome::ClientGone)
        }
        Err(interrupt) => {
            drop(sender);
            if let Some(sender) = slot.lock().take() {
                sender.abort("interrupted while sending the body");
            }
            Err(interrupt)
        }
    }
}

/// Sends a chunk, releasing the GVL while the client is slow. `Ok(false)` once the client is
/// gone; `Err` when a Ruby interrupt (`Thread#raise`/`kill`, `Timeout`) arrived meanwhile:
/// the chunk may or may not have been sent, and the error must go back to Ruby as it is.
fn send(ruby: &Ruby, sender: &BodySender, chunk: Bytes) -> Result<bool, Error> {
    let chunk = match sender.try_send(chunk) {
        Ok(open) => return Ok(open),
        Err(chunk) => chunk,
    };
    let Some(handle) = crate::server::runtime_handle() else {
        return Ok(false);
    };
    enum Sent {
        Yes,
        Gone,
        Interrupted,
    }
    let cancel = tokio::sync::Notify::new();
    loop {
        let attempt = chunk.clone();
        let sent = gvl::without_gvl(
            ruby,
            || {
                handle.block_on(async {
                    tokio::select! {
                        // Cancel-safe: when the other branch wins, nothing was sent.
                        sent = sender.send(attempt) => if sent { Sent::Yes } else { Sent::Gone },
                        _ = cancel.notified() => Sent::Interrupted,
                    }
                })
            },
            || cancel.notify_one(),
        )?;
        match sent {
            Sent::Yes => return Ok(true),
            Sent::Gone => return Ok(false),
            // Woken for an interrupt that did not raise (it ran in `without_gvl`): go on.
            Sent::Interrupted => continue,
        }
    }
}

/// The status as a signed number: an Integer, or a String that reads as one; None for
/// anything else. App code can run here (`to_int`): its exception makes the status invalid,
/// a jump comes back as `Err`.
pub(super) fn status_number(v: Value) -> Result<Option<i64>, Error> {
    if let Some(s) = RString::from_value(v) {
        let text = String::from_utf8_lossy(&s.to_bytes()).into_owned();
        // jump-safe: Rust's integer parse, no Ruby call.
        return Ok(text.trim().parse::<i64>().ok());
    }
    match i64::try_convert(v) {
        Ok(n) => Ok(Some(n)),
        Err(e) if errors::is_jump(&e) => Err(e),
        // jump-safe: jumps were returned by the arm above; a status to_int that raised makes it invalid.
        Err(_) => Ok(None),
    }
}

pub(super) fn collect_headers(headers: Value) -> Result<Vec<(Bytes, Bytes)>, Invalid> {
    let Some(hash) = RHash::from_value(headers) else {
        return Err(Invalid::Response(format!(
            "headers must be a Hash, got {}",
            inspect(headers)?
        )));
    };
    let mut out = Vec::with_capacity(hash.len() + 1);
    hash.foreach(|k: Value, v: Value| {
        if k.is_nil() || v.is_nil() {
            return Ok(magnus::r_hash::ForEach::Continue);
        }
        let name = to_bytes(k)?;
        if let Some(list) = RArray::from_value(v) {
            for item in list.into_iter() {
                if !item.is_nil() {
                    out.push((name.clone(), to_bytes(item)?));
                }
            }
        } else {
            out.push((name, to_bytes(v)?));
        }
        Ok(magnus::r_hash::ForEach::Continue)
    })?;
    Ok(out)
}

/// The bytes of a String, or of `to_s` for anything else.
pub fn to_bytes(v: Value) -> Result<Bytes, Error> {
    match RString::from_value(v) {
        Some(s) => Ok(s.to_bytes()),
        None => Ok(v.funcall::<_, _, RString>("to_s", ())?.to_bytes()),
    }
}

fn join(ruby: &Ruby, parts: RArray) -> Bytes {
    if parts.len() == 1 {
        if let Some(s) =
            // jump-safe: `entry` of an Array (rb_ary_entry): no Ruby code, no interrupt check.
            RString::from_value(parts.entry::<Value>(0).unwrap_or(ruby.qnil().as_value()))
        {
            return s.to_bytes();
        }
    }
    let mut buf = Vec::new();
    for part in parts.into_iter() {
        match RString::from_value(part) {
            Some(s) => gvl::append_str(&mut buf, s),
            None => iodine_engine::error!("(Iodine) response body not a String"),
        }
    }
    Bytes::from(buf)
}

/// The file of a `to_path` body, or None when it can't be opened (the body is then iterated).
///
/// `to_path` is an optimisation of `each` with the same bytes (Rack), so a `to_path` that
/// raises a StandardError (Rails' `ActionController::Live` body defines one that raises
/// NoMethodError) only means "iterate me": logged at debug. Other exceptions and jumps
/// propagate.
fn open_path(ruby: &Ruby, body: Value) -> Result<Option<Body>, Error> {
    let path: String = match body.funcall("to_path", ()) {
        Ok(path) => path,
        Err(e) if errors::is_a(&e, ruby.exception_standard_error()) => {
            // The class only: formatting the error would call its `message` (app code).
            if let Some(exception) = e.value() {
                let class = gvl::class_name(exception);
                iodine_engine::debug!("the body's to_path raised {class}: sent through each");
            }
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    // jump-safe: opening a file (Rust): a failure means iterate the body.
    let Ok(file) = std::fs::File::open(&path) else {
        return Ok(None);
    };
    Ok(file
        .metadata()
        // jump-safe: file metadata (Rust), no Ruby call.
        .ok()
        .filter(|m| m.is_file())
        .map(|m| Body::File(file, m.len())))
}

/// Closes the body of an answer that is not sent (a full hijack's): `close` on the third
/// element of a `[status, headers, body]` Array; anything else is left alone.
pub fn close_answer(answer: Value) -> Result<(), Error> {
    match RArray::from_value(answer).filter(|a| a.len() == 3) {
        Some(triple) => close(triple.entry::<Value>(2)?),
        None => Ok(()),
    }
}

/// Calls `body.close` if it has one. An exception is logged (never raised to the client); a
/// jump is returned, to be handed to Ruby before anything else runs.
pub fn close(body: Value) -> Result<(), Error> {
    // Plain Arrays and Strings have no `close`; their subclasses may.
    let ruby = Ruby::get_with(body);
    let class = body.class().as_raw();
    if class == ruby.class_array().as_raw() || class == ruby.class_string().as_raw() {
        return Ok(());
    }
    let closed = body.respond_to("close", false).and_then(|has| match has {
        true => body.funcall::<_, _, Value>("close", ()).map(|_| ()),
        false => Ok(()),
    });
    match closed {
        Ok(()) => Ok(()),
        Err(e) => errors::contain(&ruby, e),
    }
}

fn rack_body(ruby: &Ruby) -> RModule {
    // Set by `init`, which runs when the extension loads, before any request exists.
    ruby.get_inner(*RACK_BODY.get().expect("iodine: RackBody used before init"))
}

/// Defines `Iodine::Base::RackBody` (its methods are in lib/iodine/rack_body.rb).
pub fn init(ruby: &Ruby, base: RModule) -> Result<(), Error> {
    let module = base.define_module("RackBody")?;
    ruby.gc_register_mark_object(module);
    // jump-safe: OnceLock::set (Rust): a second init changes nothing.
    let _ = RACK_BODY.set(Opaque::from(module));
    Ok(())
}

/// `v.inspect` for a log line (a jump in the app's `inspect` comes back as `Err`).
fn inspect(v: Value) -> Result<String, Error> {
    errors::inspect(v, 200)
}
