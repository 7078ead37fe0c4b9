//! WebSocket client connections: opening one, the payload, and reading data messages.

use futures_util::{FutureExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{client_async_with_config, WebSocketStream};

use crate::setup::within;
use crate::target::Target;

/// A client connection over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// Opens a TCP connection to `target` (Nagle off) and does the handshake, within
/// `SETUP_TIMEOUT`. tungstenite zero-fills its whole read buffer before every read, so
/// `read_buffer` should be near what one read brings (see `read_buffer`), not its 128 KiB default.
pub async fn connect(target: &Target, read_buffer: usize) -> Result<Ws, String> {
    connect_as(target, &target.url, None, read_buffer).await
}

/// [`connect`] to `url` on `target`'s address, offering `subprotocol` when given.
pub async fn connect_as(
    target: &Target,
    url: &str,
    subprotocol: Option<&'static str>,
    read_buffer: usize,
) -> Result<Ws, String> {
    within(url, async {
        let tcp = TcpStream::connect(&target.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", target.addr))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        if let Some(protocol) = subprotocol {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
        }
        let config = WebSocketConfig::default().read_buffer_size(read_buffer);
        let (ws, _response) = client_async_with_config(request, tcp, Some(config))
            .await
            .map_err(|e| format!("handshake with {url}: {e}"))?;
        Ok(ws)
    })
    .await
}

/// A read buffer for connections that receive up to `queued` messages of `size` bytes at once.
pub fn read_buffer(size: usize, queued: usize) -> usize {
    // 14 bytes: the largest frame header.
    (size + 14).saturating_mul(queued).clamp(4096, 128 * 1024)
}

/// A text message of `size` ASCII bytes (letters, so it is valid UTF-8 and has no newline).
pub fn text(size: usize) -> Message {
    let body: String = (b'a'..=b'z').cycle().take(size).map(char::from).collect();
    Message::text(body)
}

/// Waits for the next text or binary message; control frames are skipped (tungstenite answers
/// pings itself). A close, the end of the stream or an error is an `Err`.
pub async fn next_data(ws: &mut Ws) -> Result<Message, String> {
    loop {
        if let Some(message) = data(ws.next().await)? {
            return Ok(message);
        }
    }
}

/// Counts the data messages that can be read without waiting (already buffered or already in
/// the socket), so a burst of them costs one wake-up; `each` sees every one.
pub fn drain_ready(ws: &mut Ws, mut each: impl FnMut(&Message)) -> Result<u64, String> {
    let mut count = 0;
    while let Some(item) = ws.next().now_or_never() {
        if let Some(message) = data(item)? {
            each(&message);
            count += 1;
        }
    }
    Ok(count)
}

/// The bytes of a data message (empty for a control frame).
pub fn payload(message: &Message) -> &[u8] {
    match message {
        Message::Text(text) => text.as_bytes(),
        Message::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// Sorts one item read from a connection: `Some` for a data message, `None` for a control
/// frame, `Err` when the connection closed or failed.
pub fn data(item: Option<Result<Message, WsError>>) -> Result<Option<Message>, String> {
    match item {
        Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => Ok(Some(message)),
        Some(Ok(Message::Close(frame))) => Err(format!("closed by the server ({frame:?})")),
        Some(Ok(_)) => Ok(None),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("connection ended".to_owned()),
    }
}
