//! Leaving HTTP: when the application accepted a WebSocket or SSE upgrade, the connection
//! stops being hyper's. The request's handler parks a [`Takeover`] in the connection's slot
//! and marks the socket taken (hyper's own answer is discarded); once hyper is done, the
//! connection takes its socket back, with any bytes hyper read ahead, writes the head the
//! server built (101 or the SSE 200) and runs the protocol's session on a task of its own.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::future::{Either, FutureExt};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::link::{Events, Link, Protocol, Upgrade};
use crate::raw::RawSettings;
use crate::server::{Shutdown, Stream, Ticket};
use crate::websocket::{Role, WebSocket, WsSettings};

/// An accepted upgrade waiting for hyper to let go of the socket.
pub(crate) struct Takeover {
    /// The response head to write first.
    pub head: BytesMut,
    /// The link and events of the connection.
    pub upgrade: Upgrade,
}

/// A connection's slot for its takeover (set at most once, by the request that upgrades).
pub(crate) type Slot = Arc<Mutex<Option<Takeover>>>;

/// The socket after HTTP: the bytes hyper had read ahead come first, then the socket's own.
/// (The sessions do their own buffering: reads go straight to the socket once the prefix is
/// used up.)
pub struct Resumed {
    pending: Bytes,
    inner: Stream,
}

impl Resumed {
    /// `inner`, with `prefix` read before anything else.
    pub fn new(inner: Stream, prefix: Bytes) -> Self {
        Resumed {
            pending: prefix,
            inner,
        }
    }
}

impl crate::server::PeerReset for Resumed {
    fn peer_reset(&self) -> bool {
        self.inner.peer_reset()
    }
}

impl crate::server::ReadReady for Resumed {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        crate::server::ReadReady::poll_read_ready(&self.inner, cx)
    }
}

impl AsyncRead for Resumed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending[..n]);
            this.pending.advance(n);
            if this.pending.is_empty() {
                this.pending = Bytes::new(); // let the allocation go
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Resumed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Writes the head and runs the session; `on_close` is called however it ends (without
/// `on_open` when the head could not be sent). The session holds the connection's ticket: a
/// graceful stop waits for it to say goodbye, and it counts toward `max_clients`.
///
/// Not an `async fn`: a task keeps an async function's arguments for its whole life, and
/// every byte of this future is paid by each idle connection. The head is written by a
/// boxed future, gone once it is sent; the WebSocket session is then the task's whole
/// future (the rarer SSE one is boxed).
pub(crate) fn run(
    io: Resumed,
    takeover: Takeover,
    settings: WsSettings,
    raw: RawSettings,
    shutdown: Shutdown,
    ticket: Ticket,
) -> impl Future<Output = ()> + Send {
    Box::pin(send_head(io, takeover, settings)).then(move |sent| {
        let Some((started, link, events)) = sent else {
            return Either::Right(Either::Right(std::future::ready(())));
        };
        match started {
            Started::WebSocket(ws) => Either::Left(Either::Left(crate::websocket::session(
                ws, link, events, settings, shutdown, ticket,
            ))),
            Started::Raw(io) => Either::Left(Either::Right(crate::raw::session(
                io, link, events, raw, shutdown, ticket,
            ))),
            Started::Sse(io) => {
                let (ping, grace) = (settings.ping, settings.shutdown_grace);
                Either::Right(Either::Left(Box::pin(async move {
                    crate::sse::run(io, link, events, ping, grace, shutdown).await;
                    drop(ticket);
                })))
            }
        }
    })
}

/// The connection after its head went out.
// Short-lived (handed straight to the session), so boxing the larger variant would only
// cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Started {
    WebSocket(WebSocket<Resumed>),
    Sse(Resumed),
    Raw(Resumed),
}

/// Writes the head of the upgrade's response; None (after `on_close`) when it could not be.
async fn send_head(
    mut io: Resumed,
    takeover: Takeover,
    settings: WsSettings,
) -> Option<(Started, Arc<Link>, Arc<dyn Events>)> {
    let Takeover { head, upgrade } = takeover;
    let (link, events) = upgrade.start();
    let send = crate::server::write_through(&mut io, &head);
    let wrote = tokio::time::timeout(settings.shutdown_grace, send).await;
    if !matches!(wrote, Ok(Ok(()))) {
        link.mark_closed();
        events.on_close();
        return None;
    }
    let started = match link.protocol() {
        Protocol::WebSocket => {
            Started::WebSocket(crate::websocket::open(io, Role::Server, &settings))
        }
        Protocol::Sse => Started::Sse(io),
        Protocol::Raw => Started::Raw(io),
    };
    Some((started, link, events))
}
