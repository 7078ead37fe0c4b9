//! WebSocket helpers: an echo server that records its events, the handshake, and frames
//! written and read by hand.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iodine_engine::http::{Body, HttpSettings, Reply, Request, Response};
use iodine_engine::link::{Events, Kind, Link, Outgoing, Protocol, Upgrade};
use parking_lot::Mutex;

use super::TestServer;

/// Echoes every message and records the events it saw.
pub struct Echo {
    pub link: Arc<Link>,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl Events for Echo {
    fn on_open(&self) {
        self.seen.lock().push("open".into());
    }
    fn on_message(&self, data: Bytes, kind: Kind) {
        self.seen.lock().push(format!("message {}", data.len()));
        let out = if kind.is_text() {
            Outgoing::Text(data)
        } else {
            Outgoing::Binary(data)
        };
        let _ = self.link.write(out);
    }
    fn on_drained(&self) {}
    fn on_shutdown(&self) {
        self.seen.lock().push("shutdown".into());
        let _ = self.link.write(Outgoing::Text(Bytes::from("bye")));
        self.link.close(Some(1001));
    }
    fn on_close(&self) {
        self.seen.lock().push("close".into());
    }
}

pub fn server(protocol: Protocol, settings: HttpSettings) -> (TestServer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let handler = move |_req: Request, reply: Reply| {
        let link = Link::new(protocol);
        if protocol == Protocol::Sse {
            let _ = link.write(Outgoing::Raw(Bytes::from("data: hello\r\n\r\n")));
        }
        let events = Arc::new(Echo {
            link: link.clone(),
            seen: log.clone(),
        });
        let headers = vec![(Bytes::from("set-cookie"), Bytes::from("a=b"))];
        reply.send(Response {
            status: 200,
            headers,
            body: Body::Upgrade(Upgrade::new(link, events)),
        });
    };
    (TestServer::start(settings, Arc::new(handler)), seen)
}

pub const HANDSHAKE: &str =
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

pub fn open(server: &TestServer) -> (TcpStream, String) {
    let mut s = server.connect();
    s.write_all(HANDSHAKE.as_bytes()).unwrap();
    let head = super::read_response(&mut s);
    (s, head)
}

/// A client frame: FIN set, masked unless `unmasked`.
pub fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [1u8, 2, 3, 4];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads one server frame: (opcode, payload).
pub fn read_frame(s: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    read_frame_head(s).map(|(first, _, payload)| (first & 0x0f, payload))
}

pub fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

pub fn wait_for(seen: &Mutex<Vec<String>>, what: &str) -> Vec<String> {
    for _ in 0..200 {
        if seen.lock().iter().any(|e| e == what) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    seen.lock().clone()
}

/// How a hand-made frame writes its payload length.
#[derive(Clone, Copy, Debug)]
pub enum Len {
    /// The minimal form.
    Minimal,
    /// The 16-bit form, whatever the length.
    Wide16,
    /// The 64-bit form, whatever the length.
    Wide64,
}

/// A frame as a client could write it: `first` is its first byte (FIN, RSV bits, opcode),
/// `mask` its masking key (None: unmasked), `len` the length form.
pub fn frame_with(first: u8, payload: &[u8], mask: Option<[u8; 4]>, len: Len) -> Vec<u8> {
    let mut out = vec![first];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match (len, payload.len()) {
        (Len::Minimal, n) if n < 126 => out.push(bit | n as u8),
        (Len::Minimal | Len::Wide16, n) if n < 65536 => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        (_, n) => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame without FIN (a fragment that more follow).
pub fn fragment(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(opcode, payload, Some([5, 6, 7, 8]), Len::Minimal)
}

/// One server frame with its head as sent: (first byte, the 7-bit length field, payload).
pub fn read_frame_head(s: &mut impl Read) -> Option<(u8, u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    Some((h[0], h[1] & 0x7f, payload))
}

/// Reads until the server closes the connection; true when it did (nothing more came).
pub fn closed_after(s: &mut impl Read) -> bool {
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).is_ok() && rest.is_empty()
}
