//! The HTTP engine over real sockets, with a Rust handler in place of Ruby.

mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iodine_engine::http::{
    stream_channel, Body, HttpSettings, Reply, Request, RequestBody, Response,
};
use support::{read_response, TestServer};

fn h(name: &str, value: &str) -> (Bytes, Bytes) {
    (
        Bytes::copy_from_slice(name.as_bytes()),
        Bytes::copy_from_slice(value.as_bytes()),
    )
}

/// Echoes method, path, query and body length; the body back for POST.
fn echo() -> Arc<dyn iodine_engine::http::Handler> {
    Arc::new(|req: Request, reply: Reply| {
        let body = match &req.body {
            RequestBody::Empty => Bytes::new(),
            RequestBody::Memory(b) => b.clone(),
            RequestBody::File(f, _) => {
                use std::io::{Seek, SeekFrom};
                let mut f = f.try_clone().expect("clone");
                f.seek(SeekFrom::Start(0)).expect("seek");
                let mut v = Vec::new();
                f.read_to_end(&mut v).expect("read");
                Bytes::from(v)
            }
        };
        let info = format!(
            "{} {} {} {}",
            req.method,
            req.path(),
            req.query(),
            req.body.len()
        );
        reply.send(Response::new(200, vec![h("X-Info", &info)], body));
    })
}

#[test]
fn get_and_keep_alive() {
    let srv = TestServer::start(HttpSettings::default(), echo());
    let mut s = srv.connect();
    for i in 0..3 {
        write!(s, "GET /p{i}?q=1 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let r = read_response(&mut s);
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains(&format!("x-info: GET /p{i} q=1 0")), "{r}");
        assert!(r.contains("content-length: 0"), "{r}");
        assert!(r.contains("date: "), "{r}");
    }
}

