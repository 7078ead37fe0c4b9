//! Opening many connections at a bounded pace, each within a deadline.

use std::future::Future;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};

use crate::stats::Stats;

/// How long one connection may take to open and get ready (handshake, first message).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `open(i)` for every `i` in `0..n`, at most `parallel` at a time, and keeps the connections
/// that opened; each failure is counted in `stats`. `open` must bound itself (`SETUP_TIMEOUT`).
pub async fn open_all<T, F, Fut>(n: usize, parallel: usize, stats: &Stats, open: F) -> Vec<T>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut opened = Vec::with_capacity(n);
    let mut pending = stream::iter(0..n)
        .map(open)
        .buffer_unordered(parallel.max(1));
    while let Some(result) = pending.next().await {
        match result {
            Ok(conn) => opened.push(conn),
            Err(e) => stats.error(e),
        }
    }
    opened
}

/// Runs `future` within `SETUP_TIMEOUT`, naming `what` timed out otherwise.
pub async fn within<T>(
    what: &str,
    future: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(SETUP_TIMEOUT, future).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{what}: not ready within {} s",
            SETUP_TIMEOUT.as_secs()
        )),
    }
}
