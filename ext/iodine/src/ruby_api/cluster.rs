//! `Iodine::Base.cluster_*`: what lib/iodine/runner.rb needs to run a cluster. The master
//! keeps the hub (the master's end of every worker's socket pair) and polls it from its main
//! thread; a forked worker drops its copy of the hub and keeps its own end of its pair for
//! `start_server`, which connects it to the worker's runtime.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use iodine_engine::cluster::{self, Hub, Reach};
use magnus::{function, Error, RArray, RModule, RString, Ruby, Symbol};
use parking_lot::Mutex;

use crate::errors::exception;
use crate::{bridge, gvl, server};

/// The master's hub (None in workers and single processes).
static HUB: Mutex<Option<Hub>> = Mutex::new(None);

/// The hub's waker, apart from the hub (which the polling thread holds locked).
static WAKER: Mutex<Option<iodine_engine::cluster::HubWaker>> = Mutex::new(None);

/// The master's copies of the timers made before `start`: (next run, block, every, runs left).
static TIMERS: Mutex<Vec<MasterTimer>> = Mutex::new(Vec::new());

struct MasterTimer {
    due: Instant,
    block: u64,
    every: Option<Duration>,
    left: Option<u64>,
    /// Made in the running master (after `start`): it runs here only, and its block is
    /// forgotten after its last run. The others were made before `start`, and the workers
    /// forked later run them too.
    own: bool,
}

/// Runs a timer (or an `Iodine.run` block) made in a running cluster's master in the
/// master's own loop, as the C gem did: the master has no runtime to give it (it must fork
/// safely), and a worker forked later must not take it.
pub fn add_master_timer(block: u64, schedule: iodine_engine::timers::Schedule) {
    TIMERS.lock().push(MasterTimer {
        due: Instant::now() + schedule.first,
        block,
        every: schedule.every,
        left: schedule.repetitions,
        own: true,
    });
    wake(); // the poll's wait was computed without it
}

/// Stops a master's timer (`Iodine.cancel_timer`); false when it has none for `block`.
pub fn cancel_master_timer(block: u64) -> bool {
    let mut timers = TIMERS.lock();
    let before = timers.len();
    timers.retain(|t| t.block != block);
    timers.len() != before
}

/// Queues the blocks of the master's timers that are due; the time until the next one.
fn fire_timers() -> Option<Duration> {
    let now = Instant::now();
    let mut timers = TIMERS.lock();
    timers.retain_mut(|t| {
        if t.due > now {
            return true;
        }
        let last = t.every.is_none() || matches!(t.left, Some(0 | 1));
        // A timer made before `start` never has its last run here: the workers forked later
        // still need its block.
        bridge::push(crate::blocks::run_block(t.block, last && t.own));
        match (t.every, &mut t.left) {
            (None, _) | (_, Some(0 | 1)) => false,
            (Some(every), left) => {
                if let Some(n) = left {
                    *n -= 1;
                }
                t.due = now + every;
                true
            }
        }
    });
    timers
        .iter()
        .map(|t| t.due.saturating_duration_since(now))
        .min()
}

/// The worker's end of the pair made for the next fork (taken by the child, closed by the
/// master once the child exists).
static FORKING: Mutex<Option<UnixStream>> = Mutex::new(None);

/// In a cluster's master, every channel and pattern some process subscribes to (None
/// elsewhere).
pub fn cluster_names() -> Option<Vec<(bytes::Bytes, bool)>> {
    if !is_master() {
        return None;
    }
    HUB.lock().as_ref().map(Hub::names)
}

/// In a cluster's master, counts the master's own first and last subscribers with the
/// workers' (the engines then hear the cluster-wide changes); false elsewhere.
pub fn local_interest(name: &bytes::Bytes, pattern: bool, on: bool) -> bool {
    if !is_master() {
        return false;
    }
    let mut hub = HUB.lock();
    let Some(hub) = hub.as_mut() else {
        return false;
    };
    hub.local_interest(name.clone(), pattern, on);
    for (name, pattern, on) in hub.take_interest_changes() {
        super::pubsub::interest_changed(name, pattern, on);
    }
    true
}

/// Whether this process is a running cluster's master.
pub fn is_master() -> bool {
    WAKER.lock().is_some()
}

