//! The one driver behind every long-lived connection that is not SSE: what arrives becomes
//! [`Events`], the [`Link`]'s queue is written in batches (one vectored write per wake-up for
//! as much as the socket takes), a quiet connection is looked after, and the end is reported
//! once. What is spoken on the wire is a [`Codec`]: WebSocket ([`crate::websocket`]) or raw
//! bytes ([`crate::raw`]).
//!
//! The session is a hand-written future rather than an `async fn` around `select!`: an idle
//! connection's task then holds the socket, the codec, one timer and one shutdown listener,
//! and no buffer. Reading and writing are polled side by side, so a peer that stops reading
//! can still be heard leaving. While the application has too much waiting
//! ([`Link::inbound_full`]) reading pauses, and a peer that resets the connection meanwhile
//! ends it at once rather than after what it sent before.

mod outbox;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Sleep};

use crate::link::{Closing, Events, Link, Outgoing};
use crate::server::{PeerReset, ReadReady, Shutdown, Ticket};

pub(crate) use outbox::{Outbox, Piece, MAX_HEAD};

/// How long the end may take once it is under way (a closing handshake, or the flush after
/// the shutdown grace) before the socket is just dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A protocol as the session drives it: it reads and decodes, encodes the application's
/// messages, says goodbye its own way, and decides what a quiet connection gets.
pub(crate) trait Codec {
    /// Whether what we write counts as activity for the quiet timer (raw: the idle timeout
    /// is about the connection), or only what the peer sends does (WebSocket: the timer is
    /// about hearing from the peer).
    const WRITES_ARE_ACTIVITY: bool;
    /// The Close code asked for when the shutdown grace is over.
    const SHUTDOWN_CODE: Option<u16>;

    /// Reads what arrived and hands what it completes to the application.
    fn read<S>(&mut self, io: &mut S, cx: &mut Context<'_>, ctx: &mut Ctx<'_>) -> Read
    where
        S: AsyncRead + ReadReady + Unpin;

    /// Whether reading must wait for our own writes (replies the peer doesn't read).
    fn read_paused(&self) -> bool {
        false
    }

    /// Queues one of the application's messages.
    fn encode(&mut self, message: &Outgoing, out: &mut Outbox);

    /// The application closed (`code`: WebSocket's Close code): queues the goodbye, and says
    /// how the session ends.
    fn close(&mut self, code: Option<u16>, out: &mut Outbox) -> Ending;

    /// The connection was quiet for a whole interval, `unanswered` times in a row before.
    fn quiet(&mut self, unanswered: u8, ctx: &mut Ctx<'_>) -> Quiet;

    /// Everything queued was written and flushed.
    fn flushed(&mut self) {}
}

/// What a codec may act on while it reads or handles a quiet interval.
pub(crate) struct Ctx<'a> {
    /// The application's side of the connection.
    pub link: &'a Link,
    /// What the application is told.
    pub events: &'a dyn Events,
    /// Where replies (pongs, a Close) are queued.
    pub out: &'a mut Outbox,
    /// How far the end is under way.
    pub ending: Ending,
    /// The codec sets it when bytes arrived: a sign of life.
    pub heard: bool,
    /// The application reports handled messages ([`Events::reports_handled`]).
    pub counts_inbound: bool,
}

impl Ctx<'_> {
    /// Hands a message to the application (counted while it waits, when it reports).
    pub fn deliver(&self, data: Bytes, kind: crate::link::Kind) {
        if self.counts_inbound {
            self.link.received(data.len());
        }
        self.events.on_message(data, kind);
    }

    /// Whether the application has so much waiting that no more should be handed to it now.
    pub fn app_full(&self) -> bool {
        self.counts_inbound && self.link.inbound_full()
    }
}

/// What one read did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// Nothing could be done now (a waker is registered).
    Idle,
    /// Something arrived or was handled: look again.
    Busy,
    /// The peer finished sending; the session goes on without reading.
    Stop,
    /// The codec queued its goodbye (a Close): the end is under way.
    Close(Ending),
    /// The connection is over (gone, or failed).
    End,
}

/// How far the end of a connection is under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// It isn't.
    Open,
    /// A last frame is queued (the answer to the peer's Close, or a Close after a protocol
    /// error): the session ends once it is out. Nothing more is read.
    AfterFlush,
    /// Our Close is queued: the session reads (dropping messages) until the peer's Close or
    /// its end, for at most [`CLOSE_WAIT`] after ours went out.
    AwaitPeer,
    /// Once everything queued is out, the socket is shut down (FIN) and the session ends.
    Shutdown,
}

