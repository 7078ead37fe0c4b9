//! Shared helpers: start the engine on 127.0.0.1:0 with a Rust handler, talk raw bytes to it.
//! (Each test file uses a different part of it.)
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use iodine_engine::http::{serve, Handler, HttpSettings};
use iodine_engine::server::{bind, Address, Shutdown};

pub mod ws;

/// A running test server.
pub struct TestServer {
    pub port: u16,
    pub shutdown: Shutdown,
    pub runtime: tokio::runtime::Runtime,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(settings: HttpSettings, handler: Arc<dyn Handler>) -> TestServer {
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
        let s2 = shutdown.clone();
        let task = runtime.spawn(async move {
            let listener = bound.into_async().expect("async listener");
            serve(listener, settings, handler, s2).await;
        });
        TestServer {
            port,
            shutdown,
            runtime,
            task: Some(task),
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    /// Sends raw bytes on a new connection and reads until the server closes it.
    pub fn roundtrip_close(&self, raw: &[u8]) -> String {
        let mut s = self.connect();
        s.write_all(raw).expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Reads one response (head + Content-Length body) from a keep-alive connection.
pub fn read_response(s: &mut impl Read) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return String::from_utf8_lossy(&buf).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("body");
    buf.extend_from_slice(&body);
    String::from_utf8_lossy(&buf).into_owned()
}
