//! The counters a run's tasks share, and the timed window the result is taken over.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::latency::Histogram;

/// What every task of a run reports to: messages delivered and published, errors (with the
/// first one kept for the log), and a wake-up for a publisher waiting on deliveries; for the
/// fan-out modes also the delivery latencies (recorded during the measured window only) and
/// the messages that went missing.
#[derive(Default)]
pub struct Stats {
    delivered: AtomicU64,
    published: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    progress: Notify,
    /// Set during the measured window.
    recording: AtomicBool,
    /// Set when the publisher must stop (after its current batch).
    stopping: AtomicBool,
    /// Delivery latencies in nanoseconds, of the messages delivered during the window.
    pub latency: Histogram,
    /// Messages a subscriber never got: gaps in the sequence numbers it saw.
    pub lost: AtomicU64,
    /// Messages that came out of order or twice.
    pub disordered: AtomicU64,
    /// Messages without a readable stamp (not sent by the publisher).
    pub unstamped: AtomicU64,
}

/// The counts of one measurement window.
pub struct Window {
    /// Messages (or events) received during the window.
    pub delivered: u64,
    /// Messages published during the window.
    pub published: u64,
    /// The window's real length in seconds.
    pub seconds: f64,
}

impl Window {
    /// `count` per second of this window.
    pub fn per_sec(&self, count: u64) -> f64 {
        count as f64 / self.seconds
    }
}

impl Stats {
    /// Records `n` messages received and wakes the publisher if it waits for them.
    pub fn deliver(&self, n: u64) {
        self.delivered.fetch_add(n, Relaxed);
        self.progress.notify_one();
    }

    /// Messages received so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Relaxed)
    }

    /// Records `n` messages published.
    pub fn publish(&self, n: u64) {
        self.published.fetch_add(n, Relaxed);
    }

    /// Waits until some task delivers (a delivery made before the wait also counts).
    pub async fn progressed(&self) {
        self.progress.notified().await;
    }

    /// Counts a failed connection or a connection that broke, keeping the first reason.
    pub fn error(&self, what: impl Display) {
        if self.errors.fetch_add(1, Relaxed) == 0 {
            if let Ok(mut first) = self.first_error.lock() {
                *first = Some(what.to_string());
            }
        }
    }

    /// Errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }

    /// The first error's reason, for the log.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|first| first.clone())
    }

    /// Whether this is the measured window (when latencies are recorded).
    pub fn recording(&self) -> bool {
        self.recording.load(Relaxed)
    }

    /// Messages published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Relaxed)
    }

    /// Tells the publisher to stop once its current batch is out.
    pub fn stop(&self) {
        self.stopping.store(true, Relaxed);
        self.progress.notify_one();
    }

    /// Whether the publisher must stop.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    /// Waits `warmup` seconds, then counts for `seconds`, calling `mark("start")` as the
    /// window opens and `mark("end")` as it closes.
    pub async fn measure_marked(
        &self,
        warmup: f64,
        seconds: f64,
        mut mark: impl FnMut(&str),
    ) -> Window {
        tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
        mark("start");
        let (delivered, published) = (self.delivered(), self.published.load(Relaxed));
        let start = Instant::now();
        self.recording.store(true, Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        self.recording.store(false, Relaxed);
        let window = Window {
            delivered: self.delivered() - delivered,
            published: self.published.load(Relaxed) - published,
            seconds: start.elapsed().as_secs_f64(),
        };
        mark("end");
        window
    }

    /// The reason a run could not start: no connection opened (how many failed, and why).
    pub fn nothing_opened(&self, what: &str) -> String {
        let first = self.first_error().unwrap_or_else(|| "none".to_owned());
        format!(
            "no {what} opened ({} failed); the first error: {first}",
            self.errors()
        )
    }

    /// Logs the error count and the first reason to stderr, if there were any.
    pub fn log_errors(&self) {
        if let Some(first) = self.first_error() {
            eprintln!("wsload: {} error(s), the first: {first}", self.errors());
        }
    }
}
