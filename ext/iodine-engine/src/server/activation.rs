//! systemd socket activation (`sd_listen_fds(3)`): listening sockets a service manager opened
//! and handed down as descriptors 3, 4, … (`LISTEN_FDS` of them, for the process
//! `LISTEN_PID`). A listener whose address matches one of them takes it instead of binding,
//! as puma does; the ones nobody took are closed when the server starts
//! ([`close_unclaimed`]).
//!
//! Owning a descriptor by its number is the caller's part (the Ruby binding's one unsafe
//! module): [`descriptors_for_us`] says which numbers were handed to this process, and
//! [`offer`] takes them once owned.

use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;

use parking_lot::Mutex;
use socket2::Socket;

use super::listener::{Address, BoundListener, SocketFile};

/// The first descriptor a service manager passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// The most descriptors taken from `LISTEN_FDS` (a bad value can't make us adopt every fd).
const MOST: RawFd = 1024;

/// A listening socket inherited from the service manager.
#[derive(Debug)]
struct Inherited {
    socket: Socket,
    at: Where,
}

#[derive(Debug, PartialEq)]
enum Where {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// The inherited sockets not taken yet.
static INHERITED: Mutex<Vec<Inherited>> = Mutex::new(Vec::new());

/// The descriptor numbers the environment hands to this process (none unless `LISTEN_PID`
/// is this process). The variables are removed, so that processes started later (an app's
/// children) don't take them for theirs; a second call finds none.
pub fn descriptors_for_us() -> std::ops::Range<RawFd> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<RawFd>().ok())
        .unwrap_or(0)
        .clamp(0, MOST);
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    match for_us {
        true => FIRST_FD..FIRST_FD + count,
        false => FIRST_FD..FIRST_FD,
    }
}

/// Keeps the listening stream sockets among `fds` for the listeners to come; anything else
/// is closed (and logged).
pub fn offer(fds: Vec<OwnedFd>) {
    let mut inherited = INHERITED.lock();
    for fd in fds {
        match adopt(fd) {
            Ok(socket) => {
                crate::info!("systemd socket activation: {}", socket.describe());
                inherited.push(socket);
            }
            Err(why) => crate::warning!("systemd socket activation: a descriptor ignored: {why}"),
        }
    }
}

fn adopt(fd: OwnedFd) -> Result<Inherited, String> {
    let socket = Socket::from(fd);
    if socket.r#type().map_err(|e| e.to_string())? != socket2::Type::STREAM {
        return Err("not a stream socket".into());
    }
    if !socket.is_listener().map_err(|e| e.to_string())? {
        return Err("not listening".into());
    }
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let at = match (local.as_socket(), local.as_pathname()) {
        (Some(addr), _) => Where::Tcp(addr),
        (None, Some(path)) => Where::Unix(path.to_path_buf()),
        _ => return Err("neither TCP nor a Unix socket with a path".into()),
    };
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    socket.set_cloexec(true).map_err(|e| e.to_string())?;
    Ok(Inherited { socket, at })
}

impl Inherited {
    fn describe(&self) -> String {
        match &self.at {
            Where::Tcp(addr) => format!("listening on {addr}"),
            Where::Unix(path) => format!("listening on {}", path.display()),
        }
    }

    /// Whether a listener asked for `address` is this socket: the same Unix path, or the same
    /// port with the same IP (any host name, or none, takes any IP on that port).
    fn answers(&self, address: &Address) -> bool {
        match (&self.at, address) {
            (Where::Unix(path), Address::Unix(asked)) => path == asked,
            (Where::Tcp(addr), Address::Tcp { host, port }) => {
                if addr.port() != *port {
                    return false;
                }
                match host
                    .as_deref()
                    .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                    .and_then(|h| h.parse::<std::net::IpAddr>().ok())
                {
                    Some(ip) => ip.to_canonical() == addr.ip().to_canonical(),
                    None => true,
                }
            }
            _ => false,
        }
    }
}

/// The inherited socket for `address`, if there is one (taken: a second listener on the
/// same address binds, and fails as it would have).
pub(super) fn take(address: &Address) -> Option<BoundListener> {
    let mut inherited = INHERITED.lock();
    let at = inherited.iter().position(|s| s.answers(address))?;
    let Inherited { socket, at } = inherited.swap_remove(at);
    Some(match at {
        Where::Tcp(_) => BoundListener::Tcp(socket.into()),
        // The service manager made the file: it stays when the server stops.
        Where::Unix(path) => BoundListener::Unix(socket.into(), SocketFile::not_ours(&path)),
    })
}

/// Closes the inherited sockets no listener took (logged: a unit that names an address the
/// app doesn't listen on).
pub fn close_unclaimed() {
    for socket in INHERITED.lock().drain(..) {
        crate::warning!(
            "systemd socket activation: no listener for the socket {}: closed",
            socket.describe()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening(addr: &str) -> OwnedFd {
        let l = std::net::TcpListener::bind(addr).expect("bind");
        OwnedFd::from(l)
    }

    #[test]
    fn a_listener_takes_the_inherited_socket_of_its_address_once() {
        let fd = listening("127.0.0.1:0");
        let port = Socket::from(fd.try_clone().expect("clone"))
            .local_addr()
            .expect("addr")
            .as_socket()
            .expect("tcp")
            .port();
        // Not listening: refused.
        let idle = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
        offer(vec![fd, OwnedFd::from(idle)]);
        let other_port = Address::Tcp {
            host: None,
            port: port.wrapping_add(1),
        };
        assert!(take(&other_port).is_none());
        let other_ip = Address::Tcp {
            host: Some("10.1.2.3".into()),
            port,
        };
        assert!(take(&other_ip).is_none());
        let asked = Address::Tcp {
            host: Some("127.0.0.1".into()),
            port,
        };
        let taken = take(&asked).expect("taken");
        assert_eq!(taken.port(), port);
        assert!(take(&asked).is_none(), "taken once");
        close_unclaimed();
    }
}