/// `cluster_master_init(workers)`: this process becomes the master of a cluster of `workers`
/// (before the first fork); its TCP listeners get one socket per worker slot.
fn master_init(ruby: &Ruby, workers: usize) -> Result<(), Error> {
    let hub = Hub::new().map_err(|e| exception(ruby.exception_runtime_error(), e.to_string()))?;
    server::spread_listeners(workers);
    // Where the workers leave their figures for Iodine.stats and the metrics page.
    if let Err(e) = iodine_engine::stats::board::create(workers) {
        iodine_engine::warning!("Iodine.stats will show this process only: no stats board ({e})");
    }
    cluster::set_uplink(Some(hub.uplink()));
    *WAKER.lock() = Some(hub.waker());
    *HUB.lock() = Some(hub);
    server::clear_stop_flag();
    let now = Instant::now();
    *TIMERS.lock() = server::pending_timers()
        .into_iter()
        .map(|(block, s)| MasterTimer {
            due: now + s.first,
            block,
            every: s.every,
            left: s.repetitions,
            own: false,
        })
        .collect();
    // The master's own subscribers and timers run on its main thread (`run_pending`).
    bridge::open(1);
    super::redis::started_master();
    Ok(())
}

/// `cluster_pair_engine(id)`: a socket pair for the Redis process of engine `id` about to be
/// forked (the hub tells it the engine's interest first).
fn pair_engine(ruby: &Ruby, id: u8) -> Result<u64, Error> {
    let mut hub = HUB.lock();
    let hub = hub
        .as_mut()
        .ok_or_else(|| exception(ruby.exception_runtime_error(), "not a cluster master"))?;
    let (peer, theirs) = hub
        .pair_engine(id)
        .map_err(|e| exception(ruby.exception_runtime_error(), e.to_string()))?;
    *FORKING.lock() = Some(theirs);
    Ok(peer)
}

/// In a newly forked Redis process: lets go of the master's hub (as a worker does) and
/// returns its own end of its pair.
pub fn forked_engine_child() -> Option<UnixStream> {
    let_go_of_master();
    bridge::close();
    bridge::discard_pending();
    FORKING.lock().take()
}

/// In a child the master just forked: drops the master's hub (closing this process's copies
/// of the master's ends: only the master may hold them, or a child would never see its master
/// die), its uplink and its timers (the child runs the pending ones itself, at start), and
/// what its Redis engines were asked.
fn let_go_of_master() {
    TIMERS.lock().clear();
    super::redis::forked();
    cluster::set_uplink(None);
    WAKER.lock().take();
    HUB.lock().take();
}

/// `cluster_pair`: a socket pair for the worker about to be forked; returns its peer id.
fn pair(ruby: &Ruby) -> Result<u64, Error> {
    let mut hub = HUB.lock();
    let hub = hub
        .as_mut()
        .ok_or_else(|| exception(ruby.exception_runtime_error(), "not a cluster master"))?;
    let (id, theirs) = hub
        .pair()
        .map_err(|e| exception(ruby.exception_runtime_error(), e.to_string()))?;
    *FORKING.lock() = Some(theirs);
    Ok(id)
}

/// `cluster_forked_parent`: the master closes its copy of the child's end.
fn forked_parent() {
    FORKING.lock().take();
}

/// `cluster_forked_child(slot)`: in the new worker of slot `slot` (it serves that socket of
/// each spread listener), drops the master's hub (closing this process's copies of the
/// master's ends: only the master may hold them, or a worker would never see its master die)
/// and keeps its own end for `start_server`.
fn forked_child(slot: usize) {
    let_go_of_master();
    if let Some(mine) = FORKING.lock().take() {
        server::set_cluster_link(mine, slot);
    }
    iodine_engine::stats::board::join(slot, super::stats::this_pool);
}

/// `cluster_poll(ms)`: routes what the workers sent, for up to `ms` milliseconds (returns at
/// once when woken: a signal, `cluster_wake`). Returns the ids of workers whose socket
/// closed.
fn poll(ruby: &Ruby, ms: u64) -> Result<RArray, Error> {
    let Some(waker) = WAKER.lock().clone() else {
        return Ok(ruby.ary_new());
    };
    let wait = match fire_timers() {
        Some(next) => next.min(Duration::from_millis(ms)),
        None => Duration::from_millis(ms),
    };
    let polled = gvl::without_gvl(
        ruby,
        || match HUB.lock().as_mut() {
            Some(hub) => hub.poll(Some(wait)),
            None => Ok(Default::default()),
        },
        move || waker.wake(),
    )?;
    let polled = polled.map_err(|e| exception(ruby.exception_io_error(), e.to_string()))?;
    // The cluster-wide interest changes the workers' frames made, for the engines.
    let changes = HUB
        .lock()
        .as_mut()
        .map(Hub::take_interest_changes)
        .unwrap_or_default(); // jump-safe: an Option (no hub: no changes), no Ruby call.
    for (name, pattern, on) in changes {
        super::pubsub::interest_changed(name, pattern, on);
    }
    fire_timers();
    Ok(ruby.ary_from_vec(polled.gone))
}

