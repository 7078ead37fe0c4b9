//! Graceful shutdown: one trigger, many waiters, and a count of live connections.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// A shutdown signal shared by listeners and connections, plus the live-connection count
/// that shutdown waits on.
#[derive(Clone, Debug)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    fired: AtomicBool,
    /// Wakes every waiter when the signal fires (a `Notify`, not a `watch`: each of the many
    /// connections waiting on it then holds a 64-byte future instead of a subscription).
    signal: Arc<Notify>,
    live: AtomicUsize,
    drained: Notify,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Shutdown {
            inner: Arc::new(Inner {
                fired: AtomicBool::new(false),
                signal: Arc::new(Notify::new()),
                live: AtomicUsize::new(0),
                drained: Notify::new(),
            }),
        }
    }

    /// Fires the signal: listeners stop accepting, idle connections close, busy ones finish.
    pub fn trigger(&self) {
        self.inner.fired.store(true, Ordering::SeqCst);
        self.inner.signal.notify_waiters();
    }

    /// Whether the signal fired.
    pub fn is_triggered(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    /// Resolves once the signal fires.
    pub async fn triggered(&self) {
        loop {
            // Made before the check: `notify_waiters` wakes every `Notified` that exists.
            let notified = self.inner.signal.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }

    /// A future that resolves once the signal fires (made now, it hears every later trigger;
    /// owned, so a hand-written session future can keep it pinned inline). Check
    /// [`Shutdown::is_triggered`] too: one made after the trigger never resolves.
    pub(crate) fn signal(&self) -> tokio::sync::futures::OwnedNotified {
        self.inner.signal.clone().notified_owned()
    }

    /// Counts a connection as live until the guard drops.
    pub fn track(&self) -> ConnectionGuard {
        self.inner.live.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard {
            inner: self.inner.clone(),
        }
    }

    /// Live connections now.
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    /// Waits until no connection is live, or `limit` passed; true when all are gone.
    pub async fn drained(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.inner.drained.notified();
                if self.live() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

/// Keeps one connection counted as live.
#[derive(Debug)]
pub struct ConnectionGuard {
    inner: Arc<Inner>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.inner.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.drained.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drained_waits_for_the_last_guard() {
        let s = Shutdown::new();
        let g = s.track();
        assert_eq!(s.live(), 1);
        assert!(!s.drained(Duration::from_millis(20)).await);
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.drained(Duration::from_secs(5)).await });
        drop(g);
        assert!(waiter.await.expect("join"));
    }

    #[tokio::test]
    async fn triggered_resolves_after_trigger() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        let s2 = s.clone();
        let t = tokio::spawn(async move { s2.triggered().await });
        s.trigger();
        t.await.expect("join");
        assert!(s.is_triggered());
    }
}
