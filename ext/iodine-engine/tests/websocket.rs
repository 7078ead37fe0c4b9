//! WebSocket and SSE sessions on real sockets: handshake, echo, the close policy, limits,
//! shutdown, and the event stream — with a Rust app standing in for Ruby.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iodine_engine::http::{Body, HttpSettings, Reply, Request, Response};
use iodine_engine::link::{Events, Kind, Link, Outgoing, Protocol, Upgrade};
use parking_lot::Mutex;
use support::ws::{close_code, frame, open, read_frame, server, wait_for, HANDSHAKE};
use support::TestServer;

#[test]
fn handshake_echo_ping_and_a_close_that_echoes_the_code() {
    let (server, seen) = server(Protocol::WebSocket, HttpSettings::default());
    let (mut s, head) = open(&server);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    assert!(head.contains("set-cookie: a=b"), "{head}");
    s.write_all(&frame(0x1, b"hello", true)).unwrap();
    assert_eq!(read_frame(&mut s), Some((0x1, b"hello".to_vec())));
    // A fragmented binary message comes back whole.
    let mut first = frame(0x2, b"ab", true);
    first[0] &= 0x7f; // not FIN
    s.write_all(&first).unwrap();
    s.write_all(&frame(0x0, b"cd", true)).unwrap();
    assert_eq!(read_frame(&mut s), Some((0x2, b"abcd".to_vec())));
    s.write_all(&frame(0x9, b"pp", true)).unwrap();
    assert_eq!(read_frame(&mut s), Some((0xA, b"pp".to_vec())));
    s.write_all(&frame(0x8, &4000u16.to_be_bytes(), true))
        .unwrap();
    let (op, payload) = read_frame(&mut s).expect("close reply");
    assert_eq!((op, close_code(&payload)), (0x8, Some(4000)));
    let events = wait_for(&seen, "close");
    assert_eq!(events, ["open", "message 5", "message 4", "close"]);
}

