//! Process-wide pub/sub for Ruby (`Iodine.subscribe/unsubscribe/publish` without a
//! connection): subscriptions are named by their channel, and a block or handler runs on a
//! worker thread for each message (lib/iodine/pubsub.rb parses the arguments).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use iodine_engine::pubsub::{broker, Subscriber};
use magnus::{function, Error, RModule, RString, Ruby, Value};

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

/// The subscribed channel names of this process, with whether each is a pattern (for
/// `Iodine::PubSub.attach` / `reset`).
fn channels(ruby: &Ruby) -> Result<magnus::RArray, Error> {
    let list = ruby.ary_new();
    for name in global().names() {
        list.push(ruby.str_from_slice(&name))?;
    }
    Ok(list)
}

/// Defines the pub/sub helpers under `Iodine::Base`.
pub fn init(_ruby: &Ruby, base: RModule) -> Result<(), Error> {
    base.define_module_function("subscribe", function!(subscribe, 3))?;
    base.define_module_function("unsubscribe", function!(unsubscribe, 1))?;
    base.define_module_function("publish_local", function!(publish_local, 2))?;
    base.define_module_function("channels", function!(channels, 0))?;
    Ok(())
}
