//! Raw connections: bytes both ways, with the same [`Link`](crate::link::Link) and
//! [`Events`](crate::link::Events) as WebSocket and SSE. They come from a raw listener
//! ([`serve`]), from an HTTP connection the application took over (`upgrade.tcp`), from a
//! socket the application hands over (`attach_fd`), or from a client connection
//! ([`crate::client`]).

mod session;

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

#[cfg(test)]
pub(crate) use session::RawCodec;
pub use session::{session, READ_CHUNK};

use crate::link::Upgrade;
use crate::server::{accept_loop, Listener, Peer, Shutdown};

/// Settings of raw connections.
#[derive(Clone, Copy, Debug)]
pub struct RawSettings {
    /// Idle time before [`Events::on_timeout`](crate::link::Events::on_timeout) when the link
    /// sets no timeout of its own (the C gem's 300 s for raw listeners).
    pub timeout: Duration,
    /// How long `on_shutdown` gets before the server closes the connection itself.
    pub shutdown_grace: Duration,
    /// Most connections a raw listener serves at once (more are closed at once).
    pub max_clients: usize,
}

impl Default for RawSettings {
    fn default() -> Self {
        RawSettings {
            timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(8),
            max_clients: usize::MAX,
        }
    }
}

/// What a raw listener asks for each accepted connection: its link and events (the
/// application's factory runs later, on its own thread, when `on_open` is handled).
pub trait Accept: Send + Sync + 'static {
    /// The link and events for a connection from `peer`; `protocol` is what the TLS
    /// handshake agreed on (ALPN), if anything.
    fn accept(&self, peer: Peer, protocol: Option<&[u8]>) -> Upgrade;
}

impl<F> Accept for F
where
    F: Fn(Peer, Option<&[u8]>) -> Upgrade + Send + Sync + 'static,
{
    fn accept(&self, peer: Peer, protocol: Option<&[u8]>) -> Upgrade {
        self(peer, protocol)
    }
}

/// Serves raw connections on `listener` until `shutdown` fires (each one's TLS handshake
/// first, with `tls`).
pub async fn serve(
    listener: Listener,
    settings: RawSettings,
    tls: Option<crate::tls::Acceptor>,
    accept: Arc<dyn Accept>,
    shutdown: Shutdown,
) {
    let conn_shutdown = shutdown.clone();
    accept_loop(
        listener,
        shutdown,
        settings.max_clients,
        tls,
        move |stream, peer, ticket| {
            let (accept, shutdown) = (accept.clone(), conn_shutdown.clone());
            // On the reactor when there is one (the callbacks then run where the IO happens).
            crate::reactor::spawn_session(stream, move |stream| {
                let (link, events) = accept.accept(peer, stream.alpn_protocol()).start();
                session(stream, link, events, settings, shutdown, ticket)
            });
            std::future::ready(())
        },
        |stream| async move { drop(stream) },
    )
    .await;
}

/// The head written before an HTTP connection becomes raw (`upgrade.tcp`): the
/// application's status (200 when it is not a valid HTTP status) and its headers.
pub fn response_head(status: u16, app_headers: &[(Bytes, Bytes)]) -> BytesMut {
    let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    let mut head = BytesMut::with_capacity(128);
    head.put_slice(b"HTTP/1.1 ");
    head.put_slice(status.as_str().as_bytes());
    head.put_u8(b' ');
    head.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    head.put_slice(b"\r\n");
    crate::http::put_app_headers(&mut head, app_headers, &[]);
    head.put_slice(b"\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_carries_the_apps_status_and_headers() {
        let headers = vec![(Bytes::from("Upgrade"), Bytes::from("chat"))];
        let head = response_head(101, &headers);
        assert_eq!(
            &head[..],
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: chat\r\n\r\n"
        );
        assert!(response_head(0, &[]).starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
}
