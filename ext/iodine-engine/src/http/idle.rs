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
    /// 1 + milliseconds after `opened` when bytes of the next request head began to arrive
    /// (0: none since the last request began).
    head_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Idle {
    pub(crate) fn new() -> Self {
        Idle {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            head_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// A request head arrived.
    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_ms.store(0, Ordering::Release);
    }

    /// Bytes were read from the client: if no request is in flight, a head has begun.
    pub(crate) fn note_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.head_ms.load(Ordering::Relaxed) == 0
        {
            let now = self.opened.elapsed().as_millis() as u64;
            self.head_ms.store(now + 1, Ordering::Release);
        }
    }

    /// Its response was produced.
    pub(crate) fn end(&self) {
        self.last_ms
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Resolves once the connection has been idle for `timeout`, or a request head has been
    /// arriving for longer than `head_timeout`. The timer wakes at least every `head_timeout`
    /// (a head may begin at any time) and otherwise only when a deadline may have passed.
    pub(crate) async fn expired(&self, timeout: Duration, head_timeout: Duration) {
        let mut deadline = self.opened + timeout.min(head_timeout);
        loop {
            tokio::time::sleep_until(deadline.into()).await;
            let now = Instant::now();
            if self.in_flight.load(Ordering::Acquire) > 0 {
                deadline = now + timeout.min(head_timeout);
                continue;
            }
            let head = self.head_ms.load(Ordering::Acquire);
            let idle_until = if head > 0 {
                self.opened + Duration::from_millis(head - 1) + head_timeout
            } else {
                self.opened + Duration::from_millis(self.last_ms.load(Ordering::Acquire)) + timeout
            };
            if idle_until <= now {
                if head > 0 {
                    crate::debug!("closing a connection whose request head took too long");
                }
                return;
            }
            deadline = idle_until.min(now + head_timeout);
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
