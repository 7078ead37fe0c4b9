//! Binding TCP and Unix listening sockets.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, UnixListener};

use super::spread::{Rescue, Spread};
use super::stream::{Peer, Stream};

/// Pending connections the kernel queues per listener.
pub(super) const BACKLOG: i32 = 1024;

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
    /// A TCP listener spread over a cluster's workers, one socket each
    /// ([`BoundListener::spread`]).
    Spread(Spread),
}

/// A socket file this process created: its path and identity (device, inode), so that only
/// this very file is ever removed, never one another server made at the same path since.
///
/// Only the process that created it removes it, when its listener is dropped: a cluster's
/// workers (and processes an app forks) share the master's socket, and one of them leaving
/// (a hot restart replaces every worker) must leave the file to the others.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
    creator: u32,
}

impl SocketFile {
    /// A socket file another process made (a service manager's): never removed here.
    pub(super) fn not_ours(path: &Path) -> Self {
        SocketFile {
            path: path.to_path_buf(),
            id: (0, 0),
            creator: 0,
        }
    }

    fn created(path: &Path) -> io::Result<Self> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
            creator: std::process::id(),
        })
    }
}

impl Drop for SocketFile {
    /// Removes the file if this process created it and it is still the one it created.
    fn drop(&mut self) {
        if self.creator != std::process::id() {
            return;
        }
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
            BoundListener::Spread(s) => s.first().local_addr().map(|a| a.port()).unwrap_or(0),
            BoundListener::Unix(..) => 0,
        }
    }

    /// A human-readable description for log lines.
    pub fn describe(&self) -> String {
        let tcp = |l: &std::net::TcpListener| match l.local_addr() {
            Ok(addr) => format!("{addr}"),
            Err(_) => "tcp".to_string(),
        };
        match self {
            BoundListener::Tcp(l) => tcp(l),
            BoundListener::Spread(s) => tcp(s.first()),
            BoundListener::Unix(_, file) => file.path.display().to_string(),
        }
    }

    /// Spreads a TCP listener over the `workers` of a cluster: a group of `workers` sockets
    /// on its address, one per worker ([`Spread`]), made by the master before it forks.
    /// A Unix listener stays one socket that the workers share (the kernel has no such groups
    /// for them), as does a TCP listener where the group cannot be made (not Linux; the
    /// error is logged): the workers then share it, which works, only less evenly.
    pub fn spread(self, workers: usize) -> BoundListener {
        if workers < 2 || !cfg!(target_os = "linux") {
            return self;
        }
        match self {
            BoundListener::Tcp(l) => match Spread::new(l, workers) {
                Ok(spread) => BoundListener::Spread(spread),
                Err((l, e)) => {
                    let bound = BoundListener::Tcp(l);
                    crate::warning!(
                        "couldn't give each worker a socket of its own on {} ({e}): \
                         the workers share one",
                        bound.describe()
                    );
                    bound
                }
            },
            other => other,
        }
    }

    /// This listener as worker `slot` of a cluster serves it: a spread listener's socket
    /// `slot` (the others are rescued, see [`Spread`]); any other as it is.
    pub fn for_worker(self, slot: usize) -> BoundListener {
        match self {
            BoundListener::Spread(mut spread) => {
                spread.set_slot(slot);
                BoundListener::Spread(spread)
            }
            other => other,
        }
    }

    /// Attaches the socket to the current tokio runtime (a spread listener: the socket of its
    /// worker slot, and the others to rescue).
    pub fn into_async(self) -> io::Result<Listener> {
        match self {
            BoundListener::Tcp(l) => Ok(Listener::Tcp(TcpListener::from_std(l)?)),
            BoundListener::Unix(l, path) => Ok(Listener::Unix(UnixListener::from_std(l)?, path)),
            BoundListener::Spread(spread) => {
                let (own, others) = spread.into_parts();
                Ok(Listener::Spread(
                    TcpListener::from_std(own)?,
                    Box::new(Rescue::new(others)),
                ))
            }
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
    /// A cluster worker's socket of a spread listener, and the other workers' sockets it
    /// rescues connections from ([`Spread`]).
    Spread(TcpListener, Box<Rescue>),
}

impl Listener {
    /// Waits for the next connection. Cancel-safe.
    pub async fn accept(&mut self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l) => accept_tcp(l).await,
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), Peer::Unix))
            }
            Listener::Spread(own, rescue) => tokio::select! {
                biased;
                r = accept_tcp(own) => r,
                r = rescue.accept() => r,
            },
        }
    }

    /// The TCP port (0 for Unix sockets).
    pub fn port(&self) -> u16 {
        match self {
            Listener::Tcp(l) | Listener::Spread(l, _) => {
                l.local_addr().map(|a| a.port()).unwrap_or(0)
            }
            Listener::Unix(..) => 0,
        }
    }
}

