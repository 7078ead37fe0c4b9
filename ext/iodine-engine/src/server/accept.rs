//! The accept loop: one per listener, until shutdown.

use std::future::Future;
use std::io;
use std::time::Duration;

use super::listener::Listener;
use super::shutdown::Shutdown;
use super::stream::{Peer, Stream};

/// Accepts connections and spawns `serve(stream, peer)` for each until `shutdown` fires.
///
/// Accept errors (e.g. out of file descriptors) are logged and retried with backoff; one bad
/// connection never stops the loop.
pub async fn accept_loop<F, Fut>(listener: Listener, shutdown: Shutdown, serve: F)
where
    F: Fn(Stream, Peer) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
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
                let guard = shutdown.track();
                let fut = serve(stream, peer);
                tokio::spawn(async move {
                    fut.await;
                    drop(guard);
                });
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

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
