//! What a fan-out subscriber (WebSocket or SSE) does with each message: time its delivery,
//! check its sequence number, and count it for the subscriber during the measured window.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::latency::bump;
use crate::stamp;
use crate::stats::Stats;

/// One subscriber's view of the stream.
pub struct Receiver {
    stats: Arc<Stats>,
    /// Messages this subscriber got during the measured window (read after the run: a
    /// subscriber with none was starved).
    in_window: Arc<AtomicU64>,
    /// The sequence number expected next: every subscriber is ready before the first message
    /// (number 0) is published, so each must see 0, 1, 2, … with no gap.
    next: u64,
}

impl Receiver {
    /// A receiver counting into `stats`, and the counter of its messages in the window.
    pub fn new(stats: Arc<Stats>) -> (Receiver, Arc<AtomicU64>) {
        let in_window = Arc::new(AtomicU64::new(0));
        let receiver = Receiver {
            stats,
            in_window: in_window.clone(),
            next: 0,
        };
        (receiver, in_window)
    }

    /// Handles one message whose payload starts with `payload`, read at `now` (`stamp::now_ns`).
    pub fn message(&mut self, payload: &[u8], now: u64) {
        let Some((sent, seq)) = stamp::parse(payload) else {
            bump(&self.stats.unstamped, 1);
            return;
        };
        if seq >= self.next {
            if seq > self.next {
                bump(&self.stats.lost, seq - self.next);
            }
            self.next = seq + 1;
        } else {
            bump(&self.stats.disordered, 1);
        }
        if self.stats.recording() {
            self.stats.latency.record(now.saturating_sub(sent));
            bump(&self.in_window, 1);
        }
    }
}