async fn accept_tcp(l: &TcpListener) -> io::Result<(Stream, Peer)> {
    let (s, addr) = l.accept().await?;
    // Small responses must not wait for Nagle.
    let _ = s.set_nodelay(true);
    Ok((Stream::Tcp(s), Peer::Ip(addr.ip().to_canonical())))
}

/// The mode of a Unix socket file unless told otherwise: anyone may connect (a proxy such as
/// nginx runs as another user), as the C gem's since 0.7.53 (its issue #136).
pub const UNIX_MODE: u32 = 0o777;

/// Binds and listens (non-blocking, `SO_REUSEADDR`, close-on-exec); a Unix socket file gets
/// [`UNIX_MODE`].
pub fn bind(address: &Address) -> io::Result<BoundListener> {
    bind_with_mode(address, UNIX_MODE)
}

/// [`bind`], with the permission bits a Unix socket file gets (`unix_mode`, e.g. `0o660`;
/// ignored for TCP).
///
/// A socket inherited from a service manager for this address (see `activation.rs`) is used
/// instead of binding.
pub fn bind_with_mode(address: &Address, unix_mode: u32) -> io::Result<BoundListener> {
    if let Some(inherited) = super::activation::take(address) {
        return Ok(inherited);
    }
    match address {
        Address::Unix(path) => bind_unix(path, unix_mode & 0o7777),
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

fn bind_unix(path: &Path, mode: u32) -> io::Result<BoundListener> {
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
    // The file exists from here on: it is ours to remove if anything below fails.
    let file = SocketFile::created(path)?;
    // bind(2) applies the umask; the mode asked for is set afterwards, before anyone can be
    // told the socket exists (the listen below, the banner).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    socket.listen(BACKLOG)?;
    let listener: std::os::unix::net::UnixListener = socket.into();
    Ok(BoundListener::Unix(listener, file))
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
        let BoundListener::Unix(listener, file) = bind(&Address::Unix(path.clone())).expect("bind")
        else {
            unreachable!("a Unix address binds a Unix listener")
        };
        // A crashed server: the socket closed, its file left behind.
        drop(listener);
        std::mem::forget(file);
        assert!(path.exists());
        bind(&Address::Unix(path.clone())).expect("rebind over stale socket");
    }

    #[test]
    fn unix_socket_files_are_0777_unless_told_otherwise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        let open = dir.path().join("open.sock");
        let _open = bind(&Address::Unix(open.clone())).expect("bind");
        assert_eq!(mode(&open), 0o777);
        let group = dir.path().join("group.sock");
        let _group = bind_with_mode(&Address::Unix(group.clone()), 0o660).expect("bind");
        assert_eq!(mode(&group), 0o660);
    }

    #[test]
    fn only_the_creating_process_removes_the_socket_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let BoundListener::Unix(listener, mut file) =
            bind(&Address::Unix(path.clone())).expect("bind")
        else {
            unreachable!("a Unix address binds a Unix listener")
        };
        // As in a forked worker: the listener's copy belongs to another process.
        file.creator = file.creator.wrapping_add(1);
        drop((listener, file));
        assert!(path.exists(), "a worker's drop removed the master's socket");
        let BoundListener::Unix(_, file) = bind(&Address::Unix(path.clone())).expect("rebind")
        else {
            unreachable!("a Unix address binds a Unix listener")
        };
        drop(file);
        assert!(!path.exists(), "the creator's drop left the file");
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
