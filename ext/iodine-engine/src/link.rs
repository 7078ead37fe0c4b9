//! A long-lived connection as the application sees it (WebSocket, SSE, later raw sockets):
//! the [`Link`] it writes to, and the [`Events`] it is told about.
//!
//! The application never touches the socket. `write` only queues (it never blocks a Ruby
//! thread) and wakes the connection's session task, which writes everything queued in one
//! batch and one flush. The queue is bounded ([`OUTGOING_LIMIT`] bytes): a client that
//! does not read while the application keeps writing is closed as too slow, the way the C
//! gem dropped slow clients, instead of letting its backlog grow without end.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

/// Unsent bytes one connection may hold (queued by the app, not yet written to its socket).
pub const OUTGOING_LIMIT: usize = 16 * 1024 * 1024;

/// Bookkeeping cost counted for each queued message on top of its bytes, so a flood of
/// empty messages is bounded too.
const MESSAGE_OVERHEAD: usize = 64;

/// Received bytes a connection may have waiting for the application (handed to
/// [`Events::on_message`], not yet [`Link::handled`]) before its session stops reading: the
/// kernel's buffers then fill and the peer's sends block, instead of the server keeping
/// everything a fast sender sends a slow handler. One message larger than this is still
/// delivered (reading pauses after it).
pub const INBOUND_LIMIT: usize = 1024 * 1024;

/// Received messages a connection may have waiting for the application: a flood of small
/// ones is bounded too, and the callbacks queued for a client that has gone end soon.
pub const INBOUND_MESSAGES: usize = 64;

/// [`Link`]'s polling states: the session is not being polled (a signal wakes it)...
const NOT_POLLING: u8 = 0;
/// ... it is (a signal needs no wake-up) ...
const POLLING: u8 = 1;
/// ... and a signal came while it was, without waking it.
const SKIPPED: u8 = 2;

/// The protocol a connection speaks once it left HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 6455 WebSocket.
    WebSocket,
    /// Server-Sent Events (EventSource).
    Sse,
    /// Raw bytes both ways (raw TCP/Unix servers and clients, `upgrade.tcp`).
    Raw,
}

/// One outgoing message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A WebSocket text frame (the bytes are UTF-8).
    Text(Bytes),
    /// A WebSocket binary frame.
    Binary(Bytes),
    /// Bytes written as they are (an encoded SSE event).
    Raw(Bytes),
}

impl Outgoing {
    fn cost(&self) -> usize {
        let (Outgoing::Text(b) | Outgoing::Binary(b) | Outgoing::Raw(b)) = self;
        b.len() + MESSAGE_OVERHEAD
    }
}

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The connection is closed or closing.
    Closed,
    /// The backlog passed [`OUTGOING_LIMIT`]: the connection is now being closed.
    TooSlow,
}

/// How the application asked the connection to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    /// Not asked.
    No,
    /// After the queued writes; WebSocket: a Close frame with this code (None: no code).
    Graceful(Option<u16>),
    /// At once, dropping the backlog (the client is too slow).
    Abort,
}

#[derive(Debug)]
struct Outbox {
    queue: VecDeque<Outgoing>,
    /// Cost of `queue` plus what the session took and has not flushed yet.
    bytes: usize,
    /// Messages the session took and has not flushed yet.
    in_flight: usize,
    closing: Closing,
    /// The session ended: nothing more is written.
    closed: bool,
}

/// The application's handle on one connection.
#[derive(Debug)]
pub struct Link {
    protocol: Protocol,
    outbox: Mutex<Outbox>,
    /// The session's task, woken when the application wrote, closed, aborted or changed the
    /// timeout (one waker slot, not a `Notify`: the session needs no pinned future for it).
    waker: AtomicWaker,
    /// Set with each wake-up; the session clears it when it looks.
    signalled: AtomicBool,
    /// [`NOT_POLLING`], [`POLLING`] or [`SKIPPED`]: while the session is being polled a
    /// signal needs no wake-up (the session looks again before it waits), so an application
    /// that writes from inside `on_message` doesn't make its session run twice per message.
    polling: AtomicU8,
    /// The backlog overflowed: the session must end at once (read without the lock, on
    /// every poll of the session).
    aborted: AtomicBool,
    /// This process opened the connection (`Iodine.connect`): counted as a client.
    client: AtomicBool,
    /// Ping / keep-alive interval in seconds (0: the listener's default).
    timeout: AtomicU32,
    /// The listener's default interval in seconds, as the session last applied it.
    default_timeout: AtomicU32,
    /// Received bytes and messages handed to the application and not handled yet (only
    /// counted for applications that report them: [`Events::reports_handled`]).
    inbound_bytes: AtomicUsize,
    inbound_messages: AtomicUsize,
    /// An oversized message (over [`OUTGOING_LIMIT`], accepted into an empty backlog) is
    /// queued or being written: its cost is left out of the limit for what waits behind it.
    oversized: AtomicUsize,
}

