//! Limits against slow and greedy clients: header line length, request-head and body
//! deadlines, connection capacity; and the Host rule of HTTP/1.0.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iodine_engine::http::{Handler, HttpSettings, Reply, Request, Response};
use support::TestServer;

fn ok() -> Arc<dyn Handler> {
    Arc::new(|req: Request, reply: Reply| {
        let len = req.body.len().to_string();
        reply.send(Response::new(200, vec![], Bytes::from(len)));
    })
}

/// Reads until the server closes the connection or `limit` passes; returns what came and
/// whether it was closed.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), false)
}

/// Writes `byte` every 100 ms, at most `rounds` times, until the server answers or closes;
/// returns what it sent and whether it closed (a write that fails counts as closed).
fn drip(s: &mut TcpStream, byte: &[u8], rounds: usize) -> (String, bool) {
    let mut answer = String::new();
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_millis(100));
        if s.write_all(byte).is_err() {
            answer.push_str(&read_until_closed(s, Duration::from_millis(100)).0);
            return (answer, true);
        }
        let (r, closed) = read_until_closed(s, Duration::from_millis(1));
        answer.push_str(&r);
        if closed || answer.contains("HTTP/1.1") {
            return (answer, closed);
        }
    }
    (answer, false)
}

#[test]
fn http_1_0_without_host_is_served() {
    let srv = TestServer::start(HttpSettings::default(), ok());
    let r = srv.roundtrip_close(b"GET / HTTP/1.0\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"),
        "{r}"
    );
}

#[test]
fn a_header_line_over_8k_is_431_and_a_long_target_414() {
    let srv = TestServer::start(HttpSettings::default(), ok());
    let big = "x".repeat(9000);
    let r = srv
        .roundtrip_close(format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes());
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    let r = srv.roundtrip_close(format!("GET /{big} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    assert!(r.starts_with("HTTP/1.1 414"), "{r}");
    let fine = "x".repeat(8000);
    let r = srv.roundtrip_close(
        format!("GET / HTTP/1.1\r\nHost: a\r\nX-Ok: {fine}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn a_slow_request_head_is_cut_at_its_deadline() {
    let settings = HttpSettings {
        head_timeout: Duration::from_millis(400),
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, ok());
    let mut s = srv.connect();
    let started = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\n").expect("write");
    // One header byte every 100 ms would go on forever.
    let (_, closed) = drip(&mut s, b"X", 30);
    assert!(closed, "the slow head was not cut");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_idle_connection_still_gets_the_keep_alive_timeout_not_the_head_deadline() {
    let settings = HttpSettings {
        head_timeout: Duration::from_millis(200),
        timeout: Duration::from_millis(900),
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, ok());
    let mut s = srv.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(500)); // idle, past the head deadline
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .expect("write");
    let (r, _) = read_until_closed(&mut s, Duration::from_secs(3));
    assert_eq!(r.matches("HTTP/1.1 200").count(), 2, "{r}");
}

#[test]
fn a_body_slower_than_the_minimum_rate_gets_408() {
    let settings = HttpSettings {
        body_timeout: Duration::from_millis(500),
        min_upload_rate: 1000,
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, ok());
    let mut s = srv.connect();
    let started = Instant::now();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
        .expect("write");
    s.write_all(&[b'a'; 500]).expect("write");
    // 500 bytes buy 0.5 s at 1000 B/s: 1 s in all. A byte every 100 ms never pauses long.
    let (answer, _) = drip(&mut s, b"a", 40);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_paced_upload_is_received() {
    let settings = HttpSettings {
        body_timeout: Duration::from_millis(500),
        min_upload_rate: 1000,
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, ok());
    let mut s = srv.connect();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\nConnection: close\r\n\r\n")
        .expect("write");
    for _ in 0..6 {
        s.write_all(&[b'a'; 500]).expect("write"); // 5000 B/s, well above the minimum
        std::thread::sleep(Duration::from_millis(100));
    }
    let (r, _) = read_until_closed(&mut s, Duration::from_secs(3));
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("3000"), "{r}");
}

#[test]
fn connections_past_max_clients_get_503_and_the_server_goes_on() {
    let settings = HttpSettings {
        max_clients: 2,
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, ok());
    let a = srv.connect();
    let b = srv.connect();
    std::thread::sleep(Duration::from_millis(100));
    let r = srv.roundtrip_close(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    drop((a, b));
    std::thread::sleep(Duration::from_millis(200));
    let r = srv.roundtrip_close(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn a_client_that_stops_reading_a_stream_is_cut_and_the_producer_released() {
    let settings = HttpSettings {
        timeout: Duration::from_millis(400),
        ..HttpSettings::default()
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let handler: Arc<dyn Handler> = Arc::new(move |_r: Request, reply: Reply| {
        let (tx, body) = iodine_engine::http::stream_channel();
        reply.send(Response {
            status: 200,
            headers: vec![],
            body,
        });
        let done_tx = done_tx.clone();
        std::thread::spawn(move || {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let mut sent = 0u64;
            while sent < 10_000 && tx.send_blocking(chunk.clone()) {
                sent += 1;
            }
            let _ = done_tx.send(sent);
        });
    });
    let srv = TestServer::start(settings, handler);
    let mut s = srv.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    // Read nothing: the producer must be released once the stall is noticed.
    let sent = done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the producer was never released");
    assert!(sent < 10_000, "the whole body went into buffers: {sent}");
    drop(s);
}

#[test]
fn a_client_that_stops_reading_a_file_is_cut() {
    use std::io::Seek;
    let settings = HttpSettings {
        timeout: Duration::from_millis(300),
        ..HttpSettings::default()
    };
    let mut file = tempfile::tempfile().expect("tempfile");
    file.write_all(&vec![b'f'; 16 * 1024 * 1024])
        .expect("write");
    file.rewind().expect("rewind");
    let file = Arc::new(std::sync::Mutex::new(Some(file)));
    let handler: Arc<dyn Handler> = Arc::new(move |_r: Request, reply: Reply| {
        let f = file.lock().expect("lock").take().expect("one request");
        reply.send(Response {
            status: 200,
            headers: vec![],
            body: iodine_engine::http::Body::File(f, 16 * 1024 * 1024),
        });
    });
    let srv = TestServer::start(settings, handler);
    let mut s = srv.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(1500)); // read nothing: the server must give up
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(3));
    assert!(closed, "still open after the stall");
    assert!(
        got.len() < 16 * 1024 * 1024,
        "the whole file arrived: {}",
        got.len()
    );
}
