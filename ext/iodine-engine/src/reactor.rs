//! The reactor: a current-thread tokio runtime that the application's own threads take turns
//! to drive, so a long-lived connection's callbacks can run on the thread that read its
//! messages, as the C gem's reactor threads do.
//!
//! Why: handing each message from an IO thread to an application thread and the answer back
//! costs two wake-ups. On one core that is a context switch each way (measured on the 32 B
//! WebSocket echo: 0.17 switches per message through the handoff, 0.003 for the C gem). Here
//! the thread that drives the reactor reads, returns from [`Reactor::drive`] once the
//! application has work, runs it, and drives again: the writes the work made go out on the
//! same thread, in one pass.
//!
//! The rules:
//! - One thread drives at a time: it holds the **turn**. It keeps the turn while it runs
//!   application code ("away"), so a busy thread alternates reading and running with no
//!   other thread involved.
//! - A thread that is away too long ([`STEAL_AFTER`], a slow or blocking callback) has its
//!   turn taken by an idle one ([`Reactor::try_turn`]), so connections keep being read.
//! - While the turn's holder is away, wakes of sessions ([`wake`]) are deferred: they wait in
//!   the reactor and are made inside the next drive, where waking a task costs no system call.
//!   If another thread drives meanwhile, it is told at once. Every wake of a session's task
//!   goes this way (its waker is wrapped when it is spawned), so the answers a worker sends
//!   from application code cost no write to the poller's eventfd each (measured on the Rack
//!   hello: 1.17 such writes per request before, 0.12 after).
//! - When every thread that could drive is away in application code, a **standby** thread
//!   that runs no application code drives ([`Reactor::drive_standby`]: work the sessions
//!   queue does not end its drive), and hands the turn back once a worker waits for work.
//!   Without it, one slow app call with one worker would stop every connection.
//!
//! Sessions are put on the process's reactor with [`spawn_session`] once one is found
//! ([`set_locator`]: the Ruby binding keeps one per process, made when its workers start);
//! without one they run on the caller's runtime, as in the engine's own tests and examples.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Poll, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures_util::future::{Either, FutureExt};
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use crate::server::Stream;

/// How long the turn's holder may run application code before an idle thread takes the turn.
pub const STEAL_AFTER: Duration = Duration::from_millis(5);

/// The longest one drive lasts without work (the caller looks at its own state then).
const RECHECK: Duration = Duration::from_millis(50);

/// A current-thread runtime driven by whichever thread holds its turn.
pub struct Reactor {
    runtime: tokio::runtime::Runtime,
    turn: Mutex<Turn>,
    /// The waker of the drive in progress (its `block_on` future).
    driver: AtomicWaker,
    /// A thread is inside [`Reactor::drive`].
    driving: AtomicBool,
    /// Wakes made while the turn's holder was away.
    deferred: Mutex<Vec<Waker>>,
    /// The drives' timer (made by the first drive: it belongs to the runtime).
    recheck: Mutex<Option<Pin<Box<tokio::time::Sleep>>>>,
}

/// Who holds the turn, and since when they are away from the reactor.
#[derive(Default)]
struct Turn {
    owner: Option<ThreadId>,
    away_since: Option<Instant>,
}

impl Turn {
    /// Nobody holds it, or its holder has been away for [`STEAL_AFTER`] or more.
    fn is_free(&self) -> bool {
        match (self.owner, self.away_since) {
            (None, _) => true,
            (Some(_), Some(since)) => since.elapsed() >= STEAL_AFTER,
            (Some(_), None) => false,
        }
    }
}

