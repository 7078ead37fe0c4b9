//! Outgoing connections (`Iodine.connect`): raw TCP/Unix and WebSocket clients, served by
//! the same sessions as the server's connections.
//!
//! Whatever goes wrong before the connection is open — refused, no such host, a handshake
//! the server rejected, no answer within the timeout — drops the [`Upgrade`], which tells
//! the application `on_close` without `on_open`: every failure reaches it exactly once.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use crate::http::Resumed;
use crate::link::Upgrade;
use crate::raw::RawSettings;
use crate::server::{Shutdown, Stream, Ticket};
use crate::tls::Connector;
use crate::websocket::{Role, WsSettings};

/// Where to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A host name or IP address and a port.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port number.
        port: u16,
    },
    /// A Unix domain socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
            Target::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Opens a socket to `target` within `timeout` (name resolution and, with `tls`, the TLS
/// handshake included: the target's host is the name sent and checked, `localhost` for a
/// Unix socket).
pub async fn connect(
    target: &Target,
    tls: Option<&Connector>,
    timeout: Duration,
) -> io::Result<Stream> {
    let connecting = async {
        let (stream, host) = match target {
            Target::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                let _ = stream.set_nodelay(true);
                (Stream::Tcp(stream), host.as_str())
            }
            Target::Unix(path) => (Stream::Unix(UnixStream::connect(path).await?), "localhost"),
        };
        match tls {
            Some(tls) => tls.connect(host, stream).await,
            None => Ok(stream),
        }
    };
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}

/// A raw client: connects (over TLS with `tls`), then speaks bytes with `upgrade`'s link and
/// events.
pub async fn run_raw(
    target: Target,
    tls: Option<Connector>,
    upgrade: Upgrade,
    settings: RawSettings,
    timeout: Duration,
    shutdown: Shutdown,
) {
    let ticket = Ticket::uncounted(&shutdown);
    match connect(&target, tls.as_ref(), timeout).await {
        Ok(stream) => {
            let (link, events) = upgrade.start();
            link.mark_client();
            crate::raw::session(stream, link, events, settings, shutdown, ticket).await
        }
        Err(e) => {
            crate::debug!("couldn't connect to {target}: {e}");
            drop(upgrade); // on_close, without on_open
        }
    }
}

/// The request of a WebSocket client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WsRequest {
    /// The `Host` header (and the URI's authority): `host:port`.
    pub host: String,
    /// The request target: path and query.
    pub path: String,
    /// More request headers (`Cookie` among them), sent as given.
    pub headers: Vec<(String, String)>,
}

/// A WebSocket client: connects (over TLS with `tls`: `wss://`), sends the handshake (within
/// `timeout` too), then speaks WebSocket with `upgrade`'s link and events. Its frames are
/// masked.
pub async fn run_websocket(
    target: Target,
    tls: Option<Connector>,
    request: WsRequest,
    upgrade: Upgrade,
    settings: WsSettings,
    timeout: Duration,
    shutdown: Shutdown,
) {
    let ticket = Ticket::uncounted(&shutdown);
    let opened = tokio::time::timeout(timeout, async {
        let mut stream = connect(&target, tls.as_ref(), timeout)
            .await
            .map_err(|e| e.to_string())?;
        let host = &request.host;
        let first =
            crate::websocket::client_handshake(&mut stream, host, &request.path, &request.headers)
                .await?;
        // What the server sent after its answer is read before the socket's next bytes.
        Ok::<_, String>(Resumed::new(stream, first))
    })
    .await
    .unwrap_or_else(|_| Err("the handshake timed out".into()));
    match opened {
        Ok(io) => {
            let (link, events) = upgrade.start();
            link.mark_client();
            let ws = crate::websocket::open(io, Role::Client, &settings);
            crate::websocket::session(ws, link, events, settings, shutdown, ticket).await
        }
        Err(why) => {
            crate::debug!("WebSocket client to {target}{}: {why}", request.path);
            drop(upgrade);
        }
    }
}