impl Link {
    /// A link for a connection about to start speaking `protocol`.
    pub fn new(protocol: Protocol) -> Arc<Link> {
        Arc::new(Link {
            protocol,
            outbox: Mutex::new(Outbox {
                queue: VecDeque::new(),
                bytes: 0,
                in_flight: 0,
                closing: Closing::No,
                closed: false,
            }),
            waker: AtomicWaker::new(),
            signalled: AtomicBool::new(false),
            polling: AtomicU8::new(NOT_POLLING),
            aborted: AtomicBool::new(false),
            client: AtomicBool::new(false),
            timeout: AtomicU32::new(0),
            default_timeout: AtomicU32::new(0),
            inbound_bytes: AtomicUsize::new(0),
            inbound_messages: AtomicUsize::new(0),
            oversized: AtomicUsize::new(0),
        })
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Marks a connection this process opened (before its session starts).
    pub(crate) fn mark_client(&self) {
        self.client.store(true, Ordering::Relaxed);
    }

    /// What [`crate::stats`] counts the connection as.
    pub(crate) fn kind(&self) -> crate::stats::Kind {
        use crate::stats::Kind;
        if self.client.load(Ordering::Relaxed) {
            return Kind::Client;
        }
        match self.protocol {
            Protocol::WebSocket => Kind::WebSocket,
            Protocol::Sse => Kind::Sse,
            Protocol::Raw => Kind::Raw,
        }
    }

    /// Queues a message; never blocks. Past [`OUTGOING_LIMIT`] of backlog the connection is
    /// aborted. The limit is for a client that doesn't read, not for one message: a message
    /// larger than it is accepted into an empty backlog, and the limit then applies to what
    /// waits behind it.
    pub fn write(&self, message: Outgoing) -> Result<(), WriteError> {
        {
            let mut out = self.outbox.lock();
            if out.closed || out.closing != Closing::No {
                return Err(WriteError::Closed);
            }
            let cost = message.cost();
            let oversized = self.oversized.load(Ordering::Acquire);
            if cost > OUTGOING_LIMIT && out.bytes == 0 {
                self.oversized.store(cost, Ordering::Release);
            } else if out.bytes.saturating_sub(oversized) + cost > OUTGOING_LIMIT {
                out.closing = Closing::Abort;
                out.queue.clear();
                drop(out);
                self.aborted.store(true, Ordering::Release);
                crate::stats::dropped();
                crate::warning!(
                    "closing a client that stopped reading ({OUTGOING_LIMIT} bytes unsent)"
                );
                self.signal();
                return Err(WriteError::TooSlow);
            }
            out.bytes += cost;
            out.queue.push_back(message);
        }
        self.signal();
        Ok(())
    }

    /// Closes after the queued writes (WebSocket: with a Close frame carrying `code`).
    /// Does nothing when already closing.
    pub fn close(&self, code: Option<u16>) {
        {
            let mut out = self.outbox.lock();
            if out.closed || out.closing != Closing::No {
                return;
            }
            out.closing = Closing::Graceful(code);
        }
        self.signal();
    }

    /// Whether writes are still accepted.
    pub fn is_open(&self) -> bool {
        let out = self.outbox.lock();
        !out.closed && out.closing == Closing::No
    }

    /// Messages queued or being written; -1 once the connection is closed.
    pub fn pending(&self) -> i64 {
        let out = self.outbox.lock();
        if out.closed {
            -1
        } else {
            (out.queue.len() + out.in_flight) as i64
        }
    }

    /// The ping / keep-alive interval in seconds (0: the listener's default).
    pub fn timeout(&self) -> u32 {
        self.timeout.load(Ordering::Relaxed)
    }

    /// The ping / keep-alive interval in effect, in seconds: the link's own when set, else
    /// the listener's default its session applies (0 before the session started).
    pub fn effective_timeout(&self) -> u32 {
        match self.timeout() {
            0 => self.default_timeout.load(Ordering::Relaxed),
            own => own,
        }
    }

    /// The ping / keep-alive interval: the link's own when set, else `default` (which the
    /// session passes: [`Link::effective_timeout`] then reports it).
    pub fn interval(&self, default: std::time::Duration) -> std::time::Duration {
        let secs = u32::try_from(default.as_secs()).unwrap_or(u32::MAX);
        self.default_timeout.store(secs, Ordering::Relaxed);
        match self.timeout() {
            0 => default,
            s => std::time::Duration::from_secs(s.into()),
        }
    }

    /// Sets the ping / keep-alive interval in seconds (0: the listener's default).
    pub fn set_timeout(&self, seconds: u32) {
        self.timeout.store(seconds, Ordering::Relaxed);
        self.signal();
    }

    fn signal(&self) {
        self.signalled.store(true, Ordering::Release);
        // Either the session, still polling, learns from `done_polling` that it must look
        // again, or this sees that it no longer polls and wakes it.
        match self
            .polling
            .compare_exchange(POLLING, SKIPPED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) | Err(SKIPPED) => {}
            Err(_) => self.wake_session(),
        }
    }

