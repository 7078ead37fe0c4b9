//! HTTP/2 (RFC 9113) on the same listeners as HTTP/1.1: h2 by ALPN on TLS, h2c with prior
//! knowledge on cleartext (told apart by the client's connection preface; `Upgrade: h2c` is
//! refused, as RFC 9113 dropped it).
//!
//! hyper's HTTP/2 server (the `h2` crate) frames, does flow control and guards against the
//! known floods (rapid reset, CONTINUATION, SETTINGS/PING); each request goes through the
//! same checks, static files and handler as an HTTP/1.1 one ([`dispatch`]). What HTTP/1.1
//! does by leaving HTTP is done inside a stream here:
//! - **SSE**: the event stream is the response body, fed through an in-memory pipe by the
//!   same SSE session that writes to a socket over HTTP/1.1;
//! - **WebSocket** (RFC 8441): an extended CONNECT with `:protocol = websocket` is offered to
//!   the app as a WebSocket upgrade; once the app accepts, the stream (after a 200) carries
//!   the same WebSocket session as a socket would.
//!
//! There is no `rack.hijack` on HTTP/2: the socket carries every stream.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::access_log::Entry;
use super::connection::{dispatch, Answer, Site};
use super::errors::error_response;
use super::idle::{Busy, Expired, Idle};
use super::request::version_str;
use super::response::{Body, Response, ResponseBody};
use super::settings::HttpSettings;
use super::takeover::Resumed;
use crate::link::{Protocol, Upgrade};
use crate::server::{Peer, Shutdown, Stream, Ticket};
use crate::websocket::{self, Role};

/// What every HTTP/2 client sends first (RFC 9113 §3.4).
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How much of an SSE stream may wait in memory for the client (then the session waits).
const SSE_PIPE: usize = 64 * 1024;

/// The HTTP/2 side of a listener's settings.
pub(super) fn builder(settings: &HttpSettings) -> http2::Builder<Exec> {
    let mut b = http2::Builder::new(Exec);
    b.timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_streams)
        // The head limit of HTTP/1.1, as the decoded header list (RFC 9113 §6.5.2): a larger
        // one is refused (431 or a reset), and CONTINUATION frames can't grow past it.
        .max_header_list_size(settings.max_head.min(u32::MAX as usize) as u32)
        // RFC 8441: WebSocket over a stream.
        .enable_connect_protocol()
        // A stream's unsent data held for a client that doesn't read (per stream).
        .max_send_buf_size(256 * 1024)
        // Rapid reset (CVE-2023-44487): streams a client opens and resets before the server
        // took them; past this many at once the connection ends with GOAWAY.
        .max_pending_accept_reset_streams(Some(32))
        // Streams the server had to reset for a client's mistakes, before it gives up on it.
        .max_local_error_reset_streams(Some(256));
    b
}

/// Runs hyper's per-stream tasks where the connection runs (on the reactor, its wakes
/// deferred like a session's).
#[derive(Clone, Copy, Debug)]
pub(super) struct Exec;

impl<F> hyper::rt::Executor<F> for Exec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        crate::reactor::spawn_here(fut);
    }
}

/// A new connection, once it is known which HTTP it speaks.
pub(super) enum Sniffed {
    /// HTTP/2: the connection, with what was read of it.
    Http2(Resumed),
    /// HTTP/1.x: the connection and what was read of it (to be read again first).
    Http1(Stream, Bytes),
    /// Closed, failed, or silent for the keep-alive timeout before a request began.
    Gone,
}

/// Tells HTTP/2 from HTTP/1.x: by ALPN under TLS, else by the preface. On cleartext the
/// first bytes are read here (the read hyper would have made: no extra system call), and
/// only a connection whose bytes so far could be the preface is read further. A shutdown
/// leaves the client `linger` more to send its first request (it was accepted: it gets an
/// answer, as keep-alive connections do while the server drains).
pub(super) async fn sniff(
    mut stream: Stream,
    wait: Duration,
    linger: Duration,
    shutdown: &Shutdown,
) -> Sniffed {
    if stream.is_tls() {
        return match stream.alpn_protocol() {
            Some(b"h2") => Sniffed::Http2(Resumed::new(stream, Bytes::new())),
            _ => Sniffed::Http1(stream, Bytes::new()),
        };
    }
    let mut buf = BytesMut::with_capacity(4096);
    let mut deadline = tokio::time::Instant::now() + wait;
    let mut stopping = false;
    loop {
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => read,
            _ = shutdown.triggered(), if !stopping => {
                stopping = true;
                deadline = deadline.min(tokio::time::Instant::now() + linger);
                continue;
            }
        };
        match read {
            Ok(Ok(0)) if buf.is_empty() => return Sniffed::Gone,
            Ok(Ok(0)) => return Sniffed::Http1(stream, buf.freeze()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                crate::debug!("connection ended before its first request: {e}");
                return Sniffed::Gone;
            }
            Err(_) => return Sniffed::Gone,
        }
        let seen = buf.len().min(PREFACE.len());
        if buf[..seen] != PREFACE[..seen] {
            return Sniffed::Http1(stream, buf.freeze());
        }
        if seen == PREFACE.len() {
            return Sniffed::Http2(Resumed::new(stream, buf.freeze()));
        }
    }
}

