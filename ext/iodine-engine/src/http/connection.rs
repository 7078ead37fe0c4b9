//! One HTTP/1.1 connection: hyper drives the protocol, this module checks each request,
//! receives its body, hands it to the [`Handler`] and sends the answer back.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use http::{header, Method, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::access_log::Entry;
use super::body::{self, BodyError, Pace};
use super::errors::{error_response, ServerMade};
use super::h2::{self, Sniffed};
use super::handler::{Handler, Reply};
use super::hijack::{Hijack, HijackableIo};
use super::idle::{Busy, Expired, Idle};
use super::request::{version_str, Request};
use super::response::{Body, Response, ResponseBody};
use super::settings::HttpSettings;
use super::takeover::{self, Resumed, Slot, Takeover};
use crate::link::{Protocol, Upgrade};
use crate::server::{accept_loop, Listener, Peer, Shutdown, Stream, Ticket};
use crate::{sse, websocket};

/// What every connection of one listener shares.
pub(super) struct Site {
    pub(super) settings: HttpSettings,
    handler: Arc<dyn Handler>,
    builder: http1::Builder,
    /// HTTP/2 (None when the listener serves HTTP/1.x only).
    pub(super) h2: Option<hyper::server::conn::http2::Builder<h2::Exec>>,
    port: u16,
}