    // The session's side (one task per link).

    /// Wakes `waker` at the application's next write, close, abort or timeout change.
    /// Registered on every poll: a session stuck writing must still hear an abort.
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    /// The session's poll begins: until [`Link::done_polling`], signals don't wake it (it
    /// is running; it looks before it waits).
    pub(crate) fn polling(&self) {
        self.polling.store(POLLING, Ordering::SeqCst);
    }

    /// The session's poll is about to wait: whether a signal came meanwhile without waking
    /// it (then it must look again rather than wait).
    pub(crate) fn done_polling(&self) -> bool {
        self.polling.swap(NOT_POLLING, Ordering::SeqCst) == SKIPPED
    }

    /// Whether the application signalled since the last call (clears the signal).
    pub(crate) fn signalled(&self) -> bool {
        self.signalled.swap(false, Ordering::AcqRel)
    }

    /// Whether the connection must end at once (its backlog overflowed).
    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Resolves at the application's next signal (a write, close, abort or timeout change).
    pub(crate) async fn woken(&self) {
        poll_fn(|cx| {
            self.register(cx.waker());
            match self.signalled() {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        })
        .await
    }

    /// Resolves once the connection must end at once (its backlog overflowed), even while
    /// the session is blocked writing to a client that does not read.
    pub(crate) async fn aborted(&self) {
        poll_fn(|cx| {
            self.register(cx.waker());
            match self.is_aborted() {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        })
        .await
    }

    /// Takes everything queued into `into`; returns how the app wants the connection to end.
    pub(crate) fn take(&self, into: &mut Vec<Outgoing>) -> Closing {
        let mut out = self.outbox.lock();
        out.in_flight += out.queue.len();
        into.extend(out.queue.drain(..));
        out.closing
    }

    /// The session wrote and flushed `count` messages taken with [`Link::take`].
    pub(crate) fn flushed(&self, taken: &[Outgoing]) {
        let cost: usize = taken.iter().map(Outgoing::cost).sum();
        let mut out = self.outbox.lock();
        out.in_flight = out.in_flight.saturating_sub(taken.len());
        out.bytes = out.bytes.saturating_sub(cost);
        let oversized = self.oversized.load(Ordering::Acquire);
        if oversized > 0 && taken.iter().any(|m| m.cost() == oversized) {
            self.oversized.store(0, Ordering::Release);
        }
    }

    // Inbound flow control: the session counts what it hands to the application, the
    // application reports what it handled, and the session reads only while little waits.

    /// The session handed a message of `len` bytes to the application.
    pub(crate) fn received(&self, len: usize) {
        self.inbound_bytes.fetch_add(len, Ordering::AcqRel);
        self.inbound_messages.fetch_add(1, Ordering::AcqRel);
    }

    /// The application handled (or dropped) a received message of `len` bytes: once little
    /// waits again, the session reads again.
    pub fn handled(&self, len: usize) {
        // Saturating: a report without a `received` (a bug) must not wrap into "full".
        let sub = |n: usize| move |v: usize| Some(v.saturating_sub(n));
        let bytes = self
            .inbound_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, sub(len))
            .unwrap_or(0);
        let messages = self
            .inbound_messages
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, sub(1))
            .unwrap_or(0);
        // It was full, and no longer is: the session may be waiting for this.
        let was_full = bytes >= INBOUND_LIMIT || messages >= INBOUND_MESSAGES;
        if was_full && !self.inbound_full() {
            self.wake_session();
        }
    }

    /// Wakes the session's task; deferred when this thread holds the reactor's turn (woken
    /// in one pass after the application's batch, without a system call each).
    fn wake_session(&self) {
        if let Some(waker) = self.waker.take() {
            crate::reactor::wake(waker);
        }
    }

