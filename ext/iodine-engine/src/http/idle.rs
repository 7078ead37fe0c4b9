//! The keep-alive idle timeout, also the slow-head (Slowloris) guard: a connection with no
//! request in flight for `timeout` since its last request ended (or since it opened) is closed.
//! A request is in flight from its head until its response body has been sent, so a long
//! stream is never cut as idle.
//!
//! One timer per connection that re-arms only when it fires, instead of one timer per request
//! (hyper's `header_read_timeout` allocates a timer for every request head).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Request activity of one connection.
#[derive(Debug)]
pub(crate) struct Idle {
    opened: Instant,
    /// Milliseconds after `opened` when the last request ended.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Idle {
    pub(crate) fn new() -> Self {
        Idle {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// A request head arrived.
    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Its response was produced.
    pub(crate) fn end(&self) {
        self.last_ms
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Resolves once the connection has been idle for `timeout`.
    pub(crate) async fn expired(&self, timeout: Duration) {
        let mut deadline = self.opened + timeout;
        loop {
            tokio::time::sleep_until(deadline.into()).await;
            if self.in_flight.load(Ordering::Acquire) > 0 {
                deadline = Instant::now() + timeout;
                continue;
            }
            let last = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Acquire));
            if last + timeout <= Instant::now() {
                return;
            }
            deadline = last + timeout;
        }
    }
}

/// A request in flight: the connection is busy from `new` until this is dropped (with the
/// response body, once hyper has sent it, or with the request if the connection ends first).
#[derive(Debug)]
pub(crate) struct Busy(Arc<Idle>);

impl Busy {
    pub(crate) fn new(idle: Arc<Idle>) -> Self {
        idle.begin();
        Busy(idle)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}
