//! One raw connection, driven by the [session driver](crate::session): bytes both ways, a
//! quiet connection gets [`Events::on_timeout`], a peer that finished sending
//! [`Events::on_peer_closed`], and the application's close flushes what it queued, then
//! shuts the socket down.
//!
//! What arrives is handed to [`Events::on_message`] as it comes: a small read is copied out
//! of a stack buffer (an idle connection holds no read buffer), and when more than one read's
//! worth is waiting it is read straight into one message of up to [`READ_CHUNK`] bytes.

use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::RawSettings;
use crate::link::{Events, Link, Outgoing};
use crate::server::{PeerReset, ReadReady, Shutdown, Ticket};
use crate::session::{Codec, Ctx, Ending, Outbox, Piece, Quiet, Read, Timing};

/// The most one `on_message` gets. Reads while data keeps coming fill a message up to this
/// size: one callback (one handoff to Ruby) carries what several reads would have.
pub const READ_CHUNK: usize = 64 * 1024;

/// A read with nothing pending goes into a stack buffer this large; when it comes back full,
/// more is waiting and the session reads on into a [`READ_CHUNK`] message.
const SMALL_READ: usize = 16 * 1024;

/// Speaks raw bytes on `io` until either side closes, then calls `on_close`; `on_open` and
/// the first `on_drained` are called now. The session holds `ticket` until it ends.
pub fn session<S>(
    io: S,
    link: Arc<Link>,
    events: Arc<dyn Events>,
    settings: RawSettings,
    shutdown: Shutdown,
    ticket: Ticket,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + PeerReset + ReadReady,
{
    let timing = Timing {
        quiet: settings.timeout,
        grace: settings.shutdown_grace,
    };
    let codec = RawCodec { streaming: false };
    crate::session::start(io, codec, timing, link, events, shutdown, ticket)
}

/// Raw bytes as the session driver speaks them.
pub(crate) struct RawCodec {
    /// The last read filled a whole [`READ_CHUNK`]: read the next one straight into a
    /// message.
    streaming: bool,
}

/// How a run of reads stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// The message is full.
    Full,
    /// Nothing more for now (a waker is registered).
    Drained,
    /// The peer finished sending.
    End,
    /// Reading failed.
    Failed,
}

impl RawCodec {
    /// Reads on into `chunk` until it holds [`READ_CHUNK`] bytes or the socket has no more.
    fn fill<S>(io: &mut S, cx: &mut Context<'_>, chunk: &mut BytesMut) -> Stopped
    where
        S: AsyncRead + Unpin,
    {
        while chunk.len() < READ_CHUNK {
            let left = READ_CHUNK - chunk.len();
            let mut room = (&mut *chunk).limit(left);
            match pin!(io.read_buf(&mut room)).poll(cx) {
                Poll::Ready(Ok(0)) => return Stopped::End,
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => return Stopped::Drained,
                Poll::Ready(Err(_)) => return Stopped::Failed,
            }
        }
        Stopped::Full
    }

    /// The peer finished sending: the application may still answer what came before (it
    /// closes when done), or the connection ends now.
    fn peer_done(ctx: &mut Ctx<'_>) -> Read {
        match ctx.events.on_peer_closed() {
            true => Read::Stop,
            false => Read::End,
        }
    }

    fn deliver(data: Bytes, ctx: &mut Ctx<'_>) {
        ctx.heard = true;
        // Once the application closed, what still arrives is dropped.
        if ctx.ending == Ending::Open {
            ctx.deliver(data, crate::link::Kind::Binary);
        }
    }
}

impl Codec for RawCodec {
    const WRITES_ARE_ACTIVITY: bool = true;
    const SHUTDOWN_CODE: Option<u16> = None;

