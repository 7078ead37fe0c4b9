//! Process-wide pub/sub for Ruby (`Iodine.subscribe/unsubscribe/publish` without a
//! connection): subscriptions are named by their channel, and a block or handler runs on a
//! worker thread for each message (lib/iodine/pubsub.rb parses the arguments).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use iodine_engine::pubsub::{broker, Subscriber, SubscriptionId};
use magnus::{function, Error, RModule, RString, Ruby, Value};
use parking_lot::Mutex;

use crate::blocks;
use crate::bridge;

/// The global scope: channel (or pattern) name → its subscription and the kept callable.
static GLOBAL: Mutex<Option<HashMap<Bytes, (SubscriptionId, u64)>>> = Mutex::new(None);

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

/// `Iodine::Base.subscribe(name, pattern, callable)`: subscribes (replacing a subscription of
/// the same name); true when one was replaced.
fn subscribe(ruby: &Ruby, name: RString, pattern: bool, callable: Value) -> Result<bool, Error> {
    let name = name.to_bytes();
    let block = blocks::keep(ruby, callable)?;
    let id = broker().subscribe(name.clone(), pattern, Arc::new(ToRuby { block }));
    let old = GLOBAL
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(name, (id, block));
    Ok(match old {
        Some((old_id, old_block)) => {
            broker().unsubscribe(old_id);
            blocks::forget(ruby, old_block);
            true
        }
        None => false,
    })
}

/// `Iodine::Base.unsubscribe(name)`: true if a subscription of that name existed.
fn unsubscribe(ruby: &Ruby, name: RString) -> bool {
    let old = GLOBAL
        .lock()
        .get_or_insert_with(HashMap::new)
        .remove(&name.to_bytes());
    match old {
        Some((id, block)) => {
            broker().unsubscribe(id);
            blocks::forget(ruby, block);
            true
        }
        None => false,
    }
}

/// `Iodine::Base.publish_local(channel, message)`: delivers in this process; returns how
/// many subscriptions got it.
fn publish_local(channel: RString, message: RString) -> usize {
    broker().publish(&channel.to_bytes(), &message.to_bytes())
}

/// The subscribed channel names of this process, with whether each is a pattern (for
/// `Iodine::PubSub.attach` / `reset`).
fn channels(ruby: &Ruby) -> Result<magnus::RArray, Error> {
    let list = ruby.ary_new();
    let names: Vec<Bytes> = GLOBAL
        .lock()
        .as_ref()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for name in names {
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
