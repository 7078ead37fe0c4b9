//! A connection's timers in one: the keep-alive idle timeout, the request-head deadline
//! (Slowloris), and the stalled-reader guard.
//!
//! - **Idle**: no request in flight for `timeout` since the last one ended (or since the
//!   connection opened). A request is in flight from its head until its response body has
//!   been sent, so a long stream is never cut as idle.
//! - **Slow head**: bytes of a request head began to arrive more than `head_timeout` ago and
//!   the head is still not complete.
//! - **Stalled reader**: a streamed or file response has data ready but the client has not
//!   taken any for `timeout` (it stopped reading). Waiting for the app to produce data never
//!   counts.
//! - **Park**: no request in flight or arriving, everything written, quiet for [`PARK_AFTER`]:
//!   the connection lets hyper (and its buffers) go until the client sends again (see
//!   `connection.rs`). Once per quiet spell.
//!
//! One timer per connection that re-arms only when it fires, instead of one timer per request
//! (hyper's `header_read_timeout` allocates a timer for every request head).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a connection expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Idle between requests: close gracefully.
    Idle,
    /// Quiet for [`PARK_AFTER`] with nothing left to write: let the HTTP state go.
    Park,
    /// Too slow to send a request head: close now.
    SlowHead,
    /// Stopped reading a streamed response: close now.
    StalledReader,
}

/// How long a keep-alive connection is quiet before it parks (holds no HTTP buffers).
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(250);

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
    /// A streamed body is being sent.
    streaming: AtomicBool,
    /// The streamed body has nothing to send: the app, not the client, is the slow one.
    waiting_for_app: AtomicBool,
    /// Milliseconds after `opened` when the client last took body data.
    body_ms: AtomicU64,
    /// The last write or flush could not finish (the client isn't reading): bytes may wait in
    /// hyper's buffer.
    write_pending: AtomicBool,
    /// Parked since the last request ended (no second park until another request).
    parked: AtomicBool,
}

impl Idle {
    pub(crate) fn new() -> Self {
        Idle {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            head_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            streaming: AtomicBool::new(false),
            waiting_for_app: AtomicBool::new(false),
            body_ms: AtomicU64::new(0),
            write_pending: AtomicBool::new(false),
            parked: AtomicBool::new(false),
        }
    }

    /// Whether the last write (or flush) to the socket was left pending.
    pub(crate) fn note_write(&self, pending: bool) {
        if self.write_pending.load(Ordering::Relaxed) != pending {
            self.write_pending.store(pending, Ordering::Release);
        }
    }

    /// The connection parked: no [`Expired::Park`] again before another request.
    pub(crate) fn park(&self) {
        self.parked.store(true, Ordering::Release);
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// A request head arrived.
    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_ms.store(0, Ordering::Release);
        self.parked.store(false, Ordering::Release);
    }

    /// Bytes were read from the client: if no request is in flight, a head has begun.
    pub(crate) fn note_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.head_ms.load(Ordering::Relaxed) == 0
        {
            self.head_ms.store(self.now_ms() + 1, Ordering::Release);
        }
    }

    /// The client took a piece of a streamed body (`waiting` false), or the body had nothing
    /// to give (`waiting` true: the app is producing).
    pub(crate) fn note_stream(&self, waiting: bool) {
        self.streaming.store(true, Ordering::Relaxed);
        self.waiting_for_app.store(waiting, Ordering::Relaxed);
        if !waiting {
            self.body_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// The client took bytes of a file body (sent by the connection's IO, not polled from
    /// the body).
    pub(crate) fn note_written(&self) {
        self.body_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Its response was produced.
    pub(crate) fn end(&self) {
        self.streaming.store(false, Ordering::Relaxed);
        self.last_ms.store(self.now_ms(), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether no request is in flight or arriving and none ended within `quiet`.
    pub(crate) fn quiet_for(&self, quiet: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self.head_ms.load(Ordering::Acquire) == 0
            && self.opened + Duration::from_millis(self.last_ms.load(Ordering::Acquire)) + quiet
                <= Instant::now()
    }

    /// Resolves once the connection expired (see the module doc). The timer wakes at least
    /// every `min(timeout, head_timeout)` (a head or a stall may begin at any time; every
    /// [`PARK_AFTER`] while a request is in flight) and otherwise only when a deadline may
    /// have passed.
    pub(crate) async fn expired(&self, timeout: Duration, head_timeout: Duration) -> Expired {
        let tick = timeout.min(head_timeout);
        // While a request is in flight the timer looks every PARK_AFTER at most, so that a
        // connection parks soon after its request ended; an idle one sleeps to its deadline.
        let busy_tick = tick.min(PARK_AFTER);
        let mut deadline = self.opened + busy_tick;
        loop {
            tokio::time::sleep_until(deadline.into()).await;
            let now = Instant::now();
            let at = |ms: u64| self.opened + Duration::from_millis(ms);
            if self.in_flight.load(Ordering::Acquire) > 0 {
                let stalled = self.streaming.load(Ordering::Relaxed)
                    && !self.waiting_for_app.load(Ordering::Relaxed)
                    && at(self.body_ms.load(Ordering::Relaxed)) + timeout <= now;
                if stalled {
                    crate::debug!("closing a connection whose client stopped reading");
                    return Expired::StalledReader;
                }
                deadline = now + busy_tick;
                continue;
            }
            let head = self.head_ms.load(Ordering::Acquire);
            let (until, why) = if head > 0 {
                (at(head - 1) + head_timeout, Expired::SlowHead)
            } else {
                let last = at(self.last_ms.load(Ordering::Acquire));
                let (idle_at, park_at) = (last + timeout, last + PARK_AFTER);
                // Bytes still waiting to go out (a client not reading) keep hyper: the next
                // tick looks again.
                let may_park = park_at < idle_at
                    && !self.parked.load(Ordering::Acquire)
                    && !self.write_pending.load(Ordering::Acquire);
                match may_park {
                    true => (park_at, Expired::Park),
                    false => (idle_at, Expired::Idle),
                }
            };
            if until <= now {
                if why == Expired::SlowHead {
                    crate::debug!("closing a connection whose request head took too long");
                }
                return why;
            }
            deadline = until.min(now + tick);
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

    /// See [`Idle::note_stream`].
    pub(crate) fn note_stream(&self, waiting: bool) {
        self.0.note_stream(waiting);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}
