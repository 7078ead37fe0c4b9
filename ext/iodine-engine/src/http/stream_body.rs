//! Streamed response bodies: chunks produced by the application (on another thread) while
//! the response is being sent, with backpressure, a reliable abort, and a declared length
//! that is kept to.
//!
//! A body that ends badly (aborted by the producer, or shorter than the `Content-Length` the
//! app declared) is cut: the connection closes after the bytes already produced, so the
//! client can tell the response is incomplete. Before the cut, the receiver yields once
//! (`Pending`, waking itself), which lets hyper flush what it buffered — the head included.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Chunks buffered between a streaming producer and the socket before the producer waits.
const STREAM_DEPTH: usize = 16;

/// A streaming body's receiving end (see [`stream_channel`]).
#[derive(Debug)]
pub struct StreamReceiver {
    rx: mpsc::Receiver<Bytes>,
    aborted: Arc<AtomicBool>,
    /// Bytes still owed when the app declared a `Content-Length`.
    remaining: Option<u64>,
    state: State,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Open,
    /// The body must be cut; yielded once so hyper flushes first.
    Cutting(&'static str),
    /// The body ended: complete, or cut (the error was returned).
    Done,
}

/// The producing end of a streamed body. The body ends cleanly when the last sender is
/// dropped, unless one of them called [`BodySender::abort`].
#[derive(Clone, Debug)]
pub struct BodySender {
    tx: mpsc::Sender<Bytes>,
    aborted: Arc<AtomicBool>,
}

/// A streaming body: the sender for the producer and the receiver for the response.
pub fn stream_channel() -> (BodySender, StreamReceiver) {
    let (tx, rx) = mpsc::channel(STREAM_DEPTH);
    let aborted = Arc::new(AtomicBool::new(false));
    (
        BodySender {
            tx,
            aborted: aborted.clone(),
        },
        StreamReceiver {
            rx,
            aborted,
            remaining: None,
            state: State::Open,
        },
    )
}

impl BodySender {
    /// Sends a chunk, waiting (blocking the thread) while the client is slow; false once the
    /// client is gone. Must not be called from inside the tokio runtime.
    pub fn send_blocking(&self, chunk: Bytes) -> bool {
        self.tx.blocking_send(chunk).is_ok()
    }

    /// Sends a chunk, waiting for room; false once the client is gone. Cancel-safe: if the
    /// future is dropped before it completes, the chunk was not sent.
    pub async fn send(&self, chunk: Bytes) -> bool {
        self.tx.send(chunk).await.is_ok()
    }

    /// Sends a chunk if there is room now; `Err(chunk)` when full, and false when closed.
    pub fn try_send(&self, chunk: Bytes) -> Result<bool, Bytes> {
        match self.tx.try_send(chunk) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Full(chunk)) => Err(chunk),
        }
    }

    /// Aborts the response: the connection is cut without finishing the body, so the client
    /// can tell it is incomplete. Works whether or not the queue is full.
    pub fn abort(self, why: &str) {
        crate::debug!("response body aborted: {why}");
        self.aborted.store(true, Ordering::Release);
        // Wakes a receiver waiting for data (empty chunks are skipped); when the queue is
        // full the receiver is not waiting, and sees the flag on its next poll.
        let _ = self.tx.try_send(Bytes::new());
    }

    /// Whether the client went away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl StreamReceiver {
    /// Holds the body to exactly `len` bytes (the app's `Content-Length`): extra bytes are
    /// dropped, and a shorter body is cut.
    pub(crate) fn declare_length(&mut self, len: u64) {
        self.remaining = Some(len);
    }

    /// The next chunk; `None` at a clean end; an error when the body must be cut.
    pub(crate) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match self.state {
                State::Done => return Poll::Ready(None),
                State::Cutting(why) => {
                    self.state = State::Done;
                    return Poll::Ready(Some(Err(io::Error::other(why))));
                }
                State::Open => {}
            }
            if self.remaining == Some(0) {
                self.state = State::Done;
                return Poll::Ready(None);
            }
            match self.rx.poll_recv(cx) {
                // What was sent before an abort still goes out; then the body is cut.
                Poll::Pending if self.aborted.load(Ordering::Acquire) => {
                    return self.cut(cx, "response aborted");
                }
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(chunk)) if chunk.is_empty() => continue,
                Poll::Ready(Some(mut chunk)) => {
                    if let Some(left) = self.remaining.as_mut() {
                        if chunk.len() as u64 > *left {
                            crate::warning!(
                                "response body longer than its Content-Length: extra bytes dropped"
                            );
                            chunk.truncate(*left as usize);
                        }
                        *left -= chunk.len() as u64;
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
                // Every sender is gone: the end, unless one aborted or bytes are missing.
                Poll::Ready(None) if self.aborted.load(Ordering::Acquire) => {
                    return self.cut(cx, "response aborted");
                }
                Poll::Ready(None) if self.remaining.is_some_and(|n| n > 0) => {
                    crate::warning!(
                        "response body shorter than its Content-Length: connection closed"
                    );
                    return self.cut(cx, "response body shorter than its Content-Length");
                }
                Poll::Ready(None) => {
                    self.state = State::Done;
                    return Poll::Ready(None);
                }
            }
        }
    }

    /// Yields once (so hyper flushes what it has), then fails the body.
    fn cut(&mut self, cx: &mut Context<'_>, why: &'static str) -> Poll<Option<io::Result<Bytes>>> {
        self.state = State::Cutting(why);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Whether no more data will come.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    async fn next(rx: &mut StreamReceiver) -> Option<io::Result<Bytes>> {
        poll_fn(|cx| rx.poll_chunk(cx)).await
    }

    #[tokio::test]
    async fn chunks_then_a_clean_end() {
        let (tx, mut rx) = stream_channel();
        assert_eq!(tx.try_send(Bytes::from("ab")), Ok(true));
        drop(tx);
        assert_eq!(next(&mut rx).await.unwrap().unwrap(), "ab");
        assert!(next(&mut rx).await.is_none());
    }

    #[tokio::test]
    async fn an_abort_with_a_full_queue_still_cuts_after_the_queued_data() {
        let (tx, mut rx) = stream_channel();
        let mut queued = 0;
        while tx.try_send(Bytes::from("x")) == Ok(true) {
            queued += 1;
        }
        let keep = tx.clone(); // another sender still alive: the flag alone must cut
        tx.abort("test");
        for _ in 0..queued {
            assert_eq!(next(&mut rx).await.unwrap().unwrap(), "x");
        }
        assert!(next(&mut rx).await.unwrap().is_err());
        assert!(next(&mut rx).await.is_none());
        drop(keep);
    }

    #[tokio::test]
    async fn a_declared_length_is_kept() {
        let (tx, mut rx) = stream_channel();
        rx.declare_length(3);
        assert_eq!(tx.try_send(Bytes::from("abcdef")), Ok(true));
        assert_eq!(next(&mut rx).await.unwrap().unwrap(), "abc");
        assert!(next(&mut rx).await.is_none());

        let (tx, mut rx) = stream_channel();
        rx.declare_length(10);
        assert_eq!(tx.try_send(Bytes::from("abc")), Ok(true));
        drop(tx);
        assert_eq!(next(&mut rx).await.unwrap().unwrap(), "abc");
        assert!(next(&mut rx).await.unwrap().is_err(), "short body is cut");
    }
}