#[test]
fn missing_or_duplicate_host_is_400() {
    let srv = TestServer::start(HttpSettings::default(), echo());
    let r = srv.roundtrip_close(b"GET / HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = srv.roundtrip_close(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
}

#[test]
fn h2c_upgrade_is_400_and_garbage_is_400() {
    let srv = TestServer::start(HttpSettings::default(), echo());
    let r = srv.roundtrip_close(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = srv.roundtrip_close(b"GET / HTTP/1.1\r\nHost a\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
}

#[test]
fn content_length_with_transfer_encoding_is_framed_by_chunks() {
    // The smuggling attempt: a length of 0 hiding a second request in the chunked body.
    let srv = TestServer::start(HttpSettings::default(), echo());
    let r = srv.roundtrip_close(
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n\
          23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
    );
    assert!(r.contains("x-info: POST /a  35"), "{r}");
    assert_eq!(r.matches("x-info:").count(), 1, "{r}"); // no second, smuggled request
    assert!(r.contains("connection: close"), "{r}");
}

#[test]
fn body_limits() {
    let settings = HttpSettings {
        max_body: 1000,
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, echo());
    let r = srv.roundtrip_close(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let mut chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'x'; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = srv.roundtrip_close(&chunked);
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
}

#[test]
fn head_too_large_is_431() {
    let srv = TestServer::start(HttpSettings::default(), echo());
    let big = "a".repeat(40 * 1024);
    let r = srv
        .roundtrip_close(format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes());
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
}

#[test]
fn chunked_and_large_bodies_arrive_whole() {
    let srv = TestServer::start(HttpSettings::default(), echo());
    let mut s = srv.connect();
    s.write_all(b"POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .expect("write");
    let r = read_response(&mut s);
    assert!(r.contains("x-info: POST /e  11"), "{r}");
    assert!(r.ends_with("hello world"), "{r}");
    // Over the in-memory limit: spilled to a file, read back intact.
    let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    write!(
        s,
        "PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("w");
    s.write_all(&body).expect("body");
    let r = read_response(&mut s);
    assert!(r.contains("x-info: PUT /big  200000"), "{}", &r[..200]);
    assert!(r.as_bytes().ends_with(&body[body.len() - 100..]));
}

#[test]
fn expect_100_continue_is_answered() {
    let srv = TestServer::start(HttpSettings::default(), echo());
    let mut s = srv.connect();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 25];
    s.read_exact(&mut buf).expect("100");
    assert!(buf.starts_with(b"HTTP/1.1 100 Continue\r\n"));
    s.write_all(b"abc").expect("body");
    let r = read_response(&mut s);
    assert!(r.ends_with("abc"), "{r}");
}

#[test]
fn head_has_no_body_and_http10_closes() {
    let srv = TestServer::start(HttpSettings::default(), echo());
    let r = srv.roundtrip_close(b"HEAD / HTTP/1.0\r\nHost: a\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"),
        "{r}"
    );
    assert!(r.ends_with("\r\n\r\n"), "{r}");
}

#[test]
fn streamed_bodies_are_chunked_and_arrive_as_produced() {
    let handler = Arc::new(|_req: Request, reply: Reply| {
        let (tx, body) = stream_channel();
        reply.send(Response {
            status: 200,
            headers: vec![],
            body,
        });
        std::thread::spawn(move || {
            tx.send_blocking(Bytes::from("first;"));
            std::thread::sleep(Duration::from_millis(300));
            tx.send_blocking(Bytes::from("second"));
        });
    });
    let srv = TestServer::start(HttpSettings::default(), handler);
    let mut s = srv.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .expect("w");
    let mut first = vec![0u8; 512];
    let n = s.read(&mut first).expect("read");
    let first = String::from_utf8_lossy(&first[..n]).into_owned();
    assert!(first.contains("transfer-encoding: chunked"), "{first}");
    let mut rest = String::new();
    s.read_to_string(&mut rest).expect("rest");
    let all = first + &rest;
    assert!(
        all.contains("first;") && all.contains("second") && all.ends_with("0\r\n\r\n"),
        "{all}"
    );
}

#[test]
fn dropped_reply_is_500_and_server_keeps_serving() {
    let handler = Arc::new(|req: Request, reply: Reply| {
        if req.path() == "/fail" {
            drop(reply);
        } else {
            reply.send(Response::new(200, vec![], Bytes::from("ok")));
        }
    });
    let srv = TestServer::start(HttpSettings::default(), handler);
    let r = srv.roundtrip_close(b"GET /fail HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 500"), "{r}");
    let r = srv.roundtrip_close(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(r.ends_with("ok"), "{r}");
}

#[test]
fn file_bodies_are_sent_from_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("f.txt");
    std::fs::write(&path, vec![b'z'; 150_000]).expect("write");
    let handler = Arc::new(move |_req: Request, reply: Reply| {
        let f = std::fs::File::open(&path).expect("open");
        reply.send(Response {
            status: 200,
            headers: vec![],
            body: Body::File(f, 150_000),
        });
    });
    let srv = TestServer::start(HttpSettings::default(), handler);
    let mut s = srv.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("w");
    let r = read_response(&mut s);
    assert!(r.contains("content-length: 150000"));
    assert!(r.ends_with(&"z".repeat(1000)));
}

#[test]
fn idle_keep_alive_connections_time_out() {
    let settings = HttpSettings {
        timeout: Duration::from_millis(300),
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, echo());
    let mut s = srv.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("w");
    read_response(&mut s);
    let mut rest = Vec::new();
    let started = std::time::Instant::now();
    let _ = s.read_to_end(&mut rest); // returns when the server closes
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn shutdown_finishes_in_flight_requests() {
    let handler = Arc::new(|_req: Request, reply: Reply| {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            reply.send(Response::new(200, vec![], Bytes::from("late")));
        });
    });
    let mut srv = TestServer::start(HttpSettings::default(), handler);
    let mut s = srv.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("w");
    std::thread::sleep(Duration::from_millis(100));
    srv.shutdown.trigger();
    let mut all = String::new();
    s.read_to_string(&mut all).expect("read");
    assert!(
        all.starts_with("HTTP/1.1 200") && all.ends_with("late"),
        "{all}"
    );
    let task = srv.task.take().expect("task");
    srv.runtime.block_on(task).expect("accept loop ended");
    assert!(std::net::TcpStream::connect(("127.0.0.1", srv.port)).is_err());
}

#[test]
fn at_shutdown_a_keep_alive_request_still_gets_its_answer_with_connection_close() {
    let srv = TestServer::start(HttpSettings::default(), echo());
    let mut s = srv.connect();
    s.write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
    srv.shutdown.trigger();
    // The client's next request races the shutdown: it is answered, not reset.
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let second = read_response(&mut s);
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(
        second.to_lowercase().contains("connection: close"),
        "{second}"
    );
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "then it closes");
}

#[test]
fn at_shutdown_a_connection_accepted_before_its_first_request_is_still_answered() {
    let srv = TestServer::start(HttpSettings::default(), echo());
    let mut s = srv.connect();
    std::thread::sleep(Duration::from_millis(50)); // accepted, nothing sent yet
    srv.shutdown.trigger();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let first = read_response(&mut s);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "then it closes");
}

