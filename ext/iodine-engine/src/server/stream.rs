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

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}
