//! The accept loop: one per listener, until shutdown.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::listener::Listener;
use super::shutdown::Shutdown;
use super::stream::{Peer, Stream};
use crate::tls::Acceptor;

/// Accepts connections and spawns `serve(stream, peer, ticket)` for each until `shutdown`
/// fires. With `tls`, each connection's handshake runs first (in its own task, counted as
/// the connection): `serve` gets the TLS stream, and a failed handshake ends there.
///
/// At most `max_clients` connections are served at once: past that, `refuse(stream)` is
/// spawned instead (it answers "busy" and closes). A connection counts (toward
/// `max_clients`, and as live for a graceful shutdown) as long as its [`Ticket`] lives, so
/// one that leaves HTTP for WebSocket or SSE hands the ticket to its session. Accept errors (e.g. out of file
/// descriptors) are logged and retried with backoff; one bad connection never stops the loop.
pub async fn accept_loop<F, Fut, R, RFut>(
    mut listener: Listener,
    shutdown: Shutdown,
    max_clients: usize,
    tls: Option<Acceptor>,
    serve: F,
    refuse: R,
) where
    F: Fn(Stream, Peer, Ticket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    R: Fn(Stream) -> RFut,
    RFut: Future<Output = ()> + Send + 'static,
{
    let live = Arc::new(AtomicUsize::new(0));
    let serve = Arc::new(serve);
    let mut backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.triggered() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(1);
                if live.load(Ordering::Acquire) >= max_clients {
                    crate::warning!("at capacity ({max_clients} connections): refusing one");
                    // A plain-text answer means nothing to a TLS client: it is just closed.
                    if tls.is_none() {
                        tokio::spawn(refuse(stream));
                    }
                    continue;
                }
                live.fetch_add(1, Ordering::AcqRel);
                let ticket = Ticket {
                    _guard: shutdown.track(),
                    _counted: Some(Counted(live.clone())),
                };
                match &tls {
                    None => drop(tokio::spawn(serve(stream, peer, ticket))),
                    Some(tls) => {
                        let (tls, serve) = (tls.clone(), serve.clone());
                        tokio::spawn(async move {
                            if let Some(stream) = tls.accept(stream).await {
                                serve(stream, peer, ticket).await
                            }
                        });
                    }
                }
            }
            Err(e) if is_transient(&e) => continue,
            Err(e) => {
                crate::error!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// A connection's place: counted toward its listener's `max_clients` and live for shutdown
/// until dropped.
#[derive(Debug)]
pub struct Ticket {
    _guard: super::shutdown::ConnectionGuard,
    _counted: Option<Counted>,
}

impl Ticket {
    /// A ticket for a connection that did not come through an accept loop (a socket served
    /// directly): live for `shutdown`, counted toward no limit.
    pub fn uncounted(shutdown: &Shutdown) -> Ticket {
        Ticket {
            _guard: shutdown.track(),
            _counted: None,
        }
    }
}

/// One live connection of a listener, counted until dropped.
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
