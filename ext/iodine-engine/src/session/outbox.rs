//! What a session has to write: pieces (a short head, then a payload shared with the
//! application) sent with one write per wake-up for as much as the socket takes, a partial
//! write picked up where it stopped. Large payloads (over 8 KiB with their heads) are never
//! copied (a vectored write of head and payload slices); smaller pieces are copied into one
//! buffer and sent with a plain write, which skips `writev`'s own layers in the kernel (they
//! were about 4% of the 32-byte echo's profile; the copy is a few dozen bytes).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

/// The longest head a piece can have (a WebSocket frame's).
pub const MAX_HEAD: usize = 14;

/// Most slices one vectored write carries (heads and payloads: half as many pieces). Linux
/// takes up to 1024.
const MAX_SLICES: usize = 128;

/// Pieces that add up to at most this are copied into one buffer and written with one
/// plain write...
const COALESCE: usize = 2048;

/// ... a smaller one when they fit (the buffer is zeroed first).
const SMALL_JOIN: usize = 256;

/// Up to this, too, pieces are joined into one plain write: a 4 KiB WebSocket message and its
/// head cost less copied (and the buffer zeroed) than as a `writev` of two slices (the 4 KiB
/// echo, A/B of 5 interleaved pairs: 0.97x the server's CPU per message).
const LARGE_JOIN: usize = 8192;

/// One thing to write: up to [`MAX_HEAD`] bytes, then a payload.
#[derive(Clone, Debug)]
pub struct Piece {
    head: [u8; MAX_HEAD],
    head_len: u8,
    body: Bytes,
}

impl Piece {
    /// A payload written as it is.
    pub fn plain(body: Bytes) -> Self {
        Piece {
            head: [0; MAX_HEAD],
            head_len: 0,
            body,
        }
    }

    /// A payload after `head_len` bytes of `head`.
    pub fn framed(head: [u8; MAX_HEAD], head_len: usize, body: Bytes) -> Self {
        Piece {
            head,
            head_len: head_len.min(MAX_HEAD) as u8,
            body,
        }
    }

    fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }

    fn len(&self) -> usize {
        usize::from(self.head_len) + self.body.len()
    }

    /// The bytes from `offset` on, as at most two slices.
    fn slices(&self, offset: usize) -> [&[u8]; 2] {
        let head = self.head();
        match offset.checked_sub(head.len()) {
            None => [&head[offset..], &self.body],
            Some(into_body) => [&[], &self.body[into_body..]],
        }
    }
}

/// The pieces waiting to be written, in order.
#[derive(Debug, Default)]
pub struct Outbox {
    pieces: Vec<Piece>,
    /// Pieces written whole, and bytes written of the next one.
    done: usize,
    offset: usize,
    /// Bytes went out since the last flush.
    unflushed: bool,
}

impl Outbox {
    /// Queues a piece after the others (an empty one is skipped: nothing to write).
    pub fn push(&mut self, piece: Piece) {
        if piece.len() > 0 {
            self.pieces.push(piece);
        }
    }

    /// Whether pieces (or parts of one) wait to be written.
    pub fn has_unwritten(&self) -> bool {
        self.done < self.pieces.len()
    }

    /// Whether bytes went out since [`Outbox::flushed`].
    pub fn is_unflushed(&self) -> bool {
        self.unflushed
    }

    /// The stream was flushed.
    pub fn flushed(&mut self) {
        self.unflushed = false;
    }