    fn read<S>(&mut self, io: &mut S, cx: &mut Context<'_>, ctx: &mut Ctx<'_>) -> Read
    where
        S: AsyncRead + Unpin,
    {
        let mut chunk = BytesMut::new();
        if !self.streaming {
            let mut scratch = [MaybeUninit::<u8>::uninit(); SMALL_READ];
            let mut buf = ReadBuf::uninit(&mut scratch);
            match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                Poll::Pending => return Read::Idle,
                Poll::Ready(Err(_)) => return Read::End,
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Self::peer_done(ctx),
                Poll::Ready(Ok(())) => {}
            }
            if buf.filled().len() < SMALL_READ {
                Self::deliver(Bytes::copy_from_slice(buf.filled()), ctx);
                return Read::Busy;
            }
            // It came back full: more is waiting. Read on, straight into the message.
            chunk.reserve(READ_CHUNK);
            chunk.extend_from_slice(buf.filled());
        } else {
            chunk.reserve(READ_CHUNK);
        }
        let stopped = Self::fill(io, cx, &mut chunk);
        self.streaming = stopped == Stopped::Full;
        if chunk.is_empty() {
            return match stopped {
                Stopped::Drained | Stopped::Full => Read::Idle,
                Stopped::End => Self::peer_done(ctx),
                Stopped::Failed => Read::End,
            };
        }
        // A small message doesn't keep a whole chunk's allocation.
        let data = match chunk.len() < SMALL_READ {
            true => Bytes::copy_from_slice(&chunk),
            false => chunk.freeze(),
        };
        Self::deliver(data, ctx);
        match stopped {
            // The end is read again next time (it stays); a failure ends it now.
            Stopped::Failed => Read::End,
            _ => Read::Busy,
        }
    }

    fn encode(&mut self, message: &Outgoing, out: &mut Outbox) {
        let (Outgoing::Raw(bytes) | Outgoing::Text(bytes) | Outgoing::Binary(bytes)) = message;
        out.push(Piece::plain(bytes.clone()));
    }

    fn close(&mut self, _code: Option<u16>, _out: &mut Outbox) -> Ending {
        Ending::Shutdown
    }

    fn quiet(&mut self, _unanswered: u8, ctx: &mut Ctx<'_>) -> Quiet {
        if ctx.ending == Ending::Open {
            ctx.events.on_timeout();
        }
        // Counted from now: what on_timeout writes restarts it anyway.
        Quiet::Restart
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use futures_util::task::noop_waker_ref;
    use parking_lot::Mutex;

    use super::*;
    use crate::link::Protocol;

    /// A peer whose bytes are all there at once, then nothing (Pending).
    struct Burst(VecDeque<u8>);

    impl AsyncRead for Burst {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let this = self.get_mut();
            if this.0.is_empty() {
                return Poll::Pending;
            }
            while buf.remaining() > 0 {
                let Some(byte) = this.0.pop_front() else {
                    break;
                };
                buf.put_slice(&[byte]);
            }
            Poll::Ready(Ok(()))
        }
    }

    impl ReadReady for Burst {
        fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct Sizes(Mutex<Vec<usize>>);

    impl Events for Sizes {
        fn on_open(&self) {}
        fn on_message(&self, data: Bytes, _kind: crate::link::Kind) {
            self.0.lock().push(data.len());
        }
        fn on_drained(&self) {}
        fn on_shutdown(&self) {}
        fn on_close(&self) {}
    }

    /// The sizes of the messages `len` waiting bytes are handed over in.
    fn messages_for(len: usize) -> Vec<usize> {
        let link = Link::new(Protocol::Raw);
        let events = Sizes::default();
        let mut out = Outbox::default();
        let mut codec = RawCodec { streaming: false };
        let mut peer = Burst((0..len).map(|i| i as u8).collect());
        let mut cx = Context::from_waker(noop_waker_ref());
        loop {
            let mut ctx = Ctx {
                link: &link,
                events: &events,
                out: &mut out,
                ending: Ending::Open,
                heard: false,
                counts_inbound: false,
            };
            if codec.read(&mut peer, &mut cx, &mut ctx) == Read::Idle {
                break;
            }
        }
        let sizes = events.0.lock().clone();
        sizes
    }

    #[test]
    fn what_is_waiting_comes_in_messages_of_up_to_read_chunk() {
        assert_eq!(messages_for(100), [100]);
        assert_eq!(messages_for(SMALL_READ - 1), [SMALL_READ - 1]);
        assert_eq!(messages_for(40_000), [40_000]);
        assert_eq!(
            messages_for(3 * READ_CHUNK + 5),
            [READ_CHUNK, READ_CHUNK, READ_CHUNK, 5]
        );
    }
}
