//! Raw connections on real sockets: the raw listener, `upgrade.tcp` with pipelined bytes,
//! idle timeouts, shutdown, and the raw and WebSocket clients (including every way a
//! connect can fail) — with a Rust app standing in for Ruby.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iodine_engine::client::{self, Target, WsRequest};
use iodine_engine::http::{Body, HttpSettings, Reply, Request, Response};
use iodine_engine::link::{Events, Kind, Link, Outgoing, Protocol, Upgrade};
use iodine_engine::raw::{self, RawSettings, READ_CHUNK};
use iodine_engine::server::{bind, Address, Shutdown};
use iodine_engine::websocket::WsSettings;
use parking_lot::Mutex;
use support::TestServer;

type Log = Arc<Mutex<Vec<String>>>;

/// Echoes what it gets (text messages as text) and records what happened.
struct Echo {
    link: Arc<Link>,
    seen: Log,
    /// Closes the link itself after the peer finished sending.
    closes_after_peer: bool,
}

impl Events for Echo {
    fn on_open(&self) {
        self.seen.lock().push("open".into());
    }
    fn on_message(&self, data: Bytes, kind: Kind) {
        assert!(data.len() <= READ_CHUNK, "a chunk over READ_CHUNK");
        self.seen.lock().push(format!("message {}", data.len()));
        let out = match (self.link.protocol(), kind.is_text()) {
            (Protocol::Raw, _) => Outgoing::Raw(data),
            (_, true) => Outgoing::Text(data),
            (_, false) => Outgoing::Binary(data),
        };
        let _ = self.link.write(out);
    }
    fn on_drained(&self) {}
    fn on_shutdown(&self) {
        self.seen.lock().push("shutdown".into());
        let _ = self.link.write(Outgoing::Raw(Bytes::from("bye\n")));
    }
    fn on_close(&self) {
        self.seen.lock().push("close".into());
    }
    fn on_timeout(&self) {
        self.seen.lock().push("timeout".into());
        let _ = self.link.write(Outgoing::Raw(Bytes::from("ping\n")));
    }
    fn on_peer_closed(&self) -> bool {
        if self.closes_after_peer {
            self.seen.lock().push("peer closed".into());
            self.link.close(None);
        }
        self.closes_after_peer
    }
}

fn echo(protocol: Protocol, seen: &Log) -> Upgrade {
    let link = Link::new(protocol);
    let events = Arc::new(Echo {
        link: link.clone(),
        seen: seen.clone(),
        closes_after_peer: false,
    });
    Upgrade::new(link, events)
}

/// A raw echo listener on 127.0.0.1.
struct RawServer {
    port: u16,
    shutdown: Shutdown,
    runtime: tokio::runtime::Runtime,
    seen: Log,
}

fn raw_server(settings: RawSettings, closes_after_peer: bool) -> RawServer {
    let bound = bind(&Address::Tcp {
        host: Some("127.0.0.1".into()),
        port: 0,
    })
    .expect("bind");
    let port = bound.port();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = Shutdown::new();
    let seen: Log = Arc::default();
    let log = seen.clone();
    let accept = move |_peer, _protocol: Option<&[u8]>| {
        let link = Link::new(Protocol::Raw);
        let events = Arc::new(Echo {
            link: link.clone(),
            seen: log.clone(),
            closes_after_peer,
        });
        Upgrade::new(link, events)
    };
    let s2 = shutdown.clone();
    runtime.spawn(async move {
        let listener = bound.into_async().expect("async listener");
        raw::serve(listener, settings, None, Arc::new(accept), s2).await;
    });
    RawServer {
        port,
        shutdown,
        runtime,
        seen,
    }
}

impl RawServer {
    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }
}

