//! The owned response a handler sends back, and its conversion to a hyper response.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderName, HeaderValue, StatusCode};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

use super::idle::Busy;

/// Chunks buffered between a streaming producer and the socket before the producer waits.
const STREAM_DEPTH: usize = 16;
/// Read size for file bodies.
const FILE_CHUNK: usize = 64 * 1024;

/// A response from the application, headers still raw bytes (validated on the IO thread).
#[derive(Debug)]
pub struct Response {
    /// Status code; anything outside 100..=999 becomes 500.
    pub status: u16,
    /// Header pairs as given by the app. A value containing `\n` becomes several lines.
    pub headers: Vec<(Bytes, Bytes)>,
    /// The body.
    pub body: Body,
}

/// A response body.
#[derive(Debug, Default)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// The whole body in memory.
    Full(Bytes),
    /// An open file and its length: served by the IO threads.
    File(File, u64),
    /// Chunks sent as they are produced (chunked encoding unless the app set a length).
    Stream(StreamReceiver),
}

/// The receiving end of a [`Body::Stream`] (see [`stream_channel`]).
#[derive(Debug)]
pub struct StreamReceiver {
    rx: mpsc::Receiver<Bytes>,
    aborted: Arc<AtomicBool>,
}

/// The producing end of a [`Body::Stream`]. The body ends cleanly when the last sender is
/// dropped, unless one of them called [`BodySender::abort`].
#[derive(Clone, Debug)]
pub struct BodySender {
    tx: mpsc::Sender<Bytes>,
    aborted: Arc<AtomicBool>,
}

/// A streaming body and the sender that feeds it.
pub fn stream_channel() -> (BodySender, Body) {
    let (tx, rx) = mpsc::channel(STREAM_DEPTH);
    let aborted = Arc::new(AtomicBool::new(false));
    (
        BodySender {
            tx,
            aborted: aborted.clone(),
        },
        Body::Stream(StreamReceiver { rx, aborted }),
    )
}

impl BodySender {
    /// Sends a chunk, waiting (blocking the thread) while the client is slow; false once the
    /// client is gone. Must not be called from inside the tokio runtime.
    pub fn send_blocking(&self, chunk: Bytes) -> bool {
        self.tx.blocking_send(chunk).is_ok()
    }

    /// Sends a chunk, waiting for room; false once the client is gone.
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

    /// Aborts the response: the connection is closed without finishing the body, so the client
    /// can tell it is incomplete. Works whether or not the queue is full; chunks sent before
    /// may or may not reach the client.
    pub fn abort(self, why: &str) {
        crate::debug!("response body aborted: {why}");
        self.aborted.store(true, Ordering::Release);
        // Wakes a receiver waiting for data (an empty chunk is skipped); when the queue is
        // full the receiver is not waiting, and sees the flag on its next poll.
        let _ = self.tx.try_send(Bytes::new());
    }

    /// Whether the client went away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The body type hyper sends.
pub struct ResponseBody {
    kind: Kind,
    /// Dropped with the body: tells the connection its response is no longer being sent.
    _done: Option<Busy>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ResponseBody").field(&self.kind).finish()
    }
}

#[derive(Debug)]
enum Kind {
    Empty,
    Full(Option<Bytes>),
    File {
        file: tokio::fs::File,
        remaining: u64,
    },
    Stream(StreamReceiver),
}

impl ResponseBody {
    fn new(kind: Kind) -> Self {
        ResponseBody { kind, _done: None }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::new(Kind::Empty)
    }

