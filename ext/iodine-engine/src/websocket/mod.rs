//! WebSocket (RFC 6455) on tokio-tungstenite: the handshake check, the 101 head, and the
//! session that carries a [`Link`](crate::link::Link)'s messages both ways.
//!
//! The policy the C gem got wrong is fixed here: a peer's Close is answered with a Close
//! echoing its code; unmasked client frames and RSV bits close with 1002, invalid UTF-8 in a
//! text message with 1007, a message over `max_msg` with 1009; a ping gets a pong with the
//! same payload; shutdown sends 1001 after the application's `on_shutdown`.

mod session;

use bytes::{BufMut, BytesMut};
use http::HeaderMap;

pub use session::{config, open, session, Session};

/// Why a WebSocket handshake was refused (the client gets a 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// `Sec-WebSocket-Version` is missing or not 13.
    Version,
    /// `Sec-WebSocket-Key` is missing or is not 16 bytes in base64.
    Key,
}

/// Whether a request asks for a WebSocket (`Upgrade: websocket`, any case).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::UPGRADE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Checks a WebSocket upgrade request; returns the `Sec-WebSocket-Accept` value.
pub fn accept_key(headers: &HeaderMap) -> Result<String, HandshakeError> {
    let version = headers.get("sec-websocket-version").map(|v| v.as_bytes());
    if version != Some(b"13") {
        return Err(HandshakeError::Version);
    }
    let key = headers
        .get("sec-websocket-key")
        .map(|v| v.as_bytes())
        .ok_or(HandshakeError::Key)?;
    // 16 random bytes in base64: 24 characters ending in "==".
    if key.len() != 24 || !key.ends_with(b"==") {
        return Err(HandshakeError::Key);
    }
    Ok(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key))
}

/// The 101 response head, with the application's headers (validated; framing and
/// handshake headers of its own are dropped: the server owns those).
pub fn response_head(accept: &str, app_headers: &[(bytes::Bytes, bytes::Bytes)]) -> BytesMut {
    let mut head = BytesMut::with_capacity(160);
    head.put_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n",
    );
    head.put_slice(b"sec-websocket-accept: ");
    head.put_slice(accept.as_bytes());
    head.put_slice(b"\r\n");
    crate::http::put_app_headers(
        &mut head,
        app_headers,
        &["connection", "upgrade", "sec-websocket-accept"],
    );
    head.put_slice(b"\r\n");
    head
}

/// Settings of a listener's WebSocket connections.
#[derive(Clone, Copy, Debug)]
pub struct WsSettings {
    /// Largest incoming message (and frame) in bytes; larger closes with 1009.
    pub max_msg: usize,
    /// Ping interval when the connection is quiet (a peer silent for two intervals is dead).
    pub ping: std::time::Duration,
    /// How long `on_shutdown` gets before the server sends Close 1001 itself.
    pub shutdown_grace: std::time::Duration,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            max_msg: 256 * 1024,
            ping: std::time::Duration::from_secs(40),
            shutdown_grace: std::time::Duration::from_secs(8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_rfc_example_key_gives_the_rfc_accept_value() {
        let h = headers(&[
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(accept_key(&h).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_wrong_version_or_a_missing_key_is_refused() {
        let h = headers(&[
            ("sec-websocket-version", "8"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(accept_key(&h), Err(HandshakeError::Version));
        let h = headers(&[("sec-websocket-version", "13")]);
        assert_eq!(accept_key(&h), Err(HandshakeError::Key));
        let h = headers(&[
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "short"),
        ]);
        assert_eq!(accept_key(&h), Err(HandshakeError::Key));
    }

    #[test]
    fn the_head_carries_app_headers_but_not_its_framing() {
        let app = vec![
            (bytes::Bytes::from("Set-Cookie"), bytes::Bytes::from("a=b")),
            (
                bytes::Bytes::from("content-length"),
                bytes::Bytes::from("5"),
            ),
            (bytes::Bytes::from("x-bad"), bytes::Bytes::from("a\r\nb: c")),
        ];
        let head = response_head("KEY", &app);
        let text = std::str::from_utf8(&head).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("sec-websocket-accept: KEY\r\n"));
        assert!(text.contains("set-cookie: a=b\r\n"));
        assert!(!text.contains("content-length"));
        assert!(!text.contains("\r\nb: c"), "no injected line");
        assert!(text.ends_with("\r\n\r\n"));
    }
}
