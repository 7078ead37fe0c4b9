//! `rack.hijack`: handing a connection's socket to the application.
//!
//! The app gets its own descriptor, a `dup` made by the binding through [`Hijack::with_fd`].
//! That call holds the connection's lock, and the connection marks itself closed under the
//! same lock before its socket is closed: a duplicate is therefore always of this request's
//! socket, never of a descriptor number the kernel has since given to another client. Once
//! the connection is gone, `with_fd` answers `None` (the binding raises `IOError`).
//!
//! After a hijack the connection's IO wrapper discards what hyper writes and reads nothing,
//! and the connection ends after the (discarded) response, closing only the server's
//! descriptor: the socket lives on in the app's.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::idle::Idle;
use super::sendfile::{self, Plan, Spool};
use crate::server::Stream;

/// What a connection and the claims of its requests share.
#[derive(Debug)]
struct Shared {
    fd: RawFd,
    unix: bool,
    /// TLS: the socket carries encrypted bytes, so it is never handed out.
    tls: bool,
    taken: AtomicBool,
    /// True while the connection's socket is open; cleared (under the lock) before it closes.
    open: Mutex<bool>,
}

/// A request's claim on its connection's socket.
#[derive(Clone, Debug)]
pub struct Hijack(Arc<Shared>);

impl Hijack {
    /// Runs `f` with the connection's descriptor, which stays open until `f` returns; `None`
    /// (and `f` is not called) once the connection has closed. `f` must not close the
    /// descriptor, only borrow it (to duplicate it). Always `None` under TLS.
    pub fn with_fd<R>(&self, f: impl FnOnce(RawFd) -> R) -> Option<R> {
        let open = self.0.open.lock();
        if !*open || self.0.tls {
            return None;
        }
        Some(f(self.0.fd))
    }

    /// Whether the socket is a Unix-domain socket (else TCP).
    pub fn is_unix(&self) -> bool {
        self.0.unix
    }

    /// Records that the app now owns (a duplicate of) the socket.
    pub fn mark_taken(&self) {
        self.0.taken.store(true, Ordering::Release);
    }

    /// Whether the app took the socket.
    pub fn is_taken(&self) -> bool {
        self.0.taken.load(Ordering::Acquire)
    }
}

/// The connection's IO as hyper sees it: the real stream until hijacked, then a sink.
#[derive(Debug)]
pub(crate) struct HijackableIo {
    /// None once handed on ([`HijackableIo::into_stream`]).
    inner: Option<Stream>,
    shared: Arc<Shared>,
    /// Told when bytes arrive (the request-head deadline starts with the first byte), and
    /// when a file body makes progress.
    idle: Arc<Idle>,
    /// The pieces of files behind the placeholders hyper writes (see `sendfile.rs`).
    spool: Arc<Spool>,
    /// The socket is corked (a file is being sent).
    corked: bool,
    /// Bytes read before a park (hyper had them in its buffer), read again first.
    ahead: bytes::Bytes,
}

impl HijackableIo {
    pub(crate) fn new(inner: Stream, idle: Arc<Idle>) -> (Self, Hijack) {
        let shared = Arc::new(Shared {
            fd: inner.as_raw_fd(),
            unix: inner.is_unix(),
            tls: inner.is_tls(),
            taken: AtomicBool::new(false),
            open: Mutex::new(true),
        });
        let hijack = Hijack(shared.clone());
        (
            HijackableIo {
                inner: Some(inner),
                shared,
                idle,
                spool: Arc::default(),
                corked: false,
                ahead: bytes::Bytes::new(),
            },
            hijack,
        )
    }

    /// The spool file bodies of this connection push their pieces on.
    pub(crate) fn spool(&self) -> Arc<Spool> {
        self.spool.clone()
    }

    /// Sends the front piece of a file in place of its placeholder.
    fn poll_file(
        &mut self,
        cx: &mut Context<'_>,
        skip: usize,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let stream = self
            .inner
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let sent = std::task::ready!(sendfile::poll_send(stream, &self.spool, skip, len, cx))?;
        self.idle.note_written();
        if self.corked && self.spool.is_empty() {
            stream.set_cork(false);
            self.corked = false;
        }
        Poll::Ready(Ok(sent))
    }

    /// Gives `ahead` (what hyper had read and not parsed when the connection parked) back
    /// to the next reads.
    pub(crate) fn unread(&mut self, ahead: bytes::Bytes) {
        self.ahead = ahead;
    }

    /// Waits until a read would find something (the socket has bytes, or bytes are back from
    /// a park), holding no buffer.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        if !self.ahead.is_empty() {
            return Ok(());
        }
        let stream = self
            .inner
            .as_ref()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        stream.readable().await
    }

    /// Notes whether a write (or flush) was left pending, for [`Idle`]'s park.
    fn noted<T>(&self, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.idle.note_write(polled.is_pending());
        polled
    }

    fn taken(&self) -> bool {
        self.shared.taken.load(Ordering::Acquire)
    }

    fn stream(&mut self) -> io::Result<&mut Stream> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }

    /// The socket itself, for the session that follows an upgrade (None if the app took it
    /// with `rack.hijack` meanwhile: it is the app's). Claims see the connection as closed.
    pub(crate) fn into_stream(mut self) -> Option<Stream> {
        let mut open = self.shared.open.lock();
        *open = false;
        self.inner.take()
    }
}

impl Drop for HijackableIo {
    fn drop(&mut self) {
        // Waits for a `with_fd` in progress; after this no claim uses the descriptor, so the
        // socket (closed when `inner` drops, right after) can't be mistaken for a new one.
        *self.shared.open.lock() = false;
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
        if !this.ahead.is_empty() {
            let n = this.ahead.len().min(buf.remaining());
            buf.put_slice(&this.ahead.split_to(n));
            if this.ahead.is_empty() {
                this.ahead = bytes::Bytes::new(); // let the allocation go
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(this.stream()?).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.idle.note_read();
        }
        polled
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
        if let Plan::File { skip, len } = sendfile::plan(&this.spool, &[io::IoSlice::new(buf)]) {
            let polled = this.poll_file(cx, skip, len);
            return this.noted(polled);
        }
        let polled = Pin::new(this.stream()?).poll_write(cx, buf);
        this.noted(polled)
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
        let polled = match sendfile::plan(&this.spool, bufs) {
            Plan::Plain => Pin::new(this.stream()?).poll_write_vectored(cx, bufs),
            Plan::Before(n) => {
                // A head before a file: corked until the file's last piece is sent.
                if !this.corked {
                    this.stream()?.set_cork(true);
                    this.corked = true;
                }
                Pin::new(this.stream()?).poll_write_vectored(cx, &bufs[..n])
            }
            Plan::File { skip, len } => this.poll_file(cx, skip, len),
        };
        this.noted(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken() {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(this.stream()?).poll_flush(cx);
        this.noted(polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken() {
            return Poll::Ready(Ok(())); // never shut down the socket the app now owns
        }
        Pin::new(this.stream()?).poll_shutdown(cx)
    }
}