    /// One write of what waits (as many pieces as fit in one call); how many bytes the
    /// socket took. Once everything is out the queue is emptied (its allocation kept only
    /// while small: a burst's does not stay with an idle connection).
    pub fn poll_write<S>(&mut self, io: &mut S, cx: &mut Context<'_>) -> Poll<io::Result<usize>>
    where
        S: AsyncWrite + Unpin,
    {
        // Stack arrays are zeroed each call: the common few pieces get small ones.
        let write = match self.pieces.len() - self.done {
            0..=2 => self.write_some::<4, S>(io, cx),
            _ => self.write_some::<MAX_SLICES, S>(io, cx),
        };
        let written = match write {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        self.unflushed |= written > 0;
        self.advance(written);
        Poll::Ready(Ok(written))
    }

    /// Writes what fits in `N` slices.
    fn write_some<const N: usize, S>(
        &self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>>
    where
        S: AsyncWrite + Unpin,
    {
        let mut slices = [IoSlice::new(&[]); N];
        let mut count = 0;
        let mut offset = self.offset;
        for piece in &self.pieces[self.done..] {
            if count + 2 > N {
                break;
            }
            for part in piece.slices(offset) {
                if !part.is_empty() {
                    slices[count] = IoSlice::new(part);
                    count += 1;
                }
            }
            offset = 0;
        }
        let slices = &slices[..count];
        let total: usize = slices.iter().map(|s| s.len()).sum();
        match slices {
            [one] => Pin::new(io).poll_write(cx, one),
            _ if total <= SMALL_JOIN => write_joined::<SMALL_JOIN, S>(io, cx, slices),
            _ if total <= COALESCE => write_joined::<COALESCE, S>(io, cx, slices),
            _ if total <= LARGE_JOIN => write_joined::<LARGE_JOIN, S>(io, cx, slices),
            _ => Pin::new(io).poll_write_vectored(cx, slices),
        }
    }

    /// `n` more bytes went out.
    fn advance(&mut self, mut n: usize) {
        while let Some(piece) = self.pieces.get(self.done) {
            let left = piece.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.done += 1;
            self.offset = 0;
        }
        // All out.
        self.done = 0;
        if self.pieces.capacity() > 16 {
            self.pieces = Vec::new();
        } else {
            self.pieces.clear();
        }
    }
}

/// Copies `slices` (at most `N` bytes in all) into one buffer and writes it.
fn write_joined<const N: usize, S>(
    io: &mut S,
    cx: &mut Context<'_>,
    slices: &[IoSlice<'_>],
) -> Poll<io::Result<usize>>
where
    S: AsyncWrite + Unpin,
{
    let mut joined = [0u8; N];
    let mut at = 0;
    for slice in slices {
        joined[at..at + slice.len()].copy_from_slice(slice);
        at += slice.len();
    }
    Pin::new(io).poll_write(cx, &joined[..at])
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    /// A socket that takes at most `per_call` bytes a call.
    struct Trickle {
        got: Vec<u8>,
        per_call: usize,
        calls: usize,
        plain: usize,
        vectored: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let written = Pin::new(&mut *this).poll_write_vectored(cx, &[IoSlice::new(buf)]);
            this.vectored -= 1;
            this.plain += 1;
            written
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.calls += 1;
            this.vectored += 1;
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(this.per_call - n);
                this.got.extend_from_slice(&buf[..take]);
                n += take;
            }
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn pieces() -> (Outbox, Vec<u8>) {
        let mut out = Outbox::default();
        let mut expected = Vec::new();
        for i in 0..200u8 {
            let mut head = [0u8; MAX_HEAD];
            head[..3].copy_from_slice(&[0xAA, i, 0xBB]);
            // Mostly small (coalesced), some large (written from where they are).
            let len = if i % 50 == 7 {
                LARGE_JOIN + 1000
            } else {
                usize::from(i % 7)
            };
            let body = Bytes::from(vec![i; len]);
            expected.extend_from_slice(&head[..3]);
            expected.extend_from_slice(&body);
            out.push(Piece::framed(head, 3, body));
            out.push(Piece::plain(Bytes::new())); // skipped
        }
        (out, expected)
    }

    #[test]
    fn everything_goes_out_in_order_whatever_the_socket_takes_per_call() {
        let mut ways = (0, 0); // plain writes, vectored writes
        for per_call in [1, 2, 3, 5, 64, 100_000] {
            let (mut out, expected) = pieces();
            let mut socket = Trickle {
                got: Vec::new(),
                per_call,
                calls: 0,
                plain: 0,
                vectored: 0,
            };
            let mut cx = Context::from_waker(noop_waker_ref());
            while out.has_unwritten() {
                assert!(matches!(
                    out.poll_write(&mut socket, &mut cx),
                    Poll::Ready(Ok(_))
                ));
            }
            assert_eq!(socket.got, expected, "{per_call} bytes a call");
            assert!(out.is_unflushed());
            if per_call == 100_000 {
                // 375 slices (a piece with no payload has one), up to 128 a call.
                assert_eq!(socket.calls, 3);
            }
            ways.0 += socket.plain;
            ways.1 += socket.vectored;
        }
        assert!(ways.0 > 0 && ways.1 > 0, "both ways are used: {ways:?}");
    }
}
