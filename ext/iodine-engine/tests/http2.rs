//! HTTP/2 over real sockets, spoken frame by frame (RFC 9113), with a Rust handler.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iodine_engine::http::{HttpSettings, Reply, Request, Response};
use support::TestServer;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// Answers with what it saw: method, path, query, version, Host and the body's length.
fn info() -> Arc<dyn iodine_engine::http::Handler> {
    Arc::new(|req: Request, reply: Reply| {
        let body = format!(
            "{} {} {} {} {} {}",
            req.method,
            req.path(),
            req.query(),
            req.version_str(),
            String::from_utf8_lossy(req.host()),
            req.body.len()
        );
        reply.send(Response::new(200, vec![], Bytes::from(body)));
    })
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with a 7-bit prefix (RFC 7541 §5.1), under `first`'s high bit.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: usize) {
    if n < 127 {
        out.push(first | n as u8);
        return;
    }
    out.push(first | 127);
    let mut rest = n - 127;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A header block of literal fields, never indexed, no Huffman coding.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x10);
        hpack_int(&mut out, 0, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn get(path: &str) -> Vec<u8> {
    block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "example.test:8080"),
    ])
}

struct Client(TcpStream);

impl Client {
    /// Connects and sends the preface and an empty SETTINGS.
    fn open(srv: &TestServer) -> Client {
        let mut s = srv.connect();
        s.write_all(PREFACE).expect("preface");
        s.write_all(&frame(SETTINGS, 0, 0, &[])).expect("settings");
        Client(s)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).expect("write");
    }

    /// The next frame: (type, flags, stream, payload); None when the server closed.
    fn next(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        let mut head = [0u8; 9];
        self.0.read_exact(&mut head).ok()?;
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        self.0.read_exact(&mut payload).ok()?;
        Some((head[3], head[4], stream, payload))
    }

    /// The status (the first field of the response's header block) and the body of
    /// `stream`, read until it ends.
    fn response(&mut self, stream: u32) -> (String, Vec<u8>) {
        let (mut status, mut body) = (String::new(), Vec::new());
        while let Some((kind, flags, id, payload)) = self.next() {
            if id != stream {
                continue;
            }
            match kind {
                HEADERS => status = first_status(&payload),
                DATA => body.extend_from_slice(&payload),
                RST_STREAM => return ("reset".into(), body),
                _ => {}
            }
            if flags & END_STREAM != 0 {
                break;
            }
        }
        (status, body)
    }
}

/// `:status` from the start of a header block: an indexed static entry (200, 204, 206, 304,
/// 400, 404, 500) or a literal with the `:status` name (short values are never Huffman-coded:
/// it would not be shorter).
fn first_status(block: &[u8]) -> String {
    const STATIC: [&str; 7] = ["200", "204", "206", "304", "400", "404", "500"];
    match block.first() {
        Some(&b) if (0x88..=0x8e).contains(&b) => STATIC[(b - 0x88) as usize].to_string(),
        Some(&b) if b & 0x0f == 8 || b & 0x3f == 8 => {
            let len = (block[1] & 0x7f) as usize;
            let value = &block[2..2 + len];
            match block[1] & 0x80 {
                0 => String::from_utf8_lossy(value).into_owned(),
                _ => huffman_digits(value),
            }
        }
        _ => format!("undecoded {block:?}"),
    }
}

/// Decodes a Huffman-coded string of digits (RFC 7541 Appendix B: '0'-'2' are 5-bit codes
/// 00000-00010, '3'-'9' 6-bit codes 011001-011111; the padding is 1 bits).
fn huffman_digits(bytes: &[u8]) -> String {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let (mut out, mut at) = (String::new(), 0);
    let take = |at: usize, n: usize| bits[at..at + n].iter().fold(0u8, |v, b| v << 1 | b);
    while at + 5 <= bits.len() {
        let five = take(at, 5);
        if five <= 2 {
            out.push((b'0' + five) as char);
            at += 5;
        } else if at + 6 <= bits.len() && (25..=31).contains(&take(at, 6)) {
            out.push((b'3' + take(at, 6) - 25) as char);
            at += 6;
        } else {
            break; // padding
        }
    }
    out
}

#[test]
fn prior_knowledge_serves_requests_on_streams() {
    let srv = TestServer::start(HttpSettings::default(), info());
    let mut c = Client::open(&srv);
    c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &get("/a?b=1")));
    let (status, body) = c.response(1);
    assert_eq!(status, "200");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "GET /a b=1 HTTP/2 example.test:8080 0"
    );
    // A second stream, with a body in two DATA frames.
    let post = block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/up"),
        (":authority", "x"),
    ]);
    c.send(&frame(HEADERS, END_HEADERS, 3, &post));
    c.send(&frame(DATA, 0, 3, b"hello "));
    c.send(&frame(DATA, END_STREAM, 3, b"world"));
    let (status, body) = c.response(3);
    assert_eq!(status, "200");
    assert_eq!(String::from_utf8_lossy(&body), "POST /up  HTTP/2 x 11");
}

