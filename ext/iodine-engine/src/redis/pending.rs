//! Commands this process sent to another one (a worker's to the master, the master's to its
//! Redis process), by request number, until their replies come back.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use super::{Reply, ReplyTo};

struct Pending {
    next: u64,
    waiting: BTreeMap<u64, ReplyTo>,
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    next: 1,
    waiting: BTreeMap::new(),
});

/// Keeps `to` until the reply numbered by the returned id comes back.
pub fn register(to: ReplyTo) -> u64 {
    let mut p = PENDING.lock();
    let id = p.next;
    p.next += 1;
    p.waiting.insert(id, to);
    id
}

/// Hands the reply to the command numbered `id` (nothing when it is not waited for).
pub fn complete(id: u64, reply: Reply) {
    let to = PENDING.lock().waiting.remove(&id);
    if let Some(to) = to {
        to(reply);
    }
}

/// Every waiting command gets `why` as an error (the process that would answer is gone).
pub fn fail_all(why: &str) {
    let waiting: Vec<ReplyTo> = std::mem::take(&mut PENDING.lock().waiting)
        .into_values()
        .collect();
    for to in waiting {
        to(Reply::failure(why));
    }
}

/// Forgets every waiting command without calling anything (a forked child: its parent's
/// commands are not its own).
pub fn forget_all() {
    let waiting = std::mem::take(&mut PENDING.lock().waiting);
    std::mem::forget(waiting);
}
