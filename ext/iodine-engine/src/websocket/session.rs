//! One WebSocket connection after the handshake, driven by the [session
//! driver](crate::session): messages both ways through our [codec](super::codec), a ping when
//! the peer has been quiet for an interval, dead peers dropped after [`DEAD_AFTER`] unanswered
//! pings, and the closing handshake (a peer's Close answered with its code; ours awaited for
//! a while).
//!
//! Outgoing text is not checked again: [`Outgoing::Text`] is UTF-8 by contract (the binding
//! hands over Ruby strings it checked), and checking every copy sent was measurable.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::codec::{self, close_payload, write_head, Decoder, Incoming, Role};
use super::mask::{self, MaskKeys};
use super::WsSettings;
use crate::link::{Events, Link, Outgoing};
use crate::server::{PeerReset, ReadReady, Shutdown, Ticket};
use crate::session::{Codec, Ctx, Ending, Outbox, Piece, Quiet, Read, Timing, MAX_HEAD};

/// Unanswered pings (one per quiet interval) after which a peer is taken for dead.
const DEAD_AFTER: u8 = 2;

/// Pong bytes that may wait for a peer that sends pings but doesn't read: past this, reading
/// pauses until they are written (a peer that never reads is then dropped by the ping
/// timer), so control frames can't grow what waits to be written without end.
const PONG_BACKLOG: usize = 64 * 1024;

/// Bookkeeping counted per pong on top of its payload (its head, its place in the queue).
const PONG_OVERHEAD: usize = 8;

const _: () = assert!(codec::MAX_HEAD == MAX_HEAD);

/// A stream that speaks WebSocket now that its handshake is done: what [`session`] runs.
pub struct WebSocket<S> {
    io: S,
    codec: WsCodec,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("decoder", &self.codec.decoder)
            .finish()
    }
}

/// `io` (the handshake done) as a WebSocket of `role`, with the limits of `settings`. What the
/// stream yields first (bytes read past the handshake) must be its first frames.
pub fn open<S>(io: S, role: Role, settings: &WsSettings) -> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    WebSocket {
        io,
        codec: WsCodec {
            decoder: Decoder::new(role, settings.max_msg),
            keys: (role == Role::Client).then(MaskKeys::new),
            owed_pongs: 0,
        },
    }
}

/// Speaks WebSocket on `ws` until either side closes, then calls `on_close`; `on_open` and
/// the first `on_drained` are called now. The session holds `ticket` (the connection counts
/// as live) until it ends.
pub fn session<S>(
    ws: WebSocket<S>,
    link: Arc<Link>,
    events: Arc<dyn Events>,
    settings: WsSettings,
    shutdown: Shutdown,
    ticket: Ticket,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + PeerReset + ReadReady,
{
    let timing = Timing {
        quiet: settings.ping,
        grace: settings.shutdown_grace,
    };
    crate::session::start(ws.io, ws.codec, timing, link, events, shutdown, ticket)
}

/// The WebSocket protocol as the session driver speaks it.
pub(crate) struct WsCodec {
    decoder: Decoder,
    /// A client's masking keys (a server sends plain frames).
    keys: Option<MaskKeys>,
    /// Bytes of pongs queued since the last flush.
    owed_pongs: usize,
}

impl WsCodec {
    /// Queues a whole frame; a client's is masked (a copy: the payload may be shared).
    fn queue(&mut self, opcode: u8, payload: Bytes, out: &mut Outbox) {
        let mut head = [0u8; MAX_HEAD];
        let Some(keys) = self.keys.as_mut() else {
            let size = write_head(&mut head, opcode, payload.len(), None);
            out.push(Piece::framed(head, size, payload));
            return;
        };
        let key = keys.next_key();
        let size = write_head(&mut head, opcode, payload.len(), Some(key));
        let mut masked = BytesMut::from(&payload[..]);
        mask::apply(&mut masked, key);
        out.push(Piece::framed(head, size, masked.freeze()));
    }

    /// Acts on one decoded frame; a read result when it ends the reading.
    fn handle(&mut self, incoming: Incoming, ctx: &mut Ctx<'_>) -> Option<Read> {
        // Once our Close is queued, the peer's messages are dropped and its pings unanswered.
        let open = ctx.ending == Ending::Open;
        match incoming {
            Incoming::Message { data, kind } if open => ctx.deliver(data, kind),
            Incoming::Ping(payload) if open => {
                self.owed_pongs += payload.len() + PONG_OVERHEAD;
                self.queue(codec::PONG, payload, ctx.out);
            }
            Incoming::Close(code) => {
                if open {
                    self.queue(codec::CLOSE, close_payload(code), ctx.out);
                }
                return Some(Read::Close(Ending::AfterFlush));
            }
            Incoming::Message { .. } | Incoming::Ping(_) | Incoming::Pong(_) => {}
        }
        None
    }
}

impl Codec for WsCodec {
    const WRITES_ARE_ACTIVITY: bool = false;
    const SHUTDOWN_CODE: Option<u16> = Some(1001);

    /// Decodes every frame already read (until the application has too much), and reads
    /// again only when none is left.
    fn read<S>(&mut self, io: &mut S, cx: &mut Context<'_>, ctx: &mut Ctx<'_>) -> Read
    where
        S: AsyncRead + ReadReady + Unpin,
    {
        loop {
            let mut handled = false;
            while !ctx.app_full() && !self.read_paused() {
                match self.decoder.decode() {
                    Ok(None) => break,
                    Ok(Some(incoming)) => {
                        handled = true;
                        if let Some(read) = self.handle(incoming, ctx) {
                            return read;
                        }
                    }
                    Err(violation) => {
                        crate::debug!("closing a WebSocket: {violation}");
                        if ctx.ending == Ending::Open {
                            self.queue(codec::CLOSE, close_payload(Some(violation.code)), ctx.out);
                        }
                        return Read::Close(Ending::AfterFlush);
                    }
                }
            }
            if handled {
                return Read::Busy; // the replies go out before more is read
            }
            match self.decoder.poll_read(io, cx) {
                Poll::Pending => return Read::Idle,
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Read::End,
                Poll::Ready(Ok(_)) => ctx.heard = true,
            }
        }
    }

    fn read_paused(&self) -> bool {
        self.owed_pongs >= PONG_BACKLOG
    }

    fn encode(&mut self, message: &Outgoing, out: &mut Outbox) {
        let (opcode, payload) = match message {
            Outgoing::Text(bytes) => (codec::TEXT, bytes),
            Outgoing::Binary(bytes) | Outgoing::Raw(bytes) => (codec::BINARY, bytes),
        };
        self.queue(opcode, payload.clone(), out);
    }

    fn close(&mut self, code: Option<u16>, out: &mut Outbox) -> Ending {
        self.queue(codec::CLOSE, close_payload(code), out);
        Ending::AwaitPeer
    }

    fn quiet(&mut self, unanswered: u8, ctx: &mut Ctx<'_>) -> Quiet {
        if unanswered >= DEAD_AFTER {
            crate::debug!("closing a WebSocket peer that stopped answering pings");
            return Quiet::End;
        }
        if ctx.ending == Ending::Open {
            self.queue(codec::PING, Bytes::new(), ctx.out);
        }
        Quiet::Waiting
    }

    fn flushed(&mut self) {
        self.owed_pongs = 0;
    }
}
