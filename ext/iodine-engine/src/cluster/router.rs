//! The master's routing table: which workers subscribe to what, and who gets a message.
//!
//! Workers report the channels and patterns they have subscribers for (the first subscriber
//! and the last one leaving). A message goes only to the workers with a matching interest:
//! the C gem sent every message to every worker; a worker without subscribers now never
//! hears of it.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::wire::Reach;
use crate::pubsub::glob;

/// A worker, as the master numbers them.
pub type PeerId = u64;

/// The master's own subscribers, counted with the workers' for the cluster-wide interest
/// (never a route: the master delivers to itself through `Route::local`).
pub const MASTER: PeerId = PeerId::MAX;

#[derive(Debug, Default)]
struct Interests {
    exact: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
}

/// Interests by worker.
#[derive(Debug, Default)]
pub struct Router {
    peers: HashMap<PeerId, Interests>,
}

/// Where a message goes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// The workers to send it to.
    pub peers: Vec<PeerId>,
    /// Whether the master's own subscribers get it.
    pub local: bool,
}

impl Router {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A worker joined (with no interests yet).
    pub fn add(&mut self, peer: PeerId) {
        self.peers.entry(peer).or_default();
    }

    /// A worker left: its interests go with it. Returns the names (pattern flag) nobody in
    /// the cluster subscribes to any more.
    pub fn remove(&mut self, peer: PeerId) -> Vec<(Bytes, bool)> {
        let Some(gone) = self.peers.remove(&peer) else {
            return Vec::new();
        };
        let names = gone
            .exact
            .into_iter()
            .map(|n| (n, false))
            .chain(gone.patterns.into_iter().map(|n| (n, true)));
        names.filter(|(n, p)| !self.anyone(n, *p)).collect()
    }

    /// `peer` has subscribers for `name` now (or, with `on` false, no more). Returns
    /// Some(on) when that changed the cluster-wide interest (the first subscriber anywhere,
    /// or the last one), for the root's engines.
    pub fn interest(&mut self, peer: PeerId, name: Bytes, pattern: bool, on: bool) -> Option<bool> {
        let before = self.anyone(&name, pattern);
        let interests = self.peers.entry(peer).or_default();
        let set = match pattern {
            true => &mut interests.patterns,
            false => &mut interests.exact,
        };
        if on {
            set.insert(name.clone());
        } else {
            set.remove(&name);
        }
        let after = self.anyone(&name, pattern);
        (before != after).then_some(after)
    }

    /// Whether any process (the master included) subscribes to `name`.
    fn anyone(&self, name: &Bytes, pattern: bool) -> bool {
        self.peers.values().any(|i| match pattern {
            true => i.patterns.contains(name),
            false => i.exact.contains(name),
        })
    }

    /// Where a message to `channel` goes, published by `from` (None: by the master).
    pub fn route(&self, from: Option<PeerId>, reach: Reach, channel: &[u8]) -> Route {
        // Everyone but the publisher: the master's siblings are the workers alone.
        let local = !(reach == Reach::Siblings && from.is_none());
        if reach == Reach::Root {
            return Route {
                peers: Vec::new(),
                local,
            };
        }
        let mut peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, _)| Some(**id) != from && **id != MASTER)
            .filter(|(_, i)| {
                i.exact.contains(channel) || i.patterns.iter().any(|p| glob::matches(p, channel))
            })
            .map(|(id, _)| *id)
            .collect();
        peers.sort_unstable();
        Route { peers, local }
    }

    /// The workers subscribed to what a message from Redis matched: `pattern` itself, or
    /// (None) `channel` by name.
    pub fn route_message(&self, pattern: Option<&[u8]>, channel: &[u8]) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, _)| **id != MASTER)
            .filter(|(_, i)| match pattern {
                Some(p) => i.patterns.contains(p),
                None => i.exact.contains(channel),
            })
            .map(|(id, _)| *id)
            .collect();
        peers.sort_unstable();
        peers
    }

    /// Every channel and pattern some process subscribes to (for the master's engines).
    pub fn names(&self) -> Vec<(Bytes, bool)> {
        let mut all: HashSet<(Bytes, bool)> = HashSet::new();
        for i in self.peers.values() {
            all.extend(i.exact.iter().map(|n| (n.clone(), false)));
            all.extend(i.patterns.iter().map(|n| (n.clone(), true)));
        }
        all.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let mut r = Router::new();
        for p in [1, 2, 3] {
            r.add(p);
        }
        r.interest(1, Bytes::from("chat"), false, true);
        r.interest(2, Bytes::from("ch*"), true, true);
        r.interest(3, Bytes::from("news"), false, true);
        r
    }

    #[test]
    fn messages_go_only_to_workers_with_a_matching_interest() {
        let r = router();
        let route = r.route(Some(3), Reach::Cluster, b"chat");
        assert_eq!(route.peers, vec![1, 2]);
        assert!(route.local);
        assert_eq!(r.route(Some(1), Reach::Cluster, b"chat").peers, vec![2]);
        assert_eq!(r.route(None, Reach::Cluster, b"news").peers, vec![3]);
        assert!(r.route(None, Reach::Cluster, b"other").peers.is_empty());
    }

    #[test]
    fn siblings_and_root_reach_what_the_engines_say() {
        let r = router();
        assert_eq!(
            r.route(Some(1), Reach::Siblings, b"chat"),
            Route {
                peers: vec![2],
                local: true
            }
        );
        assert_eq!(
            r.route(None, Reach::Siblings, b"chat"),
            Route {
                peers: vec![1, 2],
                local: false
            }
        );
        assert_eq!(
            r.route(Some(1), Reach::Root, b"chat"),
            Route {
                peers: vec![],
                local: true
            }
        );
    }

    #[test]
    fn the_cluster_wide_interest_changes_with_the_first_and_the_last_subscriber() {
        let mut r = router();
        assert_eq!(
            r.interest(3, Bytes::from("chat"), false, true),
            None,
            "1 had it"
        );
        assert_eq!(
            r.interest(MASTER, Bytes::from("solo"), false, true),
            Some(true)
        );
        assert!(
            r.route(None, Reach::Cluster, b"solo").peers.is_empty(),
            "the master is never a route"
        );
        assert_eq!(
            r.interest(1, Bytes::from("chat"), false, false),
            None,
            "3 has it"
        );
        assert_eq!(
            r.interest(3, Bytes::from("chat"), false, false),
            Some(false)
        );
        assert_eq!(
            r.interest(2, Bytes::from("ch*"), false, true),
            Some(true),
            "exact ≠ pattern"
        );
        assert_eq!(r.remove(3), vec![(Bytes::from("news"), false)]);
        assert_eq!(
            r.interest(MASTER, Bytes::from("solo"), false, false),
            Some(false)
        );
    }

    #[test]
    fn interests_end_with_the_last_subscriber_or_the_worker() {
        let mut r = router();
        r.interest(1, Bytes::from("chat"), false, false);
        assert_eq!(r.route(None, Reach::Cluster, b"chat").peers, vec![2]);
        r.remove(2);
        assert!(r.route(None, Reach::Cluster, b"chat").peers.is_empty());
        assert_eq!(r.names(), vec![(Bytes::from("news"), false)]);
    }
}
