//! The owned response a handler sends back, and its conversion to a hyper response.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, StatusCode};
use hyper::body::{Frame, SizeHint};

use super::access_log::Entry;
use super::idle::Busy;
use super::sendfile::{self, Spool};
use super::stream_body::{self, BodySender, StreamReceiver};

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
    /// No HTTP body: the connection leaves HTTP for the protocol the app accepted
    /// (WebSocket or SSE). The server writes the head itself; the status and the app's
    /// headers go with it.
    Upgrade(crate::link::Upgrade),
}

/// A streaming body and the sender that feeds it.
pub fn stream_channel() -> (BodySender, Body) {
    let (sender, receiver) = stream_body::stream_channel();
    (sender, Body::Stream(receiver))
}

/// The body type hyper sends.
pub struct ResponseBody {
    kind: Kind,
    /// Body bytes handed to hyper so far.
    sent: u64,
    /// Dropped with the body (hyper is done with it): the connection is no longer busy.
    busy: Option<Busy>,
    /// Written when the body is dropped, with the bytes actually sent.
    log: Option<Box<Entry>>,
    /// When set, a file is sent with `sendfile(2)` by the connection's IO (placeholders
    /// are yielded, see `sendfile.rs`) rather than read here.
    spool: Option<Arc<Spool>>,
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(entry) = self.log.take() {
            let complete = match &self.kind {
                Kind::Stream(s) => s.is_done(),
                _ => hyper::body::Body::is_end_stream(&*self),
            };
            entry.write(self.sent, complete);
        }
    }
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
        file: Arc<File>,
        /// Where the next byte is read from (None: the file's position was unknowable).
        offset: Option<u64>,
        remaining: u64,
    },
    Stream(StreamReceiver),
    /// What a session writes to the other end of an in-memory pipe (SSE over HTTP/2).
    Pipe(tokio::io::DuplexStream),
}

/// The most one piece of a piped body takes.
const PIPE_CHUNK: usize = 16 * 1024;

