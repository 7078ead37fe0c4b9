//! The bridge from IO threads to Ruby worker threads.
//!
//! IO threads push [`Task`]s onto a lock-free queue. `Iodine.threads` Ruby threads run
//! [`work`]: each pops tasks while holding the GVL and releases the GVL only to sleep when
//! the queue is empty. Producers touch the lock only to wake a sleeping worker, and only once
//! per batch, so under load a request costs one queue push and one pop.
//!
//! Workers do not spin before sleeping: a worker yielding its core while holding the GVL
//! made the others wait for Ruby's 100 ms GVL time slice (p99 went from 2 ms to 100 ms
//! with `-t 4`), and the IO threads' park hook already wakes workers at the right time.
//!
//! A sleeping worker gives Ruby an unblocking function: a signal, `Thread#kill` or exit
//! wakes it, it returns to Ruby, and Ruby handles the interrupt at a safe point.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::SegQueue;
use magnus::{Error, Ruby};
use parking_lot::{Condvar, Mutex};

use iodine_engine::reactor::{self, Reactor, STEAL_AFTER};

use crate::gvl::PerProcess;

use crate::gvl;

/// Work for a Ruby thread, provided by whoever needs Ruby to run (Rack, connections,
/// timers, pub/sub): the bridge knows nothing else about it.
pub trait Job: Send + 'static {
    /// Runs with the GVL held. Only a jump (`Thread#kill`, an uncaught `throw`) may come back
    /// as an error: exceptions are the job's to log.
    fn run(self: Box<Self>, ruby: &Ruby) -> Result<(), Error>;
}

/// A queued job.
pub type Task = Box<dyn Job>;

/// Work that lives on between its runs (a connection, whose events come and go): queued by
/// reference, so scheduling it allocates nothing.
pub trait Recurring: Send + Sync + 'static {
    /// Runs with the GVL held; as [`Job::run`].
    fn run(self: Arc<Self>, ruby: &Ruby) -> Result<(), Error>;
}

/// What the queue holds.
enum Queued {
    Once(Task),
    Recurring(Arc<dyn Recurring>),
}

impl Queued {
    fn run(self, ruby: &Ruby) -> Result<(), Error> {
        match self {
            Queued::Once(task) => task.run(ruby),
            Queued::Recurring(work) => work.run(ruby),
        }
    }
}

/// Hooks around the jobs of a batch (Rack uses them to send its answers in batches).
#[derive(Clone, Copy)]
pub struct Hooks {
    /// Before each job.
    pub before_job: fn(),
    /// When the queue ran empty (before sleeping).
    pub queue_empty: fn(),
}

static HOOKS: std::sync::OnceLock<Hooks> = std::sync::OnceLock::new();

/// Sets the hooks (once, at load; a later call changes nothing).
pub fn set_hooks(hooks: Hooks) {
    // jump-safe: OnceLock::set (Rust): a second call changes nothing.
    let _ = HOOKS.set(hooks);
}

struct Bridge {
    queue: SegQueue<Queued>,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// False once shutdown asked workers to leave.
    open: AtomicBool,
    /// Bumped by the unblocking function so sleeping workers return to Ruby.
    interrupts: AtomicU64,
    /// Size of the Ruby worker pool.
    workers: AtomicUsize,
    /// Workers running a task now (`Iodine.stats`).
    busy: AtomicUsize,
    /// The standby drives the reactor (a worker that waits for work wakes it to take over).
    standby_driving: AtomicBool,
}

impl Bridge {
    fn new() -> Self {
        Bridge {
            queue: SegQueue::new(),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            open: AtomicBool::new(false),
            interrupts: AtomicU64::new(0),
            workers: AtomicUsize::new(1),
            busy: AtomicUsize::new(0),
            standby_driving: AtomicBool::new(false),
        }
    }
}

/// This process's bridge: a process forked while serving gets an empty, closed one (the
/// parent's queue may have been copied mid-push, and its tasks belong to the parent's
/// connections), open again once that process starts a server of its own.
static BRIDGE: PerProcess<Bridge> = PerProcess::new(Bridge::new, |_| Bridge::new());

