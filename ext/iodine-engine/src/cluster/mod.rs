//! Pub/sub across processes. The master forks the workers; each worker has a Unix socket
//! pair to the master ([`wire`] frames). A worker tells the master which channels it has
//! subscribers for ([`Watcher`](crate::pubsub::Watcher) on the broker), and sends up what
//! it publishes; the master ([`Hub`]) routes each message to the workers with a matching
//! subscription ([`router`]) and to its own subscribers.
//!
//! The master's side is synchronous (`poll(2)` on plain sockets, driven by the master's main
//! thread): the master never has a tokio runtime or a thread of its own, so it can fork a
//! new worker at any time. Workers speak over tokio ([`worker`]). The Redis engines' Redis
//! processes ([`crate::redis::child`]) are peers of the hub too.

pub mod master;
pub mod router;
pub mod wire;
pub mod worker;

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

pub use master::{Hub, HubWaker};
pub use wire::{Reach, MAX_CHANNEL, MAX_MESSAGE};

/// How this process reaches the rest of the cluster (the master's hub, or a worker's link).
pub trait Uplink: Send + Sync + 'static {
    /// Publishes `message` to `channel` for the processes of `reach`, this one included when
    /// the reach includes it.
    fn publish(&self, reach: Reach, channel: Bytes, message: Bytes);

    /// Sends an `EnginePublish` or a `Command` frame toward a Redis process (a command's id
    /// is this process's [`pending`](crate::redis::pending) number).
    fn to_engine(&self, frame: wire::Frame);

    /// The cluster-wide interest changed, for Redis engine `engine` (the master's uplink; a
    /// worker ignores it: the master tells the Redis process).
    fn engine_interest(&self, _engine: u8, _name: Bytes, _pattern: bool, _on: bool) {}
}

/// The uplink, if this process is part of a cluster.
pub fn uplink() -> Option<Arc<dyn Uplink>> {
    UPLINK.read().clone()
}

static UPLINK: RwLock<Option<Arc<dyn Uplink>>> = RwLock::new(None);

/// Sets (or clears) this process's uplink: from then on cluster-wide publishes use it.
pub fn set_uplink(uplink: Option<Arc<dyn Uplink>>) {
    *UPLINK.write() = uplink;
}

/// Whether this process is part of a cluster.
pub fn is_clustered() -> bool {
    UPLINK.read().is_some()
}

/// Publishes `message` to `channel` for the processes of `reach` (None: this process only).
/// Outside a cluster `Cluster` and `Root` deliver here and `Siblings` reaches nobody.
pub fn publish(reach: Option<Reach>, channel: Bytes, message: Bytes) {
    crate::stats::published();
    let uplink = UPLINK.read().clone();
    match (reach, uplink) {
        (Some(reach), Some(uplink)) => uplink.publish(reach, channel, message),
        (Some(Reach::Siblings), None) => {}
        _ => {
            crate::pubsub::broker().publish(&channel, &message);
        }
    }
}