    /// Whether the application has so much received data waiting that reading must pause.
    pub(crate) fn inbound_full(&self) -> bool {
        self.inbound_bytes.load(Ordering::Acquire) >= INBOUND_LIMIT
            || self.inbound_messages.load(Ordering::Acquire) >= INBOUND_MESSAGES
    }

    /// Received bytes and messages waiting for the application.
    pub fn inbound(&self) -> (usize, usize) {
        (
            self.inbound_bytes.load(Ordering::Acquire),
            self.inbound_messages.load(Ordering::Acquire),
        )
    }

    /// The session ended: writes are refused from now on.
    pub(crate) fn mark_closed(&self) {
        self.oversized.store(0, Ordering::Release);
        let mut out = self.outbox.lock();
        out.closed = true;
        out.queue.clear();
        out.in_flight = 0;
        out.bytes = 0;
    }
}

/// What a message's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bytes: a binary WebSocket message, or what a raw connection read.
    Binary,
    /// UTF-8 text (checked) with characters beyond ASCII.
    Text,
    /// UTF-8 text of ASCII characters only (checked): the binding tells Ruby, so its String
    /// is never scanned again.
    Ascii,
}

impl Kind {
    /// Whether it is text (a text WebSocket message).
    pub fn is_text(self) -> bool {
        self != Kind::Binary
    }

    /// The kind of `bytes` received as text: `Ascii` or `Text` when they are UTF-8, None
    /// when they are not. One pass for ASCII (most text), a SIMD check for the rest.
    pub fn of_text(bytes: &[u8]) -> Option<Kind> {
        if bytes.is_ascii() {
            Some(Kind::Ascii)
        } else if simdutf8::basic::from_utf8(bytes).is_ok() {
            Some(Kind::Text)
        } else {
            None
        }
    }
}

/// What a connection's session tells the application. Called on IO threads: implementations
/// hand the work to whoever runs application code and return at once.
pub trait Events: Send + Sync + 'static {
    /// The connection is open (the 101 or the SSE head was sent).
    fn on_open(&self);
    /// A complete message arrived, of `kind` (WebSocket text frames are `Text` or `Ascii`).
    fn on_message(&self, data: Bytes, kind: Kind);
    /// True when the application reports each message it handled with [`Link::handled`]
    /// (`data.len()`): the session then stops reading while too much waits
    /// ([`INBOUND_LIMIT`], [`INBOUND_MESSAGES`]). False (the default): messages are taken as
    /// handled when `on_message` returns.
    fn reports_handled(&self) -> bool {
        false
    }
    /// Everything queued was written (also once right after `on_open`).
    fn on_drained(&self);
    /// The server is shutting down; the connection closes soon after.
    fn on_shutdown(&self);
    /// The connection closed, for any reason (also when the handshake failed: then
    /// without `on_open`). Called exactly once.
    fn on_close(&self);
    /// Raw connections: nothing was read or written for the link's timeout.
    fn on_timeout(&self) {}
    /// Raw connections: the peer finished sending (end of stream). Return true when the
    /// application will close the link itself once it handled what came before (so its
    /// answers to the last messages still go out); false (the default) closes the
    /// connection after what is queued now.
    fn on_peer_closed(&self) -> bool {
        false
    }
}

/// An upgrade the application accepted: the link it writes to (its protocol says what to
/// speak) and what it is told. Dropped without being started (the handshake failed, the
/// client left first), it closes the link and calls `on_close`: the application always
/// hears the end, with or without `on_open`.
pub struct Upgrade {
    link: Arc<Link>,
    events: Arc<dyn Events>,
    started: bool,
}

impl Upgrade {
    /// An upgrade to `link`'s protocol reporting to `events`.
    pub fn new(link: Arc<Link>, events: Arc<dyn Events>) -> Self {
        Upgrade {
            link,
            events,
            started: false,
        }
    }

    /// The link.
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// Hands the link and the events to the session that now owns the connection (which
    /// must call `on_close` when it ends).
    pub fn start(mut self) -> (Arc<Link>, Arc<dyn Events>) {
        self.started = true;
        (self.link.clone(), self.events.clone())
    }
}

