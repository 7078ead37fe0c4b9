//! `rack.upgrade`: a request that asks for a WebSocket or an event stream gets
//! `env['rack.upgrade?']` (`:websocket` / `:sse`); when the app answers by setting
//! `env['rack.upgrade']` to a handler with a status below 300, the connection leaves HTTP
//! and the handler gets the callbacks of an `Iodine::Connection` (section 4.4 of the API).
//!
//! `env['upgrade.tcp']` (on any request), or `rack.upgrade` on a request that asked for
//! neither, turns the connection into a raw one after the app's status and headers: the
//! bytes that came after the request head reach the handler's first `on_message`.

use std::sync::OnceLock;

use http::HeaderMap;
use iodine_engine::http::{Body, Response};
use iodine_engine::link::{Link, Protocol, Upgrade};
use iodine_engine::{sse, websocket};
use magnus::value::Opaque;
use magnus::{prelude::*, Error, RArray, RHash, RString, Ruby, Value};

use super::response::{self, Invalid};
use crate::connection::Conn;
use crate::ruby_api::connection::Connection;

struct Keys {
    asked: Opaque<RString>,
    handler: Opaque<RString>,
    tcp: Opaque<RString>,
}

static KEYS: OnceLock<Keys> = OnceLock::new();

/// The protocol a request asks to switch to, if any: `Upgrade: websocket`; an event stream
/// when `Accept` contains `text/event-stream` or, as the C gem also read it, `Upgrade: sse`.
pub fn requested(headers: &HeaderMap) -> Option<Protocol> {
    if let Some(upgrade) = headers.get(http::header::UPGRADE) {
        if websocket::is_upgrade_request(headers) {
            return Some(Protocol::WebSocket);
        }
        if upgrade.as_bytes().eq_ignore_ascii_case(b"sse") {
            return Some(Protocol::Sse);
        }
    }
    sse::is_sse_request(headers).then_some(Protocol::Sse)
}

/// Sets `env['rack.upgrade?']` for a request that asks for `protocol`.
pub fn offer(ruby: &Ruby, env: RHash, protocol: Protocol) -> Result<(), Error> {
    let name = match protocol {
        Protocol::WebSocket => "websocket",
        Protocol::Sse => "sse",
        Protocol::Raw => return Ok(()), // never asked for by a request
    };
    env.aset(ruby.get_inner(keys().asked), ruby.to_symbol(name))
}

/// The upgrade response when the app accepted (`env['upgrade.tcp']` or
/// `env['rack.upgrade']` set, status < 300); None when it answered as plain HTTP. `asked`
/// is what the request asked for. The app's body is closed: nothing of it is sent.
pub fn accept(
    ruby: &Ruby,
    result: Value,
    env: RHash,
    asked: Option<Protocol>,
) -> Result<Option<Response>, Invalid> {
    let tcp: Value = env.aref(ruby.get_inner(keys().tcp))?;
    let (handler, protocol) = if tcp.to_bool() {
        (tcp, Protocol::Raw)
    } else {
        let handler: Value = env.aref(ruby.get_inner(keys().handler))?;
        if !handler.to_bool() {
            return Ok(None);
        }
        // jump-safe: an Option, no Ruby call.
        (handler, asked.unwrap_or(Protocol::Raw))
    };
    let Some(triple) = RArray::from_value(result).filter(|a| a.len() == 3) else {
        return Ok(None); // not a Rack answer: the normal path reports it
    };
    let [status, headers, body] = triple.to_value_array::<3>()?;
    let Some(status) = response::status_number(status)?.filter(|n| *n < 300) else {
        return Ok(None);
    };
    let headers = match response::collect_headers(headers) {
        Ok(headers) => headers,
        // The app's body is closed on this path too, unless a jump is on its way (then no
        // Ruby may run before it reached Ruby).
        Err(Invalid::Ruby(e)) if crate::errors::is_jump(&e) => return Err(Invalid::Ruby(e)),
        Err(invalid) => {
            response::close(body)?;
            return Err(invalid);
        }
    };
    response::close(body)?;
    let link = Link::new(protocol);
    let conn = Conn::new(link.clone());
    let object = ruby.obj_wrap(Connection::new(conn.clone()));
    // A raw connection has no env (as with the C gem).
    let env = match protocol {
        Protocol::Raw => ruby.qnil().as_value(),
        _ => env.as_value(),
    };
    conn.attach(ruby, object.as_value(), handler, env)?;
    // The status (read as a signed number, as the C gem did) is below 300: `0`, `-1`,
    // `101` and `200` all accept. A raw connection's head carries it (200 when it is no
    // HTTP status); WebSocket and SSE have their own.
    let status = u16::try_from(status)
        // jump-safe: u16::try_from (Rust), no Ruby call.
        .ok()
        .filter(|s| *s >= 100)
        // jump-safe: an Option, no Ruby call.
        .unwrap_or(200);
    Ok(Some(Response {
        status,
        headers,
        body: Body::Upgrade(Upgrade::new(link, conn)),
    }))
}

fn keys() -> &'static Keys {
    // Set by `init`, which runs when the extension loads, before any request exists.
    KEYS.get()
        .expect("iodine: rack.upgrade keys used before init")
}

/// Interns the env keys.
pub fn init(ruby: &Ruby) {
    let key = |s: &str| {
        let k = ruby.str_new(s);
        k.freeze();
        ruby.gc_register_mark_object(k);
        Opaque::from(k)
    };
    // jump-safe: OnceLock::set (Rust): a second init changes nothing.
    let _ = KEYS.set(Keys {
        asked: key("rack.upgrade?"),
        handler: key("rack.upgrade"),
        tcp: key("upgrade.tcp"),
    });
}
