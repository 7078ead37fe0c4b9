//! One raw connection: what arrives is handed to [`Events::on_message`] in chunks of at most
//! [`READ_CHUNK`] bytes, the [`Link`]'s queue is written in batches (one vectored write per
//! wake-up where the socket takes it), and a quiet connection gets
//! [`Events::on_timeout`].
//!
//! Like the WebSocket session it is a hand-written future: an idle connection's task holds
//! the socket, one timer, one shutdown listener and no read buffer (reads go through a stack
//! buffer and are copied out only when something arrived).

use std::future::Future;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Sleep};

use super::RawSettings;
use crate::link::{Closing, Events, Link, Outgoing};
use crate::server::{PeerReset, Shutdown, Ticket};

/// The most one `on_message` gets (the C gem's 8 KiB).
pub const READ_CHUNK: usize = 8 * 1024;

/// Most queued messages handed to one vectored write.
const MAX_SLICES: usize = 64;

/// How long closing (flushing what the app queued, then shutting the socket down) may take
/// once the shutdown grace is over.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Speaks raw bytes on `io` until either side closes, then calls `on_close`; `on_open` and
/// the first `on_drained` are called now. The session holds `ticket` until it ends.
pub fn session<S>(
    io: S,
    link: Arc<Link>,
    events: Arc<dyn Events>,
    settings: RawSettings,
    shutdown: Shutdown,
    ticket: Ticket,
) -> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + PeerReset,
{
    events.on_open();
    events.on_drained();
    let interval = link.interval(settings.timeout);
    let stopping = shutdown.signal();
    let counts_inbound = events.reports_handled();
    Session {
        state: State {
            paused: false,
            io,
            link,
            events,
            settings,
            shutdown,
            _ticket: ticket,
            interval,
            timer_for: TimerFor::Idle,
            stop_heard: false,
            listening: false,
            reading: true,
            counts_inbound,
            closing: false,
            batch: Vec::new(),
            written: 0,
            offset: 0,
            active: Instant::now(),
        },
        timer: tokio::time::sleep(interval),
        stopping,
    }
}

pin_project! {
    /// A raw connection's future; resolves once it is over and `on_close` was called.
    pub struct Session<S> {
        state: State<S>,
        // The one timer: the idle timeout, then the shutdown grace, then a closing deadline.
        #[pin]
        timer: Sleep,
        #[pin]
        stopping: OwnedNotified,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TimerFor {
    Idle,
    Grace,
    Deadline,
}

#[derive(PartialEq, Eq)]
enum Step {
    Idle,
    Busy,
    End,
}

struct State<S> {
    /// Reading is paused for backpressure (the peer's reset is looked for meanwhile).
    paused: bool,
    io: S,
    link: Arc<Link>,
    events: Arc<dyn Events>,
    settings: RawSettings,
    shutdown: Shutdown,
    _ticket: Ticket,
    interval: Duration,
    timer_for: TimerFor,
    stop_heard: bool,
    listening: bool,
    /// False once the peer finished sending (or reading failed).
    reading: bool,
    /// The application reports handled messages: reading pauses while too much waits.
    counts_inbound: bool,
    /// The application closed: once the batch is out, the socket is shut down.
    closing: bool,
    /// Messages taken from the link; the first `written` are out, and `offset` bytes of
    /// the next one.
    batch: Vec<Outgoing>,
    written: usize,
    offset: usize,
    /// The last read or write. The timer is not re-armed per message (that would cost more
    /// than this clock read): when it fires early it is set again for the moment the
    /// connection has been quiet for a whole timeout.
    active: Instant,
}

impl<S> Future for Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + PeerReset,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let state = this.state;
        state.link.register(cx.waker());
        loop {
            if state.link.is_aborted() {
                return state.end();
            }
            if !state.stop_heard && state.stopping(cx, this.stopping.as_mut()) {
                state.stop_heard = true;
                state.events.on_shutdown();
                if state.timer_for == TimerFor::Idle {
                    let grace = state.settings.shutdown_grace;
                    state.set_timer(this.timer.as_mut(), TimerFor::Grace, grace);
                }
            }
            let wrote = state.write(cx, this.timer.as_mut());
            if wrote == Step::End {
                return state.end();
            }
            let read = state.read(cx);
            if read == Step::End {
                return state.end();
            }
            let timed = match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => state.timer_fired(this.timer.as_mut()),
                Poll::Pending => Step::Idle,
            };
            if timed == Step::End {
                return state.end();
            }
            if wrote == Step::Idle && read == Step::Idle && timed == Step::Idle {
                return Poll::Pending;
            }
        }
    }
}

