//! One WebSocket connection after the handshake: incoming messages become
//! [`Events::on_message`], the [`Link`]'s queue is written in batches (every queued frame fed,
//! then one flush), quiet peers are pinged and dead ones dropped.
//!
//! The session is a hand-written future rather than an `async fn` around `select!`: an idle
//! connection's task then holds the codec, one timer and one shutdown listener, and nothing
//! else (about 800 bytes instead of 1.6 KiB; see `bench/ws.rb`'s idle case). Reading and
//! writing are polled side by side, so a peer that stops reading can still be heard leaving,
//! and a peer that neither reads nor answers pings is dropped after [`DEAD_AFTER`] intervals.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, Stream};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::WsSettings;
use crate::link::{Closing, Events, Link, Outgoing};
use crate::server::{PeerReset, Shutdown, Ticket};

/// tungstenite's read buffer: allocated up front for every connection, idle or not, and also
/// the most one of its reads takes. Kept small: the socket under it ([`Resumed`]) reads up to
/// 16 KiB per system call and hands tungstenite the rest from memory. (Measured before that
/// wrapper, idle MiB per 1,000 / 4 KiB echo msg/s: 256 B gave 6.2 / 62k, 1 KiB 6.9 / 81k.)
///
/// [`Resumed`]: crate::http::Resumed
const READ_BUFFER: usize = 256;

/// Feed this much before tungstenite writes to the socket on its own (we flush per batch).
const WRITE_BUFFER: usize = 64 * 1024;

/// Unanswered pings (one per quiet interval) after which a peer is taken for dead.
const DEAD_AFTER: u8 = 2;

/// Pong bytes tungstenite may hold for a peer that sends pings but doesn't read: past this,
/// reading pauses until they are written (a peer that never reads is then dropped by the
/// ping timer), so control frames can't grow the write buffer without end.
const PONG_BACKLOG: usize = 64 * 1024;

/// How long a closing handshake may take before the socket is just dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// tungstenite's configuration for a connection with the limits of `settings`.
pub fn config(settings: &WsSettings) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(settings.max_msg))
        .max_frame_size(Some(settings.max_msg))
}

/// `io` (the handshake done) as a WebSocket of `role`, with the limits of `settings`.
pub async fn open<S>(io: S, role: Role, settings: &WsSettings) -> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    WebSocketStream::from_raw_socket(io, role, Some(config(settings))).await
}

/// Speaks WebSocket on `ws` until either side closes, then calls `on_close`; `on_open` and
/// the first `on_drained` are called now. The session holds `ticket` (the connection counts
/// as live) until it ends.
pub fn session<S>(
    ws: WebSocketStream<S>,
    link: Arc<Link>,
    events: Arc<dyn Events>,
    settings: WsSettings,
    shutdown: Shutdown,
    ticket: Ticket,
) -> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + PeerReset,
{
    events.on_open();
    events.on_drained();
    let interval = link.interval(settings.ping);
    let stopping = shutdown.signal();
    let counts_inbound = events.reports_handled();
    Session {
        state: State {
            paused: false,
            ws,
            link,
            events,
            settings,
            shutdown,
            _ticket: ticket,
            interval,
            timer_for: TimerFor::Ping,
            closing: None,
            stop_heard: false,
            listening: false,
            reading: true,
            counts_inbound,
            owed_pongs: 0,
            batch: Vec::new(),
            fed: 0,
            ping_due: false,
            close_due: None,
            unflushed: false,
            heard: Instant::now(),
            unanswered: 0,
        },
        timer: tokio::time::sleep(interval),
        stopping,
    }
}

pin_project! {
    /// A WebSocket connection's future; resolves once it is over and `on_close` was called.
    pub struct Session<S> {
        state: State<S>,
        // The one timer: the ping interval, then the shutdown grace, then a closing deadline.
        #[pin]
        timer: Sleep,
        #[pin]
        stopping: OwnedNotified,
    }
}

/// What the timer currently measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TimerFor {
    /// The quiet interval after which the peer is pinged.
    Ping,
    /// The server is stopping: what `on_shutdown` gets before our Close 1001.
    Grace,
    /// The end: a closing handshake (or a stop) that took too long.
    Deadline,
}

/// What one step of the session did.
#[derive(PartialEq, Eq)]
enum Step {
    /// Nothing could be done now (a waker is registered).
    Idle,
    /// Something happened: look again.
    Busy,
    /// The connection is over.
    End,
}

