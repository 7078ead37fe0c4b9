//! One connection's byte stream, TCP or Unix, plain or TLS, behind one type.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Who is on the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer's IP address (IPv4-mapped IPv6 addresses are given as IPv4).
    Ip(IpAddr),
    /// A Unix-socket peer (no address).
    Unix,
}

/// A connection.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    Unix(UnixStream),
    /// TLS over one of the others (server or client side), after its handshake.
    Tls(Box<tokio_rustls::TlsStream<Stream>>),
    /// The socket under a TLS stream while it moves between runtimes ([`Stream::into_std`]);
    /// never seen outside of it.
    Moving,
}

/// The error of IO on [`Stream::Moving`].
fn moving() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is moving")
}

impl Stream {
    /// `fd` when it is a connected stream socket (TCP or Unix): what
    /// [`Stream::from_owned_fd`] takes. Needs no runtime, so `attach_fd` can check at once.
    pub fn check_fd(fd: std::os::fd::OwnedFd) -> io::Result<std::os::fd::OwnedFd> {
        let socket = socket2::Socket::from(fd);
        if socket.r#type()? != socket2::Type::STREAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a stream socket",
            ));
        }
        socket.peer_addr()?; // connected (ENOTCONN otherwise)
        Ok(socket.into())
    }

    /// A connected socket this process owns (TCP or Unix), registered with the runtime of
    /// the caller; anything that is not a connected stream socket is refused (`attach_fd`).
    pub fn from_owned_fd(fd: std::os::fd::OwnedFd) -> io::Result<Stream> {
        let socket = socket2::Socket::from(Self::check_fd(fd)?);
        socket.set_nonblocking(true)?;
        let unix = socket.local_addr()?.is_unix();
        let fd = std::os::fd::OwnedFd::from(socket);
        if unix {
            Ok(Stream::Unix(UnixStream::from_std(fd.into())?))
        } else {
            let tcp = TcpStream::from_std(fd.into())?;
            let _ = tcp.set_nodelay(true);
            Ok(Stream::Tcp(tcp))
        }
    }
}

impl Stream {
    /// The socket, let go of by this runtime's poller so another runtime can take it
    /// ([`Moved::register`]).
    pub fn into_std(self) -> io::Result<Moved> {
        Ok(match self {
            Stream::Tcp(s) => Moved::Tcp(s.into_std()?),
            Stream::Unix(s) => Moved::Unix(s.into_std()?),
            // The TLS state stays as it is; only the socket under it moves.
            Stream::Tls(mut tls) => {
                let socket = std::mem::replace(tls.get_mut().0, Stream::Moving);
                Moved::Tls(tls, Box::new(socket.into_std()?))
            }
            Stream::Moving => return Err(moving()),
        })
    }

