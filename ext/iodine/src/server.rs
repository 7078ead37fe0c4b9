//! The running server of this process: listeners bound by `Iodine.listen`, connections made
//! by `Iodine.connect` and `Iodine.attach_fd`, the tokio runtime built by `Iodine.start`
//! (never before, so a forking master has no runtime), and the stop flag the main thread
//! checks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use iodine_engine::http::{serve, Handler, HttpSettings};
use iodine_engine::raw::{self, RawSettings};
use iodine_engine::reactor::Reactor;
use iodine_engine::server::{BoundListener, Listener, Shutdown};
use iodine_engine::timers::{self, Schedule};
use parking_lot::Mutex;
use tokio::runtime::{Handle, Runtime};
use tokio::task::AbortHandle;

use magnus::{Error, Ruby};

use crate::gvl::{self, PerProcess};

/// The task of a listener or a connection, made inside the runtime (sockets must meet
/// their reactor there).
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Makes a [`Task`] once the runtime runs.
type Starter = Box<dyn FnOnce(&Shutdown) -> std::io::Result<Task> + Send>;

/// Makes a listener's accept loop once the runtime runs.
type Serve = Box<dyn FnOnce(Listener, Shutdown) -> Task + Send>;

/// Something waiting for `start`.
enum Pending {
    /// A listener, kept apart from its accept loop so that a cluster's master can spread it
    /// over the workers ([`spread_listeners`]), and where its accept loop runs.
    Listener(BoundListener, Serve, Home),
    /// A connection.
    Connection(Starter),
}

impl Pending {
    /// The listener's description, for the banner (None for a connection).
    fn described(&self) -> Option<String> {
        match self {
            Pending::Listener(bound, ..) => Some(bound.describe()),
            Pending::Connection(_) => None,
        }
    }

    /// Its task, in the runtime: a listener serves the socket of this process's worker slot.
    fn start(self, shutdown: &Shutdown) -> std::io::Result<Task> {
        match self {
            Pending::Listener(bound, serve, _) => {
                let slot = WORKER_SLOT.load(std::sync::atomic::Ordering::Acquire);
                Ok(serve(
                    bound.for_worker(slot).into_async()?,
                    shutdown.clone(),
                ))
            }
            Pending::Connection(start) => start(shutdown),
        }
    }
}

struct Running {
    runtime: Runtime,
    shutdown: Shutdown,
}

#[derive(Default)]
struct State {
    pending: Vec<Pending>,
    /// Timers (and `Iodine.run` blocks) made before `start`: id of the kept block, schedule.
    timers: Vec<(u64, Schedule)>,
    running: Option<Running>,
    stop_requested: bool,
}

/// This process's reactor (a forked child starts with none: its parent's is forgotten, never
/// touched). Found by the engine through [`reactor`].
static REACTOR: PerProcess<Mutex<Option<Arc<Reactor>>>> =
    PerProcess::new(|| Mutex::new(None), |_| Mutex::new(None));

/// The process's reactor while the server runs (the engine's locator).
pub fn reactor() -> Option<Arc<Reactor>> {
    REACTOR.get().lock().clone()
}

/// This process's slot among a cluster's workers: the socket of a spread listener it serves
/// (0 outside a cluster).
static WORKER_SLOT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A forked worker's end of its socket pair to the master, for `start`.
static CLUSTER_LINK: Mutex<Option<std::os::unix::net::UnixStream>> = Mutex::new(None);

/// Set when a worker's link to its master closed: the master died.
static MASTER_LOST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The write end of the pipe the main thread waits on (-1: none).
static WAKE_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Keeps a forked worker's end of its pair to the master (`start` links it), and its slot
/// (which socket of each spread listener it serves).
pub fn set_cluster_link(stream: std::os::unix::net::UnixStream, slot: usize) {
    WORKER_SLOT.store(slot, std::sync::atomic::Ordering::Release);
    *CLUSTER_LINK.lock() = Some(stream);
}

/// Whether this worker lost its master.
pub fn master_lost() -> bool {
    MASTER_LOST.load(std::sync::atomic::Ordering::Acquire)
}

/// The descriptor to write to so the main thread looks at the stop flag (-1: none).
pub fn set_wake_fd(fd: i32) {
    WAKE_FD.store(fd, std::sync::atomic::Ordering::Release);
}

/// Asks the main thread to stop, from any thread (no Ruby needed).
fn stop_from_rust() {
    state().stop_requested = true;
    gvl::write_wake(WAKE_FD.load(std::sync::atomic::Ordering::Acquire));
}