/// Serves one HTTP/2 connection until it ends, the keep-alive timeout passes with no stream
/// open, or the server stops (GOAWAY, then the open streams get the shutdown grace).
pub(super) async fn serve(
    io: Resumed,
    peer: Peer,
    site: Arc<Site>,
    shutdown: Shutdown,
    _ticket: Ticket,
) {
    let idle = Arc::new(Idle::new());
    let svc_idle = idle.clone();
    let svc_site = site.clone();
    let svc_shutdown = shutdown.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let site = svc_site.clone();
        let busy = Busy::new(svc_idle.clone());
        let shutdown = svc_shutdown.clone();
        async move { Ok::<_, Infallible>(respond(req, peer, site, busy, shutdown).await) }
    });
    let Some(builder) = &site.h2 else {
        return; // sniffed only where HTTP/2 is served
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    crate::debug!("HTTP/2 connection ended: {e}");
                }
                return;
            }
            why = idle.expired(site.settings.timeout, site.settings.head_timeout) => match why {
                // Nothing to let go of: hyper's HTTP/2 state is the connection.
                Expired::Park => idle.park(),
                Expired::Idle => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(site.settings.shutdown_grace, conn.as_mut()).await;
                    return;
                }
                Expired::SlowHead | Expired::StalledReader => return,
            },
            _ = shutdown.triggered() => {
                // GOAWAY: the client opens no new stream here; the open ones may finish.
                conn.as_mut().graceful_shutdown();
                if tokio::time::timeout(site.settings.shutdown_grace, conn.as_mut()).await.is_err() {
                    crate::warning!("closing an HTTP/2 connection that outlived the shutdown grace period");
                }
                return;
            }
        }
    }
}

/// Answers one stream: the same path as an HTTP/1.1 request, then the stream's own way of
/// taking an upgrade.
async fn respond(
    mut req: hyper::Request<Incoming>,
    peer: Peer,
    site: Arc<Site>,
    busy: Busy,
    shutdown: Shutdown,
) -> hyper::Response<ResponseBody> {
    let started = Instant::now();
    let logged = site
        .settings
        .log
        .then(|| (req.method().clone(), req.uri().path().to_owned()));
    // RFC 8441: a WebSocket is an extended CONNECT. The app sees what it sees over
    // HTTP/1.1: a GET asking to upgrade to websocket.
    let tunnel = match req.extensions().get::<hyper::ext::Protocol>() {
        Some(p) if req.method() == Method::CONNECT => {
            if !p.as_str().eq_ignore_ascii_case("websocket") {
                return error_response(StatusCode::NOT_IMPLEMENTED, false);
            }
            let upgrade = hyper::upgrade::on(&mut req);
            *req.method_mut() = Method::GET;
            req.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            Some(upgrade)
        }
        _ => None,
    };
    // `:authority` stands for Host (RFC 9113 §8.3.1); the app reads it as HTTP_HOST.
    if !req.headers().contains_key(header::HOST) {
        if let Some(host) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(header::HOST, host);
        }
    }
    let head_request = req.method() == Method::HEAD;
    let mut res = match dispatch(req, peer, &site, None).await {
        Answer::Server(mut res) => {
            res.body_mut().hold_until_sent(busy); // a static file keeps the connection busy
            res
        }
        Answer::App(mut r) => match std::mem::take(&mut r.body) {
            Body::Upgrade(upgrade) => take_over(r, upgrade, tunnel, &site, busy, shutdown),
            body => {
                r.body = body;
                let mut res = r.into_hyper(head_request);
                res.body_mut().hold_until_sent(busy);
                res
            }
        },
    };
    super::connection::count(&res);
    if let Some((method, path)) = logged {
        let status = res.status().as_u16();
        res.body_mut().log_when_sent(Entry {
            peer,
            method,
            path,
            version: version_str(http::Version::HTTP_2),
            status,
            started,
        });
    }
    res
}