    /// Waits until the socket may take more bytes.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_write_ready(cx),
            Stream::Unix(s) => s.poll_write_ready(cx),
            Stream::Tls(tls) => tls.get_ref().0.poll_write_ready(cx),
            Stream::Moving => Poll::Ready(Err(moving())),
        }
    }

    /// Whether the bytes are encrypted (TLS): no `sendfile`, no descriptor handed out.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Whether the socket is a Unix-domain socket (under TLS too).
    pub fn is_unix(&self) -> bool {
        match self {
            Stream::Unix(_) => true,
            Stream::Tls(tls) => tls.get_ref().0.is_unix(),
            _ => false,
        }
    }

    /// The protocol agreed in the TLS handshake (ALPN), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            Stream::Tls(tls) => tls.get_ref().1.alpn_protocol(),
            _ => None,
        }
    }

    /// The first byte the peer sent, without taking it (None: the peer closed first).
    pub async fn peek_first(&self) -> io::Result<Option<u8>> {
        std::future::poll_fn(|cx| self.poll_peek(cx)).await
    }

    /// Polls for the first byte the peer sent, without taking it (None: the peer closed
    /// first). Polled, not awaited: a parked connection waits on this with no future of its
    /// own, which would live in its task as long as it waits.
    pub fn poll_peek(&self, cx: &mut Context<'_>) -> Poll<io::Result<Option<u8>>> {
        let mut byte = [0u8; 1];
        let peek = |fd: std::os::fd::BorrowedFd<'_>, byte: &mut [u8; 1]| {
            rustix::net::recv(fd, byte, rustix::net::RecvFlags::PEEK)
                .map(|(n, _)| n)
                .map_err(io::Error::from)
        };
        loop {
            let tried = match self {
                Stream::Tcp(s) => {
                    std::task::ready!(s.poll_read_ready(cx))?;
                    s.try_io(tokio::io::Interest::READABLE, || peek(s.as_fd(), &mut byte))
                }
                Stream::Unix(s) => {
                    std::task::ready!(s.poll_read_ready(cx))?;
                    s.try_io(tokio::io::Interest::READABLE, || peek(s.as_fd(), &mut byte))
                }
                Stream::Tls(_) | Stream::Moving => {
                    let unsupported = io::Error::new(io::ErrorKind::Unsupported, "peek under TLS");
                    return Poll::Ready(Err(unsupported));
                }
            };
            match tried {
                // Not ready after all: polled again, which registers for the next readiness.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
                Ok(n) => return Poll::Ready(Ok((n == 1).then_some(byte[0]))),
            }
        }
    }

    /// Polls until a read would find something (see [`Stream::readable`]).
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tls(tls) if !tls.get_ref().1.wants_read() => Poll::Ready(Ok(())),
            Stream::Tls(tls) => tls.get_ref().0.poll_peek(cx).map_ok(drop),
            Stream::Moving => Poll::Ready(Err(moving())),
            _ => self.poll_peek(cx).map_ok(drop),
        }
    }

    /// Waits until a read would find something: bytes or the end on the socket (checked
    /// with a peek, not only the poller's last word), or, under TLS, decrypted bytes already
    /// in hand.
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_readable(cx)).await
    }

    /// Sends `answer` (a whole HTTP response) and closes, within a second. What the client
    /// sent is read before and after, so the close isn't a reset that eats the answer.
    pub async fn answer_and_close(mut self, answer: &[u8]) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            let mut scratch = [0u8; 4096];
            // Whatever of the request is already here.
            let brief = std::time::Duration::from_millis(20);
            let _ = tokio::time::timeout(brief, self.read(&mut scratch)).await;
            self.write_all(answer).await?;
            self.shutdown().await?;
            while self.read(&mut scratch).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
    }

    /// Corks (or uncorks) a TCP socket: while corked, only full segments leave (a response
    /// head and its file go out together). Unix sockets ignore it.
    pub fn set_cork(&self, on: bool) {
        match self {
            Stream::Tcp(tcp) => {
                let _ = rustix::net::sockopt::set_tcp_cork(tcp, on);
            }
            Stream::Tls(tls) => tls.get_ref().0.set_cork(on),
            _ => {}
        }
    }

    /// Sends up to `len` bytes of `file` from `offset` with `sendfile(2)`: what the socket
    /// took (0 when the file ended first). Under TLS it fails with EINVAL, as for a file
    /// sendfile can't send: the caller then reads and writes.
    pub fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let send = |fd: std::os::fd::BorrowedFd<'_>| {
            let mut at = offset;
            rustix::fs::sendfile(fd, file, Some(&mut at), len).map_err(io::Error::from)
        };
        loop {
            std::task::ready!(self.poll_write_ready(cx))?;
            let sent = match self {
                Stream::Tcp(s) => s.try_io(tokio::io::Interest::WRITABLE, || send(s.as_fd())),
                Stream::Unix(s) => s.try_io(tokio::io::Interest::WRITABLE, || send(s.as_fd())),
                Stream::Tls(_) | Stream::Moving => Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::INVAL.raw_os_error(),
                )),
            };
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    /// The socket (under TLS too); None only while a TLS stream moves.
    fn socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match self {
            Stream::Tcp(s) => Some(s.as_fd()),
            Stream::Unix(s) => Some(s.as_fd()),
            Stream::Tls(tls) => tls.get_ref().0.socket(),
            Stream::Moving => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Bytes are counted on the socket (under TLS: the records, once).
        let before = buf.filled().len();
        let polled = match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => return Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Moving => return Poll::Ready(Err(moving())),
        };
        crate::stats::read(buf.filled().len() - before);
        polled
    }
}

