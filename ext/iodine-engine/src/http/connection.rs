//! One HTTP/1.1 connection: hyper drives the protocol, this module checks each request,
//! receives its body, hands it to the [`Handler`] and sends the answer back.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{header, Method, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::access_log::{self, Entry};
use super::body::{self, BodyError};
use super::errors::error_response;
use super::handler::{Handler, Reply};
use super::hijack::{Hijack, HijackableIo};
use super::idle::{Busy, Idle};
use super::request::{version_str, Request};
use super::response::ResponseBody;
use super::settings::HttpSettings;
use crate::server::{accept_loop, Listener, Peer, Shutdown, Stream};

/// What every connection of one listener shares.
struct Site {
    settings: HttpSettings,
    handler: Arc<dyn Handler>,
    builder: http1::Builder,
    port: u16,
}

impl Site {
    fn new(settings: HttpSettings, handler: Arc<dyn Handler>, port: u16) -> Arc<Self> {
        Arc::new(Site {
            builder: builder(&settings),
            port,
            settings,
            handler,
        })
    }
}

/// Serves HTTP on `listener` until `shutdown` fires; returns when the listener is closed.
pub async fn serve(
    listener: Listener,
    settings: HttpSettings,
    handler: Arc<dyn Handler>,
    shutdown: Shutdown,
) {
    let site = Site::new(settings, handler, listener.port());
    let conn_shutdown = shutdown.clone();
    accept_loop(listener, shutdown, move |stream, peer| {
        serve_one(stream, peer, site.clone(), conn_shutdown.clone())
    })
    .await;
}

/// Serves one already-accepted connection (for tests and for attaching inherited sockets).
pub async fn serve_connection(
    stream: Stream,
    peer: Peer,
    port: u16,
    settings: HttpSettings,
    handler: Arc<dyn Handler>,
    shutdown: Shutdown,
) {
    let site = Site::new(settings, handler, port);
    serve_one(stream, peer, site, shutdown).await
}

fn builder(settings: &HttpSettings) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        // The idle timeout is ours (see idle.rs): hyper's would cost a timer per request.
        .header_read_timeout(None)
        .max_header_size(settings.max_head)
        .max_buf_size(settings.max_head.max(8192) + 8192)
        // Small responses go out in one write: headers and body copied into one buffer.
        .writev(false)
        .keep_alive(true)
        .half_close(false);
    b
}

async fn serve_one(stream: Stream, peer: Peer, site: Arc<Site>, shutdown: Shutdown) {
    let svc_site = site.clone();
    let idle = Arc::new(Idle::new());
    let svc_idle = idle.clone();
    let (io, hijack) = HijackableIo::new(stream);
    let service = hyper::service::service_fn(move |req| {
        let site = svc_site.clone();
        let idle = svc_idle.clone();
        let hijack = hijack.clone();
        async move {
            let busy = Busy::new(idle);
            let mut res = respond(req, peer, &site, hijack).await;
            res.body_mut().hold_until_sent(busy);
            Ok::<_, Infallible>(res)
        }
    });
    let conn = site.builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                crate::debug!("connection ended: {e}");
            }
        }
        _ = idle.expired(site.settings.timeout) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(site.settings.shutdown_grace, conn).await;
        }
        _ = shutdown.triggered() => {
            // Idle connections close now; a busy one finishes its response first.
            conn.as_mut().graceful_shutdown();
            if tokio::time::timeout(site.settings.shutdown_grace, conn).await.is_err() {
                crate::warning!("closing a connection that outlived the shutdown grace period");
            }
        }
    }
}

/// Checks, receives, dispatches and logs one request.
async fn respond(
    req: hyper::Request<Incoming>,
    peer: Peer,
    site: &Site,
    hijack: Hijack,
) -> hyper::Response<ResponseBody> {
    let started = Instant::now();
    let (parts, incoming) = req.into_parts();
    let head_request = parts.method == Method::HEAD;
    let response = match check(&parts, site.settings.max_body) {
        Err(rejected) => rejected,
        Ok(()) => {
            match body::receive(incoming, site.settings.max_body, site.settings.timeout).await {
                Err(BodyError::TooLarge) => error_response(StatusCode::PAYLOAD_TOO_LARGE, true),
                Err(BodyError::Timeout) => error_response(StatusCode::REQUEST_TIMEOUT, true),
                Err(BodyError::Io(e)) => {
                    crate::debug!("request body failed: {e}");
                    error_response(StatusCode::BAD_REQUEST, true)
                }
                Ok(body) => {
                    let request = Request {
                        method: parts.method.clone(),
                        uri: parts.uri.clone(),
                        version: parts.version,
                        headers: parts.headers,
                        body,
                        peer,
                        local_port: site.port,
                        tls: site.settings.tls,
                        hijack: Some(hijack.clone()),
                    };
                    let (reply, answer) = Reply::new();
                    site.handler.call(request, reply);
                    let answer = answer.await;
                    if hijack.is_taken() {
                        // Whatever the app answered is discarded; closing ends hyper's part.
                        return error_response(StatusCode::OK, true);
                    }
                    match answer {
                        Ok(r) => r.into_hyper(head_request),
                        // The handler dropped the reply: it failed or is shutting down.
                        Err(_) => error_response(StatusCode::INTERNAL_SERVER_ERROR, true),
                    }
                }
            }
        }
    };
    if site.settings.log {
        access_log::write(&Entry {
            peer,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            version: version_str(parts.version),
            status: response.status().as_u16(),
            length: response.body().exact_len(),
            started,
        });
    }
    response
}

/// Rejects requests no app should see (RFC 9112 §3.2 Host rules, h2c, declared oversize
/// bodies). Content-Length + Transfer-Encoding never gets here ambiguous: hyper frames such a
/// request by Transfer-Encoding and drops the length (RFC 9112 §6.1).
#[allow(clippy::result_large_err)]
fn check(parts: &http::request::Parts, max_body: u64) -> Result<(), hyper::Response<ResponseBody>> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    if hosts.next().is_none() || hosts.next().is_some() {
        return Err(error_response(StatusCode::BAD_REQUEST, true));
    }
    if let Some(up) = parts.headers.get(header::UPGRADE) {
        if up.as_bytes().len() >= 2 && up.as_bytes()[..2].eq_ignore_ascii_case(b"h2") {
            return Err(error_response(StatusCode::BAD_REQUEST, true));
        }
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(error_response(StatusCode::PAYLOAD_TOO_LARGE, true));
    }
    Ok(())
}
