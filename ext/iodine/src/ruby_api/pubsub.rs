//! Process-wide pub/sub for Ruby (`Iodine.subscribe/unsubscribe/publish` without a
//! connection): subscriptions are named by their channel, and a block or handler runs on a
//! worker thread for each message (lib/iodine/pubsub.rb parses the arguments).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use iodine_engine::pubsub::{broker, Subscriber};
use magnus::{function, prelude::*, Error, RModule, RString, Ruby, Value};

use crate::blocks;
use crate::bridge;
use crate::subscriptions::Scope;

/// The process's scope: channel (or pattern) name → its subscription and the kept callable.
fn global() -> &'static Scope {
    static GLOBAL: OnceLock<Scope> = OnceLock::new();
    GLOBAL.get_or_init(Scope::default)
}

/// Hands each message to a Ruby worker, which calls the kept callable.
struct ToRuby {
    block: u64,
}

impl Subscriber for ToRuby {
    fn deliver(&self, channel: &Bytes, message: &Bytes) {
        bridge::push(blocks::run_message(
            self.block,
            channel.clone(),
            message.clone(),
        ));
    }
}

/// Refuses pub/sub in a process forked from one that ran IO threads (the broker is a copy
/// those threads were using, maybe mid-operation): a clear error, never a hang.
pub(super) fn usable(ruby: &Ruby) -> Result<(), Error> {
    if !crate::gvl::forked_from_threads() {
        return Ok(());
    }
    Err(crate::errors::exception(
        ruby.exception_runtime_error(),
        "Iodine pub/sub is not available in a process forked from a running server \
         (fork before Iodine.start, or use cluster mode: -w)",
    ))
}

/// Refuses a channel name (or pattern) longer than the cluster carries, with an
/// ArgumentError, before anything is subscribed or sent (in a cluster the master took one as
/// a broken frame and dropped the worker, with every client it served).
pub(super) fn channel_fits(ruby: &Ruby, name: &[u8]) -> Result<(), Error> {
    if name.len() <= iodine_engine::cluster::MAX_CHANNEL {
        return Ok(());
    }
    Err(crate::errors::exception(
        ruby.exception_arg_error(),
        format!(
            "a channel name of {} bytes is longer than the {} bytes allowed",
            name.len(),
            iodine_engine::cluster::MAX_CHANNEL
        ),
    ))
}

/// `Iodine::Base.subscribe(name, pattern, callable)`: subscribes (replacing a subscription of
/// the same name); true when one was replaced.
fn subscribe(ruby: &Ruby, name: RString, pattern: bool, callable: Value) -> Result<bool, Error> {
    usable(ruby)?;
    channel_fits(ruby, &name.to_bytes())?;
    let block = blocks::keep(ruby, callable)?;
    let to_ruby = Arc::new(ToRuby { block });
    Ok(global().subscribe(ruby, name.to_bytes(), pattern, to_ruby, Some(block)))
}

/// `Iodine::Base.unsubscribe(name)`: true if a subscription of that name existed.
fn unsubscribe(ruby: &Ruby, name: RString) -> Result<bool, Error> {
    usable(ruby)?;
    Ok(global().unsubscribe(ruby, &name.to_bytes()))
}

/// `Iodine::Base.publish_local(channel, message)`: delivers in this process; returns how
/// many subscriptions got it.
fn publish_local(ruby: &Ruby, channel: RString, message: RString) -> Result<usize, Error> {
    usable(ruby)?;
    channel_fits(ruby, &channel.to_bytes())?;
    Ok(broker().publish(&channel.to_bytes(), &message.to_bytes()))
}

/// The subscribed channels and patterns, as `[name, pattern]` pairs (for
/// `Iodine::PubSub.attach` / `reset`): every kind of subscription of this process (its own and
/// its connections'), or, in a cluster's master, of the whole cluster.
fn channels(ruby: &Ruby) -> Result<magnus::RArray, Error> {
    // jump-safe: an Option (not a cluster's master: this process's names), no Ruby call.
    let names = super::cluster::cluster_names().unwrap_or_else(|| broker().names());
    let list = ruby.ary_new();
    for (name, pattern) in names {
        list.push((ruby.str_from_slice(&name), pattern))?;
    }
    Ok(list)
}