impl<S> State<S>
where
    S: AsyncRead + AsyncWrite + Unpin + PeerReset,
{
    fn end(&mut self) -> Poll<()> {
        self.link.mark_closed();
        self.events.on_close();
        Poll::Ready(())
    }

    /// See the WebSocket session: the shutdown listener is polled once, then a flag is read.
    fn stopping(&mut self, cx: &mut Context<'_>, listener: Pin<&mut OwnedNotified>) -> bool {
        if self.shutdown.is_triggered() {
            return true;
        }
        if self.listening {
            return false;
        }
        self.listening = true;
        listener.poll(cx).is_ready()
    }

    fn set_timer(&mut self, timer: Pin<&mut Sleep>, what: TimerFor, after: Duration) {
        self.timer_for = what;
        timer.reset(Instant::now() + after);
    }

    /// Writes what is in hand, then takes what the application queued since.
    fn write(&mut self, cx: &mut Context<'_>, mut timer: Pin<&mut Sleep>) -> Step {
        let mut step = Step::Idle;
        loop {
            if self.written < self.batch.len() {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (i, message) in self.batch[self.written..]
                    .iter()
                    .take(MAX_SLICES)
                    .enumerate()
                {
                    let bytes = bytes_of(message);
                    slices[i] = IoSlice::new(if i == 0 { &bytes[self.offset..] } else { bytes });
                    count += 1;
                }
                let mut n = match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]) {
                    Poll::Pending => return step,
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Step::End,
                    Poll::Ready(Ok(n)) => n,
                };
                self.active = Instant::now();
                step = Step::Busy;
                while n > 0 {
                    let left = bytes_of(&self.batch[self.written]).len() - self.offset;
                    if n < left {
                        self.offset += n;
                        break;
                    }
                    n -= left;
                    self.written += 1;
                    self.offset = 0;
                }
                // Messages that are empty count as written.
                while self.written < self.batch.len()
                    && bytes_of(&self.batch[self.written]).is_empty()
                {
                    self.written += 1;
                }
                continue;
            }
            if !self.batch.is_empty() {
                match Pin::new(&mut self.io).poll_flush(cx) {
                    Poll::Pending => return step,
                    Poll::Ready(Err(_)) => return Step::End,
                    Poll::Ready(Ok(())) => {}
                }
                self.link.flushed(&self.batch);
                self.batch.clear();
                self.written = 0;
                self.events.on_drained();
                step = Step::Busy;
                continue;
            }
            if self.closing {
                // Everything the application queued is out: say goodbye.
                return match Pin::new(&mut self.io).poll_shutdown(cx) {
                    Poll::Pending => step,
                    Poll::Ready(_) => Step::End,
                };
            }
            if !self.link.signalled() {
                return step;
            }
            step = Step::Busy;
            match self.link.take(&mut self.batch) {
                Closing::Abort => return Step::End,
                Closing::Graceful(_) => self.closing = true,
                Closing::No => {}
            }
            while self.written < self.batch.len() && bytes_of(&self.batch[self.written]).is_empty()
            {
                self.written += 1;
            }
            let interval = self.link.interval(self.settings.timeout);
            if interval != self.interval {
                self.interval = interval;
                if self.timer_for == TimerFor::Idle {
                    self.set_timer(timer.as_mut(), TimerFor::Idle, interval);
                }
            }
        }
    }

    /// Reads what arrived (up to [`READ_CHUNK`]) and hands it to the application.
    fn read(&mut self, cx: &mut Context<'_>) -> Step {
        if !self.reading {
            return Step::Idle;
        }
        // Backpressure: while the application has too much to handle, nothing more is read
        // (the link wakes the task when it catches up).
        if self.counts_inbound && self.link.inbound_full() {
            // A peer that reset the connection meanwhile ends it now (the data queued still
            // runs, then `on_close`), rather than after reading what it sent before.
            self.paused = true;
            return match self.io.peer_reset() {
                true => Step::End,
                false => Step::Idle,
            };
        }
        if std::mem::take(&mut self.paused) && self.io.peer_reset() {
            return Step::End;
        }
        let mut scratch = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut scratch);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Pending => Step::Idle,
            Poll::Ready(Err(_)) => Step::End,
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                // The peer finished sending. The application may still answer what came
                // before; it closes when it is done (or the connection closes now).
                self.reading = false;
                if self.events.on_peer_closed() {
                    Step::Busy
                } else {
                    Step::End
                }
            }
            Poll::Ready(Ok(())) => {
                self.active = Instant::now();
                if !self.closing {
                    if self.counts_inbound {
                        self.link.received(buf.filled().len());
                    }
                    self.events
                        .on_message(Bytes::copy_from_slice(buf.filled()), false);
                }
                Step::Busy
            }
        }
    }

    fn timer_fired(&mut self, timer: Pin<&mut Sleep>) -> Step {
        match self.timer_for {
            TimerFor::Idle => {
                let quiet = self.active.elapsed();
                if quiet < self.interval {
                    self.set_timer(timer, TimerFor::Idle, self.interval - quiet);
                    return Step::Busy;
                }
                if !self.closing {
                    self.events.on_timeout();
                }
                // Counted from now: what on_timeout writes restarts it anyway.
                self.active = Instant::now();
                self.set_timer(timer, TimerFor::Idle, self.interval);
            }
            TimerFor::Grace => {
                self.link.close(None);
                self.set_timer(timer, TimerFor::Deadline, CLOSE_WAIT);
            }
            TimerFor::Deadline => return Step::End,
        }
        Step::Busy
    }
}

fn bytes_of(message: &Outgoing) -> &Bytes {
    let (Outgoing::Raw(b) | Outgoing::Text(b) | Outgoing::Binary(b)) = message;
    b
}