impl Drop for Upgrade {
    fn drop(&mut self) {
        if !self.started {
            self.link.mark_closed();
            self.events.on_close();
        }
    }
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade")
            .field("protocol", &self.link.protocol())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_queue_until_taken_and_pending_counts_unflushed_messages() {
        let link = Link::new(Protocol::WebSocket);
        assert!(link.write(Outgoing::Text(Bytes::from("a"))).is_ok());
        assert!(link.write(Outgoing::Binary(Bytes::from("b"))).is_ok());
        assert_eq!(link.pending(), 2);
        let mut taken = Vec::new();
        assert_eq!(link.take(&mut taken), Closing::No);
        assert_eq!(taken.len(), 2);
        assert_eq!(link.pending(), 2, "taken but not flushed is still pending");
        link.flushed(&taken);
        assert_eq!(link.pending(), 0);
        link.mark_closed();
        assert_eq!(link.pending(), -1);
        assert_eq!(
            link.write(Outgoing::Text(Bytes::new())),
            Err(WriteError::Closed)
        );
    }

    #[test]
    fn close_refuses_later_writes_but_keeps_the_queue() {
        let link = Link::new(Protocol::Sse);
        link.write(Outgoing::Raw(Bytes::from("x"))).unwrap();
        link.close(Some(1000));
        assert!(!link.is_open());
        assert_eq!(
            link.write(Outgoing::Raw(Bytes::new())),
            Err(WriteError::Closed)
        );
        let mut taken = Vec::new();
        assert_eq!(link.take(&mut taken), Closing::Graceful(Some(1000)));
        assert_eq!(taken, vec![Outgoing::Raw(Bytes::from("x"))]);
    }

    #[test]
    fn one_message_over_the_limit_is_accepted_into_an_empty_backlog() {
        let link = Link::new(Protocol::Raw);
        let big = Bytes::from(vec![b'x'; OUTGOING_LIMIT + 4 * 1024 * 1024]);
        assert!(
            link.write(Outgoing::Raw(big.clone())).is_ok(),
            "20 MiB whole"
        );
        // What waits behind it has the whole limit.
        let chunk = Bytes::from(vec![b'y'; 1024 * 1024]);
        for _ in 0..8 {
            assert!(link.write(Outgoing::Raw(chunk.clone())).is_ok());
        }
        let mut taken = Vec::new();
        link.take(&mut taken);
        link.flushed(&taken);
        assert_eq!(link.pending(), 0);
        // Into a backlog that is not empty, it overflows.
        link.write(Outgoing::Raw(chunk.clone())).unwrap();
        assert_eq!(
            link.write(Outgoing::Raw(big)),
            Err(WriteError::TooSlow),
            "an oversized message behind others"
        );
    }

    #[test]
    fn inbound_is_full_at_either_bound_and_handled_frees_it() {
        let link = Link::new(Protocol::WebSocket);
        for _ in 0..INBOUND_MESSAGES - 1 {
            link.received(1);
        }
        assert!(!link.inbound_full());
        link.received(1);
        assert!(link.inbound_full(), "the message count bound");
        link.handled(1);
        assert!(!link.inbound_full());
        let fresh = Link::new(Protocol::Raw);
        fresh.received(INBOUND_LIMIT);
        assert!(fresh.inbound_full(), "the byte bound");
        fresh.handled(INBOUND_LIMIT);
        assert_eq!(fresh.inbound(), (0, 0));
    }

    /// Counts its wake-ups.
    struct Wakes(AtomicUsize);

    impl futures_util::task::ArcWake for Wakes {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_write_while_the_session_polls_skips_the_wake_up_but_is_not_missed() {
        let link = Link::new(Protocol::WebSocket);
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = futures_util::task::waker(wakes.clone());
        link.register(&waker);
        link.polling();
        link.write(Outgoing::Text(Bytes::from("a"))).unwrap();
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            0,
            "no wake-up while polling"
        );
        assert!(link.done_polling(), "the session must look again");
        assert!(link.signalled());
        // A poll without a signal ends plainly; a write after it wakes the session.
        link.polling();
        assert!(!link.done_polling());
        link.write(Outgoing::Text(Bytes::from("b"))).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_backlog_past_the_limit_aborts_the_connection() {
        let link = Link::new(Protocol::WebSocket);
        let chunk = Bytes::from(vec![b'x'; 1024 * 1024]);
        let mut accepted = 0;
        while link.write(Outgoing::Binary(chunk.clone())).is_ok() {
            accepted += 1;
            assert!(accepted < 100, "the limit never hit");
        }
        assert_eq!(accepted, OUTGOING_LIMIT / (1024 * 1024 + MESSAGE_OVERHEAD));
        let mut taken = Vec::new();
        assert_eq!(link.take(&mut taken), Closing::Abort);
        assert!(taken.is_empty(), "the backlog is dropped");
    }
}