/// A socket write's result, its bytes counted ([`crate::stats`]).
fn counted(polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
    if let Poll::Ready(Ok(n)) = &polled {
        crate::stats::written(*n);
    }
    polled
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => return Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Moving => return Poll::Ready(Err(moving())),
        };
        counted(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => return Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Moving => return Poll::Ready(Err(moving())),
        };
        counted(polled)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Moving => Poll::Ready(Err(moving())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            // Sends close_notify, then shuts the socket down.
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Moving => Poll::Ready(Err(moving())),
        }
    }
}

/// Writes all of `bytes` and flushes: under TLS, written can mean encrypted but still held,
/// so a write that a wait on reading follows must be flushed to go out at all.
pub async fn write_through<W>(io: &mut W, bytes: &[u8]) -> io::Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    use tokio::io::AsyncWriteExt;
    io.write_all(bytes).await?;
    io.flush().await
}

/// A connection between two runtimes (still non-blocking).
#[derive(Debug)]
pub enum Moved {
    /// TCP.
    Tcp(std::net::TcpStream),
    /// Unix domain socket.
    Unix(std::os::unix::net::UnixStream),
    /// A TLS stream (its socket out, [`Stream::Moving`] in its place) and its socket.
    Tls(Box<tokio_rustls::TlsStream<Stream>>, Box<Moved>),
}

impl Moved {
    /// The socket, registered with the runtime of the caller.
    pub fn register(self) -> io::Result<Stream> {
        Ok(match self {
            Moved::Tcp(s) => Stream::Tcp(TcpStream::from_std(s)?),
            Moved::Unix(s) => Stream::Unix(UnixStream::from_std(s)?),
            Moved::Tls(mut tls, socket) => {
                *tls.get_mut().0 = socket.register()?;
                Stream::Tls(tls)
            }
        })
    }
}

/// A connection whose peer may have reset it: the kernel keeps what the peer sent before its
/// RST readable, so a session that paused its reading (backpressure) would otherwise go on
/// reading, and handing the application, megabytes from a client long gone.
pub trait PeerReset {
    /// Whether the peer reset the connection (a pending socket error, taken without reading
    /// the data still buffered).
    fn peer_reset(&self) -> bool;
}

impl PeerReset for Stream {
    fn peer_reset(&self) -> bool {
        self.socket()
            .is_some_and(|fd| matches!(socket2::SockRef::from(&fd).take_error(), Ok(Some(_))))
    }
}

/// A socket that can say whether a read would find something without reading: a session
/// then takes a read buffer only once there is something to read into it.
pub trait ReadReady {
    /// Ready when a read may find bytes (or the end, or an error); otherwise Pending, with
    /// the task's waker registered. A spurious Ready is allowed (the read then finds nothing).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for Stream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
            // Decrypted bytes (or the peer's close) already in hand: a read finds them.
            Stream::Tls(tls) if !tls.get_ref().1.wants_read() => Poll::Ready(Ok(())),
            Stream::Tls(tls) => tls.get_ref().0.poll_read_ready(cx),
            Stream::Moving => Poll::Ready(Err(moving())),
        }
    }
}

impl AsRawFd for Stream {
    /// The socket's descriptor (under TLS too; -1 while a TLS stream moves).
    fn as_raw_fd(&self) -> RawFd {
        self.socket().map_or(-1, |fd| fd.as_raw_fd())
    }
}
