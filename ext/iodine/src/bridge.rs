//! The bridge from IO threads to Ruby worker threads.
//!
//! IO threads push [`Task`]s onto a lock-free queue. `Iodine.threads` Ruby threads run
//! [`work`]: each pops tasks while holding the GVL and releases the GVL only to sleep when
//! the queue is empty. Producers touch the lock only when a worker sleeps, so under load a
//! request costs one queue push and one pop.
//!
//! A sleeping worker gives Ruby an unblocking function: a signal, `Thread#kill` or exit
//! wakes it, it returns to Ruby, and Ruby handles the interrupt at a safe point.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_queue::SegQueue;
use magnus::{Error, Ruby};
use parking_lot::{Condvar, Mutex};

use crate::gvl;
use crate::rack::{RackJob, Replies};

/// Work for a Ruby thread.
pub enum Task {
    /// A Rack request.
    Rack(RackJob),
}

impl Task {
    fn run(self, ruby: &Ruby, replies: &mut Replies) -> Result<(), Error> {
        match self {
            Task::Rack(job) => job.run(ruby, replies),
        }
    }
}

/// How many times a worker yields its core, looking for work, before it parks. On a busy
/// server the IO threads queue the next requests meanwhile; parking and waking cost more.
const SPIN_YIELDS: usize = 4;

struct Bridge {
    queue: SegQueue<Task>,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// False once shutdown asked workers to leave.
    open: AtomicBool,
    /// Bumped by the unblocking function so sleeping workers return to Ruby.
    interrupts: AtomicU64,
    /// Whether a worker is spinning (only one at a time: several spinners slow everyone).
    spinning: AtomicBool,
    /// Size of the Ruby worker pool.
    workers: AtomicUsize,
}

static BRIDGE: Bridge = Bridge {
    queue: SegQueue::new(),
    sleepers: AtomicUsize::new(0),
    lock: Mutex::new(()),
    wake: Condvar::new(),
    open: AtomicBool::new(false),
    interrupts: AtomicU64::new(0),
    spinning: AtomicBool::new(false),
    workers: AtomicUsize::new(1),
};

/// Queues a task for the next free Ruby worker.
pub fn push(task: Task) {
    BRIDGE.queue.push(task);
    if BRIDGE.sleepers.load(Ordering::SeqCst) > 0 {
        let _guard = BRIDGE.lock.lock();
        BRIDGE.wake.notify_one();
    }
}

/// Lets `workers` Ruby threads run (called by `Iodine.start` before they start).
pub fn open(workers: usize) {
    BRIDGE.workers.store(workers.max(1), Ordering::SeqCst);
    BRIDGE.open.store(true, Ordering::SeqCst);
}

/// Tells workers to finish the queued tasks and leave.
pub fn close() {
    BRIDGE.open.store(false, Ordering::SeqCst);
    let _guard = BRIDGE.lock.lock();
    BRIDGE.wake.notify_all();
}

/// Drops tasks nobody will run (their clients get a 500 from the dropped reply).
pub fn discard_pending() {
    while BRIDGE.queue.pop().is_some() {}
}

enum Woke {
    Work,
    Interrupted,
    Closed,
}

/// The body of one Ruby worker thread (`Iodine::Base.worker_loop`).
///
/// Returns `true` when Ruby should call it again (after handling an interrupt), `false`
/// once the bridge is closed and the queue drained.
pub fn work(ruby: &Ruby) -> Result<bool, Error> {
    let mut replies = Replies::new(BRIDGE.workers.load(Ordering::Relaxed));
    loop {
        while let Some(task) = BRIDGE.queue.pop() {
            task.run(ruby, &mut replies)?;
        }
        replies.flush();
        if spin() {
            continue;
        }
        if !BRIDGE.open.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let seen = BRIDGE.interrupts.load(Ordering::SeqCst);
        match gvl::without_gvl(|| sleep(seen), interrupt) {
            Some(Woke::Work) => continue,
            Some(Woke::Closed) => continue, // drain what is left, then leave
            Some(Woke::Interrupted) | None => return Ok(true),
        }
    }
}

/// Yields the core a few times waiting for work; true when work arrived. Only one worker
/// spins at a time.
fn spin() -> bool {
    if BRIDGE.spinning.swap(true, Ordering::AcqRel) {
        return false;
    }
    let mut found = false;
    for _ in 0..SPIN_YIELDS {
        std::thread::yield_now();
        if !BRIDGE.queue.is_empty() {
            found = true;
            break;
        }
    }
    BRIDGE.spinning.store(false, Ordering::Release);
    found
}

/// Parks until there is work, the bridge closes, or Ruby interrupts (runs without the GVL).
fn sleep(seen: u64) -> Woke {
    let mut guard = BRIDGE.lock.lock();
    BRIDGE.sleepers.fetch_add(1, Ordering::SeqCst);
    let woke = loop {
        if !BRIDGE.queue.is_empty() {
            break Woke::Work;
        }
        if !BRIDGE.open.load(Ordering::SeqCst) {
            break Woke::Closed;
        }
        if BRIDGE.interrupts.load(Ordering::SeqCst) != seen {
            break Woke::Interrupted;
        }
        // The timeout is only a safety net; every state change notifies.
        BRIDGE.wake.wait_for(&mut guard, Duration::from_secs(1));
    };
    BRIDGE.sleepers.fetch_sub(1, Ordering::SeqCst);
    woke
}

/// The unblocking function: wake every sleeping worker so it returns to Ruby.
fn interrupt() {
    let _guard = BRIDGE.lock.lock();
    BRIDGE.interrupts.fetch_add(1, Ordering::SeqCst);
    BRIDGE.wake.notify_all();
}