struct State<S> {
    /// Reading is paused for backpressure (the peer's reset is looked for meanwhile).
    paused: bool,
    ws: WebSocketStream<S>,
    link: Arc<Link>,
    events: Arc<dyn Events>,
    settings: WsSettings,
    shutdown: Shutdown,
    _ticket: Ticket,
    /// The ping interval in use (the link's timeout may change it).
    interval: Duration,
    timer_for: TimerFor,
    /// Closing: Some(true) reads until the peer's end, Some(false) ends once our Close is out.
    closing: Option<bool>,
    stop_heard: bool,
    /// The shutdown listener was polled (its waker is registered).
    listening: bool,
    /// False once reading failed.
    reading: bool,
    /// The application reports handled messages: reading pauses while too much waits.
    counts_inbound: bool,
    /// Bytes of pongs tungstenite queued since the last flush.
    owed_pongs: usize,
    /// Messages taken from the link; the first `fed` were handed to tungstenite.
    batch: Vec<Outgoing>,
    fed: usize,
    ping_due: bool,
    /// A Close to send after the batch (with this code, or none).
    close_due: Option<Option<u16>>,
    /// Frames were handed to tungstenite (or it queued a reply) since the last flush.
    unflushed: bool,
    /// When the peer last sent anything. The timer is not re-armed per message (that would
    /// cost more than this clock read): when it fires early, it is set again for the moment
    /// the peer has been quiet for a whole interval.
    heard: Instant,
    /// Pings sent with no sign of life since; the peer is dead after `DEAD_AFTER` of them.
    unanswered: u8,
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
                // The application's on_shutdown runs, then it (or the grace timer) closes.
                state.events.on_shutdown();
                if state.timer_for == TimerFor::Ping {
                    state.set_timer(
                        this.timer.as_mut(),
                        TimerFor::Grace,
                        state.settings.shutdown_grace,
                    );
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

    /// Feeds and flushes what is in hand, then takes what the application queued since.
    fn write(&mut self, cx: &mut Context<'_>, mut timer: Pin<&mut Sleep>) -> Step {
        let mut step = Step::Idle;
        loop {
            if self.ping_due || self.fed < self.batch.len() || self.close_due.is_some() {
                match Pin::new(&mut self.ws).poll_ready(cx) {
                    Poll::Pending => return step,
                    Poll::Ready(Err(_)) => return Step::End,
                    Poll::Ready(Ok(())) => {}
                }
                let message = if self.ping_due {
                    self.ping_due = false;
                    Message::Ping(Bytes::new())
                } else if self.fed < self.batch.len() {
                    self.fed += 1;
                    frame(&self.batch[self.fed - 1])
                } else {
                    let code = self.close_due.take().flatten();
                    if self.timer_for != TimerFor::Deadline {
                        self.set_timer(timer.as_mut(), TimerFor::Deadline, CLOSE_WAIT);
                    }
                    Message::Close(code.map(|c| CloseFrame {
                        code: CloseCode::from(c),
                        reason: Utf8Bytes::default(),
                    }))
                };
                if Pin::new(&mut self.ws).start_send(message).is_err() {
                    return Step::End;
                }
                self.unflushed = true;
                step = Step::Busy;
                continue;
            }
            if self.unflushed {
                match Pin::new(&mut self.ws).poll_flush(cx) {
                    Poll::Pending => return step,
                    Poll::Ready(Err(_)) => return Step::End,
                    Poll::Ready(Ok(())) => {}
                }
                self.unflushed = false;
                self.owed_pongs = 0;
                step = Step::Busy;
                if !self.batch.is_empty() {
                    self.link.flushed(&self.batch);
                    self.batch.clear();
                    self.fed = 0;
                    self.events.on_drained();
                }
                if self.closing == Some(false) {
                    return Step::End; // our Close went out after a protocol error
                }
                continue;
            }
            // Nothing in hand: did the application write, close or change the timeout?
            if self.closing.is_some() || !self.link.signalled() {
                return step;
            }
            step = Step::Busy;
            match self.link.take(&mut self.batch) {
                Closing::Abort => return Step::End,
                Closing::Graceful(code) => {
                    // After the batch: our Close, then the peer's answer (briefly).
                    self.close_due = Some(code);
                    self.closing = Some(true);
                }
                Closing::No => {}
            }
            let interval = self.link.interval(self.settings.ping);
            if interval != self.interval {
                self.interval = interval;
                if self.timer_for == TimerFor::Ping {
                    self.set_timer(timer.as_mut(), TimerFor::Ping, interval);
                }
            }
        }
    }

    /// Reads what arrived and hands complete messages to the application.
    fn read(&mut self, cx: &mut Context<'_>, timer: Pin<&mut Sleep>) -> Step {
        if !self.reading {
            return Step::Idle;
        }
        // Backpressure: while the application has too much to handle, or the peer doesn't
        // read our pongs, nothing more is read (the link wakes the task when the application
        // catches up; a flush, when the pongs went out).
        if (self.counts_inbound && self.link.inbound_full()) || self.owed_pongs >= PONG_BACKLOG {
            self.paused = true;
            return self.reset_while_paused();
        }
        if std::mem::take(&mut self.paused) && self.ws.get_ref().peer_reset() {
            return Step::End; // what it sent before its RST is not read: it is gone
        }
        let message = match Pin::new(&mut self.ws).poll_next(cx) {
            Poll::Pending => return Step::Idle,
            Poll::Ready(None) => return Step::End,
            Poll::Ready(Some(Ok(message))) => message,
            Poll::Ready(Some(Err(e))) => {
                self.reading = false;
                let Some(code) = close_code(&e) else {
                    return Step::End;
                };
                crate::debug!("closing a WebSocket ({code}): {e}");
                self.close_due = Some(Some(code));
                self.closing = Some(false);
                return Step::Busy;
            }
        };
        self.heard = Instant::now();
        self.unanswered = 0;
        if self.closing.is_some() {
            return Step::Busy; // late messages of a closing connection are dropped
        }
        match message {
            Message::Text(text) => self.deliver(Bytes::from(text), true),
            Message::Binary(data) => self.deliver(data, false),
            // tungstenite queued the pong; the write step sends it.
            Message::Ping(payload) => {
                self.owed_pongs += payload.len() + 8;
                self.unflushed = true;
            }
            Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(_) => {
                // tungstenite queued the reply echoing the peer's code; the next read after
                // it went out ends the stream.
                self.unflushed = true;
                self.closing = Some(true);
                self.set_timer(timer, TimerFor::Deadline, CLOSE_WAIT);
            }
        }
        Step::Busy
    }

    /// Paused: a peer that reset the connection ends it now (the messages already queued
    /// still run, then `on_close`), rather than after reading what it sent before.
    fn reset_while_paused(&self) -> Step {
        match self.ws.get_ref().peer_reset() {
            true => Step::End,
            false => Step::Idle,
        }
    }

    /// Hands a message to the application (counted while it waits, when it reports).
    fn deliver(&mut self, data: Bytes, text: bool) {
        if self.counts_inbound {
            self.link.received(data.len());
        }
        self.events.on_message(data, text);
    }

    fn timer_fired(&mut self, timer: Pin<&mut Sleep>) -> Step {
        match self.timer_for {
            TimerFor::Ping => {
                // Paused for the application (backpressure): the peer's answers wait unread
                // behind its messages; silence proves nothing, so no ping is counted.
                if self.counts_inbound && self.link.inbound_full() {
                    self.heard = Instant::now();
                    self.unanswered = 0;
                }
                let quiet = self.heard.elapsed();
                if quiet < self.interval {
                    // The peer spoke since: wait for a whole quiet interval after that.
                    self.set_timer(timer, TimerFor::Ping, self.interval - quiet);
                    return Step::Busy;
                }
                if self.unanswered >= DEAD_AFTER {
                    crate::debug!("closing a WebSocket peer that stopped answering pings");
                    return Step::End;
                }
                self.unanswered += 1;
                self.ping_due = self.closing.is_none();
                self.set_timer(timer, TimerFor::Ping, self.interval);
            }
            TimerFor::Grace => {
                self.link.close(Some(1001));
                self.set_timer(timer, TimerFor::Deadline, CLOSE_WAIT);
            }
            TimerFor::Deadline => return Step::End,
        }
        Step::Busy
    }
}

/// The Close code for a protocol violation; None when the connection is just gone.
fn close_code(e: &WsError) -> Option<u16> {
    match e {
        WsError::Utf8(_) => Some(1007),
        // A message or frame over `max_msg`.
        WsError::Capacity(_) => Some(1009),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some(1002),
        _ => None,
    }
}

/// A queued message as a frame. Text that is not valid UTF-8 can't be a text frame: it goes
/// out as binary rather than break the protocol.
fn frame(message: &Outgoing) -> Message {
    match message {
        Outgoing::Text(bytes) => match Utf8Bytes::try_from(bytes.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(bytes.clone()),
        },
        Outgoing::Binary(bytes) | Outgoing::Raw(bytes) => Message::Binary(bytes.clone()),
    }
}
