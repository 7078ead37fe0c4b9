//! Binding TCP and Unix listening sockets.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, UnixListener};

use super::stream::{Peer, Stream};

/// Pending connections the kernel queues per listener.
const BACKLOG: i32 = 1024;

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A TCP port on a host (`None` = every interface, IPv6 and IPv4 where possible).
    Tcp {
        /// Host name or IP address.
        host: Option<String>,
        /// Port number (0 picks a free one).
        port: u16,
    },
    /// A Unix domain socket at this path.
    Unix(PathBuf),
}

/// A socket bound and listening, not yet attached to a runtime (safe to keep across fork).
#[derive(Debug)]
pub enum BoundListener {
    /// A TCP listener.
    Tcp(std::net::TcpListener),
    /// A Unix listener and the socket file it created (removed again when the async
    /// listener drops).
    Unix(std::os::unix::net::UnixListener, SocketFile),
}

/// A socket file this process created: its path and identity (device, inode), so that only
/// this very file is ever removed, never one another server made at the same path since.
#[derive(Clone, Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    fn created(path: &Path) -> io::Result<Self> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
        })
    }

    /// Removes the file if it is still the one this process created.
    fn remove(&self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.id)
            .unwrap_or(false);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl BoundListener {
    /// The TCP port (0 for Unix sockets).
    pub fn port(&self) -> u16 {
        match self {
            BoundListener::Tcp(l) => l.local_addr().map(|a| a.port()).unwrap_or(0),
            BoundListener::Unix(..) => 0,
        }
    }

    /// A human-readable description for log lines.
    pub fn describe(&self) -> String {
        match self {
            BoundListener::Tcp(l) => match l.local_addr() {
                Ok(addr) => format!("{addr}"),
                Err(_) => "tcp".to_string(),
            },
            BoundListener::Unix(_, file) => file.path.display().to_string(),
        }
    }

    /// Attaches the socket to the current tokio runtime.
    pub fn into_async(self) -> io::Result<Listener> {
        match self {
            BoundListener::Tcp(l) => Ok(Listener::Tcp(TcpListener::from_std(l)?)),
            BoundListener::Unix(l, path) => Ok(Listener::Unix(UnixListener::from_std(l)?, path)),
        }
    }
}

/// A listener attached to a tokio runtime.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix listener and its socket file.
    Unix(UnixListener, SocketFile),
}

impl Listener {
    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, addr) = l.accept().await?;
                // Small responses must not wait for Nagle.
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), Peer::Ip(addr.ip().to_canonical())))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), Peer::Unix))
            }
        }
    }

    /// The TCP port (0 for Unix sockets).
    pub fn port(&self) -> u16 {
        match self {
            Listener::Tcp(l) => l.local_addr().map(|a| a.port()).unwrap_or(0),
            Listener::Unix(..) => 0,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, file) = self {
            file.remove();
        }
    }
}

/// Binds and listens (non-blocking, `SO_REUSEADDR`, close-on-exec).
pub fn bind(address: &Address) -> io::Result<BoundListener> {
    match address {
        Address::Unix(path) => bind_unix(path),
        Address::Tcp { host, port } => bind_tcp(host.as_deref(), *port),
    }
}

fn bind_tcp(host: Option<&str>, port: u16) -> io::Result<BoundListener> {
    let candidates: Vec<SocketAddr> = match host {
        None | Some("") => vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        ],
        Some(h) => {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            match h.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => {
                    // A name like "localhost" may resolve to ::1 and 127.0.0.1; one socket
                    // serves one of them, and IPv4 is what clients fall back to everywhere.
                    let mut addrs: Vec<SocketAddr> = (h, port).to_socket_addrs()?.collect();
                    addrs.sort_by_key(|a| a.is_ipv6());
                    addrs
                }
            }
        }
    };
    let mut last_err = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to bind");
    for addr in candidates {
        match bind_tcp_addr(addr) {
            Ok(l) => return Ok(BoundListener::Tcp(l)),
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

fn bind_tcp_addr(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // `::` also accepts IPv4 clients, like the C gem's "any address".
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

fn bind_unix(path: &Path) -> io::Result<BoundListener> {
    // A socket file left by a previous run would make bind fail: it is replaced, unless a
    // server still answers on it (then the address is in use, as for a TCP port). Anything
    // that is not a socket is kept (bind fails).
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{} is in use by a running server", path.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)?
                }
                Err(e) => return Err(e),
            }
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(BACKLOG)?;
    let listener: std::os::unix::net::UnixListener = socket.into();
    Ok(BoundListener::Unix(listener, SocketFile::created(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_loopback_with_a_free_port() {
        let l = bind(&Address::Tcp {
            host: Some("127.0.0.1".into()),
            port: 0,
        })
        .expect("bind");
        assert_ne!(l.port(), 0);
        assert!(l.describe().starts_with("127.0.0.1:"));
    }

    #[test]
    fn host_names_resolve_and_prefer_ipv4() {
        let l = bind(&Address::Tcp {
            host: Some("localhost".into()),
            port: 0,
        })
        .expect("bind localhost");
        assert!(l.describe().starts_with("127.0.0.1:"), "{}", l.describe());
    }

    #[test]
    fn binding_a_used_port_fails() {
        let a = bind(&Address::Tcp {
            host: Some("127.0.0.1".into()),
            port: 0,
        })
        .expect("bind");
        let again = bind(&Address::Tcp {
            host: Some("127.0.0.1".into()),
            port: a.port(),
        });
        assert!(again.is_err());
    }

    #[test]
    fn unix_socket_replaces_a_stale_socket_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let first = bind(&Address::Unix(path.clone())).expect("bind");
        drop(first); // std listener: the file stays behind
        assert!(path.exists());
        bind(&Address::Unix(path.clone())).expect("rebind over stale socket");
    }

    #[tokio::test]
    async fn a_live_servers_socket_is_in_use_and_never_removed_by_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let live = bind(&Address::Unix(path.clone()))
            .expect("bind")
            .into_async()
            .expect("async");
        let again = bind(&Address::Unix(path.clone())).expect_err("in use");
        assert_eq!(again.kind(), io::ErrorKind::AddrInUse);
        // A stale listener object (here: one whose file was replaced) removes nothing.
        let first = bind(&Address::Unix(dir.path().join("t.sock"))).expect("bind");
        let first = first.into_async().expect("async");
        std::fs::remove_file(dir.path().join("t.sock")).expect("rm");
        let second = bind(&Address::Unix(dir.path().join("t.sock"))).expect("rebind");
        drop(first);
        assert!(
            dir.path().join("t.sock").exists(),
            "the newer socket survives"
        );
        drop(second);
        drop(live);
        assert!(!path.exists(), "a listener removes its own file");
    }
}