/// This process's server. A process forked while it runs (an app calling `Process.fork`)
/// starts with no runtime: it inherits what waits for a `start` (listeners, timers), and its
/// own `start` builds a runtime of its own; the parent's is forgotten, never touched (its
/// locks were copied mid-operation, its threads are not here) and never dropped.
static STATE: PerProcess<Mutex<State>> = PerProcess::new(
    || Mutex::new(State::default()),
    |parent| {
        // Only Ruby threads (holding the GVL, as the forking thread did) take this lock
        // for long; if another thread held it at the fork, nothing can be inherited.
        let Some(mut parent) = parent.try_lock() else {
            return Mutex::new(State::default());
        };
        std::mem::forget(parent.running.take());
        Mutex::new(State {
            pending: std::mem::take(&mut parent.pending),
            timers: std::mem::take(&mut parent.timers),
            running: None,
            stop_requested: false,
        })
    },
);

fn state() -> parking_lot::MutexGuard<'static, State> {
    STATE.get().lock()
}

/// Runs the kept block `id` on `schedule`: from `start` on, or now when already running.
/// A running cluster's master (no runtime) runs it in its own loop.
pub fn add_timer(id: u64, schedule: Schedule) {
    {
        let mut state = state();
        if let Some(running) = &state.running {
            return spawn_timer(running, id, schedule);
        }
        if !crate::ruby_api::cluster::is_master() {
            return state.timers.push((id, schedule));
        }
    }
    crate::ruby_api::cluster::add_master_timer(id, schedule);
}

/// Timers that may still fire, by block id (forgotten at `finish` if shutdown cut them
/// short), with the handle that stops them.
/// A forked child's are empty: its parent's handles point into the parent's runtime.
static ACTIVE_TIMERS: PerProcess<Mutex<Vec<(u64, AbortHandle)>>> =
    PerProcess::new(|| Mutex::new(Vec::new()), |_| Mutex::new(Vec::new()));