#[test]
fn protocol_violations_close_with_their_codes() {
    let mut settings = HttpSettings::default();
    settings.websocket.max_msg = 1024;
    let (server, _seen) = server(Protocol::WebSocket, settings);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (frame(0x1, b"unmasked", false), 1002),
        (
            {
                let mut f = frame(0x1, b"rsv", true);
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        (frame(0x1, &[0xff, 0xfe], true), 1007),
        (frame(0x2, &[0u8; 2000], true), 1009),
    ];
    for (bytes, code) in cases {
        let (mut s, _) = open(&server);
        s.write_all(&bytes).unwrap();
        let (op, payload) = read_frame(&mut s).expect("a close frame");
        assert_eq!((op, close_code(&payload)), (0x8, Some(code)));
    }
    // Fragments that add up past the limit, too.
    let (mut s, _) = open(&server);
    let mut first = frame(0x2, &[0u8; 800], true);
    first[0] &= 0x7f;
    s.write_all(&first).unwrap();
    s.write_all(&frame(0x0, &[0u8; 800], true)).unwrap();
    let (op, payload) = read_frame(&mut s).expect("a close frame");
    assert_eq!((op, close_code(&payload)), (0x8, Some(1009)));
}

#[test]
fn a_bad_handshake_gets_400_and_on_close_without_on_open() {
    let (server, seen) = server(Protocol::WebSocket, HttpSettings::default());
    let bad = HANDSHAKE.replace("Version: 13", "Version: 8");
    let reply = server.roundtrip_close(bad.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert_eq!(wait_for(&seen, "close"), ["close"]);
}

#[test]
fn a_vanished_client_is_closed_and_reported() {
    let (server, seen) = server(Protocol::WebSocket, HttpSettings::default());
    let (s, _) = open(&server);
    drop(s);
    assert_eq!(wait_for(&seen, "close"), ["open", "close"]);
}

#[test]
fn shutdown_runs_on_shutdown_then_closes_with_1001() {
    let (server, seen) = server(Protocol::WebSocket, HttpSettings::default());
    let (mut s, _) = open(&server);
    wait_for(&seen, "open");
    server.shutdown.trigger();
    assert_eq!(read_frame(&mut s), Some((0x1, b"bye".to_vec())));
    let (op, payload) = read_frame(&mut s).expect("close");
    assert_eq!((op, close_code(&payload)), (0x8, Some(1001)));
    s.write_all(&frame(0x8, &1001u16.to_be_bytes(), true))
        .unwrap();
    assert_eq!(wait_for(&seen, "close"), ["open", "shutdown", "close"]);
}

#[test]
fn an_event_stream_sends_its_head_events_and_pings() {
    let mut settings = HttpSettings::default();
    settings.websocket.ping = Duration::from_millis(200);
    let (server, seen) = server(Protocol::Sse, settings);
    let mut s = server.connect();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains(": ping") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("content-type: text/event-stream\r\n"),
        "{text}"
    );
    assert!(text.contains("set-cookie: a=b\r\n"), "{text}");
    assert!(!text.contains("content-length"), "{text}");
    assert!(text.contains("\r\n\r\ndata: hello\r\n\r\n"), "{text}");
    drop(s);
    assert_eq!(wait_for(&seen, "close"), ["open", "close"]);
}

/// Writes 1 MiB messages on any message until the link refuses.
struct Firehose {
    link: Arc<Link>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Events for Firehose {
    fn on_open(&self) {}
    fn on_message(&self, _: Bytes, _: Kind) {
        // From another thread, as an app's worker would, while the session writes.
        let (link, seen) = (self.link.clone(), self.seen.clone());
        std::thread::spawn(move || {
            let chunk = Bytes::from(vec![b'f'; 1 << 20]);
            let mut n = 0;
            while n < 64 && link.write(Outgoing::Binary(chunk.clone())).is_ok() {
                n += 1;
            }
            seen.lock().push(format!("accepted {n}"));
        });
    }
    fn on_drained(&self) {}
    fn on_shutdown(&self) {}
    fn on_close(&self) {
        self.seen.lock().push("close".into());
    }
}

#[test]
fn a_client_that_reads_nothing_is_closed_once_its_backlog_overflows() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let handler = move |_req: Request, reply: Reply| {
        let link = Link::new(Protocol::WebSocket);
        let events = Arc::new(Firehose {
            link: link.clone(),
            seen: log.clone(),
        });
        reply.send(Response {
            status: 200,
            headers: vec![],
            body: Body::Upgrade(Upgrade::new(link, events)),
        });
    };
    let server = TestServer::start(HttpSettings::default(), Arc::new(handler));
    let (mut s, _) = open(&server);
    s.write_all(&frame(0x1, b"go", true)).unwrap();
    wait_for(&seen, "close");
    // The writer thread says how many it got in once its last write was refused, which
    // may be just after the close.
    let mut events = seen.lock().clone();
    for _ in 0..200 {
        if events.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        events = seen.lock().clone();
    }
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events.iter().any(|e| e.starts_with("accepted ")),
        "{events:?}"
    );
    assert!(events.contains(&"close".to_string()), "{events:?}");
}

