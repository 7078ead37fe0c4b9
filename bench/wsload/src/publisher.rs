//! The publisher of the fan-out modes: a WebSocket whose messages the server publishes to
//! every subscriber, or a Redis connection publishing to the channel directly, paced so it
//! never runs more than `ahead` messages past the subscribers. Each message carries its
//! publish time and sequence number (`stamp`).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::redis;
use crate::stamp;
use crate::stats::Stats;
use crate::ws::{self, Ws};

/// Where the messages go.
pub enum Sink {
    /// To a server's publishing WebSocket endpoint (each message it gets, it publishes).
    Ws(Box<Ws>),
    /// Straight to Redis (`PUBLISH`).
    Redis(redis::Publisher),
}

impl Sink {
    /// Sends the messages numbered `seqs`, `size` bytes each, stamped as they are queued.
    async fn send(&mut self, seqs: std::ops::Range<u64>, size: usize) -> Result<(), String> {
        match self {
            Sink::Ws(conn) => {
                for seq in seqs {
                    conn.feed(Message::text(stamp::text(seq, size)))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                conn.flush().await.map_err(|e| e.to_string())
            }
            Sink::Redis(publisher) => publisher.send(seqs, size).await,
        }
    }
}

/// Publishes messages of `size` bytes until `stats.stop()` (or an error), keeping at most
/// `ahead` messages beyond what the average subscriber (delivered ÷ `subscribers`) has
/// received; errors are counted in `stats`. Returns the sink (a Redis publisher's replies are
/// still to be read).
pub async fn run(
    mut sink: Sink,
    size: usize,
    ahead: u64,
    subscribers: u64,
    stats: Arc<Stats>,
) -> Sink {
    if let Err(e) = publish(&mut sink, size, ahead, subscribers.max(1), &stats).await {
        stats.error(format!("publisher: {e}"));
    }
    sink
}

/// The publisher's loop; returns when told to stop, or on an error.
async fn publish(
    sink: &mut Sink,
    size: usize,
    ahead: u64,
    subscribers: u64,
    stats: &Stats,
) -> Result<(), String> {
    let mut sent = 0_u64;
    while !stats.stopping() {
        let allowed = (stats.delivered() / subscribers + ahead).saturating_sub(sent);
        if allowed == 0 {
            // Wait for deliveries; meanwhile read, so a server ping is answered and a close seen.
            match sink {
                Sink::Ws(conn) => tokio::select! {
                    () = stats.progressed() => {}
                    item = conn.next() => { ws::data(item)?; }
                },
                Sink::Redis(_) => stats.progressed().await,
            }
            continue;
        }
        sink.send(sent..sent + allowed, size).await?;
        sent += allowed;
        stats.publish(allowed);
    }
    Ok(())
}
