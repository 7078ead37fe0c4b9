//! A scope of named subscriptions: the process's (`Iodine.subscribe`) or one connection's.
//! A name maps to the broker's subscription and to the Ruby block kept for it, if any; a new
//! subscription under a name replaces the old one, and ending one lets its block go.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use iodine_engine::pubsub::{broker, Subscriber, SubscriptionId};
use magnus::Ruby;
use parking_lot::Mutex;

use crate::blocks;

/// Subscriptions by name.
#[derive(Default)]
pub struct Scope(Mutex<HashMap<Bytes, (SubscriptionId, Option<u64>)>>);

impl Scope {
    /// Subscribes `subscriber` to `name` (a glob pattern when `pattern`), with `block` the
    /// kept Ruby block it calls (None: it never enters Ruby). True when it replaced one.
    pub fn subscribe(
        &self,
        ruby: &Ruby,
        name: Bytes,
        pattern: bool,
        subscriber: Arc<dyn Subscriber>,
        block: Option<u64>,
    ) -> bool {
        let id = broker().subscribe(name.clone(), pattern, subscriber);
        let old = self.0.lock().insert(name, (id, block));
        match old {
            Some(old) => {
                end(ruby, old);
                true
            }
            None => false,
        }
    }

    /// Ends the subscription `name`; true if there was one.
    pub fn unsubscribe(&self, ruby: &Ruby, name: &[u8]) -> bool {
        let old = self.0.lock().remove(name);
        old.map(|old| end(ruby, old)).is_some()
    }

    /// Ends every subscription.
    pub fn clear(&self, ruby: &Ruby) {
        let all: Vec<_> = self.0.lock().drain().map(|(_, sub)| sub).collect();
        for sub in all {
            end(ruby, sub);
        }
    }
}

fn end(ruby: &Ruby, (id, block): (SubscriptionId, Option<u64>)) {
    broker().unsubscribe(id);
    if let Some(block) = block {
        blocks::forget(ruby, block);
    }
}