#[test]
fn a_preface_split_over_writes_is_still_http2() {
    let srv = TestServer::start(HttpSettings::default(), info());
    let mut s = srv.connect();
    s.write_all(&PREFACE[..5]).expect("write");
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(&PREFACE[5..]).expect("write");
    s.write_all(&frame(SETTINGS, 0, 0, &[])).expect("settings");
    s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &get("/")))
        .expect("headers");
    let (status, _) = Client(s).response(1);
    assert_eq!(status, "200");
}

#[test]
fn http1_requests_starting_like_the_preface_stay_http1() {
    let srv = TestServer::start(HttpSettings::default(), info());
    let r = srv.roundtrip_close(b"PRI * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 "), "{r}");
    let r = srv.roundtrip_close(
        b"PUT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    );
    assert!(r.contains("PUT /p  HTTP/1.1 x 2"), "{r}");
}

#[test]
fn without_http2_the_preface_gets_no_http2() {
    let settings = HttpSettings {
        http2: false,
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, info());
    let r = srv.roundtrip_close(PREFACE);
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 4"), "{r}");
}

#[test]
fn a_request_without_authority_or_host_is_refused() {
    let srv = TestServer::start(HttpSettings::default(), info());
    let mut c = Client::open(&srv);
    let no_host = block(&[(":method", "GET"), (":scheme", "http"), (":path", "/")]);
    c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &no_host));
    let (status, _) = c.response(1);
    assert_eq!(status, "400");
    // The connection still serves the next stream.
    c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &get("/next")));
    assert_eq!(c.response(3).0, "200");
}

#[test]
fn invalid_pseudo_headers_reset_the_stream_and_the_connection_goes_on() {
    let srv = TestServer::start(HttpSettings::default(), info());
    let mut c = Client::open(&srv);
    let cases: [&[(&str, &str)]; 3] = [
        // No :path.
        &[(":method", "GET"), (":scheme", "http"), (":authority", "x")],
        // A pseudo-header that doesn't exist.
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "x"),
            (":bogus", "1"),
        ],
        // A pseudo-header after a regular one.
        &[
            (":method", "GET"),
            (":scheme", "http"),
            ("x-a", "1"),
            (":path", "/"),
            (":authority", "x"),
        ],
    ];
    // The first is a stream error; h2 takes the others for connection errors (GOAWAY).
    c.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(cases[0]),
    ));
    assert_eq!(c.response(1).0, "reset");
    c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &get("/ok")));
    assert_eq!(c.response(3).0, "200");
    for fields in &cases[1..] {
        let mut c = Client::open(&srv);
        c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(fields)));
        let (status, _) = c.response(1);
        assert!(
            status == "reset" || status.is_empty(),
            "{fields:?}: {status}"
        );
    }
    let mut c = Client::open(&srv);
    c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &get("/ok")));
    assert_eq!(c.response(1).0, "200");
}

#[test]
fn a_connection_error_ends_that_connection_only() {
    let srv = TestServer::start(HttpSettings::default(), info());
    let mut c = Client::open(&srv);
    // Upper-case field names are malformed (RFC 9113 §8.2.1): h2 ends the connection.
    let bad = block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "x"),
        ("X-Upper", "1"),
    ]);
    c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &bad));
    let mut ended = false;
    while let Some((kind, _, id, _)) = c.next() {
        if kind == GOAWAY || (kind == RST_STREAM && id == 1) {
            ended = true;
            break;
        }
    }
    assert!(ended);
    let mut other = Client::open(&srv);
    other.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &get("/ok")));
    assert_eq!(other.response(1).0, "200");
}

#[test]
fn headers_over_the_head_limit_are_refused() {
    let settings = HttpSettings {
        max_head: 4096,
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, info());
    let mut c = Client::open(&srv);
    let big = "v".repeat(8000);
    let fields = block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "x"),
        ("x-big", &big),
    ]);
    c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &fields));
    let mut refused = false;
    while let Some((kind, _, id, payload)) = c.next() {
        match kind {
            HEADERS if id == 1 => {
                assert_eq!(first_status(&payload), "431");
                refused = true;
                break;
            }
            RST_STREAM | GOAWAY => {
                refused = true;
                break;
            }
            _ => {}
        }
    }
    assert!(refused, "the oversized header list was not refused");
}