/// `cluster_wake`: makes the master's poll return (from a trap or another thread).
fn wake() {
    if let Some(waker) = WAKER.lock().as_ref() {
        waker.wake();
    }
}

/// `cluster_master_finish`: the master lets go of the hub (after its workers left).
fn master_finish(ruby: &Ruby) {
    // The master's own timers will not run again: their blocks go (the others' blocks were
    // never the master's to forget).
    let timers = std::mem::take(&mut *TIMERS.lock());
    for timer in timers.into_iter().filter(|t| t.own) {
        crate::blocks::forget(ruby, timer.block);
    }
    cluster::set_uplink(None);
    WAKER.lock().take();
    HUB.lock().take();
    bridge::close();
    bridge::discard_pending();
    server::discard_pending();
}

/// `run_pending`: runs the Ruby work queued in this process (the master's subscribers).
fn run_pending(ruby: &Ruby) -> Result<(), Error> {
    bridge::run_pending(ruby)
}

/// `publish_cluster(channel, message, reach)`: publishes through the cluster (`:cluster`,
/// `:siblings`, `:root`); outside a cluster `:cluster` and `:root` deliver here.
fn publish_cluster(
    ruby: &Ruby,
    channel: RString,
    message: RString,
    reach: Symbol,
) -> Result<(), Error> {
    let reach = match reach.name()?.as_ref() {
        "cluster" => Reach::Cluster,
        "siblings" => Reach::Siblings,
        "root" => Reach::Root,
        other => {
            return Err(exception(
                ruby.exception_arg_error(),
                format!("unknown reach {other}"),
            ))
        }
    };
    super::pubsub::usable(ruby)?;
    let (channel, message) = (channel.to_bytes(), message.to_bytes());
    super::pubsub::channel_fits(ruby, &channel)?;
    if cluster::is_clustered() && message.len() > cluster::MAX_MESSAGE {
        return Err(exception(
            ruby.exception_arg_error(),
            format!(
                "a message of {} bytes is larger than the {} bytes a cluster carries \
                 (publish it with Iodine::PubSub::PROCESS to keep it in this process)",
                message.len(),
                cluster::MAX_MESSAGE
            ),
        ));
    }
    cluster::publish(Some(reach), channel, message);
    Ok(())
}

/// `pending_listeners`: where the workers will listen (for the master's banner).
fn pending_listeners(ruby: &Ruby) -> RArray {
    ruby.ary_from_vec(server::pending_listeners())
}

/// `stop_flag?`: whether a stop was asked for (the master's loop looks at it).
fn stop_flag() -> bool {
    server::stop_flag()
}

/// `set_wake_fd(fd)`: the pipe the main thread waits on, so Rust can wake it (a worker whose
/// master died); -1 forgets it.
fn set_wake_fd(fd: i32) {
    server::set_wake_fd(fd);
}

/// `master_lost?`: a worker's link to its master closed (the master died).
fn master_lost() -> bool {
    server::master_lost()
}

/// Defines the cluster helpers on `Iodine::Base`.
pub fn init(_ruby: &Ruby, base: RModule) -> Result<(), Error> {
    base.define_module_function("cluster_master_init", function!(master_init, 1))?;
    base.define_module_function("cluster_pair", function!(pair, 0))?;
    base.define_module_function("cluster_pair_engine", function!(pair_engine, 1))?;
    base.define_module_function("cluster_forked_parent", function!(forked_parent, 0))?;
    base.define_module_function("cluster_forked_child", function!(forked_child, 1))?;
    base.define_module_function("cluster_poll", function!(poll, 1))?;
    base.define_module_function("cluster_wake", function!(wake, 0))?;
    base.define_module_function("cluster_master_finish", function!(master_finish, 0))?;
    base.define_module_function("run_pending", function!(run_pending, 0))?;
    base.define_module_function("publish_cluster", function!(publish_cluster, 3))?;
    base.define_module_function("master_lost?", function!(master_lost, 0))?;
    base.define_module_function("set_wake_fd", function!(set_wake_fd, 1))?;
    base.define_module_function("stop_flag?", function!(stop_flag, 0))?;
    base.define_module_function("pending_listeners", function!(pending_listeners, 0))?;
    Ok(())
}