/// What a quiet interval led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// The peer is taken for gone: the session ends.
    End,
    /// The peer was asked for a sign of life (counted as unanswered until it comes).
    Waiting,
    /// The application was told; the next interval counts from now.
    Restart,
}

/// The session's timing: the quiet interval when the link sets none, and what
/// `on_shutdown` gets before the server closes the connection itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub quiet: Duration,
    pub grace: Duration,
}

/// Starts a session speaking `codec` on `io`: `on_open` and the first `on_drained` are called
/// now; it ends with `on_close`. It holds `ticket` (the connection counts as live) until then.
pub(crate) fn start<S, C>(
    io: S,
    codec: C,
    timing: Timing,
    link: Arc<Link>,
    events: Arc<dyn Events>,
    shutdown: Shutdown,
    ticket: Ticket,
) -> Session<S, C>
where
    S: AsyncRead + AsyncWrite + Unpin + PeerReset + ReadReady,
    C: Codec,
{
    events.on_open();
    events.on_drained();
    let interval = link.interval(timing.quiet);
    let stopping = shutdown.signal();
    let counts_inbound = events.reports_handled();
    let link_kind = link.kind();
    Session {
        state: State {
            io,
            codec,
            link,
            events,
            shutdown,
            _ticket: ticket,
            _open: crate::stats::Open::new(link_kind),
            timing,
            interval,
            timer_for: TimerFor::Quiet,
            ending: Ending::Open,
            stop_heard: false,
            listening: false,
            reading: true,
            paused: false,
            read_waiting: false,
            counts_inbound,
            batch: Vec::new(),
            out: Outbox::default(),
            active: Instant::now(),
            unanswered: 0,
        },
        timer: tokio::time::sleep(interval),
        stopping,
    }
}

pin_project! {
    /// A connection's future; resolves once it is over and `on_close` was called.
    pub(crate) struct Session<S, C> {
        state: State<S, C>,
        // The one timer: the quiet interval, then the shutdown grace, then the end's deadline.
        #[pin]
        timer: Sleep,
        #[pin]
        stopping: OwnedNotified,
    }
}

/// What the timer currently measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerFor {
    /// The quiet interval (WebSocket: ping; raw: idle timeout).
    Quiet,
    /// The server is stopping: what `on_shutdown` gets before the server closes.
    Grace,
    /// The end: a closing that took too long.
    Deadline,
}

/// What one step of the session did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Nothing could be done now (a waker is registered).
    Idle,
    /// Something happened: look again.
    Busy,
    /// The connection is over.
    End,
}

struct State<S, C> {
    io: S,
    codec: C,
    link: Arc<Link>,
    events: Arc<dyn Events>,
    shutdown: Shutdown,
    _ticket: Ticket,
    /// Counted as open ([`crate::stats`]) for the session's life.
    _open: crate::stats::Open,
    timing: Timing,
    /// The quiet interval in use (the link's timeout may change it).
    interval: Duration,
    timer_for: TimerFor,
    ending: Ending,
    stop_heard: bool,
    /// The shutdown listener was polled (its waker is registered).
    listening: bool,
    /// False once the peer finished sending, or once reading has no purpose left.
    reading: bool,
    /// Reading is paused for backpressure (the peer's reset is looked for meanwhile).
    paused: bool,
    /// A read in this poll found nothing (the socket will wake the task): the poll's later
    /// turns don't ask again.
    read_waiting: bool,
    /// The application reports handled messages: reading pauses while too much waits.
    counts_inbound: bool,
    /// Messages taken from the link and not yet flushed (their pieces are in `out`).
    batch: Vec<Outgoing>,
    out: Outbox,
    /// The last sign of life. The timer is not re-armed for each (that would cost more
    /// than this clock read): when it fires early, it is set again for the moment the
    /// connection has been quiet for a whole interval.
    active: Instant,
    /// Quiet intervals in a row that asked the peer for a sign of life (WebSocket pings).
    unanswered: u8,
}

