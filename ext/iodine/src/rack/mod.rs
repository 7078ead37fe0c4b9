//! Rack: requests from the engine become `env` Hashes, the app runs on a Ruby worker thread,
//! and its answer goes back as an owned response.

mod env;
mod hijack;
mod input;
mod replies;
mod response;
mod stream;
mod upgrade;

use std::sync::Arc;

use bytes::Bytes;
use iodine_engine::http::{Handler, Reply, Request, Response};
use magnus::value::{LazyId, Opaque};
use magnus::{prelude::*, Error, RHash, RModule, Ruby, Value};

pub use replies::{batch_replies, flusher};

use crate::bridge::{self, Job};
use crate::errors;

/// `call`, interned once.
static CALL: LazyId = LazyId::new("call");

/// A Rack app bound to one listener: what the engine calls for each request.
pub struct RackApp {
    app: Opaque<Value>,
    template: Opaque<RHash>,
}

impl RackApp {
    /// Keeps `app` alive for the life of the process and prepares its env template.
    pub fn new(ruby: &Ruby, app: Value, tls: bool, port: u16) -> Result<Arc<Self>, Error> {
        let template = env::template(ruby, tls, port)?;
        template.freeze();
        // Listeners live as long as the process: registering them with the GC is the
        // simplest way to keep both alive while Rust holds them as Opaque values.
        ruby.gc_register_mark_object(app);
        ruby.gc_register_mark_object(template);
        Ok(Arc::new(RackApp {
            app: app.into(),
            template: template.into(),
        }))
    }
}

impl Handler for RackApp {
    fn call(self: &RackApp, request: Request, reply: Reply) {
        bridge::push(Box::new(RackJob {
            app: self.app,
            template: self.template,
            request,
            reply,
        }));
    }
}

/// One request waiting for a Ruby worker.
pub struct RackJob {
    app: Opaque<Value>,
    template: Opaque<RHash>,
    request: Request,
    reply: Reply,
}

impl Job for RackJob {
    /// Runs the app and replies. Only a non-exception jump (`Thread#kill`, `throw`) is
    /// returned as an error; exceptions become a logged 500. `rack.input` is released once the
    /// response is finished (its temp file with it), on every path.
    fn run(mut self: Box<Self>, ruby: &Ruby) -> Result<(), Error> {
        if self.reply.is_closed() {
            return Ok(()); // the client left while the request was queued
        }
        let template = ruby.get_inner(self.template);
        let hijack = self.request.hijack.take();
        let asked = upgrade::requested(&self.request.headers);
        let built = env::build(ruby, template, &mut self.request).and_then(|(env, input)| {
            if let Some(protocol) = asked {
                upgrade::offer(ruby, env, protocol)?;
            }
            Ok((env, input))
        });
        let (env, input) = match built {
            Ok(built) => built,
            Err(e) => {
                replies::reply(self.reply, iodine_engine::http::server_error());
                return errors::contain(ruby, e);
            }
        };
        let taken = hijack.clone();
        let result = hijack::during(hijack, env, || {
            ruby.get_inner(self.app)
                .funcall::<_, _, Value>(LazyId::get_inner_with(&CALL, ruby), (env,))
        });
        let head = self.request.method == http::Method::HEAD;
        let outcome = if taken.is_some_and(|h| h.is_taken()) {
            // A full hijack: the socket is the app's, and its answer (Action Cable's
            // `[-1, {}, []]`) is ignored, as Rack says; only its body is closed.
            replies::reply(self.reply, Response::new(200, Vec::new(), Bytes::new()));
            match result {
                Ok(answer) => response::close_answer(answer),
                Err(e) => errors::contain(ruby, e),
            }
        } else {
            match &result {
                Ok(value) => match upgrade::accept(ruby, *value, env, asked) {
                    Ok(Some(res)) => {
                        replies::reply(self.reply, res);
                        Ok(())
                    }
                    Ok(None) => respond(ruby, self.reply, result, head, &self.request.headers),
                    Err(response::Invalid::Response(why)) => {
                        iodine_engine::error!("(Iodine) invalid Rack response: {why}");
                        replies::reply(self.reply, iodine_engine::http::server_error());
                        Ok(())
                    }
                    Err(response::Invalid::Ruby(e)) => {
                        replies::reply(self.reply, iodine_engine::http::server_error());
                        errors::contain(ruby, e)
                    }
                },
                _ => respond(ruby, self.reply, result, head, &self.request.headers),
            }
        };
        if let Some(input) = input {
            input.release();
        }
        outcome
    }
}