fn wait_for(seen: &Log, what: &str) -> Vec<String> {
    for _ in 0..500 {
        if seen.lock().iter().any(|e| e == what) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    seen.lock().clone()
}

#[test]
fn a_raw_listener_echoes_every_byte_and_hands_over_what_waits_in_large_chunks() {
    let server = raw_server(RawSettings::default(), false);
    let mut s = server.connect();
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut reader = s.try_clone().unwrap();
    let expected = payload.clone();
    let reading = std::thread::spawn(move || {
        let mut got = vec![0u8; expected.len()];
        reader.read_exact(&mut got).expect("the echo");
        assert!(got == expected, "the echo differs");
    });
    s.write_all(&payload).unwrap();
    reading.join().expect("reader");
    drop(s);
    let seen = wait_for(&server.seen, "close");
    assert_eq!(seen.first().map(String::as_str), Some("open"));
    assert_eq!(seen.last().map(String::as_str), Some("close"));
    // Each message is at most READ_CHUNK (checked as they come); when more than one read's
    // worth (16 KiB) was waiting, it came in one message.
    let largest = seen
        .iter()
        .filter_map(|e| e.strip_prefix("message "))
        .filter_map(|n| n.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        largest > 16 * 1024,
        "the largest message was {largest} bytes"
    );
}

#[test]
fn a_quiet_connection_gets_on_timeout_and_stays_open() {
    let settings = RawSettings {
        timeout: Duration::from_millis(100),
        ..RawSettings::default()
    };
    let server = raw_server(settings, false);
    let mut s = server.connect();
    let mut line = [0u8; 5];
    s.read_exact(&mut line)
        .expect("the app's answer to on_timeout");
    assert_eq!(&line, b"ping\n");
    s.write_all(b"still here").unwrap();
    let mut echo = [0u8; 10];
    // Pings may come in between: read until the echo shows up.
    let mut got = Vec::new();
    while !got.windows(10).any(|w| w == b"still here") {
        let n = s.read(&mut echo).expect("read");
        assert!(n > 0, "closed");
        got.extend_from_slice(&echo[..n]);
    }
}

#[test]
fn the_app_answers_the_last_message_of_a_peer_that_finished_sending() {
    let server = raw_server(RawSettings::default(), true);
    let mut s = server.connect();
    s.write_all(b"last words").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read to the end");
    assert_eq!(got, b"last words");
    let seen = wait_for(&server.seen, "close");
    assert!(seen.contains(&"peer closed".to_string()), "{seen:?}");
}

#[test]
fn shutdown_calls_on_shutdown_then_closes() {
    let settings = RawSettings {
        shutdown_grace: Duration::from_millis(200),
        ..RawSettings::default()
    };
    let server = raw_server(settings, false);
    let mut s = server.connect();
    wait_for(&server.seen, "open");
    server.shutdown.trigger();
    // The listener stops; the connection hears on_shutdown, then the grace period ends it.
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(got, b"bye\n");
    assert_eq!(
        wait_for(&server.seen, "close"),
        ["open", "shutdown", "close"]
    );
    drop(server.runtime);
}

#[test]
fn upgrade_tcp_sends_the_head_then_hands_over_pipelined_bytes() {
    let seen: Log = Arc::default();
    let log = seen.clone();
    let handler = move |_req: Request, reply: Reply| {
        reply.send(Response {
            status: 101,
            headers: vec![(Bytes::from("upgrade"), Bytes::from("echo"))],
            body: Body::Upgrade(echo(Protocol::Raw, &log)),
        });
    };
    let server = TestServer::start(HttpSettings::default(), Arc::new(handler));
    let mut s = server.connect();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\npipelined",
    )
    .unwrap();
    let head = support::read_response(&mut s);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("upgrade: echo\r\n"), "{head}");
    let mut got = [0u8; 9];
    s.read_exact(&mut got).expect("the pipelined bytes, echoed");
    assert_eq!(&got, b"pipelined");
    s.write_all(b"more").unwrap();
    let mut more = [0u8; 4];
    s.read_exact(&mut more).unwrap();
    assert_eq!(&more, b"more");
}

/// A client's runtime and shutdown.
fn client_runtime() -> (tokio::runtime::Runtime, Shutdown) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    (runtime, Shutdown::new())
}

#[test]
fn a_raw_client_talks_to_a_plain_echo_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let (runtime, shutdown) = client_runtime();
    let seen: Log = Arc::default();
    let link = Link::new(Protocol::Raw);
    let events = Arc::new(Echo {
        link: link.clone(),
        seen: seen.clone(),
        closes_after_peer: false,
    });
    // The client speaks first; the server echoes; the client echoes back... stop after a few.
    link.write(Outgoing::Raw(Bytes::from("hello"))).unwrap();
    let target = Target::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    runtime.spawn(client::run_raw(
        target,
        None,
        Upgrade::new(link.clone(), events),
        RawSettings::default(),
        Duration::from_secs(5),
        shutdown,
    ));
    for _ in 0..500 {
        if seen.lock().len() > 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    link.close(None);
    let seen = wait_for(&seen, "close");
    assert_eq!(seen[0], "open");
    assert!(
        seen.iter().filter(|e| *e == "message 5").count() >= 3,
        "{seen:?}"
    );
}

