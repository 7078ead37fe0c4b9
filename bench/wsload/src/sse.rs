//! SSE subscribers over raw TCP: the GET, the response head, the wait for `data: ready`, then
//! counting and timing events as they arrive.

use std::sync::Arc;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::event_stream::{Chunked, EventParser};
use crate::receiver::Receiver;
use crate::setup::within;
use crate::stamp;
use crate::stats::Stats;
use crate::target::Target;

/// Read buffer per subscriber; also the limit for the response head.
const BUFFER: usize = 16 * 1024;

/// An open event stream whose `data: ready` event has been read.
pub struct Subscriber {
    /// The connection the GET went out on.
    tcp: TcpStream,
    /// Where each read lands (reused: parsing needs no other buffer).
    buf: Box<[u8]>,
    /// `Some` when the body uses the chunked transfer-coding.
    chunked: Option<Chunked>,
    /// Finds the events in the body.
    events: EventParser,
}

impl Subscriber {
    /// Parses the `len` bytes just read into `buf`; returns the events they completed, after
    /// passing each one's data to `each`.
    fn parse(&mut self, len: usize, mut each: impl FnMut(&[u8])) -> Result<u64, String> {
        let Subscriber {
            buf,
            chunked,
            events,
            ..
        } = self;
        let mut count = 0;
        match chunked {
            Some(decoder) => {
                decoder.feed(&buf[..len], |data| count += events.feed(data, &mut each))?;
            }
            None => count = events.feed(&buf[..len], each),
        }
        Ok(count)
    }

    /// Reads once into the buffer; `Err` when the stream ended or failed.
    async fn read(&mut self) -> Result<usize, String> {
        match self.tcp.read(&mut self.buf).await {
            Ok(0) => Err("the server ended the stream".to_owned()),
            Ok(len) => Ok(len),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Sends `GET` with `Accept: text/event-stream`, checks for a 200 response and reads until
/// the `data: ready` event, all within `SETUP_TIMEOUT`.
pub async fn subscribe(target: &Target) -> Result<Subscriber, String> {
    within(&target.url, async {
        let mut tcp = TcpStream::connect(&target.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", target.addr))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            target.path, target.addr
        );
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;

        let mut conn = Subscriber {
            tcp,
            buf: vec![0; BUFFER].into_boxed_slice(),
            chunked: None,
            events: EventParser::default(),
        };
        let (head_len, filled) = read_head(&mut conn).await?;
        let head = &conn.buf[..head_len];
        if !(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")) {
            let status = head.split(|&b| b == b'\r').next().unwrap_or_default();
            return Err(format!(
                "{}: answered {:?}",
                target.url,
                String::from_utf8_lossy(status)
            ));
        }
        if is_chunked(head) {
            conn.chunked = Some(Chunked::new());
        }
        // What followed the head is the body's start.
        conn.buf.copy_within(head_len..filled, 0);
        conn.parse(filled - head_len, |_| {})?;
        while !conn.events.ready() {
            let len = conn.read().await?;
            conn.parse(len, |_| {})?;
        }
        Ok(conn)
    })
    .await
}

/// Counts and times a subscriber's events until aborted.
pub async fn listen(mut conn: Subscriber, mut receiver: Receiver, stats: Arc<Stats>) {
    loop {
        let parsed = conn.read().await.and_then(|len| {
            // One clock read per read: every event in it had arrived by now.
            let now = stamp::now_ns();
            conn.parse(len, |data| receiver.message(data, now))
        });
        match parsed {
            Ok(0) => {}
            Ok(events) => stats.deliver(events),
            Err(e) => return stats.error(format!("SSE subscriber: {e}")),
        }
    }
}

/// Reads until the response head is complete; returns its length and the bytes read.
async fn read_head(conn: &mut Subscriber) -> Result<(usize, usize), String> {
    let mut filled = 0;
    loop {
        if let Some(end) = memmem::find(&conn.buf[..filled], b"\r\n\r\n") {
            return Ok((end + 4, filled));
        }
        if filled == conn.buf.len() {
            return Err(format!("response head over {BUFFER} bytes"));
        }
        match conn.tcp.read(&mut conn.buf[filled..]).await {
            Ok(0) => return Err("closed before the response head".to_owned()),
            Ok(len) => filled += len,
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Whether a response head says `Transfer-Encoding: chunked`.
fn is_chunked(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n').any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with(b"transfer-encoding:") && memmem::find(&line, b"chunked").is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spots_chunked_heads() {
        assert!(is_chunked(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(is_chunked(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding:gzip, chunked\r\n\r\n"
        ));
        assert!(!is_chunked(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
        ));
    }
}
