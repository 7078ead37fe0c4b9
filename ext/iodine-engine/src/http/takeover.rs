//! Leaving HTTP: when the application accepted a WebSocket or SSE upgrade, the connection
//! stops being hyper's. The request's handler parks a [`Takeover`] in the connection's slot
//! and marks the socket taken (hyper's own answer is discarded); once hyper is done, the
//! connection takes its socket back, with any bytes hyper read ahead, writes the head the
//! server built (101 or the SSE 200) and runs the protocol's session on a task of its own.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::settings::HttpSettings;
use crate::link::{Protocol, Upgrade};
use crate::server::{ConnectionGuard, Shutdown, Stream};

/// An accepted upgrade waiting for hyper to let go of the socket.
pub(crate) struct Takeover {
    /// The response head to write first.
    pub head: BytesMut,
    /// The link and events of the connection.
    pub upgrade: Upgrade,
}

/// A connection's slot for its takeover (set at most once, by the request that upgrades).
pub(crate) type Slot = Arc<Mutex<Option<Takeover>>>;

/// The socket after HTTP: the bytes hyper had read ahead come first.
pub struct Resumed {
    prefix: Bytes,
    inner: Stream,
}

impl Resumed {
    /// `inner`, with `prefix` read before anything else.
    pub fn new(inner: Stream, prefix: Bytes) -> Self {
        Resumed { prefix, inner }
    }
}

impl AsyncRead for Resumed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
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

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Writes the head and runs the session; `on_close` is called however it ends (without
/// `on_open` when the head could not be sent). Holds a shutdown guard so a graceful stop
/// waits for the session to say goodbye.
pub(crate) async fn run(
    mut io: Resumed,
    takeover: Takeover,
    settings: &HttpSettings,
    shutdown: Shutdown,
    _guard: ConnectionGuard,
) {
    let Takeover { head, upgrade } = takeover;
    let (link, events) = upgrade.start();
    let wrote = tokio::time::timeout(settings.websocket.shutdown_grace, io.write_all(&head)).await;
    if !matches!(wrote, Ok(Ok(()))) {
        link.mark_closed();
        events.on_close();
        return;
    }
    match link.protocol() {
        Protocol::WebSocket => {
            crate::websocket::run(io, link, events, settings.websocket, shutdown).await
        }
        Protocol::Sse => {
            let ws = settings.websocket;
            crate::sse::run(io, link, events, ws.ping, ws.shutdown_grace, shutdown).await
        }
    }
}
