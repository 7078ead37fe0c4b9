//! The broker: subscriptions by exact channel and by pattern, and fan-out.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use super::glob;

/// Receives the messages of one subscription.
pub trait Subscriber: Send + Sync + 'static {
    /// A message published to `channel` (the published name, also for pattern matches).
    fn deliver(&self, channel: &Bytes, message: &Bytes);
}

/// Told when the process gains its first subscriber for a channel (or pattern) and when it
/// loses the last one: how a worker keeps the master's routing table current.
pub trait Watcher: Send + Sync + 'static {
    /// `name` (a pattern when `pattern`) has subscribers now (`on`), or none any more.
    fn interest(&self, name: &Bytes, pattern: bool, on: bool);
}

/// Names one subscription (for [`Broker::unsubscribe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

struct Entry {
    id: SubscriptionId,
    subscriber: Arc<dyn Subscriber>,
}

/// Exact channels are spread over this many independently locked shards, so subscribing,
/// unsubscribing and publishing on different channels don't contend on one lock.
const SHARDS: usize = 16;

type Channels = HashMap<Bytes, Vec<Entry>>;

/// Channels and patterns → subscribers.
pub struct Broker {
    shards: Box<[RwLock<Channels>]>,
    patterns: RwLock<Vec<(Bytes, Entry)>>,
    /// Where each subscription is: its channel, and whether it is a pattern.
    index: Mutex<HashMap<SubscriptionId, (Bytes, bool)>>,
    next: AtomicU64,
    watcher: RwLock<Option<Arc<dyn Watcher>>>,
    /// A second watcher: the application's pub/sub engines (the first is the cluster's).
    engines: RwLock<Option<Arc<dyn Watcher>>>,
}

impl Default for Broker {
    fn default() -> Self {
        Broker {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            patterns: RwLock::default(),
            index: Mutex::default(),
            next: AtomicU64::new(0),
            watcher: RwLock::new(None),
            engines: RwLock::new(None),
        }
    }
}

/// The process's broker.
pub fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(Broker::default)
}

