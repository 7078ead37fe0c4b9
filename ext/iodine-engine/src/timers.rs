//! Timers: `run_after` and `run_every` without Ruby. A timer calls its `fire` closure on an
//! IO thread (the binding hands the work to a Ruby worker from there) and ends at shutdown.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{interval_at, Instant, MissedTickBehavior};

use crate::server::Shutdown;

/// When a timer fires and how often.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Time to the first run (zero: as soon as possible).
    pub first: Duration,
    /// Time between runs after the first; `None` runs once.
    pub every: Option<Duration>,
    /// Most runs of a repeating timer; `None` repeats until shutdown.
    pub repetitions: Option<u64>,
}

impl Schedule {
    /// Runs once, after `delay`.
    pub fn once(delay: Duration) -> Self {
        Schedule {
            first: delay,
            every: None,
            repetitions: Some(1),
        }
    }

    /// Runs every `period` (first after one period), `repetitions` times or forever.
    pub fn every(period: Duration, repetitions: Option<u64>) -> Self {
        Schedule {
            first: period,
            every: Some(period),
            repetitions,
        }
    }
}

/// Runs the timer until its last run or `shutdown`. `fire(last)` is told whether this run is
/// the last one (so the caller can let go of what the timer kept alive). A repeating timer
/// that falls behind skips the runs it missed instead of bursting.
pub async fn run(schedule: Schedule, shutdown: Shutdown, mut fire: impl FnMut(bool)) {
    let period = schedule
        .every
        .unwrap_or(Duration::MAX)
        .max(Duration::from_millis(1));
    let start = Instant::now() + schedule.first;
    let mut ticks = interval_at(start, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut runs: u64 = 0;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.triggered() => return,
            _ = ticks.tick() => {}
        }
        runs += 1;
        let last = schedule.every.is_none() || schedule.repetitions.is_some_and(|n| runs >= n);
        fire(last);
        if last {
            return;
        }
    }
}

/// Keeps a repeating timer to one run queued or running at a time: a tick that finds the
/// last run still waiting or running is skipped (and counted), so a block slower than its
/// period can't fill the queue with runs no one will catch up with.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    busy: Arc<AtomicBool>,
    skipped: Arc<AtomicU64>,
}

/// A run let through a [`Gate`]: the gate opens again when this is dropped (the run ended,
/// or it was dropped unrun).
#[derive(Debug)]
pub struct Pass(Arc<AtomicBool>);

impl Drop for Pass {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Gate {
    /// An open gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// A pass for this tick's run, or None (the tick is counted as skipped) while the last
    /// run's pass is alive.
    pub fn enter(&self) -> Option<Pass> {
        if self.busy.swap(true, Ordering::AcqRel) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Pass(self.busy.clone()))
    }

    /// Ticks skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_gate_lets_one_run_through_until_its_pass_is_dropped() {
        let gate = Gate::new();
        let pass = gate.enter().expect("open");
        assert!(gate.enter().is_none());
        assert!(gate.enter().is_none());
        assert_eq!(gate.skipped(), 2);
        drop(pass);
        assert!(
            gate.enter().is_some(),
            "open again (the pass was dropped at once)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_shot_timer_fires_once_after_its_delay() {
        let fired = Arc::new(Mutex::new(Vec::new()));
        let log = fired.clone();
        let started = Instant::now();
        run(
            Schedule::once(Duration::from_millis(50)),
            Shutdown::new(),
            move |last| log.lock().unwrap().push((started.elapsed(), last)),
        )
        .await;
        let fired = fired.lock().unwrap();
        assert_eq!(fired.len(), 1);
        assert!(fired[0].0 >= Duration::from_millis(50) && fired[0].1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeating_timer_stops_after_its_repetitions() {
        let mut runs = Vec::new();
        run(
            Schedule::every(Duration::from_secs(1), Some(3)),
            Shutdown::new(),
            |last| runs.push(last),
        )
        .await;
        assert_eq!(runs, vec![false, false, true]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_timer_that_repeats_forever() {
        let shutdown = Shutdown::new();
        let count = Arc::new(Mutex::new(0));
        let counter = count.clone();
        let timer = tokio::spawn(run(
            Schedule::every(Duration::from_millis(10), None),
            shutdown.clone(),
            move |_| *counter.lock().unwrap() += 1,
        ));
        tokio::time::sleep(Duration::from_millis(55)).await;
        shutdown.trigger();
        timer.await.expect("timer task");
        assert_eq!(*count.lock().unwrap(), 5);
    }
}