// The engines' hooks (section 6.5): `subscribe` once per channel per process (the root: per
// cluster) when its first subscriber appears, `unsubscribe` after its last one, for every
// kind of subscription. The broker reports those moments (`Watcher`); they are queued here
// and handed to Ruby (`Iodine::PubSub.__drain`) in order, outside any lock: right after the
// Ruby call that caused them, or by a job on a worker.

/// Interest changes (name, pattern, subscribed) waiting for the engines, and whether a drain
/// job is queued (one at a time), per process: a child forked with a job queued in its
/// parent's bridge has none in its own.
#[derive(Default)]
struct Interest {
    changes: std::collections::VecDeque<(Bytes, bool, bool)>,
    drain_queued: bool,
}

static INTEREST: crate::gvl::PerProcess<parking_lot::Mutex<Interest>> =
    crate::gvl::PerProcess::new(Default::default, |_| Default::default());

/// Whether any Ruby engine is attached (nothing is queued otherwise).
static ENGINES: AtomicBool = AtomicBool::new(false);

/// Queues an interest change for the engines and makes sure a job will hand it over.
pub(super) fn interest_changed(name: Bytes, pattern: bool, on: bool) {
    if !ENGINES.load(Ordering::Acquire) {
        return;
    }
    let queue = {
        let mut interest = INTEREST.get().lock();
        interest.changes.push_back((name, pattern, on));
        !std::mem::replace(&mut interest.drain_queued, true)
    };
    if queue {
        bridge::push(Box::new(Drain));
    }
}

/// The broker's second watcher: this process's first and last subscribers. In a cluster's
/// master they count with the workers' (the hub reports the cluster-wide changes).
struct EngineWatcher;

impl iodine_engine::pubsub::Watcher for EngineWatcher {
    fn interest(&self, name: &Bytes, pattern: bool, on: bool) {
        if !super::cluster::local_interest(name, pattern, on) {
            interest_changed(name.clone(), pattern, on);
        }
    }
}

/// Hands the queued changes to Ruby (dropped unrun, as before `start`, it lets the next
/// change queue a new one; the Ruby calls drain on their own).
struct Drain;

impl Drop for Drain {
    fn drop(&mut self) {
        INTEREST.get().lock().drain_queued = false;
    }
}

impl bridge::Job for Drain {
    fn run(self: Box<Self>, ruby: &Ruby) -> Result<(), Error> {
        drop(self); // a change queued from here on queues a new job
        let pubsub: RModule = ruby
            .class_object()
            .const_get::<_, RModule>("Iodine")?
            .const_get("PubSub")?;
        match pubsub.funcall::<_, _, Value>("__drain", ()) {
            Ok(_) => Ok(()),
            Err(e) => crate::errors::contain(ruby, e),
        }
    }
}

/// `Iodine::Base.take_interest`: the queued changes, as `[name, pattern, subscribed]`.
fn take_interest(ruby: &Ruby) -> Result<magnus::RArray, Error> {
    let changes: Vec<_> = INTEREST.get().lock().changes.drain(..).collect();
    let list = ruby.ary_new();
    for (name, pattern, on) in changes {
        list.push((ruby.str_from_slice(&name), pattern, on))?;
    }
    Ok(list)
}

/// `Iodine::Base.engines_attached = bool`: whether changes are queued for Ruby engines.
fn set_engines_attached(attached: bool) {
    ENGINES.store(attached, Ordering::Release);
    if !attached {
        INTEREST.get().lock().changes.clear();
    }
}

/// Defines the pub/sub helpers under `Iodine::Base`.
pub fn init(_ruby: &Ruby, base: RModule) -> Result<(), Error> {
    base.define_module_function("subscribe", function!(subscribe, 3))?;
    base.define_module_function("unsubscribe", function!(unsubscribe, 1))?;
    base.define_module_function("publish_local", function!(publish_local, 2))?;
    base.define_module_function("channels", function!(channels, 0))?;
    base.define_module_function("take_interest", function!(take_interest, 0))?;
    base.define_module_function("engines_attached=", function!(set_engines_attached, 1))?;
    broker().watch_engines(Some(Arc::new(EngineWatcher)));
    Ok(())
}