    /// A body from bytes in memory.
    pub fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            Self::empty()
        } else {
            Self::new(Kind::Full(Some(bytes)))
        }
    }

    fn from_body(body: Body) -> Self {
        match body {
            Body::Empty => Self::empty(),
            Body::Full(b) => Self::full(b),
            Body::File(f, len) => Self::new(Kind::File {
                file: tokio::fs::File::from_std(f),
                remaining: len,
            }),
            Body::Stream(rx) => Self::new(Kind::Stream(rx)),
        }
    }

    /// Keeps `guard` until hyper has taken the whole body (or dropped it).
    pub(crate) fn hold_until_sent(&mut self, guard: Busy) {
        self._done = Some(guard);
    }

    /// The exact length when known before sending.
    pub fn exact_len(&self) -> Option<u64> {
        match &self.kind {
            Kind::Empty => Some(0),
            Kind::Full(b) => Some(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::File { remaining, .. } => Some(*remaining),
            Kind::Stream(_) => None,
        }
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(stream) => loop {
                if stream.aborted.load(Ordering::Acquire) {
                    return Poll::Ready(Some(Err(io::Error::other("response aborted"))));
                }
                match stream.rx.poll_recv(cx) {
                    Poll::Ready(Some(chunk)) if chunk.is_empty() => continue,
                    Poll::Ready(Some(chunk)) => return Poll::Ready(Some(Ok(Frame::data(chunk)))),
                    // Every sender is gone: the end, unless the last one aborted.
                    Poll::Ready(None) if stream.aborted.load(Ordering::Acquire) => {
                        return Poll::Ready(Some(Err(io::Error::other("response aborted"))));
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                }
            },
            Kind::File { file, remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = (*remaining).min(FILE_CHUNK as u64) as usize;
                let mut buf = BytesMut::zeroed(want);
                let mut read_buf = ReadBuf::new(&mut buf);
                match Pin::new(file).poll_read(cx, &mut read_buf) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(())) => {
                        let n = read_buf.filled().len();
                        if n == 0 {
                            // The file shrank under us: abort rather than send a short body.
                            return Poll::Ready(Some(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "file shorter than its length",
                            ))));
                        }
                        *remaining -= n as u64;
                        buf.truncate(n);
                        Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_none(),
            Kind::File { remaining, .. } => *remaining == 0,
            Kind::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Response {
    /// A response with a body in memory.
    pub fn new(status: u16, headers: Vec<(Bytes, Bytes)>, body: Bytes) -> Self {
        Response {
            status,
            headers,
            body: Body::Full(body),
        }
    }

    /// Converts to a hyper response, validating the app's headers on this (IO) thread.
    ///
    /// Header names are lower-cased; invalid names or values are dropped with an error log
    /// (never sent: no header injection). For bodies of known length the real length wins
    /// over an app-supplied `Content-Length`, except for HEAD where the app's value describes
    /// the body a GET would get.
    pub(crate) fn into_hyper(self, head_request: bool) -> hyper::Response<ResponseBody> {
        let status = match StatusCode::from_u16(self.status) {
            Ok(s) if !s.is_informational() => s,
            _ => {
                crate::error!("invalid response status {} - sending 500", self.status);
                return super::errors::error_response(StatusCode::INTERNAL_SERVER_ERROR, false);
            }
        };
        let bodiless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let body = if bodiless || head_request {
            ResponseBody::empty()
        } else {
            ResponseBody::from_body(self.body)
        };
        let known_len = if head_request { None } else { body.exact_len() };

        let mut res = hyper::Response::new(body);
        *res.status_mut() = status;
        if status.canonical_reason().is_none() {
            res.extensions_mut()
                .insert(hyper::ext::ReasonPhrase::from_static(b"Unknown"));
        }
        let headers = res.headers_mut();
        headers.reserve(self.headers.len() + 2);
        for (name, value) in self.headers {
            let Ok(name) = HeaderName::from_bytes(&name) else {
                crate::error!(
                    "invalid response header name {:?} dropped",
                    String::from_utf8_lossy(&name)
                );
                continue;
            };
            if known_len.is_some() && name == header::CONTENT_LENGTH {
                continue;
            }
            for line in value.split(|&b| b == b'\n') {
                if line.is_empty() {
                    continue;
                }
                match HeaderValue::from_maybe_shared(value.slice_ref(line)) {
                    Ok(v) => {
                        headers.append(name.clone(), v);
                    }
                    Err(_) => crate::error!("invalid value for response header {name} dropped"),
                }
            }
        }
        if let Some(n) = known_len {
            if !bodiless {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(name: &str, value: &str) -> (Bytes, Bytes) {
        (
            Bytes::copy_from_slice(name.as_bytes()),
            Bytes::copy_from_slice(value.as_bytes()),
        )
    }

    #[test]
    fn newline_values_become_several_lines_and_names_are_lowercased() {
        let r = Response::new(200, vec![hdr("Set-Cookie", "a=1\nb=2")], Bytes::from("hi"));
        let h = r.into_hyper(false);
        let cookies: Vec<_> = h.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, vec!["a=1", "b=2"]);
        assert_eq!(h.headers()["content-length"], "2");
    }

    #[test]
    fn injection_attempts_are_dropped() {
        let r = Response::new(
            200,
            vec![hdr("X-A", "ok\rEvil: 1"), hdr("Bad Name", "v")],
            Bytes::new(),
        );
        let h = r.into_hyper(false);
        assert!(h.headers().get("x-a").is_none());
        assert_eq!(h.headers().len(), 1); // content-length only
    }

    #[test]
    fn real_length_wins_over_a_wrong_content_length() {
        let r = Response::new(200, vec![hdr("Content-Length", "99")], Bytes::from("abc"));
        assert_eq!(r.into_hyper(false).headers()["content-length"], "3");
    }

    #[test]
    fn head_keeps_the_apps_content_length() {
        let r = Response::new(200, vec![hdr("Content-Length", "99")], Bytes::new());
        assert_eq!(r.into_hyper(true).headers()["content-length"], "99");
    }

    #[test]
    fn odd_statuses() {
        let r = Response::new(299, vec![], Bytes::new()).into_hyper(false);
        assert_eq!(r.status().as_u16(), 299);
        let r = Response::new(42, vec![], Bytes::new()).into_hyper(false);
        assert_eq!(r.status().as_u16(), 500);
        let r = Response::new(204, vec![], Bytes::from("x")).into_hyper(false);
        assert!(r.headers().get("content-length").is_none());
    }
}