#[test]
fn upgraded_connections_still_count_toward_max_clients() {
    let settings = HttpSettings {
        max_clients: 2,
        ..HttpSettings::default()
    };
    let (server, _seen) = server(Protocol::WebSocket, settings);
    let (_a, head_a) = open(&server);
    let (_b, head_b) = open(&server);
    assert!(head_a.starts_with("HTTP/1.1 101") && head_b.starts_with("HTTP/1.1 101"));
    let refused = server.roundtrip_close(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    drop((_a, _b));
    // Once they are gone, there is room again.
    let mut answered = String::new();
    for _ in 0..100 {
        answered = open(&server).1;
        if answered.starts_with("HTTP/1.1 101") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(answered.starts_with("HTTP/1.1 101"), "{answered}");
}

#[test]
fn a_peer_that_answers_no_pings_is_dropped_and_one_that_answers_stays() {
    let mut settings = HttpSettings::default();
    settings.websocket.ping = Duration::from_millis(100);
    let (server, seen) = server(Protocol::WebSocket, settings);
    let (mut alive, _) = open(&server);
    let (_silent, _) = open(&server);
    alive
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Six intervals: the silent peer is dropped after its second unanswered ping (the third
    // quiet interval); the one that answers each ping with a pong is not.
    for _ in 0..6 {
        let (op, payload) = read_frame(&mut alive).expect("a ping");
        assert_eq!(op, 0x9);
        alive.write_all(&frame(0xA, &payload, true)).unwrap();
    }
    let events = wait_for(&seen, "close");
    assert_eq!(
        events.iter().filter(|e| *e == "close").count(),
        1,
        "{events:?}"
    );
    alive.write_all(&frame(0x1, b"still here", true)).unwrap();
    let mut reply = read_frame(&mut alive).expect("the echo");
    while reply.0 == 0x9 {
        reply = read_frame(&mut alive).expect("the echo");
    }
    assert_eq!(reply, (0x1, b"still here".to_vec()));
}

/// An application that reports handled messages but handles none until told: the slowest
/// handler there is.
struct Hoarder {
    got: Arc<Mutex<Vec<usize>>>,
}

impl Events for Hoarder {
    fn on_open(&self) {}
    fn on_message(&self, data: Bytes, _: Kind) {
        self.got.lock().push(data.len());
    }
    fn on_drained(&self) {}
    fn on_shutdown(&self) {}
    fn on_close(&self) {}
    fn reports_handled(&self) -> bool {
        true
    }
}

/// What each hoarded message weighed, and the links (to hand back what the hoarder holds).
type Hoard = (Arc<Mutex<Vec<usize>>>, Arc<Mutex<Vec<Arc<Link>>>>);

/// A server whose connections go to a [`Hoarder`].
fn hoarding_server() -> (TestServer, Hoard) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let links = Arc::new(Mutex::new(Vec::new()));
    let (g, l) = (got.clone(), links.clone());
    let handler = move |_req: Request, reply: Reply| {
        let link = Link::new(Protocol::WebSocket);
        l.lock().push(link.clone());
        let events = Arc::new(Hoarder { got: g.clone() });
        reply.send(Response {
            status: 200,
            headers: vec![],
            body: Body::Upgrade(Upgrade::new(link, events)),
        });
    };
    (
        TestServer::start(HttpSettings::default(), Arc::new(handler)),
        (got, links),
    )
}

/// Writes `frame` until a write blocks for 300 ms, or `limit` bytes, or 5 s; the bytes sent.
fn send_until_blocked(s: &mut TcpStream, frame: &[u8], limit: usize) -> usize {
    s.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut sent = 0;
    while sent < limit && started.elapsed() < Duration::from_secs(5) {
        match s.write(frame) {
            Ok(n) => sent += n,
            Err(_) => break, // blocked (or gone)
        }
    }
    sent
}

#[test]
fn a_flooding_client_is_no_longer_read_while_its_application_lags() {
    let (server, (got, links)) = hoarding_server();
    let (mut s, head) = open(&server);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let message = frame(0x2, &vec![7u8; 16 * 1024], true);
    let sent = send_until_blocked(&mut s, &message, 512 << 20);
    let held: Vec<usize> = got.lock().clone();
    // The application holds at most the bound (plus the message that crossed it); the rest
    // waits in the kernel's buffers, and the client blocks.
    assert!(
        held.len() <= iodine_engine::link::INBOUND_MESSAGES,
        "{}",
        held.len()
    );
    assert!(held.iter().sum::<usize>() <= iodine_engine::link::INBOUND_LIMIT + 16 * 1024);
    assert!(
        sent < 64 << 20,
        "the client sent {sent} bytes without blocking"
    );
    // The application catches up: reading resumes.
    let link = links.lock()[0].clone();
    for len in held.iter() {
        link.handled(*len);
    }
    let before = held.len();
    let mut more = 0;
    for _ in 0..200 {
        more = got.lock().len() - before;
        if more > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(more > 0, "reading never resumed");
}

#[test]
fn pings_from_a_client_that_never_reads_stop_being_read() {
    let (server, _hoard) = hoarding_server();
    let (mut s, head) = open(&server);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Many pings per write; their pongs are owed to a client that reads nothing.
    let ping = frame(0x9, &[b'p'; 125], true);
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 512)
        .collect();
    let sent = send_until_blocked(&mut s, &burst, 256 << 20);
    assert!(
        sent < 64 << 20,
        "the client sent {sent} bytes of pings without blocking"
    );
}