#[test]
fn a_public_folder_is_served_before_the_app_and_nothing_escapes_it() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("page.html"), "<h1>static</h1>").unwrap();
    std::fs::write(outside.path().join("canary"), "CANARY").unwrap();
    std::os::unix::fs::symlink(outside.path().join("canary"), dir.path().join("leak")).unwrap();
    let settings = HttpSettings {
        public: Some(Arc::new(
            iodine_engine::public::Public::new(dir.path(), "max-age=60").unwrap(),
        )),
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, echo());
    let reply =
        srv.roundtrip_close(b"GET /page.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("cache-control: max-age=60"), "{reply}");
    assert!(reply.ends_with("<h1>static</h1>"), "{reply}");
    let head =
        srv.roundtrip_close(b"HEAD /page.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(head.contains("content-length: 15"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
    let canary = outside.path().join("canary");
    let escapes = [
        "/leak".to_string(),
        "/../canary".to_string(),
        "/%2e%2e/canary".to_string(),
        "/..%2fcanary".to_string(),
        format!("/%2e%2e%2f%2e%2e{}", canary.display()),
        "/page.html%00".to_string(),
    ];
    for path in escapes {
        let reply = srv.roundtrip_close(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(!reply.contains("CANARY"), "{path} escaped: {reply}");
    }
}

/// Reads one response on a keep-alive connection: (head, body bytes).
fn read_binary_response(s: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("head"), 1, "closed in the head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("body");
    (head, body)
}

#[test]
fn large_files_arrive_whole_and_exact_in_pieces_ranges_and_on_keep_alive() {
    // Several sendfile pieces (1 MiB each) plus a tail, with bytes that differ everywhere:
    // a placeholder sent as itself would show as zeros.
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 12_345u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1)
        .collect();
    std::fs::write(dir.path().join("big.bin"), &data).unwrap();
    std::fs::write(dir.path().join("small.txt"), "small").unwrap();
    let settings = HttpSettings {
        public: Some(Arc::new(
            iodine_engine::public::Public::new(dir.path(), "max-age=60").unwrap(),
        )),
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, echo());
    let mut s = srv.connect();
    // A whole file, then a range from inside the second piece, a suffix range, then a small
    // file: all on one connection (sent bodies leave nothing behind for the next answer).
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, body) = read_binary_response(&mut s);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body == data, "the whole file, byte for byte");
    let (a, b) = (1_500_000usize, 2_600_000usize);
    s.write_all(
        format!("GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes={a}-{b}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let (head, body) = read_binary_response(&mut s);
    assert!(head.starts_with("http/1.1 206"), "{head}");
    assert!(body == data[a..=b], "the range, byte for byte");
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=-100\r\n\r\n")
        .unwrap();
    let (_, body) = read_binary_response(&mut s);
    assert!(body == data[data.len() - 100..]);
    s.write_all(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, body) = read_binary_response(&mut s);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"small");
    // A client that reads slowly (a small receive window) still gets every byte.
    let slow = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    slow.set_recv_buffer_size(4096).unwrap();
    slow.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], srv.port)).into())
        .unwrap();
    let mut slow: std::net::TcpStream = slow.into();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        slow.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let mut got = Vec::with_capacity(data.len());
    let mut chunk = [0u8; 1000];
    while got.len() < data.len() {
        let n = slow.read(&mut chunk).unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
        if got.len() < 200_000 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    assert!(got == data, "the slow client's copy, byte for byte");
}

#[test]
fn a_client_that_leaves_in_the_middle_of_a_large_file_costs_nothing_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), vec![7u8; 8 * 1024 * 1024]).unwrap();
    let settings = HttpSettings {
        public: Some(Arc::new(
            iodine_engine::public::Public::new(dir.path(), "max-age=60").unwrap(),
        )),
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, echo());
    for _ in 0..20 {
        let mut s = srv.connect();
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut some = [0u8; 4096];
        let _ = s.read(&mut some).unwrap();
        drop(s); // reset with most of the file unsent
    }
    let mut s = srv.connect();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, body) = read_binary_response(&mut s);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body.len(), 8 * 1024 * 1024);
    assert!(body.iter().all(|&b| b == 7));
}

#[test]
fn a_quiet_keep_alive_connection_parks_and_its_next_requests_are_served() {
    let settings = HttpSettings {
        timeout: Duration::from_secs(4),
        ..HttpSettings::default()
    };
    let srv = TestServer::start(settings, echo());
    let mut s = srv.connect();
    s.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut s).contains("x-info: GET /first"));
    // Past PARK_AFTER (1 s) the connection let hyper go; the next request, sent in two
    // pieces with a body, starts a new one, and so does the one after the next park.
    std::thread::sleep(Duration::from_millis(1500));
    s.write_all(b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"llo").unwrap();
    let r = read_response(&mut s);
    assert!(
        r.contains("x-info: POST /second  5") && r.ends_with("hello"),
        "{r}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    // Two pipelined requests at once: both answered, in order.
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut s).contains("x-info: GET /a"));
    assert!(read_response(&mut s).contains("x-info: GET /b"));
    // A parked connection still ends at the keep-alive timeout (4 s after its last request).
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(
        waited > Duration::from_secs(3) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
}

#[test]
fn parked_connections_that_their_clients_close_or_reset_end() {
    let srv = TestServer::start(HttpSettings::default(), echo());
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut s = srv.connect();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        read_response(&mut s);
        clients.push(s);
    }
    assert_eq!(srv.shutdown.live(), 20);
    std::thread::sleep(Duration::from_millis(800)); // all parked (PARK_AFTER is 250 ms)
    for (i, s) in clients.into_iter().enumerate() {
        if i % 2 == 1 {
            // SO_LINGER 0: the close is an RST.
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(s);
    }
    let mut live = srv.shutdown.live();
    for _ in 0..100 {
        if live == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        live = srv.shutdown.live();
    }
    assert_eq!(
        live, 0,
        "parked connections left open after their clients left"
    );
    let mut s = srv.connect();
    s.write_all(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut s).contains("x-info: GET /after"));
}