/// Sends the app's answer (`result` of `app.call`), streaming its body if it has to.
fn respond(
    ruby: &Ruby,
    reply: Reply,
    result: Result<Value, Error>,
    head: bool,
    request: &http::HeaderMap,
) -> Result<(), Error> {
    let value = match result {
        Ok(v) => v,
        Err(e) => {
            replies::reply(reply, iodine_engine::http::server_error());
            return errors::contain(ruby, e);
        }
    };
    let (res, rest) = match response::convert(ruby, value, head) {
        Ok(converted) => converted,
        Err(response::Invalid::Response(why)) => {
            iodine_engine::error!("(Iodine) invalid Rack response: {why}");
            replies::reply(reply, iodine_engine::http::server_error());
            return Ok(());
        }
        Err(response::Invalid::Ruby(e)) => {
            replies::reply(reply, iodine_engine::http::server_error());
            return errors::contain(ruby, e);
        }
    };
    if let Some(path) = sendfile_path(&res.headers) {
        // `X-Sendfile`: the file is served from Rust with every static rule; the app's body
        // is not sent (closed unconverted if it was to stream).
        let cache = iodine_engine::public::CACHE_CONTROL;
        let status = res.status;
        let file = iodine_engine::public::send_file(&path, status, res.headers, request, cache);
        replies::reply(reply, file);
        return match rest {
            response::Rest::Stream(body, _) | response::Rest::Call(body, _) => {
                response::close(body).or_else(|e| errors::contain(ruby, e))
            }
            response::Rest::Done => Ok(()),
        };
    }
    let (body, sender, callable) = match rest {
        response::Rest::Done => {
            replies::reply(reply, res);
            return Ok(());
        }
        response::Rest::Stream(body, sender) => (body, sender, false),
        response::Rest::Call(body, sender) => (body, sender, true),
    };
    // Earlier answers go out first; this one must leave before its body streams.
    replies::flush_replies();
    if !reply.send(res) {
        drop(sender);
        return response::close(body); // the client left: nothing to stream
    }
    if !callable {
        return response::stream(ruby, body, sender).or_else(|e| errors::contain(ruby, e));
    }
    let stream = ruby.obj_wrap(stream::Stream::new(sender));
    match response::call(ruby, body, stream.as_value()) {
        Ok(()) => Ok(()),
        // A write raised because the client left, and the app let it through.
        Err(e) if stream.client_left() && e.is_kind_of(ruby.exception_io_error()) => {
            iodine_engine::debug!("the client left while its response streamed");
            Ok(())
        }
        Err(e) => {
            stream.abort("the streaming body raised");
            errors::contain(ruby, e)
        }
    }
}

/// The path of an `X-Sendfile` answer (the header's name in any case).
fn sendfile_path(headers: &[(bytes::Bytes, bytes::Bytes)]) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(b"x-sendfile"))
        .map(|(_, value)| std::path::Path::new(std::ffi::OsStr::from_bytes(value)).to_path_buf())
}

/// Defines the Rack helpers under `Iodine::Base` and interns the env keys.
pub fn init(ruby: &Ruby, base: RModule) -> Result<(), Error> {
    bridge::set_hooks(bridge::Hooks {
        // Answers held back for a batch must not wait behind a job that may block.
        before_job: replies::flush_stale_replies,
        queue_empty: replies::flush_replies,
    });
    stream::init(ruby, base)?;
    response::init(ruby, base)?;
    let hijacker = hijack::init(ruby, base)?;
    env::init(ruby, hijacker);
    upgrade::init(ruby);
    input::init(ruby, base)
}