impl Site {
    fn new(settings: HttpSettings, handler: Arc<dyn Handler>, port: u16) -> Arc<Self> {
        Arc::new(Site {
            builder: builder(&settings),
            h2: settings.http2.then(|| h2::builder(&settings)),
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
    let max_clients = settings.max_clients;
    let tls = settings.tls.clone();
    let site = Site::new(settings, handler, listener.port());
    let conn_shutdown = shutdown.clone();
    accept_loop(
        listener,
        shutdown,
        max_clients,
        tls,
        move |stream, peer, ticket| {
            let (site, shutdown) = (site.clone(), conn_shutdown.clone());
            crate::reactor::run_session(stream, move |stream| {
                serve_one(stream, peer, site, shutdown, ticket)
            })
        },
        refuse,
    )
    .await;
}

/// Answers a connection over `max_clients` with a 503 and closes it.
async fn refuse(stream: Stream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 23\r\nconnection: close\r\nretry-after: 1\r\n\r\n503 Service Unavailable";
    stream.answer_and_close(BUSY).await
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
    let ticket = Ticket::uncounted(&shutdown);
    serve_one(stream, peer, site, shutdown, ticket).await
}

fn builder(settings: &HttpSettings) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        // The idle timeout is ours (see idle.rs): hyper's would cost a timer per request.
        .header_read_timeout(None)
        .max_header_size(settings.max_head)
        .max_buf_size(settings.max_head.max(8192) + 8192)
        // Vectored writes: body bytes are never copied into hyper's buffer, which is what
        // lets a file body be sent with sendfile(2) (see sendfile.rs).
        .writev(true)
        .keep_alive(true)
        .half_close(false);
    b
}

async fn serve_one(
    stream: Stream,
    peer: Peer,
    site: Arc<Site>,
    shutdown: Shutdown,
    ticket: Ticket,
) {
    let _open = crate::stats::Open::new(crate::stats::Kind::Http);
    // HTTP/2 or HTTP/1.x? (Boxed: neither future weighs on the other's connections.)
    let (stream, ahead) = match &site.h2 {
        None => (stream, bytes::Bytes::new()),
        Some(_) => {
            match Box::pin(h2::sniff(stream, site.settings.timeout, LINGER, &shutdown)).await {
                Sniffed::Http1(stream, ahead) => (stream, ahead),
                Sniffed::Http2(io) => {
                    return Box::pin(h2::serve(io, peer, site, shutdown, ticket)).await;
                }
                Sniffed::Gone => return,
            }
        }
    };
    let svc_site = site.clone();
    let idle = Arc::new(Idle::new());
    let svc_idle = idle.clone();
    let (mut io, hijack) = HijackableIo::new(stream, idle.clone());
    if !ahead.is_empty() {
        idle.note_read(); // a request head has begun: its deadline runs
        io.unread(ahead);
    }
    let spool = io.spool();
    let slot: Slot = Arc::default();
    let svc_slot = slot.clone();
    // Set at shutdown: the answers still given say `Connection: close`.
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let svc_draining = draining.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let site = svc_site.clone();
        let draining = svc_draining.clone();
        let busy = Busy::new(svc_idle.clone());
        let hijack = hijack.clone();
        let slot = svc_slot.clone();
        let spool = spool.clone();
        async move {
            let started = Instant::now();
            let logged = site.settings.log.then(|| {
                (
                    req.method().clone(),
                    req.uri().path().to_owned(),
                    version_str(req.version()),
                )
            });
            let mut res = respond(req, peer, &site, &hijack, &slot).await;
            count(&res);
            if res.status().as_u16() >= 400 && res.extensions().get::<ServerMade>().is_some() {
                if let Some(page) = site
                    .settings
                    .public
                    .as_ref()
                    .and_then(|p| p.error_page(res.status().as_u16()))
                {
                    res.headers_mut()
                        .insert(header::CONTENT_LENGTH, http::HeaderValue::from(page.len()));
                    *res.body_mut() = ResponseBody::full(page);
                    res.headers_mut().insert(
                        header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                }
            }
            if draining.load(std::sync::atomic::Ordering::Acquire) {
                res.headers_mut()
                    .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            res.body_mut().hold_until_sent(busy);
            res.body_mut().send_files_with(spool.clone());
            // Hijacked and upgraded requests are not logged (the app answered on its own).
            if let (Some((method, path, version)), false) = (logged, hijack.is_taken()) {
                let status = res.status().as_u16();
                res.body_mut().log_when_sent(Entry {
                    peer,
                    method,
                    path,
                    version,
                    status,
                    started,
                });
            }
            Ok::<_, Infallible>(res)
        }
    });
    // One hyper connection per spell of activity: a keep-alive connection quiet for
    // PARK_AFTER lets hyper (and its read and write buffers) go, waits for the client's next
    // bytes holding none, then starts a new one (idle.rs).
    let conn = loop {
        // Boxed: a parked connection's task then holds no room for it.
        let mut conn = Box::new(
            site.builder
                .serve_connection(TokioIo::new(io), service.clone()),
        );
        // Polled in place (hyper boxes the request future itself), so that once it is done
        // the socket can be taken back after an upgrade. A taken socket (hijack or upgrade)
        // ignores hyper's shutdown: it belongs to the app or to the session that follows.
        macro_rules! run {
            () => {
                std::future::poll_fn(|cx| Pin::new(&mut *conn).poll(cx))
            };
        }
        let park = tokio::select! {
            res = run!() => {
                if let Err(e) = res {
                    crate::debug!("connection ended: {e}");
                }
                false
            }
            why = idle.expired(site.settings.timeout, site.settings.head_timeout) => {
                // A slow head or a client that stopped reading is dropped at once; an idle
                // connection is closed the polite way.
                if why == Expired::Idle {
                    Pin::new(&mut *conn).graceful_shutdown();
                    let _ = tokio::time::timeout(site.settings.shutdown_grace, run!()).await;
                }
                why == Expired::Park
            }
            _ = shutdown.triggered() => {
                // A keep-alive client may be sending its next request right now: closing
                // under it would fail that request. So for a moment requests are still
                // answered, with `Connection: close` (the client reconnects, to a process
                // that still listens), and a connection is closed once it was quiet for
                // LINGER.
                draining.store(true, std::sync::atomic::Ordering::Release);
                let quiet = async {
                    while !idle.quiet_for(LINGER) {
                        tokio::time::sleep(LINGER / 4).await;
                    }
                };
                let mut done = false;
                tokio::select! {
                    res = run!() => {
                        done = true;
                        if let Err(e) = res {
                            crate::debug!("connection ended: {e}");
                        }
                    }
                    _ = quiet => {}
                    _ = tokio::time::sleep(site.settings.shutdown_grace) => {}
                }
                if !done {
                    Pin::new(&mut *conn).graceful_shutdown();
                    if tokio::time::timeout(site.settings.shutdown_grace, run!()).await.is_err() {
                        crate::warning!("closing a connection that outlived the shutdown grace period");
                    }
                }
                false
            }
        };
        if !park {
            break conn;
        }
        idle.park();
        // In a block of its own: what is left of `parts` (hyper's read buffer, the service)
        // goes before the wait, not after it.
        io = {
            let parts = conn.into_parts();
            let mut io = parts.io.into_inner();
            // Copied out (or dropped when empty): even an empty slice of hyper's read buffer
            // would keep all of it alive.
            io.unread(match parts.read_buf.is_empty() {
                true => bytes::Bytes::new(),
                false => bytes::Bytes::copy_from_slice(&parts.read_buf),
            });
            io
        };
        // Parked: the next bytes start a new hyper connection; the keep-alive timeout or a
        // shutdown close it.
        let woke = tokio::select! {
            ready = io.readable() => ready.is_ok(),
            _ = idle.expired(site.settings.timeout, site.settings.head_timeout) => false,
            _ = shutdown.triggered() => false,
        };
        if !woke {
            return;
        }
    };
    let Some(takeover) = slot.lock().take() else {
        return;
    };
    // The session keeps the connection's ticket: it still counts toward `max_clients` and
    // as live for a graceful shutdown.
    let parts = conn.into_parts();
    let Some(stream) = parts.io.into_inner().into_stream() else {
        return; // dropping the takeover tells the app the connection closed
    };
    // What hyper read ahead is copied out: the slice would keep hyper's whole read buffer
    // alive for the life of the connection.
    let ahead = match parts.read_buf.is_empty() {
        true => bytes::Bytes::new(),
        false => bytes::Bytes::copy_from_slice(&parts.read_buf),
    };
    let settings = site.settings.websocket;
    // A socket taken over with `upgrade.tcp` keeps the keep-alive timeout as its idle timeout.
    let raw = crate::raw::RawSettings {
        timeout: site.settings.timeout,
        shutdown_grace: site.settings.shutdown_grace,
        max_clients: usize::MAX,
    };
    // The session runs on the reactor when there is one: its callbacks then run on the
    // thread that reads its messages.
    crate::reactor::spawn_session(stream, move |stream| {
        let io = Resumed::new(stream, ahead);
        takeover::run(io, takeover, settings, raw, shutdown, ticket)
    });
}

/// At shutdown, how long a keep-alive connection must be quiet before it is closed (until
/// then each request still arriving is answered, with `Connection: close`).
const LINGER: std::time::Duration = std::time::Duration::from_millis(250);

/// Checks, receives and dispatches one HTTP/1.x request; takes over the connection when the
/// app accepted an upgrade.
async fn respond(
    req: hyper::Request<Incoming>,
    peer: Peer,
    site: &Site,
    hijack: &Hijack,
    slot: &Slot,
) -> hyper::Response<ResponseBody> {
    let head_request = req.method() == Method::HEAD;
    // Settled now, while the headers are at hand: the app may accept an upgrade.
    let websocket = (req.headers().contains_key(header::UPGRADE)
        && websocket::is_upgrade_request(req.headers()))
    .then(|| websocket::accept_key(req.headers()));
    let answer = dispatch(req, peer, site, Some(hijack)).await;
    if hijack.is_taken() {
        // Whatever the app answered is discarded; closing ends hyper's part.
        return error_response(StatusCode::OK, true);
    }
    match answer {
        Answer::Server(res) => res,
        Answer::App(mut r) => {
            if matches!(r.body, Body::Upgrade(_)) {
                if let Body::Upgrade(upgrade) = std::mem::take(&mut r.body) {
                    return take_over(r, upgrade, websocket, hijack, slot);
                }
            }
            r.into_hyper(head_request)
        }
    }
}

/// What a request got: the server's own answer, or the app's.
pub(super) enum Answer {
    /// Made by the server (an error, a static file).
    Server(hyper::Response<ResponseBody>),
    /// The app's answer (maybe an upgrade it accepted).
    App(Response),
}

/// The path every request takes, HTTP/1.x or HTTP/2: the checks, the static files, the
/// body within its limits and pace, then the handler.
pub(super) async fn dispatch(
    req: hyper::Request<Incoming>,
    peer: Peer,
    site: &Site,
    hijack: Option<&Hijack>,
) -> Answer {
    let (parts, incoming) = req.into_parts();
    let head_request = parts.method == Method::HEAD;
    if let Err(rejected) = check(&parts, &site.settings) {
        return Answer::Server(rejected);
    }
    if let Some(page) = &site.settings.metrics {
        let asked = parts.uri.path() == &**page;
        if asked && (parts.method == Method::GET || head_request) {
            return Answer::Server(metrics(head_request));
        }
    }
    // Static files first, on this IO thread (requests that ask for an upgrade never).
    if let Some(public) = &site.settings.public {
        if !parts.headers.contains_key(header::UPGRADE) {
            if let Some(file) = public.serve(&parts.method, parts.uri.path(), &parts.headers) {
                return Answer::Server(file.into_hyper(head_request));
            }
        }
    }
    let pace = Pace {
        base: site.settings.body_timeout,
        min_rate: site.settings.min_upload_rate,
    };
    let status = match body::receive(incoming, site.settings.max_body, pace).await {
        Ok(body) => {
            let request = Request {
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                headers: parts.headers,
                body,
                peer,
                local_port: site.port,
                tls: site.settings.tls.is_some(),
                hijack: hijack.cloned(),
            };
            let (reply, answer) = Reply::new();
            site.handler.call(request, reply);
            match answer.await {
                Ok(r) => return Answer::App(r),
                // The handler dropped the reply: it failed or is shutting down.
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
            }
        }
        Err(BodyError::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
        Err(BodyError::Timeout) => StatusCode::REQUEST_TIMEOUT,
        Err(BodyError::Client(e)) => {
            crate::debug!("request body failed: {e}");
            StatusCode::BAD_REQUEST
        }
        Err(BodyError::Server(e)) => {
            crate::error!("couldn't store a request body: {e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    Answer::Server(error_response(status, true))
}

/// Starts an upgrade the app accepted: parks the takeover for the connection to run once
/// hyper lets go of the socket. A WebSocket upgrade with a bad handshake gets a 400 (and the
/// app's `on_close`, when the dropped upgrade is dropped).
fn take_over(
    r: Response,
    upgrade: Upgrade,
    websocket: Option<Result<String, websocket::HandshakeError>>,
    hijack: &Hijack,
    slot: &Slot,
) -> hyper::Response<ResponseBody> {
    let head = match upgrade.link().protocol() {
        Protocol::WebSocket => match websocket {
            Some(Ok(accept)) => websocket::response_head(&accept, &r.headers),
            Some(Err(why)) => {
                crate::debug!("refused a WebSocket handshake: {why:?}");
                return error_response(StatusCode::BAD_REQUEST, true);
            }
            None => {
                crate::debug!("a WebSocket handler for a request that is no WebSocket upgrade");
                return error_response(StatusCode::BAD_REQUEST, true);
            }
        },
        Protocol::Sse => sse::response_head(&r.headers),
        Protocol::Raw => crate::raw::response_head(r.status, &r.headers),
    };
    *slot.lock() = Some(Takeover { head, upgrade });
    hijack.mark_taken();
    error_response(StatusCode::OK, true)
}

/// The metrics page (Prometheus text), not counted as a request.
fn metrics(head_request: bool) -> hyper::Response<ResponseBody> {
    let text = crate::stats::page();
    let mut headers = http::HeaderMap::with_capacity(3);
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, http::HeaderValue::from(text.len()));
    headers.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    let body = Body::Full(bytes::Bytes::from(text));
    let mut res = super::response::server_made(200, headers, body, head_request);
    res.extensions_mut().insert(crate::stats::NotCounted);
    res
}

/// Counts `res` among the requests answered, unless it is the metrics page.
pub(super) fn count(res: &hyper::Response<ResponseBody>) {
    if res.extensions().get::<crate::stats::NotCounted>().is_none() {
        crate::stats::answered(res.status().as_u16());
    }
}

/// Rejects requests no app should see: RFC 9112 §3.2 Host rules (required from HTTP/1.1
/// clients, never repeated), h2c, header lines over `max_line` (431) and request targets
/// over it (414), declared oversize bodies (413). Content-Length + Transfer-Encoding never gets
/// here ambiguous: hyper frames such a request by Transfer-Encoding and drops the length
/// (RFC 9112 §6.1).
#[allow(clippy::result_large_err)]
fn check(
    parts: &http::request::Parts,
    settings: &HttpSettings,
) -> Result<(), hyper::Response<ResponseBody>> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host_required = parts.version != http::Version::HTTP_10;
    if (hosts.next().is_none() && host_required) || hosts.next().is_some() {
        return Err(error_response(StatusCode::BAD_REQUEST, true));
    }
    if let Some(up) = parts.headers.get(header::UPGRADE) {
        if up.as_bytes().len() >= 2 && up.as_bytes()[..2].eq_ignore_ascii_case(b"h2") {
            return Err(error_response(StatusCode::BAD_REQUEST, true));
        }
    }
    if parts
        .headers
        .iter()
        .any(|(name, value)| name.as_str().len() + 2 + value.len() > settings.max_line)
    {
        return Err(error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            true,
        ));
    }
    let target = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > settings.max_line {
        return Err(error_response(StatusCode::URI_TOO_LONG, true));
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > settings.max_body) {
        return Err(error_response(StatusCode::PAYLOAD_TOO_LARGE, true));
    }
    Ok(())
}
