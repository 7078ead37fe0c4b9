//! Server-Sent Events (EventSource): encoding events, the keep-alive comment, the response
//! head (WHATWG HTML "server-sent events"), and the [`session`](run) that writes a
//! [`Link`](crate::link::Link)'s events to the client.

mod session;

use bytes::{BufMut, Bytes, BytesMut};

pub use session::run;

/// Whether a request asks for an event stream: its `Accept` *contains* `text/event-stream`
/// (the C gem wanted it to be the whole value; browsers may send a list).
pub fn is_sse_request(headers: &http::HeaderMap) -> bool {
    headers.get_all(http::header::ACCEPT).iter().any(|v| {
        v.as_bytes()
            .windows(17)
            .any(|w| w.eq_ignore_ascii_case(b"text/event-stream"))
    })
}

/// The 200 head of an event stream: the SSE headers (the app's `content-type` wins over
/// ours), then the app's own. No length: the stream ends when the connection closes.
pub fn response_head(app_headers: &[(Bytes, Bytes)]) -> BytesMut {
    let mut head = BytesMut::with_capacity(192);
    head.put_slice(b"HTTP/1.1 200 OK\r\n");
    let app_sets = |name: &str| {
        app_headers
            .iter()
            .any(|(n, _)| n.as_ref().eq_ignore_ascii_case(name.as_bytes()))
    };
    for (name, value) in RESPONSE_HEADERS {
        if !app_sets(name) {
            head.put_slice(name.as_bytes());
            head.put_slice(b": ");
            head.put_slice(value.as_bytes());
            head.put_slice(b"\r\n");
        }
    }
    crate::http::put_app_headers(&mut head, app_headers, &["connection"]);
    head.put_slice(b"\r\n");
    head
}

/// The comment written to an idle stream every `ping` seconds, so proxies keep it open.
pub const PING: &[u8] = b": ping\n\n";

/// The headers the server sends with an SSE response (before the app's own).
pub const RESPONSE_HEADERS: &[(&str, &str)] = &[
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache, max-age=0"),
    ("content-encoding", "identity"),
];

/// One event: `data` plus the optional fields of `client.write(data, event:, id:, retry:)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event<'a> {
    /// The payload; each of its lines (split on `\n`, `\r` or `\r\n`) becomes a `data:` line.
    pub data: &'a [u8],
    /// The event type (`event:`).
    pub event: Option<&'a [u8]>,
    /// The event id (`id:`), what the browser sends back as `Last-Event-ID`.
    pub id: Option<&'a [u8]>,
    /// The reconnection time in milliseconds (`retry:`).
    pub retry: Option<u64>,
}

impl Event<'_> {
    /// The event on the wire, or None when there is nothing to send (no data and no field).
    /// Line breaks inside `event` and `id` are dropped: a field can't smuggle in another
    /// field or end the event early.
    pub fn encode(&self) -> Option<Bytes> {
        if self.data.is_empty() && self.event.is_none() && self.id.is_none() && self.retry.is_none()
        {
            return None;
        }
        let mut out = BytesMut::with_capacity(self.data.len() + 32);
        if let Some(id) = self.id {
            field(&mut out, b"id: ", id);
        }
        if let Some(event) = self.event {
            field(&mut out, b"event: ", event);
        }
        if let Some(retry) = self.retry {
            out.put_slice(format!("retry: {retry}\r\n").as_bytes());
        }
        if !self.data.is_empty() {
            for line in lines(self.data) {
                out.put_slice(b"data: ");
                out.put_slice(line);
                out.put_slice(b"\r\n");
            }
        }
        out.put_slice(b"\r\n");
        Some(out.freeze())
    }
}

fn field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.extend(value.iter().filter(|&&b| b != b'\r' && b != b'\n'));
    out.put_slice(b"\r\n");
}

/// The lines of `data`, split on `\r\n`, `\n` or `\r` (a final line break ends the last
/// line; it does not add an empty one).
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(i) => {
                let skip = if current[i] == b'\r' && current.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                let next = &current[i + skip..];
                rest = (!next.is_empty()).then_some(next);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(d: &str) -> Option<String> {
        let e = Event {
            data: d.as_bytes(),
            ..Event::default()
        };
        e.encode()
            .map(|b| String::from_utf8(b.to_vec()).expect("utf-8"))
    }

    #[test]
    fn each_line_of_the_data_is_a_data_line() {
        assert_eq!(data("hi").as_deref(), Some("data: hi\r\n\r\n"));
        assert_eq!(
            data("a\nb\r\nc\rd").as_deref(),
            Some("data: a\r\ndata: b\r\ndata: c\r\ndata: d\r\n\r\n")
        );
        assert_eq!(data("a\n").as_deref(), Some("data: a\r\n\r\n"));
        assert_eq!(
            data("a\n\nb").as_deref(),
            Some("data: a\r\ndata: \r\ndata: b\r\n\r\n")
        );
        assert_eq!(data(""), None);
    }

    #[test]
    fn fields_come_first_and_cannot_break_lines() {
        let e = Event {
            data: b"x",
            event: Some(b"update\r\ndata: injected"),
            id: Some(b"7"),
            retry: Some(1500),
        };
        let wire = String::from_utf8(e.encode().expect("event").to_vec()).expect("utf-8");
        assert_eq!(
            wire,
            "id: 7\r\nevent: updatedata: injected\r\nretry: 1500\r\ndata: x\r\n\r\n"
        );
    }

    #[test]
    fn an_event_without_data_still_has_its_fields() {
        let e = Event {
            id: Some(b"42"),
            ..Event::default()
        };
        assert_eq!(e.encode().as_deref(), Some(&b"id: 42\r\n\r\n"[..]));
    }
}