impl ResponseBody {
    fn new(kind: Kind) -> Self {
        ResponseBody {
            kind,
            sent: 0,
            busy: None,
            log: None,
            spool: None,
        }
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
            Body::File(mut file, len) => Self::new(Kind::File {
                offset: io::Seek::stream_position(&mut file).ok(),
                file: Arc::new(file),
                remaining: len,
            }),
            Body::Stream(rx) => Self::new(Kind::Stream(rx)),
            // The connection handles upgrades before a response is built; one that gets
            // here (a HEAD request, a bodiless status) has nothing to send.
            Body::Upgrade(_) => Self::empty(),
        }
    }

    /// A body read from `pipe` until its writer closes (dropping the body closes the
    /// pipe: the writer's reads then end).
    pub(crate) fn pipe(pipe: tokio::io::DuplexStream) -> Self {
        Self::new(Kind::Pipe(pipe))
    }

    /// Keeps `guard` until hyper has taken the whole body (or dropped it).
    pub(crate) fn hold_until_sent(&mut self, guard: Busy) {
        self.busy = Some(guard);
    }

    /// Lets a file body be sent with `sendfile(2)` by the connection whose spool this is.
    pub(crate) fn send_files_with(&mut self, spool: Arc<Spool>) {
        self.spool = Some(spool);
    }

    /// Writes `entry` to the access log once the body has been sent (or dropped).
    pub(crate) fn log_when_sent(&mut self, entry: Entry) {
        self.log = Some(Box::new(entry));
    }

    /// The exact length when known before sending.
    pub fn exact_len(&self) -> Option<u64> {
        match &self.kind {
            Kind::Empty => Some(0),
            Kind::Full(b) => Some(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::File { remaining, .. } => Some(*remaining),
            Kind::Stream(_) | Kind::Pipe(_) => None,
        }
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => {
                let frame = b.take();
                this.sent += frame.as_ref().map_or(0, |b| b.len() as u64);
                Poll::Ready(frame.map(|b| Ok(Frame::data(b))))
            }
            Kind::Stream(stream) => {
                let polled = stream.poll_chunk(cx);
                if let Some(busy) = &this.busy {
                    busy.note_stream(polled.is_pending());
                }
                match polled {
                    Poll::Ready(Some(Ok(chunk))) => {
                        this.sent += chunk.len() as u64;
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                    other => other.map(|c| c.map(|r| r.map(Frame::data))),
                }
            }
            Kind::Pipe(pipe) => {
                let mut room = [0u8; PIPE_CHUNK];
                let mut buf = tokio::io::ReadBuf::new(&mut room);
                match tokio::io::AsyncRead::poll_read(Pin::new(pipe), cx, &mut buf) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(None),
                    Poll::Ready(Ok(())) => {
                        let chunk = Bytes::copy_from_slice(buf.filled());
                        this.sent += chunk.len() as u64;
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                }
            }
            Kind::File {
                file,
                offset,
                remaining,
            } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let Some(at) = *offset else {
                    return Poll::Ready(Some(Err(io::Error::other("file position unknown"))));
                };
                if let Some(busy) = &this.busy {
                    busy.note_stream(false);
                }
                if let Some(spool) = &this.spool {
                    let len = (*remaining).min(sendfile::MARK as u64) as usize;
                    *offset = Some(at + len as u64);
                    *remaining -= len as u64;
                    this.sent += len as u64;
                    return Poll::Ready(Some(Ok(Frame::data(spool.push(file, at, len)))));
                }
                // Read here, on the IO thread, as nginx does without aio: a file in the page
                // cache costs a copy; a thread hop per chunk would cost more.
                let want = (*remaining).min(FILE_CHUNK as u64) as usize;
                let mut chunk = vec![0u8; want];
                match file.read_at(&mut chunk, at) {
                    Err(e) => Poll::Ready(Some(Err(e))),
                    Ok(0) => Poll::Ready(Some(Err(sendfile::shrank()))),
                    Ok(n) => {
                        chunk.truncate(n);
                        *offset = Some(at + n as u64);
                        *remaining -= n as u64;
                        this.sent += n as u64;
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
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
            Kind::Stream(_) | Kind::Pipe(_) => false,
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
    /// (never sent: no header injection). The server owns the framing: an app's
    /// `Transfer-Encoding` is dropped; for bodies of known length the real length is sent
    /// whatever the app said; a streamed body keeps a valid app `Content-Length` (and is held
    /// to it) and is chunked otherwise. HEAD keeps a valid app value: it describes the body a
    /// GET would get. Every header the server replaces is logged.
    pub(crate) fn into_hyper(self, head_request: bool) -> hyper::Response<ResponseBody> {
        let status = match StatusCode::from_u16(self.status) {
            Ok(s) if !s.is_informational() => s,
            _ => {
                crate::error!("invalid response status {} - sending 500", self.status);
                return super::errors::error_response(StatusCode::INTERNAL_SERVER_ERROR, false);
            }
        };
        let server_made = super::errors::is_server_error(&self);
        let bodiless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let mut body = if bodiless || head_request {
            ResponseBody::empty()
        } else {
            ResponseBody::from_body(self.body)
        };

        let mut res = hyper::Response::new(ResponseBody::empty());
        *res.status_mut() = status;
        if server_made {
            res.extensions_mut().insert(super::errors::ServerMade);
        }
        if status.canonical_reason().is_none() {
            res.extensions_mut()
                .insert(hyper::ext::ReasonPhrase::from_static(b"Unknown"));
        }
        let headers = res.headers_mut();
        headers.reserve(self.headers.len() + 2);
        let mut declared = Declared::None;
        for (name, value) in self.headers {
            let Ok(name) = HeaderName::from_bytes(&name) else {
                crate::error!(
                    "invalid response header name {:?} dropped",
                    String::from_utf8_lossy(&name)
                );
                continue;
            };
            if name == header::CONTENT_LENGTH {
                declared.add(&value);
                continue;
            }
            if name == header::TRANSFER_ENCODING {
                warn_once(
                    &TE_WARNED,
                    "the app set Transfer-Encoding: dropped, the server frames responses",
                );
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
        let length = if bodiless {
            // 204 never has one; a 304 may repeat the length of what it validates.
            match declared {
                Declared::Valid(n) if status == StatusCode::NOT_MODIFIED => Some(n),
                _ => None,
            }
        } else if head_request {
            match declared {
                Declared::Valid(n) => Some(n),
                Declared::Invalid => {
                    warn_once(&CL_WARNED, "invalid Content-Length from the app dropped");
                    None
                }
                Declared::None => None,
            }
        } else if let Some(real) = body.exact_len() {
            match declared {
                Declared::Valid(n) if n == real => {}
                Declared::None => {}
                _ => warn_once(
                    &CL_WARNED,
                    "the app's Content-Length did not match its body: replaced",
                ),
            }
            Some(real)
        } else {
            match (declared, &mut body.kind) {
                (Declared::Valid(n), Kind::Stream(stream)) => {
                    stream.declare_length(n);
                    Some(n)
                }
                (Declared::Invalid, _) => {
                    warn_once(
                        &CL_WARNED,
                        "invalid Content-Length from the app dropped: the body is chunked",
                    );
                    None
                }
                _ => None,
            }
        };
        if let Some(n) = length {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        *res.body_mut() = body;
        res
    }
}

/// A response the server made itself (a static file's): `headers` are valid by
/// construction and carry the length; `head_request` (or a 304) leaves the body out.
pub(crate) fn server_made(
    status: u16,
    headers: http::HeaderMap,
    body: Body,
    head_request: bool,
) -> hyper::Response<ResponseBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bodiless = head_request || status == StatusCode::NOT_MODIFIED;
    let mut res = hyper::Response::new(match bodiless {
        true => ResponseBody::empty(),
        false => ResponseBody::from_body(body),
    });
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

/// What the app's `Content-Length` header(s) said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Declared {
    None,
    /// One length (repeated identical values count as one, RFC 9110 §8.6).
    Valid(u64),
    /// Not a number, or several different numbers.
    Invalid,
}

impl Declared {
    fn add(&mut self, value: &[u8]) {
        for part in value.split(|&b| b == b',' || b == b'\n') {
            let part = part.trim_ascii();
            let parsed = (!part.is_empty() && part.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
                .flatten();
            *self = match (*self, parsed) {
                (_, None) | (Declared::Invalid, _) => Declared::Invalid,
                (Declared::None, Some(n)) => Declared::Valid(n),
                (Declared::Valid(m), Some(n)) if m == n => Declared::Valid(n),
                (Declared::Valid(_), Some(_)) => Declared::Invalid,
            };
        }
    }
}

static TE_WARNED: AtomicBool = AtomicBool::new(false);
static CL_WARNED: AtomicBool = AtomicBool::new(false);

/// Logs `message` at warning level the first time, at debug level after that (an app that
/// does it on every response must not flood the log).
fn warn_once(flag: &AtomicBool, message: &str) {
    if flag.swap(true, Ordering::Relaxed) {
        crate::debug!("{message}");
    } else {
        crate::warning!("{message} (further occurrences are logged at debug level)");
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
