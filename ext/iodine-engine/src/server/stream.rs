//! One accepted connection's byte stream, TCP or Unix, behind one type.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
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

/// An accepted connection.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    Unix(UnixStream),
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
        })
    }

    /// Waits until the socket may take more bytes.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_write_ready(cx),
            Stream::Unix(s) => s.poll_write_ready(cx),
        }
    }

    /// Corks (or uncorks) a TCP socket: while corked, only full segments leave (a response
    /// head and its file go out together). Unix sockets ignore it.
    pub fn set_cork(&self, on: bool) {
        if let Stream::Tcp(tcp) = self {
            let _ = rustix::net::sockopt::set_tcp_cork(tcp, on);
        }
    }

    /// Sends up to `len` bytes of `file` from `offset` with `sendfile(2)`: what the socket
    /// took (0 when the file ended first).
    pub fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let send = || {
            let mut at = offset;
            rustix::fs::sendfile(self, file, Some(&mut at), len).map_err(io::Error::from)
        };
        loop {
            std::task::ready!(self.poll_write_ready(cx))?;
            let sent = match self {
                Stream::Tcp(s) => s.try_io(tokio::io::Interest::WRITABLE, send),
                Stream::Unix(s) => s.try_io(tokio::io::Interest::WRITABLE, send),
            };
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A connection between two runtimes (still non-blocking).
#[derive(Debug)]
pub enum Moved {
    /// TCP.
    Tcp(std::net::TcpStream),
    /// Unix domain socket.
    Unix(std::os::unix::net::UnixStream),
}

impl Moved {
    /// The socket, registered with the runtime of the caller.
    pub fn register(self) -> io::Result<Stream> {
        Ok(match self {
            Moved::Tcp(s) => Stream::Tcp(TcpStream::from_std(s)?),
            Moved::Unix(s) => Stream::Unix(UnixStream::from_std(s)?),
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
        matches!(socket2::SockRef::from(self).take_error(), Ok(Some(_)))
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
        }
    }
}

impl std::os::fd::AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}