thread_local! {
    /// Set while this thread holds a reactor's turn and runs application code: its wakes
    /// are deferred to that reactor.
    static AWAY: RefCell<Option<Arc<Reactor>>> = const { RefCell::new(None) };
    /// Set while this thread drives a reactor (that one).
    static DRIVING: RefCell<Option<Arc<Reactor>>> = const { RefCell::new(None) };
    /// Set while this thread runs a reactor's tasks (a worker's drive or the standby's).
    static ON_REACTOR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Reactor {
    /// A new reactor (its runtime has IO and timers).
    pub fn new() -> std::io::Result<Arc<Reactor>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Arc::new(Reactor {
            runtime,
            turn: Mutex::new(Turn::default()),
            driver: AtomicWaker::new(),
            driving: AtomicBool::new(false),
            deferred: Mutex::new(Vec::new()),
            recheck: Mutex::new(None),
        }))
    }

    /// Runs `future` on the reactor (it makes progress while some thread drives).
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.runtime.spawn(future));
    }

    /// Enters the reactor's runtime (sockets made meanwhile register with its poller), for
    /// what is then [`Reactor::spawn`]ed there.
    pub fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.runtime.enter()
    }

    /// Takes the turn when it is free, already ours, or held by a thread away for longer
    /// than [`STEAL_AFTER`]. False: another thread drives or will shortly (this thread is
    /// then no longer away, and what it deferred is woken).
    pub fn try_turn(self: &Arc<Self>) -> bool {
        let me = std::thread::current().id();
        let taken = {
            let mut turn = self.turn.lock();
            let free = turn.owner == Some(me) || turn.is_free();
            if free {
                turn.owner = Some(me);
                turn.away_since = None;
            }
            free
        };
        if !taken {
            self.come_back();
        }
        taken
    }

    /// Drives the reactor until `done()` is true (looked at whenever the drive is woken, and
    /// at least every [`RECHECK`]). The caller must hold the turn; it keeps it, and is away
    /// from now until its next drive.
    pub fn drive(self: &Arc<Self>, done: &dyn Fn() -> bool) {
        self.drive_as(done, true)
    }

    /// As [`Reactor::drive`], for a thread that runs no application code (a standby that
    /// reads the connections while every worker is busy): work the connections queue for the
    /// application does not end its drive ([`wake_own_drive`] is false there).
    pub fn drive_standby(self: &Arc<Self>, done: &dyn Fn() -> bool) {
        self.drive_as(done, false)
    }

    fn drive_as(self: &Arc<Self>, done: &dyn Fn() -> bool, runs_app: bool) {
        // What this thread deferred is woken inside the drive, where it costs no system call.
        AWAY.take();
        self.driving.store(true, Ordering::SeqCst);
        if runs_app {
            DRIVING.set(Some(self.clone()));
        }
        // One timer for every drive, set again only once it fired (a timer per drive cost
        // more than the rest of a short drive).
        let mut recheck = self.recheck.lock();
        ON_REACTOR.set(true);
        self.runtime.block_on(async {
            let timer = recheck.get_or_insert_with(|| Box::pin(tokio::time::sleep(RECHECK)));
            if timer.is_elapsed() {
                timer.as_mut().reset(tokio::time::Instant::now() + RECHECK);
            }
            // Once there is work, one more pass first: the connections that became ready
            // meanwhile are read too, so their callbacks join this batch.
            let mut lingered = false;
            poll_fn(|cx| {
                self.driver.register(cx.waker());
                self.flush_deferred();
                if done() {
                    if lingered {
                        return Poll::Ready(());
                    }
                    lingered = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(()),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
        });
        ON_REACTOR.set(false);
        drop(recheck);
        DRIVING.take();
        self.driving.store(false, Ordering::SeqCst);
        let me = std::thread::current().id();
        let mut turn = self.turn.lock();
        if turn.owner == Some(me) {
            turn.away_since = Some(Instant::now());
            AWAY.set(Some(self.clone()));
        }
    }

    /// Gives the turn up (the thread stops serving): what it deferred is woken.
    pub fn leave(self: &Arc<Self>) {
        self.come_back();
        let me = std::thread::current().id();
        let mut turn = self.turn.lock();
        if turn.owner == Some(me) {
            *turn = Turn::default();
        }
    }

    /// How long the turn's holder has been away (None: it drives, or nobody holds it).
    pub fn away_for(&self) -> Option<Duration> {
        let turn = self.turn.lock();
        turn.owner.and(turn.away_since).map(|since| since.elapsed())
    }

    /// Whether a thread drives the reactor now.
    pub fn is_driven(&self) -> bool {
        self.driving.load(Ordering::SeqCst)
    }

    /// Whether an idle thread should come and take the turn: nobody holds it, or its holder
    /// has been away for [`STEAL_AFTER`] or more.
    pub fn wants_driver(&self) -> bool {
        self.turn.lock().is_free()
    }

    /// Makes the drive in progress look at its `done` again (from any thread; from the
    /// driving thread itself it costs no system call).
    pub fn wake(&self) {
        self.driver.wake();
    }

    /// This thread is back from application code: it no longer defers its wakes.
    fn come_back(&self) {
        if AWAY.take().is_some() {
            self.flush_deferred();
        }
    }

    /// Wakes what was deferred (inside a drive: on the reactor's own queue, no system call).
    fn flush_deferred(&self) {
        // Drained in place: the list keeps its room for the next batch.
        for waker in self.deferred.lock().drain(..) {
            waker.wake();
        }
    }

    fn defer(&self, waker: Waker) {
        self.deferred.lock().push(waker);
        if self.is_driven() {
            self.driver.wake(); // another thread drives: it wakes the task now
        }
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("driving", &self.is_driven())
            .finish()
    }
}

/// Wakes a session's task, deferred when this thread holds a reactor's turn and is away.
pub fn wake(waker: Waker) {
    AWAY.with_borrow(|away| match away {
        Some(reactor) => reactor.defer(waker),
        None => waker.wake(),
    })
}

/// When this thread is driving a reactor: makes that drive look at its `done` again (no
/// system call) and returns true. False on any other thread.
pub fn wake_own_drive() -> bool {
    DRIVING.with_borrow(|driving| match driving {
        Some(reactor) => {
            reactor.wake();
            true
        }
        None => false,
    })
}

/// Where the process's reactor is found (set by whoever drives reactors: the Ruby binding,
/// which keeps one per process and forgets a forked parent's).
static LOCATOR: OnceLock<fn() -> Option<Arc<Reactor>>> = OnceLock::new();

/// Tells the engine how to find the process's reactor (the first call wins).
pub fn set_locator(locate: fn() -> Option<Arc<Reactor>>) {
    // A second locator is ignored: there is one owner of reactors per program.
    let _ = LOCATOR.set(locate);
}

/// The process's reactor, where sessions go (None: they run where they are made).
pub fn installed() -> Option<Arc<Reactor>> {
    LOCATOR.get().and_then(|locate| locate())
}

/// In a forked child, on the thread that forked: lets go of the parent's reactor without
/// touching it (its state may be mid-change in a thread that is not in the child).
pub fn forget_after_fork() {
    std::mem::forget(AWAY.take());
    std::mem::forget(DRIVING.take());
}

/// Runs the session `make` builds on `stream`: on the process's reactor when one is installed
/// (the socket moves there), else on the caller's runtime. When the socket can't move (no
/// room in the reactor's poller), `make` is dropped unrun, which closes the connection.
pub fn spawn_session<F, Fut>(stream: Stream, make: F)
where
    F: FnOnce(Stream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(reactor) = installed() else {
        tokio::spawn(make(stream));
        return;
    };
    if on_reactor() {
        // Accepted (or upgraded) on the reactor already: nothing to move.
        tokio::spawn(Deferring::new(make(stream)));
        return;
    }
    let moved = match stream.into_std() {
        Ok(moved) => moved,
        Err(e) => {
            crate::warning!("couldn't move a connection to the reactor: {e}");
            return;
        }
    };
    // Not an `async` block: what it captures would be kept beside the session for the
    // connection's whole life; `lazy` + `flatten` hold one or the other.
    let start = move |_: &mut std::task::Context<'_>| match moved.register() {
        Ok(stream) => Either::Left(make(stream)),
        Err(e) => {
            crate::warning!("couldn't register a connection with the reactor: {e}");
            Either::Right(std::future::ready(()))
        }
    };
    reactor.spawn(Deferring::new(futures_util::future::lazy(start).flatten()));
}

pin_project_lite::pin_project! {
    /// A session's future whose wakes go through [`wake`]: the wakes a worker makes while
    /// it holds the turn and runs application code (a reply, a write) wait for its next
    /// drive, where they cost no system call, instead of each waking the reactor's poller.
    struct Deferring<F> {
        #[pin]
        inner: F,
        // The task's waker and the deferring one made from it (made again only when the
        // task's waker changes).
        wakers: Option<(Waker, Waker)>,
    }
}

impl<F> Deferring<F> {
    fn new(inner: F) -> Self {
        Deferring {
            inner,
            wakers: None,
        }
    }
}

/// Wakes the task through [`wake`].
struct DeferredWake(Waker);

impl std::task::Wake for DeferredWake {
    fn wake(self: Arc<Self>) {
        wake(self.0.clone());
    }

    fn wake_by_ref(self: &Arc<Self>) {
        wake(self.0.clone());
    }
}

impl<F: Future<Output = ()>> Future for Deferring<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = self.project();
        let fresh = match &this.wakers {
            Some((task, _)) => !task.will_wake(cx.waker()),
            None => true,
        };
        if fresh {
            let deferring = Waker::from(Arc::new(DeferredWake(cx.waker().clone())));
            *this.wakers = Some((cx.waker().clone(), deferring));
        }
        let Some((_, deferring)) = this.wakers.as_ref() else {
            return Poll::Pending; // set just above
        };
        let mut cx = std::task::Context::from_waker(deferring);
        this.inner.poll(&mut cx)
    }
}