impl<S, C> Future for Session<S, C>
where
    S: AsyncRead + AsyncWrite + Unpin + PeerReset + ReadReady,
    C: Codec,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let state = this.state;
        state.link.register(cx.waker());
        state.link.polling();
        state.read_waiting = false;
        let mut first_turn = true;
        loop {
            if state.link.is_aborted() {
                return state.end();
            }
            if !state.stop_heard && state.stopping(cx, this.stopping.as_mut()) {
                state.stop_heard = true;
                // The application's on_shutdown runs, then it (or the grace timer) closes.
                state.events.on_shutdown();
                if state.timer_for == TimerFor::Quiet {
                    let grace = state.timing.grace;
                    state.set_timer(this.timer.as_mut(), TimerFor::Grace, grace);
                }
            }
            let wrote = state.write(cx, this.timer.as_mut());
            if wrote == Step::End {
                return state.end();
            }
            let read = state.read(cx, this.timer.as_mut());
            if read == Step::End {
                return state.end();
            }
            // The timer is looked at on the first turn of a poll and before waiting, not on
            // every turn (each look costs more than the rest of an idle turn).
            let looked = std::mem::replace(&mut first_turn, false);
            let timed = match looked || (wrote == Step::Idle && read == Step::Idle) {
                false => Step::Busy,
                true => match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => state.timer_fired(this.timer.as_mut()),
                    Poll::Pending => Step::Idle,
                },
            };
            if timed == Step::End {
                return state.end();
            }
            if wrote == Step::Idle && read == Step::Idle && timed == Step::Idle {
                if state.link.done_polling() {
                    state.link.polling(); // the application wrote meanwhile: look again
                    continue;
                }
                return Poll::Pending;
            }
        }
    }
}

