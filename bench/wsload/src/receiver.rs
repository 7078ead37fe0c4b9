//! What a fan-out subscriber (WebSocket or SSE) does with each message: time its delivery,
//! check its sequence number, and count it for the subscriber during the measured window and
//! over the whole run (which numbers it got, and how many twice).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::latency::bump;
use crate::stamp;
use crate::stats::Stats;

/// One subscriber's counts, read after the run.
#[derive(Default)]
pub struct Counts {
    /// Messages it got during the measured window (a subscriber with none was starved).
    pub in_window: AtomicU64,
    /// Distinct sequence numbers it got over the whole run.
    pub distinct: AtomicU64,
    /// Messages it got again (a sequence number it had already seen).
    pub duplicated: AtomicU64,
}

impl Counts {
    /// Messages in the window.
    pub fn in_window(&self) -> u64 {
        self.in_window.load(Relaxed)
    }

    /// Distinct messages over the run.
    pub fn distinct(&self) -> u64 {
        self.distinct.load(Relaxed)
    }

    /// Repeated messages over the run.
    pub fn duplicated(&self) -> u64 {
        self.duplicated.load(Relaxed)
    }
}

/// One subscriber's view of the stream.
pub struct Receiver {
    stats: Arc<Stats>,
    counts: Arc<Counts>,
    /// The sequence number expected next: every subscriber is ready before the first message
    /// (number 0) is published, so each must see 0, 1, 2, … with no gap.
    next: u64,
    /// One bit per sequence number seen (a run publishes at most a few million messages).
    seen: Vec<u64>,
}

impl Receiver {
    /// A receiver counting into `stats`, and its counts.
    pub fn new(stats: Arc<Stats>) -> (Receiver, Arc<Counts>) {
        let counts = Arc::new(Counts::default());
        let receiver = Receiver {
            stats,
            counts: counts.clone(),
            next: 0,
            seen: Vec::new(),
        };
        (receiver, counts)
    }

    /// Handles one message whose payload starts with `payload`, read at `now` (`stamp::now_ns`).
    pub fn message(&mut self, payload: &[u8], now: u64) {
        let Some((sent, seq)) = stamp::parse(payload) else {
            bump(&self.stats.unstamped, 1);
            return;
        };
        if self.first_time(seq) {
            bump(&self.counts.distinct, 1);
        } else {
            bump(&self.counts.duplicated, 1);
        }
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
            bump(&self.counts.in_window, 1);
        }
    }

    /// Marks `seq` seen; whether it was new.
    fn first_time(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, 1_u64 << (seq % 64));
        if word >= self.seen.len() {
            self.seen.resize((word + 1).next_power_of_two(), 0);
        }
        let new = self.seen[word] & bit == 0;
        self.seen[word] |= bit;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_duplicated_and_gaps() {
        let stats = Arc::new(Stats::default());
        let (mut r, counts) = Receiver::new(stats.clone());
        for seq in [0, 1, 3, 3, 2, 200, 0] {
            r.message(stamp::text(seq, 32).as_bytes(), stamp::now_ns());
        }
        assert_eq!(counts.distinct(), 5);
        assert_eq!(counts.duplicated(), 2);
        assert_eq!(stats.lost.load(Relaxed), 1 + 196);
        assert_eq!(stats.disordered.load(Relaxed), 3);
    }
}
