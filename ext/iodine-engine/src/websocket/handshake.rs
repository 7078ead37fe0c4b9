//! The opening handshake (RFC 6455 §4), both ends: the server's check of an upgrade request
//! and its 101 head; the client's request and its check of the server's answer.
//!
//! The client side is ours rather than tungstenite's so that what the server sends right
//! after its 101 (often in the same segment: a greeting from `on_open`) is handed back to be
//! decoded first, not lost in a buffer we can't reach. tungstenite is kept for the key
//! helpers.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};

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
    Ok(derive_accept_key(key))
}

/// The 101 response head, with the application's headers (validated; framing and
/// handshake headers of its own are dropped: the server owns those).
pub fn response_head(accept: &str, app_headers: &[(Bytes, Bytes)]) -> BytesMut {
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

/// The most a server's answer to our handshake may take, up to its blank line.
const MAX_ANSWER: usize = 16 * 1024;

/// The headers a client's handshake writes itself (the application's copies are dropped).
const OWN_HEADERS: [&str; 5] = [
    "host",
    "connection",
    "upgrade",
    "sec-websocket-version",
    "sec-websocket-key",
];

/// Sends a client's opening handshake on `io` (`host` for the Host header, `path` the request
/// target, `headers` the application's) and checks the server's answer. Returns the bytes
/// read past the answer: the server's first frames, to be decoded before anything else.
pub async fn client_handshake<S>(
    io: &mut S,
    host: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<Bytes, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = generate_key();
    let request = client_request(host, path, headers, &key)?;
    crate::server::write_through(io, &request)
        .await
        .map_err(|e| format!("sending the handshake: {e}"))?;
    let mut answer = BytesMut::with_capacity(1024);
    let end = loop {
        if let Some(end) = head_end(&answer) {
            break end;
        }
        if answer.len() >= MAX_ANSWER {
            return Err("the server's answer is too long".into());
        }
        answer.reserve(1024);
        match io.read_buf(&mut answer).await {
            Ok(0) => return Err("the server closed the connection during the handshake".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading the server's answer: {e}")),
        }
    };
    let head = answer.split_to(end);
    check_answer(&head, &derive_accept_key(key.as_bytes()), headers)?;
    Ok(answer.freeze())
}

/// The request of a client's handshake.
fn client_request(
    host: &str,
    path: &str,
    headers: &[(String, String)],
    key: &str,
) -> Result<Vec<u8>, String> {
    let visible = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    let path = if path.is_empty() { "/" } else { path };
    if !visible(path) || !path.starts_with('/') {
        return Err(format!("invalid request target: {path:?}"));
    }
    if !visible(host) {
        return Err(format!("invalid host: {host:?}"));
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n").as_bytes());
    out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: websocket\r\n");
    out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_bytes(value.as_bytes()).is_err()
        {
            return Err(format!("invalid header: {name:?}"));
        }
        if OWN_HEADERS.iter().any(|own| own.eq_ignore_ascii_case(name)) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// Where the head ends (after its blank line), once it is all there.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Checks the server's answer (RFC 6455 §4.1): a 101 that upgrades to websocket with the
/// accept value of our key, no extension (we asked for none), and a subprotocol only among
/// those the application asked for.
fn check_answer(head: &[u8], accept: &str, asked: &[(String, String)]) -> Result<(), String> {
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status = lines.next().unwrap_or_default();
    let code = match status {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', _, b' ', code @ ..] => code.get(..3),
        _ => None,
    };
    match code {
        Some(b"101") => {}
        Some(code) => {
            return Err(format!(
                "the server answered {}",
                String::from_utf8_lossy(code)
            ))
        }
        None => return Err("the server's answer is not HTTP/1.x".into()),
    }
    let (mut upgrade, mut connection, mut accepted) = (false, false, false);
    let mut protocol = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return Err("a malformed header in the server's answer".into());
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade |= value.eq_ignore_ascii_case(b"websocket");
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection |= value
                .split(|b| *b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-accept") {
            accepted = value == accept.as_bytes();
        } else if name.eq_ignore_ascii_case(b"sec-websocket-extensions") && !value.is_empty() {
            return Err("the server chose an extension we did not offer".into());
        } else if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
            protocol = Some(value);
        }
    }
    if !upgrade || !connection {
        return Err("the server's answer does not upgrade to websocket".into());
    }
    if !accepted {
        return Err("the server's Sec-WebSocket-Accept does not match our key".into());
    }
    let offered: Vec<&str> = asked
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .flat_map(|(_, value)| value.split(',').map(str::trim))
        .collect();
    match protocol {
        None if !offered.is_empty() => Err("the server chose none of our subprotocols".into()),
        Some(chosen) if !offered.iter().any(|p| p.as_bytes() == chosen) => {
            Err("the server chose a subprotocol we did not offer".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

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
            (Bytes::from("Set-Cookie"), Bytes::from("a=b")),
            (Bytes::from("content-length"), Bytes::from("5")),
            (Bytes::from("x-bad"), Bytes::from("a\r\nb: c")),
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

    #[test]
    fn a_client_request_carries_the_handshake_and_the_apps_headers() {
        let app = vec![
            ("Cookie".to_string(), "a=b".to_string()),
            ("Host".to_string(), "evil".to_string()),
        ];
        let request = client_request("example.com:80", "/chat?x=1", &app, "KEY==").unwrap();
        let text = String::from_utf8(request).unwrap();
        assert!(text.starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: example.com:80\r\n"));
        assert!(text.contains("Upgrade: websocket\r\n"));
        assert!(text.contains("Sec-WebSocket-Key: KEY==\r\n"));
        assert!(text.contains("Cookie: a=b\r\n"));
        assert!(!text.contains("evil"), "our Host, once");
        assert!(text.ends_with("\r\n\r\n"));
        let injected = vec![("X".to_string(), "a\r\nb: c".to_string())];
        assert!(client_request("h", "/", &injected, "K").is_err());
        assert!(client_request("h", "/a b", &[], "K").is_err());
        assert!(client_request("h", "chat", &[], "K").is_err());
        let root = client_request("h", "", &[], "K").unwrap();
        assert!(root.starts_with(b"GET / HTTP/1.1\r\n"));
    }

    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn answer(extra: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn the_servers_answer_is_checked() {
        assert_eq!(check_answer(&answer(""), ACCEPT, &[]), Ok(()));
        assert!(check_answer(&answer(""), "other", &[]).is_err());
        let not_found = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            check_answer(not_found, ACCEPT, &[]),
            Err("the server answered 404".into())
        );
        let no_upgrade = format!("HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
        assert!(check_answer(no_upgrade.as_bytes(), ACCEPT, &[]).is_err());
        let deflate = answer("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        assert!(check_answer(&deflate, ACCEPT, &[]).is_err());
        let chat = answer("Sec-WebSocket-Protocol: chat\r\n");
        assert!(check_answer(&chat, ACCEPT, &[]).is_err(), "not offered");
        let offered = vec![(
            "Sec-WebSocket-Protocol".to_string(),
            "superchat, chat".to_string(),
        )];
        assert_eq!(check_answer(&chat, ACCEPT, &offered), Ok(()));
        assert!(check_answer(&answer(""), ACCEPT, &offered).is_err());
    }

    #[tokio::test]
    async fn bytes_after_the_answer_are_handed_back() {
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while head_end(&request).is_none() {
                theirs.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            let text = String::from_utf8(request).unwrap();
            let key = text
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .to_string();
            let mut reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            )
            .into_bytes();
            reply.extend_from_slice(b"\x81\x02hi"); // a first frame, in the same write
            theirs.write_all(&reply).await.unwrap();
            theirs
        });
        let rest = client_handshake(&mut ours, "x", "/", &[]).await.unwrap();
        assert_eq!(&rest[..], b"\x81\x02hi");
        drop(server.await.unwrap());
    }
}