/// Starts the protocol the app accepted, inside this stream: a WebSocket on an extended
/// CONNECT, an event stream as the response body. Anything else (a raw socket) is not
/// possible on a stream: 400, and the app's `on_close`.
fn take_over(
    r: Response,
    upgrade: Upgrade,
    tunnel: Option<hyper::upgrade::OnUpgrade>,
    site: &Site,
    busy: Busy,
    shutdown: Shutdown,
) -> hyper::Response<ResponseBody> {
    match (upgrade.link().protocol(), tunnel) {
        (Protocol::WebSocket, Some(tunnel)) => {
            let mut res = head(r.headers, &["upgrade", "sec-websocket-accept"], &[]);
            if r.status != 101 && r.status != 200 {
                crate::debug!("a WebSocket accepted with status {}: sent 200", r.status);
            }
            *res.status_mut() = StatusCode::OK;
            let settings = site.settings.websocket;
            crate::reactor::spawn_here(async move {
                // The response goes out first; then the stream is the WebSocket's.
                let io = match tunnel.await {
                    Ok(io) => io,
                    Err(e) => {
                        crate::debug!("an HTTP/2 WebSocket stream ended before it opened: {e}");
                        return; // dropping the upgrade calls on_close
                    }
                };
                let (link, events) = upgrade.start();
                let ws = websocket::open(Tunnel(TokioIo::new(io)), Role::Server, &settings);
                let ticket = Ticket::uncounted(&shutdown);
                websocket::session(ws, link, events, settings, shutdown, ticket).await;
                drop(busy); // the connection was busy for as long as the WebSocket lived
            });
            res
        }
        (Protocol::Sse, _) => {
            let mut res = head(r.headers, &[], crate::sse::RESPONSE_HEADERS);
            let (ours, theirs) = tokio::io::duplex(SSE_PIPE);
            *res.body_mut() = ResponseBody::pipe(theirs);
            res.body_mut().hold_until_sent(busy);
            let (link, events) = upgrade.start();
            let (ping, grace) = (site.settings.websocket.ping, site.settings.shutdown_grace);
            crate::reactor::spawn_here(async move {
                crate::sse::run(ours, link, events, ping, grace, shutdown).await;
            });
            res
        }
        (protocol, _) => {
            crate::debug!("a {protocol:?} upgrade is not possible on an HTTP/2 stream: 400");
            drop(upgrade);
            error_response(StatusCode::BAD_REQUEST, false)
        }
    }
}

/// The 200 head of a stream the server keeps: `ours` first (unless the app set the same
/// name), then the app's headers but `skip` (framing is the server's).
fn head(
    app: Vec<(Bytes, Bytes)>,
    skip: &[&str],
    ours: &[(&'static str, &'static str)],
) -> hyper::Response<ResponseBody> {
    let mut headers: Vec<(Bytes, Bytes)> = ours
        .iter()
        .filter(|(name, _)| {
            !app.iter()
                .any(|(n, _)| n.as_ref().eq_ignore_ascii_case(name.as_bytes()))
        })
        .map(|(n, v)| {
            (
                Bytes::from_static(n.as_bytes()),
                Bytes::from_static(v.as_bytes()),
            )
        })
        .collect();
    headers.extend(app.into_iter().filter(|(n, _)| {
        !skip
            .iter()
            .any(|s| n.as_ref().eq_ignore_ascii_case(s.as_bytes()))
    }));
    let mut res = Response {
        status: 200,
        headers,
        body: Body::Empty,
    }
    .into_hyper(false);
    // No length: the stream lasts as long as the protocol on it.
    res.headers_mut().remove(header::CONTENT_LENGTH);
    res
}

/// An HTTP/2 stream carrying a WebSocket, as the session's byte stream.
struct Tunnel(TokioIo<hyper::upgrade::Upgraded>);

impl crate::server::PeerReset for Tunnel {
    fn peer_reset(&self) -> bool {
        false // a reset stream ends its reads
    }
}

impl crate::server::ReadReady for Tunnel {
    fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // allowed to be spurious: the read that follows tells
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
