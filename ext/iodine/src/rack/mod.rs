//! Rack: requests from the engine become `env` Hashes, the app runs on a Ruby worker thread,
//! and its answer goes back as an owned response.

mod env;
mod hijack;
mod input;
mod response;
mod stream;

use std::sync::Arc;

use iodine_engine::http::{Handler, Reply, Request, Response};
use magnus::value::{LazyId, Opaque};
use magnus::{prelude::*, Error, RHash, RModule, Ruby, Value};

use crate::bridge::{self, Task};
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
        bridge::push(Task::Rack(RackJob {
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

impl RackJob {
    /// Runs the app and replies. Only a non-exception jump (`Thread#kill`, `throw`) is
    /// returned as an error; exceptions become a logged 500.
    pub fn run(mut self, ruby: &Ruby, replies: &mut Replies) -> Result<(), Error> {
        if self.reply.is_closed() {
            return Ok(()); // the client left while the request was queued
        }
        let head = self.request.method == http::Method::HEAD;
        let template = ruby.get_inner(self.template);
        let hijack = self.request.hijack.take();
        let result = env::build(ruby, template, &mut self.request).and_then(|env| {
            hijack::during(hijack, env, || {
                ruby.get_inner(self.app)
                    .funcall::<_, _, Value>(LazyId::get_inner_with(&CALL, ruby), (env,))
            })
        });
        let value = match result {
            Ok(v) => v,
            Err(e) => {
                replies.push(self.reply, server_error());
                return errors::contain(ruby, e);
            }
        };
        match response::convert(ruby, value, head) {
            Err(why) => {
                iodine_engine::error!("(Iodine) invalid Rack response: {why}");
                replies.push(self.reply, server_error());
                Ok(())
            }
            Ok((res, response::Rest::Done)) => {
                replies.push(self.reply, res);
                Ok(())
            }
            Ok((res, response::Rest::Call(body, sender))) => {
                replies.flush();
                if self.reply.send(res) {
                    let stream = ruby.obj_wrap(stream::Stream::new(sender));
                    if let Err(e) = body.funcall::<_, _, Value>("call", (stream,)) {
                        stream.abort("the streaming body raised");
                        return errors::contain(ruby, e);
                    }
                }
                Ok(())
            }
            Ok((res, response::Rest::Stream(body, sender))) => {
                // Earlier answers go out first; this one must leave before its body streams.
                replies.flush();
                if self.reply.send(res) {
                    if let Err(e) = response::stream(ruby, body, sender) {
                        return errors::contain(ruby, e);
                    }
                } else {
                    response::close(body);
                }
                Ok(())
            }
        }
    }
}

/// Answers collected while a worker holds the GVL and sent together: one wake-up of the IO
/// threads per batch instead of one per request.
///
/// Only a lone worker batches: with several, Ruby may hand the GVL to another thread in the
/// middle of a task (after its 100 ms time slice), and held-back answers would wait with it.
pub struct Replies {
    held: Vec<(Reply, Response)>,
    batch: usize,
}

impl Replies {
    /// Most answers held back before they are sent.
    const BATCH: usize = 16;

    /// A batch for a pool of `workers` Ruby threads.
    pub fn new(workers: usize) -> Self {
        let batch = if workers <= 1 { Self::BATCH } else { 1 };
        Replies {
            held: Vec::with_capacity(batch),
            batch,
        }
    }

    /// Queues an answer; sends the batch when it is full.
    pub fn push(&mut self, reply: Reply, response: Response) {
        self.held.push((reply, response));
        if self.held.len() >= self.batch {
            self.flush();
        }
    }

    /// Sends every queued answer (called whenever the task queue runs empty).
    pub fn flush(&mut self) {
        for (reply, response) in self.held.drain(..) {
            reply.send(response);
        }
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.flush();
    }
}

fn server_error() -> Response {
    let headers = vec![(
        bytes::Bytes::from_static(b"content-type"),
        bytes::Bytes::from_static(b"text/plain"),
    )];
    Response::new(
        500,
        headers,
        bytes::Bytes::from_static(b"500 Internal Server Error"),
    )
}

/// Defines the Rack helpers under `Iodine::Base` and interns the env keys.
pub fn init(ruby: &Ruby, base: RModule) -> Result<(), Error> {
    stream::init(ruby, base)?;
    let hijacker = hijack::init(ruby, base)?;
    env::init(ruby, hijacker);
    input::init(ruby, base)
}
