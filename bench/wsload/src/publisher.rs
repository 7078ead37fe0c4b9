//! The publisher of the fan-out modes: one WebSocket whose messages the server publishes to
//! every subscriber, paced so it never runs more than `ahead` messages past the subscribers.
//! Each message carries its publish time and sequence number (`stamp`).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::stamp;
use crate::stats::Stats;
use crate::ws::{self, Ws};

/// Publishes messages of `size` bytes until aborted, keeping at most `ahead` messages beyond
/// what the average subscriber (delivered ÷ `subscribers`) has received; errors are counted in
/// `stats`.
pub async fn run(mut conn: Ws, size: usize, ahead: u64, subscribers: u64, stats: Arc<Stats>) {
    if let Err(e) = publish(&mut conn, size, ahead, subscribers.max(1), &stats).await {
        stats.error(format!("publisher: {e}"));
    }
}

/// The publisher's loop; only returns on an error.
async fn publish(
    conn: &mut Ws,
    size: usize,
    ahead: u64,
    subscribers: u64,
    stats: &Stats,
) -> Result<(), String> {
    let mut sent = 0_u64;
    loop {
        let allowed = (stats.delivered() / subscribers + ahead).saturating_sub(sent);
        if allowed == 0 {
            // Wait for deliveries; meanwhile read, so a server ping is answered and a close seen.
            tokio::select! {
                () = stats.progressed() => {}
                item = conn.next() => { ws::data(item)?; }
            }
            continue;
        }
        // Each stamped as it is queued; the flush follows right after.
        for seq in sent..sent + allowed {
            conn.feed(Message::text(stamp::text(seq, size)))
                .await
                .map_err(|e| e.to_string())?;
        }
        conn.flush().await.map_err(|e| e.to_string())?;
        sent += allowed;
        stats.publish(allowed);
    }
}
