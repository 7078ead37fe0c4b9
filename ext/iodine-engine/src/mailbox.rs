//! A connection's mailbox: the events of one connection (opened, message, drained, closed…)
//! run one at a time and in order, while different connections run in parallel.
//!
//! Whoever posts an event learns whether the mailbox was idle; only then does it schedule a
//! runner (for iodine: one bridge task), so at most one runner per mailbox exists at any time.
//! The runner takes events until [`Mailbox::next`] says the mailbox went idle again.

use std::collections::VecDeque;

use parking_lot::Mutex;

/// Events waiting for one connection's runner.
#[derive(Debug)]
pub struct Mailbox<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    /// The oldest event, when it is alone or the first of a run (most connections have one
    /// event at a time: it needs no queue, so posting allocates nothing).
    first: Option<T>,
    /// The events after `first`, in order.
    queue: VecDeque<T>,
    /// A runner exists (scheduled, or taking events).
    scheduled: bool,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            state: Mutex::new(State {
                first: None,
                queue: VecDeque::new(),
                scheduled: false,
            }),
        }
    }
}

impl<T> Mailbox<T> {
    /// An empty, idle mailbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an event. True when the mailbox was idle: the caller must now schedule a runner
    /// (exactly one); false when a runner exists and will take it.
    #[must_use = "when true, a runner must be scheduled or the event is never handled"]
    pub fn post(&self, event: T) -> bool {
        let mut state = self.state.lock();
        if state.first.is_none() && state.queue.is_empty() {
            state.first = Some(event);
        } else {
            state.queue.push_back(event);
        }
        !std::mem::replace(&mut state.scheduled, true)
    }

    /// For the runner: the next event, or None when there is none left, in which case the
    /// mailbox is idle again and this runner must stop (a later `post` schedules a new one).
    pub fn next(&self) -> Option<T> {
        let mut state = self.state.lock();
        let event = state.first.take().or_else(|| state.queue.pop_front());
        if event.is_none() {
            state.scheduled = false;
            // An idle mailbox holds no memory: with thousands of quiet connections, the
            // queue's leftover capacity would be most of what each one costs.
            if state.queue.capacity() > 0 {
                state.queue = VecDeque::new();
            }
        }
        event
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        let state = self.state.lock();
        state.queue.len() + usize::from(state.first.is_some())
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn only_the_first_post_to_an_idle_mailbox_schedules() {
        let m = Mailbox::new();
        assert!(m.post(1));
        assert!(!m.post(2));
        assert_eq!(m.next(), Some(1));
        assert_eq!(m.next(), Some(2));
        assert_eq!(m.next(), None); // idle again
        assert!(m.post(3));
    }

    /// Producers post from several threads; each schedule starts a runner thread. Runners of
    /// one mailbox never overlap, and each producer's events arrive in its order.
    #[test]
    fn runners_never_overlap_and_keep_each_producers_order() {
        let mailbox: Arc<Mailbox<(usize, usize)>> = Arc::new(Mailbox::new());
        let running = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let runners = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let (mailbox, running, seen, runners) = (
                    mailbox.clone(),
                    running.clone(),
                    seen.clone(),
                    runners.clone(),
                );
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        if mailbox.post((p, i)) {
                            let (mailbox, running, seen) =
                                (mailbox.clone(), running.clone(), seen.clone());
                            runners.lock().push(std::thread::spawn(move || {
                                assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "overlap");
                                while let Some(event) = mailbox.next() {
                                    seen.lock().push(event);
                                }
                                running.fetch_sub(1, Ordering::SeqCst);
                            }));
                        }
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().expect("producer");
        }
        loop {
            let batch: Vec<_> = std::mem::take(&mut *runners.lock());
            if batch.is_empty() {
                break;
            }
            for r in batch {
                r.join().expect("runner");
            }
        }
        let seen = seen.lock();
        assert_eq!(seen.len(), 8000);
        for p in 0..4 {
            let mine: Vec<usize> = seen
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, i)| *i)
                .collect();
            assert_eq!(mine, (0..2000).collect::<Vec<_>>());
        }
    }
}