fn bridge() -> &'static Bridge {
    BRIDGE.get()
}

/// `Iodine.on_idle` blocks waiting for the IO threads to go idle (a forked child keeps
/// those registered before its fork, unless a thread held the list then).
static IDLE: PerProcess<Mutex<Vec<u64>>> = PerProcess::new(
    || Mutex::new(Vec::new()),
    // jump-safe: a lock, not a Ruby call.
    |parent| Mutex::new(parent.try_lock().map(|ids| ids.clone()).unwrap_or_default()),
);
static IDLE_WAITING: AtomicBool = AtomicBool::new(false);

/// Runs block `id` once, the next time the server goes idle (`Iodine.on_idle`).
pub fn on_idle(id: u64) {
    IDLE.get().lock().push(id);
    IDLE_WAITING.store(true, Ordering::Release);
}

/// Queues the `on_idle` blocks if there is nothing else to do; true if it queued any.
fn queue_idle_blocks() -> bool {
    if !IDLE_WAITING.load(Ordering::Acquire) || !bridge().queue.is_empty() {
        return false;
    }
    let ids = {
        let mut idle = IDLE.get().lock();
        IDLE_WAITING.store(false, Ordering::Release);
        std::mem::take(&mut *idle)
    };
    let queued = !ids.is_empty();
    for id in ids {
        push(crate::blocks::run_block(id, true));
    }
    queued
}

/// How often a sleeping worker looks at the queue on its own.
const RECHECK: Duration = Duration::from_millis(50);

/// Tasks queued before an IO thread wakes a sleeping worker without waiting to go idle.
const WAKE_BATCH: usize = 16;

/// Queues a task for the next free Ruby worker.
///
/// Sleeping workers are woken when the IO thread runs out of work ([`kick`], from the
/// runtime's park hook) or once a batch has queued up: on a busy core the requests of one
/// poll cycle then cost a single wake-up, and a Ruby worker runs them in one GVL hold.
pub fn push(task: Task) {
    enqueue(Queued::Once(task));
}

/// Queues recurring work (see [`push`]).
pub fn push_recurring(work: Arc<dyn Recurring>) {
    enqueue(Queued::Recurring(work));
}

fn enqueue(task: Queued) {
    if !bridge().open.load(Ordering::Acquire) {
        // No worker will run it (shut down): dropping it answers the client now (a 500, or
        // nothing for a connection being closed) instead of leaving it for a later `start`.
        drop(task);
        return;
    }
    bridge().queue.push(task);
    // Pushed while reading on the reactor: this very thread runs it once the drive ends
    // (after the other connections' reads of this pass), no other thread is woken.
    if reactor::wake_own_drive() {
        return;
    }
    if bridge().queue.len() >= WAKE_BATCH {
        wake_one();
    }
}

/// Wakes a worker for the queued tasks: one sleeping on the condition variable, else the
/// one driving the reactor (if its drive is not already ending).
fn wake_one() {
    if bridge().sleepers.load(Ordering::SeqCst) > 0 {
        let _guard = bridge().lock.lock();
        bridge().wake.notify_one();
    } else if let Some(reactor) = reactor::installed() {
        if reactor.is_driven() {
            reactor.wake();
        }
    }
}

/// Queues again a task a worker started and must finish later (a connection whose turn
/// ended with events left): unlike [`push`], also while the bridge closes, since the workers
/// empty the queue before they leave and a connection's last events (its `on_close`) must run.
pub fn requeue(work: Arc<dyn Recurring>) {
    bridge().queue.push(Queued::Recurring(work));
}

/// Wakes a sleeping worker if tasks are waiting (an IO thread is about to go idle), after
/// queuing the `on_idle` blocks when there is nothing else to do.
pub fn kick() {
    if queue_idle_blocks() {
        let _guard = bridge().lock.lock();
        bridge().wake.notify_one();
        return;
    }
    if !bridge().queue.is_empty() {
        wake_one();
    }
}

/// A worker running a task, counted until dropped (a task that jumps out counts too).
struct Busy;