/// Runs the session `make` builds on `stream`: here, in the returned future, when this is
/// the reactor (a listener of its own) or there is none; else moved to the process's reactor
/// (the returned future then ends at once).
pub async fn run_session<F, Fut>(stream: Stream, make: F)
where
    F: FnOnce(Stream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if on_reactor() {
        return Deferring::new(make(stream)).await;
    }
    if installed().is_none() {
        return make(stream).await;
    }
    spawn_session(stream, make)
}

/// Spawns `fut` on the caller's runtime; on the reactor, its wakes are deferred as a
/// session's are (HTTP/2 streams and the sessions inside them).
pub fn spawn_here<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if on_reactor() {
        tokio::spawn(Deferring::new(fut));
    } else {
        tokio::spawn(fut);
    }
}

/// Whether this thread runs a reactor's tasks now (the caller is one of them).
pub fn on_reactor() -> bool {
    ON_REACTOR.get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_drive_runs_spawned_tasks_until_done() {
        let reactor = Reactor::new().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            let count = count.clone();
            reactor.spawn(async move {
                tokio::task::yield_now().await;
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert!(reactor.try_turn());
        let seen = count.clone();
        reactor.drive(&move || seen.load(Ordering::SeqCst) == 10);
        assert_eq!(count.load(Ordering::SeqCst), 10);
        reactor.leave();
    }

    #[test]
    fn work_queued_on_a_standby_drive_does_not_end_it() {
        let reactor = Reactor::new().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..2 {
            let seen = seen.clone();
            reactor.spawn(async move {
                // What a session does when it queues work for the application.
                seen.lock().push(wake_own_drive());
            });
        }
        assert!(reactor.try_turn());
        let s = seen.clone();
        reactor.drive_standby(&move || s.lock().len() == 2);
        assert_eq!(
            *seen.lock(),
            vec![false, false],
            "the standby runs no app code"
        );
        reactor.leave();
        let s = seen.clone();
        reactor.spawn(async move { s.lock().push(wake_own_drive()) });
        assert!(reactor.try_turn());
        let s = seen.clone();
        reactor.drive(&move || s.lock().len() == 3);
        assert!(seen.lock()[2], "a worker's drive ends to run the work");
        reactor.leave();
    }

    #[test]
    fn wakes_made_by_a_worker_away_from_the_turn_wait_for_its_next_drive() {
        // A session's wakes go through `Deferring`: a reply sent while the worker is away is
        // held, then made inside its next drive.
        let reactor = Reactor::new().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<Waker>();
        let polled = Arc::new(AtomicUsize::new(0));
        let p = polled.clone();
        reactor.spawn(Deferring::new(poll_fn(move |cx| {
            if p.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = tx.send(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(())
        })));
        assert!(reactor.try_turn());
        let p = polled.clone();
        reactor.drive(&move || p.load(Ordering::SeqCst) == 1);
        rx.recv().unwrap().wake(); // the task's own waker, as a reply's channel holds it
        assert_eq!(reactor.deferred.lock().len(), 1, "held while away");
        let p = polled.clone();
        reactor.drive(&move || p.load(Ordering::SeqCst) == 2);
        assert_eq!(polled.load(Ordering::SeqCst), 2);
        reactor.leave();
    }

    #[test]
    fn the_turn_is_taken_from_a_holder_away_too_long() {
        let reactor = Reactor::new().unwrap();
        assert!(reactor.try_turn());
        reactor.drive(&|| true); // returns at once; this thread is now away
        let other = reactor.clone();
        let stolen_early = std::thread::spawn(move || other.try_turn()).join().unwrap();
        assert!(
            !stolen_early,
            "the holder was away for less than STEAL_AFTER"
        );
        std::thread::sleep(STEAL_AFTER * 2);
        let other = reactor.clone();
        let stolen = std::thread::spawn(move || other.try_turn()).join().unwrap();
        assert!(stolen);
        assert!(!reactor.try_turn(), "the old holder lost its turn");
    }

    #[test]
    fn wakes_made_while_away_wait_for_the_next_drive() {
        let reactor = Reactor::new().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<Waker>();
        let polled = Arc::new(AtomicUsize::new(0));
        let p = polled.clone();
        reactor.spawn(poll_fn(move |cx| {
            if p.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = tx.send(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(())
        }));
        assert!(reactor.try_turn());
        let p = polled.clone();
        reactor.drive(&move || p.load(Ordering::SeqCst) == 1);
        let waker = rx.recv().unwrap();
        wake(waker); // away: deferred, nothing polled yet
        assert_eq!(polled.load(Ordering::SeqCst), 1);
        assert_eq!(reactor.deferred.lock().len(), 1);
        let p = polled.clone();
        reactor.drive(&move || p.load(Ordering::SeqCst) == 2);
        assert_eq!(polled.load(Ordering::SeqCst), 2);
        reactor.leave();
    }
}