/// Ticks of repeating timers skipped because the last run was still queued or running
/// (for the stats).
static SKIPPED_TICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Timer ticks skipped so far in this process (a block slower than its period).
pub fn skipped_timer_ticks() -> u64 {
    SKIPPED_TICKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A timer's run, holding its gate's pass until it ran (or was dropped unrun).
struct Gated {
    id: u64,
    run: crate::bridge::Task,
    pass: timers::Pass,
}

impl crate::bridge::Job for Gated {
    fn run(self: Box<Self>, ruby: &magnus::Ruby) -> Result<(), Error> {
        let Gated { id, run, pass } = *self;
        let ran = run.run(ruby);
        // The timer's last tick came while this ran: nothing runs the block again.
        // jump-safe: `ran` is returned as it is; after a jump no Ruby runs here.
        if pass.finish() && ran.is_ok() {
            crate::blocks::forget(ruby, id);
        }
        ran
    }
}

/// Each time the timer fires, a worker runs the block (and forgets it after its last run).
/// A repeating timer never has more than one run queued or running: a tick that finds the
/// last one not done yet is skipped (the C gem's timers behave the same way).
fn spawn_timer(running: &Running, id: u64, schedule: Schedule) {
    let shutdown = running.shutdown.clone();
    let gate = timers::Gate::new();
    let task = running
        .runtime
        .spawn(timers::run(schedule, shutdown, move |last| {
            if last {
                ACTIVE_TIMERS.get().lock().retain(|(t, _)| *t != id);
            }
            match gate.enter(last) {
                timers::Tick::Run(pass) => crate::bridge::push(Box::new(Gated {
                    id,
                    run: crate::blocks::run_block(id, last),
                    pass,
                })),
                // The run still out forgets the block when a last tick was handed to it.
                timers::Tick::Skipped | timers::Tick::HandedOver => {
                    SKIPPED_TICKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    if !task.is_finished() {
        ACTIVE_TIMERS.get().lock().push((id, task.abort_handle()));
    }
}

/// Stops the timer of block `id` (`Iodine.cancel_timer`); false if none was scheduled.
pub fn cancel_timer(id: u64) -> bool {
    let mut state = state();
    let before = state.timers.len();
    state.timers.retain(|(t, _)| *t != id);
    if state.timers.len() != before {
        drop(state);
        // A running cluster's master runs its own copy of a timer made before `start`.
        crate::ruby_api::cluster::cancel_master_timer(id);
        return true;
    }
    drop(state);
    if crate::ruby_api::cluster::cancel_master_timer(id) {
        return true;
    }
    let mut active = ACTIVE_TIMERS.get().lock();
    match active.iter().position(|(t, _)| *t == id) {
        Some(i) => {
            active.swap_remove(i).1.abort();
            true
        }
        None => false,
    }
}

/// The blocks of timers that shutdown stopped before their last run (for the caller to
/// forget: nothing will run them).
pub fn stopped_timers() -> Vec<u64> {
    std::mem::take(&mut *ACTIVE_TIMERS.get().lock())
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Adds an HTTP listener: served at `start`, or right away when already running.
pub fn add_http(
    bound: BoundListener,
    settings: HttpSettings,
    handler: Arc<dyn Handler>,
) -> std::io::Result<()> {
    // Plain HTTP is accepted and served on the reactor: a request is read, run and answered
    // on one worker thread, and a new connection needs no move. A TLS handshake is costly
    // work for the IO threads; only its finished connection moves to the reactor.
    let home = match settings.tls {
        None => Home::Reactor,
        Some(_) => Home::Io,
    };
    add_listener(bound, home, move |listener, shutdown| {
        Box::pin(serve(listener, settings, handler, shutdown))
    })
}

/// Adds a raw listener (`accept` makes each connection's link and events; with `tls`, after
/// the handshake).
pub fn add_raw(
    bound: BoundListener,
    settings: RawSettings,
    tls: Option<iodine_engine::tls::Acceptor>,
    accept: Arc<dyn raw::Accept>,
) -> std::io::Result<()> {
    add_listener(bound, Home::Io, move |listener, shutdown| {
        Box::pin(raw::serve(listener, settings, tls, accept, shutdown))
    })
}

/// Adds a listener whose accept loop `serve` makes once the runtime runs.
fn add_listener(
    bound: BoundListener,
    home: Home,
    serve: impl FnOnce(Listener, Shutdown) -> Task + Send + 'static,
) -> std::io::Result<()> {
    add(Pending::Listener(bound, Box::new(serve), home))
}

/// Where a listener's accept loop runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Home {
    /// On the IO threads' runtime.
    Io,
    /// On the process's reactor, which the Ruby workers drive.
    Reactor,
}

/// Adds a connection's task (a client, an attached socket): run at `start`, or now.
pub fn add_connection(
    start: impl FnOnce(&Shutdown) -> std::io::Result<Task> + Send + 'static,
) -> std::io::Result<()> {
    add(Pending::Connection(Box::new(start)))
}

fn add(pending: Pending) -> std::io::Result<()> {
    let mut state = state();
    match &state.running {
        Some(running) => spawn(running, pending),
        None => {
            state.pending.push(pending);
            Ok(())
        }
    }
}

/// Runs a pending task on the running runtime.
fn spawn(running: &Running, pending: Pending) -> std::io::Result<()> {
    if let Pending::Listener(_, _, Home::Reactor) = &pending {
        if let Some(reactor) = reactor() {
            let _enter = reactor.enter();
            let task = pending.start(&running.shutdown)?;
            reactor.spawn(task);
            return Ok(());
        }
    }
    let _enter = running.runtime.enter();
    let task = pending.start(&running.shutdown)?;
    running.runtime.spawn(task);
    Ok(())
}

/// A cluster's master, before its first fork: each TCP listener waiting for `start` becomes
/// one socket per worker slot, so that the kernel spreads new connections over the workers
/// (see [`iodine_engine::server::Spread`]). The master keeps them all (it never starts);
/// each worker serves the socket of its slot.
pub fn spread_listeners(workers: usize) {
    let mut state = state();
    state.pending = std::mem::take(&mut state.pending)
        .into_iter()
        .map(|pending| match pending {
            Pending::Listener(bound, serve, home) => {
                Pending::Listener(bound.spread(workers), serve, home)
            }
            other => other,
        })
        .collect();
}

/// The timers (and `Iodine.run` blocks) made before `start`: a cluster's master runs them
/// too, and leaves them for the workers it forks.
pub fn pending_timers() -> Vec<(u64, Schedule)> {
    state().timers.clone()
}

/// Drops what waits for a `start` that will not come (a cluster's master, at the end): the
/// listeners close, and the Unix socket files this process created are removed.
pub fn discard_pending() {
    let pending = std::mem::take(&mut state().pending);
    drop(pending);
}

/// The listeners waiting for `start` (for the cluster master's banner).
pub fn pending_listeners() -> Vec<String> {
    state()
        .pending
        .iter()
        .filter_map(Pending::described)
        .collect()
}

/// Builds the runtime and starts every pending listener.
pub fn start(io_threads: usize) -> std::io::Result<Vec<String>> {
    let mut state = state();
    if state.running.is_some() {
        return Err(std::io::Error::other("Iodine already running!"));
    }
    gvl::running_threads();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads.max(1))
        .thread_name("iodine-io")
        .on_thread_park(crate::bridge::kick)
        .enable_all()
        .build()?;
    // Plain HTTP listeners and long-lived connections run on the reactor the Ruby workers
    // drive (requests and callbacks run on the thread that reads them).
    let reactor = iodine_engine::reactor::Reactor::new()?;
    // It reads the reactor's connections while every worker runs application code; it ends
    // once the reactor is dropped.
    let weak = Arc::downgrade(&reactor);
    std::thread::Builder::new()
        .name("iodine-standby".into())
        .spawn(move || crate::bridge::standby(weak))?;
    *REACTOR.get().lock() = Some(reactor);
    let running = Running {
        runtime,
        shutdown: Shutdown::new(),
    };
    let mut described = Vec::new();
    running.runtime.spawn(crate::rack::flusher());
    iodine_engine::log::start_writer();
    for p in state.pending.drain(..) {
        described.extend(p.described());
        spawn(&running, p)?;
    }
    for (id, schedule) in state.timers.drain(..) {
        spawn_timer(&running, id, schedule);
    }
    if let Some(stream) = CLUSTER_LINK.lock().take() {
        let _enter = running.runtime.enter();
        let lost = || {
            MASTER_LOST.store(true, std::sync::atomic::Ordering::Release);
            stop_from_rust();
        };
        let link = iodine_engine::cluster::worker::start(stream, lost)?;
        iodine_engine::cluster::set_uplink(Some(link));
    }
    // The stop flag is left as it is: a stop asked for during the boot hooks (a TERM that
    // reached a worker as it booted) is honoured as soon as the server runs. `Iodine.start`
    // clears it before the hooks.
    state.running = Some(running);
    Ok(described)
}

/// Whether the server runs in this process.
pub fn is_running() -> bool {
    state().running.is_some()
}

/// A handle to the runtime, for Ruby threads that wait on async work.
pub fn runtime_handle() -> Option<Handle> {
    state().running.as_ref().map(|r| r.runtime.handle().clone())
}

/// Asks the main thread to stop the server (`Iodine.stop`, INT/TERM traps).
pub fn request_stop() {
    state().stop_requested = true;
}

/// Whether `Iodine.stop` (or a trap) asked for a stop, whether or not the server runs here
/// (the cluster's master never runs one).
pub fn stop_flag() -> bool {
    state().stop_requested
}

/// Clears the stop flag (a master starting its cluster).
pub fn clear_stop_flag() {
    state().stop_requested = false;
}

/// Whether a stop was requested since `start`.
pub fn stop_requested() -> bool {
    let state = state();
    state.stop_requested || state.running.is_none()
}

/// Graceful shutdown, step one: every listener stops accepting and every connection is told
/// to finish (in-flight requests go on). Returns at once: the caller waits (in Ruby, where
/// signals are handled: a second INT must be heard) until [`live_connections`] is 0 or its
/// grace period is over.
pub fn begin_drain() {
    if let Some(r) = &state().running {
        r.shutdown.trigger();
    }
}

/// Connections still open (0 when the server is not running).
pub fn live_connections() -> usize {
    state().running.as_ref().map_or(0, |r| r.shutdown.live())
}

/// Graceful shutdown, step two: drop the runtime (after the Ruby workers left), never while
/// holding the GVL: its IO threads get up to 2 s to end their tasks.
pub fn finish(ruby: &Ruby) -> Result<(), Error> {
    let Some(running) = state().running.take() else {
        return Ok(());
    };
    crate::ruby_api::redis_stopped();
    iodine_engine::log::stop_writer(Duration::from_secs(1));
    let reactor = REACTOR.get().lock().take();
    let mut shutdown = move || {
        running.runtime.shutdown_timeout(Duration::from_secs(2));
        // The workers left: nobody drives it; its listeners and sessions are dropped here
        // (the standby may hold it for a moment: it lets go once it sees the bridge closed).
        if let Some(reactor) = reactor {
            let since = std::time::Instant::now();
            while Arc::strong_count(&reactor) > 1 && since.elapsed() < Duration::from_millis(200) {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(reactor);
        }
    };
    let mut delivered = Ok(());
    // An interrupt pending (a signal, Thread#raise) keeps `try_without_gvl` from running the
    // shutdown: deliver it, remember what it raised, and try again.
    for _ in 0..4 {
        match gvl::try_without_gvl(shutdown, &|| {}) {
            Ok(()) => {
                // The IO threads are gone: a fork from now on copies no thread's state.
                gvl::threads_stopped();
                return delivered;
            }
            Err(unrun) => {
                shutdown = unrun;
                if let Err(e) = ruby.thread_check_ints() {
                    let jump = crate::errors::is_jump(&e);
                    delivered = delivered.and(Err(e));
                    if jump {
                        break; // no Ruby may run before a jump reached Ruby
                    }
                }
            }
        }
    }
    // Still interrupted: a plain thread drops the runtime, so this one never blocks on it.
    // jump-safe: a thread that could not be spawned leaves the runtime undropped (forgotten), never a Ruby error.
    let _ = std::thread::Builder::new()
        .name("iodine-shutdown".into())
        .spawn(shutdown);
    delivered
}