impl Broker {
    fn shard(&self, channel: &[u8]) -> &RwLock<Channels> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        channel.hash(&mut hasher);
        &self.shards[hasher.finish() as usize % SHARDS]
    }

    /// Subscribes to `channel` (a glob pattern when `pattern`).
    pub fn subscribe(
        &self,
        channel: Bytes,
        pattern: bool,
        subscriber: Arc<dyn Subscriber>,
    ) -> SubscriptionId {
        let id = SubscriptionId(self.next.fetch_add(1, Ordering::Relaxed));
        let entry = Entry { id, subscriber };
        self.index.lock().insert(id, (channel.clone(), pattern));
        let first = if pattern {
            let mut patterns = self.patterns.write();
            let first = !patterns.iter().any(|(p, _)| *p == channel);
            patterns.push((channel.clone(), entry));
            first
        } else {
            let mut shard = self.shard(&channel).write();
            let list = shard.entry(channel.clone()).or_default();
            list.push(entry);
            list.len() == 1
        };
        if first {
            self.tell(&channel, pattern, true);
        }
        id
    }

    /// Sets (or, with None, removes) the watcher of first and last subscribers.
    pub fn watch(&self, watcher: Option<Arc<dyn Watcher>>) {
        *self.watcher.write() = watcher;
    }

    /// Sets (or removes) the second watcher of first and last subscribers, for the
    /// application's pub/sub engines (told as the cluster's watcher is).
    pub fn watch_engines(&self, watcher: Option<Arc<dyn Watcher>>) {
        *self.engines.write() = watcher;
    }

    fn tell(&self, name: &Bytes, pattern: bool, on: bool) {
        let watchers = [self.watcher.read().clone(), self.engines.read().clone()];
        for w in watchers.into_iter().flatten() {
            w.interest(name, pattern, on);
        }
    }

    /// Every channel and pattern with subscribers now (`true` for patterns).
    pub fn names(&self) -> Vec<(Bytes, bool)> {
        let mut names: Vec<(Bytes, bool)> = Vec::new();
        for shard in self.shards.iter() {
            names.extend(shard.read().keys().map(|k| (k.clone(), false)));
        }
        for (p, _) in self.patterns.read().iter() {
            if !names.iter().any(|(n, pat)| *pat && n == p) {
                names.push((p.clone(), true));
            }
        }
        names
    }

    /// Ends a subscription; false if it was already gone.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let Some((channel, pattern)) = self.index.lock().remove(&id) else {
            return false;
        };
        let last = if pattern {
            let mut patterns = self.patterns.write();
            patterns.retain(|(_, e)| e.id != id);
            !patterns.iter().any(|(p, _)| *p == channel)
        } else {
            let mut shard = self.shard(&channel).write();
            match shard.get_mut(&channel) {
                Some(list) => {
                    list.retain(|e| e.id != id);
                    let empty = list.is_empty();
                    if empty {
                        shard.remove(&channel);
                    }
                    empty
                }
                None => false,
            }
        };
        if last {
            self.tell(&channel, pattern, false);
        }
        true
    }

    /// Delivers `message` to every subscription of `channel`; returns how many got it. The
    /// locks are held only to list the subscribers, never while delivering.
    pub fn publish(&self, channel: &Bytes, message: &Bytes) -> usize {
        // Collected first: a subscriber may subscribe or publish from `deliver`.
        let mut targets: Vec<Arc<dyn Subscriber>> = {
            let shard = self.shard(channel).read();
            shard
                .get(channel)
                .map(|list| list.iter().map(|e| e.subscriber.clone()).collect())
                .unwrap_or_default()
        };
        {
            let patterns = self.patterns.read();
            targets.extend(
                patterns
                    .iter()
                    .filter(|(p, _)| glob::matches(p, channel))
                    .map(|(_, e)| e.subscriber.clone()),
            );
        }
        for target in &targets {
            target.deliver(channel, message);
        }
        crate::stats::delivered(targets.len());
        targets.len()
    }

    /// Delivers a message Redis sent for `channel` itself: to the subscribers of that exact
    /// channel only (the patterns that match it get their own copy from Redis).
    pub fn publish_exact(&self, channel: &Bytes, message: &Bytes) -> usize {
        let targets: Vec<Arc<dyn Subscriber>> = {
            let shard = self.shard(channel).read();
            shard
                .get(channel)
                .map(|list| list.iter().map(|e| e.subscriber.clone()).collect())
                .unwrap_or_default()
        };
        for target in &targets {
            target.deliver(channel, message);
        }
        crate::stats::delivered(targets.len());
        targets.len()
    }

    /// Delivers a message Redis sent to `channel` because it matched `pattern`: to the
    /// subscribers of that pattern only.
    pub fn publish_pattern(&self, pattern: &Bytes, channel: &Bytes, message: &Bytes) -> usize {
        let targets: Vec<Arc<dyn Subscriber>> = self
            .patterns
            .read()
            .iter()
            .filter(|(p, _)| p == pattern)
            .map(|(_, e)| e.subscriber.clone())
            .collect();
        for target in &targets {
            target.deliver(channel, message);
        }
        crate::stats::delivered(targets.len());
        targets.len()
    }

    /// Delivers a message from Redis to the subscribers of what it matched.
    pub fn deliver_from_redis(
        &self,
        pattern: Option<&Bytes>,
        channel: &Bytes,
        message: &Bytes,
    ) -> usize {
        match pattern {
            Some(p) => self.publish_pattern(p, channel, message),
            None => self.publish_exact(channel, message),
        }
    }

    /// Subscriptions alive (exact and patterns).
    pub fn len(&self) -> usize {
        self.index.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Inbox(Mutex<Vec<(String, String)>>);

    impl Subscriber for Inbox {
        fn deliver(&self, channel: &Bytes, message: &Bytes) {
            let s = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
            self.0.lock().push((s(channel), s(message)));
        }
    }

    #[test]
    fn exact_and_pattern_subscriptions_both_get_a_message_once() {
        let broker = Broker::default();
        let a = Arc::new(Inbox::default());
        let b = Arc::new(Inbox::default());
        broker.subscribe(Bytes::from("chat"), false, a.clone());
        broker.subscribe(Bytes::from("ch*"), true, b.clone());
        assert_eq!(broker.publish(&Bytes::from("chat"), &Bytes::from("hi")), 2);
        assert_eq!(broker.publish(&Bytes::from("other"), &Bytes::from("x")), 0);
        assert_eq!(*a.0.lock(), vec![("chat".into(), "hi".into())]);
        assert_eq!(*b.0.lock(), vec![("chat".into(), "hi".into())]);
    }

    #[test]
    fn unsubscribe_stops_delivery_and_reports_what_it_did() {
        let broker = Broker::default();
        let a = Arc::new(Inbox::default());
        let id = broker.subscribe(Bytes::from("c"), false, a.clone());
        let p = broker.subscribe(Bytes::from("*"), true, a.clone());
        assert!(broker.unsubscribe(id) && broker.unsubscribe(p));
        assert!(!broker.unsubscribe(id));
        assert_eq!(broker.publish(&Bytes::from("c"), &Bytes::from("m")), 0);
        assert!(broker.is_empty());
    }

    #[test]
    fn the_watcher_hears_of_first_and_last_subscribers_only() {
        #[derive(Default)]
        struct Seen(Mutex<Vec<(String, bool, bool)>>);
        impl Watcher for Seen {
            fn interest(&self, name: &Bytes, pattern: bool, on: bool) {
                let name = String::from_utf8_lossy(name).into_owned();
                self.0.lock().push((name, pattern, on));
            }
        }
        let broker = Broker::default();
        let seen = Arc::new(Seen::default());
        broker.watch(Some(seen.clone()));
        let a = Arc::new(Inbox::default());
        let one = broker.subscribe(Bytes::from("c"), false, a.clone());
        let two = broker.subscribe(Bytes::from("c"), false, a.clone());
        let p1 = broker.subscribe(Bytes::from("c*"), true, a.clone());
        let p2 = broker.subscribe(Bytes::from("c*"), true, a.clone());
        let mut names = broker.names();
        names.sort();
        assert_eq!(
            names,
            vec![(Bytes::from("c"), false), (Bytes::from("c*"), true)]
        );
        for id in [one, p1, two, p2] {
            broker.unsubscribe(id);
        }
        let expected = [
            ("c", false, true),
            ("c*", true, true),
            ("c", false, false),
            ("c*", true, false),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(n, p, o)| (n.to_string(), *p, *o))
            .collect();
        assert_eq!(*seen.0.lock(), expected);
    }

    #[test]
    fn a_subscriber_may_publish_from_deliver() {
        struct Echo(&'static Broker);
        impl Subscriber for Echo {
            fn deliver(&self, _: &Bytes, message: &Bytes) {
                if message.as_ref() == b"ping" {
                    self.0.publish(&Bytes::from("pong"), &Bytes::from("pong"));
                }
            }
        }
        let broker: &'static Broker = Box::leak(Box::default());
        let inbox = Arc::new(Inbox::default());
        broker.subscribe(Bytes::from("ping"), false, Arc::new(Echo(broker)));
        broker.subscribe(Bytes::from("pong"), false, inbox.clone());
        broker.publish(&Bytes::from("ping"), &Bytes::from("ping"));
        assert_eq!(inbox.0.lock().len(), 1);
    }
}
