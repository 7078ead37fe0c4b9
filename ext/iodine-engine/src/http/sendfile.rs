//! File bodies sent with `sendfile(2)`, through hyper, without reading them into memory.
//!
//! hyper writes what a body yields; it has no notion of a file. So a file body yields
//! *placeholder* frames: slices of [`REGION`], a static block of memory that is never read
//! or written, and pushes the matching piece of the file (descriptor, offset, length) on the
//! connection's [`Spool`]. When the connection's IO is asked to write a slice that lies in
//! `REGION`, it sends that piece of the file with `sendfile(2)` instead; the slice's offset
//! in `REGION` tells how much of the piece was already sent (hyper advances a partly written
//! slice). Pieces are written in the order they were yielded, so the front of the spool is
//! always the piece being written.
//!
//! This needs hyper's vectored ("queue") write strategy: the flattening one copies body
//! bytes into its own buffer and the placeholder would be lost (the connection builder sets
//! it). A placeholder with no piece behind it is an error, never zeros on the wire. A file
//! `sendfile` refuses (EINVAL: not a regular file) is copied through a small buffer instead.
//!
//! Memory per download is the kernel's socket buffer only: no chunk is read into the process.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::AsyncWrite;

use crate::server::Stream;

/// The largest placeholder frame (one piece of a file).
pub(crate) const MARK: usize = 1024 * 1024;

/// The placeholders' memory: in `.bss`, never touched, so it costs no resident memory.
static REGION: [u8; MARK] = [0; MARK];

/// How much one fallback copy (when `sendfile` refuses the file) reads.
const COPY_CHUNK: usize = 64 * 1024;

/// The error for a file that ended before its announced length (it shrank while sent): the
/// answer is cut, never padded or finished short as if complete.
pub(crate) fn shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than its length")
}

/// A placeholder frame for `len` (≤ [`MARK`]) bytes of a file.
pub(crate) fn placeholder(len: usize) -> Bytes {
    Bytes::from_static(&REGION[..len.min(MARK)])
}

/// Where `buf` starts inside [`REGION`], if it is a placeholder.
fn offset_in_region(buf: &[u8]) -> Option<usize> {
    let base = REGION.as_ptr() as usize;
    let at = buf.as_ptr() as usize;
    (!buf.is_empty() && at >= base && at < base + MARK).then(|| at - base)
}

/// A piece of a file to send in place of a placeholder.
#[derive(Debug)]
struct Piece {
    file: Arc<File>,
    offset: u64,
    len: usize,
}

/// A connection's pieces of files, in the order their placeholders were yielded.
#[derive(Debug, Default)]
pub(crate) struct Spool {
    pieces: Mutex<VecDeque<Piece>>,
}

impl Spool {
    /// Queues `len` bytes of `file` from `offset`; returns the placeholder to yield.
    pub(crate) fn push(&self, file: &Arc<File>, offset: u64, len: usize) -> Bytes {
        let len = len.min(MARK);
        self.pieces.lock().push_back(Piece {
            file: file.clone(),
            offset,
            len,
        });
        placeholder(len)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pieces.lock().is_empty()
    }

    /// The front piece's file and the offset to send `buf` (the rest of its placeholder) from.
    fn front(&self, skip: usize) -> io::Result<(Arc<File>, u64, bool)> {
        let pieces = self.pieces.lock();
        let piece = pieces.front().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "a file placeholder without its file",
            )
        })?;
        Ok((
            piece.file.clone(),
            piece.offset + skip as u64,
            skip < piece.len,
        ))
    }

    /// Records that `n` bytes were sent from `skip` into the front piece.
    fn sent(&self, skip: usize, n: usize) {
        let mut pieces = self.pieces.lock();
        if pieces.front().is_some_and(|p| skip + n >= p.len) {
            pieces.pop_front();
        }
    }
}

/// What a write of `bufs` should do, given the spool.
pub(crate) enum Plan {
    /// No placeholder: an ordinary write.
    Plain,
    /// Ordinary bytes come first: write only the first `n` slices.
    Before(usize),
    /// The first slice is a placeholder starting `skip` bytes into its piece.
    File { skip: usize, len: usize },
}

/// Decides how to write `bufs` (cheap when the spool is empty).
pub(crate) fn plan(spool: &Spool, bufs: &[io::IoSlice<'_>]) -> Plan {
    if spool.is_empty() {
        return Plan::Plain;
    }
    for (i, buf) in bufs.iter().enumerate() {
        if let Some(skip) = offset_in_region(buf) {
            return match i {
                0 => Plan::File {
                    skip,
                    len: buf.len(),
                },
                _ => Plan::Before(i),
            };
        }
    }
    Plan::Plain
}

/// Sends up to `len` bytes of the spool's front piece, from `skip` into it, to `stream`.
pub(crate) fn poll_send(
    stream: &mut Stream,
    spool: &Spool,
    skip: usize,
    len: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let (file, offset, valid) = spool.front(skip)?;
    if !valid {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a file placeholder past its piece",
        )));
    }
    let n = match ready!(stream.poll_sendfile(cx, &file, offset, len)) {
        Ok(0) => {
            return Poll::Ready(Err(shrank()));
        }
        Ok(n) => {
            crate::stats::written(n);
            n
        }
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            ready!(poll_copy(stream, &file, offset, len, cx))?
        }
        Err(e) => return Poll::Ready(Err(e)),
    };
    spool.sent(skip, n);
    Poll::Ready(Ok(n))
}

/// The fallback: reads a chunk at `offset` and writes what the socket takes of it.
fn poll_copy(
    stream: &mut Stream,
    file: &File,
    offset: u64,
    len: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    ready!(stream.poll_write_ready(cx))?;
    let mut chunk = vec![0u8; len.min(COPY_CHUNK)];
    let read = file.read_at(&mut chunk, offset)?;
    if read == 0 {
        return Poll::Ready(Err(shrank()));
    }
    Pin::new(stream).poll_write(cx, &chunk[..read])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_told_apart_from_other_bytes() {
        let spool = Spool::default();
        let file = Arc::new(tempfile::tempfile().unwrap());
        let head = Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n");
        let other = vec![0u8; 16];
        assert!(matches!(
            plan(&spool, &[io::IoSlice::new(&head)]),
            Plan::Plain
        ));
        let mark = spool.push(&file, 10, 100);
        assert_eq!(mark.len(), 100);
        assert!(matches!(
            plan(&spool, &[io::IoSlice::new(&head), io::IoSlice::new(&mark)]),
            Plan::Before(1)
        ));
        assert!(matches!(
            plan(&spool, &[io::IoSlice::new(&mark[40..])]),
            Plan::File { skip: 40, len: 60 }
        ));
        // Zeros elsewhere are ordinary bytes.
        assert!(matches!(
            plan(&spool, &[io::IoSlice::new(&other)]),
            Plan::Plain
        ));
        let (_, offset, valid) = spool.front(40).unwrap();
        assert_eq!((offset, valid), (50, true));
        spool.sent(40, 59);
        assert!(!spool.is_empty());
        spool.sent(99, 1);
        assert!(spool.is_empty());
        assert!(spool.front(0).is_err(), "no piece: an error, never zeros");
        assert_eq!(placeholder(MARK + 5).len(), MARK);
    }
}
