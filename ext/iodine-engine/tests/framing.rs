//! The server owns response framing: what an app says about Transfer-Encoding and
//! Content-Length is checked against the body, and a body that ends badly is cut after the
//! bytes it produced (the head included), never sent as if complete.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iodine_engine::http::{stream_channel, Handler, HttpSettings, Reply, Request, Response};
use support::TestServer;

fn h(name: &str, value: &str) -> (Bytes, Bytes) {
    (
        Bytes::copy_from_slice(name.as_bytes()),
        Bytes::copy_from_slice(value.as_bytes()),
    )
}

/// Streams `chunks` with the app headers `headers`, from a plain thread (like a Ruby worker).
fn streaming(
    headers: Vec<(Bytes, Bytes)>,
    chunks: Vec<&'static str>,
    abort: bool,
) -> Arc<dyn Handler> {
    Arc::new(move |_req: Request, reply: Reply| {
        let (tx, body) = stream_channel();
        reply.send(Response {
            status: 200,
            headers: headers.clone(),
            body,
        });
        let chunks = chunks.clone();
        std::thread::spawn(move || {
            for c in chunks {
                if !tx.send_blocking(Bytes::from_static(c.as_bytes())) {
                    return;
                }
            }
            if abort {
                tx.abort("test");
            }
        });
    })
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

#[test]
fn an_apps_transfer_encoding_is_dropped_and_the_body_framed_by_length() {
    let srv = TestServer::start(
        HttpSettings::default(),
        Arc::new(|_r: Request, reply: Reply| {
            reply.send(Response::new(
                200,
                vec![h("Transfer-Encoding", "chunked")],
                Bytes::from("hello"),
            ));
        }),
    );
    let r = srv.roundtrip_close(GET);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(!r.to_lowercase().contains("transfer-encoding"), "{r}");
    assert!(r.contains("content-length: 5\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\nhello"), "{r}");
}

#[test]
fn invalid_or_conflicting_lengths_on_a_stream_fall_back_to_chunked() {
    for bad in ["abc", "5\n6", "5, 6", "-1"] {
        let srv = TestServer::start(
            HttpSettings::default(),
            streaming(vec![h("Content-Length", bad)], vec!["hel", "lo"], false),
        );
        let r = srv.roundtrip_close(GET);
        assert!(r.starts_with("HTTP/1.1 200"), "{bad:?}: {r}");
        assert!(!r.contains("content-length"), "{bad:?}: {r}");
        assert!(r.contains("transfer-encoding: chunked"), "{bad:?}: {r}");
        assert!(
            r.ends_with("3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"),
            "{bad:?}: {r}"
        );
    }
}

#[test]
fn a_valid_length_on_a_stream_is_kept_and_held_to() {
    let srv = TestServer::start(
        HttpSettings::default(),
        streaming(
            vec![h("Content-Length", "5")],
            vec!["hel", "lo", "extra"],
            false,
        ),
    );
    let r = srv.roundtrip_close(GET);
    assert!(r.contains("content-length: 5\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\nhello"), "{r}");
}

#[test]
fn a_stream_shorter_than_its_length_sends_the_head_and_bytes_then_closes() {
    let srv = TestServer::start(
        HttpSettings::default(),
        streaming(vec![h("Content-Length", "100")], vec!["short"], false),
    );
    let r = srv.roundtrip_close(GET);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("content-length: 100\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\nshort"), "{r}");
}

#[test]
fn an_aborted_stream_is_cut_not_finished() {
    let srv = TestServer::start(
        HttpSettings::default(),
        streaming(vec![], vec!["partial"], true),
    );
    let r = srv.roundtrip_close(GET);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("7\r\npartial\r\n"), "{r}");
    assert!(
        !r.ends_with("0\r\n\r\n"),
        "an aborted body must not look complete: {r}"
    );
}

#[test]
fn a_long_stream_is_not_cut_as_idle() {
    // Ticks slower than the timeout: waiting for the app is never a stalled client.
    let settings = HttpSettings {
        timeout: Duration::from_millis(80),
        shutdown_grace: Duration::from_millis(80),
        ..HttpSettings::default()
    };
    let srv = TestServer::start(
        settings,
        Arc::new(|_r: Request, reply: Reply| {
            let (tx, body) = stream_channel();
            reply.send(Response {
                status: 200,
                headers: vec![],
                body,
            });
            std::thread::spawn(move || {
                for _ in 0..12 {
                    std::thread::sleep(Duration::from_millis(100));
                    if !tx.send_blocking(Bytes::from_static(b"tick")) {
                        return;
                    }
                }
            });
        }),
    );
    // 1.2 s of ticks against a 0.3 s keep-alive timeout and 0.3 s grace.
    let r = srv.roundtrip_close(GET);
    assert_eq!(r.matches("tick").count(), 12, "{r}");
    assert!(r.ends_with("0\r\n\r\n"), "{r}");
}