impl<S, C> State<S, C>
where
    S: AsyncRead + AsyncWrite + Unpin + PeerReset + ReadReady,
    C: Codec,
{
    /// The session is over: writes are refused from now on and the application is told.
    fn end(&mut self) -> Poll<()> {
        self.link.mark_closed();
        self.events.on_close();
        Poll::Ready(())
    }

    /// Whether the server is stopping. The shutdown listener is polled once, to register the
    /// task's waker; after that a flag is read (polling it again would take the shared
    /// signal's lock on every wake-up of every connection).
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

    /// The end is under way as `ending` says.
    fn begin_ending(&mut self, ending: Ending, timer: Pin<&mut Sleep>) {
        self.ending = ending;
        if ending == Ending::AfterFlush {
            self.reading = false;
            if self.timer_for != TimerFor::Deadline {
                self.set_timer(timer, TimerFor::Deadline, CLOSE_WAIT);
            }
        }
    }

    fn ctx(&mut self) -> (&mut C, &mut S, Ctx<'_>) {
        let ctx = Ctx {
            link: &self.link,
            events: &*self.events,
            out: &mut self.out,
            ending: self.ending,
            heard: false,
            counts_inbound: self.counts_inbound,
        };
        (&mut self.codec, &mut self.io, ctx)
    }

    /// Writes what is in hand, then takes what the application queued since.
    fn write(&mut self, cx: &mut Context<'_>, mut timer: Pin<&mut Sleep>) -> Step {
        let mut step = Step::Idle;
        loop {
            if self.out.has_unwritten() {
                match self.out.poll_write(&mut self.io, cx) {
                    Poll::Pending => return step,
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Step::End,
                    Poll::Ready(Ok(_)) => {}
                }
                if C::WRITES_ARE_ACTIVITY {
                    self.active = Instant::now();
                }
                step = Step::Busy;
                continue;
            }
            if self.out.is_unflushed() || !self.batch.is_empty() {
                match Pin::new(&mut self.io).poll_flush(cx) {
                    Poll::Pending => return step,
                    Poll::Ready(Err(_)) => return Step::End,
                    Poll::Ready(Ok(())) => {}
                }
                self.out.flushed();
                self.codec.flushed();
                if !self.batch.is_empty() {
                    self.link.flushed(&self.batch);
                    if self.batch.capacity() > 16 {
                        self.batch = Vec::new(); // a burst's room doesn't stay with an idle link
                    } else {
                        self.batch.clear();
                    }
                    self.events.on_drained();
                }
                step = Step::Busy;
                continue;
            }
            match self.ending {
                Ending::Open => {}
                Ending::AfterFlush => return Step::End,
                Ending::Shutdown => {
                    // Everything the application queued is out: say goodbye.
                    return match Pin::new(&mut self.io).poll_shutdown(cx) {
                        Poll::Pending => step,
                        Poll::Ready(_) => Step::End,
                    };
                }
                Ending::AwaitPeer => {
                    // Our Close is out: the peer has a while to answer.
                    if self.timer_for != TimerFor::Deadline {
                        self.set_timer(timer.as_mut(), TimerFor::Deadline, CLOSE_WAIT);
                    }
                    return step;
                }
            }
            // Nothing in hand: did the application write, close or change the timeout?
            if !self.link.signalled() {
                return step;
            }
            step = Step::Busy;
            let closing = self.link.take(&mut self.batch);
            if closing == Closing::Abort {
                return Step::End;
            }
            for message in &self.batch {
                self.codec.encode(message, &mut self.out);
            }
            if let Closing::Graceful(code) = closing {
                let ending = self.codec.close(code, &mut self.out);
                self.begin_ending(ending, timer.as_mut());
            }
            let interval = self.link.interval(self.timing.quiet);
            if interval != self.interval {
                self.interval = interval;
                if self.timer_for == TimerFor::Quiet {
                    self.set_timer(timer.as_mut(), TimerFor::Quiet, interval);
                }
            }
        }
    }

    /// Reads what arrived and hands complete messages to the application.
    fn read(&mut self, cx: &mut Context<'_>, timer: Pin<&mut Sleep>) -> Step {
        if !self.reading || self.read_waiting {
            return Step::Idle;
        }
        // Backpressure: while the application has too much to handle, or the codec's
        // replies wait for a peer that doesn't read, nothing more is read (the link wakes
        // the task when the application catches up; a flush frees the replies).
        if (self.counts_inbound && self.link.inbound_full()) || self.codec.read_paused() {
            self.paused = true;
            return self.reset_while_paused();
        }
        if std::mem::take(&mut self.paused) && self.io.peer_reset() {
            return Step::End; // what it sent before its RST is not read: it is gone
        }
        let (codec, io, mut ctx) = self.ctx();
        let read = codec.read(io, cx, &mut ctx);
        if ctx.heard {
            self.active = Instant::now();
            self.unanswered = 0;
        }
        match read {
            Read::Idle => {
                self.read_waiting = true;
                Step::Idle
            }
            Read::Busy => Step::Busy,
            Read::Stop => {
                self.reading = false;
                Step::Busy
            }
            Read::Close(ending) => {
                self.begin_ending(ending, timer);
                Step::Busy
            }
            Read::End => Step::End,
        }
    }

    /// Paused: a peer that reset the connection ends it now (the messages already queued
    /// still run, then `on_close`), rather than after reading what it sent before.
    fn reset_while_paused(&self) -> Step {
        match self.io.peer_reset() {
            true => Step::End,
            false => Step::Idle,
        }
    }

    fn timer_fired(&mut self, timer: Pin<&mut Sleep>) -> Step {
        match self.timer_for {
            TimerFor::Quiet => {
                // Paused for the application (backpressure): what the peer sent waits unread
                // behind its messages; silence proves nothing.
                if self.counts_inbound && self.link.inbound_full() {
                    self.active = Instant::now();
                    self.unanswered = 0;
                }
                let quiet = self.active.elapsed();
                if quiet < self.interval {
                    // Active since: wait for a whole quiet interval after that.
                    let rest = self.interval - quiet;
                    self.set_timer(timer, TimerFor::Quiet, rest);
                    return Step::Busy;
                }
                let unanswered = self.unanswered;
                let (codec, _, mut ctx) = self.ctx();
                match codec.quiet(unanswered, &mut ctx) {
                    Quiet::End => return Step::End,
                    Quiet::Waiting => self.unanswered = unanswered.saturating_add(1),
                    Quiet::Restart => self.active = Instant::now(),
                }
                let interval = self.interval;
                self.set_timer(timer, TimerFor::Quiet, interval);
            }
            TimerFor::Grace => {
                self.link.close(C::SHUTDOWN_CODE);
                self.set_timer(timer, TimerFor::Deadline, CLOSE_WAIT);
            }
            TimerFor::Deadline => return Step::End,
        }
        Step::Busy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Resumed;

    /// The whole task of an idle WebSocket connection is this future (and the socket's
    /// registration): 552 bytes when written, about 800 with tungstenite.
    #[test]
    fn an_idle_connections_session_stays_small() {
        let ws = std::mem::size_of::<Session<Resumed, crate::websocket::WsCodec>>();
        let raw = std::mem::size_of::<Session<Resumed, crate::raw::RawCodec>>();
        eprintln!("WebSocket session: {ws} bytes; raw: {raw} bytes");
        assert!(ws <= 600, "{ws} bytes");
        assert!(raw <= 512, "{raw} bytes");
    }
}