impl Busy {
    fn new() -> Busy {
        bridge().busy.fetch_add(1, Ordering::Relaxed);
        Busy
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        bridge().busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The worker pool now: (threads, busy, tasks queued); threads is 0 before the server runs.
pub fn pool() -> (usize, usize, usize) {
    let b = bridge();
    let threads = match b.open.load(Ordering::Relaxed) {
        true => b.workers.load(Ordering::Relaxed),
        false => 0,
    };
    (threads, b.busy.load(Ordering::Relaxed), b.queue.len())
}

/// Lets `workers` Ruby threads run (called by `Iodine.start` before they start).
pub fn open(workers: usize) {
    discard_pending(); // anything a previous run left behind belongs to dead connections
    bridge().workers.store(workers.max(1), Ordering::SeqCst);
    bridge().open.store(true, Ordering::SeqCst);
}

/// Tells workers to finish the queued tasks and leave.
pub fn close() {
    bridge().open.store(false, Ordering::SeqCst);
    wake_all();
}

/// Wakes every worker: those sleeping and the one driving the reactor.
fn wake_all() {
    {
        let _guard = bridge().lock.lock();
        bridge().wake.notify_all();
    }
    if let Some(reactor) = reactor::installed() {
        reactor.wake();
    }
}

/// Drops tasks nobody will run (their clients get a 500 from the dropped reply).
pub fn discard_pending() {
    while bridge().queue.pop().is_some() {}
}

/// The body of one Ruby worker thread (`Iodine::Base.worker_loop`).
///
/// Returns `false` once the bridge is closed and the queue drained. An `Err` is a jump an app
/// or an interrupt started (`Thread#kill`, an uncaught `throw`), for Ruby to carry on.
pub fn work(ruby: &Ruby) -> Result<bool, Error> {
    // jump-safe: an Option (hooks not set yet), no Ruby call.
    let hooks = HOOKS.get().copied().unwrap_or(Hooks {
        before_job: || {},
        queue_empty: || {},
    });
    let reactor = reactor::installed();
    let leave = || {
        if let Some(reactor) = &reactor {
            reactor.leave();
        }
    };
    loop {
        while let Some(task) = bridge().queue.pop() {
            (hooks.before_job)();
            let _busy = Busy::new();
            if let Err(jump) = task.run(ruby) {
                leave(); // this thread may not come back: another takes the reactor now
                return Err(jump);
            }
        }
        (hooks.queue_empty)();
        if !bridge().open.load(Ordering::SeqCst) {
            leave();
            return Ok(false);
        }
        if queue_idle_blocks() {
            continue; // the pool ran out of work: that is idle
        }
        let seen = bridge().interrupts.load(Ordering::SeqCst);
        // Interrupts (signals, Thread#raise/kill) are delivered inside `without_gvl`; a
        // worker woken for one that did not raise just looks at the queue again.
        let waited = gvl::without_gvl(ruby, || wait(seen, reactor.as_ref()), interrupt);
        if let Err(jump) = waited {
            leave();
            return Err(jump);
        }
    }
}

/// Whether a waiting worker has something to look at: tasks, a stop, an interrupt.
fn has_work(seen: u64) -> bool {
    !bridge().queue.is_empty()
        || !bridge().open.load(Ordering::SeqCst)
        || bridge().interrupts.load(Ordering::SeqCst) != seen
}

/// Waits for work without the GVL: by driving the reactor when this thread can take its
/// turn (then the connections' callbacks come back to run here), else on the condition
/// variable.
fn wait(seen: u64, reactor: Option<&Arc<Reactor>>) {
    if let Some(reactor) = reactor {
        if reactor.try_turn() {
            reactor.drive(&|| has_work(seen));
            if !has_work(seen) {
                // A whole drive (RECHECK) without work: quiet, so the pages the burst
                // before it emptied go back to the system now.
                gvl::return_freed_memory();
            }
            return;
        }
    }
    sleep(seen, reactor);
}

/// Runs the tasks queued now on this thread, without waiting for more (the cluster's master,
/// which has no worker pool, calls it from its main loop).
pub fn run_pending(ruby: &Ruby) -> Result<(), Error> {
    queue_idle_blocks();
    while let Some(task) = bridge().queue.pop() {
        task.run(ruby)?;
    }
    Ok(())
}

/// Parks until there is work, the bridge closes, Ruby interrupts, or the reactor needs a
/// driver (runs without the GVL).
fn sleep(seen: u64, reactor: Option<&Arc<Reactor>>) {
    let mut guard = bridge().lock.lock();
    bridge().sleepers.fetch_add(1, Ordering::SeqCst);
    // The standby reads the connections while no worker can: this one can now.
    if bridge().standby_driving.load(Ordering::SeqCst) {
        if let Some(reactor) = reactor {
            reactor.wake();
        }
    }
    loop {
        if has_work(seen) {
            break;
        }
        // The reactor's holder ran application code for too long (a slow callback): this
        // thread takes over reading its connections.
        if reactor.is_some_and(|r| r.wants_driver()) {
            break;
        }
        // Pushes notify only per batch or when an IO thread goes idle; an IO thread that stays
        // busy with other connections could hold back a lone request, so look every 50 ms
        // (measured idle cost: 10 ms used 0.9% of a core with 2 workers, 1 s none). While the
        // reactor's holder is away running Ruby, look as often as it may be taken over.
        let away = reactor.and_then(|r| r.away_for()).is_some();
        bridge()
            .wake
            .wait_for(&mut guard, if away { STEAL_AFTER } else { RECHECK });
    }
    bridge().sleepers.fetch_sub(1, Ordering::SeqCst);
}

/// How often the standby collects its allocator heap.
const STANDBY_COLLECT_EVERY: Duration = Duration::from_secs(1);

/// How long the standby naps while the reactor's turn is held by a worker that is not away
/// running application code: nothing can need taking over before it goes, so an idle server
/// wakes the standby 20 times a second instead of 200 (a slow call that starts meanwhile is
/// taken over within this plus [`STEAL_AFTER`]).
const STANDBY_QUIET_NAP: Duration = Duration::from_millis(50);

/// The reactor's standby: a plain thread (it never runs Ruby) that drives the reactor while
/// every Ruby worker is busy in application code and the turn's holder has been away for
/// [`STEAL_AFTER`]. So a slow app call with `-t 1` (or as many slow calls as there are
/// workers) does not stop the other connections: the answers already made are written,
/// static files are served, new requests are read and queued, streamed bodies flow. It hands
/// the turn back as soon as a worker waits for work (or the bridge closes), and ends once
/// the reactor is gone.
pub fn standby(reactor: std::sync::Weak<Reactor>) {
    let b = bridge();
    let mut collected = Instant::now();
    let mut nap = STEAL_AFTER;
    loop {
        std::thread::sleep(nap);
        let Some(reactor) = reactor.upgrade() else {
            return;
        };
        // What it allocated while driving (connections' buffers, under a busy worker) is
        // freed later by whoever drives then; those pages stay in this thread's heap until
        // it collects, so it collects about once a second.
        if collected.elapsed() >= STANDBY_COLLECT_EVERY {
            gvl::return_freed_memory();
            collected = Instant::now();
        }
        let wanted = reactor.wants_driver();
        nap = if wanted || reactor.away_for().is_some() {
            STEAL_AFTER
        } else {
            STANDBY_QUIET_NAP
        };
        let idle_worker = b.sleepers.load(Ordering::SeqCst) > 0;
        if !b.open.load(Ordering::SeqCst) || idle_worker || !wanted {
            continue;
        }
        if !reactor.try_turn() {
            continue;
        }
        b.standby_driving.store(true, Ordering::SeqCst);
        reactor.drive_standby(&|| {
            b.sleepers.load(Ordering::SeqCst) > 0 || !b.open.load(Ordering::SeqCst)
        });
        b.standby_driving.store(false, Ordering::SeqCst);
        reactor.leave();
        // The worker that waits takes the turn now (its sleep looks at `wants_driver`).
        let _guard = b.lock.lock();
        b.wake.notify_all();
    }
}

/// The unblocking function: wake every sleeping worker so it returns to Ruby.
fn interrupt() {
    {
        let _guard = bridge().lock.lock();
        bridge().interrupts.fetch_add(1, Ordering::SeqCst);
    }
    wake_all();
}
