//! One event stream after its head: the [`Link`]'s events are written in batches (one write
//! per wake-up), an idle stream gets `: ping` comments, and the stream ends when the client
//! closes its side, the application closes, or the server shuts down.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::PING;
use crate::link::{Closing, Events, Link, Outgoing};
use crate::server::{write_through, Shutdown};

/// Streams events on `io` (the head already sent) until it ends, then calls `on_close`.
/// `ping` is the keep-alive interval when the link has no timeout of its own; `grace` is
/// what `on_shutdown` gets before the stream is closed.
pub async fn run<S>(
    io: S,
    link: Arc<Link>,
    events: Arc<dyn Events>,
    ping: Duration,
    grace: Duration,
    shutdown: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _open = crate::stats::Open::new(link.kind());
    events.on_open();
    events.on_drained();
    let hard_stop = async {
        shutdown.triggered().await;
        tokio::time::sleep(grace + Duration::from_secs(1)).await;
    };
    tokio::select! {
        _ = stream(io, &link, &*events, ping, grace, &shutdown) => {}
        _ = hard_stop => {}
        _ = link.aborted() => {}
    }
    link.mark_closed();
    events.on_close();
}

async fn stream<S>(
    io: S,
    link: &Link,
    events: &dyn Events,
    ping: Duration,
    grace: Duration,
    shutdown: &Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut batch = Vec::new();
    let mut out = BytesMut::new();
    let mut scratch = [0u8; 256];
    let keep_alive = tokio::time::sleep(link.interval(ping));
    tokio::pin!(keep_alive);
    let mut shutting_down = false;
    let grace_timer = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(grace_timer);
    let stopping = shutdown.triggered();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            read = reader.read(&mut scratch) => {
                // A client has nothing to say on an event stream: anything but more bytes
                // (the end, an error) means it left.
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
            }
            _ = link.woken() => {
                let closing = link.take(&mut batch);
                if closing == Closing::Abort {
                    return;
                }
                if !batch.is_empty() {
                    for message in &batch {
                        let (Outgoing::Raw(b) | Outgoing::Text(b) | Outgoing::Binary(b)) = message;
                        out.extend_from_slice(b);
                    }
                    if write_through(&mut writer, &out).await.is_err() {
                        return;
                    }
                    out.clear();
                    link.flushed(&batch);
                    batch.clear();
                    events.on_drained();
                }
                if matches!(closing, Closing::Graceful(_)) {
                    let _ = writer.shutdown().await;
                    return;
                }
                keep_alive.as_mut().reset(tokio::time::Instant::now() + link.interval(ping));
            }
            _ = &mut keep_alive => {
                if write_through(&mut writer, PING).await.is_err() {
                    return;
                }
                keep_alive.as_mut().reset(tokio::time::Instant::now() + link.interval(ping));
            }
            _ = &mut stopping, if !shutting_down => {
                shutting_down = true;
                events.on_shutdown();
                grace_timer.as_mut().reset(tokio::time::Instant::now() + grace);
            }
            _ = &mut grace_timer, if shutting_down => {
                link.close(None);
            }
        }
    }
}
