//! Turning the app's `[status, headers, body]` into an owned [`Response`].
//!
//! Arrays (and `to_ary` bodies) are joined into one buffer and sent with a Content-Length;
//! `to_path` bodies are opened here and sent by the IO threads; other `each` bodies stream,
//! chunk by chunk, as the app yields them. `close` is called exactly once, after the body
//! was consumed.

use std::sync::Arc;

use bytes::Bytes;
use iodine_engine::http::{stream_channel, Body, BodySender, Response};
use magnus::{prelude::*, Error, RArray, RHash, RString, Ruby, Value};
use parking_lot::Mutex;

use crate::gvl;

/// What to do after the response head was handed over.
pub enum Rest {
    /// Nothing: the body was complete (and closed).
    Done,
    /// Iterate `body.each` into `sender`, then close the body.
    Stream(Value, BodySender),
    /// A Rack 3 streaming body: `body.call(stream)`; the app closes the stream.
    Call(Value, BodySender),
}

/// Converts the app's return value. `Err` means an invalid response (the caller sends a 500).
pub fn convert(ruby: &Ruby, result: Value, head_request: bool) -> Result<(Response, Rest), String> {
    let triple = RArray::from_value(result)
        .filter(|a| a.len() == 3)
        .ok_or_else(|| {
            format!(
                "the app returned {} instead of [status, headers, body]",
                inspect(result)
            )
        })?;
    let (status, headers, body): (Value, Value, Value) = triple
        .to_value_array::<3>()
        .map(|[a, b, c]| (a, b, c))
        .map_err(|e| e.to_string())?;
    let status =
        parse_status(status).ok_or_else(|| format!("invalid status {}", inspect(status)))?;
    let headers = collect_headers(headers)?;
    let status_has_body = status >= 200 && status != 204 && status != 304;

    if !status_has_body || head_request {
        let mut headers = headers;
        if head_request && status_has_body {
            head_length(body, &mut headers);
        }
        close(body);
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
    let array = RArray::from_value(body).or_else(|| {
        body.respond_to("to_ary", false)
            .ok()
            .filter(|r| *r)
            .and_then(|_| body.funcall::<_, _, RArray>("to_ary", ()).ok())
    });
    if let Some(parts) = array {
        let joined = join(ruby, parts);
        close(body);
        return Ok((Response::new(status, headers, joined), Rest::Done));
    }
    if body.respond_to("to_path", false).unwrap_or(false) {
        if let Some(file) = open_path(body) {
            close(body);
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
    let streams: Option<fn(Value, BodySender) -> Rest> =
        if body.respond_to("each", false).unwrap_or(false) {
            Some(Rest::Stream)
        } else if body.respond_to("call", false).unwrap_or(false) {
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
    close(body);
    Err(format!(
        "the response body {} responds to neither each, to_path nor call",
        inspect(body)
    ))
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

/// Streams `body.each` into `sender` on this Ruby thread, then closes the body.
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
        let sender = in_block.lock().clone();
        let open = sender.is_some_and(|s| send(&s, chunk.to_bytes()));
        if !open {
            // The client is gone: stop the app's iteration.
            return Err(ruby.iter_break_value(ruby.qnil()));
        }
        Ok(())
    });
    let result = body.funcall_with_block::<_, _, Value>("each", (), block);
    close(body);
    let sender = shared.lock().take();
    match (result, sender) {
        (Err(e), Some(sender)) => {
            sender.abort("the body's each raised");
            Err(e)
        }
        (Err(e), None) => Err(e),
        (Ok(_), _) => Ok(()),
    }
}

/// Sends a chunk, releasing the GVL while the client is slow; false once the client is gone.
pub fn send(sender: &BodySender, chunk: Bytes) -> bool {
    match sender.try_send(chunk) {
        Ok(open) => open,
        Err(chunk) => {
            let cancel = tokio::sync::Notify::new();
            let handle = crate::server::runtime_handle();
            let sent = gvl::without_gvl(
                || match handle {
                    Some(h) => h.block_on(async {
                        tokio::select! {
                            sent = sender.send(chunk) => sent,
                            _ = cancel.notified() => false,
                        }
                    }),
                    None => false,
                },
                || cancel.notify_one(),
            );
            sent.unwrap_or(false)
        }
    }
}

fn parse_status(v: Value) -> Option<u16> {
    let n = if let Some(s) = RString::from_value(v) {
        s.to_string().ok()?.trim().parse::<i64>().ok()?
    } else {
        i64::try_convert(v).ok()?
    };
    u16::try_from(n).ok()
}

fn collect_headers(headers: Value) -> Result<Vec<(Bytes, Bytes)>, String> {
    let hash = RHash::from_value(headers)
        .ok_or_else(|| format!("headers must be a Hash, got {}", inspect(headers)))?;
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
    })
    .map_err(|e| e.to_string())?;
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

fn open_path(body: Value) -> Option<Body> {
    let path: String = body.funcall("to_path", ()).ok()?;
    let file = std::fs::File::open(&path).ok()?;
    let meta = file.metadata().ok()?;
    meta.is_file().then(|| Body::File(file, meta.len()))
}

/// Calls `body.close` if it has one; errors are logged, never raised to the client.
pub fn close(body: Value) {
    if RArray::from_value(body).is_some() || RString::from_value(body).is_some() {
        return;
    }
    if body.respond_to("close", false).unwrap_or(false) {
        if let Err(e) = body.funcall::<_, _, Value>("close", ()) {
            iodine_engine::error!("(Iodine) body.close raised: {e}");
        }
    }
}

fn inspect(v: Value) -> String {
    v.inspect().chars().take(200).collect()
}
