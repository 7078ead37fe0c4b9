//! Timers: `run_after` and `run_every` without Ruby. A timer calls its `fire` closure on an
//! IO thread (the binding hands the work to a Ruby worker from there) and ends at shutdown.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
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
    /// [`IDLE`], [`BUSY`] or [`BUSY_LAST`] (a run is out, and the timer's last tick was
    /// handed to it).
    state: Arc<AtomicU8>,
    skipped: Arc<AtomicU64>,
}

const IDLE: u8 = 0;
const BUSY: u8 = 1;
const BUSY_LAST: u8 = 2;

/// A run let through a [`Gate`]: the gate opens again when it [`finish`](Pass::finish)es or
/// is dropped (unrun).
#[derive(Debug)]
pub struct Pass(Arc<AtomicU8>);

impl Pass {
    /// The run is over: opens the gate. True when the timer's last tick came while it ran
    /// (the run's owner then ends the timer: nothing else will).
    pub fn finish(self) -> bool {
        self.0.swap(IDLE, Ordering::AcqRel) == BUSY_LAST
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.0.store(IDLE, Ordering::Release);
    }
}

/// What a tick gets from the gate.
#[derive(Debug)]
pub enum Tick {
    /// Run now, holding this pass.
    Run(Pass),
    /// Skipped: a run is still out.
    Skipped,
    /// The last tick, skipped: the run still out was told, and its pass's `finish` says so.
    HandedOver,
}

impl Gate {
    /// An open gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// A pass for this tick's run, unless the last run is still out (the tick is skipped and
    /// counted; a `last` tick is handed over to that run).
    pub fn enter(&self, last: bool) -> Tick {
        loop {
            match self
                .state
                .compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Tick::Run(Pass(self.state.clone())),
                Err(_) if !last => {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    return Tick::Skipped;
                }
                Err(_) => {
                    // The run out may end meanwhile: then the last tick runs itself.
                    if self
                        .state
                        .compare_exchange(BUSY, BUSY_LAST, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        self.skipped.fetch_add(1, Ordering::Relaxed);
                        return Tick::HandedOver;
                    }
                }
            }
        }
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
    fn a_gate_lets_one_run_through_until_its_pass_is_done() {
        let gate = Gate::new();
        let Tick::Run(pass) = gate.enter(false) else {
            panic!("open")
        };
        assert!(matches!(gate.enter(false), Tick::Skipped));
        assert!(matches!(gate.enter(false), Tick::Skipped));
        assert_eq!(gate.skipped(), 2);
        assert!(!pass.finish(), "no last tick came");
        let Tick::Run(unrun) = gate.enter(false) else {
            panic!("open again")
        };
        drop(unrun);
        assert!(
            matches!(gate.enter(false), Tick::Run(_)),
            "a dropped pass opens it"
        );
    }

    #[test]
    fn a_last_tick_that_finds_a_run_out_hands_the_end_over_to_it() {
        let gate = Gate::new();
        let Tick::Run(pass) = gate.enter(false) else {
            panic!("open")
        };
        assert!(matches!(gate.enter(true), Tick::HandedOver));
        assert!(pass.finish(), "the run in progress ends the timer");
        assert!(
            matches!(gate.enter(true), Tick::Run(_)),
            "idle: the last tick runs"
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
