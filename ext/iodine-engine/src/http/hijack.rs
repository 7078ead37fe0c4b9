//! `rack.hijack`: handing a connection's socket to the application.
//!
//! The app gets its own descriptor (a `dup` made by the binding while the request is in
//! flight, so the socket is open). From then on the connection's IO wrapper discards what
//! hyper writes and reads nothing, and the connection ends after the (discarded) response,
//! closing only the server's descriptor: the socket lives on in the app's.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::Stream;

/// A request's claim on its connection's socket.
#[derive(Clone, Debug)]
pub struct Hijack {
    fd: RawFd,
    unix: bool,
    taken: Arc<AtomicBool>,
}

impl Hijack {
    /// The connection's descriptor: valid while the request is in flight (until the handler
    /// replies), which is the only time the app may hijack.
    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }

    /// Whether the socket is a Unix-domain socket (else TCP).
    pub fn is_unix(&self) -> bool {
        self.unix
    }

    /// Records that the app now owns (a duplicate of) the socket.
    pub fn mark_taken(&self) {
        self.taken.store(true, Ordering::Release);
    }

    /// Whether the app took the socket.
    pub fn is_taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }
}

/// The connection's IO as hyper sees it: the real stream until hijacked, then a sink.
#[derive(Debug)]
pub(crate) struct HijackableIo {
    inner: Stream,
    taken: Arc<AtomicBool>,
}

impl HijackableIo {
    pub(crate) fn new(inner: Stream) -> (Self, Hijack) {
        let taken = Arc::new(AtomicBool::new(false));
        let hijack = Hijack {
            fd: inner.as_raw_fd(),
            unix: matches!(inner, Stream::Unix(_)),
            taken: taken.clone(),
        };
        (HijackableIo { inner, taken }, hijack)
    }

    fn taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }
}

impl AsyncRead for HijackableIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken() {
            return Poll::Ready(Ok(())); // end of input: the app reads the socket now
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HijackableIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.taken() {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.taken() {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken() {
            return Poll::Ready(Ok(())); // never shut down the socket the app now owns
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
