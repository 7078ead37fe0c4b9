//! Answers held back and sent in batches: with one Ruby worker, the answers produced while it
//! holds the GVL go out together, one wake-up of the IO threads per batch instead of one per
//! request (measured: a large share of the single-worker hello-world throughput).
//!
//! A held answer must never wait for an unrelated request. The worker sends the batch when the
//! task queue runs empty, when it is full, and before starting a task once the batch is older
//! than [`MAX_HOLD`]; and because the next app call may block (a `sleep`, a database), the
//! IO runtime's [`flusher`] sends any batch still held [`MAX_HOLD`] after it began. Answers are
//! plain Rust values, so any thread may send them.
//!
//! Only a lone worker batches: with several, Ruby may hand the GVL to another thread in the
//! middle of a task, and there is little to batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use iodine_engine::http::{Reply, Response};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::gvl::PerProcess;

/// Most answers held back before they are sent.
const BATCH: usize = 16;

/// Longest an answer is held back (the flusher's timer has a 1 ms resolution on top).
pub const MAX_HOLD: Duration = Duration::from_micros(300);

struct Held {
    answers: Vec<(Reply, Response)>,
    /// When the oldest held answer was produced.
    since: Option<Instant>,
}

/// This process's held answers and the flusher's wake-up: a process forked while serving
/// gets its own (the parent's were used by its IO threads, maybe mid-operation, and hold
/// its connections' answers).
struct Batch {
    held: Mutex<Held>,
    /// Wakes the flusher when a batch begins while it is parked.
    began: Notify,
}

static REPLIES: PerProcess<Batch> = PerProcess::new(Batch::new, |_| Batch::new());

impl Batch {
    fn new() -> Self {
        Batch {
            held: Mutex::new(Held {
                answers: Vec::new(),
                since: None,
            }),
            began: Notify::new(),
        }
    }
}

/// Whether answers are batched (one worker) or sent at once.
static BATCHING: AtomicBool = AtomicBool::new(false);

/// Whether the flusher is parked (waiting for `Batch::began`) rather than ticking.
static PARKED: AtomicBool = AtomicBool::new(true);

/// Ticks without a held batch before the flusher parks again.
const QUIET_TICKS: u32 = 200;

/// Turns batching on (a lone worker) or off.
pub fn batch_replies(on: bool) {
    BATCHING.store(on, Ordering::Release);
    if !on {
        flush_replies();
    }
}

/// Sends `response` now, or holds it for the current batch.
pub fn reply(reply: Reply, response: Response) {
    if !BATCHING.load(Ordering::Acquire) {
        reply.send(response);
        return;
    }
    let (began, full) = {
        let mut held = REPLIES.get().held.lock();
        held.answers.push((reply, response));
        let began = held.since.is_none();
        if began {
            held.since = Some(Instant::now());
        }
        (began, held.answers.len() >= BATCH)
    };
    if full {
        flush_replies();
    } else if began && PARKED.load(Ordering::SeqCst) {
        REPLIES.get().began.notify_one();
    }
}

/// Sends every held answer.
pub fn flush_replies() {
    let answers = {
        let mut held = REPLIES.get().held.lock();
        if held.answers.is_empty() {
            return;
        }
        held.since = None;
        std::mem::replace(&mut held.answers, Vec::with_capacity(BATCH))
    };
    for (reply, response) in answers {
        reply.send(response);
    }
}

/// Sends the held answers if the oldest has waited [`MAX_HOLD`] (before a task that may block).
pub fn flush_stale_replies() {
    // Called before every task: without batching nothing is held, and no lock is taken.
    if !BATCHING.load(Ordering::Acquire) {
        return;
    }
    let stale = REPLIES
        .get()
        .held
        .lock()
        .since
        .is_some_and(|t| t.elapsed() >= MAX_HOLD);
    if stale {
        flush_replies();
    }
}

/// Runs on the IO runtime: sends a batch the worker still holds [`MAX_HOLD`] after it began
/// (the worker is then busy in a long app call). While batches keep coming it ticks (about
/// every millisecond: no wake-up per batch under load); after [`QUIET_TICKS`] ticks without
/// one it parks until the next batch begins.
pub async fn flusher() {
    loop {
        PARKED.store(true, Ordering::SeqCst);
        // A batch that began before `PARKED` was seen set sent no wake-up: look first.
        if REPLIES.get().held.lock().since.is_none() {
            REPLIES.get().began.notified().await;
        }
        PARKED.store(false, Ordering::SeqCst);
        let mut quiet = 0;
        while quiet < QUIET_TICKS {
            tokio::time::sleep(MAX_HOLD).await;
            let since = REPLIES.get().held.lock().since;
            match since {
                None => quiet += 1,
                Some(t) if t.elapsed() >= MAX_HOLD => {
                    flush_replies();
                    quiet = 0;
                }
                Some(_) => quiet = 0,
            }
        }
    }
}