fn ws_echo_server() -> TestServer {
    let seen: Log = Arc::default();
    let handler = move |req: Request, reply: Reply| {
        if req.path() != "/ws" {
            reply.send(Response::new(404, vec![], Bytes::from("no")));
            return;
        }
        reply.send(Response {
            status: 200,
            headers: vec![],
            body: Body::Upgrade(echo(Protocol::WebSocket, &seen)),
        });
    };
    TestServer::start(HttpSettings::default(), Arc::new(handler))
}

/// Runs a WebSocket client that sends "hi" on open; returns what it saw.
fn ws_client(target: Target, path: &str, timeout: Duration) -> Vec<String> {
    let (runtime, shutdown) = client_runtime();
    let seen: Log = Arc::default();
    let link = Link::new(Protocol::WebSocket);
    let events = Arc::new(Recorder {
        link: link.clone(),
        seen: seen.clone(),
    });
    link.write(Outgoing::Text(Bytes::from("hi"))).unwrap();
    let host = target.to_string();
    runtime.spawn(client::run_websocket(
        target,
        None,
        WsRequest {
            host,
            path: path.into(),
            headers: vec![("Cookie".into(), "a=b".into())],
        },
        Upgrade::new(link, events),
        WsSettings::default(),
        timeout,
        shutdown,
    ));
    wait_for(&seen, "close")
}

/// Records; closes after the first message.
struct Recorder {
    link: Arc<Link>,
    seen: Log,
}

impl Events for Recorder {
    fn on_open(&self) {
        self.seen.lock().push("open".into());
    }
    fn on_message(&self, data: Bytes, kind: Kind) {
        let data = String::from_utf8_lossy(&data).into_owned();
        let text = kind.is_text();
        self.seen.lock().push(format!("message {data} {text}"));
        self.link.close(Some(1000));
    }
    fn on_drained(&self) {}
    fn on_shutdown(&self) {}
    fn on_close(&self) {
        self.seen.lock().push("close".into());
    }
}

#[test]
fn a_websocket_client_echoes_with_our_server() {
    let server = ws_echo_server();
    let target = Target::Tcp {
        host: "127.0.0.1".into(),
        port: server.port,
    };
    let seen = ws_client(target, "/ws", Duration::from_secs(5));
    assert_eq!(seen, ["open", "message hi true", "close"]);
}

#[test]
fn every_failed_connect_gives_one_on_close_and_no_on_open() {
    // Refused: a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = Target::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    assert_eq!(ws_client(refused, "/", Duration::from_secs(5)), ["close"]);
    // A name that does not resolve.
    let nowhere = Target::Tcp {
        host: "no-such-host.invalid".into(),
        port: 80,
    };
    assert_eq!(ws_client(nowhere, "/", Duration::from_secs(5)), ["close"]);
    // The server answers the handshake with a 404.
    let server = ws_echo_server();
    let target = Target::Tcp {
        host: "127.0.0.1".into(),
        port: server.port,
    };
    assert_eq!(
        ws_client(target, "/missing", Duration::from_secs(5)),
        ["close"]
    );
    // The server accepts and never answers: the timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = Target::Tcp {
        host: "127.0.0.1".into(),
        port: silent.local_addr().unwrap().port(),
    };
    let started = std::time::Instant::now();
    assert_eq!(
        ws_client(target, "/", Duration::from_millis(300)),
        ["close"]
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    drop(silent);
}

/// Reads one frame a client sent (it must be masked); (first byte, unmasked payload).
fn read_client_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("a frame");
    assert_eq!(h[1] & 0x80, 0x80, "a client's frames are masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut key = [0u8; 4];
    s.read_exact(&mut key).unwrap();
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    (h[0], payload)
}

#[test]
fn a_websocket_client_masks_its_frames_and_keeps_what_came_with_the_101() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let head = support::read_response(&mut s); // the request head, read the same way
        assert!(head.starts_with("GET /chat HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("Cookie: a=b\r\n"), "{head}");
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("a key")
            .to_string();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        // The 101 and a first frame in one write: the client must not lose the frame.
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes();
        answer.extend_from_slice(b"\x81\x05hello");
        s.write_all(&answer).unwrap();
        // The client's "hi" (queued before it opened), then its Close after our message.
        let first = read_client_frame(&mut s);
        let second = read_client_frame(&mut s);
        s.write_all(b"\x88\x02\x03\xe8").unwrap(); // our answer: Close 1000
        (first, second)
    });
    let target = Target::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let seen = ws_client(target, "/chat", Duration::from_secs(5));
    assert_eq!(seen, ["open", "message hello true", "close"]);
    let (first, second) = server.join().expect("the server side");
    assert_eq!(first, (0x81, b"hi".to_vec()));
    assert_eq!(second, (0x88, 1000u16.to_be_bytes().to_vec()));
}
