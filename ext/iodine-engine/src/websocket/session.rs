//! One WebSocket connection after the handshake: incoming messages become
//! [`Events::on_message`], the [`Link`]'s queue is written in batches (every queued frame fed,
//! then one flush), quiet peers are pinged and dead ones dropped.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::WsSettings;
use crate::link::{Closing, Events, Link, Outgoing};
use crate::server::Shutdown;

/// tungstenite's read buffer: allocated up front for every connection, idle or not, and also
/// the most one of its reads takes. Kept small: the socket under it ([`Resumed`]) reads up to
/// 16 KiB per system call and hands tungstenite the rest from memory. (Measured before that
/// wrapper, idle MiB per 1,000 / 4 KiB echo msg/s: 256 B gave 6.2 / 62k, 1 KiB 6.9 / 81k.)
///
/// [`Resumed`]: crate::http::Resumed
const READ_BUFFER: usize = 256;

/// Feed this much before tungstenite writes to the socket on its own (we flush per batch).
const WRITE_BUFFER: usize = 64 * 1024;

/// Unanswered pings (one per quiet interval) after which a peer is taken for dead.
const DEAD_AFTER: u32 = 2;

/// How long a closing handshake may take before the socket is just dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Speaks WebSocket on `io` (the 101 already sent) until either side closes, then calls
/// `on_close`. `on_open` and the first `on_drained` come first.
pub async fn run<S>(
    io: S,
    link: Arc<Link>,
    events: Arc<dyn Events>,
    settings: WsSettings,
    shutdown: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(settings.max_msg))
        .max_frame_size(Some(settings.max_msg));
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    events.on_open();
    events.on_drained();
    let hard_stop = async {
        shutdown.triggered().await;
        tokio::time::sleep(settings.shutdown_grace + CLOSE_WAIT).await;
    };
    tokio::select! {
        _ = converse(&mut ws, &link, &*events, settings, &shutdown) => {}
        _ = hard_stop => {}
        _ = link.aborted() => {}
    }
    link.mark_closed();
    events.on_close();
}

/// The connection's loop; returns when it is over.
async fn converse<S>(
    ws: &mut WebSocketStream<S>,
    link: &Link,
    events: &dyn Events,
    settings: WsSettings,
    shutdown: &Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut batch: Vec<Outgoing> = Vec::new();
    // Activity is counted, not timed: re-arming a timer per message would cost more.
    let mut activity: u64 = 0;
    let mut seen_at_ping: u64 = 0;
    // Pings sent with no sign of life since; the peer is dead after `DEAD_AFTER` of them.
    let mut unanswered: u32 = 0;
    let ping = tokio::time::sleep(link.interval(settings.ping));
    tokio::pin!(ping);
    let mut shutting_down = false;
    let grace = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(grace);
    // Made once, not per turn of the loop: each turn would subscribe anew.
    let woken = link.woken();
    tokio::pin!(woken);
    let stopping = shutdown.triggered();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            incoming = ws.next() => {
                activity += 1;
                match incoming {
                    Some(Ok(Message::Text(text))) => events.on_message(Bytes::from(text), true),
                    Some(Ok(Message::Binary(data))) => events.on_message(data, false),
                    Some(Ok(Message::Ping(_))) => {
                        // tungstenite queued the pong; send it now.
                        if ws.flush().await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite queued the reply echoing the peer's code; the next read
                        // flushes it and ends the stream.
                        // Boxed, as the other closing paths: rare, and inline they would enlarge
                        // every connection's task.
                        let _ = Box::pin(tokio::time::timeout(CLOSE_WAIT, ws.flush())).await;
                    }
                    Some(Ok(Message::Frame(_))) => {}
                    Some(Err(e)) => {
                        if let Some(code) = close_code(&e) {
                            crate::debug!("closing a WebSocket ({code}): {e}");
                            let frame = CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::default() };
                            let _ = Box::pin(tokio::time::timeout(CLOSE_WAIT, ws.close(Some(frame)))).await;
                        }
                        return;
                    }
                    None => return,
                }
            }
            _ = &mut woken => {
                woken.set(link.woken());
                let closing = link.take(&mut batch);
                if closing == Closing::Abort {
                    return;
                }
                if !batch.is_empty() {
                    for message in batch.iter() {
                        if ws.feed(frame(message)).await.is_err() {
                            return;
                        }
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                    link.flushed(&batch);
                    batch.clear();
                    events.on_drained();
                }
                if let Closing::Graceful(code) = closing {
                    let frame = code.map(|c| CloseFrame { code: CloseCode::from(c), reason: Utf8Bytes::default() });
                    let _ = Box::pin(tokio::time::timeout(CLOSE_WAIT, close_politely(ws, frame))).await;
                    return;
                }
                // The timeout may have changed.
                ping.as_mut().reset(tokio::time::Instant::now() + link.interval(settings.ping));
            }
            _ = &mut ping => {
                if activity == seen_at_ping {
                    if unanswered >= DEAD_AFTER {
                        crate::debug!("closing a WebSocket peer that stopped answering pings");
                        return;
                    }
                    unanswered += 1;
                    if ws.send(Message::Ping(Bytes::new())).await.is_err() {
                        return;
                    }
                } else {
                    unanswered = 0;
                }
                seen_at_ping = activity;
                ping.as_mut().reset(tokio::time::Instant::now() + link.interval(settings.ping));
            }
            _ = &mut stopping, if !shutting_down => {
                shutting_down = true;
                // The application's on_shutdown runs, then it (or the grace timer) closes.
                events.on_shutdown();
                grace.as_mut().reset(tokio::time::Instant::now() + settings.shutdown_grace);
            }
            _ = &mut grace, if shutting_down => {
                link.close(Some(1001));
            }
        }
    }
}

/// Sends our Close and waits (briefly) for the peer's answer.
async fn close_politely<S>(ws: &mut WebSocketStream<S>, frame: Option<CloseFrame>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if ws.close(frame).await.is_err() {
        return;
    }
    while let Some(Ok(_)) = ws.next().await {}
}

/// The Close code for a protocol violation; None when the connection is just gone.
fn close_code(e: &WsError) -> Option<u16> {
    match e {
        WsError::Utf8(_) => Some(1007),
        // A message or frame over `max_msg`.
        WsError::Capacity(_) => Some(1009),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some(1002),
        _ => None,
    }
}

/// A queued message as a frame. Text that is not valid UTF-8 can't be a text frame: it goes
/// out as binary rather than break the protocol.
fn frame(message: &Outgoing) -> Message {
    match message {
        Outgoing::Text(bytes) => match Utf8Bytes::try_from(bytes.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(bytes.clone()),
        },
        Outgoing::Binary(bytes) | Outgoing::Raw(bytes) => Message::Binary(bytes.clone()),
    }
}
